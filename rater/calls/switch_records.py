"""FreeSWITCH's own per-call records, to settle legs whose hangup the daemon did not see.

mod_cdr_pg_csv writes one row per A leg into PostgreSQL as the channel is destroyed
(config/freeswitch/cdr_pg_csv.conf.xml, table created by migration 0007). The switch
writes it whether or not the daemon is running, which is exactly when it is needed: a leg
that ended while the daemon was down (or whose CHANNEL_HANGUP_COMPLETE was lost) is
settled from its real answer and hangup times instead of the whole chunk reserved for it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

import psycopg
from gevent.lock import Semaphore
from psycopg import sql

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SwitchRecord:
    """What FreeSWITCH recorded of one leg (times in µs since the epoch, 0 if none)."""

    uuid: str
    created_usec: int
    answered_usec: int
    hangup_usec: int
    billmsec: int
    cause: str


class SwitchRecords(Protocol):
    """Where the handler looks for the record of a leg that ended unseen."""

    def find(self, uuid: str) -> SwitchRecord | None: ...


class NoSwitchRecords:
    """`switch_records.source = "none"`: no record is ever found."""

    def find(self, uuid: str) -> SwitchRecord | None:
        return None

    def close(self) -> None:
        pass


Column = int | str | None


def record_from_row(uuid: str, start: Column, answer: Column, end: Column, billmsec: Column,
                    cause: str | None) -> SwitchRecord | None:
    """A record from the columns FreeSWITCH wrote, or None when they do not make sense
    (a hangup before the answer, no hangup time): such a row settles nothing."""
    try:
        created, answered, hangup, msec = (int(start or 0), int(answer or 0), int(end or 0),
                                           int(billmsec or 0))
    except ValueError:
        return None
    if hangup <= 0 or min(created, answered, msec) < 0 or (answered and hangup < answered):
        return None
    return SwitchRecord(uuid, created, answered, hangup, msec, str(cause or ""))


class PostgresSwitchRecords:
    """Reads `table` (mod_cdr_pg_csv's rows) over one connection, opened on first use and
    again after a failure. `find` returns None while PostgreSQL is unreachable (the caller
    tries again until its deadline)."""

    def __init__(self, url: str, table: str, connect_timeout: float = 5.0) -> None:
        self._url = url
        self._timeout = connect_timeout
        self._query = sql.SQL(
            "SELECT start_uepoch, answer_uepoch, end_uepoch, billmsec, hangup_cause FROM {} "
            "WHERE uuid = %s ORDER BY written_at LIMIT 1").format(sql.Identifier(table))
        self._conn: psycopg.Connection | None = None
        self._lock = Semaphore()

    def find(self, uuid: str) -> SwitchRecord | None:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self._url, autocommit=True,
                                                 connect_timeout=max(1, int(self._timeout)))
                row = self._conn.execute(self._query, (uuid,)).fetchone()
            except psycopg.Error as exc:
                log.warning("switch records: cannot read the record of %s: %s", uuid,
                            str(exc).strip().splitlines()[-1] if str(exc).strip() else exc)
                self.close()
                return None
        if row is None:
            return None
        record = record_from_row(uuid, *row)
        if record is None:
            log.warning("switch records: the record of %s makes no sense (%r): ignored",
                        uuid, row)
        return record

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
