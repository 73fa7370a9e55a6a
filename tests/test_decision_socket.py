"""The daemon's side of the decision socket, held to what a real FreeSWITCH 1.10.12 said and
accepted (fssim/captures/outbound, recorded by tests/freeswitch_record.py): the bytes the
daemon writes for each decision are the recorded ones, and it reads FreeSWITCH's recorded
answers (fed back over a real TCP connection) the way they mean."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
from gevent.event import Event

from rater.calls.decision_socket import DecisionSocket, SocketControl
from rater.calls.items import AskedCall
from rater.clock import FixedClock
from rater.errors import CommandFailed, ReplyTimeout, SwitchUnavailable
from rater.esl.frames import FrameParser
from rater.esl.outbound import OutboundCall
from rater.metrics import Metrics

CAPTURES = Path(__file__).resolve().parents[1] / "fssim" / "captures" / "outbound"
UUIDS = {  # the recorded calls' channels
    "admit": "663da27c-7834-4a19-b83c-401fc776d002",
    "refuse": "3329ac53-7aed-4f31-a9d0-41d29360adbb",
    "release": "b55f5207-8500-490b-bff2-411bace167fd",
    "gone": "006e5374-747b-4bf0-a53c-2d20484f9489",
}
CORE_UUID = "d3e250c2-15b0-4ff8-ae53-d094e5eeb1f0"
WAIT = 10.0


def recorded(session: str, direction: str) -> bytes:
    return (CAPTURES / f"outbound_{session}.raw.{direction}").read_bytes()


def frames(data: bytes) -> list[bytes]:
    """The recorded stream cut into its frames, each as its exact bytes."""
    parser, out, start = FrameParser(), [], 0
    for frame in parser.feed(data):
        end = start + (data[start:].index(b"\n\n") + 2)
        end += len(frame.body)
        out.append(data[start:end])
        start = end
    assert start == len(data)
    return out


class Replay:
    """A recorded FreeSWITCH on the other end of a real TCP connection: it sends its frames
    in the recorded order, each once the daemon has written what preceded it."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.received = bytearray()
        self.finished = Event()  # it has played its part and closed

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.getsockname()[:2]

    def client(self) -> socket.socket:
        """The switch's side: connects, then plays its part in a greenlet."""
        sock = socket.create_connection(self.address)
        peer, _ = self.listener.accept()
        self.listener.close()
        gevent.spawn(self._play, sock)
        return peer

    def _play(self, sock: socket.socket, send: list[bytes] | None = None) -> None:
        ours = frames(recorded(self.session, "in"))
        theirs = recorded(self.session, "out")
        # the channel data answers `connect`; everything after it answers the decision
        self._read_until(sock, len(b"connect\n\n"))
        sock.sendall(ours[0])
        if len(theirs) > len(b"connect\n\n") or self.session == "gone":
            if self.session != "gone":
                self._read_until(sock, len(theirs))
            sock.sendall(b"".join(ours[1:]))
        sock.close()
        self.finished.set()

    def _read_until(self, sock: socket.socket, total: int) -> None:
        sock.settimeout(WAIT)
        while len(self.received) < total:
            data = sock.recv(65536)
            if not data:
                return
            self.received.extend(data)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(1_796_289_000.0)


def connected(session: str) -> tuple[OutboundCall, Replay]:
    replay = Replay(session)
    call = OutboundCall(replay.client(), timeout=WAIT)
    return call, replay


def test_connect_reads_the_channel_data_freeswitch_sent() -> None:
    call, _replay = connected("admit")
    event = call.connect()
    assert call.uuid == UUIDS["admit"] == event.unique_id
    assert event.core_uuid == CORE_UUID
    assert event.name == "CHANNEL_DATA"
    assert event.variable("rater_direction") == "outbound"
    assert event.variable("rater_account") == "2100000001"
    assert event.variable("rater_destination") == "447700900101"
    assert event.variable("current_application") == "socket"
    assert call.waiting
    call.close()


def test_admit_writes_the_recorded_bytes_and_reads_both_replies(clock: FixedClock) -> None:
    """600 s allowed: execute_on_answer arms the safety net at 600 + 1 s (whole seconds)."""
    call, replay = connected("admit")
    call.connect()
    SocketControl(call, clock).admit(
        UUIDS["admit"], 600, "447700900101", "rated",
        {"rater_max_seconds": "600", "rater_account": "2100000001"})
    assert bytes(replay.received) == recorded("admit", "out")
    assert call.done.is_set() and not call.waiting


