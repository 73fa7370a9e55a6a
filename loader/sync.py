"""`loader sync`: publish the rating snapshot built from PostgreSQL and seed Redis.

One sync, in order (each step its own function, so later steps can be added):

1. `check_shards`     Redis's `meta` records the shard count; another count is refused.
2. `publish_snapshot` build the snapshot here (never in the daemon) and publish it, unless
                      Redis already has this reference version (or a newer one).
3. `seed_accounts`    create missing account hashes: ``bal`` = the sum of the account's ledger
                      entries, ``held`` = ``ch`` = 0. HSETNX only: a live balance is never
                      overwritten (top-ups and adjustments go through the ledger).
4. `seed_buckets`     create missing bucket hashes of active orders: ``left`` = cap - used
                      seconds, ``held`` = 0, ``period``, ``cap``. HSETNX only, likewise.
5. adjustments        credits and debits another system wrote to `balance_adjustments` are
                      applied to the live balance exactly once (loader/adjustments.py).

`--watch` keeps a LISTEN on `rater_reference` (the schema's triggers bump `reference_version`
and notify it), debounces bursts and syncs again; after any (re)connect it syncs at once,
since notifications sent while disconnected are lost. It also listens on `rater_adjustments`
(a new balance adjustment row) and then only applies the pending adjustments.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
import redis as redis_lib

from loader.adjustments import apply_adjustments
from loader.snapshot import build_snapshot
from rater.backoff import Backoff
from rater.config import Config, mask_url
from rater.db import connect, one_row
from rater.errors import ConfigError, DatabaseUnavailable, RaterError
from rater.ledger.client import Ledger
from rater.ledger.keys import KeySpace
from rater.rating.snapshot_format import read_header
from rater.redis_client import RedisClient, keyspace_of, make_redis
from rater.snapshot_store import current_version, publish

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "rater_reference"
ADJUSTMENTS_CHANNEL = "rater_adjustments"
SEED_BATCH = 2000

# Every account's tree top: the account under admin that heads its tree.
_TREE_CTE = """
WITH RECURSIVE tree(number, top) AS (
    SELECT number, number FROM accounts WHERE parent IS NULL
    UNION ALL
    SELECT a.number, t.top FROM accounts a JOIN tree t ON a.parent = t.number
)
"""


class RedisUnavailable(RaterError):
    """Redis cannot be reached; the sync is retried (watch) or reported (one shot)."""


@dataclass
class SyncResult:
    """What one sync did (printed by `loader sync`, one JSON object with --json)."""

    version: int
    snapshot: str  # published | unchanged | stale (Redis has a newer version)
    snapshot_bytes: int
    accounts: int
    accounts_seeded: int
    buckets: int
    buckets_seeded: int
    seconds: float
    adjustments_applied: int = 0
    adjustments_pending: int = 0

    def describe(self) -> str:
        size = ""
        if self.snapshot == "published":
            size = (f", {self.snapshot_bytes / 1e6:.1f} MB" if self.snapshot_bytes >= 1e6
                    else f", {self.snapshot_bytes / 1e3:.0f} kB")
        return (f"snapshot v{self.version} {self.snapshot}{size}; accounts seeded: "
                f"{self.accounts_seeded} of {self.accounts}; buckets seeded: "
                f"{self.buckets_seeded} of {self.buckets}; adjustments applied: "
                f"{self.adjustments_applied} ({self.adjustments_pending} left pending); "
                f"{self.seconds:.2f} s")


def redis_client(cfg: Config) -> RedisClient:
    """A binary-safe Redis client for the loader (snapshot blobs are bytes), opened the
    project's one way (a Sentinel URL included); a large blob takes longer than a ledger
    command to write, hence the longer socket timeout."""
    return make_redis(cfg.redis, max_connections=4,
                      socket_timeout=max(cfg.redis.socket_timeout, 30.0))


def check_shards(rds: RedisClient, keyspace: KeySpace) -> None:
    """Record the shard count in `meta` on first use; refuse a different one afterwards."""
    rds.hsetnx(keyspace.meta, "shards", keyspace.shards)
    seeded = int(rds.hget(keyspace.meta, "shards"))  # type: ignore[arg-type]  # set above
    if seeded != keyspace.shards:
        raise ConfigError(
            f"redis.shards: this Redis was seeded with {seeded} shards but the configuration "
            f"says {keyspace.shards}; the shard count cannot change on a live deployment"
        )


def publish_snapshot(
    conn: psycopg.Connection, rds: RedisClient, keyspace: KeySpace, keep: int,
    force: bool = False,
) -> tuple[int, str, int]:
    """Build and publish the snapshot unless Redis has this version or a newer one.

    Returns ``(version, outcome, blob size)`` with outcome published, unchanged or stale.
    `conn` must be idle (autocommit) so the build reads in its own consistent transaction.
    """
    pg_version = one_row(conn.execute("SELECT version FROM reference_version"))[0]
    published = current_version(rds, keyspace)
    if not force and published is not None and published >= pg_version:
        if published > pg_version:
            log.warning(
                "published snapshot v%s is newer than PostgreSQL's reference version %s: "
                "another loader is ahead, or the database was restored (force to publish)",
                published, pg_version)
            return published, "stale", 0
        return pg_version, "unchanged", 0
    blob = build_snapshot(conn, keyspace)
    version = read_header(blob)[1]
    if not publish(rds, keyspace, blob, version, keep, force=force):
        return current_version(rds, keyspace) or version, "stale", 0
    return version, "published", len(blob)


def seed_accounts(
    conn: psycopg.Connection, rds: RedisClient, keyspace: KeySpace
) -> tuple[int, int]:
    """Create every missing account hash from its ledger sum; returns ``(accounts, seeded)``."""
    rows = conn.execute(_TREE_CTE + """
        SELECT t.number, t.top, COALESCE(l.balance, 0)::bigint
        FROM tree t LEFT JOIN (
            SELECT account, sum(amount) AS balance FROM ledger_entries GROUP BY account
        ) l ON l.account = t.number
    """).fetchall()
    seeded = 0
    for start in range(0, len(rows), SEED_BATCH):
        pipe = rds.pipeline(transaction=False)
        for number, top, balance in rows[start:start + SEED_BATCH]:
            key = keyspace.account(keyspace.tag(top), number)
            pipe.hsetnx(key, "bal", balance)
            pipe.hsetnx(key, "held", 0)
            pipe.hsetnx(key, "ch", 0)
        replies = pipe.execute()
        seeded += sum(replies[0::3])
    return len(rows), seeded


def seed_buckets(
    conn: psycopg.Connection, rds: RedisClient, keyspace: KeySpace
) -> tuple[int, int]:
    """Create every missing bucket hash of an active order; returns ``(orders, seeded)``."""
    rows = conn.execute(_TREE_CTE + """
        SELECT o.id, t.top, o.period_no, p.free_minutes * 60, o.used_seconds
        FROM orders o
        JOIN products p ON p.id = o.product_id
        JOIN tree t ON t.number = o.account
        WHERE o.status = 'active'
    """).fetchall()
    seeded = 0
    for start in range(0, len(rows), SEED_BATCH):
        pipe = rds.pipeline(transaction=False)
        for order_id, top, period_no, cap, used in rows[start:start + SEED_BATCH]:
            key = keyspace.bucket(keyspace.tag(top), order_id)
            pipe.hsetnx(key, "left", max(0, cap - used))
            pipe.hsetnx(key, "held", 0)
            pipe.hsetnx(key, "period", period_no)
            pipe.hsetnx(key, "cap", cap)
        replies = pipe.execute()
        seeded += sum(replies[0::4])
    return len(rows), seeded


def sync_once(
    cfg: Config, rds: RedisClient, force: bool = False, seed_if_unchanged: bool = True
) -> SyncResult:
    """One full sync (shards check, snapshot, seeding). Raises DatabaseUnavailable,
    RedisUnavailable or ConfigError; with `seed_if_unchanged` False an unchanged version
    skips the seeding too (the watch loop's periodic check)."""
    started = time.monotonic()
    keyspace = keyspace_of(cfg.redis)
    try:
        with connect(cfg, autocommit=True) as conn:
            check_shards(rds, keyspace)
            version, outcome, size = publish_snapshot(
                conn, rds, keyspace, cfg.snapshot.keep_versions, force=force)
            accounts = accounts_seeded = buckets = buckets_seeded = 0
            if seed_if_unchanged or outcome == "published":
                accounts, accounts_seeded = seed_accounts(conn, rds, keyspace)
                buckets, buckets_seeded = seed_buckets(conn, rds, keyspace)
            adjustments = apply_adjustments(conn, Ledger(rds, keyspace), keyspace)
    except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
        raise RedisUnavailable(
            f"cannot reach Redis at {mask_url(cfg.redis.url)}: {exc}") from None
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"PostgreSQL failed during sync: {exc}") from None
    return SyncResult(version, outcome, size, accounts, accounts_seeded, buckets,
                      buckets_seeded, round(time.monotonic() - started, 3),
                      len(adjustments.applied), len(adjustments.skipped))


