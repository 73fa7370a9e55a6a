"""The simulator's Event Socket protocol, over a real TCP socket, against the captures."""

from __future__ import annotations

import re
from collections.abc import Iterator

import gevent
import pytest
from gevent import socket

from fssim import Simulator, captured
from rater.esl.replies import ApiResponse, CommandReply
from tests.sim_client import SimClient

PASSWORD = "ClueCon"
GONE = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(port=0, password=PASSWORD, heartbeat=0) as s:
        yield s


@pytest.fixture
def client(sim: Simulator) -> Iterator[SimClient]:
    c = SimClient(*sim.address)
    assert c.login(PASSWORD).text == "+OK accepted"
    yield c
    c.close()


def _read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    data = b""
    with gevent.Timeout(timeout):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _capture_bytes(name: str) -> bytes:
    return captured.capture_bytes(name.removesuffix(".raw.in"))


def test_bad_password_is_byte_identical_to_freeswitch(sim: Simulator) -> None:
    sock = socket.create_connection(sim.address, timeout=5)
    sock.sendall(b"auth WrongPassword\n\n")
    assert _read_until_closed(sock) == _capture_bytes("esl_badauth.raw.in")


def test_auth_then_exit_frames_match_capture(sim: Simulator) -> None:
    sock = socket.create_connection(sim.address, timeout=5)
    sock.sendall(b"auth ClueCon\n\nexit\n\n")
    got = _read_until_closed(sock)
    real = _capture_bytes("esl_api_only.raw.in")
    head = (b"Content-Type: auth/request\n\n"
            b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
    tail = real[real.index(b"Content-Type: command/reply\nReply-Text: +OK bye"):]
    assert got == head + tail


def test_commands_before_auth_are_refused(sim: Simulator) -> None:
    c = SimClient(*sim.address)
    c.reply()  # auth/request
    assert c.command("api status").text == "-ERR command not found"
    assert c.command("event plain ALL").text == "-ERR command not found"
    assert c.command(f"auth {PASSWORD}").text == "+OK accepted"
    c.close()


def test_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATER_ESL_PASSWORD", "s3cret")
    with Simulator(port=0, heartbeat=0) as s:
        c = SimClient(*s.address)
        assert c.login("s3cret").ok
        c.close()
        assert all("s3cret" not in e.line for e in s.command_log)


def test_esl_command_replies(client: SimClient) -> None:
    assert client.command("bogus_esl_command").text == "-ERR command not found"
    assert client.command("event plain ALL").text == "+OK event listener enabled plain"
    assert client.command("event json CHANNEL_PARK").text == "+OK event listener enabled json"
    assert client.command("event plain NOT_AN_EVENT").text == "-ERR no keywords supplied"
    assert client.command("noevents").text == "+OK no longer listening for events"
    assert client.command("noevents").text == "-ERR not listening for events"
    assert client.command("filter Unique-ID abc").text == "+OK filter added. [Unique-ID]=[abc]"
    assert client.command("filter delete Unique-ID abc").text == (
        "+OK filter deleted. [Unique-ID][abc]")  # mod_event_socket.c, parse_command
    assert client.command("filter delete").text == "-ERR invalid syntax"
    assert client.command("filter Unique-ID").text == "-ERR invalid syntax"


def _uuid_map(sim: Simulator) -> dict[str, str]:
    """The live channels of esl_plain_full, played by simulated calls."""
    a = sim.place_call("1000000001", "15557654321", duration=60, answer_after=0.05)
    b = sim.place_call("1000000002", "15557650002", duration=60)
    c = sim.place_call("1000000003", "15557650003", duration=60)
    return {
        "95e969b6-20b8-4b2b-a000-77c0db2c882b": a,
        "d900d95d-eb6f-4c00-9c39-2b4006be30c8": b,
        "42565091-364d-4615-8cd2-302f8f381d6b": c,
        "dca9b88c-99b2-453b-9233-a81f3fb986e1": c,  # the other loopback leg, gone with it
    }


# Replies that depend on the machine or on calls the simulator does not originate.
_NOT_REPLAYED = ("api status", "bgapi originate", "api originate", "api uuid_dump",
                 "api show channels as json", "auth ")


def test_every_captured_reply_is_reproduced(sim: Simulator, client: SimClient) -> None:
    """Replay esl_plain_full's commands (live uuids mapped to simulated calls): each reply
    has the same Content-Type and the same text as real FreeSWITCH's."""
    uuids = _uuid_map(sim)
    replayed = 0
    for session, command, ctype, text, job in captured.REPLIES:
        if session != "esl_plain_full" or command.startswith(_NOT_REPLAYED):
            continue
        for real, ours in uuids.items():
            command = command.replace(real, ours)
        client.send(command)
        reply = client.reply()
        if ctype == "api/response":
            assert isinstance(reply, ApiResponse), command
            assert reply.body == text, command
        else:
            assert isinstance(reply, CommandReply), command
            if job:
                assert re.fullmatch(r"\+OK Job-UUID: [0-9a-f-]{36}", reply.text)
                assert reply.job_uuid == reply.text.split()[-1]
            else:
                assert reply.text == text, command
        replayed += 1
    assert replayed >= 22


def test_api_only_session_replies(sim: Simulator, client: SimClient) -> None:
    for session, command, _ctype, text, _job in captured.REPLIES:
        if session == "esl_api_only" and command.startswith("api ") and command != "api status":
            assert client.api(command[4:]) == text


STATUS = re.compile(
    r"UP \d+ years?, \d+ days?, \d+ hours?, \d+ minutes?, \d+ seconds?, \d+ milliseconds?, "
    r"\d+ microseconds?\n"
    r"FreeSWITCH \(Version 1\.10\.12-release  64bit\) is ready\n"
    r"\d+ session\(s\) since startup\n"
    r"\d+ session\(s\) - peak \d+, last 5min \d+ \n"
    r"\d+ session\(s\) per Sec out of max \d+, peak \d+, last 5min \d+ \n"
    r"\d+ session\(s\) max\n"
    r"min idle cpu [\d.]+/[\d.]+\n"
    r"Current Stack Size/Max 240K/8192K\n"
)


def test_status_reply_has_freeswitch_layout(sim: Simulator, client: SimClient) -> None:
    real = [t for _s, c, _ct, t, _j in captured.REPLIES if c == "api status"]
    assert real and all(STATUS.fullmatch(t) for t in real)
    sim.place_call(None, "15557650000", duration=60)
    status = client.api("status")
    assert STATUS.fullmatch(status)
    assert "\n1 session(s) - peak 1," in status


def test_usage_and_error_replies_from_source(sim: Simulator, client: SimClient) -> None:
    uuid = sim.place_call(None, "15557650000", duration=60)
    assert client.api("uuid_setvar") == "-USAGE: <uuid> <var> [value]\n"
    assert client.api("uuid_getvar") == "-USAGE: <uuid> <var> [index]\n"
    assert client.api(f"uuid_getvar {uuid} nothing_set") == "_undef_"
    assert client.api("uuid_transfer") == (
        "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n")
    assert client.api(f"uuid_setvar_multi {GONE} a=1") == (
        "-ERR No such channel!\n-USAGE: <uuid> <var>=<value>;<var>=<value>...\n")
    assert client.api(f"uuid_setvar_multi {uuid} =1;b=2") == "-ERR No variable specified\n+OK\n"
    assert client.api("sched_del") == "-ERR Invalid syntax\n"
    assert client.api(f"sched_del {uuid}") == "+OK Deleted: 0\n"
    assert client.api("uuid_setvar_multi") == "-ERR no reply\n"  # empty output
    assert client.api("hostname") == "vm"
    assert client.api("show nothing").startswith("-USAGE: ")


def test_subscription_delivers_only_the_events_asked_for(sim: Simulator,
                                                         client: SimClient) -> None:
    client.subscribe("CHANNEL_PARK")
    uuid = sim.place_call("1000000001", "15557650000", duration=60)
    first = client.next_event()
    assert (first.name, first.unique_id) == ("CHANNEL_PARK", uuid)  # CREATE went before PARK
    sim.hangup(uuid)
    assert client.api(f"uuid_exists {uuid}") == "false"
    assert client.drain_events() == []  # hangup events were queued before that reply


def test_event_names_are_case_insensitive_and_cumulative(sim: Simulator,
                                                         client: SimClient) -> None:
    client.subscribe("channel_create")
    client.subscribe("SWITCH_EVENT_CHANNEL_PARK")
    uuid = sim.place_call(None, "15557650000", duration=60)
    assert client.next_event().name == "CHANNEL_CREATE"
    assert client.next_event().name == "CHANNEL_PARK"
    assert client.command("nixevent CHANNEL_CREATE").text == "+OK events nixed"
    sim.hangup(uuid)
    client.api("version")
    assert client.drain_events() == []


def test_noevents_stops_delivery(sim: Simulator, client: SimClient) -> None:
    client.subscribe("ALL")
    client.command("noevents")
    sim.place_call(None, "15557650000", duration=60)
    client.api("version")
    assert client.drain_events() == []


def _received(client: SimClient) -> list:
    """Every event sent so far: a reply is queued after them on the same connection."""
    client.api("version")
    return client.drain_events()


def test_filters_select_events_by_header(sim: Simulator, client: SimClient) -> None:
    client.subscribe("CHANNEL_CREATE", "CHANNEL_PARK")
    first = sim.place_call("1000000001", "15557650001", duration=60)
    second = sim.place_call("1000000002", "15557650002", duration=60)
    assert len(_received(client)) == 4
    assert client.command(f"filter Unique-ID {second}").ok
    third = sim.place_call("1000000003", "15557650003", duration=60)
    sim.emit(second, "CHANNEL_PARK")
    assert [(e.name, e.unique_id) for e in _received(client)] == [("CHANNEL_PARK", second)]
    # a filter on a channel variable (a header of the dialplan's variable block)
    client.command("filter delete all")
    client.command("filter variable_rater_direction inbound")
    inbound = sim.place_call("1000000004", "3225550000", direction="inbound", duration=60)
    sim.emit(first, "CHANNEL_PARK")
    assert {e.unique_id for e in _received(client)} == {inbound}
    # a negative filter wins over a positive one
    client.command(f"filter Unique-ID -{inbound}")
    sim.emit(inbound, "CHANNEL_PARK")
    assert _received(client) == []
    assert third


def test_json_events(sim: Simulator, client: SimClient) -> None:
    assert client.subscribe("CHANNEL_PARK", fmt="json").text == "+OK event listener enabled json"
    uuid = sim.place_call("1000000001", "15557650000", duration=60,
                          variables={"rater_destination": "15557650000"})
    park = client.next_event("CHANNEL_PARK")
    assert client.frames[-1].content_type == "text/event-json"
    assert park.unique_id == uuid
    assert park.variable("accountcode") == "1000000001"
    assert park.variable("rater_direction") == "outbound"
    assert park.variable("rater_destination") == "15557650000"
    assert park.variable("DP_MATCH") == "ARRAY::15557650000|:15557650000"


def test_bgapi_result_goes_to_every_background_job_subscriber(sim: Simulator,
                                                              client: SimClient) -> None:
    other = SimClient(*sim.address)
    other.login(PASSWORD)
    other.subscribe("BACKGROUND_JOB", fmt="json")
    client.subscribe("BACKGROUND_JOB")
    reply = client.command(f"bgapi uuid_kill {GONE}")
    assert reply.text == f"+OK Job-UUID: {reply.job_uuid}"
    for c in (client, other):
        job = c.next_event("BACKGROUND_JOB")
        assert job.job_uuid == reply.job_uuid
        assert job.get("Job-Command") == "uuid_kill"
        assert job.get("Job-Command-Arg") == GONE
        assert job.body == dict((c_, b) for c_, _a, b in captured.BACKGROUND_JOBS)["uuid_kill"]
    other.close()


def test_bgapi_honours_a_job_uuid_header(sim: Simulator, client: SimClient) -> None:
    client.subscribe("BACKGROUND_JOB")
    client.sock.sendall(b"bgapi version\nJob-UUID: my-job-1\n\n")
    assert client.reply().text == "+OK Job-UUID: my-job-1"
    job = client.next_event("BACKGROUND_JOB")
    assert (job.job_uuid, job.body) == ("my-job-1", "FreeSWITCH Version 1.10.12-release~64bit "
                                                    "( 64bit)\n")
    assert job.get("Job-Command-Arg") is None


def test_api_reply_comes_before_the_events_the_command_caused(sim: Simulator,
                                                              client: SimClient) -> None:
    """FreeSWITCH runs `api` inline on the listener: its reply precedes the events."""
    client.subscribe("CHANNEL_HANGUP", "API")
    uuid = sim.place_call(None, "15557650000", duration=60)
    assert client.api(f"uuid_kill {uuid}") == "+OK\n"
    client.next_event("CHANNEL_HANGUP")
    types = [f.content_type for f in client.frames]
    reply_at = types.index("api/response")
    assert types[reply_at + 1:] == ["text/event-plain"] * (len(types) - reply_at - 1)
    assert [e.name for e in client.drain_events()] == ["API"]


def test_several_clients_at_once(sim: Simulator) -> None:
    clients = [SimClient(*sim.address) for _ in range(5)]
    for c in clients:
        c.login(PASSWORD)
        c.subscribe("CHANNEL_PARK")
    sim.wait_for_listener(["CHANNEL_PARK"])
    uuid = sim.place_call(None, "15557650000", duration=60)
    for c in clients:
        assert c.next_event("CHANNEL_PARK").unique_id == uuid
        c.close()


def test_exit_closes_with_the_goodbye_notice(sim: Simulator, client: SimClient) -> None:
    assert client.command("exit").text == "+OK bye"
    client.wait_closed()
    assert client.notice is not None
    assert client.notice.body == captured.DISCONNECT_GOODBYE
