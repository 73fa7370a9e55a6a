"""CSV rate decks: `loader import-rates --rate-group NAME [--replace] FILE.csv`.

The header row names rate fields (`RATE_FIELDS`; `prefix` and `price_per_min` required).
The file is streamed: each line is validated in Python and, while the deck is clean, sent
with COPY into a temporary staging table; one `INSERT ... SELECT ... ON CONFLICT` then
merges it into `rates` (into an empty group, COPY goes straight into `rates`). Every bad
line is reported (the message is capped), and a deck with any bad line writes nothing: the
whole import is one transaction.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from typing import TextIO

import psycopg

from rater.db import one_row
from rater.errors import InputError, RaterError
from rater.money import parse_micros
from rater.prefixes import normalize_prefix
from rater.rating.tariff import BP_PER_UNIT, LUA_EXACT_LIMIT, LUA_MAX_PAID_SECONDS, PAID_COST_DEN

# Column order of the staging table and of every row handed to `copy_rates`.
RATE_FIELDS = (
    "prefix", "destination", "country", "call_type", "direction",
    "price_per_min", "connect_fee", "included_seconds", "init_inc", "inc",
)
REQUIRED_FIELDS = ("prefix", "price_per_min")
DIRECTIONS = ("outbound", "inbound")
MAX_ERRORS_SHOWN = 50
MAX_MONEY_MICROS = 10**15  # a billion units: far above any real price, far below bigint
MAX_INT = 2**31 - 1        # integer columns

# Serializes dataset and deck imports (two imports must not interleave their checks).
IMPORT_LOCK = 0x696D706F  # "impo"

_STAGING_COLUMNS = ("rate_group_id", "direction", *(f for f in RATE_FIELDS if f != "direction"))


def max_price_micros(markup_bp: int) -> int:
    """Highest price per minute the Redis scripts rate exactly with this markup (tariff.py)."""
    # paid_cost_parts needs (price * (10000 + markup) // den + 1) * LUA_MAX_PAID_SECONDS < 2**53
    q_max = -(-LUA_EXACT_LIMIT // LUA_MAX_PAID_SECONDS) - 2
    return ((q_max + 1) * PAID_COST_DEN - 1) // (BP_PER_UNIT + markup_bp)


def acquire_import_lock(conn: psycopg.Connection, timeout: float = 60.0) -> None:
    """Wait (at most `timeout` seconds) until no other import runs; held until commit."""
    conn.execute(f"SET LOCAL lock_timeout = '{int(timeout * 1000)}ms'")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (IMPORT_LOCK,))
    except psycopg.errors.LockNotAvailable:
        raise RaterError(
            f"another import has held the import lock for {timeout:g} s; try again later"
        ) from None
    conn.execute("SET LOCAL lock_timeout TO DEFAULT")


# --- validation of single values (shared with the dataset import) -------------------------

def money(text: object, where: str, *, signed: bool = False) -> int:
    """A decimal amount in micro-units; non-negative unless `signed`. Raises InputError."""
    if isinstance(text, str):
        whole, _, frac = text.partition(".")
        if (whole.isdigit() and whole.isascii() and len(frac) <= 6
                and (not frac or (frac.isdigit() and frac.isascii()))):
            value = int(whole) * 1_000_000 + (int(frac.ljust(6, "0")) if frac else 0)
        else:
            value = parse_micros(text, where)
    else:
        value = parse_micros(text, where)  # type: ignore[arg-type]  # it names the bad type
    if value < 0 and not signed:
        raise InputError(f"{where}: {text!r} must not be negative")
    if abs(value) >= MAX_MONEY_MICROS:
        raise InputError(f"{where}: {text!r} is out of range")
    return value


def seconds_text(text: str, where: str, minimum: int) -> int:
    """A whole number of seconds written as text (a CSV cell)."""
    if not (text.isdigit() and text.isascii()):
        raise InputError(f"{where}: {text!r} is not a whole number of seconds")
    value = int(text)
    if value < minimum or value > MAX_INT:
        raise InputError(f"{where}: {value} must be between {minimum} and {MAX_INT}")
    return value


# --- staging and merging (shared with the dataset import) ---------------------------------

def create_staging(conn: psycopg.Connection) -> None:
    """A temporary `rate_staging` table that lives until the end of the transaction."""
    conn.execute("DROP TABLE IF EXISTS pg_temp.rate_staging")
    conn.execute(
        "CREATE TEMP TABLE rate_staging (rate_group_id bigint, direction text, prefix text,"
        " destination text, country text, call_type text, price_per_min bigint,"
        " connect_fee bigint, included_seconds integer, init_inc integer, inc integer)"
        " ON COMMIT DROP"
    )


def copy_rates(
    conn: psycopg.Connection, rows: Iterable[tuple], table: str = "rate_staging"
) -> int:
    """COPY rows laid out as `_STAGING_COLUMNS` into `table`; returns the count."""
    n = 0
    with conn.cursor() as cur, cur.copy(
        f"COPY {table} ({', '.join(_STAGING_COLUMNS)}) FROM STDIN"
    ) as copy:
        write = copy.write_row
        for row in rows:
            write(row)
            n += 1
    return n


def merge_staged_rates(conn: psycopg.Connection) -> tuple[int, int]:
    """Upsert the staging table into `rates`; returns (inserted, updated).

    Rows equal to the stored ones are left alone, so a re-import changes nothing.
    """
    values = [c for c in _STAGING_COLUMNS if c not in ("rate_group_id", "direction", "prefix")]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in values)
    old = ", ".join(f"r.{c}" for c in values)
    new = ", ".join(f"EXCLUDED.{c}" for c in values)
    cols = ", ".join(_STAGING_COLUMNS)
    row = conn.execute(
        f"WITH up AS (INSERT INTO rates AS r ({cols}) SELECT {cols} FROM rate_staging"
        f" ON CONFLICT (rate_group_id, direction, prefix) DO UPDATE SET {sets}"
        f" WHERE ({old}) IS DISTINCT FROM ({new})"
        " RETURNING (xmax = 0) AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# --- the deck ------------------------------------------------------------------------------

class _Errors:
    """Bad lines: the first MAX_ERRORS_SHOWN messages and a count of all of them."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.shown: list[str] = []
        self.count = 0

    def add(self, line: int, message: str) -> None:
        self.count += 1
        if len(self.shown) < MAX_ERRORS_SHOWN:
            self.shown.append(f"{self.source}:{line}: {message}")

    def raise_if_any(self) -> None:
        if not self.count:
            return
        more = self.count - len(self.shown)
        tail = f"\n... and {more} more bad line(s)" if more else ""
        raise InputError(
            f"{self.source}: {self.count} bad line(s), nothing imported:\n"
            + "\n".join(self.shown) + tail
        )


