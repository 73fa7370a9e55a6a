"""Writes decoded outbox rows to PostgreSQL in one transaction per batch, idempotently.

The usual batch has never been written: its rows are COPied (binary, exact types) straight
into their tables, and the package usage they carry is added to each order's `used_seconds`.
A replayed entry (a flusher that died after its commit, a lost acknowledgement, claimed
entries) makes that COPY fail on a unique key; the transaction is then rolled back and the
batch written the careful way: COPY into temporary staging tables, then `INSERT … SELECT …
ON CONFLICT DO NOTHING` on each row's id, so what is already there adds nothing, and only
usage rows really inserted count against their order. Batches with notifications take the
careful way too (they are rare). Dead letters go in the same transaction.

Timestamps go over the wire as int8: the binary form of timestamptz is the number of
microseconds since 2000-01-01 UTC, so `usec - PG_EPOCH_USEC` is exact (no float, no
datetime object per value).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from rater.config import mask_url
from rater.db import one_row
from rater.errors import DatabaseUnavailable
from rater.flusher.decode import EntryRows

log = logging.getLogger("rater.flusher")

# ON COMMIT DELETE ROWS: every transaction starts with empty staging tables.
_STAGING = {
    "cdrs": ("uuid text, account text, direction text, caller text, destination text, "
             "node text, created_usec int8, answered_usec int8, hangup_usec int8, "
             "billed_seconds int4, hangup_cause text, settlement text, total_cost int8, "
             "at_usec int8",
             ["text"] * 6 + ["int8"] * 3 + ["int4", "text", "text", "int8", "int8"]),
    "charges": ("cdr_uuid text, level int2, account text, rate_group text, prefix text, "
                "price_per_min int8, charged_seconds int4, free_seconds int4, cost int8",
                ["text", "int2", "text", "text", "text", "int8", "int4", "int4", "int8"]),
    "usage": ("cdr_uuid text, order_id text, account text, period_no int4, seconds int4",
              ["text", "text", "text", "int4", "int4"]),
    "ledger": ("id text, account text, amount int8, kind text, ref text, at_usec int8",
               ["text", "text", "int8", "text", "text", "int8"]),
    "notifications": ("id text, account text, kind text, payload text, at_usec int8",
                      ["text", "text", "text", "text", "int8"]),
}


def _ts(col: str, nullable: bool = False) -> str:
    # exact integer microseconds (to_timestamp() goes through a double)
    expr = f"timestamptz 'epoch' + {col} * interval '1 microsecond'"
    return f"CASE WHEN {col} > 0 THEN {expr} END" if nullable else expr


_INSERT = {
    "cdrs": f"""
        INSERT INTO cdrs (uuid, account, direction, caller, destination, node, created_at,
                          answered_at, hangup_at, billed_seconds, hangup_cause, settlement,
                          total_cost, recorded_at)
        SELECT uuid, account, direction, caller, destination, node,
               {_ts('created_usec', True)}, {_ts('answered_usec', True)},
               {_ts('hangup_usec', True)}, billed_seconds, hangup_cause, settlement,
               total_cost, {_ts('at_usec')}
        FROM flush_cdrs ON CONFLICT (uuid) DO NOTHING""",
    "charges": """
        INSERT INTO cdr_charges (cdr_uuid, level, account, rate_group, prefix, price_per_min,
                                 charged_seconds, free_seconds, cost)
        SELECT cdr_uuid, level, account, rate_group, prefix, price_per_min, charged_seconds,
               free_seconds, cost
        FROM flush_charges ON CONFLICT (cdr_uuid, level) DO NOTHING""",
    "ledger": f"""
        INSERT INTO ledger_entries (id, account, amount, kind, ref, created_at)
        SELECT id, account, amount, kind, ref, {_ts('at_usec')}
        FROM flush_ledger ON CONFLICT (id) DO NOTHING""",
    "notifications": f"""
        INSERT INTO notifications (id, account, kind, payload, created_at)
        SELECT id, account, kind, payload::jsonb, {_ts('at_usec')}
        FROM flush_notifications ON CONFLICT (id) DO NOTHING""",
}

# Lock the orders in id order before touching them: two flushers never deadlock on them.
_LOCK_ORDERS = """
    SELECT 1 FROM orders WHERE id IN (SELECT order_id FROM flush_usage)
    ORDER BY id FOR UPDATE"""

_INSERT_USAGE = """
    WITH ins AS (
        INSERT INTO package_usage (cdr_uuid, order_id, account, period_no, seconds)
        SELECT cdr_uuid, order_id, account, period_no, seconds FROM flush_usage
        ON CONFLICT (cdr_uuid, order_id) DO NOTHING
        RETURNING order_id, period_no, seconds
    ), used AS (
        SELECT order_id, period_no, sum(seconds) AS seconds FROM ins GROUP BY 1, 2
    ), upd AS (
        UPDATE orders o SET used_seconds = o.used_seconds + used.seconds
        FROM used WHERE o.id = used.order_id AND o.period_no = used.period_no
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM upd)"""

_INSERT_DEAD = """
    INSERT INTO outbox_dead_letters (stream, entry_id, raw, error, consumer)
    VALUES (%s, %s, %s, %s, %s) ON CONFLICT (stream, entry_id) DO NOTHING"""

TABLES = ("cdrs", "charges", "usage", "ledger", "notifications")

# Unix epoch -> PostgreSQL epoch (2000-01-01 UTC), in microseconds.
PG_EPOCH_USEC = 946_684_800_000_000

# COPY straight into the tables: (table, columns, binary types, rows of an EntryRows -> rows).
_DIRECT = {
    "cdrs": ("cdrs (uuid, account, direction, caller, destination, node, created_at, "
             "answered_at, hangup_at, billed_seconds, hangup_cause, settlement, total_cost, "
             "recorded_at)",
             ["text"] * 6 + ["int8"] * 3 + ["int4", "text", "text", "int8", "int8"]),
    "charges": ("cdr_charges (cdr_uuid, level, account, rate_group, prefix, price_per_min, "
                "charged_seconds, free_seconds, cost)", _STAGING["charges"][1]),
    "usage": ("package_usage (cdr_uuid, order_id, account, period_no, seconds)",
              _STAGING["usage"][1]),
    "ledger": ("ledger_entries (id, account, amount, kind, ref, created_at)",
               ["text", "text", "int8", "text", "text", "int8"]),
}

_LOCK_ORDER_IDS = "SELECT 1 FROM orders WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
_ADD_USAGE = """
    UPDATE orders o SET used_seconds = o.used_seconds + u.seconds
    FROM unnest(%s::text[], %s::int4[], %s::int8[]) AS u(order_id, period_no, seconds)
    WHERE o.id = u.order_id AND o.period_no = u.period_no"""


def _pg_time(usec: int) -> int | None:
    """A nullable event time (0: never) as timestamptz's binary value."""
    return usec - PG_EPOCH_USEC if usec > 0 else None


