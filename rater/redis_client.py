"""The one way this project opens Redis: a blocking pool with deadlines and safe retries.

Retries on timeouts are safe because every ledger script is idempotent by operation id.

With a `redis+sentinel://` URL the pool follows the primary that Redis Sentinel names: a new
connection asks a Sentinel where the primary is; while commands run, the pool asks again at
most every `PRIMARY_CHECK_INTERVAL` seconds (in the background) and shuts down every
connection open to another server, busy or not (their commands fail with ConnectionError
and are retried on the new primary); a READONLY reply (a primary turned replica) drops the
connection too. Without that, the connections opened before a `SENTINEL FAILOVER` keep
writing to the former primary until Sentinel turns it into a replica, about ten seconds
later, and every one of those writes is thrown away by its resynchronisation
(tests/test_redis_faults.py).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import gevent
import redis
from gevent import monkey
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.utils import SENTINEL

from rater.config import RedisConfig
from rater.ledger.keys import KeySpace

# What make_redis returns: a client on one Redis (Sentinel included) or on a Cluster.
RedisClient = redis.Redis | redis.RedisCluster

log = logging.getLogger(__name__)

# Seconds between two checks of where the primary is (Sentinel mode), while commands run.
PRIMARY_CHECK_INTERVAL = 0.25

# The stdlib poll even when gevent has patched `select`: a zero-timeout poll never blocks, and
# gevent's cooperative one costs a trip through the hub for every pooled command.
_poll = monkey.get_original("select", "poll")


class Connection(redis.Connection):
    """redis-py's connection with a cheaper idle check.

    The pool asks every connection it hands out `can_read()` (data left over means a dirty
    connection). Under gevent that readiness check runs through the patched `select.poll`:
    watchers and a switch to the hub, about a tenth of the daemon's CPU at load. This answers
    the common case (nothing buffered, nothing readable) with one plain non-blocking
    poll(2), and leaves every other case to redis-py."""

    def can_read(self, timeout: float = 0) -> bool:
        sock = self._sock
        reader = getattr(self._parser, "_reader", None)
        if timeout != 0 or sock is None or not hasattr(reader, "has_data"):
            return super().can_read(timeout)
        if reader.has_data():
            return True
        poller = _poll()
        poller.register(sock.fileno(), select.POLLIN)
        if not poller.poll(0):
            return False
        return super().can_read(timeout)  # readable: redis-py tells data from EOF

    def send_packed_bytes(self, data: bytes) -> None:
        """`send_packed_command` for one packed command, with socket.send: gevent's sendall
        asks the kernel for the socket's buffer size on every call. Same failures: the
        connection is closed and TimeoutError or ConnectionError raised."""
        if self._sock is None:
            self.connect()
        sock: Any = self._sock  # connected just above
        try:
            view = memoryview(data)
            while view:
                view = view[sock.send(view):]
        except TimeoutError:
            self.disconnect()
            raise redis.TimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            self.disconnect()
            raise redis.ConnectionError(f"Error while writing to socket: {exc}") from exc
        except BaseException:
            self.disconnect()  # interrupted mid-command: never reuse half a command
            raise


class SentinelConnection(SentinelManagedConnection, Connection):
    """A connection to the primary Sentinel names, with `Connection`'s cheap idle check and
    `send_packed_bytes`. Before each command it compares its server with the primary its
    pool knows (one tuple comparison) and, when they differ, disconnects and raises
    ConnectionError, which every caller retries (the retry connects to the new primary).
    Raising rather than silently reconnecting keeps redis-py's own rule: state that lived on
    the old connection (a WATCH) is reported lost, never carried over unnoticed."""

    def _follow_primary(self) -> None:
        if self._sock is None:
            return  # connecting asks Sentinel anyway
        proxy = self.connection_pool
        pool = proxy.connection_pool_ref()
        if pool is not None:
            pool.check_primary_soon()
        primary = proxy.master_address
        if primary is not None and (self.host, self.port) != primary:
            self.disconnect()
            raise redis.ConnectionError(
                f"the primary moved from {self.host}:{self.port} to {primary[0]}:{primary[1]}")

    def send_packed_bytes(self, data: bytes) -> None:
        self._follow_primary()
        super().send_packed_bytes(data)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self._follow_primary()
        super().send_packed_command(command, check_health)

    def read_response(self, disable_decoding: bool = False, *, timeout: Any = SENTINEL,
                      disconnect_on_error: bool | None = True,
                      push_request: bool | None = False) -> Any:
        """As redis-py's, but disconnecting on a failed or interrupted read like a plain
        Connection does: SentinelManagedConnection defaults `disconnect_on_error` to False,
        so a read cut short (a timeout, a killed greenlet) left the reply in flight and the
        connection went back to the pool, where the next command read that stale reply as
        its own (a flusher stopped in XREADGROUP handed its nil to the next XINFO)."""
        return super().read_response(
            disable_decoding, timeout=timeout, disconnect_on_error=disconnect_on_error,
            push_request=push_request)



class SentinelBlockingConnectionPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool with BlockingConnectionPool's bound (wait `timeout` for a
    connection, never more than `max_connections`), checking where the primary is in the
    background while it is used (`check_primary_soon`)."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        self._next_check = 0.0
        self._checking = False
        super().__init__(service_name, sentinel_manager, **kwargs)

    def check_primary_soon(self) -> None:
        """Ask Sentinel where the primary is, in a greenlet of its own (a slow or dead
        Sentinel never holds up a command), at most every PRIMARY_CHECK_INTERVAL."""
        now = time.monotonic()
        if self._checking or now < self._next_check:
            return
        self._next_check = now + PRIMARY_CHECK_INTERVAL
        self._checking = True
        gevent.spawn(self._check_primary)

    def _check_primary(self) -> None:
        try:
            primary = self.get_master_address()
        except redis.RedisError:
            return  # no primary named now (mid-failover): connections learn it on connect
        except Exception as exc:  # e.g. the client closed under the check: never fatal
            log.debug("Sentinel check failed: %r", exc)
            return
        finally:
            self._checking = False
        # Shut down every connection still open to another server, busy ones included: a
        # command waiting there (on a paused or former primary) fails with ConnectionError
        # in its own greenlet and is retried on the primary, instead of being acknowledged
        # by a server whose writes are about to be thrown away. Every ledger script is
        # idempotent, so a command cut off after it ran is harmless. shutdown(), not
        # disconnect(): the connection's owner must be the one to tear it down (redis-py
        # fails on a connection disconnected under a PubSub waiting on it).
        for conn in list(self._connections):
            sock = conn._sock
            if sock is not None and (conn.host, conn.port) != primary:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def release(self, connection: Any) -> None:
        if not self.owns_connection(connection):
            # BlockingConnectionPool forgets to drop it from its list (a connection to a
            # former primary, or one that never connected): every failover or failed
            # connect would leave one behind
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)
        super().release(connection)


class SentinelRedis(redis.Redis):
    """A client whose close() also closes its connections to the Sentinels."""

    sentinel: Sentinel  # type: ignore[assignment]  # shadows the SENTINEL command method

    def close(self) -> None:
        super().close()
        self.sentinel.close()


def make_redis(
    cfg: RedisConfig, *, max_connections: int | None = None,
    socket_timeout: float | None = None,
) -> RedisClient:
    """A client on a BlockingConnectionPool: waits `pool_timeout` for a connection instead
    of raising past `pool_size` (redis-py's default pool raises), never waits forever.
    `max_connections` and `socket_timeout` override the configuration's (the loader writes
    large snapshots with few connections). A `redis+sentinel://` URL gives a client that
    follows the primary Sentinel names (module docstring), with the same bound, timeouts
    and retries; a `redis+cluster://` URL a Redis Cluster client (`_make_cluster`)."""
    common: dict[str, Any] = {
        "max_connections": max_connections or cfg.pool_size,
        "timeout": cfg.pool_timeout,
        "socket_timeout": socket_timeout or cfg.socket_timeout,
        "socket_connect_timeout": cfg.socket_timeout,
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.02), 3),
        "retry_on_timeout": True,
    }
    cluster = cfg.cluster()
    if cluster is not None:
        return _make_cluster(cluster, common)
    target = cfg.sentinel()
    if target is None:
        pool = redis.BlockingConnectionPool.from_url(
            cfg.url, connection_class=Connection, **common)
        return redis.Redis(connection_pool=pool)
    hosts, service, db, username, password = target
    sentinel = Sentinel(hosts, sentinel_kwargs={
        "socket_timeout": cfg.socket_timeout, "socket_connect_timeout": cfg.socket_timeout})
    pool = SentinelBlockingConnectionPool(
        service, sentinel, connection_class=SentinelConnection, db=db, username=username,
        password=password, **common)
    client = SentinelRedis(connection_pool=pool)
    client.sentinel = sentinel
    return client


@contextlib.contextmanager
def _unreachable_is_a_connection_error() -> Iterator[None]:
    """redis-py raises RedisClusterException, which is not a RedisError, when no node
    answers or a slot has no primary (mid-failover): callers that retry ConnectionError
    (the ledger's, the flusher's, the watcher's) would see a crash instead of an outage."""
    try:
        yield
    except redis.exceptions.RedisClusterException as exc:
        if isinstance(exc, redis.exceptions.SlotNotCoveredError) or "cannot be connected" in str(
                exc):
            raise redis.ConnectionError(f"Redis Cluster unreachable: {exc}") from exc
        raise


class ClusterClient(redis.RedisCluster):
    """redis-py's RedisCluster, with a cluster that cannot be reached reported as
    ConnectionError (by commands and pipelines alike)."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with _unreachable_is_a_connection_error():
            return super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def checked(raise_on_error: bool = True) -> list[Any]:
            with _unreachable_is_a_connection_error():
                return execute(raise_on_error)

        pipe.execute = checked
        return pipe


def _make_cluster(
    target: tuple[list[tuple[str, int]], str | None, str | None], common: dict[str, Any]
) -> ClusterClient:
    """redis-py's RedisCluster: one blocking pool of `max_connections` per node, MOVED and
    ASK followed, the slot map read again after a connection error or CLUSTERDOWN (a
    failover) and the command retried (`retry`'s count). Keys of one account tree share a
    hash tag, so every ledger script runs on the one node that owns the tree's slot."""
    hosts, username, password = target
    options = {k: v for k, v in common.items()
               if k not in ("health_check_interval", "retry_on_timeout")}
    # With `url`, redis-py builds each node's pool with `connection_pool_class(**options)`,
    # which takes `connection_class` (plain node clients do not); the other addresses are
    # further startup nodes.
    host, port = hosts[0]
    first = f"redis://[{host}]:{port}" if ":" in host else f"redis://{host}:{port}"
    return ClusterClient(
        url=first, startup_nodes=[ClusterNode(h, p) for h, p in hosts[1:]],
        connection_class=Connection, connection_pool_class=redis.BlockingConnectionPool,
        username=username, password=password, **options)


def keyspace_of(cfg: RedisConfig) -> KeySpace:
    return KeySpace(prefix=cfg.key_prefix, shards=cfg.shards)
