"""Package lifecycle: opt-in, order, assignment, termination, "apply to existing customers".

Money moves only through the Redis ledger, one `Ledger.apply` per charge event carrying every
level's entries and the bucket change, exactly once per operation id:

    order:<order>:p<n>              period n's price (and, for n = 0, the setup fee)
      entries  order:<order>:p<n>:<level>:price | :setup     (level 0 = the ordering account)
    terminate:<order>               early-termination refunds, bucket closed
      entries  refund:<order>:p<n>:<level>
    release:<order>                 no money, bucket closed (renewals.py)

The order row in PostgreSQL is written after the Redis operation succeeded, idempotently: a
retry with the same order id (and `now`) replays the Redis operation as a no-op and completes
the row. Charges per level follow DESIGN §5 (`pricing.chain_charges`); what each level paid
is kept in ``order_charges`` so a termination refunds each level its own share.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import psycopg

from loader.db import connect
from rater.config import Config
from rater.errors import InputError, LedgerError, OperationConflict, RaterError
from rater.ledger.client import BucketOp, Entry, Ledger
from rater.ledger.keys import KeySpace
from rater.packages import store
from rater.packages.periods import period_bounds
from rater.packages.pricing import (
    ADMIN,
    AccountKind,
    ChainLevel,
    LevelCharge,
    OptIn,
    Product,
    ResellerType,
    chain_charges,
)
from rater.packages.refunds import refund_micros, started_days, used_fraction
from rater.packages.store import AccountRow, OptInRow, OrderRow, ProductRow
from rater.packages.visibility import (
    RESELLER,
    OptInState,
    Party,
    Refusal,
    opt_in_refusal,
    order_refusal,
    seller_chain,
)
from rater.redis_client import keyspace_of, make_redis


class Refused(RaterError):
    """An operation the rules or the funds do not allow; nothing was changed."""

    def __init__(self, rule: str, account: str | None, message: str) -> None:
        where = f" (account {account})" if account else ""
        super().__init__(f"{rule}: {message}{where}")
        self.rule = rule
        self.account = account
        self.detail = message

    @classmethod
    def of(cls, refusal: Refusal) -> Refused:
        return cls(refusal.rule, refusal.account, refusal.message)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": False, "reason": self.rule, "account": self.account,
                "message": self.detail}


# --- the environment: one PostgreSQL connection and the ledger --------------------------

class _OperationClock:
    """Wall time, or the `now` of the running operation, so `--now` dates the outbox too."""

    def __init__(self) -> None:
        self.held: float | None = None

    def now(self) -> float:
        return time.time() if self.held is None else self.held

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class Env:
    """What lifecycle operations run on: an autocommit connection and the Redis ledger."""

    conn: psycopg.Connection
    ledger: Ledger
    clock: _OperationClock = field(default_factory=_OperationClock)

    @property
    def keys(self) -> KeySpace:
        return self.ledger.keys

    def at(self, now: datetime | None) -> datetime:
        """`now` in UTC (default: the clock), which also dates this operation's outbox."""
        now = datetime.now(UTC) if now is None else now
        if now.utcoffset() is None:
            raise InputError(f"now: a timezone-aware time is required, got {now!r}")
        self.clock.held = now.timestamp()
        return now.astimezone(UTC)

    def tag(self, path: Sequence[AccountRow]) -> str:
        """The hash tag of the tree: its top-level account's."""
        return self.keys.tag(path[-1].number)


@contextmanager
def open_env(cfg: Config) -> Iterator[Env]:
    """Connect to PostgreSQL (autocommit) and Redis for lifecycle operations."""
    client = make_redis(cfg.redis)
    clock = _OperationClock()
    try:
        with connect(cfg, autocommit=True) as conn:
            ledger = Ledger(client, keyspace_of(cfg.redis), cfg.rating.leg_ttl_seconds,
                            clock=clock)
            yield Env(conn, ledger, clock)
    finally:
        client.close()


# --- prices of a chain (pure) --------------------------------------------------------------

def _priced(product: ProductRow) -> Product:
    return Product(product.owner or ADMIN, product.price, product.buy_cost, product.setup_fee,
                   product.commission_bp)


def _level(account: AccountRow, opt_ins: Mapping[str, OptInRow]) -> ChainLevel:
    row = opt_ins.get(account.number)
    opt = None
    if row is not None and row.opt_in and row.price is not None:
        opt = OptIn(row.price, row.setup_fee or 0)
    rtype = ResellerType(account.reseller_type) if account.reseller_type else None
    return ChainLevel(account.number, AccountKind(account.kind), rtype, opt)


