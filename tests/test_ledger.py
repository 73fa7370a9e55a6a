"""The Redis ledger scripts against a real Redis: money, atomicity, idempotency, outbox."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rater.errors import LedgerError
from rater.ledger.client import BucketOp, Entry, Ledger
from rater.ledger.keys import KeySpace
from rater.ledger.replies import Authorization, LevelFigures
from rater.rating.chain import BucketRef, LegPlan, LevelPlan
from rater.rating.tariff import Tariff, leg_cost, max_billed_seconds
from rater.reasons import SettlementKind
from tests import golden_vectors

KS = KeySpace(prefix="rt", shards=4)
CUSTOMER, R2, R1 = "2000000001", "1000000002", "1000000001"
TAG = KS.tag(R1)

# 0.10/min, connect 0.05, 30/6 (DESIGN's worked example)
RETAIL = Tariff(100_000, connect_fee_micros=50_000, init_inc=30, inc=6)
# 0.06/min per second
MIDDLE = Tariff(60_000)
# 0.03/min per second
WHOLESALE = Tariff(30_000)


def level(account: str, tariff: Tariff, floor: int = 0, max_channels: int = 0,
          buckets: tuple[BucketRef, ...] = ()) -> LevelPlan:
    return LevelPlan(account, f"rg-{account}", "44", "UK", tariff, floor, max_channels, buckets)


def plan(*levels: LevelPlan, destination: str = "447700900123") -> LegPlan:
    return LegPlan(levels[0].account, "outbound", destination, TAG, tuple(levels))


def bucket(order: str, cap: int) -> BucketRef:
    return BucketRef(order, 1, 0, cap, 2_000_000_000)


@pytest.fixture
def ledger(redis_url: str) -> Ledger:
    return Ledger(redis.Redis.from_url(redis_url), KS, leg_ttl_seconds=3600)


def seed(r: redis.Redis, account: str, balance: int) -> None:
    r.hset(KS.account(TAG, account), mapping={"bal": balance, "held": 0, "ch": 0})


def seed_bucket(r: redis.Redis, order: str, seconds: int) -> None:
    r.hset(KS.bucket(TAG, order), mapping={"left": seconds, "held": 0, "period": 0,
                                           "cap": seconds})


def outbox(r: redis.Redis) -> list[dict]:
    return [json.loads(f["e"]) for _, f in r.xrange(KS.outbox(TAG))]


def run_leg(ledger: Ledger, uuid: str, p: LegPlan, billed: int, chunk: int = 60):
    keys = ledger.leg_keys(uuid, p)
    auth = ledger.authorize(uuid, p, cap_seconds=14_400)
    assert auth.allowed, auth
    seq, granted = 0, 0
    while granted < billed:
        seq += 1
        res = ledger.reserve(keys, seq, min(granted + chunk, auth.max_seconds))
        assert res.status != "refused", res
        granted = res.granted_seconds
    return ledger.commit(keys, uuid, billed, hangup_cause="NORMAL_CLEARING")


@pytest.mark.also_on_cluster
def test_worked_example_three_levels(ledger: Ledger, rds: redis.Redis):
    for acct, bal in ((CUSTOMER, 10_000_000), (R2, 10_000_000), (R1, 10_000_000)):
        seed(ledger.redis, acct, bal)
    p = plan(level(CUSTOMER, RETAIL), level(R2, MIDDLE), level(R1, WHOLESALE))
    settled = run_leg(ledger, "leg-1", p, billed=65)
    # customer: 30 + ceil(35/6)*6 = 66 s; 0.05 + 0.10*66/60 = 0.16  -> 160000
    # R2: 65 s at 0.06/min = 0.065                                   ->  65000
    # R1: 65 s at 0.03/min = 0.0325                                  ->  32500
    assert settled.total_cost_micros == 160_000
    assert ledger.account_state(TAG, CUSTOMER).balance_micros == 10_000_000 - 160_000
    assert ledger.account_state(TAG, R2).balance_micros == 10_000_000 - 65_000
    assert ledger.account_state(TAG, R1).balance_micros == 10_000_000 - 32_500
    for acct in (CUSTOMER, R2, R1):
        state = ledger.account_state(TAG, acct)
        assert (state.held_micros, state.live_legs) == (0, 0)
    [entry] = outbox(rds)
    assert [(c["account"], c["charged_seconds"], c["cost"]) for c in entry["charges"]] == [
        (CUSTOMER, 66, 160_000), (R2, 65, 65_000), (R1, 65, 32_500)]
    assert [(e["id"], e["amount"]) for e in entry["ledger"]] == [
        ("call:leg-1:0", -160_000), ("call:leg-1:1", -65_000), ("call:leg-1:2", -32_500)]
    assert entry["cdr"]["billed_seconds"] == 65
    assert entry["cdr"]["total_cost"] == 160_000


def test_authorize_max_seconds_and_refusal(ledger: Ledger):
    # 1.00 at 0.10/min + 0.05 connect: (1.00-0.05)/0.10*60 = 570 s; 30+floor(540/6)*6 = 570
    seed(ledger.redis, CUSTOMER, 1_000_000)
    auth = ledger.authorize("a1", plan(level(CUSTOMER, RETAIL)), cap_seconds=14_400)
    assert (auth.allowed, auth.max_seconds) == (True, 570)
    # capped by config
    auth = ledger.authorize("a2", plan(level(CUSTOMER, RETAIL)), cap_seconds=120)
    assert auth.max_seconds == 120
    # 0.09: after the 0.05 connect fee 0.04 buys 24 s < the 30 s first block -> refused
    seed(ledger.redis, "2000000009", 90_000)
    auth = ledger.authorize("a3", plan(level("2000000009", RETAIL)), cap_seconds=14_400)
    assert (auth.allowed, auth.reason, auth.account) == (False, "insufficient_funds",
                                                         "2000000009")
    assert ledger.account_state(TAG, "2000000009").live_legs == 0


def test_postpaid_floor_allows_down_to_credit_limit(ledger: Ledger):
    seed(ledger.redis, CUSTOMER, 0)
    # postpaid, credit limit 0.60 at 0.06/min per second: 600 s
    p = plan(level(CUSTOMER, MIDDLE, floor=-600_000))
    auth = ledger.authorize("pp", p, cap_seconds=14_400)
    assert auth.max_seconds == 600
    keys = ledger.leg_keys("pp", p)
    assert ledger.reserve(keys, 1, 1000).granted_seconds == 600
    assert ledger.reserve(keys, 2, 1000).status == "refused"
    ledger.commit(keys, "pp", 600)
    assert ledger.account_state(TAG, CUSTOMER).balance_micros == -600_000


def test_unknown_account_in_redis_is_refused(ledger: Ledger):
    auth = ledger.authorize("x", plan(level(CUSTOMER, RETAIL)), cap_seconds=60)
    assert (auth.allowed, auth.reason) == (False, "unknown_account")


def test_reseller_out_of_funds_stops_its_whole_subtree(ledger: Ledger):
    seed(ledger.redis, CUSTOMER, 50_000_000)
    seed(ledger.redis, "2000000002", 50_000_000)
    seed(ledger.redis, R1, 0)
    for uuid, cust in (("s1", CUSTOMER), ("s2", "2000000002")):
        auth = ledger.authorize(uuid, plan(level(cust, MIDDLE), level(R1, WHOLESALE)),
                                cap_seconds=600)
        assert (auth.allowed, auth.reason, auth.account) == (False, "insufficient_funds", R1)


def test_partial_reservation_grants_what_every_level_can_pay(ledger: Ledger):
    seed(ledger.redis, CUSTOMER, 10_000_000)
    seed(ledger.redis, R1, 30_000)  # 0.03 at 0.03/min = 60 s
    p = plan(level(CUSTOMER, MIDDLE), level(R1, WHOLESALE))
    keys = ledger.leg_keys("p1", p)
    assert ledger.authorize("p1", p, cap_seconds=600).max_seconds == 60
    res = ledger.reserve(keys, 1, 45)
    assert (res.status, res.granted_seconds) == ("ok", 45)
    res = ledger.reserve(keys, 2, 105)
    assert (res.status, res.granted_seconds, res.account) == ("short", 60, R1)
    assert ledger.reserve(keys, 3, 165).status == "refused"
    assert ledger.account_state(TAG, R1).held_micros == 30_000
    assert ledger.account_state(TAG, CUSTOMER).held_micros == 60_000  # 60 s at 0.06/min


@pytest.mark.also_on_cluster
def test_concurrent_reservations_never_exceed_balance_plus_credit(redis_url: str):
    client = redis.Redis.from_url(redis_url, max_connections=64)
    ledger = Ledger(client, KS)
    # prepaid 1.00 + nothing, postpaid reseller with 0.50 and a 0.50 credit limit
    seed(client, CUSTOMER, 1_000_000)
    seed(client, R1, 500_000)
    p = plan(level(CUSTOMER, MIDDLE), level(R1, WHOLESALE, floor=-500_000))
    legs = [f"race-{i}" for i in range(40)]
    authorized = []
    for uuid in legs:
        if ledger.authorize(uuid, p, cap_seconds=14_400).allowed:
            authorized.append(uuid)
    assert len(authorized) == 40  # authorize moves no money: every one fits alone

    granted: dict[str, int] = {}

    def talk(uuid: str) -> None:
        keys = ledger.leg_keys(uuid, p)
        total, seq = 0, 0
        while True:
            seq += 1
            res = ledger.reserve(keys, seq, total + 7)
            if res.granted_seconds == total:
                break
            total = res.granted_seconds
        granted[uuid] = total

    threads = [threading.Thread(target=talk, args=(u,)) for u in authorized]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # customer: 1.00 at 0.06/min buys 1000 s; R1: 1.00 (0.50 + 0.50 credit) at 0.03/min
    # buys 2000 s -> the customer binds: exactly 1000 s in holds, never more
    assert sum(granted.values()) == 1000
    assert ledger.account_state(TAG, CUSTOMER).held_micros == 1_000_000
    for uuid in authorized:
        ledger.commit(ledger.leg_keys(uuid, p), uuid, granted[uuid])
    assert ledger.account_state(TAG, CUSTOMER).balance_micros == 0
    assert ledger.account_state(TAG, R1).balance_micros == 500_000 - 500_000


@pytest.mark.also_on_cluster
def test_shared_reseller_race_never_exceeds_its_funds(redis_url: str):
    client = redis.Redis.from_url(redis_url, max_connections=64)
    ledger = Ledger(client, KS)
    seed(client, R1, 300_000)  # 0.30 at 0.03/min = 600 s for the whole sub-tree
    customers = [f"20000001{i:02d}" for i in range(20)]
    for c in customers:
        seed(client, c, 100_000_000)
    granted: dict[str, int] = {}

    def talk(cust: str) -> None:
        p = plan(level(cust, MIDDLE), level(R1, WHOLESALE))
        uuid = f"leg-{cust}"
        if not ledger.authorize(uuid, p, cap_seconds=14_400).allowed:
            granted[uuid] = 0
            return
        keys = ledger.leg_keys(uuid, p)
        total, seq = 0, 0
        while True:
            seq += 1
            res = ledger.reserve(keys, seq, total + 13)
            if res.granted_seconds == total:
                break
            total = res.granted_seconds
        granted[uuid] = total

    threads = [threading.Thread(target=talk, args=(c,)) for c in customers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(granted.values()) == 600
    assert ledger.account_state(TAG, R1).held_micros == 300_000


@pytest.mark.also_on_cluster
def test_max_channels_enforced_atomically(redis_url: str):
    client = redis.Redis.from_url(redis_url, max_connections=64)
    ledger = Ledger(client, KS)
    seed(client, CUSTOMER, 100_000_000)
    p = plan(level(CUSTOMER, MIDDLE, max_channels=3))
    results: list[bool] = []

    def call(i: int) -> None:
        results.append(ledger.authorize(f"mc-{i}", p, cap_seconds=60).allowed)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count(True) == 3
    assert ledger.account_state(TAG, CUSTOMER).live_legs == 3
    refused = ledger.authorize("mc-x", p, cap_seconds=60)
    assert refused.reason == "max_channels"
    # a finished leg frees its channel
    done = next(f"mc-{i}" for i in range(30) if ledger.leg_state(TAG, f"mc-{i}") == "authorized")
    ledger.release(ledger.leg_keys(done, p), done)
    assert ledger.authorize("mc-y", p, cap_seconds=60).allowed


@pytest.mark.also_on_cluster
def test_package_seconds_first_then_balance(ledger: Ledger, rds: redis.Redis):
    seed(ledger.redis, CUSTOMER, 10_000_000)
    seed_bucket(ledger.redis, "ord-1", 100)
    p = plan(level(CUSTOMER, RETAIL, buckets=(bucket("ord-1", 100),)))
    # 130 s billed -> 30 + ceil(100/6)*6 = 132 charged; 100 free, 32 paid:
    # 0.05 + 0.10 * 32/60 = 0.053333.. -> 103333
    settled = run_leg(ledger, "pk1", p, billed=130)
    assert settled.total_cost_micros == 103_333
    b = ledger.bucket_state(TAG, "ord-1")
    assert (b.seconds_left, b.seconds_held) == (0, 0)
    [entry] = outbox(rds)
    assert entry["charges"][0]["free_seconds"] == 100
    assert entry["usage"] == [{"order": "ord-1", "account": CUSTOMER, "period": 0,
                               "seconds": 100}]


def test_call_wholly_covered_by_package_costs_nothing(ledger: Ledger, rds: redis.Redis):
    seed(ledger.redis, CUSTOMER, 0)
    seed_bucket(ledger.redis, "ord-1", 600)
    p = plan(level(CUSTOMER, RETAIL, buckets=(bucket("ord-1", 600),)))
    auth = ledger.authorize("pk2", p, cap_seconds=14_400)
    assert auth.max_seconds == 600  # no money, 600 package seconds
    settled = run_leg(ledger, "pk3", p, billed=61)
    assert settled.total_cost_micros == 0  # no connect fee either
    assert ledger.bucket_state(TAG, "ord-1").seconds_left == 600 - 66
    assert outbox(rds)[0]["ledger"] == []


@pytest.mark.also_on_cluster
def test_buckets_never_go_below_zero_under_races(redis_url: str):
    client = redis.Redis.from_url(redis_url, max_connections=64)
    ledger = Ledger(client, KS)
    seed(client, CUSTOMER, 0)
    seed_bucket(client, "ord-1", 300)
    p = plan(level(CUSTOMER, MIDDLE, buckets=(bucket("ord-1", 300),)))
    granted: dict[str, int] = {}

    def talk(i: int) -> None:
        uuid = f"b-{i}"
        if not ledger.authorize(uuid, p, cap_seconds=14_400).allowed:
            granted[uuid] = 0
            return
        keys = ledger.leg_keys(uuid, p)
        total, seq = 0, 0
        while True:
            seq += 1
            res = ledger.reserve(keys, seq, total + 11)
            if res.granted_seconds == total:
                break
            total = res.granted_seconds
        granted[uuid] = total

    threads = [threading.Thread(target=talk, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(granted.values()) == 300
    for uuid, g in granted.items():
        if g:
            ledger.commit(ledger.leg_keys(uuid, p), uuid, g)
    b = ledger.bucket_state(TAG, "ord-1")
    assert (b.seconds_left, b.seconds_held) == (0, 0)
    assert ledger.account_state(TAG, CUSTOMER).balance_micros == 0


@pytest.mark.also_on_cluster
def test_every_operation_replayed_is_a_no_op(ledger: Ledger, rds: redis.Redis):
    seed(ledger.redis, CUSTOMER, 5_000_000)
    p = plan(level(CUSTOMER, RETAIL))
    keys = ledger.leg_keys("r1", p)
    first = ledger.authorize("r1", p, cap_seconds=14_400)
    assert ledger.authorize("r1", p, cap_seconds=14_400) == first
    assert ledger.account_state(TAG, CUSTOMER).live_legs == 1
    res = ledger.reserve(keys, 1, 60)
    assert ledger.reserve(keys, 1, 60) == res
    held = ledger.account_state(TAG, CUSTOMER).held_micros
    assert held == 150_000  # 0.05 + 60 s at 0.10/min
    done = ledger.commit(keys, "r1", 65)
    assert ledger.commit(keys, "r1", 65) == done
    assert ledger.commit(keys, "r1", 999) == done  # a different replay still changes nothing
    assert ledger.reserve(keys, 2, 120).status == "refused"
    assert ledger.account_state(TAG, CUSTOMER).balance_micros == 5_000_000 - 160_000
    # the finished leg keeps only what replays read, for leg_ttl_seconds
    leg = KS.leg(TAG, "r1")
    assert set(rds.hkeys(leg)) == {"st", "o:a", "o:c"}
    assert 0 < rds.ttl(leg) <= 3600
    assert ledger.authorize("r1", p, cap_seconds=14_400) == first  # no new leg
    assert ledger.account_state(TAG, CUSTOMER).live_legs == 0
    assert ledger.reserve(keys, 1, 60).reason == "leg_committed"
    topup = [Entry(CUSTOMER, 2_000_000, "topup:ref-9", "topup", "ref-9")]
    assert ledger.apply("topup:ref-9", TAG, topup).ok
    assert ledger.apply("topup:ref-9", TAG, topup).ok
    assert ledger.account_state(TAG, CUSTOMER).balance_micros == 5_000_000 - 160_000 + 2_000_000
    entries = outbox(rds)
    assert [e["op"] for e in entries] == ["commit", "money"]
    # exactly one ledger row per money movement: the call charge and the top-up
    assert [row["id"] for e in entries for row in e["ledger"]] == ["call:r1:0", "topup:ref-9"]


@pytest.mark.also_on_cluster
def test_scripts_recover_after_script_flush(ledger: Ledger):
    seed(ledger.redis, CUSTOMER, 5_000_000)
    ledger.redis.script_flush()
    assert ledger.authorize("sf", plan(level(CUSTOMER, RETAIL)), cap_seconds=60).allowed


@pytest.mark.also_on_cluster
def test_apply_is_all_or_nothing_across_the_chain(ledger: Ledger, rds: redis.Redis):
    seed(ledger.redis, CUSTOMER, 10_000_000)
    seed(ledger.redis, R1, 1_000_000)
    entries = [
        Entry(CUSTOMER, -6_000_000, "order:o1:0:0", "product_price", "o1"),
        Entry(R1, -3_000_000, "order:o1:0:1", "product_price", "o1"),
    ]
    res = ledger.apply("order:o1:0", TAG, entries, [BucketOp("open", "o1", 0, 6000)])
    assert (res.ok, res.reason, res.account) == (False, "insufficient_funds", R1)
    assert ledger.account_state(TAG, CUSTOMER).balance_micros == 10_000_000
    assert ledger.bucket_state(TAG, "o1") is None
    assert outbox(rds) == []
    # allowed below the floor (renewal with release_if_no_balance = no)
    res = ledger.apply("order:o1:0", TAG, entries, [BucketOp("open", "o1", 0, 6000)],
                       allow_below_floor=True)
    assert res.ok
    assert ledger.account_state(TAG, R1).balance_micros == -2_000_000
    assert ledger.bucket_state(TAG, "o1").seconds_left == 6000


def test_unanswered_leg_releases_holds_and_channel(ledger: Ledger, rds: redis.Redis):
    seed(ledger.redis, CUSTOMER, 5_000_000)
    p = plan(level(CUSTOMER, RETAIL))
    keys = ledger.leg_keys("un", p)
    ledger.authorize("un", p, cap_seconds=600)
    settled = ledger.release(keys, "un", hangup_cause="NO_ANSWER")
    assert settled.total_cost_micros == 0
    state = ledger.account_state(TAG, CUSTOMER)
    assert (state.balance_micros, state.held_micros, state.live_legs) == (5_000_000, 0, 0)
    [entry] = outbox(rds)
    assert entry["cdr"]["settlement"] == "unanswered"
    assert entry["ledger"] == []


def test_a_withdrawn_leg_frees_everything_and_writes_nothing(ledger: Ledger, rds: redis.Redis):
    """An authorization taken back (the daemon refused the call when authorize's reply was
    lost): holds, package seconds and channels freed at every level, no CDR, no ledger
    entry; replays of either answer as before and create nothing."""
    seed(ledger.redis, CUSTOMER, 5_000_000)
    seed(ledger.redis, R1, 9_000_000)
    seed_bucket(ledger.redis, "o1", 600)
    p = plan(level(CUSTOMER, RETAIL, buckets=(bucket("o1", 600),)), level(R1, WHOLESALE))
    keys = ledger.leg_keys("wd", p)
    auth = ledger.authorize("wd", p, cap_seconds=600)
    assert auth.allowed
    assert ledger.account_state(TAG, CUSTOMER).live_legs == 1
    assert ledger.account_state(TAG, R1).live_legs == 1
    settled = ledger.commit(keys, "wd", 0, settlement=SettlementKind.WITHDRAWN)
    assert (settled.ok, settled.total_cost_micros) == (True, 0)
    for account, balance in ((CUSTOMER, 5_000_000), (R1, 9_000_000)):
        state = ledger.account_state(TAG, account)
        assert (state.balance_micros, state.held_micros, state.live_legs) == (balance, 0, 0)
    assert ledger.bucket_state(TAG, "o1").seconds_left == 600
    assert outbox(rds) == []
    assert ledger.live_legs(TAG) == set()
    assert ledger.commit(keys, "wd", 0, settlement=SettlementKind.WITHDRAWN) == settled
    assert ledger.authorize("wd", p, cap_seconds=600) == auth  # its stored answer
    assert ledger.account_state(TAG, CUSTOMER).live_legs == 0
    with pytest.raises(LedgerError, match="withdrawn leg bills nothing"):
        ledger.commit(keys, "wd", 5, settlement=SettlementKind.WITHDRAWN)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    price=st.integers(0, 3_000_000),
    connect=st.integers(0, 200_000),
    incl=st.integers(0, 60),
    init=st.integers(1, 60),
    inc=st.integers(1, 60),
    markup=st.integers(0, 5000),
    funds=st.integers(0, 50_000_000),
    free=st.integers(0, 900),
    billed=st.integers(0, 4000),
)
def test_lua_math_matches_the_python_tariff(redis_url, price, connect, incl, init, inc, markup,
                                            funds, free, billed):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    ledger = Ledger(client, KS)
    t = Tariff(price, connect, incl, init, inc, markup)
    seed(client, CUSTOMER, funds)
    buckets: tuple[BucketRef, ...] = ()
    if free:
        seed_bucket(client, "ord-h", free)
        buckets = (bucket("ord-h", free),)
    p = plan(level(CUSTOMER, t, buckets=buckets))
    cap = 100_000
    expected_max = max_billed_seconds(t, funds, free, cap)
    auth = ledger.authorize("h", p, cap_seconds=cap)
    first_block = incl + init
    if t.costs_nothing or expected_max >= first_block:
        assert auth.allowed and auth.max_seconds == expected_max
    else:
        assert not auth.allowed
        return
    keys = ledger.leg_keys("h", p)
    ledger.reserve(keys, 1, min(billed, auth.max_seconds))
    settled = ledger.commit(keys, "h", billed)
    assert settled.total_cost_micros == leg_cost(t, billed, free).cost_micros


@pytest.mark.also_on_cluster
@pytest.mark.parametrize("case", golden_vectors.cases(), ids=golden_vectors.ids())
def test_golden_decisions_through_redis(redis_url: str, case: golden_vectors.Case):
    """tests/golden/decisions.json through authorize.lua: its dry run (what `rater quote`
    shows) writes nothing and answers the decision with each level's figures; the real run
    answers the same decision; an allowed leg then costs each level what the vector says."""
    client = redis.Redis.from_url(redis_url)
    led = Ledger(client, KS, leg_ttl_seconds=3600)
    levels = []
    for i, lv in enumerate(case.levels):
        account = f"300000000{i}"
        if lv.balance is not None:
            client.hset(KS.account(TAG, account), mapping={
                "bal": lv.balance, "held": lv.held, "ch": lv.live_legs})
        refs = []
        for j, b in enumerate(lv.buckets):
            order = f"ord-{i}-{j}"
            client.hset(KS.bucket(TAG, order), mapping={
                "left": b.left, "held": b.held, "period": 0, "cap": b.left})
            refs.append(bucket(order, b.left))
        levels.append(LevelPlan(account, f"rg-{i}", "44", "UK", lv.tariff, lv.floor,
                                lv.max_channels, tuple(refs)))
    p = plan(*levels)
    expected = case.decision
    if expected["allowed"]:
        decision = Authorization(True, max_seconds=expected["max_seconds"])
    else:
        decision = Authorization(False, reason=expected["reason"],
                                 account=levels[expected["level"]].account)

    before = {k: client.dump(k) for k in client.scan_iter("rt:*")}
    dry = led.authorize_dry_run(p, cap_seconds=case.cap, billed_seconds=case.billed)
    assert {k: client.dump(k) for k in client.scan_iter("rt:*")} == before  # nothing written
    assert dry.decision == decision
    for lv, figures in zip(case.levels, dry.levels, strict=True):
        if lv.balance is None:
            assert figures is None
            continue
        assert figures == LevelFigures(
            lv.balance, lv.held, lv.live_legs, lv.expect["max_seconds"],
            lv.expect["charged"], lv.expect["free"], lv.expect["cost"],
            tuple(b.free for b in lv.buckets))

    assert led.authorize("g", p, cap_seconds=case.cap) == decision
    if decision.allowed:
        keys = led.leg_keys("g", p)
        led.reserve(keys, 1, min(case.billed, decision.max_seconds))
        settled = led.commit(keys, "g", case.billed)
        assert settled.level_costs == tuple(lv.expect["cost"] for lv in case.levels)
    client.close()


def test_leg_record_lets_a_restarted_daemon_adopt_the_leg(ledger: Ledger):
    seed(ledger.redis, CUSTOMER, 5_000_000)
    p = plan(level(CUSTOMER, RETAIL))
    ledger.authorize("ad", p, cap_seconds=600, node="fs2")
    keys = ledger.stored_leg_keys(TAG, "ad")
    assert keys == ledger.leg_keys("ad", p)
    ledger.reserve(keys, 1, 60, answered_usec=1_795_000_000_000_000)
    ledger.reserve(keys, 2, 120, answered_usec=1_795_000_000_000_000)
    rec = ledger.leg_record(TAG, "ad")
    # 5.00 - 0.05 connect at 0.10/min buys 2970 s; capped at 600
    assert (rec.state, rec.node, rec.max_seconds, rec.granted_seconds, rec.last_seq,
            rec.answered_usec) == ("answered", "fs2", 600, 120, 2, 1_795_000_000_000_000)
    assert ledger.live_legs(TAG) == {"ad"}
    ledger.commit(keys, "ad", 100)
    assert ledger.live_legs(TAG) == set()
    assert ledger.leg_record(TAG, "nope") is None


# --- the ledger's own connection path (rater.ledger.connections.KeptCalls) ------------------------

def test_ledger_keeps_connections_and_drops_one_interrupted_mid_command(redis_url: str):
    """Connections are kept between scripts; one interrupted after sending (a timeout, a
    killed greenlet) is disconnected, so its late reply can never answer another call."""
    from rater.config import RedisConfig
    from rater.redis_client import make_redis

    client = make_redis(RedisConfig(url=redis_url, pool_size=8))
    led = Ledger(client, KS, leg_ttl_seconds=3600)
    seed(client, CUSTOMER, 10_000_000)
    p = plan(level(CUSTOMER, RETAIL))
    assert led.authorize("keep-1", p, cap_seconds=600).allowed
    ((_, conn),) = led._calls._idle  # kept for the next script, not given back to the pool
    assert conn._sock is not None

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt  # stands for gevent.Timeout or GreenletExit

    conn.read_response = interrupted
    with pytest.raises(KeyboardInterrupt):
        led.reserve(led.leg_keys("keep-1", p), 1, 30)
    del conn.read_response  # the class's own again
    assert conn._sock is None  # disconnected: the reply it was waiting for went with it
    res = led.reserve(led.leg_keys("keep-1", p), 1, 30)  # reconnects; the replay is harmless
    assert res.status == "ok" and res.granted_seconds == 30
    client.close()


def test_ledger_gives_idle_connections_back_to_the_pool_and_its_checks(redis_url: str):
    """A connection the server closed while the ledger kept it idle is not used blind: it
    goes back to the pool, whose check reconnects it, so even with no retry at all the next
    script succeeds. And the ledger never keeps more than a quarter of the pool."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from rater.config import RedisConfig
    from rater.redis_client import make_redis

    client = make_redis(RedisConfig(url=redis_url, pool_size=8))
    led = Ledger(client, KS, leg_ttl_seconds=3600)
    led._calls._retry = Retry(NoBackoff(), 0)  # a failed script is not tried again
    led._calls.IDLE_RETURN = 0.0  # every kept connection counts as idle at once
    seed(client, CUSTOMER, 10_000_000)
    p = plan(level(CUSTOMER, RETAIL))
    assert led.authorize("idle-1", p, cap_seconds=600).allowed
    assert led._calls.kept == 1
    admin = redis.Redis.from_url(redis_url)
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1  # the server hangs up
    admin.close()
    assert led.reserve(led.leg_keys("idle-1", p), 1, 30).granted_seconds == 30

    led._calls.IDLE_RETURN = 60.0
    threads = [threading.Thread(target=led.authorize, args=(f"idle-c{i}", p),
                                kwargs={"cap_seconds": 600}) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert led._calls.kept <= 8 // 4
    client.close()


def test_a_script_sent_without_reply_is_told_from_one_never_sent(redis_url: str):
    """The caller must know whether a failed script may have run: a connection refused
    means it never left (the plain redis error); a reply lost after it was sent (on any of
    the retries) means it may have (ReplyLost), as the ledger then shows."""
    from urllib.parse import urlsplit

    from rater.config import RedisConfig
    from rater.ledger.connections import ReplyLost
    from rater.redis_client import make_redis
    from tests.tcp_proxy import TcpProxy

    parts = urlsplit(redis_url)
    seed(redis.Redis.from_url(redis_url), CUSTOMER, 10_000_000)
    p = plan(level(CUSTOMER, RETAIL))
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        proxy.cut()
        client = make_redis(RedisConfig(url=proxy.url_for(redis_url), pool_size=8))
        led = Ledger(client, KS, leg_ttl_seconds=3600)
        with pytest.raises(redis.ConnectionError) as refused:
            led.authorize("sent-1", p, cap_seconds=600)
        assert not isinstance(refused.value, ReplyLost)
        proxy.restore()
        assert led.authorize("sent-0", p, cap_seconds=600).allowed  # (scripts loaded)
        proxy.lose_replies_to(b"sent-2")
        with pytest.raises(ReplyLost, match="no reply after the command was sent"):
            led.authorize("sent-2", p, cap_seconds=600)
        client.close()
    direct = Ledger(redis.Redis.from_url(redis_url), KS, leg_ttl_seconds=3600)
    assert direct.leg_state(TAG, "sent-1") is None          # never ran
    assert direct.leg_state(TAG, "sent-2") == "authorized"  # ran; its reply was lost


def test_redis_connection_idle_check_sees_a_dirty_connection(redis_url: str):
    from rater.config import RedisConfig
    from rater.redis_client import make_redis

    client = make_redis(RedisConfig(url=redis_url, pool_size=4))
    conn = client.connection_pool.get_connection()
    assert conn.can_read() is False  # clean: answered without a trip through the hub
    conn.send_command("PING")
    deadline = time.monotonic() + 5
    while not conn.can_read():  # a reply nobody read: the pool must not hand it out
        assert time.monotonic() < deadline
    conn.disconnect()
    client.connection_pool.release(conn)
    client.close()


def test_a_read_only_redis_is_busy_not_broken(redis_url: str, ledger: Ledger):
    """During a failover the old primary turns replica and refuses writes (READONLY): the
    ledger says "not now" (LedgerBusy, retried) rather than "failed" (a script error)."""
    from rater.errors import LedgerBusy

    r = redis.Redis.from_url(redis_url)
    seed(r, CUSTOMER, 10_000_000)
    r.execute_command("REPLICAOF", "127.0.0.1", "1")  # a primary that is not there
    try:
        with pytest.raises(LedgerBusy, match="cannot run it now"):
            ledger.authorize("ro-1", plan(level(CUSTOMER, RETAIL)), cap_seconds=600)
    finally:
        r.execute_command("REPLICAOF", "NO", "ONE")
    assert ledger.authorize("ro-1", plan(level(CUSTOMER, RETAIL)), cap_seconds=600).allowed
    r.close()


def test_a_script_error_is_a_ledger_error_not_busy(redis_url: str, ledger: Ledger):
    from rater.errors import LedgerBusy, LedgerError

    r = redis.Redis.from_url(redis_url)
    seed(r, CUSTOMER, 10_000_000)
    p = plan(level(CUSTOMER, RETAIL))
    assert ledger.authorize("bad-1", p, cap_seconds=600).allowed
    r.hset(KS.leg(TAG, "bad-1"), "plan", "not msgpack")  # a corrupt leg
    with pytest.raises(LedgerError) as info:
        ledger.commit(ledger.leg_keys("bad-1", p), "bad-1", 10)
    assert not isinstance(info.value, LedgerBusy)
    r.close()
