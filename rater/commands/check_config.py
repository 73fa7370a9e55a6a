"""`rater check-config`: validate a configuration file and show it with secrets masked."""

from __future__ import annotations

import argparse
import json

from rater.commands.common import add_config_argument, add_json_argument, config_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate a configuration file")
    add_config_argument(p)
    add_json_argument(p)
    p.add_argument("path", nargs="?", help="file to check (instead of --config)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.path:
        args.config = args.path
    cfg = config_from(args)
    if args.json:
        print(json.dumps(cfg.describe(), indent=2))
    else:
        print(f"{args.config}: OK ({len(cfg.freeswitch)} FreeSWITCH node(s))")
    return 0
