"""Outbox -> PostgreSQL, idempotent: the durable half of every ledger operation.

    outbox.py   the consumer group on every shard's stream: read, claim, acknowledge, lag
    decode.py   an entry's JSON -> typed rows, validated (MalformedEntry names the field)
    writer.py   one PostgreSQL transaction per batch: COPY to staging, INSERT … ON CONFLICT
    flusher.py  the loop tying them together
"""

from rater.backoff import Backoff
from rater.flusher.decode import EntryRows, MalformedEntry, decode_entry
from rater.flusher.flusher import Flusher, FlusherStats, StopSignal
from rater.flusher.outbox import GROUP, Outbox, OutboxEntry
from rater.flusher.writer import BatchWriter, DeadLetter, postgres_connector

__all__ = [
    "GROUP",
    "Backoff",
    "BatchWriter",
    "DeadLetter",
    "EntryRows",
    "Flusher",
    "FlusherStats",
    "MalformedEntry",
    "Outbox",
    "OutboxEntry",
    "StopSignal",
    "decode_entry",
    "postgres_connector",
]
