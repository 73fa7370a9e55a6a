"""Hostile bytes against the Event Socket layer: property tests (hypothesis) of the framing,
the event decoding and the connection.

(a) arbitrary bytes, cut anywhere: FrameParser returns frames or raises FrameError, holds
    no more than its limits, and finds the same frames however the stream is cut;
(b) real captured frames, mutated (truncated, bytes flipped, Content-Length changed, header
    lines repeated, invalid UTF-8, broken %-escapes, deep JSON): parse_frame returns a
    message or raises MalformedFrame, and every typed accessor of a ChannelEvent returns
    its type or (integers, headers, body) raises MalformedFrame;
(c) gigantic frames (Content-Length 10^12, 5000 digits, a 50 MB header line) are refused
    with a clear error while only their head is held, truncated ones are never a frame;
(d) URL-encoded newlines in a value are decoded as that value: they never become a header,
    a frame, or a line of a command sent back;
(e) EslConnection, fed garbage mid-stream by the simulator over TCP, drops and reconnects
    (or skips the bad event) and its reader never raises.

Example counts are modest: the whole file runs in a few seconds.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import tracemalloc
import uuid as uuidlib
from collections.abc import Callable
from datetime import timedelta

import gevent
import pytest
from gevent.event import Event
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fssim import Simulator
from fssim.captured import sessions
from fssim.faults import MALFORMED
from fssim.serialize import encode_json_event, encode_plain_event, event_frame
from rater.backoff import Backoff
from rater.errors import FrameError, MalformedFrame
from rater.esl import commands
from rater.esl.connection import EslConnection, State
from rater.esl.events import ChannelEvent
from rater.esl.frames import MAX_HEADER_BYTES, Frame, FrameParser, build_frame
from rater.esl.jsonevent import JsonEvent
from rater.esl.link import RECV_SIZE, Link
from rater.esl.messages import parse_frame
from rater.esl.plain import PlainEvent
from tests.esl_fake_server import capture_frames

CAPTURES = sessions()
FRAMES = [f for name in CAPTURES for f in capture_frames(name)]
EVENT_FRAMES = [f for f in FRAMES if b"Content-Type: text/event-" in f[:80]]
PLAIN_BODIES = [f.partition(b"\n\n")[2] for f in EVENT_FRAMES if b"event-plain" in f[:80]]
JSON_BODIES = [f.partition(b"\n\n")[2] for f in EVENT_FRAMES if b"event-json" in f[:80]]

STRING_ACCESSORS = ("name", "subclass", "unique_id", "call_uuid", "core_uuid", "hangup_cause",
                    "destination_number", "caller_id_number", "call_direction",
                    "answer_state", "job_uuid", "ordering_key")
INT_ACCESSORS = ("sequence", "timestamp", "created_time", "answered_time", "hangup_time",
                 "billsec", "billmsec", "billusec")
VARIABLES = ("rater_direction", "rater_account", "rater_destination", "accountcode",
             "billsec", "billmsec", "uuid", "sip_from_user", "hangup_cause", "no_such_var")

# A generous deadline per example: the inputs are a few KB, so an example that takes seconds
# means the parser loops or goes quadratic (an endless loop ends at pytest's timeout).
FUZZ = settings(max_examples=150, deadline=timedelta(seconds=2),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- (a) arbitrary bytes, arbitrary chunking ----------------------------------------------

# Limits below the defaults, so that the bound on what the parser holds is reached by small
# examples (the header one above the 4400-digit token below).
MAX_HEADER, MAX_BODY = 8192, 4096

# Pieces that make the soup look like frames often enough to reach every branch.
TOKENS = (
    b"Content-Length: ", b"Content-Type: ", b"text/event-plain", b"text/event-json",
    b"api/response", b"command/reply", b"auth/request", b"Reply-Text: +OK", b"Event-Name: ",
    b"\n", b"\n\n", b"\n\n\n", b": ", b":", b"\r\n", b"0", b"7", b"12", b"-3", b"+4", b" 5",
    b"1_0", b"\xd9\xa1", b"99999999999999999999", b"9" * 4400, b"[" * 3000, b"{", b"\x00",
    b"\xff\xfe", b"%0A", b"%",
)
soup = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=24)),
                max_size=40).map(b"".join)
streams = st.one_of(st.binary(max_size=3000), soup)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _feed(parser: FrameParser, chunks: list[bytes]) -> tuple[list[Frame], FrameError | None]:
    """Feed every chunk; any exception but FrameError propagates (and fails the test)."""
    frames: list[Frame] = []
    for chunk in chunks:
        try:
            frames += parser.feed(chunk)
        except FrameError as exc:
            return frames + exc.frames, exc
        assert parser.buffered <= MAX_HEADER + MAX_BODY, "the parser holds more than its limits"
    return frames, None


def _check_frame(frame: Frame) -> None:
    assert frame.headers and all(name for name, _ in frame.headers)
    length = frame.header("Content-Length")
    assert len(frame.body) == (int(length) if length is not None else 0)


@FUZZ
@given(data=streams, cuts=st.lists(st.integers(0, 4000), max_size=12))
@example(data=b"Content-Type: x\nContent-Length: " + b"1" * 5000 + b"\n\n", cuts=[])
@example(data=b"Content-Type: api/response\nContent-Length: 5\nContent-Length: 0\n\nhello",
         cuts=[])
@example(data=b"Content-Length: 3\nContent-Type: text/event-plain\n\nabc\n\n\nX: y\n\n",
         cuts=[1, 40, 41, 52])
def test_a_any_bytes_any_chunking_frames_or_frame_error(data, cuts):
    chunked = FrameParser(MAX_HEADER, MAX_BODY)
    frames, error = _feed(chunked, _chunks(data, cuts))
    whole, whole_error = _feed(FrameParser(MAX_HEADER, MAX_BODY), [data])
    # however the bytes were cut, the same frames at the same offsets, and the same verdict
    assert frames == whole
    assert (error is None) == (whole_error is None)
    for frame in frames:
        _check_frame(frame)
    assert [f.offset for f in frames] == sorted({f.offset for f in frames})
    if error is not None:
        assert 0 <= error.offset <= len(data)
        assert f"{error.offset}" in str(error)  # the message says where
        with pytest.raises(FrameError, match="already failed"):
            chunked.feed(b"Content-Type: command/reply\nReply-Text: +OK\n\n")
    else:
        assert chunked.offset == len(data)  # every byte was taken: a frame or held


# --- (b) real frames, mutated --------------------------------------------------------------

def _exercise(event: ChannelEvent) -> None:
    """Read every typed property: strings never raise; integers, the header dict and the
    body may only raise MalformedFrame (as documented)."""
    for name in STRING_ACCESSORS:
        value = getattr(event, name)
        assert value is None or isinstance(value, str), name
    assert isinstance(event.name, str)
    for var in VARIABLES:
        value = event.variable(var)
        assert value is None or isinstance(value, str), var
    for name in INT_ACCESSORS:
        try:
            value = getattr(event, name)
        except MalformedFrame:
            continue
        assert value is None or type(value) is int, name
    repr(event)
    for read in (lambda: event.headers, lambda: event.body):
        with contextlib.suppress(MalformedFrame):
            read()
    if isinstance(event, PlainEvent):
        for read in (event.header_items, lambda: event.body_bytes):
            with contextlib.suppress(MalformedFrame):
                read()
    try:
        headers = event.headers
    except MalformedFrame:
        return
    for key in list(headers)[:40]:
        value = event.get(key)
        assert value is None or isinstance(value, str), key


def _parse_all(stream: bytes) -> int:
    """Frame `stream` and decode every frame the way the connection does; returns how many
    frames decoded to a message. Only FrameError / MalformedFrame may come out."""
    try:
        frames = FrameParser().feed(stream)
    except FrameError as exc:
        frames = exc.frames
    decoded = 0
    for frame in frames:
        try:
            message = parse_frame(frame)
        except MalformedFrame:
            continue
        decoded += 1
        if isinstance(message, ChannelEvent):
            _exercise(message)
    return decoded


BAD_UTF8 = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80", b"\x80\x80")
BAD_ESCAPES = (b"%", b"%G", b"%0", b"%%", b"%FF", b"%C3", b"%ED%A0%80", b"%00", b"%0A%0A",
               b"%u0041", b"%25", b"%0D")


@st.composite
def mutation(draw, data: bytes) -> bytes:
    """One mutation of `data` (a frame, or an event body)."""
    at = draw(st.integers(0, max(0, len(data))))
    kind = draw(st.sampled_from(("truncate", "flip", "length", "duplicate", "utf8", "escape",
                                 "insert", "deep", "number")))
    if kind == "truncate":
        return data[:at]
    if kind == "flip" and data:
        i = min(at, len(data) - 1)
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    if kind == "length":
        new = draw(st.one_of(st.integers(-5, len(data) + 50).map(lambda n: str(n).encode()),
                             st.sampled_from((b"", b"x", b"1e3", b"0x10", b"9" * 20,
                                              b"9" * 5000, b"\xd9\xa1\xd9\xa2", b" 5"))))
        matches = list(re.finditer(rb"Content-Length: ([^\n]*)", data))
        if not matches:
            return data
        m = matches[draw(st.integers(0, len(matches) - 1))]
        return data[:m.start(1)] + new + data[m.end(1):]
    if kind == "duplicate":
        lines = data.split(b"\n")
        line = lines[draw(st.integers(0, len(lines) - 1))]
        lines.insert(draw(st.integers(0, len(lines))), line)
        return b"\n".join(lines)
    if kind == "utf8":
        return data[:at] + draw(st.sampled_from(BAD_UTF8)) + data[at:]
    if kind == "escape":
        escapes = [m.start() for m in re.finditer(rb"%[0-9A-Fa-f]{2}", data)]
        bad = draw(st.sampled_from(BAD_ESCAPES))
        if escapes:  # break a real escape, else plant a broken one
            i = escapes[draw(st.integers(0, len(escapes) - 1))]
            return data[:i] + bad + data[i + 3:]
        return data[:at] + bad + data[at:]
    if kind == "insert":
        return data[:at] + draw(st.sampled_from((b"\n", b"\n\n", b": ", b"\r\n", b"\x00",
                                                 b"Content-Length: 5\n"))) + data[at:]
    if kind == "deep":  # nesting past the recursion limit, where a JSON value starts
        starts = [m.end() for m in re.finditer(rb'":', data)] or [at]
        i = starts[draw(st.integers(0, len(starts) - 1))]
        return data[:i] + draw(st.sampled_from((b"[" * 3000, b'{"a":' * 3000))) + data[i:]
    # kind == "number": a huge or odd number where a value starts
    starts = [m.end() for m in re.finditer(rb'(": |":)"?', data)] or [at]
    i = starts[draw(st.integers(0, len(starts) - 1))]
    return data[:i] + draw(st.sampled_from((b"9" * 5000, b"-0", b"1e999", b"NaN", b"\xd9\xa1",
                                            b"1_000"))) + data[i:]


@st.composite
def mutated(draw, pool: list[bytes]) -> bytes:
    data = draw(st.sampled_from(pool))
    for _ in range(draw(st.integers(1, 3))):
        data = draw(mutation(data))
    return data


def _as_event_frame(body: bytes, content_type: str) -> bytes:
    return build_frame([("Content-Length", str(len(body))), ("Content-Type", content_type)],
                       body)


@FUZZ
@given(stream=mutated(FRAMES))
def test_b_mutated_captured_frames_never_raise_past_the_parser(stream):
    _parse_all(stream)


@FUZZ
@given(body=mutated(PLAIN_BODIES))
@example(body=b"Event-Name: CHANNEL_PARK\nCaller-Channel-Created-Time: " + b"9" * 5000 + b"\n")
def test_b_mutated_plain_events_keep_their_framing_and_typed_accessors(body):
    assert _parse_all(_as_event_frame(body, "text/event-plain")) in (0, 1)


@FUZZ
@given(body=mutated(JSON_BODIES))
@example(body=b'{"Event-Name":"CHANNEL_PARK","x":' + b"[" * 3000 + b"}")
@example(body=b'{"Event-Name":"CHANNEL_PARK","Caller-Caller-ID-Number":"\xff\xfe"}')
def test_b_mutated_json_events_keep_their_framing_and_typed_accessors(body):
    assert _parse_all(_as_event_frame(body, "text/event-json")) in (0, 1)


def test_b_invalid_utf8_in_a_json_event_is_kept_as_replacement_characters():
    """cJSON copies a caller name's bytes as they are: one bad byte must not cost the whole
    event (a lost CHANNEL_PARK leaves the call parked, a lost HANGUP_COMPLETE unsettled)."""
    event = JsonEvent(b'{"Event-Name":"CHANNEL_PARK","Unique-ID":"u1",'
                      b'"Caller-Caller-ID-Number":"12\xff3","variable_rater_account":"7"}')
    assert (event.name, event.unique_id, event.variable("rater_account")) == (
        "CHANNEL_PARK", "u1", "7")
    assert event.caller_id_number == "12\ufffd3"


def test_b_deeply_nested_json_is_a_malformed_frame():
    with pytest.raises(MalformedFrame, match="byte offset 7"):
        JsonEvent(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", 7)


def test_b_invalid_utf8_escapes_in_plain_values_decode_to_replacement_characters():
    event = PlainEvent(b"Event-Name: CHANNEL_PARK\nvariable_rater_account: 1%FF2%C3\n"
                       b"Caller-Caller-ID-Number: %ED%A0%80\nvariable_x: 5%\n")
    assert event.variable("rater_account") == "1\ufffd2\ufffd"
    assert "\ufffd" in event.caller_id_number
    assert event.variable("x") == "5%"


# --- (c) gigantic and truncated frames -----------------------------------------------------

def _peak_allocation(work: Callable[[], object]) -> int:
    """Bytes allocated at the peak while `work` runs (what existed before is not counted)."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("head", [
    b"Content-Length: 1000000000000\nContent-Type: text/event-plain\n\n",
    b"Content-Type: api/response\nContent-Length: 1000000000000\n\n",
    b"Content-Type: api/response\nContent-Length: 999999999999999999999999999\n\n",
    b"Content-Type: api/response\nContent-Length: " + b"9" * 5000 + b"\n\n",
], ids=["event-1e12", "api-1e12", "27-digits", "5000-digits"])
def test_c_a_gigantic_content_length_is_refused_at_its_header(head):
    parser = FrameParser()

    def feed() -> None:
        with pytest.raises(FrameError, match=r"Content-Length .*exceeds the limit of "
                                              r"268435456 bytes at byte offset \d+"):
            parser.feed(head + b"x" * 100)

    assert _peak_allocation(feed) < 256 * 1024


