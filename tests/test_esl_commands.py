"""Command builders give FreeSWITCH's exact bytes; no value can inject a command."""

from __future__ import annotations

import pytest

from rater.errors import CommandFailed, NoSuchChannel
from rater.esl import commands as c
from rater.esl.frames import FrameParser
from tests.esl_fake_server import capture_bytes

UUID = "95e969b6-20b8-4b2b-a000-77c0db2c882b"


def test_builders_match_what_the_captured_client_sent():
    sent = capture_bytes("esl_plain_full", "out")
    for command in (
        c.auth("ClueCon"),
        c.event("plain", ["ALL"]),
        c.api("status"),
        c.api(c.uuid_setvar(UUID, "rate_plan", "gold")),
        c.api(c.uuid_setvar_multi(UUID, {"rp_a": "1", "rp_b": "2"})),
        c.api(c.show_channels_json()),
        c.api(c.uuid_transfer(UUID, "15550009999", "default")),
        c.api(c.uuid_kill("00000000-0000-0000-0000-000000000000")),
        c.api(c.sched_hangup(2, UUID, "ALLOTTED_TIMEOUT")),
        c.api(c.uuid_kill("42565091-364d-4615-8cd2-302f8f381d6b", "USER_BUSY")),
        c.bgapi(c.uuid_kill("00000000-0000-0000-0000-000000000000")),
    ):
        assert command in sent, command
    subset = capture_bytes("esl_plain_subset", "out")
    assert c.event("plain", ["CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP",
                             "CHANNEL_HANGUP_COMPLETE", "CHANNEL_PARK", "BACKGROUND_JOB",
                             "HEARTBEAT"]) in subset
    assert c.noevents() in subset and subset.endswith(c.exit())
    assert c.event("json", ["ALL"]) in capture_bytes("esl_json_full", "out")


def test_exact_bytes():
    assert c.auth("pw") == b"auth pw\n\n"
    assert c.filter("Event-Name", "CHANNEL_PARK") == b"filter Event-Name CHANNEL_PARK\n\n"
    assert c.bgapi("status", "job-1") == b"bgapi status\nJob-UUID: job-1\n\n"
    assert c.event("plain", ["HEARTBEAT", "HEARTBEAT", "CUSTOM", "sofia::register"]) == (
        b"event plain HEARTBEAT CUSTOM sofia::register\n\n")
    assert c.sched_hangup(60, "u1") == "sched_hangup +60 u1"
    assert c.sched_del("u1") == "sched_del u1"
    assert c.uuid_setvar("u1", "rater_max", "") == "uuid_setvar u1 rater_max"  # unset
    assert c.uuid_setvar("u1", "execute_on_answer", "sched_hangup +60 ALLOTTED_TIMEOUT") == (
        "uuid_setvar u1 execute_on_answer sched_hangup +60 ALLOTTED_TIMEOUT")
    assert c.uuid_transfer("u1", "1234", "rated", dialplan="XML") == (
        "uuid_transfer u1 1234 XML rated")


@pytest.mark.parametrize(
    "build",
    [
        lambda: c.uuid_setvar_multi("u1", {"a": "1;uuid_kill=x"}),
        lambda: c.uuid_setvar_multi("u1", {"a": "1\n\napi uuid_kill u2"}),
        lambda: c.uuid_setvar_multi("u1", {"a;b": "1"}),
        lambda: c.uuid_setvar_multi("u1", {"a=b": "1"}),
        lambda: c.uuid_setvar_multi("u1", {"a": "it's"}),
        lambda: c.uuid_setvar_multi("u1", {"a": "back\\slash"}),
        lambda: c.uuid_setvar_multi("u1", {"a": " padded"}),
        lambda: c.uuid_setvar_multi("u1", {}),
        lambda: c.uuid_setvar_multi("u1", {f"v{i}": "1" for i in range(65)}),
        lambda: c.uuid_setvar("u1", "a", "x\r\nexit"),
        lambda: c.uuid_setvar("u1 u2", "a", "x"),
        lambda: c.uuid_kill("u1", "normal clearing"),
        lambda: c.uuid_kill("u1\n\nexit"),
        lambda: c.uuid_kill(""),
        lambda: c.uuid_transfer("u1", "12 34", "default"),
        lambda: c.sched_hangup(-1, "u1"),
        lambda: c.sched_hangup(True, "u1"),
        lambda: c.sched_hangup(1.5, "u1"),
        lambda: c.event("xml", ["ALL"]),
        lambda: c.event("plain", []),
        lambda: c.event("plain", ["CHANNEL_PARK\n\nexit"]),
        lambda: c.filter("Event Name", "x"),
        lambda: c.api("status\n\nexit"),
        lambda: c.bgapi("status", "job\nX: y"),
    ],
)
def test_injection_is_refused(build):
    with pytest.raises(ValueError):
        build()


def test_semicolons_and_spaces_where_allowed():
    line = c.uuid_setvar_multi("u1", {"rater_max": "120",
                                      "execute_on_answer": "sched_hangup +120 ALLOTTED_TIMEOUT"})
    assert line == ("uuid_setvar_multi u1 rater_max=120;"
                    "execute_on_answer=sched_hangup +120 ALLOTTED_TIMEOUT")


def test_password_never_in_error_messages():
    with pytest.raises(ValueError) as info:
        c.auth("top secret")
    assert "top secret" not in str(info.value)
    with pytest.raises(CommandFailed) as failed:
        c.check_reply("-ERR invalid", "auth hunter2")
    assert "hunter2" not in str(failed.value)


def test_reply_interpretation():
    assert c.check_reply("+OK\n", "uuid_kill u1") == "+OK\n"
    assert c.check_reply("true", "uuid_exists u1") == "true"
    assert c.check_reply('{"row_count": 0}\n', "show channels as json").startswith("{")
    with pytest.raises(NoSuchChannel, match=r"uuid_kill u1: -ERR No such channel!"):
        c.check_reply("-ERR No such channel!\n", "uuid_kill u1")
    with pytest.raises(CommandFailed, match=r"-USAGE: \[\+\]<time> <uuid> \[<cause>\]"):
        c.check_reply("-USAGE: [+]<time> <uuid> [<cause>]\n", "sched_hangup")
    with pytest.raises(CommandFailed, match="command not found"):
        c.check_reply("-ERR command not found", "bogus_esl_command")
    assert issubclass(NoSuchChannel, CommandFailed)


def test_answer_time_read_from_a_captured_uuid_dump():
    assert c.uuid_dump("95e969b6-20b8-4b2b-a000-77c0db2c882b") == (
        "uuid_dump 95e969b6-20b8-4b2b-a000-77c0db2c882b")
    assert b"api uuid_dump 95e969b6-20b8-4b2b-a000-77c0db2c882b\n\n" in capture_bytes(
        "esl_plain_full", "out")
    replies = [f for f in FrameParser().feed(capture_bytes("esl_plain_full"))
               if f.content_type == "api/response" and b"uuid_dump_function" in f.body]
    assert len(replies) == 1
    text = replies[0].body.decode()
    assert c.dump_header(text, "Caller-Channel-Answered-Time") == "1795454332870123"
    assert c.dump_header(text, "Caller-Orig-Caller-ID-Name") == "Alice"
    assert c.dump_header(text, "Caller-Caller-ID-Name") == "Outbound Call"  # URL-decoded
    assert c.dump_header(text, "No-Such-Header") is None