def _cdr_row(r: tuple) -> tuple:
    return (*r[:6], _pg_time(r[6]), _pg_time(r[7]), _pg_time(r[8]), r[9], r[10], r[11], r[12],
            r[13] - PG_EPOCH_USEC)


def _ledger_row(r: tuple) -> tuple:
    return (r[0], r[1], r[2], r[3], r[4], r[5] - PG_EPOCH_USEC)


_DIRECT_ROW = {"cdrs": _cdr_row, "charges": None, "usage": None, "ledger": _ledger_row}
_YIELD_EVERY = 500   # entries copied between two turns given to other greenlets


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry that cannot be written, kept raw with the reason."""

    stream: str
    entry_id: str
    raw: str
    error: str


@dataclass(slots=True)
class WriteResult:
    """Rows offered and rows really inserted, per table (a replay inserts nothing)."""

    staged: dict[str, int]
    inserted: dict[str, int]
    orders_updated: int = 0
    dead_letters: int = 0

    @property
    def duplicates(self) -> int:
        return sum(self.staged.values()) - sum(self.inserted.values())


class RowsRejected(Exception):
    """PostgreSQL refused the rows themselves (a data or constraint error): retrying the same
    batch cannot succeed, the bad entry has to be found and set aside."""


class BatchWriter:
    """Owns one PostgreSQL connection (opened lazily, reopened after a failure)."""

    def __init__(self, connect: Callable[[], psycopg.Connection], consumer: str = "") -> None:
        self._connect = connect
        self._conn: psycopg.Connection | None = None
        self.consumer = consumer
        self.replayed_batches = 0  # batches that had to take the staging path

    def write(self, entries: Sequence[EntryRows], dead: Sequence[DeadLetter] = ()) -> WriteResult:
        """Make the rows of `entries` and the dead letters durable in one transaction.

        Raises DatabaseUnavailable (connection lost, server down, deadlock, any error that a
        retry may cure; the transaction is rolled back or lost) or RowsRejected (a row was
        refused; rolled back). Nothing is partly written either way."""
        conn = self._connection()
        try:
            result = self._write(conn, entries, dead)
            conn.commit()
            return result
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            self._rollback()
            raise RowsRejected(_pg_message(exc)) from exc
        except psycopg.OperationalError as exc:
            self.close()
            raise DatabaseUnavailable(f"PostgreSQL write failed: {_pg_message(exc)}") from exc
        except psycopg.Error as exc:
            # e.g. a missing table (schema not migrated): retried, loudly, until fixed
            if not self._rollback():
                self.close()
            raise DatabaseUnavailable(f"PostgreSQL refused the batch: {_pg_message(exc)}") \
                from exc

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # --- internals ----------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._conn = None
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {_pg_message(exc)}") \
                from exc
        try:
            conn.autocommit = False
            with conn.cursor() as cur:
                for table, (columns, _) in _STAGING.items():
                    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS flush_{table} ({columns}) "
                                "ON COMMIT DELETE ROWS")
            conn.commit()
        except psycopg.Error as exc:
            with contextlib.suppress(Exception):
                conn.close()
            raise DatabaseUnavailable(f"PostgreSQL set-up failed: {_pg_message(exc)}") from exc
        self._conn = conn
        return conn

    def _write(
        self, conn: psycopg.Connection, entries: Sequence[EntryRows], dead: Sequence[DeadLetter]
    ) -> WriteResult:
        """Write everything in the current transaction (not committed here)."""
        if not any(e.notifications for e in entries):
            try:
                return self._write_direct(conn, entries, dead)
            except psycopg.errors.UniqueViolation:
                conn.rollback()  # some entry is already there: the careful way, from scratch
                self.replayed_batches += 1
        return self._write_staged(conn, entries, dead)

    def _write_direct(
        self, conn: psycopg.Connection, entries: Sequence[EntryRows], dead: Sequence[DeadLetter]
    ) -> WriteResult:
        staged = dict.fromkeys(TABLES, 0)
        result = WriteResult(staged, staged)  # everything offered is inserted, or it raises
        with conn.cursor() as cur:
            for table in ("cdrs", "charges", "usage", "ledger"):
                staged[table] = _copy(cur, table, entries, direct=True)
            if staged["usage"]:
                result.orders_updated = _add_usage(cur, entries)
            if dead:
                cur.executemany(_INSERT_DEAD, [(d.stream, d.entry_id, d.raw, d.error,
                                                self.consumer) for d in dead])
                result.dead_letters = len(dead)
        return result

    def _write_staged(
        self, conn: psycopg.Connection, entries: Sequence[EntryRows], dead: Sequence[DeadLetter]
    ) -> WriteResult:
        staged = dict.fromkeys(TABLES, 0)
        inserted = dict.fromkeys(TABLES, 0)
        result = WriteResult(staged, inserted)
        with conn.cursor() as cur:
            for table in TABLES:
                n = _copy(cur, table, entries)
                staged[table] = n
                if n == 0:
                    continue
                if table == "usage":
                    cur.execute(_LOCK_ORDERS)
                    cur.execute(_INSERT_USAGE)
                    row = one_row(cur)
                    inserted[table], result.orders_updated = int(row[0]), int(row[1])
                else:
                    cur.execute(_INSERT[table])
                    inserted[table] = cur.rowcount
            if dead:
                cur.executemany(_INSERT_DEAD, [(d.stream, d.entry_id, d.raw, d.error,
                                                self.consumer) for d in dead])
                result.dead_letters = len(dead)
        return result

    def _rollback(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.rollback()
            return True
        except psycopg.Error:
            self.close()
            return False


def _copy(cur: psycopg.Cursor, table: str, entries: Sequence[EntryRows], *,
          direct: bool = False) -> int:
    """COPY every entry's `table` rows into its staging table, or with `direct` straight
    into the target table (converted where the two layouts differ); returns the count."""
    n = 0
    for e in entries:
        n += len(getattr(e, table))
    if n == 0:
        return 0
    if direct:
        (target, types), convert = _DIRECT[table], _DIRECT_ROW[table]
    else:
        target, types, convert = f"flush_{table}", _STAGING[table][1], None
    with cur.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        write = copy.write_row
        for i, e in enumerate(entries):
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                time.sleep(0)     # gevent.sleep(0) once monkey-patched: let others run
            rows = getattr(e, table)
            if convert is None:
                for row in rows:
                    write(row)
            else:
                for row in rows:
                    write(convert(row))
    return n


def _add_usage(cur: psycopg.Cursor, entries: Sequence[EntryRows]) -> int:
    """Add the batch's package seconds to their orders (still in that period); all usage
    rows were just inserted. Orders are locked in id order, so flushers never deadlock."""
    total: dict[tuple[str, int], int] = {}
    for e in entries:
        for _uuid, order, _account, period, seconds in e.usage:
            total[order, period] = total.get((order, period), 0) + seconds
    keys = sorted(total)
    orders = [k[0] for k in keys]
    cur.execute(_LOCK_ORDER_IDS, (orders,))
    cur.execute(_ADD_USAGE, (orders, [k[1] for k in keys], [total[k] for k in keys]))
    return cur.rowcount


def _pg_message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def postgres_connector(url: str, connect_timeout: float = 5.0) -> Callable[[], psycopg.Connection]:
    """A `connect` for the Flusher: TCP keepalives and a send timeout so a dead peer is
    noticed in about half a minute rather than never. Errors name the URL with its password
    masked."""

    def connect() -> psycopg.Connection:
        try:
            return psycopg.connect(
                url, autocommit=False, connect_timeout=max(1, int(connect_timeout)),
                application_name="rater-flusher", keepalives=1, keepalives_idle=10,
                keepalives_interval=5, keepalives_count=3, tcp_user_timeout=30_000,
            )
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {mask_url(url)}: {_pg_message(exc)}"
            ) from None

    return connect