@pytest.mark.parametrize("chunk", [RECV_SIZE, 1 << 30], ids=["recv-size", "one-chunk"])
def test_c_a_50_mb_header_line_is_refused_without_holding_it(chunk):
    line = b"variable_rater_destination: " + b"4" * (50 * 1024 * 1024)
    parser = FrameParser()
    fed = 0

    def feed() -> None:
        nonlocal fed
        with pytest.raises(FrameError, match=f"header block longer than {MAX_HEADER_BYTES} "
                                             "bytes without a blank line, at byte offset 0"):
            view = memoryview(line)  # slices without copies: only the parser allocates
            for start in range(0, len(line), chunk):
                fed += chunk
                parser.feed(line if chunk >= len(line) else view[start:start + chunk])

    peak = _peak_allocation(feed)
    assert fed <= MAX_HEADER_BYTES + chunk  # refused at the first chunk past the limit
    assert peak < MAX_HEADER_BYTES + 2 * RECV_SIZE  # never a copy of the 50 MB
    assert parser.buffered <= MAX_HEADER_BYTES + RECV_SIZE


def test_c_a_truncated_frame_is_never_a_frame_and_is_reported_at_eof():
    frame = event_frame([("Event-Name", "CHANNEL_HANGUP_COMPLETE"), ("Unique-ID", "u1"),
                         ("variable_billmsec", "3019")])
    for cut in range(1, len(frame)):
        parser = FrameParser()
        assert parser.feed(frame[:cut]) == []
        assert parser.buffered > 0  # what the connection reports as EOF mid-frame
        assert [parse_frame(f).billmsec for f in parser.feed(frame[cut:])] == [3019]