def apply_adjustments_once(cfg: Config, rds: RedisClient) -> int:
    """Only step 5 (a new adjustment row was notified): returns how many were applied."""
    keyspace = keyspace_of(cfg.redis)
    with connect(cfg, autocommit=True) as conn:
        return len(apply_adjustments(conn, Ledger(rds, keyspace), keyspace).applied)


def run_sync(
    cfg: Config, watch: bool = False, as_json: bool = False, force: bool = False,
    stop: threading.Event | None = None, out: Callable[[str], None] | None = None,
) -> int:
    """`loader sync [--watch] [--json]`: one sync, or sync on every change until stopped.

    `stop` ends the watch loop (SIGTERM sets it when run from the main thread); `out`
    receives each summary (default: stdout, flushed, so a journal sees it at once).
    Returns the exit code.
    """
    out = out or _print_flushed
    rds = redis_client(cfg)
    try:
        if not watch:
            result = sync_once(cfg, rds, force=force)
            out(json.dumps(asdict(result), indent=2) if as_json else result.describe())
            return 0
        stop = stop or _stop_on_sigterm()

        def emit(result: SyncResult) -> None:
            out(json.dumps(asdict(result)) if as_json else result.describe())

        watch_loop(cfg, rds, emit, stop, force=force)
        return 0
    finally:
        rds.close()


