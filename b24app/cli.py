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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``b24app`` console script."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
