"""Helpers shared by the subcommands: options, config loading, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from rater.config import Config, load_config
from rater.errors import InputError


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """The `--config PATH` option every command takes."""
    parser.add_argument(
        "--config", default="config/rater.toml",
        help="configuration file (default: config/rater.toml); RATER_* environment wins",
    )


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_now_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--now", type=parse_time, default=None,
        help="act as if it were this time (ISO 8601 with a zone); default: the clock",
    )


def config_from(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def parse_time(text: str) -> datetime:
    """ISO 8601 with a zone (a bare date means midnight UTC)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        if len(text) == 10:
            return value.replace(tzinfo=UTC)
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +00:00)")
    return value.astimezone(UTC)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def require(cond: bool, message: str) -> None:
    if not cond:
        raise InputError(message)


def open_ledger(cfg: Config) -> tuple[Any, Any]:
    """(Redis client, Ledger on it), for one-shot commands."""
    from rater.ledger.client import Ledger
    from rater.redis_client import keyspace_of, make_redis

    client = make_redis(cfg.redis)
    return client, Ledger(client, keyspace_of(cfg.redis), cfg.rating.leg_ttl_seconds)


def current_snapshot(client: Any, keyspace: Any) -> Any:
    """The published rating snapshot, or an error telling the operator what to run."""
    from rater.snapshot_store import load_current

    snap = load_current(client, keyspace)
    if snap is None:
        raise InputError("no rating snapshot is published yet: run `loader sync`")
    return snap