def test_c_an_event_body_shorter_than_its_own_content_length_is_malformed():
    event = PlainEvent(b"Event-Name: BACKGROUND_JOB\nContent-Length: 500\n\n+OK short")
    assert event.name == "BACKGROUND_JOB"
    with pytest.raises(MalformedFrame, match="shorter than its Content-Length 500"):
        event.body  # noqa: B018 - the property read is the test


# --- (d) URL-encoded newlines stay inside their value ------------------------------------------

SMUGGLER = b"123%0AContent-Length%3A%205%0A%0A"


def test_d_url_encoded_newlines_are_decoded_as_a_value_never_a_header_or_frame():
    body = (b"Event-Name: CHANNEL_PARK\nUnique-ID: u1\n"
            b"variable_rater_destination: " + SMUGGLER + b"\n"
            b"variable_rater_account: 2000000001\n\n")
    stream = _as_event_frame(body, "text/event-plain") + event_frame(
        [("Event-Name", "HEARTBEAT")])
    first, second = FrameParser().feed(stream)
    event = parse_frame(first)
    assert event.variable("rater_destination") == "123\nContent-Length: 5\n\n"
    assert event.variable("rater_account") == "2000000001"
    assert event.get("Content-Length") is None and event.body is None
    assert [k for k, _ in event.header_items()] == [
        "Event-Name", "Unique-ID", "variable_rater_destination", "variable_rater_account"]
    assert parse_frame(second).name == "HEARTBEAT"
    # and the decoded value cannot become a line of a command sent back to the switch
    with pytest.raises(ValueError):
        commands.uuid_transfer("u1", event.variable("rater_destination"), "rated")
    with pytest.raises(ValueError):
        commands.uuid_setvar("u1", "x", event.variable("rater_destination"))


