"""One `loader sync-astpp`: read ASTPP, map, import and publish; or only say what it would do.

A sync, in order:

1. read every ASTPP table in one snapshot (`source`);
2. map the rows (`mapping`), keeping what this database already holds live: the opening
   balance of accounts already seeded, the time and usage of orders already imported;
3. in one PostgreSQL transaction: `loader.dataset.import_dataset` (the validation and the
   upserts of `loader import`), drop the rates an ASTPP pricelist no longer has, queue new
   ASTPP money rows as balance adjustments (`money`);
4. `loader.sync.sync_once`: publish the snapshot, seed new accounts and buckets, apply the
   adjustments once;
5. with `--write-cdrs`, copy finished CDRs back into ASTPP (`cdrs`).

`--dry-run` does 1-3 in a transaction it rolls back (so the validation is the real one) and
prints, account by account, what would be imported and every row that cannot be mapped.
`--watch` repeats every `interval` seconds (ASTPP has no change notification), skipping
steps 3-4 when the mapped data and the money rows are what they were.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from loader.astpp import money, source
from loader.astpp.mapping import Known, Mapping, map_astpp
from loader.dataset import import_dataset
from loader.sync import redis_client, sync_once
from rater.backoff import Backoff
from rater.config import Config
from rater.db import connect
from rater.errors import DatabaseUnavailable, InputError, RaterError

log = logging.getLogger("loader.astpp")


@dataclass
class AstppSyncResult:
    """What one sync did (printed; one JSON object with --json)."""

    accounts: int
    unmapped: int
    imported: dict[str, Any] = field(default_factory=dict)
    rates_removed: int = 0
    money: dict[str, int] = field(default_factory=dict)
    adjustments_queued: int = 0
    snapshot: str = ""
    adjustments_applied: int = 0
    cdrs_written: int = 0
    changed: bool = True

    def describe(self) -> str:
        if not self.changed:
            return "ASTPP unchanged since the last sync"
        return (f"ASTPP: {self.accounts} account(s) carried, {self.unmapped} row(s) not "
                f"mappable (see --dry-run); rates removed: {self.rates_removed}; money rows: "
                f"{self.money or 'none new'}; adjustments queued: {self.adjustments_queued},"
                f" applied: {self.adjustments_applied}; {self.snapshot}"
                + (f"; CDRs written back: {self.cdrs_written}" if self.cdrs_written else ""))


def read_known(conn: psycopg.Connection) -> Known:
    """Opening balances and ASTPP orders already here (live state that is never re-seeded)."""
    openings = {
        account: amount for account, amount in conn.execute(
            "SELECT account, amount FROM ledger_entries WHERE kind = 'opening'"
            " AND id = 'opening:' || account")
    }
    orders = {
        oid: (at, used) for oid, at, used in conn.execute(
            "SELECT id, ordered_at, used_seconds FROM orders WHERE id LIKE 'astpp-%'")
    }
    return Known(openings, orders)


def prune_rates(conn: psycopg.Connection, mapping: Mapping) -> int:
    """Delete the rates of the synced groups that ASTPP no longer lists; returns how many."""
    removed = 0
    for group in mapping.dataset["rate_groups"]:
        keep = [f"{r['direction']}:{r['prefix']}" for r in group["rates"]]
        cur = conn.execute(
            "DELETE FROM rates r USING rate_groups g WHERE g.id = r.rate_group_id"
            " AND g.name = %s AND NOT (r.direction || ':' || r.prefix = ANY(%s))",
            (group["name"], keep))
        removed += cur.rowcount
    return removed


def fingerprint(mapping: Mapping, data: source.AstppData) -> str:
    """What a sync would import: the mapped dataset and the ASTPP money rows' ids (all of
    them, not only the unrecorded ones, so recording them does not count as a change)."""
    money_ids = sorted(int(r["id"]) for r in data["invoice_details"])
    blob = json.dumps([mapping.dataset, money_ids], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


def sync_astpp_once(
    cfg: Config, url: str, *, now: datetime | None = None, dry_run: bool = False,
    write_cdrs: bool = False, out: Callable[[str], None] = print,
    last_fingerprint: str | None = None,
) -> tuple[AstppSyncResult, str]:
    """One sync (or dry run); returns the result and the fingerprint of what was read.

    Raises InputError when the mapped data fails the dataset validation (nothing written),
    AstppUnavailable, DatabaseUnavailable, or what `loader.sync.sync_once` raises.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with source.connect(url) as mysql:
        data = source.read_all(mysql)
    with connect(cfg) as conn:
        mapping = map_astpp(data, read_known(conn), now)
        plan = money.plan_money(conn, data, mapping)
        conn.rollback()
        result = AstppSyncResult(len(mapping.plans), len(mapping.unmapped),
                                 money=plan.counts())
        mark = fingerprint(mapping, data)
        if dry_run:
            _validate(conn, mapping, now)
            _print_plan(mapping, plan, out)
            return result, mark
        if mark == last_fingerprint:
            result.changed = False
        else:
            with conn.transaction():
                money.ensure_state(conn)
                result.imported = _import(conn, mapping, now)
                result.rates_removed = prune_rates(conn, mapping)
                result.adjustments_queued = money.record_money(conn, plan, now)
    if result.changed:
        rds = redis_client(cfg)
        try:
            synced = sync_once(cfg, rds)
        finally:
            rds.close()
        result.snapshot = synced.describe()
        result.adjustments_applied = synced.adjustments_applied
    if write_cdrs:
        from loader.astpp.cdrs import write_back

        result.cdrs_written = write_back(cfg, url, mapping)
    return result, mark


