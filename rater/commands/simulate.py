"""`rater simulate`: the FreeSWITCH simulator on its own, the same as `python -m fssim`.

The simulator is the `fssim` package, not part of the daemon: it is imported only when this
command runs (building `rater`'s parser does not), so its options are parsed by fssim itself.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    # Every argument goes to fssim's own parser: no prefix character this parser knows, so
    # `--cps 5` and `--help` are all taken as the words of `argv`.
    p = sub.add_parser("simulate", add_help=False, prefix_chars="\0",
                       help="run the FreeSWITCH simulator (a load source; --help for its options)")
    p.add_argument("argv", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fssim.__main__ import main as run_simulator

    return run_simulator(args.argv, prog="rater simulate")
