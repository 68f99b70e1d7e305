"""Command line: ``b24app demo | emulator | ...``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


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
    return 0


def _demo(args: argparse.Namespace) -> int:
    from b24app.demo import run_demo

    return run_demo(seed=args.seed, out=sys.stdout)


def _sla_deadline(args: argparse.Namespace) -> int:
    from datetime import datetime

    from b24app.calendar_rules import calendar_from_settings
    from b24app.config import load_settings

    calendar = calendar_from_settings(load_settings(args.config or None).calendar)
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError:
        print(f"not an ISO 8601 instant: {args.start!r}", file=sys.stderr)
        return 2
    if start.tzinfo is None:
        # A bare local time is read in the portal's zone, as an admin would mean it.
        start = start.replace(tzinfo=calendar.tz)
    due = calendar.add_working_minutes(start, args.minutes)
    print(due.isoformat())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="b24app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

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
    deadline = sla.add_parser("deadline", help="print the due instant of a response clock")
    deadline.add_argument("start", help="ISO 8601 start, e.g. 2026-11-27T16:45+07:00")
    deadline.add_argument("--minutes", type=float, default=120.0,
                          help="working minutes to add (default 120)")
    deadline.add_argument("--config", default="", help="config file (default: B24APP_CONFIG)")
    deadline.set_defaults(func=_sla_deadline)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``b24app`` console script."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
