"""Redis itself fails under load: killed and restarted from its AOF, a machine crash that
loses the AOF's last second, failovers by Redis Sentinel.

Each end-to-end test runs the world of tests/e2e_world.py (simulator -> daemon -> Redis ->
flusher -> PostgreSQL) against private redis-server processes (tests/redis_servers.py),
places 36 calls of 2 to 4 s at 6 calls a second, breaks Redis in the middle, and checks the
money afterwards: no CDR or ledger entry twice and each call charged once for what it
talked; every answered call has its CDR; `rater reconcile` (every balance in Redis equals
opening + its ledger entries in PostgreSQL) finds nothing; no hold, channel or live leg is
left in Redis; calls refused meanwhile are refused with `internal_error`. Where Redis loses
acknowledged writes (a machine crash with `everysec`, a bare `SENTINEL FAILOVER`), the tests
pin down exactly what is lost instead. `retail` charges 10000 micro-units a second.

The figures (outage, gap, losses) are printed: run with `-s` to see them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import psycopg
import pytest
import redis

from rater.config import Config, RedisConfig, load_config
from rater.daemon import Daemon
from rater.errors import ConfigError
from rater.ledger.client import Ledger
from rater.ledger.keys import KeySpace
from rater.rating.chain import LegPlan, LevelPlan
from rater.rating.tariff import Tariff
from rater.reconcile import ReconcileReport, reconcile
from rater.redis_client import SentinelBlockingConnectionPool, make_redis
from tests.e2e_world import C3, UK, World, dataset, running_world
from tests.redis_servers import RedisNode, SentinelGroup, wait_until

slow = pytest.mark.slow

RATE = 10_000                     # micro-units per second at `retail`
LOAD_ACCOUNTS = [f"20000001{i:02d}" for i in range(8)]
REFUSED_CAUSE = "NORMAL_TEMPORARY_FAILURE"  # rating.hangup_causes.internal_error
# Seconds Redis stays down. The client retries a failed script for about 1.4 s (redis-py's
# Retry: 3 more tries, each connecting up to 4 times, backing off 40-160 ms) before the call
# is refused: a shorter outage only delays call set-up.
OUTAGE = 3.0


def load_dataset() -> dict:
    """The e2e world plus eight prepaid `retail` accounts with 5.00 each (spread over the
    shards), so the load never runs out of money."""
    data = dataset()
    data["accounts"] += [
        {"number": n, "parent": None, "kind": "customer", "balance": "5.00",
         "rate_group": "retail"} for n in LOAD_ACCOUNTS]
    return data


def with_redis(cfg: Config, url: str) -> Config:
    return dataclasses.replace(cfg, redis=dataclasses.replace(cfg.redis, url=url))


@pytest.fixture
def sentinel_sync(monkeypatch):
    """`loader sync` opens Redis from the URL itself (loader.sync.redis_client), which knows
    no redis+sentinel://: the world syncs through make_redis instead."""
    import tests.e2e_world as e2e

    monkeypatch.setattr(e2e, "redis_client",
                        lambda c: make_redis(c.redis, max_connections=4, socket_timeout=30))


# --- the load -------------------------------------------------------------------------------

@dataclass
class Placed:
    uuid: str
    account: str
    at: float                     # time.monotonic() when placed


