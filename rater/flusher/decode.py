"""Outbox entry (the JSON written by commit.lua / apply.lua) -> typed rows, validated.

Every value is checked for its exact type and range before it reaches PostgreSQL: money is an
integer (a float, a string or a bool is an error), counts fit their column, timestamps are
microseconds since the epoch. A bad entry raises MalformedEntry naming the field. PostgreSQL
text cannot hold NUL: one in the CDR's caller or destination (text from the caller) becomes
U+FFFD, anywhere else it is an error.

Rows are plain tuples in the column order of the flusher's staging tables (writer.py):

    cdr           uuid account direction caller destination node created_usec answered_usec
                  hangup_usec billed_seconds hangup_cause settlement total_cost at_usec
    charge        cdr_uuid level account rate_group prefix price_per_min charged_seconds
                  free_seconds cost
    usage         cdr_uuid order_id account period_no seconds
    ledger        id account amount kind ref at_usec
    notification  id account kind payload_json at_usec
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

INT2_MAX = 2**15 - 1
INT4_MAX = 2**31 - 1
INT8_MIN, INT8_MAX = -(2**63), 2**63 - 1
USEC_MAX = 10**17   # year ~5100: keeps 'epoch' + usec inside PostgreSQL's timestamp range
DIRECTIONS = ("outbound", "inbound")

_MISSING = object()


class MalformedEntry(ValueError):
    """An outbox entry that cannot become rows; the message says which field and why."""


@dataclass(slots=True)
class EntryRows:
    """The rows of one outbox entry."""

    op: str
    id: str
    cdrs: list[tuple] = field(default_factory=list)
    charges: list[tuple] = field(default_factory=list)
    usage: list[tuple] = field(default_factory=list)
    ledger: list[tuple] = field(default_factory=list)
    notifications: list[tuple] = field(default_factory=list)


def decode_fields(fields: dict[Any, Any] | None) -> EntryRows | None:
    """Decode a stream entry's field map; None for an entry deleted from the stream (nothing
    to write, only to acknowledge)."""
    if not fields:
        return None
    raw = fields.get(b"e", fields.get("e", _MISSING))
    if raw is _MISSING:
        names = sorted(_text(k) for k in fields)
        raise MalformedEntry(f"no 'e' field (fields: {', '.join(names)})")
    return decode_entry(raw)


def decode_entry(raw: bytes | str) -> EntryRows:
    """Decode one entry's JSON document into rows, or raise MalformedEntry."""
    try:
        doc = json.loads(raw)
    except (ValueError, TypeError) as exc:   # JSONDecodeError and UnicodeDecodeError
        raise MalformedEntry(f"not valid JSON: {exc}") from None
    if type(doc) is not dict:
        raise MalformedEntry(f"expected a JSON object, got {type(doc).__name__}")
    op = doc.get("op")
    entry_id = _str(doc, "id", "")
    if not entry_id:
        raise MalformedEntry("id: must not be empty")
    at = _usec(doc, "at", "")
    if op == "commit":
        rows = _fast_commit(doc, entry_id, at) or _decode_commit(doc, entry_id, at)
    elif op == "money":
        rows = EntryRows("money", entry_id)
        rows.ledger = _fast_ledger(doc, at) or _ledger(doc, at)
        extra = doc.get("extra")
        if type(extra) is dict and "notifications" in extra:
            rows.notifications = _notifications(extra["notifications"], at)
    else:
        raise MalformedEntry(f"op: expected 'commit' or 'money', got {op!r}")
    if (b"\\u0000" in raw) if isinstance(raw, bytes) else ("\\u0000" in raw):
        _replace_nul_in_free_text(rows)
        _reject_nul(rows)
    return rows


# --- the common case, fast ---------------------------------------------------------------
# Build the rows straight from the document and check all their types at once. Anything
# unusual (a missing key, a wrong type, a value out of range, a duplicate) returns None and
# goes through the field-by-field checks below, which accept all this accepts and name the
# problem when there is one.

_CDR_TYPES = (str,) * 6 + (int,) * 4 + (str, str, int, int)
_CHARGE_TYPES = (str, int, str, str, str, int, int, int, int)
_LEDGER_TYPES = (str, str, int, str, str, int)


