"""Commits that cannot land at once: a script that keeps failing is given up (the leg stays
live in Redis), commits pending at shutdown are settled by the next start from the switch's
record. Amounts from tests/e2e_world.py (retail = 10000 micros/second)."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

import pytest
import redis

from rater.daemon import Daemon
from tests.e2e_world import P1, PP, UK, running_world
from tests.tcp_proxy import TcpProxy
from tests.test_e2e_faults import wait_reserved_while_up, wait_until

pytestmark = pytest.mark.slow

# authorize.lua's operation id as it travels in the request (RESP: a 3-byte argument)
AUTHORIZE_OP = b"$3\r\no:a\r\n"


def live_legs(world) -> set[str]:
    tag = world.daemon.snapshots.current.account(P1).tag
    return world.daemon.ledger.live_legs(tag)


def test_a_commit_whose_script_keeps_failing_is_given_up_and_the_leg_kept(cfg, database_url):
    with running_world(cfg, database_url, channel_sync=3600) as world:
        uuid = world.call(P1, UK, duration=1.2)
        wait_reserved_while_up(world, uuid)
        tag = world.daemon.snapshots.current.account(P1).tag
        r = redis.Redis.from_url(world.cfg.redis.url)
        r.hset(world.daemon.keys.leg(tag, uuid), "plan", "corrupt")  # the script will fail
        r.close()
        world.wait(uuid)
        failures = world.daemon.metrics.commit_failures
        wait_until(lambda: failures._value.get() == 1, timeout=30, what="the commit given up")
        assert world.daemon.handler.commits.pending == {}  # nothing retried forever
        assert uuid in live_legs(world)  # the next start finds it and settles it again
        assert world.sql("SELECT count(*) FROM cdrs") == [(0,)]


def test_commits_pending_at_shutdown_are_settled_by_the_next_start(cfg, database_url):
    """Redis is unreachable when the call ends and still when the daemon is stopped: the
    commit cannot land. The next start finds the leg live in Redis and its channel gone,
    and settles it from FreeSWITCH's record: once, for its real duration."""
    parts = urlsplit(cfg.redis.url)
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        proxied = dataclasses.replace(
            cfg, redis=dataclasses.replace(cfg.redis, url=proxy.url_for(cfg.redis.url)))
        with running_world(proxied, database_url, channel_sync=3600) as world:
            uuid = world.call(P1, UK, duration=1.2)
            wait_reserved_while_up(world, uuid)
            proxy.cut()
            world.wait(uuid)
            wait_until(lambda: world.daemon.handler.commits.pending, what="a commit retried")
            world.daemon.stop()  # the commit is still pending when the grace ends
            proxy.restore()
            world.daemon = Daemon(world.cfg)
            world.daemon.start()
            world.wait_cdr(uuid)
            doc = world.cdr(uuid)
            # 1.2 s of talk: 2 billed seconds at 10000/s, from the switch's record
            assert (doc["cdr"]["settlement"], doc["cdr"]["billed_seconds"]) == (
                "switch_record", 2)
            assert world.balance(P1) == world.pg_balance(P1) == 1_000_000 - 20_000
            assert live_legs(world) == set()


def test_with_the_daemon_gone_concurrent_calls_end_where_their_money_does(cfg, database_url):
    """PP (postpaid, 0.30 of credit: 30 s at 10000/s) makes two 60 s calls at once, and the
    daemon goes away after their first 5 s chunks. Each call's safety net follows what is
    reserved, so the switch cuts each about 2 s past its chunk: together they stay within
    the credit. (A net set once at the authorized 30 s would let each run 31 s: 62 s on
    30 s of credit.)"""
    with running_world(cfg, database_url, debit_interval=5, channel_sync=3600) as world:
        calls = [world.call(PP, UK, duration=60) for _ in range(2)]
        for uuid in calls:
            wait_reserved_while_up(world, uuid)
        world.daemon.stop()  # the legs stay live in Redis, each with its safety net
        for uuid in calls:
            ch = world.wait(uuid, timeout=60)
            assert ch.hangup_by == "switch" and ch.cause == "ALLOTTED_TIMEOUT"
        world.daemon = Daemon(world.cfg)
        world.daemon.start()
        for uuid in calls:
            world.wait_cdr(uuid)
        billed = [world.cdr(u)["cdr"]["billed_seconds"] for u in calls]
        # reserved 5 or 10 s each when the daemon left; the net fires < 2 s later
        assert all(b <= 12 for b in billed), billed
        assert world.balance(PP) == -10_000 * sum(billed) >= -300_000  # never past the credit


def test_an_authorization_whose_reply_was_lost_is_withdrawn(cfg, database_url):
    """Redis runs authorize.lua but its reply never comes back (the connection drops under
    it, on every retry), so the daemon refuses the call (internal_error) not knowing that
    the leg, its hold and its channel were written. It withdraws the authorization: nothing
    held, no channel counted, no leg left live, and no CDR for a call that never was.
    (Left, the leg was settled by a later adoption as an unanswered call, with a CDR.)"""
    parts = urlsplit(cfg.redis.url)
    direct = redis.Redis.from_url(cfg.redis.url)
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        proxied = dataclasses.replace(
            cfg, redis=dataclasses.replace(cfg.redis, url=proxy.url_for(cfg.redis.url)))
        with running_world(proxied, database_url, channel_sync=3600) as world:
            keys = world.daemon.keys
            tag = world.daemon.snapshots.current.account(P1).tag
            first = world.call(P1, UK, duration=1.2)  # an ordinary call: 2 s at 10000/s
            world.wait_cdr(first)  # (and authorize.lua is loaded: no NOSCRIPT reply to lose)
            proxy.lose_replies_to(AUTHORIZE_OP)
            uuid = world.call(P1, UK, duration=1.2)
            assert world.wait(uuid).cause == "NORMAL_TEMPORARY_FAILURE"  # internal_error
            world.settle()
            leg = direct.hgetall(keys.leg(tag, uuid))
            assert leg[b"o:a"].startswith(b"ok ")  # Redis did authorize it...
            assert leg[b"st"] == b"committed"      # ...and it was withdrawn
            assert uuid not in live_legs(world)
            held, ch = direct.hmget(keys.account(tag, P1), "held", "ch")
            assert (int(held or 0), int(ch or 0)) == (0, 0)
            assert world.balance(P1) == world.pg_balance(P1) == 1_000_000 - 20_000
            metrics = world.daemon.metrics
            assert metrics.commits.labels("withdrawn")._value.get() == 1
            assert metrics.calls_refused.labels("internal_error")._value.get() == 1
            assert world.sql("SELECT uuid FROM cdrs") == [(first,)]  # none for the refused
    direct.close()
