"""Hot reload and exactly-once adjustments through `loader sync` (real PostgreSQL and Redis).

- a rate committed in PostgreSQL reaches the snapshot a running daemon-side reader holds,
  through `loader sync --watch` (NOTIFY), before a 5-second deadline;
- a reader never holds a half-built snapshot while versions are published under it;
- a top-up row written by another system is applied once, however often sync runs.
"""

from __future__ import annotations

import threading
import time

import gevent
import psycopg
import pytest
import redis
from gevent.event import Event

from loader.snapshot import ReferenceData, encode_snapshot
from loader.sync import run_sync, sync_once
from rater.config import Config
from rater.ledger.keys import KeySpace
from rater.redis_client import keyspace_of as redis_keyspace
from rater.snapshot_store import publish
from rater.snapshot_watcher import SnapshotHolder
from tests.rating_world import C3, import_world


def keyspace_of(cfg: Config) -> KeySpace:
    return redis_keyspace(cfg.redis)


@pytest.fixture
def rb(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def wholesale_id(pg: psycopg.Connection) -> int:
    return pg.execute("SELECT id FROM rate_groups WHERE name = 'wholesale'").fetchone()[0]


def test_a_committed_rate_reaches_a_running_reader_within_5_seconds(
        cfg: Config, pg: psycopg.Connection, rb: redis.Redis):
    import_world(pg)
    stop = threading.Event()
    watcher = threading.Thread(target=run_sync, daemon=True, kwargs={
        "cfg": cfg, "watch": True, "stop": stop, "out": lambda _line: None})
    watcher.start()
    holder = SnapshotHolder(rb, keyspace_of(cfg), poll_interval=1.0)
    reader_stop = Event()
    reader = gevent.spawn(holder.run, reader_stop)
    try:
        assert holder.loaded.wait(30), "the first snapshot never arrived"
        group = wholesale_id(pg)
        assert holder.current.rate(group, "outbound", "3312345").prefix == ""  # catch-all
        pg.execute("INSERT INTO rates (rate_group_id, direction, prefix, price_per_min) "
                   "VALUES (%s, 'outbound', '33', 77000)", (group,))
        committed = time.monotonic()
        while True:
            snap = holder.current
            match = snap.rate(group, "outbound", "3312345")
            if match.prefix == "33":
                break
            assert time.monotonic() - committed < 5.0, "the new rate took more than 5 s"
            gevent.sleep(0.05)
        assert match.tariff.price_per_min_micros == 77_000
    finally:
        reader_stop.set()
        reader.join(5)
        stop.set()
        watcher.join(30)


def test_a_reader_never_holds_a_half_built_snapshot(cfg: Config, rb: redis.Redis):
    ks = keyspace_of(cfg)

    def blob(version: int) -> bytes:
        # every version's rates say which version they belong to
        rates = [(1, "outbound", f"{p}", "X", 1000 * version, 0, 0, 1, 1) for p in range(10, 400)]
        ref = ReferenceData(version=version, rate_groups=[(1, "g", 0, None)], rates=rates)
        return encode_snapshot(ref, ks, built_at=float(version))

    blobs = {v: blob(v) for v in range(1, 41)}
    holder = SnapshotHolder(rb, ks, poll_interval=0.01)
    publish(rb, ks, blobs[1], 1, keep=2)
    holder.refresh()
    seen: set[int] = set()
    done = Event()

    def read() -> None:
        while not done.is_set():
            holder.refresh()
            snap = holder.current
            prices = {snap.rate(1, "outbound", f"{p}0").tariff.price_per_min_micros
                      for p in range(10, 400, 37)}
            assert prices == {1000 * snap.version}
            seen.add(snap.version)
            gevent.sleep(0)

    reader = gevent.spawn(read)
    for v in range(2, 41):
        publish(rb, ks, blobs[v], v, keep=2)
        gevent.sleep(0.005)
    done.set()
    reader.get(timeout=10)  # re-raises a failed consistency check
    assert holder.version == 40
    assert len(seen) > 3


def test_a_topup_row_is_applied_once_even_when_sync_runs_twice(
        cfg: Config, pg: psycopg.Connection, rb: redis.Redis, rds: redis.Redis):
    import_world(pg)
    sync_once(cfg, rb)
    ks = keyspace_of(cfg)
    key = next(iter(rds.scan_iter(f"{ks.prefix}:*:a:{C3}")))
    before = int(rds.hget(key, "bal"))
    pg.execute("INSERT INTO balance_adjustments (account, amount, ref, note) "
               "VALUES (%s, 2500000, 'portal-77', 'card payment')", (C3,))
    first = sync_once(cfg, rb)
    second = sync_once(cfg, rb)
    assert (first.adjustments_applied, second.adjustments_applied) == (1, 0)
    assert int(rds.hget(key, "bal")) == before + 2_500_000
    entries = [e for _, f in rds.xrange(f"{ks.prefix}:{key.split(':')[1]}:outbox")
               for e in [f["e"]] if "portal-77" in e]
    assert len(entries) == 1
    assert pg.execute("SELECT applied_at IS NOT NULL FROM balance_adjustments").fetchone() == (
        True,)


def test_watch_applies_a_new_adjustment_without_a_snapshot_rebuild(
        cfg: Config, pg: psycopg.Connection, rb: redis.Redis, rds: redis.Redis):
    import_world(pg)
    stop = threading.Event()
    lines: list[str] = []
    watcher = threading.Thread(target=run_sync, daemon=True, kwargs={
        "cfg": cfg, "watch": True, "stop": stop, "out": lines.append})
    watcher.start()
    try:
        deadline = time.monotonic() + 30
        while not lines:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ks = keyspace_of(cfg)
        key = next(iter(rds.scan_iter(f"{ks.prefix}:*:a:{C3}")))
        before = int(rds.hget(key, "bal"))
        version = rds.get(ks.snapshot_current)
        pg.execute("INSERT INTO balance_adjustments (account, amount, ref) "
                   "VALUES (%s, 1000000, 'portal-78')", (C3,))
        deadline = time.monotonic() + 10
        while int(rds.hget(key, "bal")) != before + 1_000_000:
            assert time.monotonic() < deadline, "the adjustment was not applied"
            time.sleep(0.05)
        assert rds.get(ks.snapshot_current) == version
    finally:
        stop.set()
        watcher.join(30)
