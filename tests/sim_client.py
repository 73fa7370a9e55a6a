"""A minimal ESL client to drive the simulator from the tests (not the daemon's
connection): every wait has a deadline, frames are parsed with rater.esl."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import gevent
import gevent.event
from gevent import socket

from rater.esl.events import ChannelEvent
from rater.esl.frames import Frame, FrameParser
from rater.esl.messages import Message, parse_frame
from rater.esl.replies import ApiResponse, AuthRequest, CommandReply, DisconnectNotice


class SimClient:
    """Reads every frame in a greenlet; replies and events wait in separate queues."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(None)
        self.parser = FrameParser()
        self.raw = bytearray()  # every byte received
        self.frames: list[Frame] = []
        self.replies: deque[Message] = deque()
        self.events: deque[ChannelEvent] = deque()
        self.notice: DisconnectNotice | None = None
        self.error: Exception | None = None
        self.eof = gevent.event.Event()
        self._changed = gevent.event.Event()
        self._reader = gevent.spawn(self._read_loop)

    def _read_loop(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.raw += data
                for frame in self.parser.feed(data):
                    self.frames.append(frame)
                    message = parse_frame(frame)
                    if isinstance(message, ChannelEvent):
                        self.events.append(message)
                    elif isinstance(message, DisconnectNotice):
                        self.notice = message
                    else:
                        self.replies.append(message)
                self._changed.set()
        except Exception as exc:  # parser errors and resets are what fault tests look for
            self.error = exc
        finally:
            self.eof.set()
            self._changed.set()

    def wait_until(self, ready: Callable[[], bool], what: str = "condition",
                   timeout: float | None = None) -> None:
        """Wait (with a deadline) until `ready()` holds, re-checked as bytes arrive."""
        self._wait(ready, what, timeout)

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float | None) -> None:
        deadline = gevent.get_hub().loop.now() + (timeout or self.timeout)
        while not ready():
            if self.eof.is_set() and not ready():
                raise EOFError(f"connection closed while waiting for {what}: {self.error!r}")
            left = deadline - gevent.get_hub().loop.now()
            if left <= 0:
                raise TimeoutError(f"no {what} within {timeout or self.timeout}s")
            self._changed.clear()
            if not ready():
                self._changed.wait(left)

    # --- commands ---------------------------------------------------------------------------

    def send(self, command: str) -> None:
        self.sock.sendall(command.encode() + b"\n\n")

    def reply(self, timeout: float | None = None) -> Message:
        """The next command/reply or api/response (auth/request included)."""
        self._wait(lambda: bool(self.replies), "reply", timeout)
        return self.replies.popleft()

    def command(self, command: str, timeout: float | None = None) -> CommandReply:
        self.send(command)
        reply = self.reply(timeout)
        assert isinstance(reply, CommandReply), reply
        return reply

    def api(self, command: str, timeout: float | None = None) -> str:
        self.send(f"api {command}")
        reply = self.reply(timeout)
        assert isinstance(reply, ApiResponse), reply
        return reply.body

    def login(self, password: str = "ClueCon") -> CommandReply:
        first = self.reply()
        assert isinstance(first, AuthRequest), first
        return self.command(f"auth {password}")

    def subscribe(self, *names: str, fmt: str = "plain") -> CommandReply:
        return self.command(f"event {fmt} {' '.join(names)}")

    # --- events -----------------------------------------------------------------------------

    def next_event(self, name: str | None = None, uuid: str | None = None,
                   timeout: float | None = None) -> ChannelEvent:
        """The first queued event matching name/uuid (earlier non-matching ones stay)."""
        found: list[ChannelEvent] = []

        def ready() -> bool:
            for event in self.events:
                if (name is None or event.name == name) and (
                        uuid is None or event.unique_id == uuid):
                    found.append(event)
                    return True
            return False

        self._wait(ready, f"event {name or '*'} {uuid or ''}".strip(), timeout)
        self.events.remove(found[0])
        return found[0]

    def drain_events(self) -> list[ChannelEvent]:
        out = list(self.events)
        self.events.clear()
        return out

    def wait_closed(self, timeout: float | None = None) -> None:
        self._wait(self.eof.is_set, "end of stream", timeout)

    def close(self) -> None:
        self._reader.kill(block=False)
        self.sock.close()