def test_d_escapes_are_decoded_once():
    event = PlainEvent(b"Event-Name: CHANNEL_PARK\nvariable_rater_destination: 44%250A%2500\n")
    assert event.variable("rater_destination") == "44%0A%00"


# any text a switch can send: every character but lone surrogates (no UTF-8 encodes them)
hostile_text = st.text(st.one_of(st.sampled_from("\n\r\x00%: \t\x7f'\";,\\{}[]"),
                                 st.characters(blacklist_categories=("Cs",))), max_size=60)


@FUZZ
@given(value=hostile_text, fmt=st.sampled_from(("plain", "json")))
@example(value="123\nContent-Length: 5\n\n", fmt="plain")
@example(value="x\n\nEvent-Name: HEARTBEAT\n\n", fmt="json")
def test_d_any_value_round_trips_as_one_header(value, fmt):
    headers = [("Event-Name", "CHANNEL_PARK"), ("Unique-ID", "u1"),
               ("variable_rater_destination", value), ("variable_rater_account", "7")]
    stream = event_frame(headers, event_format=fmt) + event_frame(
        [("Event-Name", "HEARTBEAT")], event_format=fmt)
    first, second = FrameParser().feed(stream)
    event = parse_frame(first)
    assert event.variable("rater_destination") == value
    assert event.variable("rater_account") == "7"
    assert event.unique_id == "u1"
    assert sorted(event.headers) == sorted(k for k, _ in headers)
    assert parse_frame(second).name == "HEARTBEAT"
    if fmt == "plain":
        assert b"\n" not in encode_plain_event([("v", value)]).rstrip(b"\n")
    else:
        assert b"\n" not in encode_json_event([("v", value)])