@dataclass
class Load:
    """`count` calls at `cps` calls a second, talking 2, 3 or 4 s (plus a few tenths), over
    the load accounts, every fifth from C3 (three paying levels: C3, R2, R1). Callers wait
    up to 10 s in park for a decision."""

    world: World
    count: int = 36
    cps: float = 6.0
    placed: list[Placed] = field(default_factory=list)
    greenlet: gevent.Greenlet | None = None

    def start(self) -> Load:
        self.greenlet = gevent.spawn(self._run)
        return self

    def _run(self) -> None:
        start = time.monotonic()
        for i in range(self.count):
            gevent.sleep(max(0.0, start + i / self.cps - time.monotonic()))
            account = C3 if i % 5 == 4 else LOAD_ACCOUNTS[i % len(LOAD_ACCOUNTS)]
            uuid = self.world.call(account, UK, duration=2.0 + i % 3 + 0.1 * (i % 4),
                                   answer_after=0.05, park_timeout=10.0)
            self.placed.append(Placed(uuid, account, time.monotonic()))

    def wait_placed(self, n: int, timeout: float = 30) -> None:
        wait_until(lambda: len(self.placed) >= n, timeout, f"{n} calls placed")

    def finish(self, timeout: float = 40) -> None:
        """Until every call was placed and has ended, and the daemon settled and flushed."""
        self.greenlet.join(timeout)
        assert self.greenlet.dead and self.greenlet.successful(), "the load did not finish"
        self.world.sim.wait_all_done(timeout)
        self.world.settle(timeout)


# --- what happened to the money -----------------------------------------------------------

@dataclass
class Observed:
    answered: set[str]
    refused: list[Placed]
    cdrs: dict[str, tuple]                 # uuid -> (account, billed, cost, settlement)
    orphans: dict[str, str]                # leg live in Redis after everything ended -> tag
    report: ReconcileReport


