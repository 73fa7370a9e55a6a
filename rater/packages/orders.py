"""Orders: an account orders a product, its seller assigns it, or admin applies it to every
customer of a rate group.

An order is one ledger operation, ``order:<order>:p0``, carrying period 0's price and (at the
account's first order of the product) the setup fee for every level of the chain, and the
bucket's opening. The order row is written after the Redis operation succeeded, idempotently:
a retry with the same order id (and `now`) replays the operation as a no-op and completes the
row. What each level paid is kept in ``order_charges`` so a termination refunds each its own
share.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from rater.errors import OperationConflict
from rater.ledger.client import BucketOp
from rater.packages import store
from rater.packages.charges import charge_entries, level_charges, notice
from rater.packages.context import (
    Env,
    Refused,
    chain_of,
    ledger_refusal,
    opt_ins_of,
    path_of,
    resolve_product,
)
from rater.packages.periods import iso_time, period_bounds
from rater.packages.store import OrderRow, ProductRow
from rater.packages.visibility import order_refusal


@dataclass(frozen=True, slots=True)
class Placed:
    """An order placed (or found already placed: `replayed`)."""

    order_id: str
    account: str
    product: ProductRow
    period_no: int
    period_start: datetime
    period_end: datetime
    charges: tuple[tuple[str, int, int], ...]  # (account, price, setup fee) per level
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": True, "order": self.order_id, "account": self.account,
            "product": self.product.name, "product_id": self.product.id,
            "period_no": self.period_no, "period_start": iso_time(self.period_start),
            "period_end": iso_time(self.period_end),
            "free_seconds": self.product.free_minutes * 60, "replayed": self.replayed,
            "charges": [{"level": i, "account": a, "price_micros": p, "setup_fee_micros": s}
                        for i, (a, p, s) in enumerate(self.charges)],
        }


def new_order_id() -> str:
    return "ord-" + uuid.uuid4().hex


def place_order(
    env: Env, account: str, product_ref: str | int, *, now: datetime | None = None,
    order_id: str | None = None, assigned: bool = False,
) -> Placed:
    """Order a product for `account` (or, with `assigned`, assign it as its seller would).

    Charges the setup fee (only at the account's first order of the product) and period 0's
    price through the whole chain and opens the bucket, in one ledger operation; then writes
    the order row. With the id of an order already written, returns it (`replayed`). Raises
    Refused naming the rule (or ``insufficient_funds``) with nothing changed.
    """
    now = env.at(now)
    conn = env.conn
    path = path_of(conn, account)
    product = resolve_product(conn, product_ref, path[1:])
    if order_id:
        existing = store.order(conn, order_id)
        if existing is not None:
            return _existing(conn, existing, account, product)
    order_id = order_id or new_order_id()
    op_id = f"order:{order_id}:p0"
    tag = env.tag(path)
    rows = opt_ins_of(conn, product, path)
    # An operation already applied (crash before the row was written) is completed as it
    # was accepted, even if a rule changed since.
    done = bool(env.ledger.redis.hexists(env.keys.ops(tag), op_id))
    if not done:
        refusal = order_refusal(product, [a.party() for a in path],
                                {k: v.state() for k, v in rows.items()}, assigned=assigned)
        if refusal is not None:
            raise Refused.of(refusal)
    chain = chain_of(path, product)
    charges = level_charges(product, chain, rows)
    first = all(o.id == order_id for o in store.orders_of(conn, account, product.id))
    if not first:
        charges = [dataclasses.replace(c, setup_fee_micros=0) for c in charges]
    start, end = period_bounds(product.billing_type, product.billing_days, now, 0)
    charged = tuple((c.account, c.price_micros, c.setup_fee_micros) for c in charges)
    payload = {"order": order_id, "period_no": 0, "period_start": iso_time(start),
               "period_end": iso_time(end), "price_micros": charged[0][1],
               "setup_fee_micros": charged[0][2], "assigned": assigned}
    result = env.ledger.apply(
        op_id, tag, charge_entries(op_id, order_id, chain, charges, with_setup=True),
        [BucketOp("open", order_id, 0, product.free_minutes * 60)],
        extra=notice(product, op_id, account, "order", payload),
    )
    if not result.ok:
        raise ledger_refusal(result.reason, result.account)
    with conn.transaction():
        store.insert_order(conn, OrderRow(order_id, account, product.id, now, 0, start, end,
                                          0, "active"))
        store.insert_charges(conn, order_id, 0, charged, now)
    return Placed(order_id, account, product, 0, start, end, charged)


def _existing(
    conn: psycopg.Connection, o: OrderRow, account: str, product: ProductRow
) -> Placed:
    if o.account != account or o.product_id != product.id:
        raise OperationConflict(
            f"order {o.id} exists for account {o.account} and product {o.product_id}")
    paid = store.period_charges(conn, o.id, 0)
    return Placed(o.id, o.account, product, o.period_no, o.period_start, o.period_end,
                  tuple((c.account, c.price, c.setup_fee) for c in paid), replayed=True)


# --- apply to existing customers -------------------------------------------------------------

@dataclass
class Applied:
    product_id: int
    ordered: list[str] = field(default_factory=list)             # order ids
    skipped: list[str] = field(default_factory=list)             # accounts with an active order
    refused: list[tuple[str, str]] = field(default_factory=list)  # (account, rule)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": True, "product_id": self.product_id, "ordered": self.ordered,
                "skipped": self.skipped,
                "refused": [{"account": a, "reason": r} for a, r in self.refused]}


def apply_product(env: Env, product_ref: str | int, *, now: datetime | None = None) -> Applied:
    """Assign a product with a rate group and apply_to_existing to every active customer on
    that rate group; customers with an active order of it are skipped, so a re-run is a
    no-op. Each customer's order id is derived from the product, the customer and how many
    orders of it the customer had, so a re-run after a crash completes the same order."""
    now = env.at(now)
    product = resolve_product(env.conn, product_ref)
    if product.rate_group_id is None or not product.apply_to_existing:
        raise Refused("not_applicable", None,
                      "the product has no rate group or apply_to_existing is off")
    summary = Applied(product.id)
    for number in store.customers_on_rate_group(env.conn, product.rate_group_id):
        orders = store.orders_of(env.conn, number, product.id)
        if any(o.status == "active" for o in orders):
            summary.skipped.append(number)
            continue
        oid = f"ord-apply-{product.id}-{number}-{len(orders)}"
        try:
            placed = place_order(env, number, product.id, now=now, order_id=oid, assigned=True)
        except Refused as exc:
            summary.refused.append((number, exc.rule))
            continue
        summary.ordered.append(placed.order_id)
    return summary
