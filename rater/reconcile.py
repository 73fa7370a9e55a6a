"""Compare the live state in Redis with the durable ledger in PostgreSQL, difference by
difference.

Accounts: Redis `bal` must equal the sum of the account's ledger entries in PostgreSQL plus
the amounts of outbox entries not yet there. Buckets: for every active order, Redis `left` must
equal `cap − orders.used_seconds` minus the usage of this period still in the outbox.

The outbox holds exactly what is not yet durable (the flusher deletes an entry only after its
commit), and the comparison reads Redis first, then PostgreSQL in one snapshot, so it is exact
while a flusher runs: an entry flushed in between is found in PostgreSQL and not counted as
pending. Calls committed during the check can still make an account look off for a moment, so
a difference is only reported when it is still there on a second look (`rechecks`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from rater.flusher.decode import MalformedEntry, decode_fields
from rater.ledger.keys import KeySpace
from rater.redis_client import RedisClient

log = logging.getLogger("rater.reconcile")

_CHUNK = 1000   # accounts/buckets read per Redis transaction (each one takes a stream cut-off)
_PAGE = 2000    # outbox entries per XRANGE page

_TREES = """
    WITH RECURSIVE t(number, top) AS (
        SELECT number, number FROM accounts WHERE parent IS NULL
        UNION ALL
        SELECT a.number, t.top FROM accounts a JOIN t ON a.parent = t.number
    )
    SELECT a.number, t.top FROM accounts a LEFT JOIN t ON t.number = a.number
    ORDER BY a.number"""


@dataclass(frozen=True, slots=True)
class Difference:
    """One disagreement. `pending` is what outbox entries not yet in PostgreSQL do to the
    Redis value (money for an account, minus seconds for a bucket), so that
    `difference = redis − (postgres + pending)`; `redis` is None when the key is missing."""

    kind: str                 # account | bucket | bucket_period
    account: str
    order: str | None
    redis: int | None
    postgres: int
    pending: int
    difference: int | None
    detail: str = ""

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.kind, self.account, self.order)


@dataclass(slots=True)
class ReconcileReport:
    differences: list[Difference] = field(default_factory=list)
    accounts_checked: int = 0
    orders_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {"differences": [asdict(d) for d in self.differences],
                "accounts_checked": self.accounts_checked,
                "orders_checked": self.orders_checked}


def reconcile(
    redis_client: RedisClient,
    conn: psycopg.Connection,
    keyspace: KeySpace,
    *,
    rechecks: int = 1,
    recheck_pause: float = 0.5,
) -> ReconcileReport:
    """Report every difference between Redis and PostgreSQL. A difference must be seen
    `rechecks` more times (after `recheck_pause` seconds each) to be reported."""
    report = _compare(redis_client, conn, keyspace)
    for _ in range(rechecks):
        if report.ok:
            break
        time.sleep(recheck_pause)
        again = _compare(redis_client, conn, keyspace)
        seen = {d.key for d in report.differences}
        again.differences = [d for d in again.differences if d.key in seen]
        report = again
    return report


def tree_tops(conn: psycopg.Connection) -> dict[str, str | None]:
    """Every account's top-level ancestor (None when a parent cycle hides it)."""
    return {number: top for number, top in conn.execute(_TREES)}


# --- one comparison ---------------------------------------------------------------------

@dataclass(slots=True)
class _Live:
    """Redis as read: values, and for each key the last outbox id that existed then."""

    balances: dict[str, int | None] = field(default_factory=dict)
    buckets: dict[str, tuple[int, int, int] | None] = field(default_factory=dict)
    # ("a", account) / ("b", order) -> the last outbox id when the value was read
    cutoff: dict[tuple[str, str], str] = field(default_factory=dict)
    entries: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)  # tag -> entries


