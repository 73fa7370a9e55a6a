"""End to end under faults: duplicate and out-of-order events, dropped connections, withheld
replies, a daemon restart. Amounts from tests/e2e_world.py (retail = 10000 micros/second)."""

from __future__ import annotations

import dataclasses
import time
from urllib.parse import urlsplit

import pytest

from rater.daemon import Daemon
from tests.e2e_world import P1, UK, running_world
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow


@pytest.fixture
def world(cfg, database_url):
    with running_world(cfg, database_url) as w:
        yield w


def wait_until(cond, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def answered(world, uuid: str) -> bool:
    return world.sim.call(uuid).answered_us != 0


def wait_admitted(world, uuid: str) -> None:
    """Until the daemon has admitted the leg (authorized, not answered yet)."""
    wait_until(lambda: world.daemon.handler.legs.get(uuid) is not None
               and world.daemon.handler.legs.get(uuid).leg.state.name == "ADMITTED",
               what="admission")


def wait_reserved_while_up(world, uuid: str) -> None:
    """Until the daemon holds a reservation for the leg while its call is still up."""
    wait_until(lambda: world.daemon.handler.legs.get(uuid) is not None
               and world.daemon.handler.legs.get(uuid).leg.granted > 0
               and world.sim.call(uuid).hangup_us == 0, what="a reservation during the call")


def test_duplicate_events_bill_once(world):
    world.sim.duplicate_events(count=None)
    uuid = world.call(P1, UK, duration=3.2)
    world.wait(uuid)
    world.settle()
    assert world.sql("SELECT count(*), sum(total_cost) FROM cdrs") == [(1, 40_000)]
    assert world.balance(P1) == 1_000_000 - 40_000
    assert world.pg_balance(P1) == 1_000_000 - 40_000


def test_answer_delivered_after_hangup_bills_from_the_hangup_event(world):
    world.sim.hold_events(["CHANNEL_ANSWER"], release_after="CHANNEL_HANGUP_COMPLETE")
    uuid = world.call(P1, UK, duration=2.3)
    world.wait(uuid)
    world.settle()
    doc = world.cdr(uuid)
    assert (doc["cdr"]["billed_seconds"], doc["cdr"]["total_cost"]) == (3, 30_000)
    assert world.balance(P1) == 1_000_000 - 30_000


def test_in_json_event_format(cfg, database_url):
    with running_world(cfg, database_url, event_format="json") as world:
        uuid = world.call(P1, UK, duration=1.4)
        world.wait(uuid)
        world.settle()
        assert world.cdr(uuid)["cdr"]["total_cost"] == 20_000


def test_connection_dropped_mid_call_is_reconnected_and_the_call_still_billed(world):
    uuid = world.call(P1, UK, duration=6.3)
    wait_until(lambda: answered(world, uuid), what="answer")
    reconnects = world.daemon.metrics.esl_reconnects.labels("fs1")._value.get()
    assert world.sim.drop_connections(mid_frame=True) >= 2
    wait_until(lambda: world.daemon.metrics.esl_reconnects.labels("fs1")._value.get()
               > reconnects, what="reconnection")
    world.wait(uuid)
    world.settle()
    doc = world.cdr(uuid)
    assert (doc["cdr"]["billed_seconds"], doc["cdr"]["settlement"]) == (7, "final")
    assert world.balance(P1) == 1_000_000 - 70_000


def cdr_times(world, uuid: str) -> tuple[int | None, ...]:
    """The CDR's created, answered and hangup times in µs since the epoch (None if unknown)."""
    [row] = world.sql(
        "SELECT (extract(epoch FROM created_at) * 1000000)::bigint,"
        " (extract(epoch FROM answered_at) * 1000000)::bigint,"
        " (extract(epoch FROM hangup_at) * 1000000)::bigint FROM cdrs WHERE uuid = %s", uuid)
    return row


def end_unseen(world, uuid: str) -> None:
    """The caller hangs up while the daemon hears nothing, and the events are lost."""
    wait_until(lambda: answered(world, uuid), what="answer")
    wait_until(lambda: world.daemon.ledger.leg_record(
        world.daemon.handler.legs.get(uuid).tag, uuid).granted_seconds >= 2,
        what="first reservation")
    world.sim.stall(5)          # the daemon hears nothing ...
    world.sim.hangup(uuid)      # ... while the caller hangs up
    world.sim.resume()
    world.sim.drop_connections()  # and the connection is lost with the events


def test_call_that_ends_unseen_is_settled_from_the_switch_record(world):
    uuid = world.call(P1, UK, duration=60)
    end_unseen(world, uuid)
    world.settle(timeout=30)
    doc = world.cdr(uuid)
    call = world.sim.call(uuid)
    # FreeSWITCH's record has the real times: billed from them, rounded up, 10000/s
    billed = -(-call.billmsec // 1000)  # from billmsec, rounded up, as FreeSWITCH reports it
    assert (doc["cdr"]["settlement"], doc["cdr"]["billed_seconds"]) == ("switch_record", billed)
    assert cdr_times(world, uuid) == (call.created_us, call.answered_us, call.hangup_us)
    assert doc["cdr"]["total_cost"] == billed * 10_000
    assert world.balance(P1) == 1_000_000 - billed * 10_000


def test_call_that_ends_unseen_with_no_switch_record_is_charged_as_reserved(cfg, database_url):
    with running_world(cfg, database_url, switch_records=False, record_wait=1.0) as world:
        uuid = world.call(P1, UK, duration=60)
        end_unseen(world, uuid)
        world.settle(timeout=30)
        doc = world.cdr(uuid)
        assert doc["cdr"]["settlement"] == "as_reserved"
        reserved = doc["cdr"]["billed_seconds"]
        assert reserved >= 2 and reserved % 2 == 0  # whole 2 s chunks
        assert doc["cdr"]["total_cost"] == reserved * 10_000
        assert world.balance(P1) == 1_000_000 - reserved * 10_000
        # the times it knew are kept: when the channel was created and answered
        call = world.sim.call(uuid)
        assert cdr_times(world, uuid) == (call.created_us, call.answered_us, None)


def lose_the_hangup_of_a_call(world, duration: float) -> str:
    uuid = world.call(P1, UK, duration=duration)
    wait_until(lambda: answered(world, uuid), what="answer")
    world.sim.lose_events(1, ["CHANNEL_HANGUP_COMPLETE"], uuid)
    world.wait(uuid)
    world.settle(timeout=30)
    return uuid


def test_a_lost_hangup_is_found_by_the_channel_check(cfg, database_url):
    """The HANGUP_COMPLETE is dropped on purpose; the connection stays up. The periodic
    check finds the channel gone and settles the leg from the switch's record."""
    with running_world(cfg, database_url, debit_interval=60, channel_sync=0.5) as world:
        uuid = lose_the_hangup_of_a_call(world, 3.3)
        doc = world.cdr(uuid)
        # 3.3 s of talk: 4 billed seconds, not the 60 s chunk reserved
        assert (doc["cdr"]["settlement"], doc["cdr"]["billed_seconds"]) == ("switch_record", 4)
        assert world.balance(P1) == 1_000_000 - 40_000
        assert world.daemon.metrics.channel_sync.labels("gone")._value.get() == 1


def test_a_call_whose_hangup_was_lost_is_never_extended(cfg, database_url):
    """No channel check runs; the next 2 s chunk falls due after the call ended: the
    switch says the channel is gone, so nothing more is reserved."""
    with running_world(cfg, database_url, debit_interval=2, channel_sync=3600) as world:
        uuid = lose_the_hangup_of_a_call(world, 3.3)
        doc = world.cdr(uuid)
        assert (doc["cdr"]["settlement"], doc["cdr"]["billed_seconds"]) == ("switch_record", 4)
        assert world.balance(P1) == 1_000_000 - 40_000
        # chunk k > 1 falls due at 2(k - 1) - 0.5 s of talk: none after the call ended
        # (3.3 s on a quick machine: chunks 0-2 and 2-4 taken, 4-6 due at 3.5 s refused)
        call = world.sim.call(uuid)
        talk = (call.hangup_us - call.answered_us) / 1_000_000
        record = world.daemon.ledger.leg_record(
            world.daemon.snapshots.current.account(P1).tag, uuid)
        assert record.granted_seconds <= 2 * (1 + int((talk + 0.5) // 2))
        assert world.daemon.metrics.channel_sync.labels("gone")._value.get() == 0


def test_withheld_reply_does_not_lose_the_call(world):
    world.sim.withhold_replies(1, "uuid_transfer")
    uuid = world.call(P1, UK, duration=2.3)
    world.wait(uuid, timeout=30)
    world.settle()
    assert world.cdr(uuid)["cdr"]["total_cost"] == 30_000


def test_a_restarted_daemon_adopts_live_calls(world):
    uuid = world.call(P1, UK, duration=8.2)
    wait_until(lambda: answered(world, uuid), what="answer")
    wait_until(lambda: world.daemon.handler.legs.get(uuid) is not None
               and world.daemon.handler.legs.get(uuid).leg.granted > 0, what="reservation")
    tag = world.daemon.snapshots.current.account(P1).tag
    world.daemon.stop()          # graceful: the leg stays live in Redis
    assert world.daemon.ledger.live_legs(tag) == {uuid}
    world.daemon = Daemon(world.cfg)
    world.daemon.start()
    world.wait(uuid, timeout=30)
    world.settle()
    doc = world.cdr(uuid)
    assert (doc["cdr"]["billed_seconds"], doc["cdr"]["settlement"]) == (9, "final")
    assert world.balance(P1) == 1_000_000 - 90_000


def test_a_call_answered_while_the_daemon_was_down_is_reserved_for_after_restart(world):
    uuid = world.call(P1, UK, answer_after=1.0, duration=8.2)
    wait_admitted(world, uuid)
    world.daemon.stop()          # its CHANNEL_ANSWER goes to nobody
    wait_until(lambda: answered(world, uuid), what="answer")
    world.daemon = Daemon(world.cfg)
    world.daemon.start()
    # the node's answer time is asked for, so reservations resume while the call runs
    wait_reserved_while_up(world, uuid)
    world.wait(uuid, timeout=30)
    world.settle()
    doc = world.cdr(uuid)
    assert (doc["cdr"]["billed_seconds"], doc["cdr"]["settlement"]) == (9, "final")
    assert world.balance(P1) == 1_000_000 - 90_000


def test_a_reconnected_daemon_learns_an_answer_it_missed(world):
    uuid = world.call(P1, UK, answer_after=1.0, duration=6.2)
    wait_admitted(world, uuid)
    world.sim.lose_events(1, ["CHANNEL_ANSWER"], uuid)
    wait_until(lambda: answered(world, uuid), what="answer")
    world.sim.drop_connections()  # the daemon reconnects and reconciles with the node
    wait_reserved_while_up(world, uuid)
    world.wait(uuid, timeout=30)
    world.settle()
    assert world.cdr(uuid)["cdr"]["billed_seconds"] == 7
    assert world.balance(P1) == 1_000_000 - 70_000


def test_a_commit_during_a_redis_outage_lands_once_redis_is_back(cfg, database_url):
    parts = urlsplit(cfg.redis.url)
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        proxied = dataclasses.replace(
            cfg, redis=dataclasses.replace(cfg.redis, url=proxy.url_for(cfg.redis.url)))
        with running_world(proxied, database_url) as world:
            # 1.2 s of talk inside the first 2 s chunk: no reservation falls in the outage
            uuid = world.call(P1, UK, duration=1.2)
            wait_reserved_while_up(world, uuid)
            proxy.cut()
            world.wait(uuid)
            # the commit fails and is retried in the background
            wait_until(lambda: world.daemon.handler.commits.pending, what="a commit retried")
            time.sleep(1.0)
            proxy.restore()
            assert world.daemon.handler.commits.wait(30)
            world.settle()
            # 1.2 s billed as 2 s at 10000 micros/s, once
            assert world.cdr(uuid)["cdr"]["billed_seconds"] == 2
            assert world.balance(P1) == 1_000_000 - 20_000
            assert world.pg_balance(P1) == world.balance(P1)


def test_two_freeswitch_nodes_share_one_account(cfg, database_url):
    with running_world(cfg, database_url, nodes=2) as world:
        a = world.sims[0].place_call(P1, UK, duration=2.2)
        b = world.sims[1].place_call(P1, UK, duration=3.2)
        world.sims[0].wait_for_hangup(a, 30)
        world.sims[1].wait_for_hangup(b, 30)
        world.settle()
        # 3 s + 4 s at 10000/s, from one balance
        assert world.balance(P1) == 1_000_000 - 70_000
        assert world.sql("SELECT node, billed_seconds FROM cdrs ORDER BY billed_seconds") == [
            ("fs1", 3), ("fs2", 4)]
