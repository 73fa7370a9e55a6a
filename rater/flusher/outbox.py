"""The outbox streams seen by one flusher: a consumer group on every shard's stream.

Reading order: entries other consumers left idle too long (XAUTOCLAIM), this consumer's own
pending entries (after a restart under the same name, or after an acknowledgement failed),
then new entries. `ack` deletes an entry from the stream and then acknowledges it, so a stream
holds exactly the entries that are not yet durable in PostgreSQL.

XAUTOCLAIM also hands back this consumer's own entries once idle that long, so an entry whose
XREADGROUP reply was lost (a timeout, a retried command) is not forgotten. A batch retried
while PostgreSQL is down is `touch`ed so no other flusher claims it from a live one.

On Redis Cluster every shard's stream lives in its own slot and one XREADGROUP cannot name
several: each stream is then read on its own, the reads pipelined node by node, and a wait
for new entries polls every `CLUSTER_POLL` seconds instead of blocking in Redis.

Works with Redis 6.2 and 7: on 6.2 XAUTOCLAIM returns an entry deleted from the stream as
(None, None) without its id; reading our own pending entries then returns it as (id, {}),
which is acknowledged with nothing to write. Redis 7 drops such ids from the pending list.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gevent
import redis

from rater.redis_client import RedisClient

GROUP = "flusher"

# Seconds between two reads of every stream while waiting for new entries on Redis Cluster.
CLUSTER_POLL = 0.02


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One stream entry; `fields` is empty when the entry is gone from the stream."""

    stream: str
    id: str
    fields: dict[Any, Any]