def _compare(r: RedisClient, conn: psycopg.Connection, ks: KeySpace) -> ReconcileReport:
    tops = tree_tops(conn)
    orders = [(o, a) for o, a in conn.execute(
        "SELECT id, account FROM orders WHERE status = 'active' ORDER BY id")]
    conn.commit()
    report = ReconcileReport()
    by_tag: dict[str, tuple[list[str], list[str]]] = {}
    for number, top in tops.items():
        if top is None:
            report.differences.append(Difference(
                "account", number, None, None, 0, 0, None,
                "not under any top-level account (a parent cycle)"))
            continue
        by_tag.setdefault(ks.tag(top), ([], []))[0].append(number)
    order_account = dict(orders)
    for order, account in orders:
        top = tops.get(account)
        if top is not None:
            by_tag.setdefault(ks.tag(top), ([], []))[1].append(order)

    live = _Live()
    for tag, (accounts, order_ids) in by_tag.items():
        _read_shard(r, ks, tag, accounts, order_ids, live)
    pending_money, pending_usage, present = _pending(live)

    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        sums: dict[str, int] = dict(conn.execute(
            "SELECT account, COALESCE(sum(amount), 0) FROM ledger_entries GROUP BY account"))
        ledger_in_pg = {row[0] for row in conn.execute(
            "SELECT id FROM ledger_entries WHERE id = ANY(%s)", (list(present["ledger"]),))}
        usage_in_pg = {(u, o) for u, o in conn.execute(
            "SELECT cdr_uuid, order_id FROM package_usage "
            "WHERE (cdr_uuid, order_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([u for u, _ in present["usage"]], [o for _, o in present["usage"]]))}
        used = {o: (p, u, st, cap) for o, p, u, st, cap in conn.execute(
            "SELECT o.id, o.period_no, o.used_seconds, o.status, p.free_minutes * 60 "
            "FROM orders o JOIN products p ON p.id = o.product_id WHERE o.id = ANY(%s)",
            (list(order_account),))}

    for number, top in tops.items():
        if top is None:
            continue
        report.accounts_checked += 1
        pg_value = int(sums.get(number, 0))
        pend = sum(amount for entry_id, amount in pending_money.get(number, ())
                   if entry_id not in ledger_in_pg)
        bal = live.balances.get(number)
        if bal is None:
            report.differences.append(Difference(
                "account", number, None, None, pg_value, pend, None, "missing in Redis"))
        elif bal != pg_value + pend:
            report.differences.append(Difference(
                "account", number, None, bal, pg_value, pend, bal - pg_value - pend))

    for order, account in orders:
        row = used.get(order)
        if row is None or row[2] != "active" or order not in live.buckets:
            continue        # ended meanwhile, or its account has no tree (reported above)
        period_no, used_seconds, _, product_cap = row
        bucket = live.buckets[order]
        report.orders_checked += 1
        if bucket is None:
            report.differences.append(Difference(
                "bucket", account, order, None, int(product_cap) - int(used_seconds), 0, None,
                "missing in Redis"))
            continue
        left, period, cap = bucket
        if period != period_no:
            report.differences.append(Difference(
                "bucket_period", account, order, period, int(period_no), 0,
                period - int(period_no), "Redis and PostgreSQL are in different periods"))
            continue
        pg_value = cap - int(used_seconds)
        pend = -sum(seconds for uuid, p, seconds in pending_usage.get(order, ())
                    if p == period and (uuid, order) not in usage_in_pg)
        if left != pg_value + pend:
            report.differences.append(Difference(
                "bucket", account, order, left, pg_value, pend, left - pg_value - pend))
    return report


def _read_shard(
    r: RedisClient, ks: KeySpace, tag: str, accounts: list[str], orders: list[str], live: _Live
) -> None:
    stream = ks.outbox(tag)
    items: list[tuple[str, str]] = [("a", a) for a in accounts] + [("b", o) for o in orders]
    max_cut = None
    for start in range(0, len(items), _CHUNK):
        chunk = items[start:start + _CHUNK]
        # one transaction: the values and the last outbox entry at the same instant
        pipe = r.pipeline(transaction=True)
        for kind, name in chunk:
            if kind == "a":
                pipe.hget(ks.account(tag, name), "bal")
            else:
                pipe.hmget(ks.bucket(tag, name), "left", "period", "cap")
        pipe.xrevrange(stream, "+", "-", count=1)
        replies = pipe.execute()
        last = replies[-1]
        cut = _text(last[0][0]) if last else "0-0"
        for (kind, name), value in zip(chunk, replies, strict=False):
            live.cutoff[kind, name] = cut
            if kind == "a":
                live.balances[name] = None if value is None else int(value)
            else:
                left, period, cap = value
                live.buckets[name] = None if left is None else (
                    int(left), int(period or 0), int(cap or 0))
        if max_cut is None or _id_key(cut) > _id_key(max_cut):
            max_cut = cut
    entries: list[tuple[str, Any]] = []
    if max_cut and max_cut != "0-0":
        entries = list(_xrange(r, stream, max_cut))
    live.entries[tag] = entries


def _xrange(r: RedisClient, stream: str, end: str) -> Iterable[tuple[str, Any]]:
    start = "-"
    while True:
        page = r.xrange(stream, start, end, count=_PAGE) or []
        for entry_id, fields in page:
            yield _text(entry_id), fields
        if len(page) < _PAGE:
            return
        start = "(" + _text(page[-1][0])


def _pending(live: _Live) -> tuple[dict, dict, dict]:
    """Ledger amounts per account and usage per order of the entries read from the outboxes,
    each with the stream cut-off of the value it explains."""
    money: dict[str, list[tuple[str, int]]] = {}
    usage: dict[str, list[tuple[str, int, int]]] = {}
    present: dict[str, set] = {"ledger": set(), "usage": set()}
    for entries in live.entries.values():
        for entry_id, fields in entries:
            try:
                rows = decode_fields(fields)
            except MalformedEntry as exc:
                log.warning("outbox entry %s cannot be read (%s); it is not counted", entry_id,
                            exc)
                continue
            if rows is None:
                continue
            key = _id_key(entry_id)
            for ledger_id, account, amount, *_ in rows.ledger:
                cut = live.cutoff.get(("a", account))
                if cut is not None and key <= _id_key(cut):
                    money.setdefault(account, []).append((ledger_id, amount))
                    present["ledger"].add(ledger_id)
            for uuid, order, _account, period, seconds in rows.usage:
                cut = live.cutoff.get(("b", order))
                if cut is not None and key <= _id_key(cut):
                    usage.setdefault(order, []).append((uuid, period, seconds))
                    present["usage"].add((uuid, order))
    return money, usage, present


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
