"""Regenerate `rater/sim/captured.py` from the raw FreeSWITCH captures.

    python -m rater.sim.extract /path/to/freeswitch-captures [--check]

Only this offline tool reads the captures; the simulator imports the generated module, so the
package works installed anywhere. `--check` exits 1 when the committed module is stale
(tests/test_sim_templates.py runs the same comparison).
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

OUTPUT = Path(__file__).with_name("captured.py")

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


def _find_event(captures: Path, file: str, name: str, uuid: str | None, index: int):
    seen = 0
    for frame in split_frames((captures / file).read_bytes()):
        if dict(frame.headers).get("Content-Type") != "text/event-plain":
            continue
        headers, body = plain_event(frame.body)
        values = dict(headers)
        if values["Event-Name"] != name or (uuid and values.get("Unique-ID") != uuid):
            continue
        if seen == index:
            return headers, body, values["Event-Sequence"]
        seen += 1
    raise LookupError(f"{file}: no {name} #{index} for {uuid}")


def _replies(captures: Path, session: str) -> list[tuple[str, str, str, str]]:
    """(command, content type, Reply-Text or body, job uuid) for each command sent."""
    sent = (captures / f"{session}.raw.out").read_bytes().decode()
    commands = [c.strip("\n") for c in sent.split("\n\n") if c.strip("\n")]
    answers = [
        f for f in split_frames((captures / f"{session}.raw.in").read_bytes())
        if dict(f.headers).get("Content-Type") in ("command/reply", "api/response")
    ]
    if len(commands) != len(answers):
        raise ValueError(f"{session}: {len(commands)} commands but {len(answers)} replies")
    pairs = []
    for command, frame in zip(commands, answers, strict=True):
        headers = dict(frame.headers)
        if headers["Content-Type"] == "command/reply":
            text = headers["Reply-Text"]
        else:
            text = frame.body.decode()
        pairs.append((command, headers["Content-Type"], text, headers.get("Job-UUID", "")))
    return pairs


def _background_jobs(captures: Path) -> list[tuple[str, str, str]]:
    jobs = []
    for frame in split_frames((captures / "esl_plain_full.raw.in").read_bytes()):
        if dict(frame.headers).get("Content-Type") != "text/event-plain":
            continue
        headers, body = plain_event(frame.body)
        values = dict(headers)
        if values["Event-Name"] == "BACKGROUND_JOB":
            jobs.append((values["Job-Command"], values.get("Job-Command-Arg", ""), body or ""))
    return jobs


def _notices(captures: Path) -> dict[str, str]:
    notices = {}
    for session in ("esl_api_only", "esl_shutdown_plain"):
        frame = split_frames((captures / f"{session}.raw.in").read_bytes())[-1]
        notices[session] = frame.body.decode()
    return notices


def render_module(captures: Path) -> str:
    """The text of captured.py for the captures in `captures`."""
    out = [
        '"""Data extracted from real FreeSWITCH 1.10.12 Event Socket captures.',
        "",
        "GENERATED by `python -m rater.sim.extract <captures-dir>`: do not edit by hand.",
        "Values are decoded (plain events carry them URL-encoded); header order is the wire order.",
        '"""',
        "",
        "# ruff: noqa: E501",
        "",
        "# key -> (source, event headers in order, body or None)",
        "EVENTS: dict[str, tuple[str, tuple[tuple[str, str], ...], str | None]] = {",
    ]
    for key, file, name, uuid, index in TEMPLATE_SOURCES:
        headers, body, seq = _find_event(captures, file, name, uuid, index)
        out.append(f"    {key!r}: (")
        out.append(f"        {f'{file} Event-Sequence {seq}'!r},")
        out.append("        (")
        out.extend(f"            ({n!r}, {v!r})," for n, v in headers)
        out.append("        ),")
        out.append(f"        {body!r},")
        out.append("    ),")
    out.append("}")
    out.append("")
    out.append("# (session, command sent, reply Content-Type, Reply-Text or api body, Job-UUID)")
    out.append("REPLIES: tuple[tuple[str, str, str, str, str], ...] = (")
    for session in REPLY_SESSIONS:
        for command, ctype, text, job in _replies(captures, session):
            out.append(f"    ({session!r}, {command!r}, {ctype!r}, {text!r}, {job!r}),")
    out.append(")")
    out.append("")
    out.append("# BACKGROUND_JOB events of esl_plain_full: (Job-Command, Job-Command-Arg, body)")
    out.append("BACKGROUND_JOBS: tuple[tuple[str, str, str], ...] = (")
    out.extend(f"    {job!r}," for job in _background_jobs(captures))
    out.append(")")
    out.append("")
    notices = _notices(captures)
    out.append(f"DISCONNECT_GOODBYE = {notices['esl_api_only']!r}")
    out.append(f"DISCONNECT_SHUTDOWN = {notices['esl_shutdown_plain']!r}")
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rater.sim.extract", description=__doc__)
    parser.add_argument("captures", type=Path, help="directory holding the *.raw.in/out files")
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args(argv)
    text = render_module(args.captures)
    if args.check:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale; rerun without --check", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
