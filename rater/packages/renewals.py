"""Package renewals: at each period end a ``one_time`` order is released, a ``recurring`` or
``monthly`` one renews (periods.py says when), catching up every missed period in order.

Exactly once, even with several processes running renewals at the same moment: each order is
handled in its own transaction holding its row (``FOR UPDATE SKIP LOCKED``: another process
skips it), and every charge is a ledger operation with a deterministic id
(``order:<order>:p<n>``; a release is ``release:<order>``), so a replay after a crash
between the Redis operation and the PostgreSQL commit is a no-op that completes the row.

A renewal charges the period's price through the chain (no setup fee) and resets the bucket.
Short of funds at any level: ``release_if_no_balance`` releases the order (nothing charged),
otherwise it renews anyway, below the floor. An order that can no longer be sold on the same
terms is released at its period end, the reason naming the rule: the product went inactive
(``product_inactive``), a reseller in the chain opted out (``reseller_not_opted_in``) or may
no longer resell (``reseller_cannot_resell``), the account left its seller's tree
(``not_offered``) or was deleted (``account_deleted``). Suspensions do not stop renewals.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import redis

from rater.config import Config
from rater.errors import LedgerError, RaterError
from rater.ledger.client import BucketOp
from rater.packages import store
from rater.packages.charges import charge_entries, level_charges, notice
from rater.packages.context import (
    Env,
    chain_of,
    ledger_refusal,
    open_env,
    opt_ins_of,
    path_of,
)
from rater.packages.periods import BillingType, iso_time, period_bounds, periods_due
from rater.packages.store import AccountRow, OrderRow, ProductRow
from rater.packages.visibility import ACTIVE, Refusal, order_refusal
from rater.reasons import Reason

log = logging.getLogger(__name__)

# Refusals that end an order at renewal; the others (suspensions) leave it renewing.
_RELEASING_RULES = frozenset({
    "product_inactive", "not_offered", "reseller_cannot_resell", "reseller_not_opted_in",
})


@dataclass
class RenewalSummary:
    """What one renewal run did."""

    renewed: list[tuple[str, int]] = field(default_factory=list)   # (order, period)
    released: list[tuple[str, str]] = field(default_factory=list)  # (order, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)    # (order, error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "renewed": [{"order": o, "period_no": n} for o, n in self.renewed],
            "released": [{"order": o, "reason": r} for o, r in self.released],
            "failed": [{"order": o, "error": e} for o, e in self.failed],
        }


@dataclass(frozen=True, slots=True)
class Step:
    """One thing that happened to an order: renewed into period n, or released."""

    order_id: str
    period_no: int
    released: str | None = None  # the reason, when released


def run_renewals(cfg: Config, now: datetime | None = None) -> RenewalSummary:
    """Renew or release every order whose period ended by `now` (default: the clock)."""
    with open_env(cfg) as env:
        return renew_due(env, now)


def renew_due(env: Env, now: datetime | None = None) -> RenewalSummary:
    """Process due orders one transaction each until none is left (or all left failed).

    An order whose processing fails (Redis unreachable, a ledger refusal) is rolled back in
    PostgreSQL, reported in `failed` and retried by the next run; its Redis operations that
    did run replay as no-ops then.
    """
    now = env.at(now)
    summary = RenewalSummary()
    seen: list[str] = []
    while True:
        try:
            with env.conn.transaction():
                o = store.next_due_order(env.conn, now, seen)
                if o is None:
                    break
                seen.append(o.id)
                steps = advance_order(env, o, now)
        except (RaterError, redis.RedisError) as exc:
            log.warning("renewal of order %s failed: %s", seen[-1] if seen else "?", exc)
            if not seen:
                raise
            summary.failed.append((seen[-1], str(exc)))
            continue
        for step in steps:
            if step.released is None:
                summary.renewed.append((step.order_id, step.period_no))
            else:
                summary.released.append((step.order_id, step.released))
    return summary


def advance_order(env: Env, o: OrderRow, now: datetime) -> list[Step]:
    """Bring one active order up to `now`: release it or renew each due period in order.

    The caller holds the order's row lock in an open transaction.
    """
    conn = env.conn
    product = store.product(conn, o.product_id)
    assert product is not None
    path = path_of(conn, o.account)
    tag = env.tag(path)
    if env.ledger.redis.hexists(env.keys.ops(tag), f"release:{o.id}"):
        # released in Redis by a run that died before its commit here
        store.end_order(conn, o.id, "released", o.period_end, "released")
        return [Step(o.id, o.period_no, "released")]
    if BillingType(product.billing_type) is BillingType.ONE_TIME:
        if o.period_end > now:
            return []
        return [_release(env, o, product, path, "expired", o.period_end)]
    steps: list[Step] = []
    current = o
    for n in periods_due(product.billing_type, product.billing_days, o.ordered_at,
                         o.period_no, now):
        start, end = period_bounds(product.billing_type, product.billing_days, o.ordered_at, n)
        reason = _end_reason(conn, product, path)
        if reason is None:
            reason = _renew(env, current, product, path, n, start, end, now)
        if reason is not None:
            steps.append(_release(env, current, product, path, reason, start))
            break
        steps.append(Step(o.id, n))
        current = dataclasses.replace(current, period_no=n, period_start=start, period_end=end,
                                      used_seconds=0)
    return steps


def _end_reason(
    conn: psycopg.Connection, product: ProductRow, path: list[AccountRow]
) -> str | None:
    if path[0].status == "deleted":
        return "account_deleted"
    # Renewal is not a new sale: the customer-side switches and suspensions do not apply.
    parties = [dataclasses.replace(a.party(), status=ACTIVE) for a in path]
    rows = opt_ins_of(conn, product, path)
    refusal: Refusal | None = order_refusal(
        product, parties, {k: v.state() for k, v in rows.items()}, assigned=True)
    if refusal is not None and refusal.rule in _RELEASING_RULES:
        return refusal.rule
    return None


def _renew(
    env: Env, o: OrderRow, product: ProductRow, path: list[AccountRow], n: int,
    start: datetime, end: datetime, now: datetime,
) -> str | None:
    """Charge period n and reset the bucket; returns a release reason when funds are short."""
    conn = env.conn
    chain = chain_of(path, product)
    charges = level_charges(product, chain, opt_ins_of(conn, product, path))
    op_id = f"order:{o.id}:p{n}"
    payload = {"order": o.id, "period_no": n, "period_start": iso_time(start),
               "period_end": iso_time(end), "price_micros": charges[0].price_micros}
    result = env.ledger.apply(
        op_id, env.tag(path), charge_entries(op_id, o.id, chain, charges, with_setup=False),
        [BucketOp("renew", o.id, n, product.free_minutes * 60)],
        allow_below_floor=not product.release_if_no_balance,
        extra=notice(product, op_id, o.account, "renewal", payload),
    )
    if not result.ok:
        if result.reason == Reason.INSUFFICIENT_FUNDS and product.release_if_no_balance:
            return "no_balance"
        raise ledger_refusal(result.reason, result.account)
    store.set_period(conn, o.id, n, start, end)
    store.insert_charges(conn, o.id, n, [(c.account, c.price_micros, 0) for c in charges], now)
    return None


def _release(
    env: Env, o: OrderRow, product: ProductRow, path: list[AccountRow], reason: str,
    at: datetime,
) -> Step:
    """Release an order at `at`: nothing charged, bucket closed, status released."""
    tag = env.tag(path)
    bucket = env.ledger.bucket_state(tag, o.id)
    used = None
    if bucket is not None and bucket.period_no == o.period_no:
        used = bucket.used_seconds
    op_id = f"release:{o.id}"
    payload = {"order": o.id, "period_no": o.period_no, "reason": reason,
               "released_at": iso_time(at)}
    result = env.ledger.apply(
        op_id, tag, [], [BucketOp("close", o.id, o.period_no)],
        extra=notice(product, op_id, o.account, "release", payload),
    )
    if not result.ok:
        raise LedgerError(f"release of order {o.id} refused: {result.reason}")
    store.end_order(env.conn, o.id, "released", at, reason, used)
    return Step(o.id, o.period_no, reason)