def observe(world: World, load: Load, rds: redis.Redis) -> Observed:
    """Check what must hold whatever Redis lost: no CDR or ledger entry twice, each CDR
    charged once for what its call talked, refusals only `internal_error`; and return the
    rest (CDRs, legs still live in Redis, the reconcile report) for the test to judge."""
    sim = world.sim
    answered = {p.uuid for p in load.placed if sim.call(p.uuid).answered}
    refused = [p for p in load.placed if not sim.call(p.uuid).answered]
    assert {sim.call(p.uuid).cause for p in refused} <= {REFUSED_CAUSE}, "refused otherwise"
    metric = world.daemon.metrics.calls_refused
    assert metric.labels("internal_error")._value.get() == len(refused)
    for reason in ("insufficient_funds", "max_channels", "unknown_account", "no_rate"):
        assert metric.labels(reason)._value.get() == 0, reason

    rows = world.sql("SELECT uuid, account, billed_seconds, total_cost, settlement FROM cdrs")
    cdrs = {r[0]: r[1:] for r in rows}
    assert len(cdrs) == len(rows)                      # no CDR twice (also its primary key)
    assert set(cdrs) <= answered
    ledger = world.sql("SELECT id, account, amount, ref FROM ledger_entries WHERE kind = 'call'")
    assert len({r[0] for r in ledger}) == len(ledger)  # no ledger entry twice
    for uuid, (account, billed, cost, _settlement) in cdrs.items():
        talked = -(-sim.call(uuid).billmsec // 1000)    # seconds started, as billed
        # charged once, for what was talked (a call cut at the end of its paid time because
        # Redis was away when its next chunk fell due talked exactly what it paid for)
        assert billed == talked, (uuid, billed, talked)
        if account != C3:
            assert cost == billed * RATE, (uuid, cost, billed)
        entries = [r for r in ledger if r[3] == uuid]
        assert len(entries) == (3 if account == C3 else 1), (uuid, entries)
        assert [r[2] for r in entries if r[1] == account] == [-cost]
    ks: KeySpace = world.daemon.keys
    orphans = {}
    for shard in range(ks.shards):
        tag = ks.tag_of_shard(shard)
        orphans.update(dict.fromkeys((u.decode() for u in rds.smembers(ks.live(tag))), tag))
    with psycopg.connect(world.database_url, autocommit=True) as conn:
        report = reconcile(rds, conn, ks, rechecks=2, recheck_pause=0.3)
    return Observed(answered, refused, cdrs, orphans, report)


def holds_and_channels(world: World, rds: redis.Redis) -> dict[str, tuple[int, int]]:
    """Accounts whose `held` or `ch` is not 0 in Redis."""
    ks = world.daemon.keys
    left = {}
    for number in [*LOAD_ACCOUNTS, C3, "1000000001", "1000000002"]:
        tag = world.daemon.snapshots.current.account(number).tag
        held, ch = rds.hmget(ks.account(tag, number), "held", "ch")
        if int(held or 0) or int(ch or 0):
            left[number] = (int(held or 0), int(ch or 0))
    return left


def assert_nothing_lost(world: World, obs: Observed, rds: redis.Redis) -> None:
    assert set(obs.cdrs) == obs.answered, "an answered call has no CDR"
    assert all(s == "final" for _, _, _, s in obs.cdrs.values())
    assert obs.report.ok, obs.report.to_dict()
    assert obs.orphans == {}, "legs still live in Redis"
    assert holds_and_channels(world, rds) == {}


def assert_losses_explained(world: World, obs: Observed) -> dict[str, int]:
    """Redis lost the effect of some commits its flusher had already copied to PostgreSQL:
    their legs are live again in Redis, still holding money and a channel, and their
    accounts' balances in Redis are higher than PostgreSQL's by exactly what those calls
    cost (nothing was taken twice: no difference goes the other way). Returns the money
    missing from Redis per account."""
    missing: dict[str, int] = {}
    for uuid in obs.orphans:
        if uuid in obs.cdrs:
            for account, amount in world.sql(
                    "SELECT account, amount FROM ledger_entries WHERE ref = %s", uuid):
                missing[account] = missing.get(account, 0) - amount
    found = {d.account: d.difference for d in obs.report.differences}
    assert all(d.kind == "account" for d in obs.report.differences), obs.report.to_dict()
    assert found == missing, (found, missing)
    return missing


def restart_daemon(world: World, rds: redis.Redis) -> float:
    """Stop the daemon and start a new one: adoption settles the legs Redis still holds live
    (their channels are gone) from FreeSWITCH's records. Returns how long that took."""
    world.daemon.stop()
    started = time.monotonic()
    world.daemon = Daemon(world.cfg)
    world.daemon.start()
    ks = world.daemon.keys
    wait_until(lambda: not any(rds.scard(ks.live(ks.tag_of_shard(s)))
                               for s in range(ks.shards)), 30, "the live legs to be settled")
    world.settle()
    return time.monotonic() - started


def unbilled(world: World, obs: Observed, rds: redis.Redis) -> set[str]:
    """Answered calls with no CDR and no leg in Redis: Redis lost their leg (their
    authorization), so every later reservation and the commit were refused `unknown_leg`
    and nothing was charged. (A leg still live in Redis without a CDR is an undone commit
    that was not flushed yet: the restart settles it.)"""
    missing = obs.answered - set(obs.cdrs) - set(obs.orphans)
    ks = world.daemon.keys
    for uuid in missing:
        tag = world.daemon.snapshots.current.account(world.sim.call(uuid).account).tag
        assert not rds.exists(ks.leg(tag, uuid)), f"{uuid}: leg known to Redis, no CDR"
    return missing


def assert_lost_between(world: World, obs: Observed, never: set[str], start: float,
                        end: float) -> None:
    """Every lost write ran on Redis between `start` and `end` (wall-clock seconds): the
    commits undone (their CDR's recorded_at is when the daemon ran the commit) and the
    authorizations lost (admitted after them)."""
    for uuid in set(obs.orphans) & set(obs.cdrs):
        [(at,)] = world.sql("SELECT extract(epoch FROM recorded_at)::float8 FROM cdrs "
                            "WHERE uuid = %s", uuid)
        assert start - 0.05 <= at <= end, ("commit", uuid, at - start, end - start)
    for uuid in never:
        admitted = world.sim.call(uuid).transferred_us / 1e6
        assert start - 0.01 <= admitted <= end, ("authorize", uuid, admitted - start,
                                                 end - start)


def talk(world: World, uuids: set[str]) -> float:
    return sum(world.sim.call(u).billmsec for u in uuids) / 1000


def decisions(world: World, load: Load) -> float:
    """Longest park -> admit of the calls admitted (seconds)."""
    times = [(c.transferred_us - c.created_us) / 1e6 for c in
             (world.sim.call(p.uuid) for p in load.placed) if c.transferred_us]
    return max(times, default=0.0)


# --- 1. Redis killed and restarted from its AOF ------------------------------------------------

@slow
@pytest.mark.parametrize("appendfsync", ["everysec", "always"])
def test_redis_killed_mid_load_restarts_from_its_aof_and_loses_nothing(
        cfg, database_url, tmp_path: Path, appendfsync: str):
    """SIGKILL is a process crash, not a machine crash: what Redis wrote to its AOF is in the
    kernel's page cache and survives, with `everysec` as with `always` (Redis write()s the
    AOF before it answers; `everysec` only delays the fsync). So nothing acknowledged is
    lost; the outage refuses new calls (internal_error), cuts calls whose next chunk fell
    due at the end of what they had paid, and delays commits, which land once Redis is
    back."""
    node = RedisNode(tmp_path / "redis", appendonly=True, appendfsync=appendfsync).start()
    try:
        with running_world(with_redis(cfg, node.url), database_url, data=load_dataset()) as world:
            load = Load(world).start()
            load.wait_placed(12)
            killed = time.monotonic()
            node.kill()
            gevent.sleep(OUTAGE)            # the outage: calls keep coming
            node.start()
            back = time.monotonic()
            load.finish()
            with node.client() as rds:
                obs = observe(world, load, rds)
                print(f"\n[aof {appendfsync}, SIGKILL] {len(load.placed)} calls: "
                      f"{len(obs.answered)} answered and billed, {len(obs.refused)} refused "
                      f"(internal_error) in a {back - killed:.2f} s outage; slowest decision "
                      f"{decisions(world, load):.2f} s; "
                      f"{world.daemon.flusher.stats.duplicates} rows flushed twice, skipped")
                assert_nothing_lost(world, obs, rds)
            assert obs.refused, "no call was refused during the outage"
            for p in obs.refused:           # refused only while Redis was away
                assert killed - 0.1 <= p.at <= back + 0.2, (p, killed, back)
    finally:
        node.stop()


# --- 2. a machine crash with appendfsync everysec ---------------------------------------------

class AofSizes:
    """Samples the size of the AOF file Redis appends to, every 20 ms, to cut it later to
    what it held some time before a kill: the file a machine crash leaves with `appendfsync
    everysec` when the last fsync was that long ago (the page cache dies with the machine;
    a killed process loses nothing). Redis loads a truncated AOF (aof-load-truncated yes,
    the default), dropping the last incomplete command."""

    def __init__(self, node: RedisNode) -> None:
        self.node = node
        self.samples: list[tuple[float, float, int]] = []   # (monotonic, wall, size)
        self._g = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            size = self.node.aof_file().stat().st_size
            self.samples.append((time.monotonic(), time.time(), size))
            gevent.sleep(0.02)

    def cut(self, at: float, seconds: float) -> tuple[int, int, float]:
        """Truncate the AOF to its size `seconds` before `at`: (bytes before, after, the
        wall-clock time of that size: every write acknowledged before it is kept)."""
        self._g.kill()
        path = self.node.aof_file()
        _, wall, size = max(s for s in self.samples if s[0] <= at - seconds)
        old = path.stat().st_size
        os.truncate(path, size)
        return old, size, wall


@slow
def test_a_machine_crash_with_everysec_loses_the_last_second(cfg, database_url, tmp_path):
    """What a machine crash (power loss, kernel panic) does with `appendfsync everysec`:
    the AOF loses what was written after the last fsync, up to a second (up to two when
    the disk is slow: Redis then postpones writes). Emulated by cutting the AOF to its size
    1 s before the kill. Redis comes back a second in the past while the daemon and
    PostgreSQL are not:

    - commits of that second whose outbox entry the flusher had already copied: in
      PostgreSQL (CDR, ledger entries), undone in Redis (the leg is live again, its holds
      and channel taken, the balance not debited). `rater reconcile` shows each such
      account's Redis balance higher than PostgreSQL's by exactly those calls' cost
      (money lost, never doubled); restarting the daemon settles the legs again from
      FreeSWITCH's records, with the same ledger entry ids (PostgreSQL skips them), which
      repairs Redis: reconcile is clean again.
    - authorizations of that second: the leg is gone from Redis, the call goes on, its
      next reservation (or its commit) is answered `unknown_leg`: the daemon authorizes
      the leg again from its snapshot and the call is billed (it used to go unbilled,
      unseen by reconcile: nothing in Redis, nothing in PostgreSQL)."""
    node = RedisNode(tmp_path / "redis", appendonly=True, appendfsync="everysec",
                     config={"auto-aof-rewrite-percentage": "0"}).start()
    try:
        with running_world(with_redis(cfg, node.url), database_url, data=load_dataset()) as world:
            sizes = AofSizes(node)
            load = Load(world).start()
            load.wait_placed(18)
            killed, killed_wall = time.monotonic(), time.time()
            node.kill()
            before, after, kept_until = sizes.cut(killed, 1.0)
            node.start()
            load.finish()
            with node.client() as rds:
                obs = observe(world, load, rds)
                assert obs.refused == []   # Redis was back in a few ms
                missing = assert_losses_explained(world, obs)
                lost_commits = set(obs.orphans) & set(obs.cdrs)
                never = unbilled(world, obs, rds)
                assert_lost_between(world, obs, never, kept_until, killed_wall)
                stuck = holds_and_channels(world, rds)
                repaired = restart_daemon(world, rds)
                again = observe(world, load, rds)
                print(f"\n[aof everysec, machine crash: the AOF's last "
                      f"{killed_wall - kept_until:.2f} s cut, {before} -> {after} bytes] "
                      f"{len(lost_commits)} flushed commits undone in Redis "
                      f"({sum(missing.values())} micro-units missing from Redis balances: "
                      f"{missing}); {len(obs.orphans)} legs live again, holding (held, ch) "
                      f"{stuck}; repaired by a daemon restart in {repaired:.2f} s; "
                      f"{len(never)} answered calls never billed "
                      f"({talk(world, never):.1f} s of talk)")
                assert again.report.ok, again.report.to_dict()
                assert again.orphans == {} and holds_and_channels(world, rds) == {}
                assert set(again.cdrs) == obs.answered - never
                assert lost_commits <= set(again.cdrs)
                assert again.cdrs.keys() - obs.cdrs.keys() == set(obs.orphans) - set(obs.cdrs)
            assert not never, f"{len(never)} answered calls were never billed"
    finally:
        node.stop()


# --- 3. Sentinel failovers ------------------------------------------------------------------

@slow
def test_a_sentinel_connection_cut_mid_reply_is_never_reused(tmp_path):
    """redis-py's SentinelManagedConnection does not disconnect when a read is cut short
    (it defaults disconnect_on_error to False): the reply still in flight was read by the
    next command that took the connection from the pool. Ours disconnects."""
    with SentinelGroup(tmp_path / "s", replicas=0, sentinels=1) as group:
        client = make_redis(RedisConfig(url=group.url, pool_size=2))
        try:
            client.rpush("list", "x")
            conn = client.connection_pool.get_connection()
            conn.send_command("BLPOP", "nothing", 1)   # answers nil after a second
            with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):
                conn.read_response()
            assert conn._sock is None
            client.connection_pool.release(conn)
            assert client.lpop("list") == b"x"         # not BLPOP's late nil
        finally:
            client.close()


