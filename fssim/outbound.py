"""FreeSWITCH's `socket` dialplan application for the simulated legs: the Event Socket's
outbound mode, static and single-channel, as the shipped dialplan runs it
(`socket 127.0.0.1:8084`) before it parks a call. Each asking leg connects to the rater's
decision socket from its own greenlet, as the channel's own thread does in FreeSWITCH
(mod_event_socket.c `socket_function`, `listener_run`, `read_packet`, `parse_command`).

The conversation, as fssim/captures/outbound/ recorded it from FreeSWITCH 1.10.12:

    rater   connect                 switch  the channel's data (fssim.socket_data)
    rater   sendmsg (execute app)   switch  +OK, once the application has run
    rater   exit                    switch  +OK bye, a disconnect notice, close

- No connect (refused, unreachable): the application returns at once and the dialplan parks.
- The first command must come within 25 s (read_packet's first timeout), else the
  connection ends as below. Its reply is never written (only `connect` writes, its data).
- Other commands get the replies FreeSWITCH gives in single-channel mode: `filter`,
  `resume`, `getvar`, `myevents` (acknowledged; the simulator sends no events on this
  connection), `divert_events`, `sendmsg` (to this leg, or queued to another live one);
  anything else (`api`, `event`, `linger`, ...) is `-ERR command not found`.
- The connection ends on `exit`, on end of file, or once the channel is down (a `hangup`
  application, the caller giving up): a disconnect notice naming the channel, then close;
  commands not read by then are dropped. Then the application returns: a leg transferred
  on the connection runs its new extension (it never parks); one hung up is gone; any other
  the dialplan parks (CHANNEL_PARK), where the rater decides it the old way.

A listener that accepts and never answers keeps the leg waiting (25 s for the first
command); the caller's patience (`park_timeout`) runs all along.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import gevent
import gevent.event
from gevent import socket

from fssim import captured
from fssim.causes import str2cause
from fssim.channel import CallState, Channel
from fssim.connection import Command, next_command
from fssim.subscription import Subscription
from fssim.timers import now_us
from fssim.wire import command_reply, disconnect_notice

log = logging.getLogger(__name__)

FIRST_COMMAND_TIMEOUT = 25.0  # read_packet(listener, &ievent, 25) in listener_run
NOT_FOUND = "-ERR command not found"
_TRUE = ("yes", "on", "true", "t", "enabled", "active", "allow")  # switch_true


class SessionSink(Protocol):
    """What a session asks of the switch (the Simulator is one)."""

    def channel_data_reply(self, leg: Channel, socket_data: str) -> bytes:
        """The channel's data frame for this leg as it is now (its answer to `connect`)."""

    def live_leg(self, uuid: str) -> Channel | None:
        """A live leg by uuid (the target of `sendmsg <uuid>`)."""