def level_charges(
    product: ProductRow, chain: Sequence[AccountRow], opt_ins: Mapping[str, OptInRow]
) -> list[LevelCharge]:
    """What each account of `chain` (ordering account first) pays for one order.

    A reseller ordering for its own use pays what it would pay to sell the product on (buy
    cost under admin, its parent's price, or less its commission), not a customer's price.
    Raises Refused(reseller_not_opted_in) when a margin reseller has no selling price.
    """
    levels = [_level(a, opt_ins) for a in chain]
    try:
        if levels[0].kind != AccountKind.RESELLER:
            return chain_charges(_priced(product), levels)
        buyer = levels[0]
        if buyer.opt_in is None and buyer.reseller_type == ResellerType.MARGIN:
            buyer = dataclasses.replace(buyer, opt_in=OptIn(0))  # only prices the placeholder
        below = ChainLevel("", AccountKind.CUSTOMER)
        return chain_charges(_priced(product), [below, buyer, *levels[1:]])[1:]
    except ValueError as exc:
        raise Refused("reseller_not_opted_in", None, str(exc)) from None


def selling_price(
    product: ProductRow, chain: Sequence[AccountRow], opt_ins: Mapping[str, OptInRow]
) -> LevelCharge | None:
    """What reseller ``chain[0]``'s customers pay for the product; None if it has no price."""
    try:
        below = ChainLevel("", AccountKind.CUSTOMER)
        return chain_charges(_priced(product), [below, *(_level(a, opt_ins) for a in chain)])[0]
    except ValueError:
        return None


def charge_entries(
    op_id: str, order_id: str, chain: Sequence[AccountRow], charges: Sequence[LevelCharge],
    *, with_setup: bool,
) -> list[Entry]:
    """The debits of one charge event, one price (and setup) entry per level that pays."""
    out = []
    for level, (account, c) in enumerate(zip(chain, charges, strict=True)):
        if c.price_micros:
            out.append(Entry(account.number, -c.price_micros, f"{op_id}:{level}:price",
                             "product_price", order_id, account.floor_micros))
        if with_setup and c.setup_fee_micros:
            out.append(Entry(account.number, -c.setup_fee_micros, f"{op_id}:{level}:setup",
                             "product_setup", order_id, account.floor_micros))
    return out


def notice(
    product: ProductRow, op_id: str, account: str, kind: str, payload: dict[str, Any]
) -> dict[str, Any] | None:
    """The `extra` of a ledger op: an email notification when the product asks for one."""
    if not product.email_notification:
        return None
    body = {"product": product.name, "product_id": product.id, **payload}
    return {"notifications": [{"id": op_id, "account": account, "kind": kind, "payload": body}]}