@dataclass
class Failover:
    world: World
    load: Load
    group: SentinelGroup
    old: RedisNode
    new: RedisNode
    broke: float                  # time.monotonic() when the primary was broken
    switched: float               # ... when every Sentinel named the new primary
    broke_wall: float             # time.time() when the primary was broken
    switched_wall: float          # time.time() when every Sentinel named the new primary


def failover_world(cfg, database_url, root: Path, break_primary):
    """Context manager: the world through a primary, a replica and three Sentinels, the
    load, the primary broken after 12 calls by `break_primary(group, old)`; yields once
    every Sentinel names another primary."""

    @contextmanager
    def run():
        with SentinelGroup(root) as group, \
                running_world(with_redis(cfg, group.url), database_url,
                              data=load_dataset()) as world:
            load = Load(world).start()
            load.wait_placed(12)
            old = group.current_primary()
            broke, broke_wall = time.monotonic(), time.time()
            break_primary(group, old)
            new = group.wait_primary(old.port)
            yield Failover(world, load, group, old, new, broke, time.monotonic(), broke_wall,
                           time.time())

    return run()


def gap(f: Failover) -> str:
    """When the Sentinels named the new primary, and when the daemon admitted a call again:
    the first admission of a call placed after the break (the calls refused before it are
    the ones the gap cost)."""
    admitted = [f.world.sim.call(p.uuid).transferred_us / 1e6 for p in f.load.placed
                if p.at > f.broke and f.world.sim.call(p.uuid).transferred_us]
    first = min(admitted, default=float("nan")) - f.broke_wall
    return (f"Sentinels named the new primary {f.switched - f.broke:.2f} s after the break, "
            f"the first call placed after it admitted {first:.2f} s after")


