"""fssim's `socket` application (the decision socket, fssim.outbound) held to the real
FreeSWITCH 1.10.12 conversations of fssim/captures/outbound/: the channel's data template
against the captured frame, then fssim driven by a listener sending the very bytes each
capture's listener sent, byte for byte in what fssim answers, and in what becomes of the
call. Every wait is on an event with a generous deadline."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator
from urllib.parse import unquote

import gevent
import gevent.event
import gevent.queue
import pytest
from gevent import socket
from gevent.server import StreamServer

from fssim import CallState, Simulator, captured, socket_data
from fssim.__main__ import add_arguments
from fssim.separate import split_on
from fssim.templates import compile_template
from rater.calls.switch import parked_event
from rater.esl import commands
from rater.esl.frames import Frame, FrameParser
from rater.esl.outbound import OutboundCall

DEADLINE = 10.0
CONNECT = b"connect\n\n"
ACCOUNT = "2100000001"  # the captured calls' account (tests/freeswitch_record.py)
PARKING = {"CHANNEL_PARK", "CHANNEL_UNPARK"}
NOTICE = b"Content-Type: text/disconnect-notice"


def real_frames(session: str) -> list[Frame]:
    return FrameParser().feed(captured.capture_bytes(session))


def data_frame_bytes(raw: bytes) -> bytes:
    """The channel's data: everything up to the first blank line (it has no body)."""
    return raw[:raw.index(b"\n\n") + 2]


def text(frame: Frame, name: str) -> str:
    value = frame.header(name)
    assert value is not None, name
    return unquote(value.decode())


class Conn:
    """One connection the switch made: what the script sends, every byte fssim sent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.got = bytearray()
        self.eof = gevent.event.Event()

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the switch may have closed already
            self.sock.sendall(data)

    def frames(self) -> list[Frame]:
        return FrameParser().feed(bytes(self.got))

    def wait_frames(self, count: int) -> list[Frame]:
        """Read until fssim sent `count` whole frames (or closed)."""
        with gevent.Timeout(DEADLINE):
            while len(self.frames()) < count and self._read():
                pass
        return self.frames()

    def read_to_eof(self) -> None:
        with gevent.Timeout(DEADLINE):
            while self._read():
                pass
        self.eof.set()

    def _read(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        self.got += data
        return bool(data)


class Listener:
    """A scripted decision socket: each connection runs `script(conn)`, then is read to its
    end (fssim closes it)."""

    def __init__(self, script: Callable[[Conn], None]) -> None:
        self.script = script
        self.conns: gevent.queue.Queue[Conn] = gevent.queue.Queue()
        self.server = StreamServer(("127.0.0.1", 0), self._serve)
        self.server.start()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.server.server_port

    def next(self) -> Conn:
        """The next connection, once fssim has closed it."""
        conn = self.conns.get(timeout=DEADLINE)
        assert conn.eof.wait(DEADLINE), "fssim did not close the connection"
        return conn

    def _serve(self, sock: socket.socket, _address: tuple[str, int]) -> None:
        conn = Conn(sock)
        try:
            self.script(conn)
            conn.read_to_eof()
        finally:
            sock.close()
            conn.eof.set()
            self.conns.put(conn)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(port=0, heartbeat=0) as s:
        yield s


def asking(sim: Simulator, script: Callable[[Conn], None]) -> Listener:
    listener = Listener(script)
    sim.decision_socket = listener.address
    return listener


def names(sim: Simulator, uuid: str) -> set[str]:
    return {name for name, _seq in sim.call(uuid).events}


def wait_for(condition: Callable[[], bool], what: str) -> None:
    with gevent.Timeout(DEADLINE, AssertionError(f"no {what} within {DEADLINE}s")):
        while not condition():
            gevent.sleep(0.01)


# --- the captures and the channel's data template ---------------------------------------------

def test_outbound_captures_are_the_listed_bytes() -> None:
    sums = captured.checksums("outbound")
    assert sorted(sums) == sorted(f"{s}.raw.{d}" for s in captured.OUTBOUND_SESSIONS
                                  for d in ("in", "out"))
    for name, digest in sums.items():
        session, _, direction = name.rpartition(".raw.")
        assert captured.digest(captured.capture_bytes(session, direction)) == digest, name


def test_channel_data_template_reproduces_the_captured_frame_byte_for_byte() -> None:
    template = socket_data.TEMPLATE
    raw = data_frame_bytes(captured.capture_bytes("outbound_admit"))
    assert template.render_plain(template.captured_values) == raw
    assert template.header_names == tuple(n for n, _ in captured.CHANNEL_DATA[1])
    assert {"uuid", "core_uuid", "dest", "caller", "created_us", "dialplan_vars",
            "late_vars", "directory_vars", "socket_data"} <= template.slots


@pytest.mark.parametrize("session", captured.OUTBOUND_SESSIONS)
def test_the_template_rules_fit_every_captured_channel_data(session: str) -> None:
    """Compiled the same way from each session's own frame, the template gives it back."""
    raw = data_frame_bytes(captured.capture_bytes(session))
    headers = [(n, unquote(v.decode())) for n, v in FrameParser().feed(raw)[0].headers]
    template = compile_template(session, "test", headers, None, groups=socket_data.GROUPS,
                                value_slots=socket_data.VALUE_SLOTS, late_vars=False)
    assert template.render_plain(template.captured_values) == raw


