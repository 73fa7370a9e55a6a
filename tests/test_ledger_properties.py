"""Random interleavings of calls, top-ups, package renewals and terminations, replays (what
a restarted daemon does) over one reseller tree, on the real Redis ledger (hypothesis's
stateful testing). After every step:

- every account's live balance is its opening balance plus the sum of its ledger entries
  (the outbox, what PostgreSQL receives), so `rater reconcile` would find nothing;
- no hold, bucket or channel count is negative, and nothing is held once no call is live;
- no level goes below its floor, except by the seconds a call ran past what it had
  reserved (the safety net's granularity, README "What is guaranteed"), bounded here;
- every CDR charge is what the rating rules give for its billed and free seconds.

    R1 margin reseller (wholesale 0.06/min per second)
    ├── C1 prepaid customer (retail 0.60/min, connect 0.01, 30/6) with package "pk"
    ├── C2 postpaid customer (same retail, credit limit 0.50)
    └── R2 commission reseller (0.12/min per second)
        └── C3 prepaid customer (retail)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from rater.ledger.client import BucketOp, Entry, Ledger
from rater.ledger.keys import KeySpace
from rater.rating.chain import BucketRef, LegPlan, LevelPlan
from rater.rating.tariff import Tariff, charged_seconds, leg_cost, money_due

KS = KeySpace(prefix="rt", shards=4)
R1, R2, C1, C2, C3 = "1000000001", "1000000002", "2000000001", "2000000002", "2000000003"
TAG = KS.tag(R1)
RETAIL = Tariff(600_000, connect_fee_micros=10_000, init_inc=30, inc=6)
MIDDLE = Tariff(120_000)
WHOLESALE = Tariff(60_000)
OPENING = {R1: 5_000_000, R2: 2_000_000, C1: 1_000_000, C2: 0, C3: 500_000}
FLOOR = {R1: 0, R2: 0, C1: 0, C2: -500_000, C3: 0}
PACKAGE, PACKAGE_SECONDS = "pk", 120


def chain(customer: str, period: int) -> tuple[LevelPlan, ...]:
    """The levels that pay for a call of `customer`, customer first."""
    buckets = (BucketRef(PACKAGE, 1, period, PACKAGE_SECONDS, 2_000_000_000),) \
        if customer == C1 else ()
    mine = LevelPlan(customer, "retail", "44", "UK", RETAIL, FLOOR[customer], 0, buckets)
    r1 = LevelPlan(R1, "wholesale", "44", "UK", WHOLESALE, FLOOR[R1], 0, ())
    if customer == C3:
        return (mine, LevelPlan(R2, "middle", "44", "UK", MIDDLE, FLOOR[R2], 0, ()), r1)
    return (mine, r1)


@dataclass
class Call:
    uuid: str
    plan: LegPlan
    keys: list[str]
    granted: int = 0
    seq: int = 0


SEEN: dict[str, int] = {"commits": 0, "free": 0, "past": 0, "replays": 0, "renewals": 0}


@dataclass
class Overrun:
    """Money a level may be below its floor by: calls that ran past their reservation."""

    micros: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPENING, 0))


class LedgerMachine(RuleBasedStateMachine):
    calls = Bundle("calls")

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self.r = redis.Redis.from_url(redis_url)
        self.r.flushdb()
        for account, balance in OPENING.items():
            self.r.hset(KS.account(TAG, account), mapping={"bal": balance, "held": 0, "ch": 0})
        self.ledger = Ledger(redis.Redis.from_url(redis_url), KS, leg_ttl_seconds=3600)
        self.period = 0
        assert self.ledger.apply("order:pk:0", TAG, [], [BucketOp("open", PACKAGE, 0,
                                                                  PACKAGE_SECONDS)]).ok
        self.next_id = 0
        self.live: dict[str, Call] = {}
        self.overrun = Overrun()
        self.last_op: tuple | None = None

    def teardown(self) -> None:
        self.ledger.redis.close()
        self.r.close()

    # --- rules ------------------------------------------------------------------------------

    @rule(target=calls, customer=st.sampled_from([C1, C2, C3]))
    def start(self, customer: str):
        self.next_id += 1
        uuid = f"call-{self.next_id}"
        plan = LegPlan(customer, "outbound", "447700900123", TAG, chain(customer, self.period))
        if not self.ledger.authorize(uuid, plan, cap_seconds=3600).allowed:
            return None
        call = Call(uuid, plan, self.ledger.leg_keys(uuid, plan))
        self.live[uuid] = call
        return call

    @rule(call=calls, step=st.integers(1, 120))
    def reserve(self, call: Call | None, step: int):
        if call is None or call.uuid not in self.live:
            return
        call.seq += 1
        res = self.ledger.reserve(call.keys, call.seq, call.granted + step)
        assert res.granted_seconds >= call.granted
        call.granted = res.granted_seconds
        self.last_op = ("reserve", call.keys, call.seq, res.granted_seconds)

    @rule(call=consumes(calls), past=st.one_of(st.integers(0, 2), st.integers(-60, -1)))
    def end(self, call: Call | None, past: int):
        """The call ends `past` seconds after (or before) the end of what it reserved."""
        if call is None or call.uuid not in self.live:
            return
        billed = max(0, call.granted + past)
        res = self.ledger.commit(call.keys, call.uuid, billed)
        assert res.ok, res
        del self.live[call.uuid]
        SEEN["commits"] += 1
        SEEN["past"] += billed > call.granted
        if billed > call.granted:  # past its money: allowed below the floor by that much
            for level in call.plan.levels:
                over = (leg_cost(level.tariff, billed, 0).cost_micros
                        - leg_cost(level.tariff, call.granted, 0).cost_micros)
                self.overrun.micros[level.account] += over + level.tariff.connect_fee_micros
        self.last_op = ("commit", call.keys, call.uuid, billed)

    @rule(account=st.sampled_from(sorted(OPENING)), amount=st.integers(1, 300_000))
    def topup(self, account: str, amount: int):
        self.next_id += 1
        op = f"topup:{self.next_id}"
        entry = Entry(account, amount, op, "topup", op)
        assert self.ledger.apply(op, TAG, [entry]).ok
        self.last_op = ("apply", op, entry)

    @rule(action=st.sampled_from(["renew", "terminate"]))
    def package(self, action: str):
        if action == "terminate":
            self.ledger.apply(f"terminate:pk:{self.period}", TAG, [],
                              [BucketOp("close", PACKAGE, self.period)])
            return
        self.period += 1
        SEEN["renewals"] += 1
        assert self.ledger.apply(f"order:pk:{self.period}", TAG, [],
                                 [BucketOp("renew", PACKAGE, self.period, PACKAGE_SECONDS)]).ok

    @rule()
    def replay_last(self):
        """A restarted daemon runs its last operation again: nothing changes."""
        if self.last_op is None:
            return
        before = self._state()
        SEEN["replays"] += 1
        kind, *args = self.last_op
        if kind == "reserve":
            keys, seq, granted = args
            assert self.ledger.reserve(keys, seq, granted + 60).granted_seconds == granted
        elif kind == "commit":
            keys, uuid, billed = args
            self.ledger.commit(keys, uuid, billed + 5)
        else:
            op, entry = args
            self.ledger.apply(op, TAG, [entry])
        assert self._state() == before

    # --- invariants -------------------------------------------------------------------------

    def _state(self) -> dict:
        return {a: self.r.hgetall(KS.account(TAG, a)) for a in OPENING} | {
            "bucket": self.r.hgetall(KS.bucket(TAG, PACKAGE)),
            "outbox": self.r.xlen(KS.outbox(TAG))}

    def _outbox(self) -> list[dict]:
        return [json.loads(f[b"e"]) for _, f in self.r.xrange(KS.outbox(TAG))]

    @invariant()
    def balances_are_the_ledger(self):
        sums = dict.fromkeys(OPENING, 0)
        for op in self._outbox():
            for e in op.get("ledger", []):
                sums[e["account"]] += e["amount"]
        for account, opening in OPENING.items():
            bal = int(self.r.hget(KS.account(TAG, account), "bal"))
            assert bal == opening + sums[account], account

    @invariant()
    def nothing_negative_and_nothing_held_when_idle(self):
        for account in OPENING:
            bal, held, ch = (int(v) for v in self.r.hmget(KS.account(TAG, account),
                                                           "bal", "held", "ch"))
            assert held >= 0 and ch >= 0, account
            if not self.live:
                assert held == 0 and ch == 0, account
            # below the floor only by what calls ran past their reservations
            assert bal - held >= FLOOR[account] - self.overrun.micros[account], account
        bucket = self.r.hgetall(KS.bucket(TAG, PACKAGE))
        if bucket:
            assert int(bucket[b"left"]) >= 0 and int(bucket[b"held"]) >= 0

    @invariant()
    def charges_follow_the_rating_rules(self):
        for op in self._outbox():
            if op.get("op") != "commit":
                continue
            billed = op["cdr"]["billed_seconds"]
            for ch in op["charges"]:
                SEEN["free"] += ch["free_seconds"] > 0
                tariff = {R1: WHOLESALE, R2: MIDDLE}.get(ch["account"], RETAIL)
                assert ch["charged_seconds"] == charged_seconds(tariff, billed)
                paid = ch["charged_seconds"] - ch["free_seconds"]
                assert ch["cost"] == money_due(tariff, paid)


def test_random_interleavings_keep_the_books(redis_url: str):
    run_state_machine_as_test(
        lambda: LedgerMachine(redis_url),
        settings=settings(max_examples=40, stateful_step_count=50, deadline=None,
                          suppress_health_check=list(HealthCheck)))
    # the runs went where the rules matter: package seconds, overruns, replays, renewals
    assert all(SEEN.values()), SEEN
