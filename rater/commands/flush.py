"""`rater flush`: a standalone flusher (for systemd) moving the outbox streams to PostgreSQL.

Runs until SIGTERM or SIGINT, then finishes the batch in hand and exits 0. With `--once` it
flushes what is waiting and exits (non-zero when a store is unavailable). Several may run at
once: each uses its own consumer name (default host:pid).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket

import gevent
import gevent.event
import redis

from rater.commands.common import add_config_argument, config_from
from rater.config import Config, mask_url
from rater.errors import RaterError
from rater.flusher import Flusher, postgres_connector
from rater.redis_client import keyspace_of, make_redis

log = logging.getLogger("rater.flusher")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flush", help="move outbox entries to PostgreSQL (standalone flusher)")
    add_config_argument(p)
    p.add_argument("--once", action="store_true", help="flush what is waiting, then exit")
    p.add_argument("--consumer", default=None,
                   help="consumer name in the Redis group (default: host:pid)")
    p.set_defaults(func=run)


def flusher_from_config(cfg: Config, consumer: str) -> Flusher:
    """A Flusher wired to the configured Redis and PostgreSQL."""
    # a blocking read holds the socket for block_ms before Redis answers
    client = make_redis(dataclasses.replace(
        cfg.redis, socket_timeout=cfg.redis.socket_timeout + cfg.flusher.block_ms / 1000.0))
    connect = postgres_connector(cfg.database.url, cfg.database.connect_timeout)
    return Flusher(client, connect, keyspace_of(cfg.redis), cfg.flusher, consumer)


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=cfg.log.level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    consumer = args.consumer or f"{socket.gethostname()}:{os.getpid()}"
    flusher = flusher_from_config(cfg, consumer)
    log.info("flushing %s -> %s as %s", mask_url(cfg.redis.url), mask_url(cfg.database.url),
             consumer)
    try:
        if args.once:
            n = flusher.flush_all()
            print(f"flushed {n} outbox entries ({flusher.stats.cdrs} CDRs, "
                  f"{flusher.stats.dead_letters} dead letters)")
            return 0
        stop = gevent.event.Event()
        handlers = [gevent.signal_handler(sig, stop.set)
                    for sig in (signal.SIGTERM, signal.SIGINT)]
        try:
            flusher.run(stop)
        finally:
            for h in handlers:
                h.cancel()
        return 0
    except redis.RedisError as exc:
        raise RaterError(f"Redis at {mask_url(cfg.redis.url)}: {exc}") from None
    finally:
        flusher.close()
