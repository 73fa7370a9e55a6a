"""Commits against a real Redis: a withdrawal of an authorization that never landed is
done (never authorized again to be settled), and counts nothing."""

from __future__ import annotations

import redis

from rater.calls import leg as L
from rater.calls.commits import Commits
from rater.calls.registry import LiveLeg
from rater.clock import SystemClock
from rater.ledger.client import Ledger
from rater.metrics import Metrics
from tests.test_ledger import CUSTOMER, KS, RETAIL, TAG, level, plan, seed


def test_withdrawing_an_authorization_that_never_landed_is_done(redis_url: str):
    ledger = Ledger(redis.Redis.from_url(redis_url), KS, leg_ttl_seconds=3600)
    seed(ledger.redis, CUSTOMER, 5_000_000)
    recreated: list[str] = []
    metrics = Metrics()
    commits = Commits(ledger, metrics, SystemClock(),
                      recreate=lambda uuid, live: recreated.append(uuid) or False)
    live = LiveLeg(L.Leg("nv", 60, 5.0), "fs1", TAG, ledger.leg_keys("nv", plan(
        level(CUSTOMER, RETAIL))))
    commits.commit("nv", live, L.Commit(0, "withdrawn", "", 1, 0, 0))
    assert recreated == []                 # an unknown leg is not authorized again...
    assert not commits.is_pending("nv")    # ...nor retried: there is nothing to take back
    assert ledger.live_legs(TAG) == set()
    assert ledger.account_state(TAG, CUSTOMER).live_legs == 0
    assert metrics.commits.labels("withdrawn")._value.get() == 0
    # an ordinary commit of an unknown leg (Redis lost it) asks for it to be authorized again
    commits.commit("nv", live, L.Commit(3, "final", "NORMAL_CLEARING", 1, 2, 3))
    assert recreated == ["nv"]
