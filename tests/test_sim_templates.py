"""The simulator's event templates against the real FreeSWITCH captures."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote

import pytest

from fssim import captured, encoding, templates
from fssim.bus import Event
from fssim.serialize import encode_plain_event
from rater.esl.frames import FrameParser, build_frame

REPO = Path(__file__).resolve().parents[1]
# The originals: RATER_CAPTURES_DIR, else the shared directory beside the repository.
ORIGINALS = Path(os.environ.get("RATER_CAPTURES_DIR")
                 or REPO.parent / "shared" / "freeswitch-captures")


def _capture_frames(name: str) -> list:
    return FrameParser().feed(captured.capture_bytes(name.removesuffix(".raw.in")))


def test_packaged_captures_are_the_listed_bytes() -> None:
    """fssim/captures/ holds exactly the files SHA256SUMS lists, each byte for byte."""
    sums = captured.checksums()
    files = sorted(p.name for p in captured.DATA.iterdir()
                   if p.name.endswith((".raw.in", ".raw.out")))
    assert files == sorted(sums)
    assert len(captured.sessions()) == 10
    for name, digest in sums.items():
        session, _, direction = name.rpartition(".raw.")
        assert captured.digest(captured.capture_bytes(session, direction)) == digest, name


def test_packaged_captures_are_the_originals() -> None:
    """The copies are byte-identical to the recorded captures (../shared/freeswitch-captures)."""
    if not ORIGINALS.is_dir():
        pytest.skip(f"no original captures at {ORIGINALS} (set RATER_CAPTURES_DIR)")
    originals = sorted(p.name for p in ORIGINALS.glob("*.raw.*"))
    assert originals == sorted(captured.checksums())
    for name in originals:
        session, _, direction = name.rpartition(".raw.")
        assert captured.capture_bytes(session, direction) == (ORIGINALS / name).read_bytes(), name


@pytest.mark.parametrize("key", sorted(templates.TEMPLATES))
def test_template_reproduces_its_captured_event_byte_for_byte(key: str) -> None:
    """Rendering a template with the values it was compiled from gives back the real bytes
    (header order, duplicates, url-encoding, body framing)."""
    template = templates.TEMPLATES[key]
    _source, headers, body = captured.EVENTS[key]
    expected = encode_plain_event(headers, body or b"")
    assert template.render_plain(template.captured_values, body) == expected
    assert template.header_names == tuple(name for name, _ in headers)


@pytest.mark.parametrize("key", sorted(templates.TEMPLATES))
def test_template_source_is_the_raw_capture(key: str) -> None:
    template = templates.TEMPLATES[key]
    file, _, seq = template.source.partition(" Event-Sequence ")
    payloads = [f.body for f in _capture_frames(file) if f.content_type == "text/event-plain"]
    original = [p for p in payloads if f"\nEvent-Sequence: {seq}\n".encode() in p]
    assert len(original) == 1
    _source, _headers, body = captured.EVENTS[key]
    assert template.render_plain(template.captured_values, body) == original[0]


@pytest.mark.parametrize("capture", ["esl_sipp_json.raw.in", "esl_json_subset.raw.in"])
def test_json_rendering_matches_real_json_events(capture: str) -> None:
    """Every real JSON event, re-rendered from its own (name, value) pairs by the same code
    path the templates use, is byte-identical: separators, escaping, arrays, _body."""
    checked = 0
    for frame in _capture_frames(capture):
        if frame.content_type != "text/event-json":
            continue
        pairs = json.loads(frame.body, object_pairs_hook=list)
        body = None
        if pairs[-1][0] == "_body":
            body = pairs.pop()[1]
            pairs.pop()  # its Content-Length
        headers = [(k, "ARRAY::" + "|:".join(v) if isinstance(v, list) else v)
                   for k, v in pairs]
        template = templates.compile_template("t", "test", headers, body, line_slots=False)
        assert template.render_json(template.captured_values, body) == frame.body
        checked += 1
    assert checked > 10


def test_url_encoding_matches_every_captured_plain_value() -> None:
    checked = 0
    for session in captured.sessions():
        if "plain" not in session:
            continue
        for frame in _capture_frames(session):
            if frame.content_type != "text/event-plain":
                continue
            block = frame.body.split(b"\n\n", 1)[0].decode()
            for line in block.split("\n"):
                _, _, raw = line.partition(": ")
                assert encoding.url_encode(unquote(raw)) == raw
                checked += 1
    assert checked > 10_000


def test_event_frame_header_is_build_frame() -> None:
    template = templates.TEMPLATES["HEARTBEAT"]
    event = Event(template, template.captured_values)
    for fmt, ctype in (("plain", "text/event-plain"), ("json", "text/event-json")):
        frame = event.frame(fmt)
        payload = frame.split(b"\n\n", 1)[1]
        assert frame == build_frame([("Content-Type", ctype)], payload)
        assert frame.startswith(b"Content-Length: ")


def test_channel_templates_keep_the_headers_the_daemon_reads() -> None:
    for key in ("CHANNEL_CREATE", "CHANNEL_PARK", "CHANNEL_ANSWER",
                "CHANNEL_HANGUP_COMPLETE.answered", "CHANNEL_HANGUP_COMPLETE.unanswered"):
        slots = templates.TEMPLATES[key].slots
        assert {"uuid", "caller", "dest", "created_us", "answered_us", "hangup_us",
                "callstate", "answer_state", "dialplan_vars" if key != "CHANNEL_CREATE"
                else "uuid"} <= slots, key
    complete = templates.TEMPLATES["CHANNEL_HANGUP_COMPLETE.answered"]
    assert complete.header_names.count("Hangup-Cause") == 2
    assert {"v_billsec", "v_billmsec", "v_billusec", "v_duration", "v_answersec"} <= complete.slots


def test_url_encode_and_json_string_edge_cases() -> None:
    assert encoding.url_encode("a b:c@d/e,f(g)") == "a%20b%3Ac%40d/e,f(g)"
    assert encoding.url_encode("é") == "%C3%A9"
    assert encoding.url_encode("\x7f") == "%7F"
    assert encoding.json_string('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert encoding.json_string("é") == "é"
    assert encoding.json_value("ARRAY::a|:b") == '["a","b"]'
