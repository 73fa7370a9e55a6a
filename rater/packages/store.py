"""PostgreSQL reads and writes of the package lifecycle: products, account paths, opt-ins,
orders and what each level paid per period (``order_charges``, migration 0004).

Functions take an open connection and run single statements; the caller owns transactions
(``with conn.transaction():``) and row locks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import psycopg

from rater.packages.visibility import OptInState, Party


@dataclass(frozen=True, slots=True)
class ProductRow:
    id: int
    owner: str | None  # None = admin
    name: str
    status: str
    buy_cost: int
    price: int
    setup_fee: int
    commission_bp: int
    billing_type: str
    billing_days: int
    free_minutes: int
    applicable_for: str
    charge_type: str
    can_be_purchased: bool
    reseller_can_resell: bool
    admin_customers_can_order: bool
    reseller_customers_can_order: bool
    release_if_no_balance: bool
    rate_group_id: int | None
    apply_to_existing: bool
    email_notification: bool


@dataclass(frozen=True, slots=True)
class AccountRow:
    number: str
    parent: str | None
    kind: str
    reseller_type: str | None
    billing: str
    credit_limit: int
    status: str

    @property
    def floor_micros(self) -> int:
        """How low the balance may go: 0 prepaid, -credit_limit postpaid."""
        return -self.credit_limit if self.billing == "postpaid" else 0

    def party(self) -> Party:
        return Party(self.number, self.parent, self.kind, self.reseller_type, self.status)


@dataclass(frozen=True, slots=True)
class OptInRow:
    reseller: str
    product_id: int
    opt_in: bool
    price: int | None
    setup_fee: int | None
    display_in_my_products: bool

    def state(self) -> OptInState:
        return OptInState(self.opt_in, self.display_in_my_products)


@dataclass(frozen=True, slots=True)
class OrderRow:
    id: str
    account: str
    product_id: int
    ordered_at: datetime
    period_no: int
    period_start: datetime
    period_end: datetime
    used_seconds: int
    status: str
    ended_at: datetime | None = None
    end_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeRow:
    """What one level paid for one period of an order."""

    level: int
    account: str
    price: int
    setup_fee: int
    refunded: int


def _cols(cls: type, alias: str = "") -> str:
    return ", ".join(f"{alias}{f.name}" for f in fields(cls))


def _utc(row: tuple, cls: type) -> object:
    values = [v.astimezone(UTC) if isinstance(v, datetime) else v for v in row]
    return cls(*values)


# --- products ----------------------------------------------------------------------------

def product(conn: psycopg.Connection, product_id: int) -> ProductRow | None:
    row = conn.execute(
        f"SELECT {_cols(ProductRow)} FROM products WHERE id = %s", (product_id,)
    ).fetchone()
    return ProductRow(*row) if row else None


def products_named(
    conn: psycopg.Connection, name: str, owners: Sequence[str | None] | None = None
) -> list[ProductRow]:
    """Products called `name`, of any owner or of one of `owners` (None = admin)."""
    rows = conn.execute(
        f"SELECT {_cols(ProductRow)} FROM products WHERE name = %s ORDER BY id", (name,)
    ).fetchall()
    found = [ProductRow(*r) for r in rows]
    return found if owners is None else [p for p in found if p.owner in owners]


def products_of_owners(conn: psycopg.Connection, owners: Sequence[str | None]) -> list[ProductRow]:
    """Every product owned by one of `owners` (None = admin), by owner then name."""
    numbers = [o for o in owners if o is not None]
    rows = conn.execute(
        f"SELECT {_cols(ProductRow)} FROM products"
        " WHERE (owner IS NULL AND %s) OR owner = ANY(%s) ORDER BY owner NULLS FIRST, name, id",
        (None in owners, numbers),
    ).fetchall()
    return [ProductRow(*r) for r in rows]


# --- accounts and opt-ins ----------------------------------------------------------------

def account_path(conn: psycopg.Connection, number: str) -> list[AccountRow]:
    """The account then each ancestor up to its tree's top; [] for an unknown account."""
    rows = conn.execute(
        f"""
        WITH RECURSIVE up(depth, number) AS (
            SELECT 0, number FROM accounts WHERE number = %s
            UNION ALL
            SELECT up.depth + 1, a.parent FROM up JOIN accounts a ON a.number = up.number
            WHERE a.parent IS NOT NULL AND up.depth < 64
        )
        SELECT {_cols(AccountRow, "a.")} FROM up JOIN accounts a USING (number)
        ORDER BY up.depth
        """,
        (number,),
    ).fetchall()
    return [AccountRow(*r) for r in rows]


def opt_ins(
    conn: psycopg.Connection, product_id: int, resellers: Iterable[str]
) -> dict[str, OptInRow]:
    rows = conn.execute(
        f"SELECT {_cols(OptInRow)} FROM reseller_products"
        " WHERE product_id = %s AND reseller = ANY(%s)",
        (product_id, list(resellers)),
    ).fetchall()
    return {r[0]: OptInRow(*r) for r in rows}


