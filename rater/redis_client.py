"""The one way this project opens Redis: a blocking pool with deadlines and safe retries.

Retries on timeouts are safe because every ledger script is idempotent by operation id.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from rater.config import RedisConfig
from rater.ledger.keys import KeySpace


def make_redis(cfg: RedisConfig) -> redis.Redis:
    """A client on a BlockingConnectionPool: waits `pool_timeout` for a connection instead
    of raising past `pool_size` (redis-py's default pool raises), never waits forever."""
    pool = redis.BlockingConnectionPool.from_url(
        cfg.url,
        max_connections=cfg.pool_size,
        timeout=cfg.pool_timeout,
        socket_timeout=cfg.socket_timeout,
        socket_connect_timeout=cfg.socket_timeout,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 3),
        retry_on_timeout=True,
    )
    return redis.Redis(connection_pool=pool)


def keyspace_of(cfg: RedisConfig) -> KeySpace:
    return KeySpace(prefix=cfg.key_prefix, shards=cfg.shards)
