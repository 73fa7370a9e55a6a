"""The rows a rating snapshot is made of, read from PostgreSQL in one consistent view."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg
from psycopg import pq

from rater.db import one_row


@dataclass
class ReferenceData:
    """The rows a snapshot is made of, as plain tuples (what `read_reference` returns).

    rate_groups       (id, name, markup_bp, owner)
    accounts          (number, parent, kind, reseller_type, billing, credit_limit, rate_group_id,
                       max_channels, status)
    rates             (rate_group_id, direction, prefix, destination, price_per_min, connect_fee,
                       included_seconds, init_inc, inc) - any iterable, read once
    blocked           (rate_group_id, prefix)
    dids              (number, account)
    products          (id, name, owner, applicable_for, free_minutes, status)
    product_prefixes  (product_id, prefix)
    orders            (id, account, product_id, period_no, period_start, period_end), the last
                      two as epoch seconds; active orders only
    """

    version: int
    rate_groups: list[tuple] = field(default_factory=list)
    accounts: list[tuple] = field(default_factory=list)
    rates: Iterable[tuple] = field(default_factory=list)
    blocked: list[tuple] = field(default_factory=list)
    dids: list[tuple] = field(default_factory=list)
    products: list[tuple] = field(default_factory=list)
    product_prefixes: list[tuple] = field(default_factory=list)
    orders: list[tuple] = field(default_factory=list)


def read_reference(conn: psycopg.Connection) -> ReferenceData:
    """Read the reference tables in one consistent (repeatable-read) view.

    Opens its own read-only transaction when `conn` is idle; inside the caller's transaction
    it reads there (the caller then owns consistency).
    """
    own = conn.info.transaction_status == pq.TransactionStatus.IDLE
    with conn.transaction() if own else contextlib.nullcontext():
        if own:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        ref = ReferenceData(version=one_row(conn.execute(
            "SELECT version FROM reference_version"))[0])
        ref.rate_groups = conn.execute(
            "SELECT id, name, markup_bp, owner FROM rate_groups ORDER BY id").fetchall()
        ref.accounts = conn.execute(
            "SELECT number, parent, kind, reseller_type, billing, credit_limit, rate_group_id,"
            " max_channels, status FROM accounts").fetchall()
        # A server-side cursor keeps a million rate rows from sitting twice in memory.
        with conn.cursor(name="snapshot_rates") as cur:
            cur.itersize = 20_000
            cur.execute(
                "SELECT rate_group_id, direction, prefix, destination, price_per_min,"
                " connect_fee, included_seconds, init_inc, inc FROM rates")
            ref.rates = list(cur)
        ref.blocked = conn.execute("SELECT rate_group_id, prefix FROM blocked_prefixes").fetchall()
        ref.dids = conn.execute("SELECT number, account FROM dids").fetchall()
        ref.products = conn.execute(
            "SELECT id, name, owner, applicable_for, free_minutes, status FROM products"
            " ORDER BY id").fetchall()
        ref.product_prefixes = conn.execute(
            "SELECT product_id, prefix FROM product_prefixes").fetchall()
        ref.orders = conn.execute(
            "SELECT id, account, product_id, period_no,"
            " floor(extract(epoch FROM period_start))::bigint,"
            " floor(extract(epoch FROM period_end))::bigint"
            " FROM orders WHERE status = 'active'").fetchall()
    return ref