def iso_time(t: datetime) -> str:
    """ISO 8601 in UTC with a Z."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- look-ups ------------------------------------------------------------------------------

def path_of(conn: psycopg.Connection, account: str) -> list[AccountRow]:
    """The account and its ancestors; raises Refused(unknown_account)."""
    path = store.account_path(conn, account)
    if not path:
        raise Refused("unknown_account", account, "no such account")
    return path


def resolve_product(
    conn: psycopg.Connection, ref: str | int, path: Sequence[AccountRow] | None = None
) -> ProductRow:
    """A product by name (among those of the account's sellers when `path` is given) or id.

    Raises Refused(unknown_product), or InputError when a name is ambiguous.
    """
    if isinstance(ref, int):
        found = store.product(conn, ref)
        if found is None:
            raise Refused("unknown_product", None, f"no product with id {ref}")
        return found
    owners: list[str | None] | None = None
    if path is not None:
        owners = [None, *(a.number for a in path)]
    named = store.products_named(conn, ref, owners)
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        ids = ", ".join(f"{p.id} ({p.owner or 'admin'})" for p in named)
        raise InputError(f"product {ref!r} is ambiguous: ids {ids}; give the id")
    if ref.isdigit():
        return resolve_product(conn, int(ref))
    raise Refused("unknown_product", None, f"no product named {ref!r}")


def opt_ins_of(
    conn: psycopg.Connection, product: ProductRow, path: Sequence[AccountRow]
) -> dict[str, OptInRow]:
    """The opt-in rows of the resellers of `path` for the product."""
    return store.opt_ins(conn, product.id, [a.number for a in path if a.kind == RESELLER])


def chain_of(path: Sequence[AccountRow], product: ProductRow) -> list[AccountRow]:
    """The accounts of `path` that pay for the product; raises Refused(not_offered)."""
    by_number = {a.number: a for a in path}
    parties = seller_chain([a.party() for a in path], product.owner)
    if parties is None:
        raise Refused("not_offered", path[0].number, "the product's owner does not sell here")
    return [by_number[p.number] for p in parties]


# --- opt-in ------------------------------------------------------------------------------------

def opt_in(
    env: Env, reseller: str, product_ref: str | int, *, price_micros: int | None = None,
    setup_fee_micros: int | None = None, display: bool = True,
) -> OptInRow:
    """Opt reseller `reseller` into a product (or update its opt-in).

    A margin reseller sells at its own `price_micros` (required) and setup fee (default:
    the setup fee it pays itself); a commission reseller sells at its parent's price and
    takes neither. `display` False hides the product from the reseller's customers (it can
    still assign it). Raises Refused naming the rule, or InputError for the prices.
    """
    conn = env.conn
    path = path_of(conn, reseller)
    product = resolve_product(conn, product_ref, path[1:])
    rows = opt_ins_of(conn, product, path)
    refusal = opt_in_refusal(product, [a.party() for a in path],
                             {k: v.state() for k, v in rows.items()})
    if refusal is not None:
        raise Refused.of(refusal)
    me = path[0]
    if me.reseller_type == ResellerType.COMMISSION:
        if price_micros is not None or setup_fee_micros is not None:
            raise InputError("a commission reseller sells at its parent's price: "
                             "give neither --price nor --setup-fee")
        row = OptInRow(reseller, product.id, True, None, None, display)
    else:
        if price_micros is None:
            raise InputError("--price is required: a margin reseller sells at its own price")
        if setup_fee_micros is None:
            setup_fee_micros = level_charges(product, chain_of(path, product), rows)[0] \
                .setup_fee_micros
        row = OptInRow(reseller, product.id, True, price_micros, setup_fee_micros, display)
    store.upsert_opt_in(conn, row)
    return row


# --- orders ----------------------------------------------------------------------------------

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


def ledger_refusal(reason: str | None, account: str | None) -> RaterError:
    """The error for a ledger operation refused with `reason` at `account`."""
    if reason == "insufficient_funds":
        return Refused("insufficient_funds", account, "not enough funds above the floor")
    if reason == "unknown_account":
        return Refused("unknown_account", account,
                       "no live balance in Redis (run `loader sync`)")
    return LedgerError(f"ledger refused the operation: {reason} {account or ''}".strip())


# --- termination -----------------------------------------------------------------------------

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
    # renewals builds on this module; imported here to keep the dependency one-way
    from rater.packages.renewals import advance_order

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


# --- listing ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Offer:
    """A product as one account sees it."""

    product: ProductRow
    can_order: bool
    refusal: str | None = None           # why it cannot order it (with --all)
    price_micros: int | None = None      # what it pays per period
    setup_fee_micros: int | None = None  # what it pays at its first order
    own: bool = False                    # a reseller's own product
    can_opt_in: bool | None = None       # resellers only, from here on
    opted_in: bool | None = None
    display: bool | None = None
    sell_price_micros: int | None = None
    sell_setup_fee_micros: int | None = None

    def as_dict(self) -> dict[str, Any]:
        p = self.product
        data = {
            "product_id": p.id, "name": p.name, "owner": p.owner or "admin",
            "billing_type": p.billing_type, "billing_days": p.billing_days,
            "free_minutes": p.free_minutes, "applicable_for": p.applicable_for,
            "charge_type": p.charge_type, "can_order": self.can_order,
            "reason": self.refusal, "price_micros": self.price_micros,
            "setup_fee_micros": self.setup_fee_micros,
        }
        if self.can_opt_in is not None or self.own:
            data.update(own=self.own, can_opt_in=self.can_opt_in, opted_in=self.opted_in,
                        display_in_my_products=self.display,
                        sell_price_micros=self.sell_price_micros,
                        sell_setup_fee_micros=self.sell_setup_fee_micros)
        return data


def offers(env: Env, account: str, *, include_refused: bool = False) -> list[Offer]:
    """The products `account` may see: those it may order (customers) or opt into or order
    (resellers), and a reseller's own products; with `include_refused`, every product of
    its sellers too, each with the rule that hides it."""
    conn = env.conn
    path = path_of(conn, account)
    me = path[0]
    is_reseller = me.kind == RESELLER
    owners: list[str | None] = [None, *(a.number for a in path[1:])]
    if is_reseller:
        owners.append(me.number)
    parties = [a.party() for a in path]
    out = []
    for product in store.products_of_owners(conn, owners):
        if product.owner == me.number:
            out.append(Offer(product, False, "not_offered", own=True, sell_price_micros=
                             product.price, sell_setup_fee_micros=product.setup_fee))
            continue
        rows = opt_ins_of(conn, product, path)
        states = {k: v.state() for k, v in rows.items()}
        refusal = order_refusal(product, parties, states)
        price = setup = None
        if refusal is None:
            first = level_charges(product, chain_of(path, product), rows)[0]
            price, setup = first.price_micros, first.setup_fee_micros
        offer = Offer(product, refusal is None, refusal and refusal.rule, price, setup)
        if is_reseller:
            offer = _reseller_view(offer, product, path, rows, parties, states)
        if offer.can_order or offer.can_opt_in or include_refused:
            out.append(offer)
    return out


def _reseller_view(
    offer: Offer, product: ProductRow, path: Sequence[AccountRow],
    rows: Mapping[str, OptInRow], parties: Sequence[Party], states: Mapping[str, OptInState],
) -> Offer:
    may = opt_in_refusal(product, parties, states) is None
    mine = rows.get(path[0].number)
    opted = bool(mine and mine.opt_in)
    sell = selling_price(product, chain_of(path, product), rows) if opted and may else None
    return dataclasses.replace(
        offer, can_opt_in=may, opted_in=opted,
        display=mine.display_in_my_products if mine else None,
        sell_price_micros=sell.price_micros if sell else None,
        sell_setup_fee_micros=sell.setup_fee_micros if sell else None,
    )