def _fast_commit(doc: dict, uuid: str, at: int) -> EntryRows | None:
    try:
        c = doc["cdr"]
        cdr = (c["uuid"], c["account"], c["direction"], c["caller"], c["destination"],
               c["node"], c["created_usec"], c["answered_usec"], c["hangup_usec"],
               c["billed_seconds"], c["hangup_cause"], c["settlement"], c["total_cost"], at)
        charges = [(uuid, x["level"], x["account"], x["rate_group"], x["prefix"],
                    x["price_per_min"], x["charged_seconds"], x["free_seconds"], x["cost"])
                   for x in doc["charges"]]
        usage = doc["usage"]
    except (KeyError, TypeError):
        return None
    if (type(c) is not dict or tuple(map(type, cdr)) != _CDR_TYPES or cdr[0] != uuid
            or cdr[2] not in DIRECTIONS or type(doc["charges"]) is not list
            or type(usage) is not list
            or not (0 <= cdr[6] <= USEC_MAX and 0 <= cdr[7] <= USEC_MAX
                    and 0 <= cdr[8] <= USEC_MAX and 0 <= cdr[9] <= INT4_MAX
                    and INT8_MIN <= cdr[12] <= INT8_MAX)):
        return None
    for r in charges:
        if (tuple(map(type, r)) != _CHARGE_TYPES
                or not (0 <= r[1] <= INT2_MAX and INT8_MIN <= r[5] <= INT8_MAX
                        and 0 <= r[6] <= INT4_MAX and 0 <= r[7] <= INT4_MAX
                        and INT8_MIN <= r[8] <= INT8_MAX)):
            return None
    if len({r[1] for r in charges}) != len(charges):
        return None
    ledger = _fast_ledger(doc, at)
    if ledger is None:
        return None
    rows = EntryRows("commit", uuid, [cdr], charges, [], ledger)
    if usage:
        rows.usage = _usage(doc, uuid)
    return rows


def _fast_ledger(doc: dict, at: int) -> list[tuple] | None:
    """The ledger rows, or None (also for an empty ledger: the checked path is as quick)."""
    try:
        items = doc["ledger"]
        ledger = [(x["id"], x["account"], x["amount"], x["kind"], x["ref"], at) for x in items]
    except (KeyError, TypeError):
        return None
    if type(items) is not list or not ledger:
        return None
    for r in ledger:
        if tuple(map(type, r)) != _LEDGER_TYPES or not r[0] or not (
                INT8_MIN <= r[2] <= INT8_MAX):
            return None
    if len({r[0] for r in ledger}) != len(ledger):
        return None
    return ledger


# --- the two kinds of entry, field by field ---------------------------------------------

def _decode_commit(doc: dict, uuid: str, at: int) -> EntryRows:
    cdr = doc.get("cdr", _MISSING)
    if type(cdr) is not dict:
        raise _wrong(cdr, "cdr", "an object")
    w = "cdr."
    if _str(cdr, "uuid", w) != uuid:
        raise MalformedEntry(f"cdr.uuid: {cdr['uuid']!r} differs from the entry id {uuid!r}")
    direction = _str(cdr, "direction", w)
    if direction not in DIRECTIONS:
        raise MalformedEntry(f"cdr.direction: expected outbound or inbound, got {direction!r}")
    rows = EntryRows("commit", uuid)
    rows.cdrs.append((
        uuid, _str(cdr, "account", w), direction, _str(cdr, "caller", w),
        _str(cdr, "destination", w), _str(cdr, "node", w), _usec(cdr, "created_usec", w),
        _usec(cdr, "answered_usec", w), _usec(cdr, "hangup_usec", w),
        _int(cdr, "billed_seconds", w, 0, INT4_MAX), _str(cdr, "hangup_cause", w),
        _str(cdr, "settlement", w), _int(cdr, "total_cost", w, INT8_MIN, INT8_MAX), at,
    ))

    levels: set[int] = set()
    for i, c in enumerate(_list(doc, "charges")):
        w = f"charges[{i}]."
        if type(c) is not dict:
            raise MalformedEntry(f"charges[{i}]: expected an object, got {_kind(c)}")
        level = _int(c, "level", w, 0, INT2_MAX)
        if level in levels:
            raise MalformedEntry(f"charges[{i}].level: level {level} appears twice")
        levels.add(level)
        rows.charges.append((
            uuid, level, _str(c, "account", w), _str(c, "rate_group", w), _str(c, "prefix", w),
            _int(c, "price_per_min", w, INT8_MIN, INT8_MAX),
            _int(c, "charged_seconds", w, 0, INT4_MAX), _int(c, "free_seconds", w, 0, INT4_MAX),
            _int(c, "cost", w, INT8_MIN, INT8_MAX),
        ))

    rows.usage = _usage(doc, uuid)
    rows.ledger = _ledger(doc, at)
    return rows