def _print_flushed(line: str) -> None:
    print(line, flush=True)


def _stop_on_sigterm() -> threading.Event:
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def watch_loop(
    cfg: Config, rds: RedisClient, emit: Callable[[SyncResult], None],
    stop: threading.Event, force: bool = False, debounce: float = 0.2,
    recheck: float = 30.0, backoff: Backoff | None = None,
) -> None:
    """Sync on every `rater_reference` notification until `stop` is set.

    A burst of notifications (an import, a rate deck) is gathered until `debounce` seconds
    pass without one, and at most 20 debounce periods, then synced once. Every `recheck`
    seconds the version is compared anyway, a safety net for a lost notification. Failures
    of PostgreSQL or Redis are logged and retried with backoff; nothing else is caught.
    """
    backoff = backoff or Backoff(0.5, 10.0)
    while not stop.is_set():
        try:
            with connect(cfg, autocommit=True) as listener:
                listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
                listener.execute(f"LISTEN {ADJUSTMENTS_CHANNEL}")
                # Notifications sent while we were away are lost: sync now.
                emit(sync_once(cfg, rds, force=force))
                force = False
                backoff.reset()
                last = time.monotonic()
                while not stop.is_set():
                    channels = _wait_notification(listener, 1.0)
                    if NOTIFY_CHANNEL in channels:
                        _debounce(listener, debounce, stop)
                        emit(sync_once(cfg, rds))
                        last = time.monotonic()
                    elif channels:
                        applied = apply_adjustments_once(cfg, rds)
                        log.info("balance adjustments applied: %d", applied)
                    elif time.monotonic() - last >= recheck:
                        result = sync_once(cfg, rds, seed_if_unchanged=False)
                        if result.snapshot == "published":
                            emit(result)
                        last = time.monotonic()
        except (DatabaseUnavailable, RedisUnavailable, psycopg.OperationalError) as exc:
            delay = backoff.next_delay()
            log.warning("sync failed, retrying in %.1f s: %s", delay, exc)
            stop.wait(delay)


def _wait_notification(conn: psycopg.Connection, timeout: float) -> set[str]:
    """The channels notified within `timeout` (empty when none was)."""
    return {n.channel for n in conn.notifies(timeout=timeout, stop_after=1)}


def _debounce(conn: psycopg.Connection, quiet: float, stop: threading.Event) -> None:
    for _ in range(20):
        if stop.is_set() or not _drain(conn, quiet):
            return


def _drain(conn: Any, timeout: float) -> bool:
    """Consume the notifications arriving within `timeout`; True if any did."""
    return sum(1 for _ in conn.notifies(timeout=timeout)) > 0