class OutboundSession:
    """One leg's `socket` application: connect, serve the listener's commands, return."""

    def __init__(self, leg: Channel, address: tuple[str, int], sink: SessionSink, *,
                 connect_timeout: float | None = None,
                 first_command_timeout: float = FIRST_COMMAND_TIMEOUT,
                 on_end: Callable[[OutboundSession], None] | None = None) -> None:
        self.leg = leg
        self.address = address
        self.sink = sink
        self.connect_timeout = connect_timeout  # None: the system's, as in FreeSWITCH
        self.first_command_timeout = first_command_timeout
        self.on_end = on_end
        self.received: list[str] = []  # the command lines read, in order
        self.connected = False
        self.done = gevent.event.Event()  # the application returned
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._running = True
        self._down = False
        self._aborted = False
        self._myevents = False
        self._filters = Subscription()
        self._queued: list[Command] = []  # `sendmsg` with `async: true`, run when it returns
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> OutboundSession:
        self._greenlet = gevent.spawn(self._run)
        return self

    def channel_down(self) -> None:
        """The leg is hung up: stop reading now (a read under way ends at once)."""
        self._down = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RD)

    def abort(self) -> None:
        """The simulator closes: drop the connection, leave the leg as it is."""
        self._aborted = True
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        self._close()

    # --- the application ------------------------------------------------------------------

    def _run(self) -> None:
        leg = self.leg
        host, port = self.address
        leg.set_var("socket_host", host)  # socket_function sets it before it connects
        try:
            try:
                self._sock = socket.create_connection(self.address,
                                                      timeout=self.connect_timeout)
            except OSError as exc:
                log.info("call %s: socket %s:%d: %s: the dialplan goes on", leg.uuid, host,
                         port, exc)
                return
            self._sock.settimeout(None)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connected = True
            if self._down:  # hung up while connecting
                self._sock.shutdown(socket.SHUT_RD)
            self._converse()
        finally:
            self._close()
            if not self._aborted:
                self._returned()

    def _returned(self) -> None:
        """The application returned: queued `sendmsg`s run, then the dialplan goes on."""
        if self.on_end is not None:
            self.on_end(self)
        for command in self._queued:
            if self.leg.state is CallState.ASKING:
                self._parse_event(self.leg, command)
        self.leg.socket_done()
        self.done.set()

    def _converse(self) -> None:
        first = self._read_command(self.first_command_timeout)
        if first is not None:
            self._handle(first, reply=False)  # static mode: the first reply is not written
            while self._running and not self._down:
                command = self._read_command(None)
                if command is None:
                    break
                self._handle(command, reply=True)
        self._send(disconnect_notice(captured.DISCONNECT_GOODBYE, self.leg.uuid))

    def _read_command(self, timeout: float | None) -> Command | None:
        """The next command block; None at end of file, after `timeout`, or once the
        channel is down (read_packet checks it between reads)."""
        assert self._sock is not None
        deadline = None if timeout is None else gevent.get_hub().loop.now() + timeout
        while not self._down:
            try:
                command, pos = next_command(self._buffer, 0)
            except ValueError:  # a Content-Length that is no number
                log.info("call %s: unreadable command on the socket", self.leg.uuid)
                return None
            if command is not None:
                self._buffer = self._buffer[pos:]
                return command
            left = None if deadline is None else deadline - gevent.get_hub().loop.now()
            if left is not None and left <= 0:
                log.info("call %s: no command on the socket within %gs", self.leg.uuid,
                         timeout)
                return None
            try:
                with gevent.Timeout(left):
                    data = self._sock.recv(65536)
            except gevent.Timeout:
                continue  # the deadline, checked above
            except OSError:
                return None
            if not data:
                return None
            self._buffer += data
        return None

    # --- commands (parse_command, single-channel outbound mode) -----------------------------

    def _handle(self, command: Command, reply: bool) -> None:
        self.received.append(command.line)
        text = self._answer(command)
        if reply and text is not None:
            self._send(command_reply(text))

    def _answer(self, command: Command) -> str | None:
        """The Reply-Text FreeSWITCH gives (None: no reply; `connect` writes its own)."""
        line = command.line
        low = line.lower()
        if low.startswith(("exit", "...")):
            self._running = False
            return "+OK bye"
        if low.startswith("filter "):
            return self._filters.filter(line[7:])
        if low.startswith("resume"):
            self.leg.set_var("socket_resume", "true")
            return "+OK"
        if low.startswith("connect"):
            self.leg.asked_us = self.leg.asked_us or now_us()
            host, port = self.address
            self._send(self.sink.channel_data_reply(self.leg, f"{host}:{port}"))
            return None
        if low.startswith("getvar"):
            _, space, name = line.partition(" ")
            return (self.leg.get_var(name) if space else None) or NOT_FOUND
        if low.startswith("myevents"):
            if self._myevents:
                return "-ERR aready enabled."  # sic
            self._myevents = True
            log.info("call %s: myevents on the socket: the simulator sends no events there",
                     self.leg.uuid)
            return "+OK Events Enabled"
        if low.startswith("divert_events"):
            value = line[13:].strip()
            if not value:
                return "-ERR missing value."
            on = value.lower() == "on"
            return "+OK events diverted" if on else "+OK events not diverted"
        if low.startswith("sendmsg"):
            return self._sendmsg(command)
        return NOT_FOUND

    def _sendmsg(self, command: Command) -> str:
        """`sendmsg [<uuid>]`: this leg's runs now (static mode: in the channel's thread,
        so the reply follows it), or once the application returns with `async: true`;
        another live leg's runs now (FreeSWITCH queues it to that channel)."""
        headers = {k.lower(): v for k, v in command.headers.items()}
        target = command.line[7:].strip() or headers.get("session-id", "")
        if target == self.leg.uuid:
            target = ""
        if not target:
            if _true(headers.get("async", "")):
                self._queued.append(command)
            else:
                self._parse_event(self.leg, command)
            return "+OK"
        other = self.sink.live_leg(target)
        if other is None:
            return f"-ERR invalid session id [{target}]"
        self._parse_event(other, command)
        return "+OK"

    def _parse_event(self, leg: Channel, command: Command) -> None:
        """switch_ivr_parse_event: `call-command: execute` runs an application (its argument
        from `execute-app-arg`, or a text/plain body), `hangup` hangs up
        (`hangup-cause`); others (unicast, nomedia, xferext) are ignored here."""
        headers = {k.lower(): v for k, v in command.headers.items()}
        what = headers.get("call-command", "")
        own = leg is self.leg
        if own:  # what runs now may decide the call (read as it ends, if it ends now)
            leg.socket_decided = True
        if what == "execute":
            app = headers.get("execute-app-name", "")
            arg = headers.get("execute-app-arg", "")
            if not arg and headers.get("content-type", "").lower() == "text/plain":
                arg = command.body.decode("utf-8", "replace")
            if not app:
                return
            leg.record_command(f"sendmsg {app} {arg}".rstrip())
            leg.run_app(app, arg)
        elif what == "hangup":
            cause = headers.get("hangup-cause")
            leg.record_command(f"sendmsg hangup {cause or ''}".rstrip())
            leg.hangup(str2cause(cause) if cause is not None else "NORMAL_CLEARING")
        else:
            log.info("call %s: sendmsg call-command %r ignored", leg.uuid, what)
        if own:
            leg.socket_decided = leg.moved or leg.state is CallState.HUNGUP

    # --- the socket -----------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Write now; a listener gone meanwhile is noticed by the next read."""
        if self._sock is None:
            return
        try:
            self._sock.sendall(data)
        except OSError as exc:
            log.info("call %s: socket write failed: %s", self.leg.uuid, exc)

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _true(value: str) -> bool:
    """switch_true: yes/on/true/t/enabled/active/allow, or a number other than 0."""
    value = value.strip().lower()
    return value in _TRUE or (value.lstrip("-").isdigit() and int(value) != 0)


