"""Early termination: an active order ends now, each level refunded its own share.

One ledger operation, ``terminate:<order>``, carries one refund per level that gets money
back (``refund:<order>:p<n>:<level>``, by the product's charge type, refunds.py) and closes
the bucket; the order row is marked terminated in the same PostgreSQL transaction that holds
its lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

import psycopg

from rater.ledger.client import BucketOp, Entry
from rater.packages import store
from rater.packages.charges import level_charges, notice
from rater.packages.context import Env, Refused, chain_of, ledger_refusal, opt_ins_of, path_of
from rater.packages.periods import iso_time
from rater.packages.refunds import refund_micros, started_days, used_fraction
from rater.packages.renewals import advance_order
from rater.packages.store import OrderRow


@dataclass(frozen=True, slots=True)
class Terminated:
    order_id: str
    account: str
    period_no: int
    used: Fraction
    used_seconds: int
    days_used: int
    refunds: tuple[tuple[str, int, int], ...]  # (account, price paid, refund) per level
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": True, "order": self.order_id, "account": self.account,
            "period_no": self.period_no, "used_fraction": str(self.used),
            "used_seconds": self.used_seconds, "days_used": self.days_used,
            "replayed": self.replayed,
            "refunds": [{"level": i, "account": a, "paid_micros": p, "refund_micros": r}
                        for i, (a, p, r) in enumerate(self.refunds)],
        }


def terminate(env: Env, order_id: str, *, now: datetime | None = None) -> Terminated:
    """End an active order early: refund each level its share of the current period's price
    by the product's charge type, close the bucket, mark it terminated.

    A period that ended before `now` is renewed (or released) first, as the renewal job
    would have. Terminating a terminated order returns it (`replayed`). Raises
    Refused(unknown_order | order_not_active).
    """
    now = env.at(now)
    conn = env.conn
    with conn.transaction():  # committed on its own: a release stands even if we refuse
        o = store.order(conn, order_id, lock=True)
        if o is None:
            raise Refused("unknown_order", None, f"no order {order_id!r}")
        if o.status == "active" and o.period_end <= now:
            advance_order(env, o, now)
    with conn.transaction():
        o = store.order(conn, order_id, lock=True)
        assert o is not None
        if o.status == "terminated":
            return _terminated(conn, o)
        if o.status != "active":
            raise Refused("order_not_active", o.account, f"order {order_id} is {o.status}")
        product = store.product(conn, o.product_id)
        assert product is not None
        path = path_of(conn, o.account)
        tag = env.tag(path)
        paid = [(c.account, c.price) for c in store.period_charges(conn, o.id, o.period_no)]
        if not paid:  # an imported order: its charges were never recorded here
            chain = chain_of(path, product)
            paid = [(c.account, c.price_micros)
                    for c in level_charges(product, chain, opt_ins_of(conn, product, path))]
        bucket = env.ledger.bucket_state(tag, o.id)
        used_seconds = o.used_seconds
        if bucket is not None:  # seconds held by calls in progress count as used: they
            used_seconds = bucket.used_seconds  # keep them after the order ends
        days_used = started_days(o.period_start, now)
        used = used_fraction(
            product.charge_type, days_used=days_used,
            period_days=max(1, started_days(o.period_start, o.period_end)),
            used_seconds=used_seconds, free_minutes=product.free_minutes,
        )
        refunds = tuple((a, p, refund_micros(p, used)) for a, p in paid)
        op_id = f"terminate:{o.id}"
        entries = [Entry(a, r, f"refund:{o.id}:p{o.period_no}:{level}", "product_refund", o.id)
                   for level, (a, _, r) in enumerate(refunds) if r]
        payload = {"order": o.id, "period_no": o.period_no, "used_fraction": str(used),
                   "refund_micros": refunds[0][2], "ended_at": iso_time(now)}
        result = env.ledger.apply(
            op_id, tag, entries, [BucketOp("close", o.id, o.period_no)],
            extra=notice(product, op_id, o.account, "termination", payload),
        )
        if not result.ok:
            raise ledger_refusal(result.reason, result.account)
        store.end_order(conn, o.id, "terminated", now, "terminated", used_seconds)
        store.record_refunds(conn, o.id, o.period_no, refunds, now)
    return Terminated(o.id, o.account, o.period_no, used, used_seconds, days_used, refunds)


def _terminated(conn: psycopg.Connection, o: OrderRow) -> Terminated:
    rows = store.period_charges(conn, o.id, o.period_no)
    paid = sum(c.price for c in rows)
    back = sum(c.refunded for c in rows)
    used = Fraction(1) - Fraction(back, paid) if paid else Fraction(1)
    return Terminated(
        o.id, o.account, o.period_no, used, o.used_seconds,
        started_days(o.period_start, o.ended_at or o.period_end),
        tuple((c.account, c.price, c.refunded) for c in rows), replayed=True,
    )