def _import(conn: psycopg.Connection, mapping: Mapping, now: datetime) -> dict[str, Any]:
    try:
        return import_dataset(conn, mapping.dataset, source="ASTPP (mapped)", now=now)
    except InputError as exc:
        raise InputError(f"{exc}\n  (paths name the mapped dataset; `loader sync-astpp "
                         "--dry-run` lists it account by account)") from None


def _validate(conn: psycopg.Connection, mapping: Mapping, now: datetime) -> None:
    """The real import in a transaction rolled back: validation errors raise as usual."""
    try:
        with conn.transaction():
            _import(conn, mapping, now)
            raise _DryRun
    except _DryRun:
        pass


def _print_plan(mapping: Mapping, plan: money.MoneyPlan, out: Callable[[str], None]) -> None:
    out(f"would import {len(mapping.plans)} account(s) from ASTPP:")
    for p in mapping.plans:
        out(p.describe())
    for g in mapping.dataset["rate_groups"]:
        inbound = sum(1 for r in g["rates"] if r["direction"] == "inbound")
        out(f"rate group {g['name']!r} (owner {g['owner']}, markup {g['markup_percent']}%): "
            f"{len(g['rates']) - inbound} outbound and {inbound} inbound (DID) rate(s)")
    for p in mapping.dataset["products"]:
        out(f"package {p['name']!r} of {p['owner']}: {p['free_minutes']} min, "
            f"{p['applicable_for']}, {p['status']}, prefixes "
            f"{', '.join(x['prefix'] for x in p['prefixes']) or 'none'}")
    if plan.rows:
        out(f"{len(plan.rows)} ASTPP money row(s) not yet seen:")
        for row in plan.rows:
            out("    " + money.describe_row(row))
    out(f"{len(mapping.unmapped)} row(s) cannot be mapped:")
    for u in mapping.unmapped:
        out("    " + u.describe())


def run_sync_astpp(
    cfg: Config, url: str, *, now: datetime | None = None, dry_run: bool = False,
    watch: bool = False, write_cdrs: bool = False, as_json: bool = False,
    interval: float = 30.0, stop: threading.Event | None = None,
    out: Callable[[str], None] | None = None,
) -> int:
    """`loader sync-astpp`: one sync, a dry run, or a sync every `interval` s until `stop`."""
    out = out or (lambda line: print(line, flush=True))

    def emit(result: AstppSyncResult) -> None:
        out(json.dumps(result.__dict__, default=str) if as_json else result.describe())

    if not watch or dry_run:
        result, _ = sync_astpp_once(cfg, url, now=now, dry_run=dry_run,
                                    write_cdrs=write_cdrs, out=out)
        if not dry_run:
            emit(result)
        return 0
    stop = stop or threading.Event()
    backoff = Backoff(1.0, max(interval, 1.0))
    mark: str | None = None
    while not stop.is_set():
        try:
            result, mark = sync_astpp_once(cfg, url, now=now, write_cdrs=write_cdrs,
                                           last_fingerprint=mark)
            if result.changed or result.cdrs_written:
                emit(result)
            backoff.reset()
            stop.wait(interval)
        except (source.AstppUnavailable, DatabaseUnavailable, psycopg.OperationalError,
                RaterError) as exc:
            delay = backoff.next_delay()
            log.warning("ASTPP sync failed, retrying in %.1f s: %s", delay, exc)
            stop.wait(delay)
    return 0
