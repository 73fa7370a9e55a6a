"""Faults made real: `rater run` SIGKILLed with a hundred live calls and started again; the
daemon's PostgreSQL unreachable under load. Every call charged exactly once, for its real
duration (from the simulator's own record of it), and the books reconcile.

Amounts: tests/e2e_world.py's retail tariff, 10000 micro-units a second, billed per second.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import psycopg
import pytest

from fssim.channel import CallState
from loader.sync import redis_client
from rater.reconcile import reconcile
from rater.redis_client import keyspace_of
from tests.e2e_world import CC, UK, dataset
from tests.process_world import ProcessWorld, process_world
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

CALLS = 100


def rich_world() -> dict:
    """The e2e world with CC able to pay a hundred calls at once (100.00: 10000 s)."""
    data = dataset()
    for account in data["accounts"]:
        if account["number"] == CC:
            account["balance"] = "100.00"
    return data


def check_every_call_charged_once(world: ProcessWorld, uuids: list[str]) -> None:
    """One CDR per call, billed from the call's real duration, and money that reconciles."""
    rows = dict(world.sql("SELECT uuid, billed_seconds FROM cdrs"))
    assert sorted(rows) == sorted(uuids), "a call with no CDR, or a CDR of no call"
    expected = 0
    for uuid in uuids:
        call = world.sim.call(uuid)
        billed = -(-call.billmsec // 1000) if call.answered_us else 0
        assert rows[uuid] == billed, (uuid, rows[uuid], billed)
        expected += billed * 10_000
    [(spent,)] = world.sql("SELECT -COALESCE(sum(amount), 0) FROM ledger_entries"
                           " WHERE account = %s AND kind = 'call'", CC)
    assert spent == expected
    rds = redis_client(world.cfg)
    try:
        with psycopg.connect(world.database_url) as conn:
            report = reconcile(rds, conn, keyspace_of(world.cfg.redis))
    finally:
        rds.close()
    assert report.ok, report.differences


def test_sigkill_with_a_hundred_live_calls_then_restart(cfg, database_url, redis_url, tmp_path):
    # 10 s chunks: the 3 s outage is shorter than what each call has reserved, so the
    # switch's safety nets let the calls talk on (README: What is guaranteed)
    with process_world(cfg, database_url, redis_url, tmp_path, data=rich_world(),
                       debit_interval=10) as world:
        world.start_daemon()
        world.sim.wait_for_listener(["CHANNEL_PARK"], timeout=30)
        uuids = [world.sim.place_call(CC, UK, duration=8 + (i % 5) * 0.37, park_timeout=30)
                 for i in range(CALLS)]
        world.wait_for(lambda: sum(world.sim.call(u).answered for u in uuids) == CALLS,
                       timeout=60, what="every call answered")
        world.kill_daemon()
        down_at = time.monotonic()
        # while it is down: more calls park (and wait), some live calls end unseen
        late = [world.sim.place_call(CC, UK, duration=2.3, park_timeout=30) for _ in range(10)]
        time.sleep(max(0.0, 3.0 - (time.monotonic() - down_at)))  # a 3 s outage
        world.start_daemon()
        everything = [*uuids, *late]
        world.wait_for(lambda: all(world.sim.call(u).state is CallState.HUNGUP
                                   for u in everything), timeout=90, what="every call ended")
        world.wait_for(lambda: world.sql("SELECT count(*) FROM cdrs")[0][0] == len(everything),
                       timeout=90, what="every CDR")
        # the calls that parked while it was down were decided, not left to give up, and
        # the live ones talked through the restart
        assert all(world.sim.call(u).answered for u in late)
        assert all(world.sim.call(u).hangup_by == "caller" for u in everything)
        check_every_call_charged_once(world, everything)
        assert world.stop_daemon() == 0


@pytest.mark.parametrize("outage", [
    10.0,
    pytest.param(60.0, marks=pytest.mark.faults),  # the long run: ./scripts/test -m faults
])
def test_postgres_unreachable_under_load_loses_nothing(cfg, database_url, redis_url, tmp_path,
                                                       outage):
    parts = urlsplit(database_url)
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        proxied_url = proxy.url_for(database_url)
        with process_world(cfg, database_url, redis_url, tmp_path,
                           data=rich_world()) as world:
            world.database_url = proxied_url  # the daemon's flusher goes through the proxy
            world.start_daemon()
            world.database_url = database_url
            world.sim.wait_for_listener(["CHANNEL_PARK"], timeout=30)
            load = world.sim.run_load(5, duration=outage + 10, accounts=[CC],
                                      destinations=[UK], talk_seconds=(1.2, 2.8), record=True)
            time.sleep(3)
            proxy.cut()  # PostgreSQL unreachable: calls go on, the outbox grows
            time.sleep(outage)
            proxy.restore()
            assert load.join(timeout=outage + 60)
            uuids = [r.uuid for r in load.records]
            world.wait_for(lambda: world.sql("SELECT count(*) FROM cdrs")[0][0] == len(uuids),
                           timeout=120, what="the backlog drained")
            check_every_call_charged_once(world, uuids)
            assert world.stop_daemon() == 0
