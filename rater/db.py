"""PostgreSQL connections for the CLI, the package lifecycle and the loader (psycopg 3)."""

from __future__ import annotations

from typing import TypeVar

import psycopg

from rater.config import Config, mask_url
from rater.errors import DatabaseUnavailable


def connect(cfg: Config, autocommit: bool = False) -> psycopg.Connection:
    """Open a connection, or raise DatabaseUnavailable naming the (masked) URL."""
    try:
        return psycopg.connect(
            cfg.database.url, autocommit=autocommit,
            connect_timeout=max(1, int(cfg.database.connect_timeout)),
        )
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {mask_url(cfg.database.url)}: {reason}"
        ) from None


Row = TypeVar("Row")


def one_row(cursor: psycopg.Cursor[Row]) -> Row:
    """The row of a query that always returns one (an aggregate, a one-row table). A query
    that returns none is a bug: TypeError, as indexing the None of fetchone() was."""
    row = cursor.fetchone()
    if row is None:
        raise TypeError("the query returned no row")
    return row
