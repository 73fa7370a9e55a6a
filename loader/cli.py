"""`loader` entry point: schema migrations, dataset and rate-deck imports, snapshot sync."""

from __future__ import annotations

import argparse
import json
import os
import sys

from rater.commands.common import (
    add_config_argument,
    add_json_argument,
    add_now_argument,
    config_from,
)
from rater.errors import ConfigError, RaterError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loader", description="Load and sync rating data.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("migrate", help="create or upgrade the schema (idempotent)")
    add_config_argument(p)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("import", help="import a dataset file (all of it or nothing)")
    add_config_argument(p)
    add_json_argument(p)
    add_now_argument(p)
    p.add_argument("file", help="dataset JSON file (see spec/dataset.md)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("import-rates", help="import a CSV rate deck into a rate group")
    add_config_argument(p)
    add_json_argument(p)
    p.add_argument("--rate-group", required=True, help="name of an existing rate group")
    p.add_argument("--replace", action="store_true",
                   help="also delete the group's rates that the deck does not list")
    p.add_argument("file", help="CSV file whose header row names the rate fields")
    p.set_defaults(func=cmd_import_rates)

    p = sub.add_parser("sync", help="publish a rating snapshot and seed Redis from PostgreSQL")
    add_config_argument(p)
    add_json_argument(p)
    p.add_argument("--watch", action="store_true",
                   help="keep running: sync again on every change (LISTEN/NOTIFY)")
    p.add_argument("--force", action="store_true",
                   help="publish even if Redis holds a newer version (after a restore)")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("sync-astpp", help="import from a live ASTPP 6 database, then sync")
    add_config_argument(p)
    add_json_argument(p)
    add_now_argument(p)
    p.add_argument("--from", dest="source", default=os.environ.get("RATER_ASTPP_URL"),
                   help="mysql://user:pass@host/astpp (default: $RATER_ASTPP_URL)")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be imported, account by account, and every row "
                        "that cannot be mapped; write nothing")
    p.add_argument("--watch", action="store_true",
                   help="keep running: sync again every --interval seconds")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between syncs")
    p.add_argument("--write-cdrs", action="store_true",
                   help="also write finished CDRs back into ASTPP's cdrs/reseller_cdrs")
    p.set_defaults(func=cmd_sync_astpp)
    return parser


def cmd_migrate(args: argparse.Namespace) -> int:
    from loader.migrate import migrate
    from rater.db import connect

    with connect(config_from(args)) as conn:
        applied = migrate(conn)
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from loader.dataset import import_dataset_file
    from rater.db import connect

    with connect(config_from(args)) as conn:
        summary = import_dataset_file(conn, args.file, now=args.now)
    _report(args, summary)
    return 0


def cmd_import_rates(args: argparse.Namespace) -> int:
    from loader.ratedeck import import_rate_deck_file
    from rater.db import connect

    with connect(config_from(args)) as conn:
        summary = import_rate_deck_file(conn, args.rate_group, args.file, replace=args.replace)
    _report(args, summary)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from loader.sync import run_sync

    return run_sync(config_from(args), watch=args.watch, as_json=args.json, force=args.force)


def cmd_sync_astpp(args: argparse.Namespace) -> int:
    from loader.astpp.run import run_sync_astpp

    if not args.source:
        raise ConfigError("sync-astpp: give --from mysql://user:pass@host/astpp "
                          "(or set RATER_ASTPP_URL)")
    return run_sync_astpp(config_from(args), args.source, now=args.now, dry_run=args.dry_run,
                          watch=args.watch, write_cdrs=args.write_cdrs, as_json=args.json,
                          interval=args.interval)


def _report(args: argparse.Namespace, summary: dict) -> None:
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(", ".join(f"{k}: {v}" for k, v in summary.items()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RaterError as exc:
        print(f"loader: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