# --- fssim driven by the captured listeners' bytes ----------------------------------------------

@pytest.mark.parametrize("session", captured.OUTBOUND_SESSIONS)
def test_fssim_answers_the_captured_listener_as_freeswitch_did(sim: Simulator,
                                                               session: str) -> None:
    real = captured.capture_bytes(session)
    sent = captured.capture_bytes(session, "out")
    assert sent.startswith(CONNECT)
    real_data = data_frame_bytes(real)
    real_uuid = text(real_frames(session)[0], "Unique-ID")
    destination = text(real_frames(session)[0], "variable_rater_destination")

    def script(conn: Conn) -> None:
        conn.send(CONNECT)
        [data] = conn.wait_frames(1)
        if session == "outbound_gone":  # as the recorder did: the channel killed first
            sim.api("uuid_kill", f"{text(data, 'Unique-ID')} NORMAL_CLEARING")
            conn.wait_frames(2)  # the disconnect notice, at once
        conn.send(sent[len(CONNECT):])

    listener = asking(sim, script)
    uuid = sim.place_call(ACCOUNT, destination, answer_after=0.05, duration=0.3,
                          park_timeout=DEADLINE)
    ours = bytes(listener.next().got)
    ours_data = data_frame_bytes(ours)
    # after the channel's data, the very bytes FreeSWITCH wrote (the uuid substituted):
    # the replies, the disconnect notice naming the channel
    assert ours[len(ours_data):] == real[len(real_data):].replace(real_uuid.encode(),
                                                                   uuid.encode())
    frames = [f.content_type for f in FrameParser().feed(ours)]
    assert frames == [f.content_type for f in real_frames(session)]
    check_channel_data(sim, FrameParser().feed(ours_data)[0], uuid, destination,
                       listener.address[1])

    call = sim.call(uuid)
    if session == "outbound_admit":
        call = sim.wait_for_hangup(uuid, DEADLINE)
        assert call.transfers == [(destination, "XML", "rated")] and call.socket_decided
        assert {k: call.late_vars[k] for k in ("rater_max_seconds", "rater_account",
                                               "execute_on_answer")} == {
            "rater_max_seconds": "600", "rater_account": ACCOUNT,
            "execute_on_answer": "sched_hangup +601 ALLOTTED_TIMEOUT"}
        assert call.executed_on_answer == ["sched_hangup +601 ALLOTTED_TIMEOUT"]
        assert call.answered and call.cause == "NORMAL_CLEARING"
        assert names(sim, uuid) == {"CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP",
                                    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"}
    elif session == "outbound_refuse":
        assert (call.state, call.cause, call.hangup_by) == (CallState.HUNGUP, "CALL_REJECTED",
                                                            "switch")
        assert call.socket_decided and not call.answered and not names(sim, uuid) & PARKING
    elif session == "outbound_release":
        wait_for(lambda: call.state is CallState.PARKED, "park")
        assert "CHANNEL_PARK" in names(sim, uuid) and not call.socket_decided
        assert [row["application"] for row in _channels(sim)] == ["park"]
        sim.hangup(uuid)
    else:
        assert (call.state, call.cause) == (CallState.HUNGUP, "NORMAL_CLEARING")
        assert not call.socket_decided and not names(sim, uuid) & PARKING
    wait_for(lambda: not sim.sockets.sessions, "the application's return")


def check_channel_data(sim: Simulator, frame: Frame, uuid: str, destination: str,
                       port: int) -> None:
    """The simulated leg's data has the captured frame's shape, with the leg's values."""
    real = real_frames("outbound_admit")[0]
    ours = [n for n, _ in frame.headers]
    theirs = [n for n, _ in real.headers]
    # every header but the variables, in the same order
    assert [n for n in ours if not n.startswith("variable_")] == [
        n for n in theirs if not n.startswith("variable_")]
    # the capture's own variables (not the caller's directory block, the dialplan's or the
    # later ones) in the same order too
    per_call = set().union(*(socket_data.GROUPS[k] for k in (
        "directory_vars", "dialplan_vars", "late_vars")))
    fixed = [n for n in theirs if n.startswith("variable_") and n not in per_call]
    assert [n for n in ours if n in fixed] == fixed
    assert ours[-5:] == ["variable_socket_host", "Content-Type", "Reply-Text", "Socket-Mode",
                         "Control"]
    assert frame.header("Reply-Text") == b"%2BOK%0A"
    values = {n: unquote(v.decode()) for n, v in frame.headers}
    assert values["Unique-ID"] == values["Channel-Unique-ID"] == uuid
    assert values["Core-UUID"] == sim.core_uuid
    assert values["Caller-Destination-Number"] == values["Channel-Destination-Number"] \
        == destination
    assert values["variable_rater_direction"] == "outbound"
    assert values["variable_accountcode"] == ACCOUNT
    assert values["variable_current_application"] == "socket"
    assert values["variable_current_application_data"] == f"127.0.0.1:{port}"
    assert values["Caller-Channel-Created-Time"] == str(sim.call(uuid).created_us)


def _channels(sim: Simulator) -> list[dict[str, str]]:
    reply = sim.api("show", "channels as json")
    return json.loads(reply).get("rows", [])


def test_the_daemons_outbound_connection_reads_fssim(sim: Simulator) -> None:
    """rater.esl.outbound against fssim: the channel's data read as a parked call's, then an
    admit for a call answered before it asked (the net scheduled at once, no ringing)."""
    seen = {}

    def script(conn: Conn) -> None:
        call = OutboundCall(conn.sock, DEADLINE)
        event = call.connect()
        seen["asked"] = parked_event("fs1", event)
        seen["core"] = event.core_uuid
        call.decide([commands.execute("multiset", commands.multiset_arg(
                         {"rater_max_seconds": "60", "rater_account": ACCOUNT})),
                     commands.execute("sched_hangup", "+1 ALLOTTED_TIMEOUT"),
                     commands.execute("transfer", "447700900123 XML rated")], "admit")

    asking(sim, script)
    uuid = sim.place_call(ACCOUNT, "447700900123", duration=30, answer_first=True,
                          variables={"rater_destination": "447700900123"})
    call = sim.wait_for_hangup(uuid, DEADLINE)
    asked = seen["asked"]
    assert (asked.account, asked.destination, asked.direction) == (
        ACCOUNT, "447700900123", "outbound")
    assert asked.created_usec == call.created_us and asked.answered_usec == call.answered_us
    assert seen["core"] == sim.core_uuid
    # the net (sched_hangup +1, from the second it ran) cut the call: it talked on meanwhile
    assert (call.cause, call.hangup_by) == ("ALLOTTED_TIMEOUT", "switch")
    assert call.transfers == [("447700900123", "XML", "rated")]
    assert not names(sim, uuid) & PARKING and call.socket_decided
    assert call.late_vars["rater_max_seconds"] == "60"


# --- waiting, giving up, falling back to park ---------------------------------------------------

def test_while_it_waits_on_the_socket_the_channel_shows_the_socket_application(
        sim: Simulator) -> None:
    listener = asking(sim, lambda conn: None)  # it reads, and never writes
    uuid = sim.place_call(ACCOUNT, "447700900123", park_timeout=DEADLINE)
    wait_for(lambda: bool(sim.sockets.sessions.get(uuid)
                          and sim.sockets.sessions[uuid].connected), "connection")
    [row] = _channels(sim)
    assert (row["uuid"], row["application"]) == (uuid, "socket")
    assert sim.hangup(uuid)  # the caller hangs up (CANCEL)
    assert sim.call(uuid).cause == "ORIGINATOR_CANCEL"
    # nothing was asked (no connect): only the notice, naming the channel
    got = bytes(listener.next().got)
    assert got.startswith(NOTICE) and f"Controlled-Session-UUID: {uuid}\n".encode() in got


@pytest.mark.parametrize("asks", [False, True])
def test_a_listener_that_never_decides_keeps_the_call_until_the_caller_gives_up(
        sim: Simulator, asks: bool) -> None:
    """No decision ever (with or without `connect` first): the channel waits, nothing else
    ends it but the caller's patience; then the notice, and no park."""
    def script(conn: Conn) -> None:
        if asks:
            conn.send(CONNECT)

    listener = asking(sim, script)
    uuid = sim.place_call(ACCOUNT, "447700900123", park_timeout=0.5)
    call = sim.wait_for_hangup(uuid, DEADLINE)
    assert (call.cause, call.hangup_by) == ("ORIGINATOR_CANCEL", "caller")
    assert not names(sim, uuid) & PARKING
    last = FrameParser().feed(bytes(listener.next().got))[-1]
    assert last.content_type == "text/disconnect-notice"
    assert last.header("Controlled-Session-UUID") == uuid.encode()


def test_no_first_command_in_time_ends_the_connection_and_the_call_parks(
        sim: Simulator) -> None:
    sim.sockets.first_command_timeout = 0.3  # FreeSWITCH: 25 s
    listener = asking(sim, lambda conn: None)
    uuid = sim.place_call(ACCOUNT, "447700900123", park_timeout=DEADLINE)
    assert bytes(listener.next().got).startswith(NOTICE)
    wait_for(lambda: sim.call(uuid).state is CallState.PARKED, "park")
    sim.hangup(uuid)


def test_a_refused_connect_parks_the_call_at_once(sim: Simulator) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        sim.decision_socket = closed.getsockname()  # bound, not listening: refused
        uuid = sim.place_call(ACCOUNT, "447700900123", park_timeout=DEADLINE)
        wait_for(lambda: sim.call(uuid).state is CallState.PARKED, "park")
    call = sim.call(uuid)
    assert call.get_var("socket_host") == "127.0.0.1"  # set before the connect, as FS does
    assert [row["application"] for row in _channels(sim)] == ["park"]
    assert call.asked_us == call.parked_us > 0
    sim.hangup(uuid)


@pytest.mark.parametrize("transferred", [False, True])
def test_end_of_file_without_exit_lets_the_dialplan_go_on(sim: Simulator,
                                                          transferred: bool) -> None:
    """The listener closes: a call transferred on it runs its new extension, any other
    parks."""
    def script(conn: Conn) -> None:
        conn.send(CONNECT)
        conn.wait_frames(1)
        if transferred:
            conn.send(commands.execute("transfer", "447700900123 XML rated"))
            conn.wait_frames(2)
        conn.sock.shutdown(socket.SHUT_WR)

    listener = asking(sim, script)
    uuid = sim.place_call(ACCOUNT, "447700900123", duration=0.2, answer_after=0.05,
                          park_timeout=DEADLINE)
    frames = [f.content_type for f in FrameParser().feed(bytes(listener.next().got))]
    assert frames[-1] == "text/disconnect-notice"
    if transferred:
        call = sim.wait_for_hangup(uuid, DEADLINE)
        assert call.answered and not names(sim, uuid) & PARKING
    else:
        wait_for(lambda: sim.call(uuid).state is CallState.PARKED, "park")
        sim.hangup(uuid)


# --- the commands of single-channel mode ---------------------------------------------------------

def test_commands_get_freeswitchs_single_channel_replies(sim: Simulator) -> None:
    other = sim.place_call("1000000009", "15557650000", park_timeout=DEADLINE)  # parks
    replies: list[str] = []

    def ask(conn: Conn, command: str) -> None:
        conn.send(command.encode() + b"\n\n")
        frames = conn.wait_frames(len(replies) + 2)  # the channel's data, then the replies
        replies.append(text(frames[len(replies) + 1], "Reply-Text"))

    def script(conn: Conn) -> None:
        conn.send(b"getvar rater_direction\n\n")  # the first command's reply is not written
        conn.send(CONNECT)
        assert conn.wait_frames(1)[0].header("Event-Name") == b"CHANNEL_DATA"
        for command in (
            "getvar rater_direction", "getvar no_such_variable", "api status",
            "event plain ALL", "linger", "filter Unique-ID abc", "myevents", "myevents",
            "divert_events on", "divert_events", "resume", "auth ClueCon",
            f"sendmsg {'0' * 8}-0000-0000-0000-{'0' * 12}\ncall-command: execute\n"
            "execute-app-name: hangup",
            "sendmsg\ncall-command: execute\nexecute-app-name: playback\n"
            "execute-app-arg: /tmp/x.wav",
            "sendmsg\ncall-command: execute\nexecute-app-name: multiset\n"
            "execute-app-arg: ^^|a=x y |b='p|q'|c=${rater_direction}|empty=",
            "getvar c",
            f"sendmsg {other}\ncall-command: execute\nexecute-app-name: set\n"
            "execute-app-arg: touched=yes",
            "exit",
        ):
            ask(conn, command)

    listener = asking(sim, script)
    uuid = sim.place_call(ACCOUNT, "447700900123", variables={"empty": "gone"},
                          park_timeout=DEADLINE)
    listener.next()
    assert replies == [
        "outbound", "-ERR command not found", "-ERR command not found",
        "-ERR command not found", "-ERR command not found",
        "+OK filter added. [Unique-ID]=[abc]", "+OK Events Enabled", "-ERR aready enabled.",
        "+OK events diverted", "-ERR missing value.", "+OK", "-ERR command not found",
        "-ERR invalid session id [00000000-0000-0000-0000-000000000000]", "+OK", "+OK",
        "outbound", "+OK", "+OK bye"]
    call = sim.call(uuid)
    assert (call.get_var("a"), call.get_var("b"), call.get_var("empty")) == ("x y", "p|q", None)
    assert call.get_var("socket_resume") == "true"
    assert sim.call(other).get_var("touched") == "yes"
    wait_for(lambda: call.state is CallState.PARKED, "park")  # released by `exit`
    assert call.state is CallState.PARKED and call.commands[0][1] == "sendmsg playback /tmp/x.wav"
    sim.hangup(uuid)
    sim.hangup(other)


@pytest.mark.parametrize(("message", "cause"), [
    ("call-command: execute\nexecute-app-name: no_such_application", "DESTINATION_OUT_OF_ORDER"),
    ("call-command: hangup\nhangup-cause: USER_BUSY", "USER_BUSY"),
    ("call-command: execute\nexecute-app-name: sched_hangup\nexecute-app-arg: +0 NO_ANSWER",
     "NO_ANSWER"),
])
def test_a_message_that_ends_the_channel_gets_its_reply_then_the_notice(
        sim: Simulator, message: str, cause: str) -> None:
    def script(conn: Conn) -> None:
        conn.send(CONNECT)
        conn.wait_frames(1)
        conn.send(f"sendmsg\n{message}\n\nexit\n\n".encode())

    listener = asking(sim, script)
    uuid = sim.place_call(ACCOUNT, "447700900123", park_timeout=DEADLINE)
    frames = FrameParser().feed(bytes(listener.next().got))
    assert [(f.content_type, f.header("Reply-Text")) for f in frames[1:]] == [
        ("command/reply", b"+OK"), ("text/disconnect-notice", None)]  # `exit` never read
    call = sim.wait_for_hangup(uuid, DEADLINE)
    assert (call.cause, call.hangup_by) == (cause, "switch")


def test_multiset_splits_as_switch_separate_string() -> None:
    assert split_on("a=1|b=x y |c='p|q'|d=\\|e|", "|", 256) == [
        "a=1", "b=x y", "c=p|q", "d=|e"]
    assert split_on("a|b|c", "|", 2) == ["a", "b|c"]
    assert split_on("|x", "|", 256) == ["", "x"]


# --- load and the command line -------------------------------------------------------------------

def test_the_load_generator_counts_calls_decided_on_the_socket(sim: Simulator) -> None:
    """A listener admits numbers ending in 1, refuses those ending in 2, lets the others go
    (they park, and nobody decides them: their callers give up)."""
    def script(conn: Conn) -> None:
        conn.send(CONNECT)
        [data] = conn.wait_frames(1)
        dest = text(data, "Caller-Destination-Number")
        if dest.endswith("1"):
            conn.send(commands.execute("transfer", f"{dest} XML rated") + commands.exit())
        elif dest.endswith("2"):
            conn.send(commands.execute("hangup", "CALL_REJECTED") + commands.exit())
        else:
            conn.send(commands.exit())

    asking(sim, script)
    gen = sim.run_load(50, count=12, destinations=("15550001", "15550002", "15550003"),
                       talk_seconds=(0.1, 0.2), answer_after=(0.01, 0.02), record=True)
    assert gen.join(DEADLINE)
    records = gen.records or []
    wanted = {end: sum(r.destination.endswith(end) for r in records) for end in "123"}
    c = gen.counters
    assert (c.placed, c.completed, c.answered, c.rejected, c.abandoned) == (
        12, 12, wanted["1"], wanted["2"], wanted["3"])
    assert (c.on_socket, c.parked) == (wanted["1"] + wanted["2"], wanted["3"])
    for r in records:
        assert r.parked_us > 0  # it asked
        if r.destination.endswith("1"):
            assert r.parked_us <= r.transferred_us <= r.answered_us


def test_the_command_line_points_calls_at_a_decision_socket() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--decision-socket", "127.0.0.1:8084"]).decision_socket == (
        "127.0.0.1", 8084)
    assert parser.parse_args([]).decision_socket is None