def upsert_opt_in(conn: psycopg.Connection, row: OptInRow) -> None:
    conn.execute(
        """
        INSERT INTO reseller_products
            (reseller, product_id, opt_in, price, setup_fee, display_in_my_products)
        VALUES (%s, %s, %s, %s, %s, %s)
        ON CONFLICT (reseller, product_id) DO UPDATE SET opt_in = EXCLUDED.opt_in,
            price = EXCLUDED.price, setup_fee = EXCLUDED.setup_fee,
            display_in_my_products = EXCLUDED.display_in_my_products
        """,
        (row.reseller, row.product_id, row.opt_in, row.price, row.setup_fee,
         row.display_in_my_products),
    )


def customers_on_rate_group(conn: psycopg.Connection, rate_group_id: int) -> list[str]:
    """Active customers whose tariff is this rate group, by number."""
    rows = conn.execute(
        "SELECT number FROM accounts WHERE rate_group_id = %s AND kind = 'customer'"
        " AND status = 'active' ORDER BY number",
        (rate_group_id,),
    ).fetchall()
    return [r[0] for r in rows]


# --- orders ------------------------------------------------------------------------------

def order(conn: psycopg.Connection, order_id: str, *, lock: bool = False) -> OrderRow | None:
    """One order; with `lock`, its row is locked FOR UPDATE until the transaction ends."""
    sql = f"SELECT {_cols(OrderRow)} FROM orders WHERE id = %s"
    row = conn.execute(sql + (" FOR UPDATE" if lock else ""), (order_id,)).fetchone()
    return _utc(row, OrderRow) if row else None  # type: ignore[return-value]


def next_due_order(
    conn: psycopg.Connection, now: datetime, skip: Sequence[str] = ()
) -> OrderRow | None:
    """The active order whose period ended longest ago (at `now` or before), locked FOR
    UPDATE; orders another transaction holds are skipped, as are the ids in `skip`."""
    row = conn.execute(
        f"""
        SELECT {_cols(OrderRow)} FROM orders
        WHERE status = 'active' AND period_end <= %s AND NOT (id = ANY(%s))
        ORDER BY period_end, id LIMIT 1
        FOR UPDATE SKIP LOCKED
        """,
        (now, list(skip)),
    ).fetchone()
    return _utc(row, OrderRow) if row else None  # type: ignore[return-value]


def orders_of(conn: psycopg.Connection, account: str, product_id: int) -> list[OrderRow]:
    rows = conn.execute(
        f"SELECT {_cols(OrderRow)} FROM orders WHERE account = %s AND product_id = %s"
        " ORDER BY ordered_at, id",
        (account, product_id),
    ).fetchall()
    return [_utc(r, OrderRow) for r in rows]  # type: ignore[misc]


def insert_order(conn: psycopg.Connection, o: OrderRow) -> bool:
    """Insert the order unless its id exists; True when inserted."""
    cur = conn.execute(
        """
        INSERT INTO orders (id, account, product_id, ordered_at, period_no, period_start,
                            period_end, used_seconds, status)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING
        """,
        (o.id, o.account, o.product_id, o.ordered_at, o.period_no, o.period_start,
         o.period_end, o.used_seconds, o.status),
    )
    return cur.rowcount == 1


def set_period(
    conn: psycopg.Connection, order_id: str, period_no: int, start: datetime, end: datetime
) -> None:
    """Move an order into a new period with an empty usage count."""
    conn.execute(
        "UPDATE orders SET period_no = %s, period_start = %s, period_end = %s,"
        " used_seconds = 0, updated_at = now() WHERE id = %s",
        (period_no, start, end, order_id),
    )


def end_order(
    conn: psycopg.Connection, order_id: str, status: str, at: datetime, reason: str,
    used_seconds: int | None = None,
) -> None:
    """Mark an order released or terminated (recording the final usage if given)."""
    conn.execute(
        "UPDATE orders SET status = %s, ended_at = %s, end_reason = %s,"
        " used_seconds = COALESCE(%s, used_seconds), updated_at = now() WHERE id = %s",
        (status, at, reason, used_seconds, order_id),
    )


def insert_charges(
    conn: psycopg.Connection, order_id: str, period_no: int,
    charges: Sequence[tuple[str, int, int]], at: datetime,
) -> None:
    """Record (account, price, setup fee) per level, level 0 first; a replay is a no-op."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO order_charges (order_id, period_no, level, account, price, setup_fee,"
            " charged_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(order_id, period_no, level, account, price, setup, at)
             for level, (account, price, setup) in enumerate(charges)],
        )


def period_charges(conn: psycopg.Connection, order_id: str, period_no: int) -> list[ChargeRow]:
    rows = conn.execute(
        f"SELECT {_cols(ChargeRow)} FROM order_charges WHERE order_id = %s AND period_no = %s"
        " ORDER BY level",
        (order_id, period_no),
    ).fetchall()
    return [ChargeRow(*r) for r in rows]


def record_refunds(
    conn: psycopg.Connection, order_id: str, period_no: int,
    refunds: Sequence[tuple[str, int, int]], at: datetime,
) -> None:
    """Store each level's refund (account, price paid, refund), creating the level's row
    when the period's charge was never recorded here (an imported order)."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO order_charges (order_id, period_no, level, account, price, setup_fee,"
            " refunded, charged_at) VALUES (%s, %s, %s, %s, %s, 0, %s, %s)"
            " ON CONFLICT (order_id, period_no, level) DO UPDATE SET refunded = EXCLUDED.refunded",
            [(order_id, period_no, level, account, paid, refund, at)
             for level, (account, paid, refund) in enumerate(refunds)],
        )