def _header(row: list[str], errors: _Errors) -> dict[str, int]:
    columns: dict[str, int] = {}
    for i, raw in enumerate(row):
        name = raw.strip().lower()
        if name not in RATE_FIELDS:
            errors.add(1, f"unknown column {raw.strip()!r} (known: {', '.join(RATE_FIELDS)})")
        elif name in columns:
            errors.add(1, f"column {name!r} appears twice")
        else:
            columns[name] = i
    for name in REQUIRED_FIELDS:
        if name not in columns and row:
            errors.add(1, f"missing column {name!r}")
    return columns


def parse_deck(
    stream: TextIO, rate_group_id: int, source: str, markup_bp: int = 0
) -> tuple[Iterator[tuple], _Errors, set[str]]:
    """Validate a deck lazily: (staging rows while the deck is clean, errors, directions).

    The generator stops yielding rows at the first bad line but keeps reading, so `errors`
    holds every bad line once it is exhausted; `directions` collects the directions seen.
    """
    errors = _Errors(source)
    directions: set[str] = set()
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        header = []
    except csv.Error as exc:
        errors.add(reader.line_num, f"not valid CSV: {exc}")
        return iter(()), errors, directions
    if not header:
        errors.add(1, "empty file (expected a header row naming the rate fields)")
    columns = _header(header, errors)
    if errors.count:
        return iter(()), errors, directions
    return _rows(reader, columns, rate_group_id, errors, directions, markup_bp), errors, directions