class Outbox:
    """Reads, claims and acknowledges the outbox streams for one named consumer."""

    def __init__(
        self, client: RedisClient, streams: Sequence[str], consumer: str, group: str = GROUP
    ) -> None:
        if not streams:
            raise ValueError("outbox: no streams")
        self.redis = client
        self.streams = list(streams)
        self.consumer = consumer
        self.group = group
        self._own: set[str] = set(self.streams)   # streams whose own pending list to read
        self._cursors = dict.fromkeys(self.streams, "0-0")
        self._cluster = isinstance(client, redis.RedisCluster)

    # --- set-up -----------------------------------------------------------------------

    def ensure_groups(self) -> None:
        """Create the consumer group on every stream (and the stream), idempotently. The group
        starts at id 0, so entries written before it existed are flushed too."""
        for stream in self.streams:
            try:
                self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # --- reading ----------------------------------------------------------------------

    @property
    def has_own_pending(self) -> bool:
        return bool(self._own)

    def mark_own_pending(self, streams: Iterable[str] | None = None) -> None:
        """Read these streams' own pending entries again before new ones."""
        self._own.update(self.streams if streams is None else streams)

    def read_own(self, count: int) -> list[OutboxEntry]:
        """Up to `count` entries per stream already delivered to this consumer and not
        acknowledged. A stream leaves the list once it has fewer than `count` of them."""
        if not self._own:
            return []
        wanted = {s: "0" for s in self.streams if s in self._own}
        reply = self._xreadgroup(wanted, count, None)
        got = {stream: entries for stream, entries in reply}
        for stream in wanted:
            if len(got.get(stream, ())) < count:
                self._own.discard(stream)
        return [e for entries in got.values() for e in entries]

    def read_new(self, count: int, block_ms: int | None) -> list[OutboxEntry]:
        """About `count` never-delivered entries, waiting up to `block_ms` (None or 0: do
        not wait) for the first one.

        Each stream is asked for its share of `count` (a reply of `count` per stream could
        be 16 times too big and hold a gevent hub while it is parsed); when some streams had
        more, a second read tops the batch up from those."""
        share = -(-count // len(self.streams))
        reply = self._xreadgroup(dict.fromkeys(self.streams, ">"), share, block_ms or None)
        out = [e for _, entries in reply for e in entries]
        full = [stream for stream, entries in reply if len(entries) >= share]
        room = count - len(out)
        if full and room >= len(full):
            more = self._xreadgroup(dict.fromkeys(full, ">"), room // len(full), None)
            out.extend(e for _, entries in more for e in entries)
        return out

    def claim(self, min_idle_ms: int, count: int) -> list[OutboxEntry]:
        """Take over entries pending on other consumers for at least `min_idle_ms` (up to
        `count` per stream); they are pending on this consumer from now on."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xautoclaim(stream, self.group, self.consumer, min_idle_ms,
                            start_id=self._cursors[stream], count=count)
        out: list[OutboxEntry] = []
        for stream, reply in zip(self.streams, self._execute(pipe), strict=True):
            if isinstance(reply, redis.ResponseError):
                if "NOGROUP" in str(reply):
                    self.ensure_groups()
                    continue
                raise reply
            self._cursors[stream] = _text(reply[0])
            for entry_id, fields in reply[1]:
                if entry_id is None:    # Redis 6.2: deleted from the stream; id not given
                    self._own.add(stream)
                    continue
                out.append(OutboxEntry(stream, _text(entry_id), fields or {}))
        return out

    def touch(self, entries: Iterable[OutboxEntry]) -> None:
        """Reset the idle time of entries pending on this consumer (XCLAIM JUSTID to
        ourselves): we are alive and still working on them."""
        by_stream = _ids_by_stream(entries)
        if not by_stream:
            return
        pipe = self.redis.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xclaim(stream, self.group, self.consumer, 0, ids,  # type: ignore[arg-type]
                        justid=True)  # (redis-py types the ids as an invariant list)
        pipe.execute()

    # --- acknowledging ----------------------------------------------------------------

    def ack(self, entries: Iterable[OutboxEntry]) -> None:
        """Delete the entries from their streams, then acknowledge them (one round trip).
        Deleting first means a crash in between leaves an id pending with no entry, which the
        next read acknowledges; never an entry left in the stream that nobody will read."""
        by_stream = _ids_by_stream(entries)
        if not by_stream:
            return
        pipe = self.redis.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xdel(stream, *ids)
            pipe.xack(stream, self.group, *ids)
        pipe.execute()

    # --- observing --------------------------------------------------------------------

    def backlog(self) -> tuple[int, int | None]:
        """(entries in the streams, i.e. not yet durable; Redis time in ms of the oldest)."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xlen(stream)
            pipe.xrange(stream, "-", "+", count=1)
        replies = pipe.execute()
        total, oldest = 0, None
        for length, first in zip(replies[::2], replies[1::2], strict=True):
            total += int(length)
            if first:
                ms = int(_text(first[0][0]).split("-")[0])
                oldest = ms if oldest is None else min(oldest, ms)
        return total, oldest

    def pending(self) -> int:
        """Entries delivered to some flusher and not yet acknowledged (all consumers)."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xpending(stream, self.group)
        total = 0
        for reply in self._execute(pipe):
            if not isinstance(reply, redis.ResponseError):
                total += int(reply["pending"])
        return total

    def release_consumer(self) -> bool:
        """Remove this consumer from the groups if it holds no pending entry (a clean stop),
        so restarts under new names do not pile up consumers. True when removed."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xinfo_consumers(stream, self.group)
        mine = []
        for stream, reply in zip(self.streams, self._execute(pipe), strict=True):
            if isinstance(reply, redis.ResponseError):
                continue
            for c in reply:
                if _text(c["name"]) == self.consumer:
                    if int(c["pending"]):
                        return False
                    mine.append(stream)
        for stream in mine:
            self.redis.xgroup_delconsumer(stream, self.group, self.consumer)
        return True

    # --- internals ----------------------------------------------------------------------

    def _xreadgroup(
        self, streams: dict[str, str], count: int, block_ms: int | None
    ) -> list[tuple[str, list[OutboxEntry]]]:
        if self._cluster:
            return self._xreadgroup_each(streams, count, block_ms)
        for attempt in (1, 2):
            try:
                reply = self.redis.xreadgroup(
                    self.group, self.consumer, streams,  # type: ignore[arg-type]  # invariant
                    count=count, block=block_ms)
                break
            except redis.ResponseError as exc:
                # the stream or group vanished (FLUSHALL, a failover to an empty replica)
                if "NOGROUP" not in str(exc) or attempt == 2:
                    raise
                self.ensure_groups()
        out = []
        for stream, entries in _stream_items(reply):
            name = _text(stream)
            out.append((name, [OutboxEntry(name, _text(i), f or {}) for i, f in entries]))
        return out

    def _xreadgroup_each(
        self, streams: dict[str, str], count: int, block_ms: int | None
    ) -> list[tuple[str, list[OutboxEntry]]]:
        """Redis Cluster: one XREADGROUP per stream (pipelined), polled until `block_ms`."""
        deadline = time.monotonic() + (block_ms or 0) / 1000
        while True:
            pipe = self.redis.pipeline(transaction=False)
            for stream, start in streams.items():
                pipe.xreadgroup(self.group, self.consumer, {stream: start}, count=count)
            out = []
            regrouped = False
            for reply in self._execute(pipe):
                if isinstance(reply, redis.ResponseError):
                    if "NOGROUP" not in str(reply) or regrouped:
                        raise reply
                    self.ensure_groups()  # the stream or group vanished (a failover, FLUSHALL)
                    regrouped = True
                    continue
                for name, entries in _stream_items(reply):
                    text = _text(name)
                    out.append((text, [OutboxEntry(text, _text(i), f or {}) for i, f in entries]))
            if any(entries for _, entries in out) or time.monotonic() >= deadline:
                return out
            gevent.sleep(min(CLUSTER_POLL, max(0.0, deadline - time.monotonic())))

    @staticmethod
    def _execute(pipe: Any) -> list[Any]:
        return pipe.execute(raise_on_error=False)


def _ids_by_stream(entries: Iterable[OutboxEntry]) -> dict[str, list[str]]:
    by_stream: dict[str, list[str]] = {}
    for e in entries:
        by_stream.setdefault(e.stream, []).append(e.id)
    return by_stream


def _stream_items(reply: Any) -> list[tuple[Any, list]]:
    if not reply:
        return []
    if isinstance(reply, dict):     # RESP3
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return [(s, entries) for s, entries in reply]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