def test_a_call_answered_before_it_asked_gets_its_net_scheduled_at_once(clock) -> None:
    """Answered 20 s ago with 100 s allowed: sched_hangup +81 (101 - 20) before the transfer."""
    sent = bytearray()
    a, b = socket.socketpair()
    call = OutboundCall(a, timeout=WAIT)
    call.uuid = "u1"
    replies = b"Content-Type: command/reply\nReply-Text: +OK\n\n" * 3
    b.sendall(replies)
    SocketControl(call, clock).admit("u1", 100, "4477", "rated", {"rater_max_seconds": "100"},
                                     answered_usec=int((clock.now() - 20) * 1_000_000))
    b.settimeout(WAIT)
    while not sent.endswith(b"exit\n\n"):
        sent.extend(b.recv(65536))
    assert sent.decode().split("\n\n")[:-1] == [
        "sendmsg\ncall-command: execute\nexecute-app-name: multiset\n"
        "execute-app-arg: ^^|rater_max_seconds=100",
        "sendmsg\ncall-command: execute\nexecute-app-name: sched_hangup\n"
        "execute-app-arg: +81 ALLOTTED_TIMEOUT",
        "sendmsg\ncall-command: execute\nexecute-app-name: transfer\n"
        "execute-app-arg: 4477 XML rated",
        "exit",
    ]


def test_refusal_writes_the_recorded_bytes(clock: FixedClock) -> None:
    call, replay = connected("refuse")
    call.connect()
    SocketControl(call, clock).hangup(UUIDS["refuse"], "CALL_REJECTED")
    assert bytes(replay.received) == recorded("refuse", "out")


def test_release_writes_the_recorded_bytes() -> None:
    call, replay = connected("release")
    call.connect()
    call.release()
    assert replay.finished.wait(WAIT)
    call.close()
    assert bytes(replay.received) == recorded("release", "out")


def test_a_channel_gone_before_the_decision_is_a_switch_failure(clock) -> None:
    """FreeSWITCH sent its disconnect notice and closed: the decision did not reach the
    channel, so the handler must not count the call as admitted."""
    call, _replay = connected("gone")
    call.connect()
    with pytest.raises(SwitchUnavailable):
        SocketControl(call, clock).admit(UUIDS["gone"], 60, "447700900104", "rated",
                                         {"rater_max_seconds": "60"})
    assert call.done.is_set()


def test_an_error_reply_is_a_command_failure(clock: FixedClock) -> None:
    a, b = socket.socketpair()
    call = OutboundCall(a, timeout=WAIT)
    call.uuid = "u1"
    b.sendall(b"Content-Type: command/reply\nReply-Text: -ERR invalid session id [u1]\n\n")
    with pytest.raises(CommandFailed, match="invalid session id"):
        SocketControl(call, clock).hangup("u1", "CALL_REJECTED")


def test_a_switch_that_never_answers_times_out() -> None:
    a, _b = socket.socketpair()
    call = OutboundCall(a, timeout=0.2)
    with pytest.raises(ReplyTimeout, match="channel's data"):
        call.connect()


def test_a_call_is_decided_once(clock: FixedClock) -> None:
    call, _replay = connected("refuse")
    call.connect()
    control = SocketControl(call, clock)
    control.hangup(UUIDS["refuse"], "CALL_REJECTED")
    with pytest.raises(SwitchUnavailable, match="already decided"):
        control.hangup(UUIDS["refuse"], "CALL_REJECTED")
    control.release()  # a no-op now
    with pytest.raises(ValueError, match="cannot decide"):
        SocketControl(call, clock).hangup("another-uuid", "CALL_REJECTED")


@pytest.mark.parametrize("value", ["a|b", "${system(id)}", "x'y", "new\nline"])
def test_values_the_channel_would_misread_are_never_sent(clock, value: str) -> None:
    a, _b = socket.socketpair()
    call = OutboundCall(a, timeout=WAIT)
    call.uuid = "u1"
    with pytest.raises(ValueError):
        SocketControl(call, clock).admit("u1", 60, "4477", "rated", {"rater_account": value})
    assert call.waiting  # nothing was written: the call can still be released


# --- the listener ----------------------------------------------------------------------------

class Node:
    """What DecisionSocket asks of a NodeLink: its Core-UUID."""

    def __init__(self, core_uuid: str, ready: bool = True) -> None:
        self.value = core_uuid
        self.ready = ready  # its event connection subscribed
        self.asked = 0

    def core_uuid(self, timeout: float, fresh: bool = False) -> str:
        self.asked += 1
        return self.value


