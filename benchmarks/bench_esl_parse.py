"""µs per event: our Event Socket parser vs greenswitch's stock parser, on captured frames.

    .venv/bin/python benchmarks/bench_esl_parse.py [--repeats 7] [--captures DIR]

For every text/event-plain frame of the captures, both sides start from the frame's
bytes and end with the fields read:

- ours:  FrameParser.feed() (one long-lived parser, as per connection) + parse_frame()
  + the typed accessors;
- stock: what greenswitch does per event (esl.py `receive_events` / `handle_event`):
  ESLEvent(outer header block), decode the body, `parse_data(body)`, then dict reads.

Three read sets are timed:

- `daemon`: exactly what the daemon does with the event: the reader's routing reads
  (`unique_id`, `name`) and `rater.calls.switch.switch_event` (the SwitchEvent the call
  handler gets); the stock side builds the same SwitchEvent from greenswitch's dict;
- `fields`: ten accessors (identity, times, the three bill variables, hangup cause), the
  set this benchmark used first;
- `all`: every accessor (the worst case).

Each cell is the median over `--repeats` runs of CPU time, stock and ours interleaved so
machine load hits both alike. JSON events are timed for ours only: stock greenswitch
cannot parse them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import timeit
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from greenswitch.esl import ESLEvent

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fssim import captured
from rater.calls.items import SwitchEvent
from rater.calls.switch import (
    VAR_ACCOUNT,
    VAR_ACCOUNTCODE,
    VAR_DESTINATION,
    VAR_DIRECTION,
    switch_event,
)
from rater.esl.events import ChannelEvent
from rater.esl.frames import FrameParser, build_frame
from rater.esl.messages import parse_frame
from rater.esl.names import EventName, Header, Var

DAEMON = "daemon"  # the read set that runs the daemon's own code (see ours/stock)
# Accessor names (ChannelEvent properties) and channel variables read per event.
_IDENTITY = ("name", "unique_id", "sequence", "timestamp")
FIELD_READS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    EventName.CHANNEL_PARK: (
        (*_IDENTITY, "call_uuid", "call_direction", "destination_number", "caller_id_number"),
        (Var.RATER_DIRECTION, Var.RATER_ACCOUNT, Var.ACCOUNTCODE, Var.RATER_DESTINATION),
    ),
    EventName.CHANNEL_ANSWER: ((*_IDENTITY, "answered_time"), ()),
    EventName.CHANNEL_HANGUP_COMPLETE: (
        (*_IDENTITY, "answered_time", "hangup_time", "billmsec", "billusec", "billsec",
         "hangup_cause"),
        (),
    ),
    EventName.BACKGROUND_JOB: (("name", "job_uuid", "body"), ()),
    EventName.HEARTBEAT: (("name", "core_uuid", "timestamp"), ()),
}
ALL_READS = (
    (
        "name", "unique_id", "call_uuid", "core_uuid", "sequence", "timestamp",
        "created_time", "answered_time", "hangup_time", "billmsec", "billusec", "billsec",
        "hangup_cause", "destination_number", "caller_id_number", "call_direction",
        "answer_state", "job_uuid",
    ),
    (Var.RATER_DIRECTION, Var.RATER_ACCOUNT, Var.ACCOUNTCODE, Var.RATER_DESTINATION),
)
# The same reads on greenswitch's header dict.
_STOCK_NAMES = {
    "name": Header.EVENT_NAME, "unique_id": Header.UNIQUE_ID,
    "call_uuid": Header.CHANNEL_CALL_UUID, "core_uuid": Header.CORE_UUID,
    "sequence": Header.EVENT_SEQUENCE, "timestamp": Header.EVENT_DATE_TIMESTAMP,
    "created_time": Header.CREATED_TIME, "answered_time": Header.ANSWERED_TIME,
    "hangup_time": Header.HANGUP_TIME, "hangup_cause": Header.HANGUP_CAUSE,
    "billmsec": Header.VARIABLE_PREFIX + Var.BILLMSEC,
    "billusec": Header.VARIABLE_PREFIX + Var.BILLUSEC,
    "billsec": Header.VARIABLE_PREFIX + Var.BILLSEC,
    "destination_number": Header.DESTINATION_NUMBER,
    "caller_id_number": Header.CALLER_ID_NUMBER, "call_direction": Header.CALL_DIRECTION,
    "answer_state": Header.ANSWER_STATE, "job_uuid": Header.JOB_UUID,
}
_STOCK_INTS = {
    "sequence", "timestamp", "created_time", "answered_time", "hangup_time",
    "billmsec", "billusec", "billsec",
}


def captures_dir(override: str | None) -> Path:
    if override:
        return Path(override)
    if env := os.environ.get("RATER_CAPTURES_DIR"):
        return Path(env)
    return Path(str(captured.DATA))  # the simulator's packaged copies (fssim/captures/)


_PARSER = FrameParser()  # one per connection in the daemon, so one here


def ours(raw: bytes, reads: tuple[tuple[str, ...], tuple[str, ...]] | str) -> object:
    (frame,) = _PARSER.feed(raw)
    event = parse_frame(frame)
    assert isinstance(event, ChannelEvent)
    if reads == DAEMON:  # NodeLink._on_event routes on these, the worker builds the rest
        if event.unique_id and event.name:
            return switch_event("fs1", event)
        return None
    fields, variables = reads
    out = [getattr(event, f) for f in fields]
    out += [event.variable(v) for v in variables]
    return out


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


def stock_switch_event(h: dict[str, str]) -> SwitchEvent:
    """switch_event() over greenswitch's header dict (its values already URL-decoded)."""
    name = h.get(Header.EVENT_NAME)
    v = Header.VARIABLE_PREFIX
    if name == EventName.CHANNEL_PARK:
        direction = h.get(v + VAR_DIRECTION) or ""
        return SwitchEvent(
            name, "fs1", rated=direction in ("outbound", "inbound"), direction=direction,
            account=h.get(v + VAR_ACCOUNT) or h.get(v + VAR_ACCOUNTCODE) or None,
            destination=h.get(v + VAR_DESTINATION) or h.get(Header.DESTINATION_NUMBER) or "",
            caller=h.get(Header.CALLER_ID_NUMBER) or "",
            created_usec=_int(h.get(Header.CREATED_TIME)) or 0,
            answered_usec=_int(h.get(Header.ANSWERED_TIME)) or 0)
    if name == EventName.CHANNEL_ANSWER:
        return SwitchEvent(name, "fs1", rated=True,
                           answered_usec=_int(h.get(Header.ANSWERED_TIME))
                           or _int(h.get(Header.EVENT_DATE_TIMESTAMP)) or 0)
    return SwitchEvent(
        name, "fs1", rated=True, created_usec=_int(h.get(Header.CREATED_TIME)) or 0,
        answered_usec=_int(h.get(Header.ANSWERED_TIME)) or 0,
        hangup_usec=_int(h.get(Header.HANGUP_TIME)) or 0,
        billmsec=_int(h.get(v + Var.BILLMSEC)), hangup_cause=h.get(Header.HANGUP_CAUSE) or "")


