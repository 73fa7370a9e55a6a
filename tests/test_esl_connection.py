"""EslConnection against a scripted server on a real TCP socket.

One `test_gap_*` per greenswitch gap of DESIGN §8: each would fail (or hang) with stock
greenswitch. Every wait has a deadline; no test sleeps to let something happen.
"""

from __future__ import annotations

import logging

import gevent
import pytest
from gevent.event import Event
from gevent.queue import Queue

from fssim.serialize import event_frame
from rater.backoff import Backoff
from rater.clock import FixedClock
from rater.errors import (
    AuthenticationFailed,
    CommandFailed,
    NoSuchChannel,
    ReplyTimeout,
    SwitchUnavailable,
)
from rater.esl import commands
from rater.esl.connection import EslConnection, State
from rater.esl.dispatch import KeyedDispatcher
from rater.esl.events import ChannelEvent
from rater.esl.frames import FrameParser
from rater.esl.messages import parse_frame
from rater.esl.replies import CommandReply
from tests.esl_fake_server import (
    WAIT,
    FakeSwitch,
    api_frame,
    capture_frames,
    reply_frame,
)

PASSWORD = "s3cret-Pw"
PARK_SUB = "event plain CHANNEL_PARK HEARTBEAT"


@pytest.fixture
def switch():
    fake = FakeSwitch().start()
    yield fake
    fake.stop()


def make(switch: FakeSwitch, **kwargs) -> EslConnection:
    kwargs.setdefault("connect_timeout", 2.0)
    kwargs.setdefault("command_timeout", 2.0)
    kwargs.setdefault("backoff", Backoff(initial=0.01, maximum=0.05))
    return EslConnection("127.0.0.1", switch.port, PASSWORD, **kwargs)


def connect(switch: FakeSwitch, subscription: str | None = PARK_SUB, **kwargs):
    """A READY connection and the server side of it."""
    kwargs.setdefault("events", ["CHANNEL_PARK"])
    conn = make(switch, **kwargs)
    attempt = gevent.spawn(conn.connect)
    session = switch.next_session()
    session.handshake(PASSWORD, subscription)
    attempt.get(timeout=WAIT)
    assert conn.state is State.READY
    return conn, session


def finish(conn: EslConnection, session) -> None:
    """Stop the client the way FreeSWITCH sees it: `exit`, `+OK bye`, close."""
    stopper = gevent.spawn(conn.stop, WAIT)
    if conn.state is State.READY:
        assert session.read_command() == "exit"
        session.send(reply_frame("+OK bye"))
    stopper.get(timeout=WAIT)
    session.close()


def park(uuid: str, seq: int) -> bytes:
    return event_frame([("Event-Name", "CHANNEL_PARK"), ("Unique-ID", uuid),
                        ("Event-Sequence", str(seq))])


