"""The decision socket: calls ask for their decision on a connection of their own.

The shipped dialplan runs FreeSWITCH's `socket` application (the Event Socket's outbound
mode) before it would park a call: the switch connects here, the daemon reads the call's
data, rates it and answers on that connection (variables, safety net and transfer, or a
hangup), and the call goes on at once. Parking costs more: the park application notices a
transfer only every 20 ms, and CHANNEL_PARK reaches the daemon through the inbound
listener, which also wakes only every 20 ms when the daemon sends it nothing
(benchmarks/README.md has the figures). Answers and hangups still come as events on the
node's inbound connection.

A call this process cannot decide or follow is released: when it is stopping, when the call
is not marked for rating, when no connected node has the call's Core-UUID (a foreign
switch, or a node whose events do not flow yet: the call's answer and hangup would be
missed), or when no decision comes within `decide_within`. Its dialplan goes on and parks
it, and the usual path decides it. With the daemon down the switch cannot connect, and the
dialplan parks the call at once.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping

from gevent.server import StreamServer

from rater.calls.items import AskedCall
from rater.calls.switch import NET_CAUSE, NodeLink, admit_values, parked_event
from rater.clock import Clock, SystemClock
from rater.errors import MalformedFrame, SwitchError
from rater.esl import commands
from rater.esl.outbound import OutboundCall
from rater.metrics import Metrics

log = logging.getLogger(__name__)


class SocketControl:
    """The decision of one asking call, sent on its own connection (AskingControl)."""

    def __init__(self, call: OutboundCall, clock: Clock,
                 on_release: Callable[[], None] = lambda: None) -> None:
        self.call = call
        self._clock = clock
        self._on_release = on_release

    @property
    def open(self) -> bool:
        """Still waiting for its decision (not decided, released or closed)."""
        return self.call.waiting

    def admit(self, uuid: str, net_seconds: int, destination: str, context: str,
              variables: dict[str, str], answered_usec: int = 0) -> None:
        """As NodeLink.admit, in one write: multiset (the variables and the net armed on
        answer), sched_hangup for a call answered already, transfer, exit."""
        self._check(uuid)
        values, net_now = admit_values(variables, net_seconds, answered_usec,
                                       int(self._clock.now()))
        batch = [commands.execute("multiset", commands.multiset_arg(values))]
        if net_now is not None:
            batch.append(commands.execute("sched_hangup", f"+{net_now} {NET_CAUSE}"))
        batch.append(commands.execute("transfer", f"{destination} XML {context}"))
        self.call.decide(batch, "admit")

    def hangup(self, uuid: str, cause: str) -> None:
        self._check(uuid)
        self.call.decide([commands.execute("hangup", cause)], "hangup")

    def release(self) -> None:
        """Let the call go undecided: its dialplan goes on (and parks it)."""
        if self.call.waiting:
            self._on_release()
            self.call.release()

    def _check(self, uuid: str) -> None:
        if uuid != self.call.uuid:
            raise ValueError(f"the connection of call {self.call.uuid} cannot decide {uuid}")


class DecisionSocket:
    """Listens for the switches' `socket` connections; one greenlet per asking call."""

    def __init__(
        self,
        host: str,
        port: int,
        nodes: Mapping[str, NodeLink],
        submit: Callable[[tuple[str, object]], None],
        metrics: Metrics,
        *,
        timeout: float,
        decide_within: float,
        clock: Clock | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._nodes = nodes
        self._submit = submit
        self._timeout = timeout
        self._decide_within = decide_within
        self._clock = clock or SystemClock()
        counted = metrics.decision_socket
        self._asked = counted.labels("asked")
        self._foreign = counted.labels("foreign")
        self._released = counted.labels("released")
        self._server: StreamServer | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self) -> None:
        """Bind and accept (the bound port replaces a 0)."""
        self._server = StreamServer((self.host, self.port), self._serve, backlog=1024)
        self._server.start()
        self.port = self._server.server_port

    def stop(self) -> None:
        """Stop accepting; calls still asking are released by their own greenlets."""
        if self._server is not None:
            self._server.stop(timeout=1.0)
            self._server = None

    def _serve(self, sock: socket.socket, address: tuple[str, int]) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        call = OutboundCall(sock, self._timeout)
        try:
            event = call.connect()
            self._asked.inc()
            node = self._node_of(event.core_uuid or "")
            if node is None:
                if all(link.ready for link in self._nodes.values()):
                    self._foreign.inc()
                    log.error("call %s asked from %s:%d, a switch (Core-UUID %s) that is none "
                              "of the configured nodes: released to its dialplan", call.uuid,
                              *address[:2], event.core_uuid)
                else:
                    # maybe from a node whose events do not flow (yet): its answer and hangup
                    # could be missed. Parked, the call is decided by the check that follows
                    # the node's reconnection.
                    log.info("call %s: no connected node has Core-UUID %s: released to its "
                             "dialplan", call.uuid, event.core_uuid)
                self._release(call)
                return
            control = SocketControl(call, self._clock, self._released.inc)
            self._submit((call.uuid, AskedCall(parked_event(node, event), control)))
            if not call.done.wait(self._decide_within):
                log.warning("call %s: no decision within %gs: released to its dialplan",
                            call.uuid, self._decide_within)
                control.release()
            call.done.wait(self._timeout)  # a decision being sent finishes first
        except (SwitchError, MalformedFrame) as exc:
            log.warning("decision socket, connection from %s:%d: %s", *address[:2], exc)
        finally:
            call.close()

    def _release(self, call: OutboundCall) -> None:
        self._released.inc()
        call.release()

    def _node_of(self, core_uuid: str) -> str | None:
        """The connected node with this Core-UUID (asked again once if none matches: the
        switch may have restarted since). Nodes not connected are not asked: a call must
        not wait on a node's reconnection."""
        ready = [(name, link) for name, link in self._nodes.items() if link.ready]
        for fresh in (False, True):
            for name, link in ready:
                try:
                    if link.core_uuid(self._timeout, fresh=fresh) == core_uuid:
                        return name
                except SwitchError as exc:
                    log.debug("node %s: no Core-UUID: %s", name, exc)
        return None
