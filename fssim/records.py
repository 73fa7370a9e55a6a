"""The simulator's mod_cdr_pg_csv: FreeSWITCH's own record of each leg, written into
PostgreSQL as the leg ends. The real module inserts before the switch fires
CHANNEL_HANGUP_COMPLETE (its on_reporting hook runs first); here the row is taken then and
written by a greenlet of its own (the simulator's timers run in gevent's loop, where nothing
may block), a few milliseconds later.

Columns and values as config/freeswitch/cdr_pg_csv.conf.xml asks of the real module: the
channel variables, as text, NULL where a variable is unset.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import gevent
import gevent.queue
import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from fssim.channel import Channel

log = logging.getLogger(__name__)

COLUMNS = ("uuid", "accountcode", "rater_direction", "caller_id_number", "destination_number",
           "start_uepoch", "answer_uepoch", "end_uepoch", "billmsec", "hangup_cause")


def record_values(channel: Channel) -> tuple[str | None, ...]:
    """The row mod_cdr_pg_csv writes for this (hung up) leg."""
    return (channel.uuid, channel.get_var("accountcode"), channel.get_var("rater_direction"),
            channel.caller, channel.dest or channel.destination, str(channel.created_us),
            str(channel.answered_us), str(channel.hangup_us), str(channel.billmsec),
            channel.cause)


class RecordWriter:
    """Inserts each ended leg's record over one connection, in the order legs ended. Like
    the real module, a failed insert is logged and the call goes on (the module would
    spool it to a file)."""

    def __init__(self, url: str, table: str = "freeswitch_cdrs") -> None:
        self._url = url
        self._insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
            sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)))
        self._conn: psycopg.Connection | None = None
        self._rows: gevent.queue.JoinableQueue = gevent.queue.JoinableQueue()
        self._writer = gevent.spawn(self._write_all)
        self.written = 0
        self.failed = 0

    def __call__(self, channel: Channel) -> None:
        self._rows.put((channel.uuid, record_values(channel)))

    def flush(self, timeout: float) -> bool:
        """Wait until every record taken so far is written (or failed); False on timeout."""
        return self._rows.join(timeout)

    def _write_all(self) -> None:
        while True:
            uuid, values = self._rows.get()
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
                self._conn.execute(self._insert, values)
                self.written += 1
            except psycopg.Error as exc:
                self.failed += 1
                log.warning("simulated mod_cdr_pg_csv: insert of %s failed: %s", uuid, exc)
                self._disconnect()
            finally:
                self._rows.task_done()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (within `timeout`), then stop."""
        self.flush(timeout)
        self._writer.kill(block=True, timeout=timeout)
        self._disconnect()
