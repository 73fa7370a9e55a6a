"""The Event Socket listener: the listening socket and its connections (fssim.connection)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gevent import socket
from gevent.server import StreamServer

from fssim.connection import MAX_QUEUE_LEN, Connection, Switch

log = logging.getLogger(__name__)


class EslServer:
    """The listening socket and its connections."""

    def __init__(self, switch: Switch, host: str, port: int, *, password: str,
                 max_queue: int = MAX_QUEUE_LEN) -> None:
        self.switch = switch
        self.host = host
        self.port = port
        self.password = password
        self.max_queue = max_queue  # unsent frames per connection before events are lost
        self.connections: list[Connection] = []
        self._ids = 0
        self._server: StreamServer | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> int:
        """Bind and accept; returns the bound port (reused on a restart)."""
        self._server = StreamServer((self.host, self.port), self._handle)
        self._server.start()
        self.port = self._server.server_port
        return self.port

    def stop(self, abort_connections: bool = True) -> None:
        """Stop accepting; close every connection abruptly unless told not to."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if abort_connections:
            for conn in list(self.connections):
                conn.abort()

    # --- connection faults, on every connection -----------------------------------------

    def drop_all(self, mid_frame: bool, reset: bool,
                 sample: Callable[[str], bytes] | None = None) -> int:
        """Connection.abort() on each; returns how many were dropped."""
        conns = list(self.connections)
        for conn in conns:
            conn.abort(mid_frame=mid_frame, reset=reset, sample=sample)
        return len(conns)

    def stall_all(self, seconds: float) -> None:
        for conn in self.connections:
            conn.stall(seconds)

    def resume_all(self) -> None:
        for conn in self.connections:
            conn.resume()

    def inject_all(self, data: bytes) -> None:
        for conn in self.connections:
            conn.inject(data)

    def forget(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)
            self.switch.subscriptions_changed()

    def _handle(self, sock: socket.socket, address: tuple[str, int]) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._ids += 1
        conn = Connection(self.switch, sock, address, self._ids, password=self.password,
                          max_queue=self.max_queue, on_close=self.forget)
        self.connections.append(conn)
        log.debug("ESL connection %d from %s:%d", conn.id, *address[:2])
        conn.serve()