def stock(raw: bytes, reads: tuple[tuple[str, ...], tuple[str, ...]] | str) -> object:
    head, _, body = raw.partition(b"\n\n")
    event = ESLEvent(head.decode("utf-8"))  # receive_events: the outer header block
    event.parse_data(body.decode("utf-8"))  # handle_event: _read_socket + parse_data
    headers = event.headers
    if reads == DAEMON:
        if headers.get(Header.UNIQUE_ID) and headers.get(Header.EVENT_NAME):
            return stock_switch_event(headers)
        return None
    fields, variables = reads
    out: list[object] = []
    for f in fields:
        if f == "body":  # greenswitch folds a body into the last header: no equivalent
            out.append(None)
            continue
        value = headers.get(_STOCK_NAMES[f])
        out.append(int(value) if value is not None and f in _STOCK_INTS else value)
    out += [headers.get(Header.VARIABLE_PREFIX + v) for v in variables]
    return out


def median_us(fn: Callable[[], object], number: int, samples: list[float]) -> None:
    # CPU time of this process: other load on the machine does not count against it.
    timer = timeit.Timer(fn, timer=time.process_time)
    samples.append(timer.timeit(number=number) / number * 1e6)


SUBSCRIBED = (EventName.CHANNEL_PARK, EventName.CHANNEL_ANSWER,
              EventName.CHANNEL_HANGUP_COMPLETE)


def read_sets(name: str) -> list[tuple[str, object]]:
    sets: list[tuple[str, object]] = []
    if name in SUBSCRIBED:
        sets.append((DAEMON, DAEMON))
    if name in FIELD_READS:
        sets.append(("fields", FIELD_READS[name]))
    sets.append(("all", ALL_READS))
    return sets


