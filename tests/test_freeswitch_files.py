"""The FreeSWITCH files we ship and the tier's test data, checked without a switch.

FreeSWITCH's XML pre-processor drops the whole of any line that holds an include open or
close tag (anything else on that line silently disappears), so those tags must stand alone.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.freeswitch_lab import (
    SHIPPED,
    SKIP_REASON,
    LabSettings,
    point_far_ends,
    point_records_at,
    point_socket,
)
from tests.freeswitch_sipp import DATA, TONE, parse_outcomes, with_media

FS_CONFIG = SHIPPED.parent
REPO = Path(__file__).resolve().parents[1]
XML_FILES = sorted([*FS_CONFIG.rglob("*.xml"), *DATA.glob("*.xml")])
INCLUDE_TAG = re.compile(r"</?include\b")


def preprocessed(text: str) -> str:
    """What FreeSWITCH's pre-processor keeps of an included file."""
    return "\n".join(line for line in text.splitlines() if not INCLUDE_TAG.search(line))


def _id(path: Path) -> str:
    return str(path.relative_to(FS_CONFIG.parents[1]))


@pytest.mark.parametrize("path", XML_FILES, ids=_id)
def test_include_tags_stand_on_lines_of_their_own(path: Path):
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if INCLUDE_TAG.search(line):
            assert line.strip() in ("<include>", "</include>"), (
                f"{_id(path)}:{n}: the pre-processor would drop this whole line: {line!r}")


@pytest.mark.parametrize("path", XML_FILES, ids=_id)
def test_parses_as_xml_as_written_and_as_included(path: Path):
    root = ET.fromstring(path.read_bytes())
    if root.tag == "include":
        inner = ET.fromstring(f"<section>{preprocessed(path.read_text())}</section>")
        assert len(inner) == len(root), "the pre-processor lost elements"


def extension(name: str, file: str = "00_rater_outbound.xml") -> ET.Element:
    root = ET.fromstring((SHIPPED / file).read_bytes())
    [ext] = [e for e in root.iter("extension") if e.get("name") == name]
    return ext


def conditions(ext: ET.Element) -> dict[str, str]:
    return {c.get("field"): c.get("expression") for c in ext.iter("condition")}


def variables_set(ext: ET.Element) -> dict[str, str]:
    """What the extension's set, unset and multiset actions leave on the channel, in order
    (mod_dptools: `multiset ^^<d>k=v<d>…`; an empty value unsets, as `unset` does)."""
    out: dict[str, str] = {}
    for a in ext.iter("action"):
        app, data = a.get("application"), a.get("data") or ""
        if app == "unset":
            pairs = [f"{data}="]
        elif app == "set":
            pairs = [data]
        elif app == "multiset":
            assert data.startswith("^^"), data
            pairs = data[3:].split(data[2])
        else:
            continue
        for pair in pairs:
            name, _, value = pair.partition("=")
            out[name] = value
    return out


def test_outbound_account_comes_from_authentication_not_from_the_from_header():
    ext = extension("rater_outbound")
    assert conditions(ext)["${sip_authorized}"] == "^true$"
    assert variables_set(ext) == {
        "rater_account": "${accountcode}", "rater_direction": "outbound",
        "rater_destination": "$1", "park_timeout": "20:NORMAL_TEMPORARY_FAILURE"}
    for path in SHIPPED.glob("*.xml"):
        assert "sip_from_user" not in path.read_text(), path.name


def test_unauthenticated_outbound_calls_are_refused_by_the_dialplan():
    ext = extension("rater_outbound_unauthenticated")
    guard = re.compile(conditions(ext)["${sip_authorized}"])
    assert [bool(guard.search(v)) for v in ("", "false", "true")] == [True, True, False]
    [action] = list(ext.iter("action"))
    assert (action.get("application"), action.get("data")) == ("hangup", "CALL_REJECTED")


def test_inbound_clears_any_account_so_the_did_decides():
    ext = extension("rater_inbound_did", "00_rater_inbound.xml")
    marks = variables_set(ext)
    assert (marks["rater_account"], marks["accountcode"]) == ("", "")  # unset
    assert (marks["rater_direction"], marks["rater_destination"]) == ("inbound", "$1")


@pytest.mark.parametrize(("name", "file"), [("rater_outbound", "00_rater_outbound.xml"),
                                            ("rater_inbound_did", "00_rater_inbound.xml")])
def test_calls_ask_the_decision_socket_then_park(name: str, file: str):
    """The socket first (the rater's decision_socket.listen of config/rater.toml); a call
    still in this extension after it could not be decided there parks, with a timeout."""
    apps = [(a.get("application"), a.get("data"))
            for a in extension(name, file).iter("action")][-3:]
    assert apps == [("socket", "127.0.0.1:8084"),
                    ("set", "park_timeout=20:NORMAL_TEMPORARY_FAILURE"), ("park", None)]
    listen = re.search(r'^listen = "([^"]*)"', (SHIPPED.parents[1] / "rater.toml").read_text(),
                       re.M)
    assert listen is not None and listen.group(1) == "127.0.0.1:8084"


