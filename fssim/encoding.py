"""Header values encoded the way FreeSWITCH serializes events: url-encoded in plain events,
cJSON-escaped in json ones (`ARRAY::a|:b` variables as arrays). Memoized: a call's values
recur in every event of the call."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

# switch_url_encode: SWITCH_URL_UNSAFE, control characters and non-ASCII bytes become %XX.
_URL_UNSAFE = "\r\n #%&+:;<=>?@[\\]^`{|}\""
_URL_TABLE = {c: f"%{c:02X}" for c in range(0x80) if c < 0x20 or c == 0x7F or chr(c) in _URL_UNSAFE}
_URL_NEEDS = re.compile("[^\x21-\x7e]|[" + re.escape(_URL_UNSAFE) + "]")
_JSON_NEEDS = re.compile(r'["\\\x00-\x1f]')
# Encoded forms of recurring values (callers, destinations, dates) and of whole header-line
# blocks (a call's variables render in every event of the call): bounded, cleared when full.
_URL_MEMO: dict[str, str] = {}
_PLAIN_LINES_MEMO: dict[tuple[tuple[str, str], ...], str] = {}
_JSON_LINES_MEMO: dict[tuple[tuple[str, str], ...], str] = {}


def _memo_put(memo: dict[Any, str], key: Any, value: str) -> str:
    if len(memo) > 8192:
        memo.clear()
    memo[key] = value
    return value


def plain_lines(lines: Sequence[tuple[str, str]]) -> str:
    """`Name: value\n` lines, url-encoded (memoized per tuple of lines: first by the
    tuple's identity, which a channel's cached variables keep between its events and
    which costs no hashing of every line, then by value)."""
    if not lines:
        return ""
    known = _PLAIN_LINES_BY_ID.get(id(lines))
    if known is not None and known[0] is lines:
        return known[1]
    key = lines if isinstance(lines, tuple) else tuple(lines)
    text = _PLAIN_LINES_MEMO.get(key)
    if text is None:
        text = _memo_put(_PLAIN_LINES_MEMO, key,
                         "".join(f"{n}: {url_encode(v)}\n" for n, v in key))
    if key is lines:  # the entry holds the tuple, so its id cannot be reused meanwhile
        if len(_PLAIN_LINES_BY_ID) > 8192:
            _PLAIN_LINES_BY_ID.clear()
        _PLAIN_LINES_BY_ID[id(lines)] = (lines, text)
    return text


_PLAIN_LINES_BY_ID: dict[int, tuple[tuple[tuple[str, str], ...], str]] = {}


def json_lines(lines: Sequence[tuple[str, str]]) -> str:
    """`"Name":value,` members (memoized per tuple of lines)."""
    if not lines:
        return ""
    key = lines if isinstance(lines, tuple) else tuple(lines)
    text = _JSON_LINES_MEMO.get(key)
    if text is None:
        text = _memo_put(_JSON_LINES_MEMO, key,
                         "".join(f'"{json_string(n)}":{json_value(v)},' for n, v in key))
    return text


def url_encode(value: str) -> str:
    """Encode a header value the way FreeSWITCH serializes plain events."""
    if value.isalnum() and value.isascii():  # digits and letters never need it (callers)
        return value
    encoded = _URL_MEMO.get(value)
    if encoded is not None:
        return encoded
    if _URL_NEEDS.search(value) is None:
        encoded = value
    else:
        if value.isascii():
            encoded = value.translate(_URL_TABLE)
        else:
            encoded = "".join(
                chr(b).translate(_URL_TABLE) if b < 0x80 else f"%{b:02X}" for b in value.encode()
            )
    if len(_URL_MEMO) > 8192:
        _URL_MEMO.clear()
    _URL_MEMO[value] = encoded
    return encoded


def json_string(value: str) -> str:
    """The inside of a JSON string literal, escaped like cJSON (non-ASCII kept as UTF-8)."""
    if _JSON_NEEDS.search(value) is None:
        return value
    return json.dumps(value, ensure_ascii=False)[1:-1]


def json_value(value: str) -> str:
    """A JSON member value: FreeSWITCH renders `ARRAY::a|:b` variables as arrays."""
    if value.startswith("ARRAY::"):
        items = value[7:].split("|:")
        return "[" + ",".join(f'"{json_string(i)}"' for i in items) + "]"
    return f'"{json_string(value)}"'
