"""Package seconds held by calls in progress when their order ends or renews.

A call holds the free seconds of a chunk before it uses them. If the order is terminated
meanwhile, those seconds count as used for the refund, and the call keeps them; if the
order renews meanwhile, the call keeps its old period's seconds and the new period starts
whole. Real PostgreSQL and Redis; the world of tests/test_lifecycle.py (UK 28: 100 free
minutes, CM paid 6.00 and RM 3.00 for the period).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
import redis

from rater.config import Config
from rater.packages.context import Env, open_env
from rater.packages.orders import place_order
from rater.packages.renewals import renew_due
from rater.packages.termination import terminate
from rater.rating.chain import BucketRef, LegPlan, LevelPlan
from rater.rating.tariff import Tariff
from tests.test_lifecycle import CM, KS, RM, T0, UK, bucket, load_world

TAG = KS.tag(RM)
PER_SECOND = Tariff(60_000)  # 0.06/min: 1000 micro-units a second


@pytest.fixture
def world(cfg: Config, rds: redis.Redis) -> None:
    load_world(cfg, rds)


@pytest.fixture
def env(cfg: Config) -> Iterator[Env]:
    with open_env(cfg) as e:
        yield e


def leg_plan(pg: psycopg.Connection, order_id: str, period: int) -> LegPlan:
    """CM's leg with the order's bucket (RM's level pays at its own rate, no package)."""
    product_id = pg.execute("SELECT product_id FROM orders WHERE id = %s",
                            (order_id,)).fetchone()[0]
    ref = BucketRef(order_id, product_id, period, 6000, 2_000_000_000)
    levels = (LevelPlan(CM, "g-rm", "44", "UK", PER_SECOND, 0, 0, (ref,)),
              LevelPlan(RM, "g-admin", "44", "UK", PER_SECOND, 0, 0, ()))
    return LegPlan(CM, "outbound", "447700900123", TAG, levels)


def test_seconds_held_by_a_call_count_as_used_when_the_order_is_terminated(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection,
):
    pg.execute("UPDATE products SET charge_type = 'utilized_minutes'")
    place_order(env, CM, UK, now=T0, order_id="ord-t")
    rds.hincrby(KS.bucket(TAG, "ord-t"), "left", -1200)  # 1200 s used by earlier calls
    plan = leg_plan(pg, "ord-t", 0)
    keys = env.ledger.leg_keys("live-1", plan)
    assert env.ledger.authorize("live-1", plan, cap_seconds=3600).allowed
    assert env.ledger.reserve(keys, 1, 1800).granted_seconds == 1800  # 1800 s held
    done = terminate(env, "ord-t", now=T0 + timedelta(days=7))
    # used: 1200 consumed + 1800 held = 3000 of 6000 -> half back: 3.00 and 1.50
    assert done.used_seconds == 3000
    assert done.refunds == ((CM, 6_000_000, 3_000_000), (RM, 3_000_000, 1_500_000))
    # the order is over: a new call gets none of its seconds (money only: 60 s = 60000)
    other = env.ledger.leg_keys("live-2", plan)
    assert env.ledger.authorize("live-2", plan, cap_seconds=3600).allowed
    assert env.ledger.reserve(other, 1, 60).granted_seconds == 60
    # the call in progress keeps what it held: 1500 s, all free at the customer level
    res = env.ledger.commit(keys, "live-1", 1500)
    assert res.level_costs == (0, 1_500_000)  # RM pays its own rate: 1500 s at 1000
    assert bucket(rds, CM, "ord-t") == {}  # the last hold gone, the bucket goes too
    res = env.ledger.commit(other, "live-2", 60)
    assert res.level_costs == (60_000, 60_000)


def test_a_renewal_during_a_call_starts_the_new_period_whole(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection,
):
    place_order(env, CM, UK, now=T0, order_id="ord-r")
    plan = leg_plan(pg, "ord-r", 0)
    keys = env.ledger.leg_keys("span-1", plan)
    assert env.ledger.authorize("span-1", plan, cap_seconds=7200).allowed
    assert env.ledger.reserve(keys, 1, 600).granted_seconds == 600  # 600 s of period 0 held
    renew_due(env, T0 + timedelta(days=28))  # period 1: 6000 s again
    state = env.ledger.bucket_state(TAG, "ord-r")
    assert (state.period_no, state.seconds_left, state.seconds_held) == (1, 6000, 0)
    # the call goes on into the new period: 600 more seconds, from period 1
    assert env.ledger.reserve(keys, 2, 1200).granted_seconds == 1200
    res = env.ledger.commit(keys, "span-1", 1000)
    assert res.level_costs[0] == 0  # 1000 s: 600 of period 0, then 400 of period 1
    state = env.ledger.bucket_state(TAG, "ord-r")
    assert (state.seconds_left, state.seconds_held) == (6000 - 400, 0)
    usage = [u for op in _outbox(rds) if op.get("op") == "commit" for u in op["usage"]]
    assert [(u["period"], u["seconds"]) for u in usage] == [(0, 600), (1, 400)]


def _outbox(rds: redis.Redis) -> list[dict]:
    return [json.loads(f["e"]) for key in KS.outboxes() for _, f in rds.xrange(key)]
