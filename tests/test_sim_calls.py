"""Simulated calls: lifecycle, headers against the captures, billing, safety nets."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from fssim import CallState, Simulator, captured
from rater.esl.events import ChannelEvent
from rater.esl.names import Header, Var
from rater.esl.plain import PlainEvent
from tests.sim_client import SimClient

PASSWORD = "ClueCon"
LIFECYCLE = ("CHANNEL_CREATE", "CHANNEL_PARK", "CHANNEL_ANSWER", "CHANNEL_HANGUP",
             "CHANNEL_HANGUP_COMPLETE")
DEADLINE = 10.0  # generous: waits end as soon as the event arrives

# Every header name the daemon reads (rater/esl/names.py), variables included.
DAEMON_READS = {
    v for k, v in vars(Header).items() if k.isupper() and k not in ("VARIABLE_PREFIX",)
} | {Header.VARIABLE_PREFIX + v for k, v in vars(Var).items() if k.isupper()}
CALL_VARIABLES = {"variable_accountcode", "variable_rater_direction", "variable_rater_account",
                  "variable_rater_destination"}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(port=0, password=PASSWORD, heartbeat=0) as s:
        yield s


@pytest.fixture
def client(sim: Simulator) -> Iterator[SimClient]:
    c = SimClient(*sim.address, timeout=DEADLINE)
    c.login(PASSWORD)
    c.subscribe(*LIFECYCLE, "CHANNEL_UNPARK")
    yield c
    c.close()


def _captured_event(name: str, answered: bool) -> list[tuple[str, str]]:
    """The headers of the real sipp event of that type (answered or ringing call)."""
    key = name
    if name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"):
        key = f"{name}.{'answered' if answered else 'unanswered'}"
    return list(captured.EVENTS[key][1])


def _names(event: ChannelEvent) -> list[str]:
    assert isinstance(event, PlainEvent)
    return [name for name, _ in event.header_items()]


def test_full_lifecycle_matches_real_freeswitch(sim: Simulator, client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557651234", answer_after=0.05, duration=0.4,
                          variables={"rater_account": "1000000001"})
    create = client.next_event("CHANNEL_CREATE", uuid)
    park = client.next_event("CHANNEL_PARK", uuid)
    assert park.variable("rater_direction") == "outbound"
    assert park.variable("accountcode") == "1000000001"
    assert park.variable("rater_account") == "1000000001"
    assert park.answer_state == "ringing" and park.answered_time == 0
    assert park.destination_number == "15557651234"
    assert park.call_direction == "inbound"  # FreeSWITCH's channel direction, not ours
    assert client.api(f"uuid_setvar {uuid} rater_max_seconds 120") == "+OK\n"
    assert client.api(f"uuid_transfer {uuid} 15557651234 XML rated") == "+OK\n"
    unpark = client.next_event("CHANNEL_UNPARK", uuid)
    answer = client.next_event("CHANNEL_ANSWER", uuid)
    hangup = client.next_event("CHANNEL_HANGUP", uuid)
    complete = client.next_event("CHANNEL_HANGUP_COMPLETE", uuid)
    events = [create, park, unpark, answer, hangup, complete]
    assert [e.sequence for e in events] == sorted(e.sequence for e in events)
    assert len({e.core_uuid for e in events}) == 1 and create.core_uuid == sim.core_uuid

    call = sim.wait_for_hangup(uuid, DEADLINE)
    assert call.state is CallState.HUNGUP and call.cause == "NORMAL_CLEARING"
    assert answer.answered_time == call.answered_us == complete.answered_time
    assert complete.created_time == create.created_time == call.created_us
    assert complete.hangup_time == call.hangup_us
    assert complete.get("Caller-Context") == "rated"
    assert complete.get("Caller-RDNIS") == "15557651234"
    assert complete.variable("rater_max_seconds") == "120"
    assert [line for _t, line in call.commands] == [
        f"uuid_setvar {uuid} rater_max_seconds 120", f"uuid_transfer {uuid} 15557651234 XML rated"]
    assert [name for name, _seq in call.events] == [
        "CHANNEL_CREATE", "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_ANSWER", "CHANNEL_HANGUP",
        "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"]


def test_frames_carry_the_same_header_names_as_captured_ones(sim: Simulator,
                                                             client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557651234", answer_after=0.05, duration=0.2)
    ours = {name: client.next_event(name, uuid) for name in LIFECYCLE[:2]}
    client.api(f"uuid_transfer {uuid} 15557651234 XML rated")
    ours.update({name: client.next_event(name, uuid) for name in LIFECYCLE[2:]})
    answer_frame = next(f for f in client.frames if b"Event-Name: CHANNEL_ANSWER\n" in f.body)
    assert [k for k, _ in answer_frame.headers] == ["Content-Length", "Content-Type"]
    for name, event in ours.items():
        real = _captured_event(name, answered=True)
        real_names = [n for n, _ in real]
        names = _names(event)
        wanted = [n for n in real_names if n in DAEMON_READS and n not in CALL_VARIABLES]
        assert [n for n in names if n in wanted] == wanted, name  # same ones, same order
        assert names.count("Hangup-Cause") == real_names.count("Hangup-Cause"), name
        if name != "CHANNEL_CREATE":
            assert {"variable_accountcode", "variable_rater_direction"} <= set(names), name
        # everything else the real event has is there too (transfer headers are extra)
        extra = set(names) - set(real_names)
        assert extra <= {"Caller-Transfer-Source", "Caller-RDNIS", "variable_rater_direction",
                         "variable_transfer_history", "variable_transfer_source",
                         "variable_progress_stamp"}, (name, extra)


def test_billing_variables_follow_freeswitch(sim: Simulator, client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557650000", answer_after=0.05, duration=0.35)
    client.api(f"uuid_transfer {uuid} 15557650000 XML rated")
    complete = client.next_event("CHANNEL_HANGUP_COMPLETE", uuid)
    answered, hungup = complete.answered_time, complete.hangup_time
    created = complete.created_time
    assert answered and hungup and created
    # billsec is the difference of truncated epoch seconds, like switch_channel.c
    assert complete.billsec == hungup // 1_000_000 - answered // 1_000_000
    assert complete.billmsec == hungup // 1000 - answered // 1000
    assert complete.billusec == hungup - answered
    assert complete.variable("duration") == str(hungup // 1_000_000 - created // 1_000_000)
    assert complete.variable("answersec") == str(answered // 1_000_000 - created // 1_000_000)
    assert complete.variable("answerusec") == str(answered - created)
    assert complete.variable("flow_billusec") == str(hungup - created)
    assert complete.variable("uduration") == str(hungup - created)
    assert complete.variable("end_uepoch") == str(hungup)
    assert complete.variable("answer_uepoch") == str(answered)
    assert complete.variable("hangup_cause_q850") == "16"
    assert complete.variable("sip_hangup_disposition") == "recv_bye"  # the caller hung up
    call = sim.call(uuid)
    assert (call.billsec, call.billmsec, call.billusec) == (
        complete.billsec, complete.billmsec, complete.billusec)


def test_safety_net_execute_on_answer(sim: Simulator, client: SimClient) -> None:
    client.subscribe("ADD_SCHEDULE", "DEL_SCHEDULE")
    uuid = sim.place_call("1000000001", "15557650000", answer_after=0.02, duration=300)
    client.api(f"uuid_setvar {uuid} execute_on_answer sched_hangup +1 ALLOTTED_TIMEOUT")
    client.api(f"uuid_transfer {uuid} 15557650000 XML rated")
    answer = client.next_event("CHANNEL_ANSWER", uuid)
    added = client.next_event("ADD_SCHEDULE")
    complete = client.next_event("CHANNEL_HANGUP_COMPLETE", uuid)
    assert complete.hangup_cause == "ALLOTTED_TIMEOUT"
    assert complete.variable("sip_hangup_disposition") is None  # FreeSWITCH hung up
    assert client.next_event("DEL_SCHEDULE").get("Task-ID") == added.get("Task-ID")
    # the task's runtime is whole epoch seconds, as switch_ivr_schedule_hangup stores it
    assert added.get("Task-Group") == uuid
    assert added.get("Task-Runtime") == str(answer.answered_time // 1_000_000 + 1)
    assert sim.call(uuid).executed_on_answer == ["sched_hangup +1 ALLOTTED_TIMEOUT"]


@pytest.mark.parametrize(("uuid", "cause"), [
    # mod_dptools' sched_hangup takes its 2nd argument as the cause: a uuid there is parsed
    # by switch_channel_str2cause (leading digits as a number, else NONE)
    ("abcdef01-0000-4000-8000-000000000001", "NONE"),
    ("16abcdef-0000-4000-8000-000000000002", "NORMAL_CLEARING"),
])
def test_safety_net_with_a_uuid_argument_behaves_like_the_app(
        sim: Simulator, client: SimClient, uuid: str, cause: str) -> None:
    sim.place_call("1000000001", "15557650000", answer_after=0.02, duration=300, uuid=uuid)
    client.api(f"uuid_setvar {uuid} execute_on_answer sched_hangup +1 ${{uuid}} ALLOTTED_TIMEOUT")
    client.api(f"uuid_transfer {uuid} 15557650000 XML rated")
    assert client.next_event("CHANNEL_HANGUP_COMPLETE", uuid).hangup_cause == cause


def test_sched_hangup_adds_tasks_and_sched_del_removes_them(sim: Simulator,
                                                            client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557650000", answer_after=0.02, duration=300)
    client.api(f"uuid_transfer {uuid} 15557650000 XML rated")
    client.next_event("CHANNEL_ANSWER", uuid)
    assert client.api(f"sched_hangup +1 {uuid} USER_BUSY") == "+OK\n"
    assert client.api(f"sched_del {uuid}") == "+OK Deleted: 1\n"
    assert client.api(f"sched_hangup +300 {uuid} CALL_REJECTED") == "+OK\n"
    assert client.api(f"sched_hangup +1 {uuid}") == "+OK\n"  # default cause, does not replace
    assert len(sim.scheduler.pending(uuid)) == 2
    complete = client.next_event("CHANNEL_HANGUP_COMPLETE", uuid)
    # the deleted +1 USER_BUSY never fired; the later +1 did, with the default cause
    assert complete.hangup_cause == "ALLOTTED_TIMEOUT"
    assert sim.scheduler.pending(uuid) == []
    assert client.api(f"sched_hangup +1 {uuid}") == "-ERR No such channel!\n"


def test_sched_hangup_now(sim: Simulator, client: SimClient) -> None:
    uuid = sim.place_call(None, "15557650000", duration=300)
    assert client.api(f"sched_hangup +0 {uuid} CALL_REJECTED") == "+OK\n"
    assert client.next_event("CHANNEL_HANGUP_COMPLETE", uuid).hangup_cause == "CALL_REJECTED"


def test_uuid_kill(sim: Simulator, client: SimClient) -> None:
    parked = sim.place_call("1000000001", "15557650000", duration=300)
    assert client.api(f"uuid_kill {parked} CALL_REJECTED") == "+OK\n"
    complete = client.next_event("CHANNEL_HANGUP_COMPLETE", parked)
    assert complete.hangup_cause == "CALL_REJECTED" and complete.answered_time == 0
    assert complete.billsec == 0 and complete.billusec == 0
    assert client.api(f"uuid_kill {parked}") == "-ERR No such channel!\n"
    talking = sim.place_call("1000000001", "15557650000", answer_after=0.02, duration=300)
    client.api(f"uuid_transfer {talking} 15557650000 XML rated")
    client.next_event("CHANNEL_ANSWER", talking)
    assert client.api(f"uuid_kill {talking}") == "+OK\n"
    assert client.next_event("CHANNEL_HANGUP_COMPLETE", talking).hangup_cause == (
        "NORMAL_CLEARING")
    assert sim.call(talking).hangup_by == "switch"


def test_caller_gives_up_when_left_parked(sim: Simulator, client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557650000", duration=0.1)
    hangup = client.next_event("CHANNEL_HANGUP", uuid)
    unpark = client.next_event("CHANNEL_UNPARK", uuid)
    complete = client.next_event("CHANNEL_HANGUP_COMPLETE", uuid)
    assert hangup.hangup_cause == unpark.hangup_cause == complete.hangup_cause == (
        "ORIGINATOR_CANCEL")
    assert complete.answered_time == 0 and complete.billsec == 0
    assert complete.variable("sip_hangup_disposition") == "recv_cancel"
    assert complete.variable("answer_stamp") is None
    assert complete.variable("hangup_cause_q850") == "16"


def test_unanswered_after_transfer(sim: Simulator, client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557650000", duration=0.1, answer=False)
    client.api(f"uuid_transfer {uuid} 15557650000 XML rated")
    complete = client.next_event("CHANNEL_HANGUP_COMPLETE", uuid)
    assert complete.hangup_cause == "NO_ANSWER" and complete.answered_time == 0
    assert complete.variable("hangup_cause_q850") == "19"


def test_inbound_leg(sim: Simulator, client: SimClient) -> None:
    uuid = sim.place_call(None, "3225551234", direction="inbound", caller="33123456789",
                          duration=60)
    park = client.next_event("CHANNEL_PARK", uuid)
    assert park.variable("rater_direction") == "inbound"
    assert park.variable("accountcode") is None
    assert park.destination_number == "3225551234"
    assert park.caller_id_number == "33123456789"


def test_channel_variables_set_by_the_api_reach_later_events(sim: Simulator,
                                                             client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557650000", answer_after=0.02, duration=0.1)
    assert client.api(f"uuid_setvar_multi {uuid} rate_id=42;rate_price=0.10") == "+OK\n"
    assert client.api(f"uuid_setvar {uuid} accountcode 1000000009") == "+OK\n"
    assert client.api(f"uuid_getvar {uuid} rate_id") == "42"
    assert client.api(f"uuid_setvar {uuid} rate_price") == "+OK\n"  # unset
    client.api(f"uuid_transfer {uuid} 15557650000 XML rated")
    complete = client.next_event("CHANNEL_HANGUP_COMPLETE", uuid)
    assert complete.variable("rate_id") == "42"
    assert complete.variable("rate_price") is None
    assert complete.variable("accountcode") == "1000000009"
    names = _names(complete)
    # a (re)set variable moves to the bottom, after the dialplan's
    assert names.index("variable_accountcode") > names.index("variable_current_application")


def test_inline_transfer_sets_variables_then_transfers(sim: Simulator,
                                                     client: SimClient) -> None:
    """uuid_transfer to the inline dialplan, as seen on FreeSWITCH 1.10.12: the quoted
    argument keeps its spaces, `set` runs first, `transfer` takes the call on."""
    uuid = sim.place_call("1000000001", "15557650000", answer_after=0.02, duration=0.1)
    assert client.api(
        f"uuid_transfer {uuid} 'set:rate_id=42,set:execute_on_answer=sched_hangup +9 "
        f"ALLOTTED_TIMEOUT,transfer:15557650000 XML rated' inline") == "+OK\n"
    complete = client.next_event("CHANNEL_HANGUP_COMPLETE", uuid)
    assert complete.variable("rate_id") == "42"
    channel = sim.call(uuid)
    assert channel.transfers[-1] == ("15557650000", "XML", "rated")
    assert channel.transfers[0][1:] == ("inline", "default")
    assert channel.executed_on_answer == ["sched_hangup +9 ALLOTTED_TIMEOUT"]


def test_inline_transfer_that_only_parks_keeps_the_call_parked(sim: Simulator,
                                                              client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557650000", duration=60)
    assert client.api(f"uuid_transfer {uuid} 'set:a=1,park' inline") == "+OK\n"
    assert sim.call(uuid).state.value == "parked"
    assert sim.call(uuid).get_var("a") == "1"


def test_show_channels_as_json_has_the_captured_shape(sim: Simulator, client: SimClient) -> None:
    assert client.api("show channels as json") == '{"row_count": 0}\n'
    assert client.api("show channels") == "\n0 total.\n"
    real = next(t for _s, c, _ct, t, _j in captured.REPLIES
                if c == "api show channels as json")
    real_row = json.loads(real)["rows"][0]
    first = sim.place_call("1000000001", "15557650001", duration=60)
    second = sim.place_call("1000000002", "15557650002", duration=60)
    reply = client.api("show channels as json")
    data = json.loads(reply)
    assert list(data) == ["row_count", "rows"] and data["row_count"] == 2
    assert reply.startswith('{"row_count":2,"rows":[{"uuid":"') and not reply.endswith("\n")
    rows = {row["uuid"]: row for row in data["rows"]}
    assert set(rows) == {first, second}
    for row in rows.values():
        assert list(row) == list(real_row)
        assert all(isinstance(v, str) for v in row.values())
    assert rows[first]["accountcode"] == "1000000001"
    assert rows[first]["dest"] == "15557650001" and rows[first]["callstate"] == "RINGING"
    assert rows[first]["created_epoch"] == str(sim.call(first).created_us // 1_000_000)
    text = client.api("show channels")
    assert text.endswith("\n\n2 total.\n") and text.startswith("uuid,direction,created,")
    sim.hangup(first)
    assert json.loads(client.api("show channels as json"))["row_count"] == 1


def test_waiting_helpers(sim: Simulator) -> None:
    uuids = [sim.place_call(None, "15557650000", duration=0.05) for _ in range(3)]
    sim.wait_all_done(DEADLINE)
    assert all(sim.call(u).state is CallState.HUNGUP for u in uuids)
    assert sim.wait_for_hangup(uuids[0], 0).cause == "ORIGINATOR_CANCEL"
    waiting = sim.place_call(None, "15557650000", duration=300)
    with pytest.raises(TimeoutError):
        sim.wait_for_hangup(waiting, 0)
    with pytest.raises(TimeoutError):
        sim.wait_all_done(0)


def test_heartbeat(sim: Simulator) -> None:
    with Simulator(port=0, heartbeat=0.05) as beating:
        c = SimClient(*beating.address, timeout=DEADLINE)
        c.login(PASSWORD)
        c.subscribe("HEARTBEAT", fmt="json")
        first = c.next_event("HEARTBEAT")
        second = c.next_event("HEARTBEAT")
        assert second.sequence > first.sequence
        assert first.get("Event-Info") == "System Ready"
        assert first.get("FreeSWITCH-Version") == "1.10.12-release~64bit"
        c.close()
    c = SimClient(*sim.address, timeout=DEADLINE)
    c.login(PASSWORD)
    c.subscribe("HEARTBEAT")
    sim.heartbeat_now()
    assert c.next_event("HEARTBEAT").get("Session-Count") == "0"
    c.close()


def test_place_call_checks_its_arguments(sim: Simulator) -> None:
    with pytest.raises(ValueError):
        sim.place_call("1000000001")
    with pytest.raises(ValueError):
        sim.place_call("1000000001", "1555", direction="sideways")
    uuid = sim.place_call("1000000001", "1555", duration=60)
    with pytest.raises(ValueError):
        sim.place_call("1000000001", "1555", uuid=uuid)


def test_uuid_dump(sim: Simulator, client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557650000", duration=60)
    client.api(f"uuid_setvar {uuid} rate_plan gold")
    dump = client.api(f"uuid_dump {uuid}")
    assert dump.startswith("Event-Name: CHANNEL_DATA\n") and dump.endswith("\n\n")
    assert f"\nUnique-ID: {uuid}\n" in dump
    assert "\nvariable_rate_plan: gold\n" in dump
    assert client.api("uuid_dump 00000000-0000-0000-0000-000000000000") == (
        "-ERR No such channel!\n")


def test_json_and_plain_carry_the_same_values(sim: Simulator) -> None:
    plain = SimClient(*sim.address, timeout=DEADLINE)
    plain.login(PASSWORD)
    plain.subscribe("CHANNEL_HANGUP_COMPLETE")
    as_json = SimClient(*sim.address, timeout=DEADLINE)
    as_json.login(PASSWORD)
    as_json.subscribe("CHANNEL_HANGUP_COMPLETE", fmt="json")
    uuid = sim.place_call("1000000001", "15557650000", answer_after=0.02, duration=0.05,
                          caller="Anne \"O'Neil\" 1555")
    plain.api(f"uuid_transfer {uuid} 15557650000 XML rated")
    a = plain.next_event("CHANNEL_HANGUP_COMPLETE", uuid)
    b = as_json.next_event("CHANNEL_HANGUP_COMPLETE", uuid)
    assert a.headers == b.headers
    assert a.caller_id_number == "Anne \"O'Neil\" 1555"
    plain.close()
    as_json.close()


@pytest.mark.parametrize(("name", "value", "cause"), [
    ("execute_on_answer", "sched_hangup::+1 ALLOTTED_TIMEOUT", "ALLOTTED_TIMEOUT"),
    ("execute_on_answer_2", "sched_hangup:+1 USER_BUSY", "USER_BUSY"),
    # api_on_answer runs the API command, whose second argument is the uuid
    ("api_on_answer", "sched_hangup +1 ${uuid} USER_BUSY", "USER_BUSY"),
])
def test_on_answer_variants(sim: Simulator, client: SimClient, name: str, value: str,
                            cause: str) -> None:
    uuid = sim.place_call("1000000001", "15557650000", answer_after=0.02, duration=300,
                          variables={name: value})
    client.api(f"uuid_transfer {uuid} 15557650000 XML rated")
    assert client.next_event("CHANNEL_HANGUP_COMPLETE", uuid).hangup_cause == cause