# --- (e) the connection survives garbage mid-stream --------------------------------------------

PASSWORD = "ClueCon"
DEADLINE = 10.0

# Garbage beyond the simulator's catalogue: each once escaped a layer below the connection.
EXTRA_GARBAGE = {
    "deep-json": _as_event_frame(b'{"Event-Name":"CHANNEL_PARK","x":' + b"[" * 5000 + b"}",
                                 "text/event-json"),
    "5000-digit-length": b"Content-Type: api/response\nContent-Length: " + b"9" * 5000
                         + b"\n\n",
    "bad-utf8-json": _as_event_frame(b'{"Event-Name":"CHANNEL_PARK","Unique-ID":"\xff"}',
                                     "text/event-json"),
    "json-array": _as_event_frame(b'["Event-Name","CHANNEL_PARK"]', "text/event-json"),
    "nul-bytes": b"\x00" * 100 + b"\n\n",
    "bad-int": _as_event_frame(b"Event-Name: CHANNEL_PARK\nUnique-ID: u-bad\n"
                               b"Caller-Channel-Created-Time: " + b"9" * 5000 + b"\n\n",
                               "text/event-plain"),
}
# The stream cannot be re-synchronised after these: the connection must be re-made.
BREAKS_THE_STREAM = {"garbage", "no-colon", "bad-length", "negative-length", "huge-length",
                     "5000-digit-length", "nul-bytes"}


