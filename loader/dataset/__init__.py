"""Dataset files (spec/dataset.md): `loader import FILE`, all of it or nothing.

A dataset describes existing state, so nothing in it is charged: each account's balance
becomes one opening ledger entry (`opening:<number>`) and orders arrive already paid, in the
period that contains the import time. The import runs in three steps:

1. `shape.parse_dataset`: the shape of every record (types, ranges, unknown fields, duplicates),
   with no database; every problem is collected under its JSON path.
2. `references.check_references`: references against the file overlaid on the database (parents,
   owners, rate groups, products, opt-ins, cycles) and the refusals that protect live money
   state on a re-import. Problems of steps 1 and 2 are reported together.
3. `write.write_dataset`: upserts keyed on natural keys, in one transaction, so importing
   the same file twice gives the same state. Nothing is ever deleted (`import-rates
   --replace` does that).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

from loader.dataset.references import check_references, load_world
from loader.dataset.shape import parse_dataset
from loader.dataset.values import Problems
from loader.dataset.write import write_dataset
from loader.ratedeck import acquire_import_lock
from rater.errors import InputError

# --- entry points ----------------------------------------------------------------------------

def import_dataset(
    conn: psycopg.Connection, data: Any, *, source: str = "dataset",
    now: datetime | None = None,
) -> dict:
    """Validate and import a loaded JSON document in one transaction; returns counts.

    Raises InputError listing every problem found (each under its JSON path), with nothing
    written. `now` (default: the clock) places orders in their current period.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    problems = Problems(source)
    ds = parse_dataset(data, problems)
    with conn.transaction():
        acquire_import_lock(conn)
        world = load_world(conn, ds)
        check_references(ds, world, now, problems)
        problems.raise_if_any()
        return write_dataset(conn, ds, world, now)


class _Object(dict):
    """A JSON object that remembers keys given twice (json keeps only the last one)."""

    duplicates: tuple[str, ...] = ()


def _add(seen: set[str], key: str) -> bool:
    seen.add(key)
    return False


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj.duplicates = tuple(k for k, _ in pairs if k in seen or _add(seen, k))
    return obj


def load_dataset_file(path: str | os.PathLike[str]) -> Any:
    """Read a dataset file as JSON (numbers with a fraction read exactly, as Decimal)."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8-sig") as f:
            return json.load(f, parse_float=Decimal, object_pairs_hook=_object_pairs)
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{source}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}"
        ) from None


def import_dataset_file(
    conn: psycopg.Connection, path: str | os.PathLike[str], *, now: datetime | None = None,
) -> dict:
    """`loader import FILE`: read and import a dataset file (see `import_dataset`)."""
    return import_dataset(conn, load_dataset_file(path), source=os.fspath(path), now=now)
