"""The rating snapshot's builder: PostgreSQL -> one blob (`loader sync` publishes it).

    reference.py  ReferenceData, the rows a snapshot is made of; read_reference, the SQL
    encode.py     encode_snapshot: rows -> blob, every row checked once

The blob's format is `rater.rating.snapshot_format`; the daemon reads it with
`rater.rating.snapshot.Snapshot`.
"""

from __future__ import annotations

import psycopg

from loader.snapshot.encode import encode_snapshot
from loader.snapshot.reference import ReferenceData, read_reference
from rater.ledger.keys import KeySpace

__all__ = ["ReferenceData", "build_snapshot", "encode_snapshot", "read_reference"]


def build_snapshot(
    conn: psycopg.Connection, keyspace: KeySpace, built_at: float | None = None
) -> bytes:
    """Read PostgreSQL and return the snapshot blob (hash tags computed for `keyspace`)."""
    return encode_snapshot(read_reference(conn), keyspace, built_at)