class DecisionSockets:
    """The switch's side of the decision socket: where new legs connect (`address`, None:
    the dialplan parks them at once) and the sessions under way."""

    def __init__(self, sink: SessionSink, address: tuple[str, int] | None = None) -> None:
        self.sink = sink
        self.address = address
        self.connect_timeout: float | None = None
        self.first_command_timeout = FIRST_COMMAND_TIMEOUT
        self.sessions: dict[str, OutboundSession] = {}

    def ask(self, leg: Channel) -> bool:
        """Start the leg's `socket` application; False when there is no decision socket."""
        if self.address is None:
            return False
        session = OutboundSession(leg, self.address, self.sink,
                                  connect_timeout=self.connect_timeout,
                                  first_command_timeout=self.first_command_timeout,
                                  on_end=self._ended)
        self.sessions[leg.uuid] = session
        session.start()
        return True

    def channel_down(self, uuid: str) -> None:
        session = self.sessions.get(uuid)
        if session is not None:
            session.channel_down()

    def close(self) -> None:
        """Drop every connection (the simulator closes)."""
        for session in list(self.sessions.values()):
            session.abort()
        self.sessions.clear()

    def _ended(self, session: OutboundSession) -> None:
        if self.sessions.get(session.leg.uuid) is session:
            del self.sessions[session.leg.uuid]
