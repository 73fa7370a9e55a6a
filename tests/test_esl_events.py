"""Frames -> typed messages, on every captured frame and on hand-made edge cases."""

from __future__ import annotations

import pytest

from fssim.captured import capture_bytes, sessions
from fssim.serialize import encode_json_event, encode_plain_event, event_frame, url_encode
from rater.errors import MalformedFrame
from rater.esl.events import ChannelEvent
from rater.esl.frames import Frame, FrameParser
from rater.esl.jsonevent import JsonEvent
from rater.esl.messages import parse_frame
from rater.esl.names import Header
from rater.esl.plain import PlainEvent
from rater.esl.replies import (
    ApiResponse,
    AuthRequest,
    CommandReply,
    DisconnectNotice,
    OtherFrame,
    RudeRejection,
)

CAPTURES = sessions()
ACCESSORS = {  # typed accessor -> header it reads
    "unique_id": Header.UNIQUE_ID, "call_uuid": Header.CHANNEL_CALL_UUID,
    "core_uuid": Header.CORE_UUID, "hangup_cause": Header.HANGUP_CAUSE,
    "destination_number": Header.DESTINATION_NUMBER,
    "caller_id_number": Header.CALLER_ID_NUMBER, "call_direction": Header.CALL_DIRECTION,
    "answer_state": Header.ANSWER_STATE, "job_uuid": Header.JOB_UUID,
}
INT_ACCESSORS = {
    "sequence": Header.EVENT_SEQUENCE, "timestamp": Header.EVENT_DATE_TIMESTAMP,
    "created_time": Header.CREATED_TIME, "answered_time": Header.ANSWERED_TIME,
    "hangup_time": Header.HANGUP_TIME, "billsec": "variable_billsec",
    "billmsec": "variable_billmsec", "billusec": "variable_billusec",
}


def messages(capture: str) -> list[tuple[Frame, object]]:
    return [(f, parse_frame(f)) for f in FrameParser().feed(capture_bytes(capture))]


def events(capture: str, name: str | None = None) -> list[ChannelEvent]:
    out = [m for _, m in messages(capture) if isinstance(m, ChannelEvent)]
    return out if name is None else [e for e in out if e.name == name]


@pytest.fixture(scope="module", params=CAPTURES)
def capture(request):
    return request.param, messages(request.param)


def test_every_frame_becomes_a_typed_message(capture):
    _, parsed = capture
    kinds = {
        "auth/request": AuthRequest, "command/reply": CommandReply,
        "api/response": ApiResponse, "text/disconnect-notice": DisconnectNotice,
        "text/event-plain": PlainEvent, "text/event-json": JsonEvent,
    }
    for frame, message in parsed:
        assert isinstance(message, kinds[frame.content_type])


def test_accessors_agree_with_a_full_parse(capture):
    """The fast lookups give what splitting every line (first wins) gives."""
    _, parsed = capture
    for _, event in parsed:
        if not isinstance(event, ChannelEvent):
            continue
        headers = event.headers
        assert event.name == headers[Header.EVENT_NAME]
        for accessor, header in ACCESSORS.items():
            assert getattr(event, accessor) == headers.get(header), (event, accessor)
        for accessor, header in INT_ACCESSORS.items():
            raw = headers.get(header)
            assert getattr(event, accessor) == (None if raw is None else int(raw))
        for name in ("accountcode", "rating_dest", "DP_MATCH", "rater_direction"):
            assert event.variable(name) == headers.get(f"variable_{name}")
        for name in list(headers)[::7]:  # any header, fast path or not
            assert event.get(name) == headers[name]


def test_plain_events_re_encode_byte_for_byte(capture):
    """Decoding then FreeSWITCH-style encoding gives back the wire bytes: the decoding
    is exact, and the simulator's encoder writes what FreeSWITCH writes."""
    _, parsed = capture
    for frame, event in parsed:
        if isinstance(event, PlainEvent):
            assert encode_plain_event(event.header_items(), event.body_bytes or b"") == frame.body


