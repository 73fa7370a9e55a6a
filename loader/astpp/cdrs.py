"""`--write-cdrs`: this project's finished CDRs copied into ASTPP's `cdrs` (the paying
customer, level 0) and `reseller_cdrs` (one row per reseller level above it), so the
portal's reports and invoices keep working. Money still moves one way: ASTPP's balances are
not touched (they stay as seeded; `rater balance` is the live one).

Each CDR is written once: a batch is written in one MySQL transaction that first deletes any
row with the batch's `uniqueid`s (the call uuids, which only this writer uses), then inserts
them; only after that commit is the batch recorded in PostgreSQL (`astpp_cdrs_written`). A
crash between the two rewrites the same batch, which replaces itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

from loader.astpp import source
from loader.astpp.mapping import Mapping
from rater.config import Config
from rater.db import connect

STATE_DDL = """
CREATE TABLE IF NOT EXISTS astpp_cdrs_written (
    uuid        text PRIMARY KEY,
    written_at  timestamptz NOT NULL
)"""

BATCH = 500
SMALLINT_MAX = 32767  # cdrs.billseconds is a SMALLINT in ASTPP 6

_PENDING = """
    SELECT c.uuid, c.account, c.direction, c.caller, c.destination, c.created_at,
           c.answered_at, c.hangup_at, c.billed_seconds, c.hangup_cause,
           array_agg(ch.level ORDER BY ch.level), array_agg(ch.account ORDER BY ch.level),
           array_agg(ch.rate_group ORDER BY ch.level), array_agg(ch.prefix ORDER BY ch.level),
           array_agg(ch.price_per_min ORDER BY ch.level), array_agg(ch.cost ORDER BY ch.level)
    FROM cdrs c JOIN cdr_charges ch ON ch.cdr_uuid = c.uuid
    WHERE NOT EXISTS (SELECT 1 FROM astpp_cdrs_written w WHERE w.uuid = c.uuid)
    GROUP BY c.uuid
    ORDER BY min(c.recorded_at), c.uuid
    LIMIT %s"""


def money6(micros: int) -> Decimal:
    """Micro-units as ASTPP's DECIMAL(20,6), exactly."""
    return Decimal(micros).scaleb(-6)


def _when(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC).replace(tzinfo=None) if value else None


def astpp_rows(cdr: tuple, mapping: Mapping) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One CDR as ASTPP rows: the `cdrs` row and its `reseller_cdrs` rows. Pure."""
    (uuid, _account, direction, caller, destination, created, answered, hangup, billed,
     cause, _levels, accounts, groups, prefixes, prices, costs) = cdr
    ids = {number: aid for aid, number in mapping.numbers.items()}
    start = _when(answered or created)
    common = {
        "uniqueid": uuid, "callerid": caller or "", "callednum": destination,
        "translated_dst": destination, "billseconds": min(billed, SMALLINT_MAX),
        "disposition": cause or "", "callstart": start, "end_stamp": _when(hangup),
        "call_direction": direction, "calltype": "DID" if direction == "inbound" else "STANDARD",
        "notes": "rater",
    }

    def level(i: int) -> dict[str, Any]:
        above = i + 1 < len(accounts)
        return {
            "accountid": ids.get(accounts[i], 0),
            "debit": money6(costs[i]),                      # what this level paid
            "cost": money6(costs[i + 1]) if above else Decimal(0),  # what its seller paid
            "pricelist_id": mapping.group_ids.get(groups[i], 0),
            "pattern": f"^{prefixes[i]}.*",
            "rate_cost": money6(prices[i]),
            "reseller_id": ids.get(accounts[i + 1], 0) if above else 0,
            "reseller_code": f"^{prefixes[i + 1]}.*" if above else "",
            "reseller_cost": money6(costs[i + 1]) if above else Decimal(0),
        }

    customer = {**common, **level(0), "type": 0, "billmsec": billed * 1000}
    resellers = [{**common, **level(i)} for i in range(1, len(accounts))]
    return customer, resellers


def _insert(cur: Any, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    cur.executemany(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
        [tuple(r[c] for c in cols) for r in rows])


def write_back(cfg: Config, url: str, mapping: Mapping) -> int:
    """Copy every CDR not yet written; returns how many were written now."""
    written = 0
    with connect(cfg, autocommit=True) as pg, source.connect(url) as mysql:
        pg.execute(STATE_DDL)
        while True:
            batch = pg.execute(_PENDING, (BATCH,)).fetchall()
            if not batch:
                return written
            customers, resellers = [], []
            for cdr in batch:
                c, rs = astpp_rows(cdr, mapping)
                customers.append(c)
                resellers.extend(rs)
            uuids = [c["uniqueid"] for c in customers]
            marks = ", ".join(["%s"] * len(uuids))
            with mysql.cursor() as cur:
                cur.execute("SET SESSION sql_mode = ''")
                cur.execute(f"DELETE FROM cdrs WHERE uniqueid IN ({marks})", uuids)
                cur.execute(f"DELETE FROM reseller_cdrs WHERE uniqueid IN ({marks})", uuids)
                _insert(cur, "cdrs", customers)
                _insert(cur, "reseller_cdrs", resellers)
            mysql.commit()
            _record(pg, uuids)
            written += len(uuids)
            if len(batch) < BATCH:
                return written


def _record(pg: psycopg.Connection, uuids: list[str]) -> None:
    now = datetime.now(UTC)
    with pg.cursor() as cur:
        cur.executemany("INSERT INTO astpp_cdrs_written (uuid, written_at) VALUES (%s, %s)"
                        " ON CONFLICT (uuid) DO NOTHING", [(u, now) for u in uuids])
