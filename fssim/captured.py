"""The real FreeSWITCH 1.10.12 Event Socket captures, and what the simulator takes from them.

The raw bytes are data files of this package, `fssim/captures/<session>.raw.in|out` (byte-exact
copies of `../shared/freeswitch-captures`; `captures/SHA256SUMS` lists their hashes and
tests/test_sim_templates.py checks both), read with importlib.resources. The parser tests
read the same files through `capture_bytes()`, so the daemon's parser and the simulator's
templates are held to the very same bytes.

At import this module picks out of them, once: the events the templates are compiled from
(`EVENTS`), every command/reply pair (`REPLIES`), the BACKGROUND_JOB bodies and the two
disconnect notices. Values are decoded (plain events carry them URL-encoded); header order is
the wire order.

`captures/outbound/` holds the decision-socket conversations (the `socket` application's
outbound connections), recorded by this project (its README); `CHANNEL_DATA` is the channel's
data FreeSWITCH answers `connect` with there.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass
from importlib import resources

DATA = resources.files(__package__) / "captures"
OUTBOUND = DATA / "outbound"
SUMS = "SHA256SUMS"
OUTBOUND_SESSIONS = ("outbound_admit", "outbound_gone", "outbound_refuse", "outbound_release")

# (template key, capture file, Event-Name, Unique-ID or None for the first of that name, index)
# The simulated channel is an inbound SIP leg parked while ringing (the sipp `noanswer-` call)
# that is later answered (the sipp answered call): the two real calls of esl_sipp_plain.
_RINGING = "d01912c6-dc63-4f8e-8df6-8b909cc5810f"
_ANSWERED = "89d76146-4b68-4baa-9e07-0d6a9b15af1e"
TEMPLATE_SOURCES: tuple[tuple[str, str, str, str | None, int], ...] = (
    ("CHANNEL_CREATE", "esl_sipp_plain.raw.in", "CHANNEL_CREATE", _RINGING, 0),
    ("CHANNEL_PARK", "esl_sipp_plain.raw.in", "CHANNEL_PARK", _RINGING, 0),
    ("CHANNEL_UNPARK", "esl_sipp_plain.raw.in", "CHANNEL_UNPARK", _RINGING, 0),
    ("CHANNEL_ANSWER", "esl_sipp_plain.raw.in", "CHANNEL_ANSWER", _ANSWERED, 0),
    ("CHANNEL_HANGUP.answered", "esl_sipp_plain.raw.in", "CHANNEL_HANGUP", _ANSWERED, 0),
    ("CHANNEL_HANGUP.unanswered", "esl_sipp_plain.raw.in", "CHANNEL_HANGUP", _RINGING, 0),
    ("CHANNEL_HANGUP_COMPLETE.answered", "esl_sipp_plain.raw.in", "CHANNEL_HANGUP_COMPLETE",
     _ANSWERED, 0),
    ("CHANNEL_HANGUP_COMPLETE.unanswered", "esl_sipp_plain.raw.in", "CHANNEL_HANGUP_COMPLETE",
     _RINGING, 0),
    ("CHANNEL_DESTROY.answered", "esl_sipp_plain.raw.in", "CHANNEL_DESTROY", _ANSWERED, 0),
    ("CHANNEL_DESTROY.unanswered", "esl_sipp_plain.raw.in", "CHANNEL_DESTROY", _RINGING, 0),
    ("HEARTBEAT", "esl_plain_full.raw.in", "HEARTBEAT", None, 0),
    ("BACKGROUND_JOB", "esl_plain_full.raw.in", "BACKGROUND_JOB", None, 1),
    ("API", "esl_plain_full.raw.in", "API", None, 3),
    ("ADD_SCHEDULE", "esl_plain_full.raw.in", "ADD_SCHEDULE", None, 0),
    ("DEL_SCHEDULE", "esl_plain_full.raw.in", "DEL_SCHEDULE", None, 0),
    ("SHUTDOWN", "esl_shutdown_plain.raw.in", "SHUTDOWN", None, 0),
    ("MODULE_UNLOAD", "esl_shutdown_plain.raw.in", "MODULE_UNLOAD", None, 0),
)

# Sessions whose command/reply pairs are recorded (the .raw.out side says what was sent).
REPLY_SESSIONS = (
    "esl_api_only", "esl_badauth", "esl_plain_full", "esl_plain_subset", "esl_json_subset",
)

Headers = tuple[tuple[str, str], ...]


# --- the files ---------------------------------------------------------------------------

def capture_bytes(session: str, direction: str = "in") -> bytes:
    """Every byte FreeSWITCH sent (`in`) or the client sent (`out`) in one session (an
    `outbound_*` session: FreeSWITCH's `socket` application, or the listener)."""
    folder = OUTBOUND if session.startswith("outbound_") else DATA
    return (folder / f"{session}.raw.{direction}").read_bytes()


def sessions() -> list[str]:
    """The captured sessions (`esl_plain_full`, ...), sorted."""
    return sorted(p.name.removesuffix(".raw.in") for p in DATA.iterdir()
                  if p.name.endswith(".raw.in"))


def checksums(folder: str = "") -> dict[str, str]:
    """file name -> sha256 hex, as listed in captures/SHA256SUMS (`sha256sum` format), or
    in captures/<folder>/SHA256SUMS."""
    sums = {}
    for line in ((DATA / folder if folder else DATA) / SUMS).read_text().splitlines():
        digest, _, name = line.partition("  ")
        sums[name] = digest
    return sums


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- frames and plain events ---------------------------------------------------------------

@dataclass
class RawFrame:
    headers: list[tuple[str, str]]
    body: bytes


def split_frames(data: bytes) -> list[RawFrame]:
    """Frames of a capture (header block, blank line, Content-Length bytes of body)."""
    frames: list[RawFrame] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n\n", pos)
        if end < 0:
            raise ValueError(f"trailing bytes without a frame end at offset {pos}")
        headers = []
        for line in data[pos:end].decode().split("\n"):
            name, _, value = line.partition(": ")
            headers.append((name, value))
        length = int(dict(headers).get("Content-Length", "0"))
        frames.append(RawFrame(headers, data[end + 2:end + 2 + length]))
        pos = end + 2 + length
    return frames


def plain_event(body: bytes) -> tuple[list[tuple[str, str]], str | None]:
    """(decoded headers in order, body or None) of a text/event-plain payload."""
    head, _, rest = body.partition(b"\n\n")
    headers = []
    for line in head.decode().split("\n"):
        name, _, value = line.partition(": ")
        headers.append((name, urllib.parse.unquote(value)))
    if headers and headers[-1][0] == "Content-Length":
        headers.pop()
        return headers, rest.decode()
    return headers, None


def _plain_events(frames: list[RawFrame], name: str) -> list[tuple[list[tuple[str, str]],
                                                                    str | None]]:
    """The decoded text/event-plain events named `name` (the others are not decoded)."""
    mark = f"Event-Name: {name}\n".encode()
    return [plain_event(f.body) for f in frames if f.body.startswith(mark)
            and dict(f.headers).get("Content-Type") == "text/event-plain"]


# --- what the simulator takes --------------------------------------------------------------

def _find_event(frames: list[RawFrame], file: str, name: str, uuid: str | None,
                index: int) -> tuple[Headers, str | None, str]:
    seen = 0
    for headers, body in _plain_events(frames, name):
        values = dict(headers)
        if uuid and values.get("Unique-ID") != uuid:
            continue
        if seen == index:
            return tuple(headers), body, values["Event-Sequence"]
        seen += 1
    raise LookupError(f"{file}: no {name} #{index} for {uuid}")


def _replies(session: str, frames: list[RawFrame]) -> list[tuple[str, str, str, str, str]]:
    """(session, command, content type, Reply-Text or body, job uuid) per command sent."""
    sent = capture_bytes(session, "out").decode()
    commands = [c.strip("\n") for c in sent.split("\n\n") if c.strip("\n")]
    answers = [f for f in frames
               if dict(f.headers).get("Content-Type") in ("command/reply", "api/response")]
    if len(commands) != len(answers):
        raise ValueError(f"{session}: {len(commands)} commands but {len(answers)} replies")
    pairs = []
    for command, frame in zip(commands, answers, strict=True):
        headers = dict(frame.headers)
        if headers["Content-Type"] == "command/reply":
            text = headers["Reply-Text"]
        else:
            text = frame.body.decode()
        pairs.append((session, command, headers["Content-Type"], text,
                      headers.get("Job-UUID", "")))
    return pairs


def _extract() -> tuple[dict[str, tuple[str, Headers, str | None]],
                        tuple[tuple[str, str, str, str, str], ...],
                        tuple[tuple[str, str, str], ...], str, str]:
    """Read each capture the simulator needs once, and pick out its parts."""
    wanted = {file.removesuffix(".raw.in") for _k, file, *_ in TEMPLATE_SOURCES}
    wanted.update(REPLY_SESSIONS)
    frames = {s: split_frames(capture_bytes(s)) for s in sorted(wanted)}
    found = {}
    for key, file, name, uuid, index in TEMPLATE_SOURCES:
        session = file.removesuffix(".raw.in")
        headers, body, seq = _find_event(frames[session], file, name, uuid, index)
        found[key] = (f"{file} Event-Sequence {seq}", headers, body)
    replies = tuple(pair for s in REPLY_SESSIONS for pair in _replies(s, frames[s]))
    jobs = []
    for job_headers, body in _plain_events(frames["esl_plain_full"], "BACKGROUND_JOB"):
        values = dict(job_headers)
        jobs.append((values["Job-Command"], values.get("Job-Command-Arg", ""), body or ""))
    return (found, replies, tuple(jobs), frames["esl_api_only"][-1].body.decode(),
            frames["esl_shutdown_plain"][-1].body.decode())


def _channel_data() -> tuple[str, Headers]:
    """The channel's data of outbound_admit: the headers of its first frame, decoded."""
    frame = split_frames(capture_bytes("outbound_admit"))[0]
    headers = tuple((n, urllib.parse.unquote(v)) for n, v in frame.headers)
    return "outbound_admit.raw.in frame 1", headers


# CHANNEL_DATA: (source, headers in order) of the reply to `connect` on the decision socket
CHANNEL_DATA = _channel_data()
# EVENTS: key -> (source, event headers in order, body or None)
# REPLIES: (session, command sent, reply Content-Type, Reply-Text or api body, Job-UUID)
# BACKGROUND_JOBS: the BACKGROUND_JOB events of esl_plain_full (Job-Command, -Arg, body)
# DISCONNECT_GOODBYE: the notice after `exit` or a wrong password; _SHUTDOWN: FreeSWITCH stops
EVENTS, REPLIES, BACKGROUND_JOBS, DISCONNECT_GOODBYE, DISCONNECT_SHUTDOWN = _extract()
