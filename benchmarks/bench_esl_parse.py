"""µs per event: our Event Socket parser vs greenswitch's stock parse, on captured frames.

    .venv/bin/python benchmarks/bench_esl_parse.py [--repeats 7] [--captures DIR]

For every text/event-plain frame of the captures, both sides start from the frame's
bytes and end with the fields read:

- ours:  FrameParser.feed() (one long-lived parser, as per connection) + parse_frame()
  + the typed accessors;
- stock: what greenswitch does per event (esl.py `receive_events` / `handle_event`):
  ESLEvent(outer header block), decode the body, `parse_data(body)`, then dict reads.

Two read sets are timed: `daemon` (what the daemon's handler reads for that event, see
DAEMON_READS) and `all` (every accessor, the worst case). Each cell is the median over
`--repeats` runs, stock and ours interleaved so machine load hits both alike. JSON events
are timed for ours only: stock greenswitch cannot parse them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from greenswitch.esl import ESLEvent

from rater.esl.events import ChannelEvent, EventName, Header, Var, parse_frame
from rater.esl.frames import FrameParser, build_frame

# Accessor names (ChannelEvent properties) and channel variables read per event.
_IDENTITY = ("name", "unique_id", "sequence", "timestamp")
DAEMON_READS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
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
    return Path(__file__).resolve().parents[2] / "shared" / "freeswitch-captures"


_PARSER = FrameParser()  # one per connection in the daemon, so one here


def ours(raw: bytes, reads: tuple[tuple[str, ...], tuple[str, ...]]) -> list[object]:
    (frame,) = _PARSER.feed(raw)
    event = parse_frame(frame)
    assert isinstance(event, ChannelEvent)
    fields, variables = reads
    out = [getattr(event, f) for f in fields]
    out += [event.variable(v) for v in variables]
    return out


def stock(raw: bytes, reads: tuple[tuple[str, ...], tuple[str, ...]]) -> list[object]:
    head, _, body = raw.partition(b"\n\n")
    event = ESLEvent(head.decode("utf-8"))  # receive_events: the outer header block
    event.parse_data(body.decode("utf-8"))  # handle_event: _read_socket + parse_data
    headers = event.headers
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--captures")
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

    print(f"captures: {directory}   median of {args.repeats} runs, CPU µs per event\n")
    biggest = max(plain[EventName.CHANNEL_HANGUP_COMPLETE], key=len)
    print(f"headline: the largest CHANNEL_HANGUP_COMPLETE ({len(biggest)} bytes, plain)")
    for label, reads in (("daemon", DAEMON_READS[EventName.CHANNEL_HANGUP_COMPLETE]),
                         ("all", ALL_READS)):
        s_samples: list[float] = []
        o_samples: list[float] = []
        for _ in range(args.repeats):
            median_us(lambda r=reads: stock(biggest, r), 200, s_samples)
            median_us(lambda r=reads: ours(biggest, r), 2000, o_samples)
        s, o = statistics.median(s_samples), statistics.median(o_samples)
        print(f"  reads {label:6s}  stock {s:7.1f}   ours {o:6.1f}   x {s / o:4.1f}")
    print()
    header = (f"{'event (plain)':26s} {'n':>4s} {'bytes':>6s} {'read':>6s} "
              f"{'stock':>8s} {'ours':>8s} {'x':>6s}")
    print(header)
    print("-" * len(header))
    totals: dict[str, list[float]] = defaultdict(list)
    for name in sorted(plain, key=lambda n: -max(map(len, plain[n]))):
        frames = plain[name]
        size = statistics.mean(map(len, frames))
        read_sets = [("all", ALL_READS)]
        if name in DAEMON_READS:
            read_sets.insert(0, ("daemon", DAEMON_READS[name]))
        for label, reads in read_sets:
            for raw in frames:  # same answers on both sides before timing anything
                theirs, mine = stock(raw, reads), ours(raw, reads)
                if label == "daemon" and "body" not in reads[0]:
                    assert theirs == mine, (name, theirs, mine)
            number = max(1, 2000 // len(frames))
            s_samples: list[float] = []
            o_samples: list[float] = []
            for _ in range(args.repeats):
                median_us(lambda fr=frames, r=reads: [stock(x, r) for x in fr], number, s_samples)
                median_us(lambda fr=frames, r=reads: [ours(x, r) for x in fr], number, o_samples)
            s = statistics.median(s_samples) / len(frames)
            o = statistics.median(o_samples) / len(frames)
            totals[label].append(s / o)
            print(f"{name:26s} {len(frames):4d} {size:6.0f} {label:>6s} "
                  f"{s:8.1f} {o:8.1f} {s / o:6.1f}")

    print(f"\n{'event (json, ours only)':26s} {'n':>4s} {'bytes':>6s} {'read':>6s} "
          f"{'':>8s} {'ours':>8s}")
    for name in (EventName.CHANNEL_HANGUP_COMPLETE, EventName.CHANNEL_PARK,
                 EventName.BACKGROUND_JOB, EventName.HEARTBEAT):
        frames = json_events.get(name, [])
        if not frames:
            continue
        reads = DAEMON_READS[name]
        o_samples = []
        for _ in range(args.repeats):
            median_us(lambda fr=frames, r=reads: [ours(x, r) for x in fr], 200, o_samples)
        o = statistics.median(o_samples) / len(frames)
        size = statistics.mean(map(len, frames))
        print(f"{name:26s} {len(frames):4d} {size:6.0f} {'daemon':>6s} {'':>8s} {o:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