@slow
def test_planned_switchover_pause_then_sentinel_failover_loses_nothing(
        cfg, database_url, tmp_path, sentinel_sync):
    """The planned way: `CLIENT PAUSE 5000 WRITE` on the primary, then `SENTINEL FAILOVER`.
    No write lands on the old primary after the replica took over: the daemon's commands
    wait in the pause until the pool sees the new primary (within PRIMARY_CHECK_INTERVAL
    of the Sentinels switching), which cuts them off and retries them there. Nothing is
    lost, nothing doubled, no call refused: decisions are delayed about a second."""
    def pause_and_fail_over(group: SentinelGroup, old: RedisNode) -> None:
        with old.client() as c:
            c.execute_command("CLIENT", "PAUSE", "5000", "WRITE")
        group.failover()

    with failover_world(cfg, database_url, tmp_path / "sentinel", pause_and_fail_over) as f:
        f.load.finish()
        with f.new.client() as rds:
            obs = observe(f.world, f.load, rds)
            print(f"\n[paused + SENTINEL FAILOVER] {len(f.load.placed)} calls, "
                  f"{len(obs.answered)} answered and billed, {len(obs.refused)} refused; "
                  f"{gap(f)}; slowest decision {decisions(f.world, f.load):.2f} s")
            assert_nothing_lost(f.world, obs, rds)
        assert obs.refused == []