def _rows(
    reader: Iterator[list[str]], columns: dict[str, int], gid: int, errors: _Errors,
    directions: set[str], markup_bp: int,
) -> Iterator[tuple]:
    ncols = len(columns)
    i_prefix, i_price = columns["prefix"], columns["price_per_min"]
    i_dest, i_country, i_type, i_dir, i_cf, i_incl, i_init, i_inc = (
        columns.get(f, -1) for f in (
            "destination", "country", "call_type", "direction", "connect_fee",
            "included_seconds", "init_inc", "inc",
        )
    )
    price_cap = max_price_micros(markup_bp)
    seen: dict[str, dict[str, int]] = {d: {} for d in DIRECTIONS}
    line_num = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            errors.add(getattr(reader, "line_num", line_num + 1), f"not valid CSV: {exc}")
            return
        line_num = reader.line_num  # type: ignore[attr-defined]
        if len(row) != ncols:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            errors.add(line_num, f"{len(row)} fields, the header has {ncols}")
            continue
        try:
            direction = row[i_dir].strip() if i_dir >= 0 else "outbound"
            if direction not in DIRECTIONS:
                if direction:
                    raise InputError(f"direction: {direction!r} is not outbound or inbound")
                direction = "outbound"
            cell = row[i_prefix]
            if cell.isdigit() and cell.isascii():
                prefix = cell
            else:
                try:
                    prefix = normalize_prefix(cell.strip())
                except ValueError as exc:
                    raise InputError(f"prefix: {exc}") from None
            price = money(row[i_price].strip(), "price_per_min")
            if price > price_cap:
                raise InputError(
                    f"price_per_min: {row[i_price].strip()!r} is too high to be rated exactly"
                )
            connect_fee = money(row[i_cf].strip() or "0", "connect_fee") if i_cf >= 0 else 0
            included = _int_cell(row, i_incl, "included_seconds", 0, 0)
            init_inc = _int_cell(row, i_init, "init_inc", 1, 1)
            inc = _int_cell(row, i_inc, "inc", 1, 1)
        except InputError as exc:
            errors.add(line_num, str(exc))
            continue
        by_prefix = seen[direction]
        first = by_prefix.setdefault(prefix, line_num)
        if first != line_num:
            errors.add(line_num, f"duplicate of line {first} ({direction} prefix {prefix!r})")
            continue
        if errors.count:
            continue  # keep validating; nothing more is written
        directions.add(direction)
        yield (
            gid, direction, prefix,
            row[i_dest].strip() if i_dest >= 0 else "",
            row[i_country].strip() if i_country >= 0 else "",
            row[i_type].strip() if i_type >= 0 else "",
            price, connect_fee, included, init_inc, inc,
        )


def _int_cell(row: list[str], index: int, name: str, default: int, minimum: int) -> int:
    if index < 0:
        return default
    text = row[index].strip()
    return seconds_text(text, name, minimum) if text else default


def import_rate_deck(
    conn: psycopg.Connection, rate_group: str, stream: TextIO, *, source: str = "deck.csv",
    replace: bool = False,
) -> dict:
    """Import a CSV deck from `stream` into an existing rate group, in one transaction.

    Existing (direction, prefix) rates are updated, new ones inserted; with `replace`, the
    group's rates in the directions the deck lists but not in the deck are deleted. Raises
    InputError naming `source` and the line for bad input, with nothing written.
    """
    with conn.transaction():
        acquire_import_lock(conn)
        found = conn.execute(
            "SELECT id, markup_bp FROM rate_groups WHERE name = %s FOR UPDATE", (rate_group,)
        ).fetchone()
        if found is None:
            raise InputError(
                f"--rate-group: no rate group named {rate_group!r} "
                "(create it with `loader import` first)"
            )
        gid, markup_bp = found
        rows, errors, directions = parse_deck(stream, gid, source, markup_bp)
        if one_row(conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM rates WHERE rate_group_id = %s)", (gid,)))[0]:
            # An empty group: every row is new, so COPY straight into `rates` and let the
            # server insert while Python parses (duplicates never reach COPY).
            staged = copy_rates(conn, rows, "rates")
            errors.raise_if_any()
            inserted, updated, deleted = staged, 0, 0
        else:
            create_staging(conn)
            staged = copy_rates(conn, rows)  # reads the whole file: `errors` is complete
            errors.raise_if_any()
            deleted = _delete_unlisted(conn, gid, directions) if replace else 0
            inserted, updated = merge_staged_rates(conn)
    return {
        "rate_group": rate_group,
        "rows": staged,
        "inserted": inserted,
        "updated": updated,
        "unchanged": staged - inserted - updated,
        "deleted": deleted,
    }


def _delete_unlisted(conn: psycopg.Connection, gid: int, directions: set[str]) -> int:
    """`--replace`: delete the group's rates in `directions` that the staged deck lacks."""
    if not directions:
        return 0
    conn.execute("ANALYZE rate_staging")  # temporary tables have no statistics otherwise
    return conn.execute(
        "DELETE FROM rates r WHERE r.rate_group_id = %s AND r.direction = ANY(%s)"
        " AND NOT EXISTS (SELECT 1 FROM rate_staging s"
        " WHERE s.direction = r.direction AND s.prefix = r.prefix)",
        (gid, sorted(directions)),
    ).rowcount


def import_rate_deck_file(
    conn: psycopg.Connection, rate_group: str, path: str | os.PathLike[str], *,
    replace: bool = False,
) -> dict:
    """`import_rate_deck` on a file (UTF-8, a leading BOM is ignored); errors name the path."""
    source = os.fspath(path)
    try:
        stream = open(source, newline="", encoding="utf-8-sig")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror}") from None
    with stream:
        try:
            return import_rate_deck(conn, rate_group, stream, source=source, replace=replace)
        except UnicodeDecodeError as exc:
            raise InputError(f"{source}: not UTF-8 text ({exc.reason})") from None
