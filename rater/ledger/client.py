"""The Redis ledger: atomic, idempotent money operations over a whole reseller chain.

Every operation is one Lua script (rater/ledger/scripts/). Each carries an operation id and
stores its first result, so a replay (redis-py retrying after a timeout, a duplicate event,
a restarted daemon) returns that result and changes nothing.

    authorize  how long may a leg run at every level; counts a live channel. No money moves.
    reserve    hold money and package seconds up to a billed duration (all levels or none).
    commit     final charge from the billed duration; CDR + ledger entries to the outbox.
    release    commit of a leg that never answered (0 billed seconds).
    apply      top-ups, adjustments, package charges and refunds, with bucket changes.

What the scripts answer becomes a typed result in rater/ledger/replies.py; what they store
and the order of their arguments are named in rater/ledger/fields.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from rater.clock import Clock, SystemClock
from rater.errors import LedgerBusy, LedgerError
from rater.ledger.connections import ClusterCalls, KeptCalls
from rater.ledger.keys import KeySpace
from rater.ledger.replies import (
    ApplyResult,
    Authorization,
    DryRun,
    Reservation,
    Settlement,
    parse,
    parse_dry_run,
)
from rater.ledger.scripts import register_scripts
from rater.money import div_half_up
from rater.rating.chain import LegPlan
from rater.rating.tariff import Tariff, paid_cost_parts
from rater.reasons import SettlementKind


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry of a money operation (amount > 0 credits, < 0 debits)."""

    account: str
    amount_micros: int
    entry_id: str
    kind: str
    ref: str = ""
    floor_micros: int = 0


@dataclass(frozen=True, slots=True)
class BucketOp:
    """Open, renew (reset to cap) or close an order's free-seconds bucket."""

    action: str                   # open | renew | close
    order_id: str
    period_no: int = 0
    cap_seconds: int = 0


@dataclass(frozen=True, slots=True)
class LegRecord:
    """A leg as Redis knows it (for adoption after a restart)."""

    uuid: str
    tag: str
    state: str                    # authorized | answered | committed
    node: str
    max_seconds: int
    granted_seconds: int
    last_seq: int
    answered_usec: int
    created_usec: int = 0


@dataclass(frozen=True, slots=True)
class AccountState:
    balance_micros: int
    held_micros: int
    live_legs: int


@dataclass(frozen=True, slots=True)
class BucketState:
    seconds_left: int
    seconds_held: int
    period_no: int
    cap_seconds: int
    closed: bool = False

    @property
    def used_seconds(self) -> int:
        """Seconds of this period used up: consumed, or held by calls in progress (they
        keep them even if the order ends now)."""
        if self.closed:
            return self.cap_seconds
        spent = self.cap_seconds - self.seconds_left + self.seconds_held
        return min(max(spent, 0), self.cap_seconds)


# The uuid of a dry run's leg key: never read or written, it only puts the script in the
# tree's slot (a cluster routes a script by its first key).
_DRY_RUN_UUID = "dry-run"


def effective_price_per_min(t: Tariff) -> int:
    """Price per minute after markup, half-up to the micro (recorded on CDR charges)."""
    return div_half_up(t.price_per_min_micros * (10_000 + t.markup_bp), 10_000)


