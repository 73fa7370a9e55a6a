"""`rater export accounts|cdrs [--since T] [--format csv|json]`: the durable record as files.

Reads PostgreSQL only, so balances are the sum of the ledger entries the flusher has
written (the live balance in Redis can be a few moments ahead). Money is always integer
micro-units, times ISO 8601 in UTC. JSON is an array with one object per line; CSV has one
row per account or per CDR, with a CDR's charges (one per level) and package usage as JSON
in the `charges` and `packages` columns, so both formats have one record per rated leg.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

import psycopg

from rater.commands.common import add_config_argument, config_from, parse_time

ACCOUNT_COLUMNS = (
    "number", "name", "parent", "kind", "reseller_type", "billing", "credit_limit_micros",
    "rate_group", "max_channels", "status", "balance_micros", "created_at",
)
CDR_COLUMNS = (
    "uuid", "account", "direction", "caller", "destination", "node", "created_at",
    "answered_at", "hangup_at", "billed_seconds", "hangup_cause", "settlement",
    "total_cost_micros", "recorded_at", "charges", "packages",
)
_BATCH = 2000

_ACCOUNTS_SQL = """
SELECT a.number, a.name, a.parent, a.kind, a.reseller_type, a.billing, a.credit_limit,
       g.name, a.max_channels, a.status, COALESCE(l.balance, 0)::bigint, a.created_at
FROM accounts a
JOIN rate_groups g ON g.id = a.rate_group_id
LEFT JOIN (SELECT account, sum(amount) AS balance FROM ledger_entries GROUP BY account) l
       ON l.account = a.number
WHERE %(since)s::timestamptz IS NULL OR a.created_at >= %(since)s
ORDER BY a.number
"""

_CDRS_SQL = """
SELECT c.uuid, c.account, c.direction, c.caller, c.destination, c.node, c.created_at,
       c.answered_at, c.hangup_at, c.billed_seconds, c.hangup_cause, c.settlement,
       c.total_cost, c.recorded_at,
       COALESCE((SELECT json_agg(json_build_object(
                   'level', x.level, 'account', x.account, 'rate_group', x.rate_group,
                   'prefix', x.prefix, 'price_per_min_micros', x.price_per_min,
                   'charged_seconds', x.charged_seconds, 'free_seconds', x.free_seconds,
                   'cost_micros', x.cost) ORDER BY x.level)
                 FROM cdr_charges x WHERE x.cdr_uuid = c.uuid), '[]'::json),
       COALESCE((SELECT json_agg(json_build_object(
                   'order', u.order_id, 'account', u.account, 'period_no', u.period_no,
                   'seconds', u.seconds) ORDER BY u.account, u.order_id)
                 FROM package_usage u WHERE u.cdr_uuid = c.uuid), '[]'::json)
FROM cdrs c
WHERE %(since)s::timestamptz IS NULL OR c.recorded_at >= %(since)s
ORDER BY c.recorded_at, c.uuid
"""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _stream(conn: psycopg.Connection, sql: str, since: datetime | None) -> Iterator[tuple]:
    # A server-side cursor keeps memory flat however many rows there are.
    with conn.transaction(), conn.cursor(name="rater_export") as cur:
        cur.itersize = _BATCH
        cur.execute(sql, {"since": since})
        yield from cur


def export_accounts(conn: psycopg.Connection, since: datetime | None = None) -> Iterator[dict]:
    """Accounts (created at or after `since`), each with its ledger balance in micro-units."""
    for row in _stream(conn, _ACCOUNTS_SQL, since):
        record = dict(zip(ACCOUNT_COLUMNS, row, strict=True))
        record["created_at"] = _iso(record["created_at"])
        yield record


def export_cdrs(conn: psycopg.Connection, since: datetime | None = None) -> Iterator[dict]:
    """One record per rated leg (recorded at or after `since`) with its charges per level."""
    for row in _stream(conn, _CDRS_SQL, since):
        record = dict(zip(CDR_COLUMNS, row, strict=True))
        for key in ("created_at", "answered_at", "hangup_at", "recorded_at"):
            record[key] = _iso(record[key])
        yield record


def write_json(records: Iterator[dict], out: TextIO) -> int:
    """A JSON array, one record per line; returns the number of records."""
    n = 0
    out.write("[")
    for record in records:
        out.write(",\n" if n else "\n")
        out.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


def write_csv(records: Iterator[dict], columns: tuple[str, ...], out: TextIO) -> int:
    """CSV with a header row; lists (charges, packages) become JSON cells, None is empty."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    n = 0
    for record in records:
        writer.writerow([_cell(record[c]) for c in columns])
        n += 1
    return n


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export accounts or CDRs as CSV or JSON (money in micro-units)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("what", choices=("accounts", "cdrs"), help="what to export")
    p.add_argument("--since", type=parse_time, default=None,
                   help="only records from this time on (ISO 8601 with a zone): CDRs by "
                        "recorded_at, accounts by created_at")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="default: csv")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    add_config_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rater.db import connect

    fmt = "json" if args.json else args.format
    cfg = config_from(args)
    with connect(cfg) as conn:
        columns: tuple[str, ...]
        if args.what == "accounts":
            records, columns = export_accounts(conn, args.since), ACCOUNT_COLUMNS
        else:
            records, columns = export_cdrs(conn, args.since), CDR_COLUMNS
        if args.output == "-":
            _write(records, columns, fmt, sys.stdout)
        else:
            with open(args.output, "w", newline="", encoding="utf-8") as out:
                count = _write(records, columns, fmt, out)
            print(f"{count} {args.what} written to {args.output}", file=sys.stderr)
    return 0


def _write(records: Iterator[dict], columns: tuple[str, ...], fmt: str, out: TextIO) -> int:
    return write_json(records, out) if fmt == "json" else write_csv(records, columns, out)
