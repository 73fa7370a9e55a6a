"""Publishing snapshots in Redis and `loader sync` (real PostgreSQL and Redis)."""

from __future__ import annotations

import json
import queue
import threading

import psycopg
import pytest
import redis

from loader.snapshot import ReferenceData, encode_snapshot
from loader.sync import run_sync, sync_once
from rater.config import Config
from rater.errors import ConfigError
from rater.ledger.keys import KeySpace
from rater.rating.snapshot_format import SnapshotError
from rater.redis_client import keyspace_of as redis_keyspace
from rater.snapshot_store import (
    current_version,
    fetch_current,
    load_current,
    publish,
    published_versions,
)
from tests.rating_world import C1, C3, R1, R2, import_world

KS = KeySpace(prefix="rt", shards=16)


@pytest.fixture
def rb(redis_url: str):
    """A binary Redis client, as snapshot blobs need."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def blob_of(version: int, keyspace: KeySpace = KS) -> bytes:
    ref = ReferenceData(version=version, rate_groups=[(1, "g", 0, None)],
                        rates=[(1, "outbound", "44", "UK", 1000 * version, 0, 0, 1, 1)])
    return encode_snapshot(ref, keyspace, built_at=1000.0 + version)


def keyspace_of(cfg: Config) -> KeySpace:
    return redis_keyspace(cfg.redis)


# --- the store -------------------------------------------------------------------------

@pytest.mark.also_on_cluster
def test_publish_fetch_and_keep_the_newest_versions(rb: redis.Redis):
    assert fetch_current(rb, KS) is None
    assert load_current(rb, KS) is None
    for v in range(1, 6):
        assert publish(rb, KS, blob_of(v), v, keep=3)
    assert published_versions(rb, KS) == [5, 4, 3]
    assert current_version(rb, KS) == 5
    assert fetch_current(rb, KS) == (5, blob_of(5))
    snap = load_current(rb, KS)
    assert snap.version == 5
    assert snap.rate(1, "outbound", "4412").tariff.price_per_min_micros == 5000
    assert load_current(rb, KS, known_version=5) is None  # nothing new


def test_an_older_version_never_replaces_a_newer_one_unless_forced(rb: redis.Redis):
    publish(rb, KS, blob_of(7), 7, keep=2)
    publish(rb, KS, blob_of(8), 8, keep=2)
    assert not publish(rb, KS, blob_of(6), 6, keep=2)
    assert current_version(rb, KS) == 8
    assert published_versions(rb, KS) == [8, 7]
    # Forced (a restored database): current goes back and is never pruned, though older
    # than the two newest.
    assert publish(rb, KS, blob_of(6), 6, keep=2, force=True)
    assert current_version(rb, KS) == 6
    assert published_versions(rb, KS) == [8, 7, 6]
    assert load_current(rb, KS).version == 6


def test_publish_announces_the_version(rb: redis.Redis):
    sub = rb.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(KS.snapshot_channel)
    sub.get_message(timeout=1)  # the subscribe confirmation
    publish(rb, KS, blob_of(3), 3, keep=2)
    message = sub.get_message(timeout=5)
    assert message is not None and message["data"] == b"3"
    sub.close()


def test_load_refuses_a_snapshot_built_for_another_shard_count(rb: redis.Redis):
    publish(rb, KS, blob_of(4, KeySpace(shards=8)), 4, keep=2)
    with pytest.raises(SnapshotError, match="built for 8 shards"):
        load_current(rb, KS)


def test_a_decoding_client_is_refused(rds: redis.Redis):
    with pytest.raises(TypeError, match="decode_responses"):
        fetch_current(rds, KS)


# --- loader sync -----------------------------------------------------------------------

@pytest.mark.also_on_cluster
def test_sync_publishes_and_seeds(cfg: Config, pg: psycopg.Connection, rds: redis.Redis,
                                  rb: redis.Redis):
    import_world(pg)
    (pg_version,) = pg.execute("SELECT version FROM reference_version").fetchone()
    lines: list[str] = []
    assert run_sync(cfg, watch=False, as_json=True, out=lines.append) == 0
    summary = json.loads(lines[0])
    assert summary["version"] == pg_version and summary["snapshot"] == "published"
    assert (summary["accounts"], summary["accounts_seeded"]) == (8, 8)
    assert (summary["buckets"], summary["buckets_seeded"]) == (7, 7)
    assert summary["snapshot_bytes"] > 0 and summary["seconds"] >= 0

    ks = keyspace_of(cfg)
    assert rds.hgetall(ks.meta) == {"shards": str(ks.shards)}
    assert load_current(rb, ks).version == pg_version
    # Balances are the opening ledger entries of the dataset, in micro-units.
    assert rds.hgetall(ks.account(ks.tag(R1), C1)) == {"bal": "10000000", "held": "0", "ch": "0"}
    assert rds.hget(ks.account(ks.tag(R1), R2), "bal") == "50000000"
    assert rds.hget(ks.account(ks.tag(C3), C3), "bal") == "5000000"
    # 100 free minutes with 600 s used.
    assert rds.hgetall(ks.bucket(ks.tag(R1), "o-uk-b")) == {
        "left": "5400", "held": "0", "period": "0", "cap": "6000"}
    assert rds.hgetall(ks.bucket(ks.tag(R1), "o-zero")) == {
        "left": "0", "held": "0", "period": "0", "cap": "0"}


@pytest.mark.also_on_cluster
def test_sync_never_overwrites_live_state(cfg: Config, pg: psycopg.Connection,
                                          rds: redis.Redis, rb: redis.Redis):
    import_world(pg)
    ks = keyspace_of(cfg)
    sync_once(cfg, rb)
    c1_key = ks.account(ks.tag(R1), C1)
    rds.hset(c1_key, mapping={"bal": "123", "held": "45", "ch": "1"})
    rds.hset(ks.bucket(ks.tag(R1), "o-uk-a"), "left", "17")
    # A ledger entry lands in PostgreSQL (as the flusher would write it): still untouched.
    pg.execute("INSERT INTO ledger_entries (id, account, amount, kind, created_at)"
               " VALUES ('call:x', %s, -999, 'call', now())", (C1,))

    again = sync_once(cfg, rb)
    assert (again.snapshot, again.accounts_seeded, again.buckets_seeded) == ("unchanged", 0, 0)
    assert rds.hgetall(c1_key) == {"bal": "123", "held": "45", "ch": "1"}
    assert rds.hget(ks.bucket(ks.tag(R1), "o-uk-a"), "left") == "17"


@pytest.mark.also_on_cluster
def test_a_change_in_postgres_publishes_and_seeds_only_what_is_new(
        cfg: Config, pg: psycopg.Connection, rds: redis.Redis, rb: redis.Redis):
    import_world(pg)
    first = sync_once(cfg, rb)
    (group,) = pg.execute("SELECT id FROM rate_groups WHERE name = 'wholesale'").fetchone()
    pg.execute("INSERT INTO accounts (number, kind, rate_group_id) VALUES ('2000000009',"
               " 'customer', %s)", (group,))
    pg.execute("INSERT INTO ledger_entries (id, account, amount, kind, created_at)"
               " VALUES ('opening:2000000009', '2000000009', 2500000, 'opening', now())")
    second = sync_once(cfg, rb)
    assert second.snapshot == "published" and second.version > first.version
    assert (second.accounts, second.accounts_seeded) == (9, 1)
    ks = keyspace_of(cfg)
    assert rds.hget(ks.account(ks.tag("2000000009"), "2000000009"), "bal") == "2500000"
    assert load_current(rb, ks).account("2000000009").top == "2000000009"


def test_a_different_shard_count_is_refused(cfg: Config, pg: psycopg.Connection,
                                            rds: redis.Redis):
    import_world(pg)
    rds.hset(keyspace_of(cfg).meta, "shards", cfg.redis.shards * 2)
    with pytest.raises(ConfigError, match=r"redis.shards: .* seeded with 32 shards"):
        run_sync(cfg, watch=False, as_json=False, out=lambda _: None)
    assert current_version(rds, keyspace_of(cfg)) is None  # nothing published or seeded
    assert rds.keys(f"{cfg.redis.key_prefix}:*:a:*") == []


@pytest.mark.also_on_cluster
def test_watch_resyncs_on_notify(cfg: Config, pg: psycopg.Connection, rb: redis.Redis):
    import_world(pg)
    lines: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    worker = threading.Thread(
        target=run_sync, kwargs={"cfg": cfg, "watch": True, "as_json": True, "stop": stop,
                                 "out": lines.put}, daemon=True)
    worker.start()
    try:
        first = json.loads(lines.get(timeout=30))
        assert first["snapshot"] == "published"
        (group,) = pg.execute("SELECT id FROM rate_groups WHERE name = 'wholesale'").fetchone()
        # A burst of changes (three statements, three notifications) gives one sync.
        for prefix in ("31", "32", "34"):
            pg.execute("INSERT INTO rates (rate_group_id, direction, prefix, price_per_min)"
                       " VALUES (%s, 'outbound', %s, 1000)", (group, prefix))
        second = json.loads(lines.get(timeout=30))
        (pg_version,) = pg.execute("SELECT version FROM reference_version").fetchone()
        assert (second["snapshot"], second["version"]) == ("published", pg_version)
        snap = load_current(rb, keyspace_of(cfg))
        assert snap.rate(group, "outbound", "3412").prefix == "34"
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert lines.empty()


def test_example_dataset_seeds_its_opening_balances(cfg: Config, pg: psycopg.Connection,
                                                    rds: redis.Redis, rb: redis.Redis):
    from datetime import UTC, datetime
    from pathlib import Path

    from loader.dataset import import_dataset_file

    import_dataset_file(pg, Path(__file__).parents[1] / "config" / "example-dataset.json",
                        now=datetime(2026, 11, 20, tzinfo=UTC))
    result = sync_once(cfg, rb)
    assert (result.accounts_seeded, result.snapshot) == (9, "published")
    ks = keyspace_of(cfg)
    balances = [int(rds.hget(key, "bal")) for key in rds.scan_iter(f"{ks.prefix}:*:a:*")]
    assert sorted(balances) == sorted([100_000_000, 0, 1_000_000, 0, 10_000_000, -5_000_000,
                                       5_000_000, 5_000_000, 0])
    assert sum(balances) == 116_000_000  # config/example-dataset.md
    # ord-1: UK 100 with 5970 of 6000 s used.
    assert rds.hgetall(ks.bucket(ks.tag("1000000001"), "ord-1")) == {
        "left": "30", "held": "0", "period": "0", "cap": "6000"}
