"""`rater reconcile`: compare live Redis balances and buckets with the PostgreSQL ledger.

Exit status 0 when they agree, 1 when there is any difference (each one is listed).
"""

from __future__ import annotations

import argparse

import redis

from rater.commands.common import add_config_argument, add_json_argument, config_from, print_json
from rater.config import mask_url
from rater.errors import RaterError
from rater.reconcile import ReconcileReport, reconcile
from rater.redis_client import keyspace_of, make_redis


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconcile", help="compare live Redis balances with the PostgreSQL ledger")
    add_config_argument(p)
    add_json_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rater.db import connect

    cfg = config_from(args)
    client = make_redis(cfg.redis)
    try:
        with connect(cfg) as conn:
            report = reconcile(client, conn, keyspace_of(cfg.redis))
    except redis.RedisError as exc:
        raise RaterError(f"Redis at {mask_url(cfg.redis.url)}: {exc}") from None
    finally:
        client.close()
    if args.json:
        print_json(report.to_dict())
    else:
        _print_text(report)
    return 0 if report.ok else 1


def _print_text(report: ReconcileReport) -> None:
    print(f"accounts checked: {report.accounts_checked}, orders checked: "
          f"{report.orders_checked}, differences: {len(report.differences)}")
    for d in report.differences:
        what = f"account {d.account}" if d.order is None else \
            f"order {d.order} (account {d.account})"
        line = (f"  {d.kind}: {what}: redis {_v(d.redis)}, postgres {d.postgres}, "
                f"pending {d.pending}, difference {_v(d.difference)}")
        print(line + (f" — {d.detail}" if d.detail else ""))


def _v(value: int | None) -> str:
    return "missing" if value is None else str(value)
