"""The plain-event reader: `PlainEvent`, a text/event-plain event read by targeted byte
searches, never split into its ~230 lines (see PlainEvent)."""

from __future__ import annotations

import re
from typing import Final, NamedTuple
from urllib.parse import unquote

from rater.errors import MalformedFrame
from rater.esl.events import ACCESSOR_HEADERS, INT_ACCESSORS, ChannelEvent, first_wins
from rater.esl.names import Header

_VARIABLES: Final = b"\n" + Header.VARIABLE_PREFIX.encode()
_CONTENT_LENGTH_LINE: Final = b"\n" + Header.CONTENT_LENGTH.encode() + b": "
_CONTENT_LENGTH_FIRST: Final = Header.CONTENT_LENGTH.encode() + b": "
_BLANK_LINE_BYTES = re.compile(b"\n\n")  # much faster than bytes.find for "\n\n"


class _Plan(NamedTuple):
    """How a plain event finds header `name`: `needle` is b"\\n<name>: ". Names that share
    a prefix are found from their group's first line: `group` (a prefix of the needle),
    itself searched from the first line of `parent` (None: from the top)."""

    needle: bytes
    group: bytes | None
    parent: bytes | None


# header name -> _Plan (a bounded cache: names come from code, rarely from elsewhere)
_PLANS: dict[str, _Plan] = {}
_MAX_PLANS: Final = 4096


# Caller-Channel-{Created,Answered,Hangup}-Time sit together ~2 KB into an event: found
# from their group's first line, the second and third read cost next to nothing.
_CHANNEL_TIMES: Final = b"\nCaller-Channel-"


def _plan(name: str) -> _Plan:
    """Variables are searched by groups sharing their first 4 letters (billsec, billmsec
    and billusec; rater_*), under "\\nvariable_"; the channel times by theirs; other names
    on their own (a group costs a search of its own: worth it only when several of its
    names are read, far into the event)."""
    needle = b"\n" + name.encode("utf-8", "surrogateescape") + b": "
    if needle.startswith(_VARIABLES):
        plan = _Plan(needle, needle[: len(_VARIABLES) + 4], _VARIABLES)
    elif needle.startswith(_CHANNEL_TIMES):
        plan = _Plan(needle, _CHANNEL_TIMES, None)
    else:
        plan = _Plan(needle, None, None)
    if len(_PLANS) < _MAX_PLANS:
        _PLANS[name] = plan
    return plan