class WatchedConnection(EslConnection):
    """Records anything that escapes the reader greenlet of one of its links (while
    `watch_readers()` is on)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reader_errors: list[BaseException] = []


def watch_readers(patch: pytest.MonkeyPatch) -> None:
    """Make every Link's reader record what escapes it on its WatchedConnection."""
    read_loop = Link.read_loop

    def watched(link: Link) -> None:
        try:
            read_loop(link)
        except BaseException as exc:
            if isinstance(link.owner, WatchedConnection):
                link.owner.reader_errors.append(exc)
            raise

    patch.setattr(Link, "read_loop", watched)


class Parks:
    """The CHANNEL_PARKs delivered, by uuid."""

    def __init__(self) -> None:
        self.uuids: list[str | None] = []
        self.changed = Event()

    def __call__(self, event: ChannelEvent) -> None:
        self.uuids.append(event.unique_id)
        self.changed.set()


@pytest.fixture(scope="module")
def link():
    """A simulator and an EslConnection kept up by run() (quick backoff, no liveness)."""
    with pytest.MonkeyPatch.context() as patch:
        watch_readers(patch)
        sim = Simulator(password=PASSWORD, heartbeat=0).start()
        parks = Parks()
        connects: list[int] = []
        conn = WatchedConnection("127.0.0.1", sim.port, PASSWORD, name="fuzz",
                                 events=["CHANNEL_PARK"], on_event=parks,
                                 on_connected=lambda _c: connects.append(1),
                                 liveness_timeout=None, connect_timeout=2.0, command_timeout=2.0,
                                 backoff=Backoff(initial=0.01, maximum=0.05))
        runner = gevent.spawn(conn.run)
        assert conn.wait_ready(DEADLINE)
        yield sim, conn, parks, connects
        conn.stop()
        runner.join(timeout=DEADLINE)
        sim.close()


def _still_delivers(sim: Simulator, conn: WatchedConnection, parks: Parks) -> None:
    """Place calls until one's CHANNEL_PARK arrives (the garbage may swallow the first ones
    or cost a reconnect)."""
    with gevent.Timeout(DEADLINE, AssertionError("no CHANNEL_PARK came through in time")):
        while True:
            if conn.wait_ready(DEADLINE):
                sim.wait_for_listener(["CHANNEL_PARK"], timeout=DEADLINE)
            # hypothesis seeds `random` per example: the simulator's own uuids would repeat
            uuid = sim.place_call("2000000001", "447700900123", duration=0.5, park_timeout=0.5,
                                  uuid=str(uuidlib.uuid4()))
            parks.changed.clear()
            with gevent.Timeout(0.5, False):
                while uuid not in parks.uuids:
                    parks.changed.wait()
                    parks.changed.clear()
            if uuid in parks.uuids:
                return


def _reader_failures(conn: WatchedConnection, caplog) -> list[object]:
    """What escaped a reader, or what the reader's last-resort handler caught and logged."""
    logged = [r.getMessage() for r in caplog.records
              if r.name == "rater.esl.link" and "reading the stream failed" in r.message]
    return [*conn.reader_errors, *logged]


@pytest.mark.parametrize("kind", [*MALFORMED, "truncated", *EXTRA_GARBAGE])
def test_e_connection_survives_garbage_mid_stream(link, kind, caplog):
    sim, conn, parks, connects = link
    _still_delivers(sim, conn, parks)
    conn.reader_errors.clear()
    before = len(connects)
    with caplog.at_level(logging.INFO, logger="rater.esl.connection"):
        if kind in EXTRA_GARBAGE:
            sim.inject(EXTRA_GARBAGE[kind])
        else:
            sim.send_malformed(kind)
        _still_delivers(sim, conn, parks)
    assert _reader_failures(conn, caplog) == []
    assert conn.state is State.READY
    if kind in BREAKS_THE_STREAM:
        assert len(connects) > before, "the connection was not re-made"
        assert any("malformed stream" in r.message for r in caplog.records), \
            "the drop does not say why"
    elif kind in ("bad-event-body", "bad-json", "unknown-type", "deep-json", "bad-utf8-json",
                  "json-array", "bad-int"):
        assert len(connects) == before, "one bad event cost the whole connection"


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(garbage=st.one_of(streams, mutated(EVENT_FRAMES)))
def test_e_connection_survives_random_garbage(link, caplog, garbage):
    sim, conn, parks, _connects = link
    _still_delivers(sim, conn, parks)
    conn.reader_errors.clear()
    caplog.clear()
    sim.inject(garbage)
    _still_delivers(sim, conn, parks)
    assert _reader_failures(conn, caplog) == []
