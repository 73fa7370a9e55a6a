"""The one way this project opens Redis: a blocking pool with deadlines and safe retries.

Retries on timeouts are safe because every ledger script is idempotent by operation id.
"""

from __future__ import annotations

import select

import redis
from gevent import monkey
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from rater.config import RedisConfig
from rater.ledger.keys import KeySpace

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
        sock = self._sock
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
        connection_class=Connection,
    )
    return redis.Redis(connection_pool=pool)


def keyspace_of(cfg: RedisConfig) -> KeySpace:
    return KeySpace(prefix=cfg.key_prefix, shards=cfg.shards)
