"""`rater run`: the daemon."""

from __future__ import annotations

import argparse

from rater.commands.common import add_config_argument, config_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the rating daemon")
    add_config_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rater.daemon import Daemon
    from rater.logs import setup_logging

    cfg = config_from(args)
    setup_logging(cfg.log)
    return Daemon(cfg).run()