class Ledger:
    """Runs the ledger scripts against one Redis (or one Cluster, thanks to hash tags)."""

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        keyspace: KeySpace,
        leg_ttl_seconds: int = 86_400,
        clock: Clock | None = None,
    ) -> None:
        self.redis = client
        self.keys = keyspace
        self.leg_ttl = leg_ttl_seconds
        self.clock = clock or SystemClock()
        self._scripts = register_scripts(client)
        self._calls: KeptCalls | ClusterCalls = (
            ClusterCalls(client) if isinstance(client, redis.RedisCluster) else KeptCalls(client))
        self._shared: dict[Any, Any] = {}  # tag -> (outbox, live); (tag, account) -> key

    # --- legs -----------------------------------------------------------------------

    def leg_keys(self, uuid: str, plan: LegPlan) -> list[str]:
        """KEYS of every leg script: leg, outbox, live set, accounts, buckets. Only the
        leg's own key is new: the others are shared by every leg that uses them (a live
        leg keeps its keys, so copies would cost ~300 bytes a leg)."""
        tag = plan.tag
        shared = self._shared.get(tag)
        if shared is None:
            shared = self._share(tag, (self.keys.outbox(tag), self.keys.live(tag)))
        keys = [self.keys.leg(tag, uuid), *shared]
        for lv in plan.levels:
            key = self._shared.get((tag, lv.account))
            keys.append(key if key is not None else
                        self._share((tag, lv.account), self.keys.account(tag, lv.account)))
        for lv in plan.levels:
            for b in lv.buckets:
                keys.append(self.keys.bucket(tag, b.order_id))
        return keys

    def _share(self, what: Any, value: Any) -> Any:
        if len(self._shared) >= 100_000:  # bounded: accounts that place calls are fewer
            self._shared.clear()
        self._shared[what] = value
        return value

    def stored_leg_keys(self, tag: str, uuid: str) -> list[str] | None:
        """The KEYS recorded at authorization (for a daemon that restarted)."""
        raw = self.redis.hget(self.keys.leg(tag, uuid), "keys")
        return _text(raw).split("\n") if raw else None

    def authorize(
        self, uuid: str, plan: LegPlan, *, cap_seconds: int, caller: str = "", node: str = "",
        created_usec: int = 0,
    ) -> Authorization:
        """Max billed seconds the whole chain can pay for (capped), or the refusal."""
        args = self._authorize_args(uuid, plan, cap_seconds, caller, node)
        args.append(created_usec)
        reply = self._run("authorize", self.leg_keys(uuid, plan), args)
        return parse("authorize", reply, Authorization)

    def authorize_dry_run(
        self, plan: LegPlan, *, cap_seconds: int, billed_seconds: int,
    ) -> DryRun:
        """authorize's decision for `plan` now, with nothing written (no leg, no channel),
        and per level the figures it was taken from and what `billed_seconds` would cost
        (`rater quote`)."""
        args = self._authorize_args(_DRY_RUN_UUID, plan, cap_seconds, "", "")
        args += [0, max(0, billed_seconds)]
        return parse_dry_run(
            self._run("authorize", self.leg_keys(_DRY_RUN_UUID, plan), args))

    def _authorize_args(
        self, uuid: str, plan: LegPlan, cap_seconds: int, caller: str, node: str,
    ) -> list[Any]:
        """authorize's ARGV up to its tail (fields.py: AUTHORIZE_ARGV, AUTHORIZE_LEVEL_ARGV)."""
        args: list[Any] = [
            "o:a", self._now_usec(), cap_seconds, uuid, plan.account, plan.direction,
            plan.destination, caller, node, len(plan.levels),
        ]
        for lv in plan.levels:
            q, r, _ = paid_cost_parts(lv.tariff)
            t = lv.tariff
            args += [
                lv.account, lv.floor_micros, lv.max_channels, q, r, t.connect_fee_micros,
                t.included_seconds, t.init_inc, t.inc, effective_price_per_min(t), lv.prefix,
                lv.rate_group, len(lv.buckets),
            ]
            for b in lv.buckets:
                args += [b.order_id, b.period_no]
        return args

    def reserve(
        self, keys: Sequence[str], seq: int, target_seconds: int, answered_usec: int = 0
    ) -> Reservation:
        """Hold money and package seconds for billed seconds up to `target_seconds`.
        `seq` numbers the leg's reservations (1, 2, ...): the operation id."""
        args = [f"o:r:{seq}", target_seconds, answered_usec, seq]
        return parse("reserve", self._run("reserve", keys, args), Reservation)

    def commit(
        self,
        keys: Sequence[str],
        uuid: str,
        billed_seconds: int,
        *,
        hangup_cause: str = "",
        created_usec: int = 0,
        answered_usec: int = 0,
        hangup_usec: int = 0,
        settlement: SettlementKind = SettlementKind.FINAL,
    ) -> Settlement:
        """Charge the leg from its billed duration, return unused holds, write the CDR
        (none for a withdrawn leg)."""
        if billed_seconds < 0:
            raise LedgerError(f"leg {uuid}: billed seconds cannot be negative ({billed_seconds})")
        if settlement == SettlementKind.WITHDRAWN and billed_seconds:
            raise LedgerError(f"leg {uuid}: a withdrawn leg bills nothing ({billed_seconds} s)")
        args = [
            "o:c", billed_seconds, self._now_usec(), hangup_cause, created_usec, answered_usec,
            hangup_usec, SettlementKind(settlement).value, self.leg_ttl, uuid,
        ]
        return parse("commit", self._run("commit", keys, args), Settlement)

    def release(
        self, keys: Sequence[str], uuid: str, *, hangup_cause: str = "", created_usec: int = 0,
        hangup_usec: int = 0,
    ) -> Settlement:
        """Finish a leg that never answered: nothing charged, holds and channel freed."""
        return self.commit(
            keys, uuid, 0, hangup_cause=hangup_cause, created_usec=created_usec,
            hangup_usec=hangup_usec, settlement=SettlementKind.UNANSWERED,
        )

    # --- money operations -------------------------------------------------------------

    def apply(
        self,
        op_id: str,
        tag: str,
        entries: Sequence[Entry],
        buckets: Sequence[BucketOp] = (),
        *,
        allow_below_floor: bool = False,
        extra: Any = None,
    ) -> ApplyResult:
        """Move money (and open/renew/close buckets) for accounts of one tree, atomically,
        exactly once per `op_id`. Refused (nothing changed) when a debit would take an
        account below its floor, unless `allow_below_floor`."""
        keys = [self.keys.ops(tag), self.keys.outbox(tag)]
        keys += [self.keys.account(tag, e.account) for e in entries]
        keys += [self.keys.bucket(tag, b.order_id) for b in buckets]
        args: list[Any] = [op_id, self._now_usec(), int(allow_below_floor), len(entries)]
        for e in entries:
            args += [e.account, e.floor_micros, e.amount_micros, e.entry_id, e.kind, e.ref]
        args.append(len(buckets))
        for b in buckets:
            if b.action not in ("open", "renew", "close"):
                raise LedgerError(f"bucket {b.order_id}: unknown action {b.action!r}")
            args += [b.action, b.order_id, b.period_no, b.cap_seconds]
        args.append("" if extra is None else json.dumps(extra, separators=(",", ":")))
        return parse("apply", self._run("apply", keys, args), ApplyResult)

    # --- reads ------------------------------------------------------------------------

    def account_state(self, tag: str, account: str) -> AccountState | None:
        bal, held, ch = self.redis.hmget(self.keys.account(tag, account), "bal", "held", "ch")
        if bal is None:
            return None
        return AccountState(int(bal), int(held or 0), int(ch or 0))

    def bucket_state(self, tag: str, order_id: str) -> BucketState | None:
        left, held, period, cap, closed = self.redis.hmget(
            self.keys.bucket(tag, order_id), "left", "held", "period", "cap", "closed"
        )
        if left is None:
            return None
        return BucketState(int(left), int(held or 0), int(period or 0), int(cap or 0),
                           closed is not None)

    def leg_record(self, tag: str, uuid: str) -> LegRecord | None:
        """What a restarted daemon needs to adopt a leg, or None when it is unknown."""
        st, node, max_s, granted, seq, ans, created = self.redis.hmget(
            self.keys.leg(tag, uuid), "st", "node", "max", "T", "seq", "ans", "cr"
        )
        if st is None:
            return None
        return LegRecord(
            uuid=uuid, tag=tag, state=_text(st), node=_text(node or b""),
            max_seconds=int(max_s or 0), granted_seconds=int(granted or 0),
            last_seq=int(seq or 0), answered_usec=int(ans or 0), created_usec=int(created or 0),
        )

    def leg_state(self, tag: str, uuid: str) -> str | None:
        """authorized | answered | committed, or None when unknown."""
        raw = self.redis.hget(self.keys.leg(tag, uuid), "st")
        return _text(raw) if raw else None

    def live_legs(self, tag: str) -> set[str]:
        """Uuids of the legs of this shard that are authorized and not yet committed."""
        return {_text(u) for u in self.redis.smembers(self.keys.live(tag))}

    # --- internals ----------------------------------------------------------------------

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self._scripts[name]
        try:
            try:
                result = self._calls.call("EVALSHA", script.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:  # a restarted Redis, or SCRIPT FLUSH
                script.sha = self.redis.script_load(script.script)
                result = self._calls.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except _BUSY_ERRORS as exc:
            raise LedgerBusy(f"ledger script {name}: Redis cannot run it now: {exc}") from exc
        except redis.ResponseError as exc:
            if str(exc).startswith(_BUSY_PREFIXES):
                raise LedgerBusy(f"ledger script {name}: Redis cannot run it now: {exc}") from exc
            raise LedgerError(f"ledger script {name} failed: {exc}") from exc
        return result

    def _now_usec(self) -> int:
        return int(self.clock.now() * 1_000_000)


# Replies that say "not now" rather than "never" (redis-py types some, not BUSY/MASTERDOWN).
_BUSY_ERRORS = (redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError,
                redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)
_BUSY_PREFIXES = ("BUSY", "MASTERDOWN", "NOREPLICAS", "CLUSTERDOWN", "LOADING")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