@slow
def test_a_killed_primary_is_replaced_and_the_daemon_follows(
        cfg, database_url, tmp_path, sentinel_sync):
    """The primary is SIGKILLed: the Sentinels agree it is down after down-after-milliseconds
    (1 s here), elect a leader and promote the replica. Meanwhile calls are refused with
    internal_error (or wait, up to ~1.4 s of retries, and pass); afterwards the daemon
    writes to the new primary. Replication is asynchronous: a write acknowledged by the
    primary in the instant before it died and not yet sent to the replica would be lost
    (on loopback that window is microseconds; nothing was lost here)."""
    with failover_world(cfg, database_url, tmp_path / "sentinel",
                        lambda group, old: old.kill()) as f:
        f.load.finish()
        with f.new.client() as rds:
            obs = observe(f.world, f.load, rds)
            print(f"\n[primary killed] {len(f.load.placed)} calls, {len(obs.answered)} "
                  f"answered and billed, {len(obs.refused)} refused (internal_error); "
                  f"{gap(f)}; slowest decision {decisions(f.world, f.load):.2f} s")
            assert_nothing_lost(f.world, obs, rds)
        for p in obs.refused:
            assert f.broke - 0.1 <= p.at <= f.switched + 0.5, (p, f.broke, f.switched)


@slow
def test_a_bare_sentinel_failover_loses_the_writes_of_about_a_second(
        cfg, database_url, tmp_path, sentinel_sync):
    """`SENTINEL FAILOVER` alone: Sentinel promotes the replica without stopping writes to
    the old primary, which stays a primary, accepting writes, until Sentinel turns it into
    a replica about ten seconds later, and those writes are then thrown away. The pool
    notices the new primary within PRIMARY_CHECK_INTERVAL of the Sentinels switching
    (about a second after the promotion) and leaves the old one: what the daemon wrote in
    between is lost, as after a machine crash (test above): commits already flushed are
    undone in Redis (reconcile names the accounts, a daemon restart repairs them) and
    calls authorized there are authorized again and billed. Without the pool's check the daemon kept
    writing to the old primary for the whole ten seconds."""
    with failover_world(cfg, database_url, tmp_path / "sentinel",
                        lambda group, old: group.failover()) as f:
        f.load.finish()
        with f.new.client() as rds:
            obs = observe(f.world, f.load, rds)
            assert obs.refused == []     # the old primary accepted everything
            missing = assert_losses_explained(f.world, obs)
            never = unbilled(f.world, obs, rds)
            # only what ran on the old primary between the promotion and the pool's next
            # check after the Sentinels switched (a second of margin for a busy machine)
            assert_lost_between(f.world, obs, never, f.broke_wall, f.switched_wall + 1.0)
            stuck = holds_and_channels(f.world, rds)
            repaired = restart_daemon(f.world, rds)
            again = observe(f.world, f.load, rds)
            print(f"\n[bare SENTINEL FAILOVER] Sentinels named the new primary "
                  f"{f.switched - f.broke:.2f} s after; "
                  f"{len(set(obs.orphans) & set(obs.cdrs))} flushed commits undone in Redis "
                  f"({sum(missing.values())} micro-units missing: {missing}); "
                  f"{len(obs.orphans)} legs live again, holding (held, ch) {stuck}; "
                  f"repaired by a daemon restart in {repaired:.2f} s; {len(never)} answered "
                  f"calls never billed ({talk(f.world, never):.1f} s of talk)")
            assert again.report.ok, again.report.to_dict()
            assert again.orphans == {} and holds_and_channels(f.world, rds) == {}
        assert not never, f"{len(never)} answered calls were never billed"


