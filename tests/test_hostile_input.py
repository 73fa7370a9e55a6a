"""Hostile values in the channel variables, end to end: simulated FreeSWITCH over TCP ->
daemon -> real Redis -> flusher -> real PostgreSQL (tests/e2e_world.py).

A caller controls the caller id and the number dialled (and, through a careless dialplan,
the account variables): SQL, control characters (\\x00-\\x1f, \\x7f), invalid UTF-8 (sent
as %-escapes, as FreeSWITCH's plain events carry any byte) and 10 KB strings. Each hostile
call must be refused with a clear reason (hung up with the configured cause, counted under
that reason) or rated and stored verbatim in its CDR, never executed; the daemon must go on:
a normal call placed after each hostile one is billed exactly (retail: 10000 micro-units a
second). Log lines that carry those values must stay one line each.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator

import pytest

from fssim import encoding, templates
from rater.config import hangup_cause
from rater.logs import JsonFormatter, PlainFormatter
from tests.e2e_world import CC, DID_IN, IN, P1, UK, World, running_world

pytestmark = pytest.mark.slow

SQL = "'; DROP TABLE cdrs; --"
CONTROL = "".join(map(chr, range(0x20))) + "\x7f"
# Invalid UTF-8 reaches the daemon only as %-escapes in plain events (FreeSWITCH escapes
# every byte it would not send raw). The simulator holds text, so such a byte is written as
# a private-use character (U+10FF00 + byte) that its encoder is taught to send as %XX.
_RAW_BASE = 0x10FF00
BAD_UTF8 = "".join(chr(_RAW_BASE + b) for b in b"\xff\xfe\xed\xa0\x80")
LONG = "5" * 10_240  # no rate starts with 5
# what the daemon reads for BAD_UTF8: each undecodable byte becomes U+FFFD
BAD_UTF8_READ = "\ufffd" * 5

NORMAL_TALK = 0.3  # a normal call: answered, 0.3 s of talk, billed 1 s
NORMAL_COST = 10_000  # retail, per second billed
PARK_WAIT = 10.0  # how long a caller waits in park for the daemon's decision


_url_encode = encoding.url_encode
_RAW_BYTE = re.compile("([\U0010ff00-\U0010ffff])")


def _hostile_url_encode(value: str) -> str:
    """The simulator's encoder, sending each private-use stand-in for a byte as that byte
    %-escaped: what FreeSWITCH sends for a value that is not UTF-8. (Everywhere else, e.g.
    `show channels as json`, the simulator still handles valid text.)"""
    if _RAW_BYTE.search(value) is None:
        return _url_encode(value)
    return "".join(f"%{ord(part) - _RAW_BASE:02X}" if _RAW_BYTE.fullmatch(part)
                   else _url_encode(part) for part in _RAW_BYTE.split(value) if part)


@pytest.fixture
def world(request, cfg, database_url, monkeypatch, caplog) -> Iterator[World]:
    """The e2e world, with plain events unless parametrized (indirectly) with "json"."""
    monkeypatch.setattr(encoding, "url_encode", _hostile_url_encode)  # header lines
    monkeypatch.setattr(templates, "url_encode", _hostile_url_encode)  # single values
    caplog.set_level(logging.INFO)
    with running_world(cfg, database_url, switch_records=False,
                       event_format=getattr(request, "param", "plain")) as w:
        yield w


def _call(world: World, account: str | None, destination: str = UK, **kw) -> str:
    """A call that talks NORMAL_TALK once answered. Its caller waits up to PARK_WAIT in park
    (the simulator's default is the talk time: a slow decision would look like a give-up)."""
    kw.setdefault("duration", NORMAL_TALK)
    kw.setdefault("park_timeout", PARK_WAIT)
    return world.call(account, destination, **kw)


def _refused(world: World, reason: str) -> int:
    return int(world.daemon.metrics.calls_refused.labels(reason)._value.get())


def _billed(ch) -> int:
    """Whole seconds billed for the talk the simulator timed (1 unless the machine is so
    loaded that the hangup timer fires late)."""
    return math.ceil((ch.hangup_us - ch.answered_us) / 1_000_000)


def _normal_call_is_billed_exactly(world: World) -> None:
    """A normal call after a hostile one: decided, answered, billed to the second, stored."""
    before = world.balance(CC)
    uuid = _call(world, CC, UK)
    ch = world.wait(uuid)
    assert ch.cause == "NORMAL_CLEARING" and ch.answered_us, "the normal call did not go through"
    seconds = _billed(ch)
    world.wait_cdr(uuid)
    doc = world.cdr(uuid)
    assert (doc["cdr"]["billed_seconds"], doc["cdr"]["total_cost"]) == (
        seconds, seconds * NORMAL_COST)
    assert [(c["account"], c["charged_seconds"], c["cost"]) for c in doc["charges"]] == [
        (CC, seconds, seconds * NORMAL_COST)]
    assert world.balance(CC) == before - seconds * NORMAL_COST


def _refused_with(world: World, caplog, reason: str, **call) -> None:
    """The call is hung up at park with the cause configured for `reason`, counted and
    logged under that reason, and leaves no CDR."""
    count = _refused(world, reason)
    uuid = _call(world, **call)
    ch = world.wait(uuid)
    assert ch.cause == hangup_cause(world.cfg, reason)
    assert not ch.answered_us and not ch.transfers
    assert _refused(world, reason) == count + 1
    assert any(f"call {uuid}: refused {reason}" in r.getMessage() for r in caplog.records)
    assert not world.sql("SELECT 1 FROM cdrs WHERE uuid = %s", uuid)


def _tables_intact(world: World) -> None:
    names = {n for (n,) in world.sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"cdrs", "cdr_charges", "ledger_entries", "accounts"} <= names
    assert world.sql("SELECT count(*) FROM outbox_dead_letters") == [(0,)]


def _nothing_crashed(caplog) -> None:
    """No traceback was logged: a hostile value must not crash anything."""
    assert [r.getMessage()[:200] for r in caplog.records if r.exc_info] == []


def _split_log_lines(caplog) -> list[str]:
    """Records that are more than one line once formatted as the daemon does (plain)."""
    formatter = PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    return [line[:200] for r in caplog.records
            if re.search(r"[\r\n]", line := formatter.format(r))]


HOSTILE = {"sql": SQL, "control": CONTROL, "bad-utf8": BAD_UTF8, "10kb": LONG,
           "10kb-sql": (SQL + " ") * (10_240 // (len(SQL) + 1))}


def test_hostile_accounts_are_refused_as_unknown(world, caplog):
    for value in HOSTILE.values():
        _refused_with(world, caplog, "unknown_account", account=value, destination=UK)
        _normal_call_is_billed_exactly(world)
        _refused_with(world, caplog, "unknown_account", account=None, destination=UK,
                      variables={"rater_account": value})
        _normal_call_is_billed_exactly(world)
    # a real account with something after it is not that account
    _refused_with(world, caplog, "unknown_account", account=P1 + SQL, destination=UK)
    _normal_call_is_billed_exactly(world)
    _tables_intact(world)
    _nothing_crashed(caplog)


@pytest.mark.parametrize(("world", "kind"), [
    *(pytest.param("plain", kind, id=f"plain-{kind}") for kind in HOSTILE),
    # JSON carries text: no %-escaped bytes (for raw ones see test_fuzz_esl.py)
    *(pytest.param("json", kind, id=f"json-{kind}") for kind in HOSTILE if kind != "bad-utf8"),
], indirect=["world"])
def test_hostile_caller_ids_are_stored_verbatim(world, caplog, kind):
    value = HOSTILE[kind]
    # as the daemon reads it (bad bytes: U+FFFD); PostgreSQL text holds no NUL (U+FFFD too)
    expected = BAD_UTF8_READ if value == BAD_UTF8 else value.replace("\x00", "\ufffd")
    before = world.balance(P1)
    uuid = _call(world, P1, UK, caller=value)
    seconds = _billed(world.wait(uuid))
    world.wait_cdr(uuid)
    doc = world.cdr(uuid)
    assert doc["cdr"]["caller"] == expected
    assert (doc["cdr"]["billed_seconds"], doc["cdr"]["total_cost"]) == (
        seconds, seconds * NORMAL_COST)
    assert world.balance(P1) == before - seconds * NORMAL_COST
    assert world.pg_balance(P1) == world.balance(P1)
    _normal_call_is_billed_exactly(world)
    _tables_intact(world)
    _nothing_crashed(caplog)


def test_hostile_destinations_are_refused_as_unrated(world, caplog):
    for value in HOSTILE.values():
        _refused_with(world, caplog, "no_rate", account=P1, destination=value)
        _normal_call_is_billed_exactly(world)
        _refused_with(world, caplog, "no_rate", account=P1, destination=UK,
                      variables={"rater_destination": value})
        _normal_call_is_billed_exactly(world)
    _tables_intact(world)
    _nothing_crashed(caplog)


class Mishandled(AssertionError):
    """A hostile call the daemon did not handle as promised."""


@pytest.mark.parametrize("suffix", [
    pytest.param(SQL, id="sql"),
    pytest.param("\n", id="newline"),
    pytest.param("\x00", id="nul"),
    pytest.param(",set:x=1", id="comma"),
    pytest.param("\x01", id="ctrl-a"),
    pytest.param(BAD_UTF8, id="bad-utf8"),
])
def test_a_rated_prefix_followed_by_hostile_bytes(world, caplog, suffix):
    """`44...` then anything: the rate matches, so the call is either refused with a clear
    reason (hung up with a configured cause, counted) or rated, its destination stored as
    it came (U+FFFD for bytes that are not UTF-8 or cannot be stored)."""
    value = UK + suffix
    refused = sum(_refused(world, r) for r in world.cfg.rating.hangup_causes)
    uuid = _call(world, P1, value, park_timeout=5.0)  # a decision takes milliseconds
    ch = world.wait(uuid)
    # whatever became of it, the daemon goes on and the money adds up
    _normal_call_is_billed_exactly(world)
    world.settle()
    assert world.pg_balance(P1) == world.balance(P1)
    _tables_intact(world)
    # the verdict on the hostile call itself
    crashed = [r.getMessage()[:200] for r in caplog.records if r.exc_info]
    if crashed:
        raise Mishandled(f"handling the call crashed: {crashed}")
    if ch.answered_us:
        world.wait_cdr(uuid)
        stored = value.replace(BAD_UTF8, BAD_UTF8_READ).replace("\x00", "\ufffd")
        assert world.cdr(uuid)["cdr"]["destination"] == stored
    elif ch.cause not in set(world.cfg.rating.hangup_causes.values()):
        raise Mishandled(f"neither rated nor refused: ended {ch.cause} by the {ch.hangup_by}")
    else:
        assert sum(_refused(world, r) for r in world.cfg.rating.hangup_causes) == refused + 1


def test_a_10kb_destination_on_a_rated_prefix_is_stored_verbatim(world, caplog):
    uuid = _call(world, P1, "44" + LONG)
    ch = world.wait(uuid)
    assert ch.answered_us and ch.transfers[-1][0] == "44" + LONG
    world.wait_cdr(uuid)
    assert world.cdr(uuid)["cdr"]["destination"] == "44" + LONG
    _normal_call_is_billed_exactly(world)
    _tables_intact(world)
    _nothing_crashed(caplog)


def test_hostile_dids_are_refused_as_unknown(world, caplog):
    for value in [*HOSTILE.values(), DID_IN + SQL, DID_IN + "\n", "+" + SQL]:
        _refused_with(world, caplog, "unknown_account", account=None, destination=value,
                      direction="inbound")
        _normal_call_is_billed_exactly(world)
    # and the real DID still works, billed to its owner
    uuid = _call(world, None, DID_IN, direction="inbound")
    world.wait(uuid)
    world.wait_cdr(uuid)
    assert world.cdr(uuid)["cdr"]["account"] == IN
    _tables_intact(world)
    _nothing_crashed(caplog)


def test_log_lines_carrying_hostile_values_stay_one_line(world, caplog):
    forged = "x\n2026-01-01 00:00:00,000 INFO rater.calls.handler: call forged: admitted"
    _refused_with(world, caplog, "unknown_account", account=forged, destination=UK)
    _refused_with(world, caplog, "unknown_account", account=None, destination=forged,
                  direction="inbound")
    _refused_with(world, caplog, "no_rate", account=P1, destination=forged)
    _normal_call_is_billed_exactly(world)
    _nothing_crashed(caplog)
    # the JSON format escapes them by construction
    formatter = JsonFormatter()
    assert [r.getMessage()[:200] for r in caplog.records
            if "\n" in formatter.format(r)] == []
    split = _split_log_lines(caplog)
    if split:
        raise Mishandled(f"{len(split)} log records span several lines: {split[:3]}")
