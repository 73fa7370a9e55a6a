"""A scripted Event Socket server for the connection tests, and the captured traffic.

The test drives each accepted connection by hand (`FakeSwitch.next_session()`): read
the client's commands, answer, replay captured frames, or fault (stall, drop mid-frame,
reset, send garbage). Everything waits with a deadline.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct

import gevent
from gevent.event import Event
from gevent.queue import Empty, Queue
from gevent.server import StreamServer

from rater.esl.frames import FrameParser, build_frame

WAIT = 5.0  # generous deadline for anything a test waits on


from fssim.captured import capture_bytes  # noqa: E402 - the captures, for the ESL tests


def capture_frames(name: str) -> list[bytes]:
    """The exact bytes of each frame FreeSWITCH sent in capture `name`."""
    data = capture_bytes(name)
    offsets = [f.offset for f in FrameParser().feed(data)] + [len(data)]
    return [data[a:b] for a, b in itertools.pairwise(offsets)]


def reply_frame(text: str, **headers: str) -> bytes:
    return build_frame([("Content-Type", "command/reply"), ("Reply-Text", text),
                        *headers.items()])


def api_frame(body: str) -> bytes:
    return build_frame([("Content-Type", "api/response"),
                        ("Content-Length", str(len(body.encode())))], body)


AUTH_REQUEST = build_frame([("Content-Type", "auth/request")])


class FakeSession:
    """One accepted client connection, driven by the test."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.commands: list[str] = []
        self.done = Event()
        self._buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_command(self, timeout: float = WAIT) -> str:
        """The next command the client sent (without its blank line)."""
        with gevent.Timeout(timeout):
            while b"\n\n" not in self._buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("client closed the connection")
                self._buf += chunk
        command, self._buf = self._buf.split(b"\n\n", 1)
        text = command.decode()
        self.commands.append(text)
        return text

    def wait_closed(self, timeout: float = WAIT) -> None:
        """Wait until the client closes its side."""
        with gevent.Timeout(timeout):
            while self.sock.recv(65536):
                pass

    def handshake(self, password: str, subscription: str | None = None) -> None:
        """Greet, accept `password`, and answer the subscription command (checked
        against `subscription` when given)."""
        self.send(AUTH_REQUEST)
        command = self.read_command()
        assert command == f"auth {password}", "unexpected auth command"
        self.send(reply_frame("+OK accepted"))
        if subscription is not None:
            command = self.read_command()
            assert command == subscription, command
            fmt = command.split()[1]
            self.send(reply_frame(f"+OK event listener enabled {fmt}"))

    def close(self) -> None:
        """Orderly close (FIN)."""
        with contextlib.suppress(OSError):  # the client may have closed already
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.done.set()

    def reset(self) -> None:
        """Abrupt close (RST): SO_LINGER with a zero timeout."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
        self.done.set()


class FakeSwitch:
    """A StreamServer on 127.0.0.1 handing each connection to the test as a FakeSession."""

    def __init__(self) -> None:
        self._server = StreamServer(("127.0.0.1", 0), self._handle)
        self._sessions: Queue[FakeSession] = Queue()
        self.accepted = 0

    @property
    def port(self) -> int:
        return self._server.server_port

    def start(self) -> FakeSwitch:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(timeout=1)

    def next_session(self, timeout: float = WAIT) -> FakeSession:
        try:
            return self._sessions.get(timeout=timeout)
        except Empty:
            raise AssertionError(f"no client connected within {timeout}s") from None

    def _handle(self, sock: socket.socket, _address: object) -> None:
        session = FakeSession(sock)
        self.accepted += 1
        self._sessions.put(session)
        session.done.wait(timeout=60)  # the test closes it; the server forgets it after
