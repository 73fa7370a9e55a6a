"""Redis Cluster: the configuration switch, where trees live, two daemons sharing accounts,
and the cluster failing over or moving slots under load.

The money paths' own tests also run on the cluster (the tests marked `also_on_cluster`,
ids `[cluster]`); these are the cluster's own. The cluster is tests/redis_cluster.py's:
three primaries, three replicas, on loopback, one per test run. `retail` charges 10000
micro-units a second (tests/e2e_world.py). Figures (gaps) are printed: run with `-s`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import gevent
import pytest
import redis
from redis.crc import key_slot

from rater.cli import main
from rater.config import Config, RedisConfig, load_config
from rater.errors import ConfigError
from rater.ledger.client import Ledger
from rater.ledger.keys import KeySpace
from rater.ledger.layout import even_owner, layout
from rater.redis_client import make_redis
from rater.shards import shard_of
from tests.conftest import EXAMPLE_CONFIG
from tests.e2e_world import CC, UK, dataset, running_world
from tests.process_world import CONFIG, PASSWORD, ProcessWorld, process_world
from tests.redis_servers import wait_until
from tests.test_redis_faults import (
    LOAD_ACCOUNTS,
    REFUSED_CAUSE,
    Load,
    assert_nothing_lost,
    decisions,
    load_dataset,
    observe,
)

RATE = 10_000


def on_cluster(cfg: Config, url: str) -> Config:
    return dataclasses.replace(cfg, redis=dataclasses.replace(cfg.redis, url=url))


# --- the switch -----------------------------------------------------------------------------

def test_a_redis_cluster_url_is_checked_and_builds_a_cluster_client():
    cfg = RedisConfig(url="redis+cluster://u:secret@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert cfg.cluster() == (
        [("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)], "u", "secret")
    assert RedisConfig().cluster() is None
    for url, message in [
        ("redis+cluster://a:1/3", "only database 0"),
        ("redis+cluster://a:x", "not a cluster node host[:port]"),
        ("redis+cluster://a:1?ssl=1", "no ?query"),
        ("redis+clustr://a:1", "redis+cluster://"),
    ]:
        with pytest.raises(ConfigError, match=r"redis\.url") as err:
            load_config(EXAMPLE_CONFIG, env={"RATER_REDIS_URL": url})
        assert message in str(err.value), (url, str(err.value))
        assert "secret" not in str(err.value)


def test_the_cluster_runs_are_on_a_cluster(redis_cluster):
    """What the `[cluster]` runs and the daemon get: a RedisCluster that sends each tree's
    script to the primary owning its slot (a plain client would get MOVED or CROSSSLOT)."""
    redis_cluster.wait_ok()
    client = make_redis(RedisConfig(url=redis_cluster.url))
    try:
        assert isinstance(client, redis.RedisCluster)
        assert len(client.get_primaries()) == 3
        ledger = Ledger(client, KeySpace())
        assert ledger.apply("op-1", "{s3}", []).ok
    finally:
        client.close()


# --- where trees live ---------------------------------------------------------------------------

def test_every_key_of_a_tree_is_in_its_shards_slot():
    ks = KeySpace(prefix="rt", shards=16)
    tag = ks.tag("1000000001")
    keys = [ks.account(tag, "2000000003"), ks.account(tag, "1000000001"),
            ks.bucket(tag, "ord-1"), ks.leg(tag, "uuid-1"), ks.live(tag), ks.ops(tag),
            ks.outbox(tag)]
    assert {key_slot(k.encode()) for k in keys} == {key_slot(tag.encode())}
    assert tag == f"{{s{shard_of('1000000001', 16)}}}"


def test_shards_spread_over_the_primaries_as_their_slots_say(redis_cluster, capsys, cfg,
                                                             monkeypatch):
    """`rater layout` on the live cluster agrees with the even split the test cluster was
    made with (three equal slot ranges, as `redis-cli --cluster create`); 16 shards land
    6/4/6 on three primaries, 48 land 17/15/16, and 10,000 trees follow their shards."""
    monkeypatch.setenv("RATER_REDIS_URL", redis_cluster.url)
    monkeypatch.setenv("RATER_DATABASE_URL", cfg.database.url)
    redis_cluster.wait_ok()
    assert main(["layout", "--trees", "10000", "--json"]) == 0
    live = json.loads(capsys.readouterr().out)
    assert main(["layout", "--trees", "10000", "--primaries", "3", "--json"]) == 0
    even = json.loads(capsys.readouterr().out)
    assert sorted(n["shards"] for n in live["nodes"]) == sorted(
        n["shards"] for n in even["nodes"]) == [4, 6, 6]
    assert sorted(n["trees"] for n in live["nodes"]) == sorted(n["trees"] for n in even["nodes"])
    assert sum(n["trees"] for n in live["nodes"]) == 10_000
    # the same trees, counted by hand from each tree's shard
    ks = KeySpace(shards=16)
    owner = even_owner(3)
    by_node: dict[str, int] = {}
    for n in range(10_000):
        node = owner(key_slot(ks.tag(f"{n:010d}").encode()))
        by_node[node] = by_node.get(node, 0) + 1
    assert {n["node"]: n["trees"] for n in even["nodes"]} == by_node
    wider = layout(KeySpace(shards=48), (f"{n:010d}" for n in range(10_000)), owner)
    assert [n.shards for n in wider.nodes] == [17, 15, 16]


# --- two daemons, two switches, one money state ------------------------------------------------

def start_second_daemon(first: ProcessWorld, tmp: Path) -> ProcessWorld:
    """Another `rater run` on its own simulated switch, same Redis and PostgreSQL."""
    from fssim.simulator import Simulator

    sim = Simulator(password=PASSWORD, heartbeat=20, max_sessions=5000).start()
    config_path = tmp / "rater2.toml"
    config_path.write_text(CONFIG.format(port=sim.port, debit_interval=2).replace(
        'name = "fs1"', 'name = "fs2"'))
    second = ProcessWorld(first.cfg, sim, first.database_url, first.redis_url, config_path,
                          tmp / "daemon2.log")
    second.start_daemon()
    return second


@pytest.mark.slow
def test_two_daemons_on_two_switches_never_overspend_a_shared_account(
        cfg, database_url, redis_cluster, tmp_path):
    """CC (0.60: 60 s at 10000/s) calls through two switches at once, each with its own
    daemon, 12 calls of 8 s on each (192 s wanted): together they are charged at most
    0.60, Redis and PostgreSQL agree on every balance, and each CDR is charged once for what
    its call talked, whichever daemon rated it and whichever flusher wrote it."""
    redis_cluster.wait_ok()
    with redis_cluster.client() as c:
        c.flushall()
    data = dataset()
    for a in data["accounts"]:
        if a["number"] == CC:
            a["balance"] = "0.60"
    cfg = on_cluster(cfg, redis_cluster.url)
    with process_world(cfg, database_url, redis_cluster.url, tmp_path, data=data) as one:
        one.start_daemon()
        two = start_second_daemon(one, tmp_path)
        try:
            for w in (one, two):
                w.sim.wait_for_listener(["CHANNEL_PARK"], timeout=30)
            uuids = []
            for _ in range(12):
                for w in (one, two):
                    uuids.append((w, w.sim.place_call(CC, UK, duration=8.0, park_timeout=10.0)))
            for w, uuid in uuids:
                w.sim.wait_for_hangup(uuid, 60)
            answered = {u: w.sim.call(u) for w, u in uuids if w.sim.call(u).answered}
            one.wait_for(lambda: len(one.sql("SELECT uuid FROM cdrs")) == len(answered), 60,
                         "every answered call's CDR")
            assert one.stop_daemon() == 0 and two.stop_daemon() == 0
        finally:
            two.sim.close()
            if two.daemon is not None:
                two.daemon.kill()
        rows = one.sql("SELECT uuid, billed_seconds, total_cost FROM cdrs WHERE account = %s",
                       CC)
        assert len(rows) == len(answered) > 0
        for uuid, billed, cost in rows:
            assert billed == -(-answered[uuid].billmsec // 1000), uuid
            assert cost == billed * RATE
        spent = sum(cost for _, _, cost in rows)
        assert 0 < spent <= 600_000
        [(pg_total,)] = one.sql("SELECT sum(amount) FROM ledger_entries WHERE account = %s", CC)
        with redis_cluster.client() as c:
            ks = KeySpace()
            bal, held, ch = c.hmget(ks.account(ks.tag(CC), CC), "bal", "held", "ch")
        assert int(bal) == 600_000 - spent == int(pg_total)
        assert (int(held), int(ch)) == (0, 0)
        # each switch's calls were admitted by its own daemon: both rated
        assert {w is one for w, u in uuids if u in answered} == {True, False}
        print(f"\n[two daemons] {len(uuids)} calls, {len(answered)} answered, "
              f"{spent / RATE:.0f} s charged of 60 s affordable")


# --- the cluster breaks under load ------------------------------------------------------------

def busiest_primary(redis_cluster, world) -> object:
    """The primary holding the most load accounts' trees."""
    counts: dict[int, int] = {}
    for number in LOAD_ACCOUNTS:
        tag = world.daemon.snapshots.current.account(number).tag
        node = redis_cluster.owner(tag)
        counts[node.port] = counts.get(node.port, 0) + 1
    port = max(counts, key=counts.get)
    return next(n for n in redis_cluster.nodes if n.port == port)