def test_sipp_answered_and_cancelled_calls():
    for capture in ("esl_sipp_plain", "esl_sipp_json"):
        answered, cancelled = events(capture, "CHANNEL_HANGUP_COMPLETE")
        assert (answered.billsec, answered.billmsec, answered.billusec) == (3, 3019, 3018867)
        assert answered.hangup_cause == "NORMAL_CLEARING"
        assert answered.hangup_time - answered.answered_time == answered.billusec
        assert answered.variable("accountcode") == "15551239999"
        assert answered.variable("rating_dest") == "15557659999"
        assert answered.destination_number == "15557659999"
        assert answered.caller_id_number == "15551239999"
        assert answered.call_direction == "inbound"
        assert cancelled.hangup_cause == "ORIGINATOR_CANCEL"
        assert (cancelled.billsec, cancelled.answered_time) == (0, 0)
        assert cancelled.created_time > 0


def test_killed_call_reports_allotted_timeout():
    (done,) = events("esl_sipp_killed_plain", "CHANNEL_HANGUP_COMPLETE")
    assert done.hangup_cause == "ALLOTTED_TIMEOUT"
    assert done.billmsec >= 1000


def test_duplicated_hangup_cause_first_wins_plain_and_json():
    plain = events("esl_plain_subset", "CHANNEL_HANGUP_COMPLETE")[0]
    assert [v for k, v in plain.header_items() if k == "Hangup-Cause"] == ["CALL_REJECTED"] * 2
    assert plain.hangup_cause == "CALL_REJECTED"
    assert events("esl_json_subset", "CHANNEL_HANGUP_COMPLETE")[0].hangup_cause == "CALL_REJECTED"
    twice = [("Event-Name", "CHANNEL_HANGUP_COMPLETE"), ("Hangup-Cause", "FIRST"),
             ("Unique-ID", "u"), ("Hangup-Cause", "SECOND")]
    for fmt in ("plain", "json"):
        (frame,) = FrameParser().feed(event_frame(twice, event_format=fmt))
        event = parse_frame(frame)
        assert event.hangup_cause == "FIRST"
        assert event.headers["Hangup-Cause"] == "FIRST"


def test_background_job_bodies():
    plain = events("esl_plain_full", "BACKGROUND_JOB")
    json_ = events("esl_json_full", "BACKGROUND_JOB")
    expected = ["+OK", "-ERR No such channel!", "-ERR NORMAL_CLEARING",
                "-ERR NO_ROUTE_DESTINATION", "+OK", "-ERR USER_BUSY"]
    for jobs in (plain, json_):
        assert [j.body.split(" ")[0] if j.body.startswith("+OK") else j.body.strip()
                for j in jobs] == expected
        assert all(j.body.endswith("\n") for j in jobs)
    error = plain[1]
    assert error.body == "-ERR No such channel!\n"
    assert error.get("Job-Command") == "uuid_kill"
    assert error.job_uuid == "c387925f-a962-4ef5-ba29-a8ab52487df1"
    assert error.ordering_key == error.job_uuid
    assert json_[1].body == "-ERR No such channel!\n"  # the JSON `_body`
    assert "_body" not in json_[1].headers


