"""A small threaded TCP proxy to put between a client and a server in fault tests.

    proxy = TcpProxy("127.0.0.1", 5432).start()   # proxy.port, proxy.url_for(url)
    proxy.cut()       # drop every connection and refuse new ones (the server is "stopped")
    proxy.hang()      # keep connections open but forward nothing (a stalled server/network)
    proxy.lose_replies_to(b"...")  # deliver a request holding these bytes, drop its reply
    proxy.restore()   # accept and forward again; data held during a hang is delivered
    proxy.stop()

Threads rather than greenlets so it works whether or not the test process is monkey-patched
(patched, the threads are greenlets and it still works).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = listen_port
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._lose_marker: bytes | None = None
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._stopped = False
        self.accepted = 0          # connections accepted so far (tests wait on it)

    # --- control ------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def cut(self) -> None:
        """Close the listening socket and every connection: new connects are refused."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            _close(listener)
        for c in conns:
            _close(c)

    def hang(self) -> None:
        """Stop forwarding bytes in both directions; connections stay open."""
        self._flowing.clear()

    def lose_replies_to(self, marker: bytes) -> None:
        """From now on, a request holding `marker` still reaches the server, but the reply
        is dropped with its connection: the client cannot know whether it was done."""
        self._lose_marker = marker

    def restore(self) -> None:
        """Undo cut(), hang() or lose_replies()."""
        self._lose_marker: bytes | None = None
        self._flowing.set()
        if self._listener is None and not self._stopped:
            self._listen()

    def stop(self) -> None:
        self._stopped = True
        self.cut()
        self._flowing.set()

    def url_for(self, url: str) -> str:
        """`url` (postgresql://, redis://) with host and port replaced by the proxy's."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals ----------------------------------------------------------------------

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        with self._lock:
            self._listener = sock
        threading.Thread(target=self._accept_loop, args=(sock,), daemon=True,
                         name=f"proxy-accept-{self.port}").start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return          # cut() or stop() closed the listener
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:   # cut while connecting
                    _close(client)
                    _close(upstream)
                    return
                self._conns.update((client, upstream))
                self.accepted += 1
            marked = threading.Event()  # this connection sent a request holding the marker
            for src, dst, reply in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(src, dst, reply, marked),
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, reply: bool,
              marked: threading.Event) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                marker = self._lose_marker
                if reply and marked.is_set():
                    break  # the reply is dropped, and its connection with it
                if not reply and marker is not None and marker in data:
                    marked.set()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