# --- 4. what waiting for the replica (WAIT) or the disk (appendfsync always) costs ----------

def _per_call(ledger: Ledger, client: redis.Redis, wait: bool, concurrency: int = 1,
              n: int = 300, timeouts: list[int] | None = None) -> float:
    """Seconds per call of authorize + reserve + commit (`n` calls in `concurrency`
    greenlets at once), each script followed by `WAIT 1 100` on the same connection when
    `wait` (what a ledger waiting for its replica would send), counting in `timeouts`
    [WAITs that timed out, WAITs]. Best of two runs: with one greenlet the latency of a
    call, with many the inverse of the throughput."""
    timeouts = timeouts if timeouts is not None else [0, 0]
    ks = ledger.keys
    tag = ks.tag("2000000001")
    client.hset(ks.account(tag, "2000000001"), mapping={"bal": 10**15, "held": 0, "ch": 0})
    plan = LegPlan("2000000001", "outbound", UK, tag, (LevelPlan(
        "2000000001", "retail", "44", "UK", Tariff(600_000), 0, 0, ()),))
    acks: list[int] = []

    def calls(worker: int) -> None:
        for i in range(worker, n, concurrency):
            uuid = f"cost-{time.monotonic_ns()}-{i}"
            keys = ledger.leg_keys(uuid, plan)
            for step in range(3):
                if step == 0:
                    ledger.authorize(uuid, plan, cap_seconds=600)
                elif step == 1:
                    ledger.reserve(keys, 1, 60)
                else:
                    ledger.commit(keys, uuid, 30)
                if wait:
                    acks.append(ledger._calls.call("WAIT", 1, 100))

    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        workers = [gevent.spawn(calls, w) for w in range(concurrency)]
        gevent.joinall(workers, raise_error=True)
        best = min(best, (time.perf_counter() - started) / n)
    if wait:
        timeouts[0] += acks.count(0)       # the replica did not ack within 100 ms
        timeouts[1] += len(acks)
        assert set(acks) <= {0, 1} and acks.count(1) > len(acks) * 0.9, acks.count(0)
    return best