def test_a_body_never_leaks_into_headers():
    dump = "Event-Name: CHANNEL_DATA\nUnique-ID: from-the-body\nvariable_billsec: 99\n\n"
    frame = event_frame([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", "j1")], dump)
    event = parse_frame(FrameParser().feed(frame)[0])
    assert event.body == dump
    assert event.unique_id is None
    assert event.billsec is None
    assert event.get("Unique-ID") is None
    assert event.variable("billsec") is None
    assert event.headers == {"Event-Name": "BACKGROUND_JOB", "Job-UUID": "j1",
                             "Content-Length": str(len(dump))}


def test_plain_values_are_url_decoded_after_splitting():
    (event,) = events("esl_sipp_plain", "CHANNEL_ANSWER")
    assert event.get("Channel-Name") == "sofia/internal/15551239999@127.0.0.1:5070"
    assert event.get("Event-Date-GMT").endswith(" GMT")
    assert event.variable("DP_MATCH") == "ARRAY::15557659999|:15557659999"


def test_json_arrays_read_like_plain_arrays():
    plain = events("esl_sipp_plain", "CHANNEL_HANGUP_COMPLETE")[0]
    json_ = events("esl_sipp_json", "CHANNEL_HANGUP_COMPLETE")[0]
    assert json_.variable("DP_MATCH") == plain.variable("DP_MATCH")
    assert set(json_.headers) == set(plain.headers)  # same names either way


def test_shutdown_notice_and_replies():
    parsed = [m for _, m in messages("esl_shutdown_plain")]
    assert parsed[-1] == DisconnectNotice("The system is being shut down.\n", linger=False)
    assert events("esl_shutdown_plain")[0].name == "SHUTDOWN"
    replies = [m for _, m in messages("esl_plain_full") if isinstance(m, CommandReply)]
    assert replies[0] == CommandReply("+OK accepted")
    assert replies[2].job_uuid == "00549450-8733-47e3-8c2e-2beea7f214c5"
    assert not next(r for r in replies if r.text.startswith("-ERR")).ok
    apis = [m for _, m in messages("esl_api_only") if isinstance(m, ApiResponse)]
    assert apis[4] == ApiResponse("vm")


def test_other_content_types():
    frame = FrameParser().feed(b"Content-Type: log/data\nContent-Length: 2\n\nhi")[0]
    assert parse_frame(frame) == OtherFrame(frame)
    rude = FrameParser().feed(b"Content-Type: text/rude-rejection\nContent-Length: 3\n\nno\n")[0]
    assert parse_frame(rude) == RudeRejection("no\n")
    linger = FrameParser().feed(b"Content-Type: text/disconnect-notice\n"
                                b"Content-Disposition: linger\n\n")[0]
    assert parse_frame(linger).linger


def test_malformed_events():
    def plain(body: bytes) -> PlainEvent:
        return PlainEvent(body, offset=123)

    with pytest.raises(MalformedFrame, match="byte offset 123"):
        plain(b"")
    with pytest.raises(MalformedFrame, match="line 1"):
        plain(b"not a header\n\n")
    with pytest.raises(MalformedFrame, match="Event-Sequence is not an integer"):
        _ = plain(b"Event-Name: X\nEvent-Sequence: abc\n\n").sequence
    with pytest.raises(MalformedFrame, match="line 2"):
        _ = plain(b"Event-Name: X\nbroken line\n\n").headers
    with pytest.raises(MalformedFrame, match="shorter than its Content-Length"):
        _ = plain(b"Event-Name: X\nContent-Length: 50\n\nshort").body
    with pytest.raises(MalformedFrame, match=r"bad JSON event .* byte offset 9"):
        JsonEvent(b'{"Event-Name": ', offset=9)
    with pytest.raises(MalformedFrame, match="not an object"):
        JsonEvent(b"[1, 2]")


def test_serialisers_round_trip():
    headers = [("Event-Name", "CHANNEL_PARK"), ("Unique-ID", "u-1"),
               ("Caller-Destination-Number", "+1 (555) 010"), ("variable_x", "a;b=c&d%")]
    for fmt in ("plain", "json"):
        (frame,) = FrameParser().feed(event_frame(headers, "body\n", event_format=fmt))
        event = parse_frame(frame)
        assert event.destination_number == "+1 (555) 010"
        assert event.variable("x") == "a;b=c&d%"
        assert event.body == "body\n"
    assert url_encode("a b:c") == "a%20b%3Ac"
    assert encode_json_event([("A", "1"), ("A", "2")]) == b'{"A":"1","A":"2"}'