def test_the_tier_rewrites_only_the_decision_socket_address():
    text = (SHIPPED / "00_rater_outbound.xml").read_text()
    moved = point_socket(text, "127.0.0.1:5998")
    changed = [b.strip() for a, b in zip(text.splitlines(), moved.splitlines(), strict=True)
               if a != b]
    assert changed == ['<action application="socket" data="127.0.0.1:5998"/>']
    parked = point_socket(text, None)  # the park-only variant: the socket line goes
    assert len(parked.splitlines()) == len(text.splitlines()) - 1
    assert "socket" not in [a.get("application")
                            for a in ET.fromstring(parked).iter("action")]


def test_the_tier_rewrites_only_the_far_ends():
    text = (SHIPPED / "rated.xml").read_text()
    out = point_far_ends(text, "127.0.0.1:5999")
    changed = [(a, b) for a, b in zip(text.splitlines(), out.splitlines(), strict=True)
               if a != b]
    assert [b.strip() for _, b in changed] == [
        '<action application="bridge" data="sofia/internal/$1@127.0.0.1:5999"/>'] * 2
    ET.fromstring(out)


def test_the_tier_points_switch_records_at_the_test_database():
    path = FS_CONFIG / "cdr_pg_csv.conf.xml"
    if not path.exists():
        pytest.skip("no mod_cdr_pg_csv configuration is shipped")
    out = point_records_at(path.read_text(), "postgresql://postgres@127.0.0.1:5433/t1")
    [db_info] = [p.get("value") for p in ET.fromstring(out).iter("param")
                 if p.get("name") == "db-info"]
    assert db_info == "host=127.0.0.1 port=5433 dbname=t1 user=postgres connect_timeout=5"


def test_the_tier_says_which_variable_to_set_when_no_switch_is_named():
    assert LabSettings.from_env({}) == SKIP_REASON
    assert "RATER_TEST_FREESWITCH=host:port" in SKIP_REASON
    missing_conf = LabSettings.from_env({"RATER_TEST_FREESWITCH": "127.0.0.1:8021"})
    assert isinstance(missing_conf, str)
    assert "RATER_TEST_FREESWITCH_CONF" in missing_conf


def test_sipp_outcome_lines_are_read_back():
    log = (
        "answered;t1;1-9@h;1796256843.000000;20193.000000;1796256846.000000;520199.000000;"
        'switch;Reason: SIP;cause=802;text="ALLOTTED_TIMEOUT"\n'
        'refused;t2;2-9@h;SIP/2.0 603;Reason: Q.850;cause=21;text="CALL_REJECTED"\n')
    out = parse_outcomes(log)
    assert out["t1"].answered and out["t1"].ended_by == "switch"
    assert out["t1"].cause == "ALLOTTED_TIMEOUT"
    assert round(out["t1"].duration, 6) == 3.500006
    assert (out["t2"].answered, out["t2"].status, out["t2"].cause) == (
        False, 603, "CALL_REJECTED")


def test_an_answered_call_sipp_timed_out_has_no_end_time():
    # sipp gave up waiting on an answered call (overload): its end fields are empty
    out = parse_outcomes("answered;t3;3-9@h;1796256843.000000;20193.000000;;;caller;\n")
    assert out["t3"].answered and (out["t3"].answered_at, out["t3"].ended_at) == (
        1796256843.020193, 0.0)


@pytest.mark.parametrize("name", ["uac_auth.xml", "uac_did.xml"])
def test_callers_with_media_stream_from_the_answer_without_a_message_more(name: str):
    plain = (DATA / name).read_text()
    media = with_media(plain, "tone.pcmu")
    steps = [e.tag for e in ET.fromstring(plain)]
    assert [e.tag for e in ET.fromstring(media)] == steps   # [branch-N] counts still hold
    assert "[media_port]" not in media
    assert media.count("m=audio [rtpstream_audio_port] RTP/AVP 0") == plain.count("m=audio")
    answer = next(e for e in ET.fromstring(media) if e.get("rtd") == "invite")
    assert [a.get("rtp_stream") for a in answer.iter("exec")] == ["tone.pcmu,-1,0,PCMU/8000"]
    with pytest.raises(ValueError, match="not a caller scenario"):
        with_media("<scenario/>", "tone.pcmu")


def test_the_streamed_audio_is_one_second_of_sound():
    assert len(TONE) == 8000 and len(set(TONE)) > 50


def test_a_benchmark_stopped_by_sigterm_still_runs_its_clean_up(tmp_path: Path):
    done = tmp_path / "cleaned"
    code = textwrap.dedent(f"""
        import sys, time
        from tests.freeswitch_lab import exit_cleanly_on_sigterm
        exit_cleanly_on_sigterm()
        try:
            print("ready", flush=True)
            time.sleep(60)
        finally:
            open({str(done)!r}, "w").close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert done.exists()
