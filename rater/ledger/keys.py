"""Redis key layout. Every key of one account tree carries the tree's hash tag, so a script
can touch the whole reseller chain in one slot on Redis Cluster.

A tree is an account directly under admin together with everything below it. Trees are
spread over `shards` hash tags `{s<N>}`; N is a stable hash of the tree's top account
(`rater.shards`). Each shard has one outbox stream, so the flusher reads `shards` streams,
not one per tree.

    <p>:{s<N>}:a:<account>   hash  bal, held, ch        live balance, money on hold, live legs
    <p>:{s<N>}:b:<order>     hash  left, held, period, cap   free seconds of a package order
    <p>:{s<N>}:l:<uuid>      hash  one rated leg: plan, reservations, idempotent results;
                                   plain fields st, node, max, T, seq, ans, cr (created µs)
                                   let a restarted daemon adopt it
    <p>:{s<N>}:live          set   uuids of legs authorized and not yet committed
    <p>:{s<N>}:ops           hash  op id -> result of money operations (top-ups, orders)
    <p>:{s<N>}:outbox        stream  ledger entries and CDRs waiting for the flusher
    <p>:meta                 hash  shards (checked at start-up)
    <p>:snapshot:current     string  version of the published rating snapshot
    <p>:snapshot:v<N>        string  the snapshot itself

Each hash field, what the leg's packed plan holds, and the scripts' ARGV in order, named:
rater/ledger/fields.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from rater.shards import tag_of, tag_of_shard


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Builds key names for one deployment (prefix and shard count)."""

    prefix: str = "rt"
    shards: int = 16

    def tag(self, top_account: str) -> str:
        """The hash tag of the tree whose top-level account this is."""
        return tag_of(top_account, self.shards)

    def tag_of_shard(self, shard: int) -> str:
        return tag_of_shard(shard)

    def account(self, tag: str, account: str) -> str:
        return f"{self.prefix}:{tag}:a:{account}"

    def bucket(self, tag: str, order_id: str) -> str:
        return f"{self.prefix}:{tag}:b:{order_id}"

    def leg(self, tag: str, uuid: str) -> str:
        return f"{self.prefix}:{tag}:l:{uuid}"

    def live(self, tag: str) -> str:
        """Set of the uuids of this shard's legs that are authorized and not yet committed."""
        return f"{self.prefix}:{tag}:live"

    def ops(self, tag: str) -> str:
        return f"{self.prefix}:{tag}:ops"

    def outbox(self, tag: str) -> str:
        return f"{self.prefix}:{tag}:outbox"

    def outboxes(self) -> list[str]:
        """Every shard's outbox stream."""
        return [self.outbox(self.tag_of_shard(n)) for n in range(self.shards)]

    @property
    def meta(self) -> str:
        return f"{self.prefix}:meta"

    @property
    def snapshot_current(self) -> str:
        return f"{self.prefix}:snapshot:current"

    def snapshot_blob(self, version: int) -> str:
        return f"{self.prefix}:snapshot:v{version}"

    @property
    def snapshot_channel(self) -> str:
        """Pub/sub channel announcing a new snapshot version (a poll covers missed ones)."""
        return f"{self.prefix}:snapshot:published"