@slow
def test_what_waiting_for_the_replica_or_the_disk_costs_per_call(tmp_path):
    """The price of the two ways to lose nothing acknowledged: `WAIT 1 100` after each
    script (the replica has it before the daemon goes on) and `appendfsync always` (the
    disk has it before Redis answers). Printed per call of three scripts, one at a time
    (latency) and 32 at once (throughput), on this machine's disk with the replica on
    loopback."""
    ks = KeySpace(shards=4)
    cost = {}
    timeouts = [0, 0]
    with SentinelGroup(tmp_path / "s", replicas=1, sentinels=1) as group:
        client = make_redis(RedisConfig(url=group.url, pool_size=64))
        ledger = Ledger(client, ks, leg_ttl_seconds=3600)
        for c in (1, 32):
            cost["everysec", c] = _per_call(ledger, client, False, c)
            cost["WAIT", c] = _per_call(ledger, client, True, c, timeouts=timeouts)
        client.close()
    node = RedisNode(tmp_path / "always", appendonly=True, appendfsync="always").start()
    try:
        client = make_redis(RedisConfig(url=node.url, pool_size=64))
        ledger = Ledger(client, ks, leg_ttl_seconds=3600)
        for c in (1, 32):
            cost["always", c] = _per_call(ledger, client, False, c)
        client.close()
    finally:
        node.stop()
    for c, what in ((1, "one at a time"), (32, "32 at once")):
        base = cost["everysec", c]
        print(f"\n[cost per call, 3 scripts, {what}] everysec {base * 1e3:.3f} ms; "
              f"+ WAIT 1 100 after each script {cost['WAIT', c] * 1e3:.3f} ms "
              f"(+{(cost['WAIT', c] / base - 1) * 100:.0f}%); appendfsync always "
              f"{cost['always', c] * 1e3:.3f} ms (+{(cost['always', c] / base - 1) * 100:.0f}%)")
    print(f"[WAIT 1 100] {timeouts[0]} of {timeouts[1]} timed out (replica ack > 100 ms)")


# --- the configuration ----------------------------------------------------------------------

def test_a_redis_sentinel_url_is_checked_and_builds_a_sentinel_pool():
    def cfg_for(url: str) -> Config:
        return load_config(None, env={"RATER_REDIS_URL": url})

    cfg = cfg_for("redis+sentinel://10.0.0.1:26380,10.0.0.2/mymaster/3")
    assert cfg.redis.sentinel() == (
        [("10.0.0.1", 26380), ("10.0.0.2", 26379)], "mymaster", 3, None, None)
    client = make_redis(cfg.redis)
    pool = client.connection_pool
    assert isinstance(pool, SentinelBlockingConnectionPool)
    assert (pool.max_connections, pool.timeout) == (64, 2.0)     # the same bound
    assert pool.connection_kwargs["socket_timeout"] == 2.0
    assert pool.connection_kwargs["db"] == 3
    client.close()
    assert cfg_for("redis+sentinel://:s3cret@h:1/m").describe()["redis"]["url"] == (
        "redis+sentinel://:***@h:1/m")
    several = cfg_for("redis+sentinel://u:s3cret@a:1,b:2/m")  # every Sentinel, one password
    assert several.redis.sentinel()[0] == [("a", 1), ("b", 2)]
    assert several.describe()["redis"]["url"] == "redis+sentinel://u:***@a:1,b:2/m"
    for bad, what in [("redis+sentinel://h:1/", "service name"),
                      ("redis+sentinel://h:x/m", "not a Sentinel host"),
                      ("redis+sentinel://h/m/0?x=1", "no ?query"),
                      ("sentinel://h/m", "must be a redis://")]:
        with pytest.raises(ConfigError, match=re.escape(what)):
            cfg_for(bad)
    assert RedisConfig().sentinel() is None