def time_pair(frames: list[bytes], reads: object, repeats: int) -> tuple[float, float]:
    """(stock, ours) median CPU µs per event over `frames`."""
    number = max(1, 2000 // len(frames))
    s_samples: list[float] = []
    o_samples: list[float] = []
    for _ in range(repeats):
        median_us(lambda fr=frames, r=reads: [stock(x, r) for x in fr], number, s_samples)
        median_us(lambda fr=frames, r=reads: [ours(x, r) for x in fr], number, o_samples)
    return (statistics.median(s_samples) / len(frames),
            statistics.median(o_samples) / len(frames))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--captures")
    parser.add_argument("--json", action="store_true", help="print the headline as JSON only")
    args = parser.parse_args()
    directory = captures_dir(args.captures)
    if not directory.is_dir():
        print(f"captures not found: {directory} (set RATER_CAPTURES_DIR)", file=sys.stderr)
        return 2

    plain: dict[str, list[bytes]] = defaultdict(list)
    json_events: dict[str, list[bytes]] = defaultdict(list)
    for path in sorted(directory.glob("*.raw.in")):
        for frame in FrameParser().feed(path.read_bytes()):
            event = parse_frame(frame)
            if isinstance(event, ChannelEvent):
                raw = build_frame(frame.headers, frame.body)
                target = json_events if frame.content_type.endswith("json") else plain
                target[event.name].append(raw)
    for name, frames in plain.items():  # same answers on both sides before timing anything
        for label, reads in read_sets(name):
            if label == "all" or "body" in reads[0]:  # greenswitch folds a body away
                continue
            for raw in frames:
                theirs, mine = stock(raw, reads), ours(raw, reads)
                assert theirs == mine, (name, label, theirs, mine)

    biggest = max(plain[EventName.CHANNEL_HANGUP_COMPLETE], key=len)
    headline = {"event_bytes": len(biggest), "captures": str(directory)}
    for label, reads in read_sets(EventName.CHANNEL_HANGUP_COMPLETE):
        s, o = time_pair([biggest], reads, args.repeats)
        headline[label] = {"stock_us": round(s, 1), "ours_us": round(o, 1),
                           "ratio": round(s / o, 1)}
    if args.json:
        print(json.dumps(headline))
        return 0
    print(f"captures: {directory}   median of {args.repeats} runs, CPU µs per event\n")
    print(f"headline: the largest CHANNEL_HANGUP_COMPLETE ({len(biggest)} bytes, plain)")
    for label, h in headline.items():
        if isinstance(h, dict):
            print(f"  reads {label:6s}  stock {h['stock_us']:7.1f}   ours {h['ours_us']:6.1f}"
                  f"   x {h['ratio']:4.1f}")
    print()
    header = (f"{'event (plain)':26s} {'n':>4s} {'bytes':>6s} {'read':>6s} "
              f"{'stock':>8s} {'ours':>8s} {'x':>6s}")
    print(header)
    print("-" * len(header))
    for name in sorted(plain, key=lambda n: -max(map(len, plain[n]))):
        frames = plain[name]
        size = statistics.mean(map(len, frames))
        for label, reads in read_sets(name):
            s, o = time_pair(frames, reads, args.repeats)
            print(f"{name:26s} {len(frames):4d} {size:6.0f} {label:>6s} "
                  f"{s:8.1f} {o:8.1f} {s / o:6.1f}")

    print(f"\n{'event (json, ours only)':26s} {'n':>4s} {'bytes':>6s} {'read':>6s} "
          f"{'':>8s} {'ours':>8s}")
    for name in (EventName.CHANNEL_HANGUP_COMPLETE, EventName.CHANNEL_PARK,
                 EventName.BACKGROUND_JOB, EventName.HEARTBEAT):
        frames = json_events.get(name, [])
        if not frames:
            continue
        label, reads = read_sets(name)[0]
        o_samples: list[float] = []
        for _ in range(args.repeats):
            median_us(lambda fr=frames, r=reads: [ours(x, r) for x in fr], 200, o_samples)
        o = statistics.median(o_samples) / len(frames)
        size = statistics.mean(map(len, frames))
        print(f"{name:26s} {len(frames):4d} {size:6.0f} {label:>6s} {'':>8s} {o:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