def run_fault(cfg, database_url, redis_cluster, break_it, label: str) -> None:
    """The fault runs' load (tests/test_redis_faults.py: 36 calls of 2-4 s at 6/s, every
    fifth on a three-level chain), the cluster broken by `break_it` after 12 calls; then
    nothing lost or doubled, and what was refused meanwhile was `internal_error`."""
    redis_cluster.wait_ok()
    with redis_cluster.client() as c:
        c.flushall()
    with running_world(on_cluster(cfg, redis_cluster.url), database_url,
                       data=load_dataset()) as world:
        load = Load(world).start()
        load.wait_placed(12)
        broke = time.monotonic()
        what = break_it(world)
        healed = time.monotonic()
        load.finish(60)
        with redis_cluster.client() as rds:
            obs = observe(world, load, rds)
            print(f"\n[{label}] {what}; {len(load.placed)} calls, {len(obs.answered)} "
                  f"answered and billed, {len(obs.refused)} refused (internal_error); the "
                  f"cluster was back {healed - broke:.2f} s after the break; slowest "
                  f"decision {decisions(world, load):.2f} s")
            assert_nothing_lost(world, obs, rds)
        for p in obs.refused:
            assert broke - 0.1 <= p.at <= healed + 2.0, (p, broke, healed)
        assert {world.sim.call(p.uuid).cause for p in obs.refused} <= {REFUSED_CAUSE}


