"""`rater layout`: how account trees spread over a Redis Cluster's primaries."""

from __future__ import annotations

import argparse

import redis

from rater.commands.common import (
    add_config_argument,
    add_json_argument,
    config_from,
    current_snapshot,
    print_json,
)
from rater.errors import InputError
from rater.ledger.keys import KeySpace
from rater.ledger.layout import Layout, even_owner, layout
from rater.redis_client import keyspace_of, make_redis


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "layout", help="shards, trees and accounts per Redis primary (Redis Cluster)",
        description="Every key of an account tree shares its shard's hash slot; this shows "
        "how the shards, and so the trees of the published snapshot, spread over the "
        "primaries of the configured Redis (one line for a single server).")
    add_config_argument(p)
    add_json_argument(p)
    p.add_argument("--trees", type=int, metavar="N",
                   help="N made-up trees of one account each instead of the snapshot's")
    p.add_argument("--primaries", type=int, metavar="P",
                   help="a cluster of P primaries with equal slot ranges instead of the "
                   "configured Redis (no server needed)")
    p.add_argument("--shards", type=int, help="shard count (default: the configuration's)")
    p.set_defaults(func=run_layout)


def run_layout(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    keyspace = keyspace_of(cfg.redis)
    if args.shards is not None:
        if not 1 <= args.shards <= 16384:
            raise InputError(f"--shards: must be between 1 and 16384, got {args.shards}")
        keyspace = KeySpace(prefix=keyspace.prefix, shards=args.shards)
    if args.trees is not None and args.trees < 1:
        raise InputError(f"--trees: must be at least 1, got {args.trees}")
    if args.primaries is not None and not 1 <= args.primaries <= 16384:
        raise InputError(f"--primaries: must be between 1 and 16384, got {args.primaries}")
    client = None
    if args.trees is None or args.primaries is None:
        client = make_redis(cfg.redis)
    try:
        if args.trees is not None:
            tops = [f"{n:010d}" for n in range(args.trees)]
        else:
            snap = current_snapshot(client, keyspace_of(cfg.redis))
            tops = [snap.account(n).top for n in snap.account_numbers()]
        if args.primaries is not None:
            owner = even_owner(args.primaries)
        elif isinstance(client, redis.RedisCluster):
            nodes = client.nodes_manager

            def owner(slot: int) -> str:
                return nodes.get_node_from_slot(slot).name
        else:
            def owner(slot: int) -> str:
                return "single server"
        found = layout(keyspace, tops, owner)
    finally:
        if client is not None:
            client.close()
    if args.json:
        print_json(found.to_dict())
    else:
        print(render(found))
    return 0


def render(found: Layout) -> str:
    """A table: one line per primary, with its share of the trees."""
    lines = [f"{found.shards} shards, {found.trees} trees, {found.accounts} accounts",
             f"{'primary':<24} {'shards':>6} {'trees':>8} {'share':>6} {'accounts':>9}"]
    for n in found.nodes:
        share = 100 * n.trees / found.trees if found.trees else 0.0
        lines.append(f"{n.node:<24} {n.shards:>6} {n.trees:>8} {share:>5.1f}% {n.accounts:>9}")
    return "\n".join(lines)
