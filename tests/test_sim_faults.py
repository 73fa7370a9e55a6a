"""Fault injection: what the daemon's own tests will throw at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fssim import Simulator, captured
from fssim.faults import MALFORMED
from rater.errors import MalformedFrame
from tests.sim_client import SimClient

PASSWORD = "ClueCon"
DEADLINE = 10.0


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(port=0, password=PASSWORD, heartbeat=0) as s:
        yield s


def _client(sim: Simulator, *events: str, fmt: str = "plain") -> SimClient:
    c = SimClient(*sim.address, timeout=DEADLINE)
    c.login(PASSWORD)
    if events:
        c.subscribe(*events, fmt=fmt)
    return c


@pytest.fixture
def client(sim: Simulator) -> Iterator[SimClient]:
    c = _client(sim, "ALL")
    yield c
    c.close()


def test_drop_connections_abruptly_keeps_calls_and_accepts_reconnects(
        sim: Simulator, client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557650000", duration=300)
    client.next_event("CHANNEL_PARK", uuid)
    assert sim.drop_connections() == 1
    client.wait_closed()
    assert client.notice is None  # no disconnect notice: the socket just went away
    again = _client(sim)
    assert again.api(f"uuid_exists {uuid}") == "true"
    again.close()


def test_drop_mid_frame_leaves_half_a_frame(sim: Simulator, client: SimClient) -> None:
    sim.drop_connections(mid_frame=True)
    client.wait_closed()
    assert client.parser.buffered > 0  # the stream ended inside a frame
    assert client.error is None


def test_drop_with_reset(sim: Simulator, client: SimClient) -> None:
    sim.drop_connections(reset=True)
    client.wait_closed()
    assert client.notice is None


def test_stall_holds_every_frame_until_resumed(sim: Simulator, client: SimClient) -> None:
    sim.stall(300)
    uuid = sim.place_call("1000000001", "15557650000", duration=300)
    client.send(f"api uuid_exists {uuid}")
    conn = sim.server.connections[0]
    assert conn._out and not client.events  # queued, not sent
    sim.resume()
    assert client.next_event("CHANNEL_PARK", uuid)
    assert client.reply().body == "true"


def test_stall_ends_by_itself(sim: Simulator, client: SimClient) -> None:
    sim.stall(0.05)
    uuid = sim.place_call("1000000001", "15557650000", duration=300)
    assert client.next_event("CHANNEL_PARK", uuid).unique_id == uuid


@pytest.mark.parametrize("kind", ["garbage", "no-colon", "bad-length", "negative-length",
                                  "huge-length"])
def test_malformed_frames_break_the_parser(sim: Simulator, client: SimClient, kind: str) -> None:
    client.api("version")
    sim.send_malformed(kind)
    with pytest.raises((EOFError, TimeoutError)):
        client.api("version", timeout=DEADLINE)
    assert isinstance(client.error, MalformedFrame)
    assert client.raw.endswith(MALFORMED[kind]) or MALFORMED[kind] in bytes(client.raw)


@pytest.mark.parametrize("kind", ["bad-event-body", "bad-json", "unknown-type"])
def test_malformed_payloads_in_well_formed_frames(sim: Simulator, client: SimClient,
                                                  kind: str) -> None:
    """The framing is sound, the payload is not: what the event layer must cope with."""
    sim.send_malformed(kind)
    _head, _, payload = MALFORMED[kind].partition(b"\n\n")
    client.wait_until(lambda: any(f.body == payload for f in client.frames) or client.eof.is_set(),
                      "the malformed frame")
    assert any(f.body == payload for f in client.frames) or isinstance(client.error,
                                                                       MalformedFrame)


def test_short_body_swallows_the_next_frame(sim: Simulator, client: SimClient) -> None:
    sim.send_malformed("short-body")
    _head, _, body = MALFORMED["short-body"].partition(b"\n\n")
    sim.inject(b"x" * (200 - len(body)))  # what the announced length still needs
    assert client.api("version") == "FreeSWITCH Version 1.10.12-release~64bit ( 64bit)\n"


def test_truncated_frame_then_stream_goes_on(sim: Simulator) -> None:
    client = _client(sim)  # no events: only the reply follows the cut frame
    sim.send_malformed("truncated")
    client.send("api version")
    client.wait_until(lambda: b"Content-Type: api/response" in client.raw, "the api reply bytes")
    assert not client.replies  # swallowed as the body of the truncated event
    assert client.parser.buffered > 0
    client.close()


def test_inject_raw_bytes_in_order(sim: Simulator, client: SimClient) -> None:
    sim.inject(b"Content-Type: api/response\nContent-Length: 5\n\nhello")
    reply = client.reply()
    assert reply.body == "hello"


def test_duplicate_events(sim: Simulator, client: SimClient) -> None:
    sim.duplicate_events(1, names=["CHANNEL_PARK"])
    uuid = sim.place_call("1000000001", "15557650000", duration=300)
    first = client.next_event("CHANNEL_PARK", uuid)
    second = client.next_event("CHANNEL_PARK", uuid)
    assert first.sequence == second.sequence
    sim.emit(uuid, "CHANNEL_PARK")  # the rule is used up
    third = client.next_event("CHANNEL_PARK", uuid)
    assert third.sequence > first.sequence
    client.api("version")
    assert [e.name for e in client.drain_events()].count("CHANNEL_PARK") == 0


def test_hangup_complete_before_answer(sim: Simulator, client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557650000", answer_after=0.02, duration=0.05)
    sim.hold_events(["CHANNEL_ANSWER"], uuid=uuid, release_after="CHANNEL_HANGUP_COMPLETE")
    client.api(f"uuid_transfer {uuid} 15557650000 XML rated")
    complete = client.next_event("CHANNEL_HANGUP_COMPLETE", uuid)
    answer = client.next_event("CHANNEL_ANSWER", uuid)
    assert answer.sequence < complete.sequence  # fired first, delivered after
    names = [f.body.split(b"\n", 1)[0] for f in client.frames if b"Unique-ID: " + uuid.encode()
             in f.body]
    assert names.index(b"Event-Name: CHANNEL_ANSWER") > names.index(
        b"Event-Name: CHANNEL_HANGUP_COMPLETE")


def test_hold_and_release_by_hand(sim: Simulator, client: SimClient) -> None:
    sim.hold_events(["CHANNEL_PARK"])
    uuid = sim.place_call("1000000001", "15557650000", duration=300)
    client.api("version")
    assert [e.name for e in client.drain_events()] == ["CHANNEL_CREATE", "API"]
    assert sim.release_held() == 1
    assert client.next_event("CHANNEL_PARK", uuid)


def test_lost_event(sim: Simulator, client: SimClient) -> None:
    sim.lose_events(1, names=["CHANNEL_ANSWER"])
    uuid = sim.place_call("1000000001", "15557650000", answer_after=0.02, duration=0.05)
    client.api(f"uuid_transfer {uuid} 15557650000 XML rated")
    client.next_event("CHANNEL_HANGUP_COMPLETE", uuid)
    assert "CHANNEL_ANSWER" not in [e.name for e in client.drain_events()]
    assert sim.call(uuid).answered


def test_withheld_reply_desynchronises_a_naive_client(sim: Simulator, client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557650000", answer_after=0.02, duration=300)
    sim.withhold_replies(1, command="uuid_transfer")
    client.send(f"api uuid_transfer {uuid} 15557650000 XML rated")
    client.send(f"api uuid_exists {uuid}")
    assert client.reply().body == "true"  # the first reply to arrive is the second one's
    assert client.next_event("CHANNEL_ANSWER", uuid)  # the command still ran
    assert client.api("version").startswith("FreeSWITCH Version")


def test_withheld_bgapi_reply(sim: Simulator, client: SimClient) -> None:
    sim.withhold_replies(1, command="uuid_exists")
    client.send("bgapi uuid_exists nope")
    job = client.next_event("BACKGROUND_JOB")
    assert job.body == "false"
    # the next reply is the api's: the bgapi's command/reply never came
    assert client.api("version").startswith("FreeSWITCH Version")


def test_shutdown_like_freeswitch(sim: Simulator, client: SimClient) -> None:
    uuid = sim.place_call("1000000001", "15557650000", duration=300)
    sim.shutdown()
    assert client.next_event("CHANNEL_HANGUP_COMPLETE", uuid).hangup_cause == "SYSTEM_SHUTDOWN"
    assert client.next_event("SHUTDOWN").get("Event-Info") == "System Shutting Down"
    client.wait_closed()
    assert client.notice is not None
    assert client.notice.body == captured.DISCONNECT_SHUTDOWN == "The system is being shut down.\n"
    tail = b"Content-Type: text/disconnect-notice\nContent-Length: 31\n\n" \
           b"The system is being shut down.\n"
    assert bytes(client.raw).endswith(tail)
    with pytest.raises(OSError):
        _client(sim)


def test_restart_on_the_same_port(sim: Simulator) -> None:
    port = sim.port
    sim.stop()
    with pytest.raises(OSError):
        _client(sim)
    sim.start()
    assert sim.port == port
    again = _client(sim)
    assert again.api("version").startswith("FreeSWITCH Version")
    again.close()


def test_clear_faults(sim: Simulator, client: SimClient) -> None:
    sim.lose_events(None, names=["CHANNEL_PARK"])
    sim.withhold_replies(None)
    sim.clear_faults()
    uuid = sim.place_call("1000000001", "15557650000", duration=300)
    assert client.next_event("CHANNEL_PARK", uuid)
    assert client.api(f"uuid_exists {uuid}") == "true"


def test_a_listener_that_does_not_read_loses_events_then_is_killed() -> None:
    """mod_event_socket's queue limit, scaled down: past it events are lost, and past
    500 lost events the listener is dropped."""
    with Simulator(port=0, heartbeat=0, max_queue=5) as small:
        c = _client(small, "HEARTBEAT")
        conn = small.wait_for_listener(["HEARTBEAT"])
        small.stall(300)  # nothing leaves: the queue fills up
        for _ in range(5 + 501):
            small.heartbeat_now()
        assert conn.lost_events == 501
        c.wait_closed()
        assert c.notice is None
        c.close()