def _usage(doc: dict, uuid: str) -> list[tuple]:
    by_order: dict[str, list] = {}
    for i, u in enumerate(_list(doc, "usage")):
        w = f"usage[{i}]."
        if type(u) is not dict:
            raise MalformedEntry(f"usage[{i}]: expected an object, got {_kind(u)}")
        order = _str(u, "order", w)
        row = [uuid, order, _str(u, "account", w), _int(u, "period", w, 0, INT4_MAX),
               _int(u, "seconds", w, 1, INT4_MAX)]
        seen = by_order.get(order)
        if seen is None:
            by_order[order] = row
        elif seen[2:4] == row[2:4]:   # the same bucket twice in one leg: one row, summed
            seen[4] += row[4]
            if seen[4] > INT4_MAX:
                raise MalformedEntry(f"usage[{i}].seconds: total for order {order} too large")
        else:
            raise MalformedEntry(f"usage[{i}]: order {order!r} appears twice with different "
                                 "account or period")
    return [tuple(r) for r in by_order.values()]


def _ledger(doc: dict, at: int) -> list[tuple]:
    out = []
    ids: set[str] = set()
    for i, e in enumerate(_list(doc, "ledger")):
        w = f"ledger[{i}]."
        if type(e) is not dict:
            raise MalformedEntry(f"ledger[{i}]: expected an object, got {_kind(e)}")
        entry_id = _str(e, "id", w)
        if not entry_id:
            raise MalformedEntry(f"ledger[{i}].id: must not be empty")
        if entry_id in ids:
            raise MalformedEntry(f"ledger[{i}].id: {entry_id!r} appears twice")
        ids.add(entry_id)
        out.append((entry_id, _str(e, "account", w), _int(e, "amount", w, INT8_MIN, INT8_MAX),
                    _str(e, "kind", w), _str(e, "ref", w), at))
    return out


def _notifications(value: Any, at: int) -> list[tuple]:
    if type(value) is not list:
        raise MalformedEntry(f"extra.notifications: expected a list, got {_kind(value)}")
    out = []
    for i, n in enumerate(value):
        w = f"extra.notifications[{i}]."
        if type(n) is not dict:
            raise MalformedEntry(f"extra.notifications[{i}]: expected an object, got {_kind(n)}")
        entry_id = _str(n, "id", w)
        if not entry_id:
            raise MalformedEntry(f"{w}id: must not be empty")
        payload = n.get("payload", {})
        out.append((entry_id, _str(n, "account", w), _str(n, "kind", w),
                    json.dumps(payload, separators=(",", ":")), at))
    return out


# --- typed getters ------------------------------------------------------------------------

def _str(d: dict, key: str, where: str) -> str:
    v = d.get(key, _MISSING)
    if type(v) is str:
        return v
    raise _wrong(v, where + key, "a string")


def _int(d: dict, key: str, where: str, lo: int, hi: int) -> int:
    v = d.get(key, _MISSING)
    if type(v) is int and lo <= v <= hi:
        return v
    if type(v) is int:
        raise MalformedEntry(f"{where}{key}: {v} is outside [{lo}, {hi}]")
    raise _wrong(v, where + key, "an integer")


def _usec(d: dict, key: str, where: str) -> int:
    return _int(d, key, where, 0, USEC_MAX)


def _list(d: dict, key: str) -> list:
    v = d.get(key, _MISSING)
    if type(v) is list:
        return v
    raise _wrong(v, key, "a list")


def _wrong(v: Any, path: str, expected: str) -> MalformedEntry:
    if v is _MISSING:
        return MalformedEntry(f"{path}: missing")
    return MalformedEntry(f"{path}: expected {expected}, got {_kind(v)} {_short(v)}")


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number with a fraction", type(None): "null"}.get(
        type(v), type(v).__name__)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


# CDR columns whose text comes from the caller: the caller id and the number dialled.
_CDR_FREE_TEXT = (3, 4)


def _replace_nul_in_free_text(rows: EntryRows) -> None:
    # A caller can put a NUL in its caller id or the number it dials; PostgreSQL text cannot
    # hold one. Kept as U+FFFD, so the CDR and the money it carries still reach PostgreSQL
    # (a dead letter would leave the ledger there short of what Redis charged).
    rows.cdrs = [tuple(v.replace("\x00", "\ufffd") if i in _CDR_FREE_TEXT else v
                       for i, v in enumerate(row)) for row in rows.cdrs]


def _reject_nul(rows: EntryRows) -> None:
    # PostgreSQL text cannot hold NUL; say where instead of failing the whole batch there.
    for table in ("cdrs", "charges", "usage", "ledger", "notifications"):
        for row in getattr(rows, table):
            for v in row:
                if isinstance(v, str) and "\x00" in v:
                    raise MalformedEntry(f"{table}: text {_short(v)} contains a NUL character")


def _text(v: Any) -> str:
    return v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v)
