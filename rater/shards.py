"""Shards: which hash tag a tree's Redis keys carry, shared by the ledger and the snapshot.

A tree (an account directly under admin and everything below it) belongs to shard
``N = crc32(top account) mod shards``, and every key of the tree carries the tag ``{s<N>}``,
so the tree lives in one Redis Cluster slot (the key layout is in `rater.ledger.keys`).
"""

from __future__ import annotations

import zlib


def shard_of(top_account: str, shards: int) -> int:
    """The shard of a tree, from its top-level account (stable across processes)."""
    return zlib.crc32(top_account.encode()) % shards


def tag_of_shard(shard: int) -> str:
    """The hash tag of every key of the trees in `shard`."""
    return f"{{s{shard}}}"


def tag_of(top_account: str, shards: int) -> str:
    """The hash tag of a tree, from its top-level account."""
    return tag_of_shard(shard_of(top_account, shards))
