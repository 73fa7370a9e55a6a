"""`rater simulate`: the FreeSWITCH simulator on its own (see rater/sim)."""

from __future__ import annotations

import argparse
import logging


def register(sub: argparse._SubParsersAction) -> None:
    from rater.sim.__main__ import add_arguments

    p = sub.add_parser("simulate", help="run the FreeSWITCH simulator (a load source)")
    add_arguments(p)
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rater.sim.__main__ import run as run_simulator

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_simulator(args)