@pytest.mark.slow
def test_a_planned_cluster_failover_mid_load_loses_nothing(cfg, database_url, redis_cluster):
    def fail_over(world) -> str:
        old = busiest_primary(redis_cluster, world)
        new = redis_cluster.failover(old)
        return f"CLUSTER FAILOVER {old.port} -> {new.port}"
    run_fault(cfg, database_url, redis_cluster, fail_over, "CLUSTER FAILOVER")


@pytest.mark.slow
def test_a_killed_primary_mid_load_is_replaced_and_nothing_is_lost(
        cfg, database_url, redis_cluster):
    """SIGKILL of the primary holding most of the load: its replica takes over after the
    node timeout (1 s here). Commands to the dead node fail; redis-py reads the slot map
    again and retries, and the ledger's callers retry what is idempotent, so calls are
    delayed or refused (internal_error) during the gap, never charged twice."""
    if redis_cluster.external:
        pytest.skip("kills a node: needs the test run's own cluster, not "
                    "RATER_TEST_REDIS_CLUSTER_URL's")
    killed = {}

    def kill(world) -> str:
        old = busiest_primary(redis_cluster, world)
        new = redis_cluster.kill(old)
        killed["node"] = old
        return f"primary {old.port} SIGKILLed, replica {new.port} took over"

    try:
        run_fault(cfg, database_url, redis_cluster, kill, "primary killed")
    finally:
        node = killed.get("node")
        if node is not None:  # back as a replica, for the next tests
            node.start()
            wait_until(lambda: node.role() == "slave", 30, "the old primary to rejoin")
            redis_cluster.wait_ok()


@pytest.mark.slow
def test_slots_moved_mid_load_lose_nothing(cfg, database_url, redis_cluster):
    """The slots of the busiest shards move to another primary while calls run (SETSLOT
    MIGRATING/IMPORTING, MIGRATE, SETSLOT NODE: `redis-cli --cluster reshard`'s steps).
    While a slot's keys are split between two nodes a script on them gets TRYAGAIN, which
    redis-py retries; ASK and MOVED are followed."""
    def reshard(world) -> str:
        tags = {world.daemon.snapshots.current.account(n).tag for n in LOAD_ACCOUNTS}
        moved = 0
        for tag in sorted(tags):
            source = redis_cluster.owner(tag)
            target = next(n for n in redis_cluster.primaries() if n is not source)
            moved += redis_cluster.move_slot(key_slot(tag.encode()), target)
            gevent.sleep(0)
        return f"{len(tags)} slots moved with {moved} keys"
    run_fault(cfg, database_url, redis_cluster, reshard, "reshard")
