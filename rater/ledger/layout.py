"""Where the money state lives on a Redis Cluster: shards → hash slots → primaries.

Every key of one account tree carries the tree's hash tag `{s<N>}` (keys.py), so a tree
lives in one slot and the unit that spreads over a cluster's primaries is the shard. The
spread is only as even as the shard count allows: 16 shards land 6/4/6 on three primaries
holding equal slot ranges, 48 land 17/15/16.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from redis.crc import key_slot

from rater.ledger.keys import KeySpace
from rater.shards import shard_of


@dataclass
class NodeShare:
    """What one primary holds."""

    node: str
    shards: int = 0
    trees: int = 0
    accounts: int = 0


@dataclass
class Layout:
    """Shards, trees and accounts per primary (sorted by node name)."""

    shards: int
    trees: int
    accounts: int
    nodes: list[NodeShare] = field(default_factory=list)
    slot_of_shard: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shards": self.shards, "trees": self.trees, "accounts": self.accounts,
            "nodes": [vars(n) for n in self.nodes],
            "slot_of_shard": {str(k): v for k, v in sorted(self.slot_of_shard.items())},
        }


def slot_of_shard(keyspace: KeySpace, shard: int) -> int:
    """The hash slot of every key of the trees in `shard`."""
    return key_slot(keyspace.tag_of_shard(shard).encode())


def even_owner(primaries: int) -> Callable[[int], str]:
    """Slot owner on a cluster whose `primaries` hold equal consecutive slot ranges, as
    `redis-cli --cluster create` splits them."""
    per = 16384 / primaries

    def owner(slot: int) -> str:
        return f"primary {min(int(slot // per), primaries - 1) + 1}"
    return owner


def layout(
    keyspace: KeySpace, tops: Iterable[str], owner: Callable[[int], str],
) -> Layout:
    """How the trees of `tops` (one top account per account; a top repeats once per account
    of its tree) spread over the nodes `owner(slot)` names."""
    accounts_of_top = Counter(tops)
    shard_slots = {n: slot_of_shard(keyspace, n) for n in range(keyspace.shards)}
    nodes: dict[str, NodeShare] = {}
    for slot in shard_slots.values():
        share = nodes.setdefault(owner(slot), NodeShare(owner(slot)))
        share.shards += 1
    for top, count in accounts_of_top.items():
        share = nodes[owner(shard_slots[shard_of(top, keyspace.shards)])]
        share.trees += 1
        share.accounts += count
    return Layout(keyspace.shards, len(accounts_of_top), sum(accounts_of_top.values()),
                  sorted(nodes.values(), key=lambda n: n.node), shard_slots)
