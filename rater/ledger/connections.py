"""How the ledger reaches Redis: connections kept between scripts, on one server or on the
primary that owns a script's slot in a Redis Cluster. Every ledger script is idempotent by
operation id, which is what makes each retry below safe."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry


class ReplyLost(redis.ConnectionError):
    """A command was sent but no reply came (the connection dropped or timed out after it):
    the server may have run it. A command that never left (the connection was refused)
    raises the plain redis error instead."""


class KeptCalls:
    """Commands on connections of `client`'s pool, kept by the ledger between calls.

    redis-py's per-command path (take a connection from the pool, check it is clean, record
    observability data, release it) costs about as much CPU as the command's own round trip;
    the ledger runs several scripts per call, so it keeps the connections it took in a LIFO
    list instead. It keeps at most a quarter of the pool, and only while they are busy: a
    connection idle for `IDLE_RETURN` seconds goes back to the pool, whose checks (a closed
    socket, data left over, the health-check PING) it then passes again before anyone uses
    it. A connection that fails, or is interrupted mid-command (a timeout, a killed
    greenlet), is disconnected before reuse, so no reply can be read by the wrong caller;
    after a connection error every kept one is given back (the server may have restarted).
    Connection errors and timeouts are retried with the pool's Retry policy: every ledger
    script is idempotent by operation id.
    """

    IDLE_RETURN = 1.0

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._idle: list[tuple[float, Any]] = []  # (kept since, connection), newest last
        self._keep = max(1, getattr(self._pool, "max_connections", 4) // 4)
        self._retry = client.get_retry() or Retry(NoBackoff(), 0)

    @property
    def kept(self) -> int:
        """Connections kept out of the pool now."""
        return len(self._idle)

    def call(self, *args: Any) -> Any:
        """Run one command; ReplyLost when it was sent at least once and never answered."""
        sent = [False]
        try:
            return self._retry.call_with_retry(lambda: self._once(args, sent), _no_op)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if sent[0]:
                raise ReplyLost(f"no reply after the command was sent: {exc}") from exc
            raise

    def _take(self) -> Any:
        idle = self._idle
        if idle:
            now = time.monotonic()
            while idle and now - idle[0][0] > self.IDLE_RETURN:  # oldest first
                self._pool.release(idle.pop(0)[1])
            if idle:
                return idle.pop()[1]
        return self._pool.get_connection()

    def _once(self, args: tuple[Any, ...], sent: list[bool]) -> Any:
        conn = self._take()
        try:
            sent[0] = True  # from here on the server may get the command, whatever follows
            send = getattr(conn, "send_packed_bytes", None)
            if send is not None and _pack is not None:
                send(_pack(args))
            else:
                conn.send_packed_command(conn.pack_command(*args), check_health=False)
            reply = conn.read_response()
        except redis.ResponseError:
            self._put(conn)  # the whole reply was read: the connection is clean
            raise
        except BaseException as exc:
            conn.disconnect()  # state unknown: reconnect on next use
            self._pool.release(conn)
            if isinstance(exc, redis.ConnectionError):
                self._give_back_all()
            raise
        self._put(conn)
        return reply

    def _put(self, conn: Any) -> None:
        if len(self._idle) < self._keep:
            self._idle.append((time.monotonic(), conn))
        else:
            self._pool.release(conn)

    def _give_back_all(self) -> None:
        idle, self._idle = self._idle, []
        for _, conn in idle:
            self._pool.release(conn)


class ClusterCalls:
    """Scripts on a Redis Cluster: sent straight to the primary that owns the slot of their
    first key (every key of a script shares it), on connections kept per node as `KeptCalls`
    keeps them. redis-py's own cluster path costs about six times the CPU per command, so
    it is taken only when the fast one cannot answer: a MOVED or ASK (slots moved), a
    TRYAGAIN (a slot mid-migration), a connection error or timeout (a failover), or a slot
    not in the map. It follows the redirection, reads the slot map again when needed, and
    retries; every script is idempotent, so one that ran before its reply was lost is
    harmless to send again."""

    kept = 0

    def __init__(self, client: redis.RedisCluster) -> None:
        self._client = client
        self._nodes = client.nodes_manager
        # keyed by the node's pool itself (not id()): a slot-map refresh makes new node
        # clients, and an id reused by one of them must not reach another node's pool
        self._per_pool: dict[Any, KeptCalls] = {}

    def call(self, *args: Any) -> Any:
        try:
            node_client = self._nodes.slots_cache[key_slot(args[3].encode())][0].redis_connection
            calls = self._per_pool.get(node_client.connection_pool)
            if calls is None:
                calls = self._per_pool[node_client.connection_pool] = KeptCalls(node_client)
            return calls.call(*args)
        except _REDIRECTED:
            try:
                return self._client.execute_command(*args)  # type: ignore[no-untyped-call]
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # redis-py's path does not say whether it sent the command: assume it may
                raise ReplyLost(f"no reply from the cluster: {exc}") from exc


# Replies and failures that send a cluster command through redis-py's full cluster path.
_REDIRECTED = (redis.exceptions.MovedError, redis.exceptions.AskError,
               redis.exceptions.TryAgainError, redis.ConnectionError, redis.TimeoutError,
               KeyError, IndexError, AttributeError)


_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # hiredis packs in C what redis-py packs in Python (same bytes for str, int, bytes)
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    _pack = None


def _no_op(_error: Exception) -> None:
    pass