class PlainEvent(ChannelEvent):
    """A text/event-plain event: a header block of URL-encoded values up to the first
    blank line, then, when the block has a `Content-Length`, that many bytes of body.

    The event is neither decoded nor split into its ~230 lines: a header read is a
    `bytes.find` of `\\n<name>: ` (the first one wins) and only the value read is
    decoded. Searches share work (see `_plan`): the first read of a `variable_*` finds
    where the variables start (FreeSWITCH writes them after the event's own headers);
    names with a common prefix are searched from their group's first line, found once.
    A body is only possible when the block has a Content-Length (FreeSWITCH writes it
    as the last header, exactly when there is a body); only then is the blank line that
    ends the block located and every search bounded by it, so nothing is ever read from
    a body.
    """

    __slots__ = ("_extra", "_first", "_groups", "_limit", "_name", "_raw")

    def __init__(self, raw: bytes, offset: int = 0) -> None:
        self.offset = offset
        self._raw = raw
        self._limit = -1  # end of the header block (byte index), located on first read
        self._groups: dict[bytes, int] | None = None  # group -> its first line (-1: none)
        self._extra: list | None = None  # [headers dict | None, (body,) | None], on demand
        self._name: str | None = None  # Event-Name, decoded once
        sep = raw.find(b": ")
        newline = raw.find(b"\n", 0, sep) if sep > 0 else -1
        if sep <= 0 or newline >= 0:
            text = raw[:256].decode("utf-8", "surrogateescape")
            raise MalformedFrame(
                f"event line 1 is not 'Name: value' ({text[:60]!r}) "
                f"in the frame at byte offset {offset}"
            )
        newline = raw.find(b"\n", sep)
        self._first = (raw[:sep].decode("utf-8", "surrogateescape"),
                       raw[sep + 2 :] if newline < 0 else raw[sep + 2 : newline])

    @property
    def name(self) -> str:
        name = self._name
        if name is None:
            key, value = self._first  # FreeSWITCH writes Event-Name first: no scan needed
            if key == Header.EVENT_NAME:
                text = value.decode("utf-8", "surrogateescape")
                name = unquote(text) if "%" in text else text
            else:
                name = self.get(Header.EVENT_NAME) or ""
            self._name = name
        return name

    def _locate(self) -> int:
        """The end of the header block: the whole event unless it has a Content-Length."""
        raw = self._raw
        if raw.rfind(_CONTENT_LENGTH_LINE) < 0 and not raw.startswith(_CONTENT_LENGTH_FIRST):
            limit = len(raw)  # no Content-Length, so no body: all of it is headers
        else:
            limit = self._block_end()
        self._limit = limit
        return limit

    def _block_end(self) -> int:
        """Byte index of the blank line that ends the header block."""
        blank = _BLANK_LINE_BYTES.search(self._raw)
        return len(self._raw.rstrip(b"\n")) if blank is None else blank.start()

    def _raw_value(self, name: str) -> bytes | None:
        """The raw (still URL-encoded) value of the first header `name`, or None."""
        return self._lookup(name, _PLANS.get(name) or _plan(name))

    def _lookup(self, name: str, plan: _Plan) -> bytes | None:
        first = self._first
        if name == first[0]:
            return first[1]
        limit = self._limit
        if limit < 0:
            limit = self._locate()
        raw = self._raw
        needle, group, parent = plan
        if group is None:
            at = raw.find(needle, 0, limit)
        else:
            # Every line of `needle` is a line of its group, and every line of the group
            # a line of its parent: each search starts where the wider one found its first.
            groups = self._groups
            if groups is None:
                groups = self._groups = {}
            start = groups.get(group)
            if start is None:
                base = 0
                if parent is not None:
                    base = groups.get(parent, -2)
                    if base == -2:
                        base = groups[parent] = raw.find(parent, 0, limit)
                start = groups[group] = -1 if base < 0 else raw.find(group, base, limit)
            if start < 0:
                return None
            at = raw.find(needle, start, limit)
        if at < 0:
            return None
        at += len(needle)
        stop = raw.find(b"\n", at)
        return raw[at:] if stop < 0 else raw[at:stop]

    def get(self, name: str) -> str | None:
        value = self._lookup(name, _PLANS.get(name) or _plan(name))
        if value is None:
            return None
        text = value.decode("utf-8", "surrogateescape")
        return unquote(text) if "%" in text else text

    def _int(self, name: str) -> int | None:
        value = self._lookup(name, _PLANS.get(name) or _plan(name))
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:  # raises, naming the header (or takes non-ASCII digits)
            return self._int_checked(name, value.decode("utf-8", "surrogateescape"))

    def header_items(self) -> list[tuple[str, str]]:
        """Every header line in order, duplicates kept, values decoded."""
        block = self._raw[: self._block_end()].decode("utf-8", "surrogateescape")
        items = []
        for number, line in enumerate(block.split("\n"), start=1):
            key, sep, value = line.partition(": ")
            if not sep or not key:
                raise MalformedFrame(
                    f"event line {number} is not 'Name: value' ({line[:60]!r}) "
                    f"in the frame at byte offset {self.offset}"
                )
            items.append((key, unquote(value) if "%" in value else value))
        return items

    @property
    def headers(self) -> dict[str, str]:
        extra = self._extra
        if extra is None:
            extra = self._extra = [None, None]
        if extra[0] is None:
            items = self.header_items()
            headers = dict(items)  # wire order, last value of a repeated name ...
            if len(headers) != len(items):
                headers.update(first_wins(items))  # ... so put the first one back
            extra[0] = headers
        return extra[0]

    @property
    def body_bytes(self) -> bytes | None:
        """The raw body (exactly Content-Length bytes), or None."""
        size = self._int(Header.CONTENT_LENGTH)
        if size is None:
            return None
        blank = _BLANK_LINE_BYTES.search(self._raw)
        start = -1 if blank is None else blank.end()
        body = self._raw[start : start + size]
        if start < 0 or len(body) != size:
            raise MalformedFrame(
                f"event body shorter than its Content-Length {size} "
                f"in the frame at byte offset {self.offset}"
            )
        return body

    @property
    def body(self) -> str | None:
        extra = self._extra
        if extra is None:
            extra = self._extra = [None, None]
        if extra[1] is None:
            raw = self.body_bytes
            extra[1] = (None if raw is None else raw.decode("utf-8", "replace"),)
        return extra[1][0]


def _plain_accessor(name: str, *, as_int: bool, doc: str | None) -> property:
    """A PlainEvent accessor for header `name` with its search planned once: the same
    answer as ChannelEvent's, with fewer calls on the hot path (a header searched on its
    own is searched right here)."""
    plan = _plan(name)
    needle, group, _parent = plan
    skip = len(needle)

    def raw_value(self: PlainEvent) -> bytes | None:
        if group is not None:
            return self._lookup(name, plan)
        first = self._first
        if name == first[0]:
            return first[1]
        limit = self._limit
        if limit < 0:
            limit = self._locate()
        raw = self._raw
        at = raw.find(needle, 0, limit)
        if at < 0:
            return None
        at += skip
        stop = raw.find(b"\n", at)
        return raw[at:] if stop < 0 else raw[at:stop]

    def read_int(self: PlainEvent) -> int | None:
        value = raw_value(self)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            return self._int_checked(name, value.decode("utf-8", "surrogateescape"))

    def read_text(self: PlainEvent) -> str | None:
        value = raw_value(self)
        if value is None:
            return None
        text = value.decode("utf-8", "surrogateescape")
        return unquote(text) if "%" in text else text

    return property(read_int if as_int else read_text, doc=doc)


for _accessor, _header in ACCESSOR_HEADERS.items():
    setattr(PlainEvent, _accessor, _plain_accessor(
        _header, as_int=_accessor in INT_ACCESSORS,
        doc=getattr(ChannelEvent, _accessor).__doc__))
del _accessor, _header
