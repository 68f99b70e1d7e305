"""The ``b24app`` command: the service's processes, the admins' tools, the emulator and demo.

Exit codes: 0 all is well; 1 a problem was found (the portal, the database, the tokens);
2 a usage or configuration error. Nothing printed carries a token or a key, except the new
key that ``gen-key`` is asked for.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from b24app.cli_product import add_product_commands

if TYPE_CHECKING:
    from b24app.admin import BindOutcome, Check, PortalState, RemoteState, TokenHealth
    from b24app.config import Settings
    from b24app.context import AppContext
    from b24app.worker import Worker

log = logging.getLogger(__name__)

OK, PROBLEM, USAGE = 0, 1, 2
# ``worker --once`` stops after this many batches even if events keep arriving.
ONCE_MAX_BATCHES = 1000
PRODUCTION_HINT = "for production run: gunicorn -w 4 -b 0.0.0.0:8000 'b24app.wsgi:create()'"


class Problem(Exception):
    """A finding that ends a command with exit code 1 and one clear line."""


class UsageError(Exception):
    """A wrong argument that ends a command with exit code 2."""


# -- shared helpers ---------------------------------------------------------------------------
def _settings(args: argparse.Namespace) -> Settings:
    from b24app.config import load_settings

    return load_settings(args.config or None)


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.app.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _check_key(settings: Settings) -> None:
    """Fail on a missing or malformed encryption key before touching the database."""
    from b24app.crypto import SecretBox

    SecretBox.from_settings(settings)  # EncryptionKeyError → exit 2 in main()


def _admin_context(settings: Settings) -> AppContext:
    """A context over a database that must already be at head (admin tools never migrate)."""
    from b24app.bootstrap import build_context
    from b24app.db import current_revision, head_revision

    _check_key(settings)
    try:
        revision = current_revision(settings.database.url)
    except Exception as exc:  # any driver error: one line for the admin, not a traceback
        raise Problem(f"database {_masked(settings.database.url)} not reachable: "
                      f"{type(exc).__name__}: {exc}") from None
    if revision != head_revision():
        raise Problem(f"database at revision {revision or '(empty)'}, the code needs "
                      f"{head_revision()}: run `b24app migrate` first")
    return build_context(settings, migrate_db=False)


def _when(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "never"
    text = f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    if now is None:
        return text
    minutes = (moment - now).total_seconds() / 60
    relative = f"in {minutes:.0f} min" if minutes >= 0 else f"{-minutes:.0f} min ago"
    return f"{text} ({relative})"


# -- processes --------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import run_simple

    from b24app.bootstrap import build_context
    from b24app.web import create_app

    settings = _settings(args)
    _check_key(settings)
    _logging(settings)
    ctx = build_context(settings)
    try:
        print(f"development server on http://{args.host}:{args.port}; {PRODUCTION_HINT}",
              file=sys.stderr, flush=True)
        run_simple(args.host, args.port, create_app(ctx), threaded=True)
    finally:
        ctx.close()
    return OK


def _worker(args: argparse.Namespace) -> int:
    from b24app.bootstrap import build_context
    from b24app.jobs import rules_registry
    from b24app.worker import Worker

    settings = _settings(args)
    _check_key(settings)
    _logging(settings)
    ctx = build_context(settings)
    try:
        worker = Worker(ctx, registry=rules_registry())
        if args.once:
            print(f"processed {_drain(worker)} event(s)")
            return OK
        _run_until_signalled(ctx, worker)
    finally:
        ctx.close()
    return OK


def _drain(worker: Worker) -> int:
    """Process every event due now, batch after batch; failures wait for their backoff."""
    total = 0
    for _ in range(ONCE_MAX_BATCHES):
        processed = worker.run_once()
        total += processed
        if processed == 0:
            break
    return total


def _run_until_signalled(ctx: AppContext, worker: Worker) -> None:
    """The scheduler (leader election inside) and the inbox drain until SIGTERM/SIGINT."""
    from b24app.jobs import register_product_jobs
    from b24app.scheduler import build_scheduler

    stop = threading.Event()
    # Ours from the start, so that a signal during start-up also stops cleanly; run_forever
    # installs the same handler for its loop and gives ours back afterwards.
    previous = {sig: signal.signal(sig, lambda _sig, _frame: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    scheduler = build_scheduler(ctx, worker)
    register_product_jobs(scheduler, ctx)
    try:
        scheduler.start()
        log.info("worker %s draining the inbox (SIGTERM or Ctrl-C stops it)", worker.worker_id)
        worker.run_forever(stop)
    finally:
        scheduler.shutdown()
        for sig, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python; leave ours
                signal.signal(sig, handler)


def _migrate(args: argparse.Namespace) -> int:
    from b24app.db import current_revision, make_engine, migrate

    settings = _settings(args)
    engine = make_engine(settings.database.url)
    try:
        before = current_revision(engine)
        migrate(engine)
        after = current_revision(engine)
    except Exception as exc:  # any driver error: one line for the admin
        raise Problem(f"migration of {_masked(settings.database.url)} failed: "
                      f"{type(exc).__name__}: {exc}") from None
    finally:
        engine.dispose()
    change = "already at head" if before == after else f"upgraded from {before or '(empty)'}"
    print(f"database {_masked(settings.database.url)}: revision {after} ({change})")
    return OK


def _gen_key(args: argparse.Namespace) -> int:
    from b24app.crypto import generate_key

    print(generate_key())
    return OK


# -- install-status ---------------------------------------------------------------------------
def _install_status(args: argparse.Namespace) -> int:
    from b24app.admin import install_status

    ctx = _admin_context(_settings(args))
    try:
        states = install_status(ctx, args.portal)
        now = ctx.clock()
    finally:
        ctx.close()
    if args.portal and not states:
        raise UsageError(f"no portal with member_id {args.portal}")
    healthy = bool(states) and not any(state.problems() for state in states)
    if args.json:
        print(json.dumps({"ok": healthy, "portals": [s.as_dict() for s in states]},
                         ensure_ascii=False, indent=2))
    elif not states:
        print("no portal has installed the app")
    for state in [] if args.json else states:
        print("\n".join(_status_lines(state, now)))
    return OK if healthy else PROBLEM


def _status_lines(state: PortalState, now: datetime) -> list[str]:
    from b24app.admin import REQUIRED_SCOPES, missing_scopes

    lines = [f"portal {state.domain} (member_id {state.member_id})",
             f"  status        {state.status}, mode {state.mode}, "
             f"app version {state.app_version or '?'}",
             f"  installed     {_when(state.installed_at)}"]
    if state.tokens is not None:
        lines.append(f"  tokens        {_token_text(state.tokens, now)}")
    if state.mode == "local_app":
        missing = missing_scopes(state.scopes)
        lines.append(f"  scopes        {', '.join(state.scopes) or '(none stored)'}"
                     + (f"; MISSING {', '.join(missing)}" if missing
                        else f"; all of {', '.join(REQUIRED_SCOPES)} granted"))
    if state.remote is not None:
        lines += _remote_lines(state.remote)
    counts = ", ".join(f"{name} {count}" for name, count in state.inbox.items())
    lag = "drained" if state.lag_seconds is None else f"oldest waiting {state.lag_seconds:.0f} s"
    lines.append(f"  inbox         {counts}; {lag}")
    lines.append(f"  last sync     {_when(state.last_sync)}")
    problems = state.problems()
    lines.append("  problems      " + ("none" if not problems else "; ".join(problems)))
    return lines


def _token_text(tokens: TokenHealth, now: datetime) -> str:
    if not tokens.has_tokens:
        return "none stored"
    # An expired access token is normal: it is refreshed when Bitrix24 rejects it.
    state = "expired, refreshed on next use" if tokens.access_expired else "valid"
    return (f"access token {state} (expires {_when(tokens.access_expires_at, now)}); "
            f"pair last saved {_when(tokens.last_saved_at)} (version {tokens.version}); "
            f"refresh token good until about {_when(tokens.refresh_expires_at)}")


def _remote_lines(remote: RemoteState) -> list[str]:
    from b24app.lifecycle import COMPANY_FIELDS, KPI_TYPE_CODE

    if remote.error:
        return [f"  portal        NOT REACHABLE: {remote.error}"]
    lines = [f"  app.info      INSTALLED={remote.installed}, version {remote.app_version or '?'}",
             f"  clock skew    {remote.skew_seconds or 0:+.0f} s"]
    total = remote.events_bound + len(remote.events_missing)
    if total:
        lines.append(f"  events        {remote.events_bound} of {total} bound"
                     + (f"; MISSING {', '.join(remote.events_missing)}"
                        if remote.events_missing else ""))
    if remote.events_extra:
        lines.append(f"  other events  {', '.join(remote.events_extra)}")
    lines.append(f"  fields        {len(remote.fields_present)} of {len(COMPANY_FIELDS)} "
                 "UF_CRM_NOIS_* company fields"
                 + (f"; MISSING {', '.join(remote.fields_missing)}" if remote.fields_missing
                    else " present"))
    lines.append(f"  smart process KPI type (code {KPI_TYPE_CODE}) "
                 + ("present" if remote.kpi_type else "MISSING"))
    return lines


# -- bind-events ------------------------------------------------------------------------------
def _bind_events(args: argparse.Namespace) -> int:
    from b24app.admin import bind_events

    ctx = _admin_context(_settings(args))
    try:
        outcomes = bind_events(ctx, args.portal)
    finally:
        ctx.close()
    if not outcomes:
        if args.portal:
            raise UsageError(f"no portal with member_id {args.portal}")
        raise Problem("no portal has installed the app")
    for outcome in outcomes:
        print("\n".join(_bind_lines(outcome)))
    return PROBLEM if any(outcome.error for outcome in outcomes) else OK


def _bind_lines(outcome: BindOutcome) -> list[str]:
    head = f"portal {outcome.domain} (member_id {outcome.member_id})"
    report = outcome.report
    if report is None:
        return [f"{head}: NOT DONE: {outcome.error}"]
    lines = [f"{head}: handler {report.handler}, app version {report.version or '?'}"]
    for label, items in (("bound", report.bound), ("unbound", report.unbound),
                         ("fields created", report.fields_created),
                         ("types created", report.types_created)):
        if items:
            lines.append(f"  {label:15} {len(items)}: {', '.join(items)}")
    lines.append(f"  {'unchanged':15} {len(report.skipped)} item(s) already in place")
    return lines


# -- doctor -----------------------------------------------------------------------------------
MARKS = {"ok": "✓", "warn": "!", "fail": "✗"}


def _doctor(args: argparse.Namespace) -> int:
    from b24app.admin import doctor
    from b24app.bootstrap import build_context
    from b24app.config import CONFIG_ENV, ConfigError

    source = args.config or f"${CONFIG_ENV}"
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"{MARKS['fail']} config: {exc}")
        return USAGE
    print(f"{MARKS['ok']} config: loaded ({source}; defaults and B24APP_* variables)", flush=True)
    failed = warned = 0
    for check in doctor(settings, lambda s: build_context(s, migrate_db=False)):
        print(_check_line(check), flush=True)
        failed += check.level == "fail"
        warned += check.level == "warn"
    print(f"doctor: {failed} failed, {warned} warning(s)")
    return PROBLEM if failed else OK


def _check_line(check: Check) -> str:
    return f"{MARKS[check.level]} {check.name}: {check.detail}"


# -- emulator, demo, sla ----------------------------------------------------------------------
def _emulator(args: argparse.Namespace) -> int:
    from b24emu.cli import build_server

    server = build_server(dataset=args.dataset, seed=args.seed, scale=args.scale,
                          port=args.port, state=args.state, limits=not args.no_limits)
    print(json.dumps(server.portal.describe(), ensure_ascii=False), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        from b24emu.cli import save_state

        if args.state:
            save_state(server.portal, args.state)
    return OK


def _demo(args: argparse.Namespace) -> int:
    from b24app.demo import run_demo

    return run_demo(seed=args.seed, out=sys.stdout)


def _sla_deadline(args: argparse.Namespace) -> int:
    from b24app.calendar_rules import calendar_from_settings

    calendar = calendar_from_settings(_settings(args).calendar)
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError:
        raise UsageError(f"not an ISO 8601 instant: {args.start!r}") from None
    if start.tzinfo is None:
        # A bare local time is read in the portal's zone, as an admin would mean it.
        start = start.replace(tzinfo=calendar.tz)
    due = calendar.add_working_minutes(start, args.minutes)
    print(due.isoformat())
    return OK


# -- the parser -------------------------------------------------------------------------------
def _product(args: argparse.Namespace) -> int:
    """Run a product command (``kpi``, ``report``, ``nps import``) on an admin context."""
    from b24app.cli_product import PortalChoiceError

    ctx = _admin_context(_settings(args))
    try:
        outcome = args.product(ctx, args)
    except PortalChoiceError as exc:
        raise UsageError(str(exc)) from None
    finally:
        ctx.close()
    lines, ok = outcome if isinstance(outcome, tuple) else (outcome, True)
    print("\n".join(lines))
    return OK if ok else PROBLEM


def _config_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--config", default="", metavar="PATH",
                        help="TOML config file (default: $B24APP_CONFIG, else built-in defaults)")
    return parent


def _add_service_commands(sub: Any, config: argparse.ArgumentParser) -> None:
    serve = sub.add_parser("serve", parents=[config], help="HTTP development server",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description=f"The Werkzeug development server.\n{PRODUCTION_HINT}")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", parents=[config],
                            help="drain the inbox and run the scheduled jobs")
    worker.add_argument("--once", action="store_true",
                        help="process the events due now and exit, without the scheduled "
                             "jobs (cron, tests)")
    worker.set_defaults(func=_worker)

    sub.add_parser("migrate", parents=[config], help="upgrade the database to head"
                   ).set_defaults(func=_migrate)
    sub.add_parser("gen-key", help="print a new key for [app] encryption_key"
                   ).set_defaults(func=_gen_key)


def _add_admin_commands(sub: Any, config: argparse.ArgumentParser) -> None:
    status = sub.add_parser("install-status", parents=[config],
                            help="what is installed, bound and created on each portal")
    status.add_argument("--portal", metavar="MEMBER_ID", help="only this portal")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_install_status)

    bind = sub.add_parser("bind-events", parents=[config],
                          help="bind events, create fields and the KPI type again (idempotent)")
    bind.add_argument("--portal", metavar="MEMBER_ID", help="only this portal")
    bind.set_defaults(func=_bind_events)

    sub.add_parser("doctor", parents=[config],
                   help="check config, database, key, portal connection, scopes, clock, lag"
                   ).set_defaults(func=_doctor)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="b24app", description=(__doc__ or "").replace("``", ""))
    sub = parser.add_subparsers(dest="command", required=True)
    config = _config_parent()
    _add_service_commands(sub, config)
    _add_admin_commands(sub, config)
    add_product_commands(sub, config, _product)

    emu = sub.add_parser("emulator", help="serve an emulated Bitrix24 portal on loopback")
    emu.add_argument("--port", type=int, default=0, help="TCP port (0 = a free one)")
    emu.add_argument("--dataset", choices=["demo", "empty"], default="demo")
    emu.add_argument("--seed", type=int, default=1, help="seed of the generated dataset")
    emu.add_argument("--scale", type=int, default=0,
                     help="extra generated deals for benchmarks (e.g. 100000)")
    emu.add_argument("--state", default="", help="load state from / save it to this file")
    emu.add_argument("--no-limits", action="store_true", help="turn the cloud limits off")
    emu.set_defaults(func=_emulator)

    demo = sub.add_parser("demo", help="the main job end to end on the embedded demo portal")
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(func=_demo)

    sla = sub.add_parser("sla", help="SLA tools").add_subparsers(dest="sla_command", required=True)
    deadline = sla.add_parser("deadline", parents=[config],
                              help="print the due instant of a response clock")
    deadline.add_argument("start", help="ISO 8601 start, e.g. 2026-11-27T16:45+07:00")
    deadline.add_argument("--minutes", type=float, default=120.0,
                          help="working minutes to add (default 120)")
    deadline.set_defaults(func=_sla_deadline)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``b24app`` console script."""
    from b24app.config import ConfigError
    from b24app.crypto import EncryptionKeyError

    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except (ConfigError, EncryptionKeyError) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return USAGE
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return USAGE
    except Problem as exc:
        print(f"problem: {exc}", file=sys.stderr)
        return PROBLEM
    return result


if __name__ == "__main__":
    raise SystemExit(main())