@pytest.fixture
def listening(clock: FixedClock) -> Iterator[tuple[DecisionSocket, list, Metrics]]:
    submitted: list = []
    metrics = Metrics()
    server = DecisionSocket("127.0.0.1", 0, {"fs1": Node(CORE_UUID)},  # type: ignore[dict-item]
                            submitted.append, metrics, timeout=WAIT, decide_within=0.5,
                            clock=clock)
    server.start()
    yield server, submitted, metrics
    server.stop()


def switch_asks(server: DecisionSocket, session: str) -> tuple[socket.socket, bytearray]:
    """A recorded FreeSWITCH connecting to the listener and sending its channel data."""
    sock = socket.create_connection(server.address)
    sock.settimeout(WAIT)
    got = bytearray()
    while not got.endswith(b"connect\n\n"):
        got.extend(sock.recv(65536))
    sock.sendall(frames(recorded(session, "in"))[0])
    return sock, got


def read_all(sock: socket.socket, got: bytearray) -> bytes:
    while data := sock.recv(65536):
        got.extend(data)
    return bytes(got)


def sample(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value(  # type: ignore[no-any-return]
        "rater_decision_socket_calls_total", {"result": result})


def test_a_call_from_a_configured_node_is_handed_to_the_call_handler(listening) -> None:
    server, submitted, metrics = listening
    sock, got = switch_asks(server, "admit")
    _wait(lambda: submitted)
    uuid, item = submitted[0]
    assert uuid == UUIDS["admit"] and isinstance(item, AskedCall)
    ev = item.event
    assert (ev.name, ev.node, ev.rated, ev.direction, ev.account, ev.destination) == (
        "CHANNEL_PARK", "fs1", True, "outbound", "2100000001", "447700900101")
    assert item.control.open
    sock.sendall(b"Content-Type: command/reply\nReply-Text: +OK\n\n")
    item.control.hangup(uuid, "CALL_REJECTED")
    assert read_all(sock, got).endswith(b"execute-app-arg: CALL_REJECTED\n\nexit\n\n")
    assert sample(metrics, "asked") == 1 and sample(metrics, "released") == 0


def test_a_call_not_decided_in_time_is_released_to_its_dialplan(listening) -> None:
    server, submitted, metrics = listening
    sock, got = switch_asks(server, "release")
    assert read_all(sock, got) == b"connect\n\nexit\n\n"  # after decide_within (0.5 s)
    assert submitted and not submitted[0][1].control.open
    assert sample(metrics, "released") == 1


@pytest.mark.parametrize("node", [Node("another-switch"), Node(CORE_UUID, ready=False)],
                         ids=["unknown switch", "node not connected yet"])
def test_a_call_that_cannot_be_followed_is_released(clock: FixedClock, node: Node) -> None:
    """From a switch that is not a configured node, or from a node whose events do not
    flow yet (its answer and hangup would be missed): the dialplan parks it instead."""
    submitted: list = []
    metrics = Metrics()
    server = DecisionSocket("127.0.0.1", 0, {"fs1": node},  # type: ignore[dict-item]
                            submitted.append, metrics, timeout=WAIT, decide_within=5,
                            clock=clock)
    server.start()
    try:
        sock, got = switch_asks(server, "admit")
        assert read_all(sock, got) == b"connect\n\nexit\n\n"
    finally:
        server.stop()
    assert not submitted
    assert sample(metrics, "released") == 1
    if node.ready:
        assert node.asked == 2  # asked again, fresh, before giving up (a restarted switch)
        assert sample(metrics, "foreign") == 1
    else:
        assert node.asked == 0  # a node not connected is not waited for
        assert sample(metrics, "foreign") == 0


def _wait(cond, timeout: float = WAIT) -> None:
    done = Event()
    with gevent.Timeout(timeout):
        while not cond():
            done.wait(0.01)


@pytest.mark.parametrize(("sent", "error"), [
    (b"garbage without a colon\n\n", "is not 'Name: value'"),
    (b"Content-Type: auth/request\n\n", "unexpected answer to connect: auth/request"),
    (b"Content-Type: command/reply\nReply-Text: %2BOK%0A\n\n", "has no Unique-ID"),
    (b"variable_x: " + b"y" * (2 * 1024 * 1024), "longer than"),
])
def test_bad_channel_data_is_refused_with_what_is_wrong(sent: bytes, error: str) -> None:
    a, b = socket.socketpair()
    call = OutboundCall(a, timeout=WAIT)
    gevent.spawn(b.sendall, sent)
    with pytest.raises(SwitchUnavailable, match=error):
        call.connect()