class Collector(list):
    """Collects what it is called with; `wait(n)` blocks until it holds n items."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = Event()

    def __call__(self, item) -> None:
        self.append(item)
        self._changed.set()

    def wait(self, n: int, timeout: float = WAIT) -> None:
        with gevent.Timeout(timeout, AssertionError(f"{len(self)} of {n} items in time")):
            while len(self) < n:
                self._changed.clear()
                self._changed.wait()


def dropped(conn: EslConnection) -> None:
    """Wait until `conn` has lost its connection (a reply in flight fails at once)."""
    if conn.state is State.READY:
        with pytest.raises(SwitchUnavailable):
            conn.api_async("status", timeout=WAIT).result()
    assert conn.state is State.DISCONNECTED


def event_frames(capture: str) -> list[bytes]:
    return [f for f in capture_frames(capture) if b"Content-Type: text/event-" in f[:80]]


# --- one test per greenswitch gap -----------------------------------------------------------

def test_gap_a_connect_and_commands_have_deadlines(switch):
    # Stock: connect() waits forever for auth/request, send() forever for its reply.
    conn = make(switch, events=["CHANNEL_PARK"])
    attempt = gevent.spawn(conn.connect, 0.2)
    silent = switch.next_session()  # accepts, never greets
    with pytest.raises(ReplyTimeout):
        attempt.get(timeout=WAIT)
    assert conn.state is State.DISCONNECTED
    silent.close()

    conn, session = connect(switch)
    pending = conn.api_async("status", timeout=0.2)
    assert session.read_command() == "api status"  # ... and never answered
    with pytest.raises(ReplyTimeout):
        pending.result()
    assert conn.state is State.DISCONNECTED  # a late reply would answer the wrong request


def test_gap_a_drop_fails_every_pending_reply_at_once(switch):
    conn, session = connect(switch)
    pending = [conn.api_async(f"uuid_exists u{i}", timeout=30) for i in range(3)]
    for i in range(3):
        assert session.read_command() == f"api uuid_exists u{i}"
    session.close()
    for p in pending:  # 30 s deadlines, yet all fail as soon as the socket drops
        with gevent.Timeout(WAIT), pytest.raises(SwitchUnavailable):
            p.result()


def test_gap_b_run_reconnects_resubscribes_and_reconciles(switch):
    # Stock: no reconnect at all.
    reconciled: Queue = Queue()

    def on_connected(conn: EslConnection) -> None:
        reconciled.put(conn.api(commands.show_channels_json()))

    conn = make(switch, events=["CHANNEL_PARK"], on_connected=on_connected)
    runner = gevent.spawn(conn.run)
    for n in (1, 2):
        session = switch.next_session()
        session.handshake(PASSWORD, PARK_SUB)  # re-authenticated and re-subscribed
        assert session.read_command() == "api show channels as json"
        session.send(api_frame(f'{{"row_count": {n}}}'))
        assert reconciled.get(timeout=WAIT) == f'{{"row_count": {n}}}'
        session.close()  # FreeSWITCH restarts
    session = switch.next_session()  # and run() comes back a third time
    session.handshake(PASSWORD, PARK_SUB)
    assert session.read_command() == "api show channels as json"
    session.send(api_frame("{}"))
    reconciled.get(timeout=WAIT)
    finish(conn, session)
    runner.get(timeout=WAIT)  # run() returns after stop(), raising nothing
    assert switch.accepted == 3


def test_gap_c_event_bodies_are_framed_by_content_length(switch):
    # Stock: the body of a BACKGROUND_JOB is folded into its last header, and a body
    # that does not end in a blank line swallows the next frame's headers.
    got = Collector()
    conn, session = connect(switch, events=["ALL"], subscription="event plain ALL",
                            on_event=got)
    frames = event_frames("esl_plain_full")
    session.send(b"".join(frames))
    got.wait(len(frames))
    jobs = [e for e in got if e.name == "BACKGROUND_JOB"]
    assert [j.body for j in jobs] == [
        "+OK 95e969b6-20b8-4b2b-a000-77c0db2c882b\n",
        "-ERR No such channel!\n",
        "-ERR NORMAL_CLEARING\n",
        "-ERR NO_ROUTE_DESTINATION\n",
        "+OK d900d95d-eb6f-4c00-9c39-2b4006be30c8\n",
        "-ERR USER_BUSY\n",
    ]
    assert jobs[1].job_uuid == "c387925f-a962-4ef5-ba29-a8ab52487df1"
    assert jobs[1].get("Content-Length") == "22"
    after = got[got.index(jobs[1]) + 1]  # the frame right after a body is intact
    assert (after.name, after.sequence) == ("CODEC", 532)
    # delivered in arrival order (FreeSWITCH's own sequence numbers are not always)
    expected = [parse_frame(f) for f in FrameParser().feed(b"".join(frames))]
    assert [e.sequence for e in got] == [e.sequence for e in expected]
    finish(conn, session)


def test_gap_d_json_events(switch):
    # Stock: `event json` replies parse to garbage headers (no Event-Name).
    names = ["CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
             "CHANNEL_PARK", "BACKGROUND_JOB"]
    got = Collector()
    conn, session = connect(switch, events=names, event_format="json",
                            subscription="event json " + " ".join([*names, "HEARTBEAT"]),
                            on_event=got)
    session.send(b"".join(event_frames("esl_json_subset")))
    got.wait(11)
    by_name = {e.name: e for e in reversed(got)}
    assert by_name["BACKGROUND_JOB"].body == "+OK 9217999f-c0ff-4efd-8014-569abbd4cde9\n"
    done = by_name["CHANNEL_HANGUP_COMPLETE"]
    assert done.hangup_cause == "CALL_REJECTED"
    assert done.unique_id == "9217999f-c0ff-4efd-8014-569abbd4cde9"
    assert done.variable("accountcode") == "acct-sub"
    assert isinstance(done.sequence, int)
    finish(conn, session)


def test_gap_e_eof_mid_frame_ends_the_connection(switch):
    # Stock: _read_socket() loops on empty reads forever, burning the CPU.
    conn, session = connect(switch)
    reader = conn._link.reader  # internal: to show the reader greenlet really ended
    pending = conn.api_async("status", timeout=30)
    assert session.read_command() == "api status"
    session.send(b"Content-Type: api/response\nContent-Length: 100\n\nonly 15 bytes..")
    session.close()
    with pytest.raises(SwitchUnavailable, match="EOF in the middle of a frame"):
        pending.result()
    reader.join(timeout=WAIT)
    assert reader.dead
    assert conn.state is State.DISCONNECTED


def test_gap_f_frames_received_before_an_abrupt_drop_are_all_handled(switch):
    # Stock: events queued for the handler greenlet are dropped when the socket dies.
    gate = Event()
    handled: list[tuple[str, int]] = []

    def slow_handler(event: ChannelEvent) -> None:
        gate.wait(timeout=WAIT)
        handled.append((event.unique_id, event.sequence))

    dispatcher = KeyedDispatcher(slow_handler, ChannelEvent.ordering_key.fget)
    received = Collector()

    def on_event(event: ChannelEvent) -> None:
        received(event)
        dispatcher.submit(event)

    conn, session = connect(switch, on_event=on_event)
    frames = [park(f"u{i % 3}", i) for i in range(30)]
    session.send(b"".join(frames))
    received.wait(30)  # read and queued, none handled yet
    assert handled == []
    session.reset()
    dropped(conn)
    gate.set()
    assert dispatcher.join(WAIT)
    assert sorted(handled, key=lambda h: h[1]) == [(f"u{i % 3}", i) for i in range(30)]
    for key in ("u0", "u1", "u2"):  # and each channel's events in order
        seqs = [s for k, s in handled if k == key]
        assert seqs == sorted(seqs)


def test_gap_g_one_channel_in_order_channels_concurrently(switch):
    # Stock: every handler runs in one greenlet; a slow call stalls all the others.
    gate = Event()
    log_ = Collector()

    def on_park(event: ChannelEvent) -> None:
        if (event.unique_id, event.sequence) == ("A", 1):
            gate.wait(timeout=WAIT)
        log_((event.unique_id, event.sequence))

    conn, session = connect(switch)  # no on_event: greenswitch-style handlers
    conn.register_handle("CHANNEL_PARK", on_park)
    session.send(park("A", 1) + park("B", 1) + park("A", 2) + park("B", 2))
    log_.wait(2)  # B went ahead while A's first event is stuck
    assert log_ == [("B", 1), ("B", 2)]
    gate.set()
    log_.wait(4)
    assert log_[2:] == [("A", 1), ("A", 2)]
    finish(conn, session)


def test_gap_h_silence_means_dead_so_run_reconnects(switch):
    # Stock: a silent (half-dead) connection is waited on forever.
    conn = make(switch, events=["CHANNEL_PARK"], liveness_timeout=0.2)
    runner = gevent.spawn(conn.run)
    first = switch.next_session()
    first.handshake(PASSWORD, PARK_SUB)  # HEARTBEAT subscribed for liveness
    # ... then nothing: no HEARTBEAT, no frame at all.
    first.wait_closed()  # the client gave up on it
    second = switch.next_session()
    second.handshake(PASSWORD, PARK_SUB)
    assert conn.wait_ready(WAIT)
    conn.stop(timeout=0.1)  # may race the next silence drop: either way it stops
    runner.get(timeout=WAIT)
    first.close()
    second.close()


# --- more behaviour -------------------------------------------------------------------------

def test_heartbeat_counts_as_life_and_is_not_delivered_unless_asked(switch):
    got = Collector()
    conn, session = connect(switch, on_event=got, liveness_timeout=30)
    before = conn.last_frame_at
    heartbeat = event_frame([("Event-Name", "HEARTBEAT"), ("Event-Sequence", "1")])
    session.send(heartbeat + park("A", 2))
    got.wait(1)
    assert [e.name for e in got] == ["CHANNEL_PARK"]
    assert conn.last_frame_at >= before
    finish(conn, session)


def test_command_connection_subscribes_to_heartbeat_only(switch):
    conn, session = connect(switch, events=(), subscription="event plain HEARTBEAT")
    pending = [conn.api_async(c) for c in ("status", "version", "global_getvar hostname")]
    assert [session.read_command() for _ in pending] == [
        "api status", "api version", "api global_getvar hostname"]
    session.send(api_frame("UP") + api_frame("1.10.12") + api_frame("vm"))
    assert [p.result() for p in pending] == ["UP", "1.10.12", "vm"]  # matched in order
    finish(conn, session)


def test_api_errors_become_typed_exceptions(switch):
    conn, session = connect(switch, events=(), liveness_timeout=None, subscription=None)
    replies = [f for f in capture_frames("esl_plain_full") if b"api/response" in f[:40]]
    no_channel = next(f for f in replies if b"No such channel" in f)
    usage = next(f for f in replies if b"-USAGE" in f)
    for command, frame, error in (("uuid_kill x", no_channel, NoSuchChannel),
                                  ("sched_hangup", usage, CommandFailed)):
        pending = conn.api_async(command)
        session.read_command()
        session.send(frame)
        with pytest.raises(error, match=command.split()[0]):
            pending.result()
    assert conn.state is State.READY  # an -ERR is an answer, not a broken connection
    finish(conn, session)


def test_bgapi_sends_our_job_uuid(switch):
    conn, session = connect(switch, events=(), liveness_timeout=None, subscription=None)
    job = gevent.spawn(conn.bgapi, "uuid_kill abc", "11111111-2222-3333-4444-555555555555")
    assert session.read_command() == (
        "bgapi uuid_kill abc\nJob-UUID: 11111111-2222-3333-4444-555555555555")
    session.send(reply_frame("+OK Job-UUID: 11111111-2222-3333-4444-555555555555",
                             **{"Job-UUID": "11111111-2222-3333-4444-555555555555"}))
    assert job.get(timeout=WAIT) == "11111111-2222-3333-4444-555555555555"
    finish(conn, session)


def test_subscription_and_filters_are_exactly_what_was_asked(switch):
    conn = make(switch, events=["CHANNEL_PARK", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE"],
                filters=[("Event-Name", "CHANNEL_PARK")])
    attempt = gevent.spawn(conn.connect)
    session = switch.next_session()
    session.handshake(PASSWORD, "event plain CHANNEL_PARK CHANNEL_ANSWER "
                                "CHANNEL_HANGUP_COMPLETE HEARTBEAT")
    assert session.read_command() == "filter Event-Name CHANNEL_PARK"
    session.send(reply_frame("+OK filter added. [Event-Name]=[CHANNEL_PARK]"))
    # a filter lets through only what matches one: HEARTBEAT (liveness) is added to them
    assert session.read_command() == "filter Event-Name HEARTBEAT"
    session.send(reply_frame("+OK filter added. [Event-Name]=[HEARTBEAT]"))
    attempt.get(timeout=WAIT)
    assert conn.state is State.READY
    finish(conn, session)


def test_bad_password_fails_without_leaking_it(switch, caplog):
    caplog.set_level(logging.DEBUG)
    conn = make(switch, events=["CHANNEL_PARK"])
    attempt = gevent.spawn(conn.connect)
    session = switch.next_session()
    session.send(capture_frames("esl_badauth")[0])  # auth/request
    assert session.read_command() == f"auth {PASSWORD}"
    session.send(b"".join(capture_frames("esl_badauth")[1:]))  # -ERR invalid + notice
    session.close()
    with pytest.raises(AuthenticationFailed) as info:
        attempt.get(timeout=WAIT)
    assert "-ERR invalid" in str(info.value)
    for text in (str(info.value), repr(conn), caplog.text):
        assert PASSWORD not in text
    assert "auth ********" in caplog.text


def test_rude_rejection_is_an_authentication_failure(switch):
    conn = make(switch, events=["CHANNEL_PARK"])
    attempt = gevent.spawn(conn.connect)
    session = switch.next_session()
    session.send(b"Content-Type: text/rude-rejection\nContent-Length: 24\n\n"
                 b"Access Denied, go away.\n")
    session.close()
    with pytest.raises(AuthenticationFailed, match="Access Denied"):
        attempt.get(timeout=WAIT)


def test_garbage_after_good_frames_delivers_them_then_drops(switch):
    got = Collector()
    conn, session = connect(switch, on_event=got)
    pending = conn.api_async("status", timeout=WAIT)
    session.send(park("A", 1) + park("B", 2) + b"this is not a header\n\n")
    with pytest.raises(SwitchUnavailable, match=r"malformed stream.*byte offset"):
        pending.result()
    assert [(e.unique_id, e.sequence) for e in got] == [("A", 1), ("B", 2)]
    assert conn.state is State.DISCONNECTED


def test_unrequested_reply_drops_the_connection(switch):
    conn, session = connect(switch)
    session.send(reply_frame("+OK surprise"))
    session.wait_closed()  # the client hung up: it cannot tell what that answered
    assert conn.state is State.DISCONNECTED
    with pytest.raises(SwitchUnavailable):
        conn.api("status")


def test_refused_connection_is_switch_unavailable(switch):
    port = switch.port
    switch.stop()
    conn = EslConnection("127.0.0.1", port, PASSWORD, connect_timeout=1)
    with pytest.raises(SwitchUnavailable):
        conn.connect()


def test_stop_says_exit_and_ends_run(switch):
    conn = make(switch, events=["CHANNEL_PARK"])
    runner = gevent.spawn(conn.run)
    session = switch.next_session()
    session.handshake(PASSWORD, PARK_SUB)
    assert conn.wait_ready(WAIT)
    stopper = gevent.spawn(conn.stop, 2.0)
    assert session.read_command() == "exit"
    session.send(reply_frame("+OK bye"))
    stopper.get(timeout=WAIT)
    runner.get(timeout=WAIT)
    assert conn.state is State.STOPPED
    with pytest.raises(SwitchUnavailable):
        conn.connect()


def test_send_keeps_greenswitch_signature_with_a_deadline(switch):
    conn, session = connect(switch, command_timeout=0.2)
    sender = gevent.spawn(conn.send, "noevents")
    assert session.read_command() == "noevents"
    session.send(reply_frame("+OK no longer listening for events"))
    reply = sender.get(timeout=WAIT)
    assert isinstance(reply, CommandReply) and reply.ok


# --- backoff, without sleeping -----------------------------------------------------------

def test_backoff_grows_caps_and_jitters():
    backoff = Backoff(initial=0.5, maximum=4.0, factor=2.0, jitter=0.2, random=lambda: 0.5)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    low = Backoff(initial=1.0, maximum=30.0, jitter=0.2, random=lambda: 0.0)
    high = Backoff(initial=1.0, maximum=30.0, jitter=0.2, random=lambda: 1.0)
    assert low.next_delay() == pytest.approx(0.8)
    assert high.next_delay() == pytest.approx(1.2)


def test_backoff_starts_over_only_after_a_stable_connection():
    clock = FixedClock()
    backoff = Backoff(initial=1.0, maximum=60, jitter=0, stable_after=30, clock=clock)
    assert [backoff.next_delay() for _ in range(3)] == [1.0, 2.0, 4.0]
    backoff.connected()
    clock.advance(5)  # flapping: dropped again after 5 s
    assert backoff.next_delay() == 8.0
    backoff.connected()
    clock.advance(30)  # stayed up long enough
    assert backoff.next_delay() == 1.0
