"""Frame -> typed message. Every header and event name the daemon uses lives here.

`parse_frame()` turns a Frame into one of the message types below. Events (plain or
JSON) become a `ChannelEvent` whose accessors decode a value only when it is read.

Plain events are not split into their ~230 lines: each header read finds its own line
(see PlainEvent). Where a header repeats (FreeSWITCH sends `Hangup-Cause` twice), the
first one wins, for plain and JSON alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple
from urllib.parse import unquote

from rater.errors import MalformedFrame
from rater.esl import frames
from rater.esl.frames import Frame


class Header:
    """Header names."""

    CONTENT_TYPE: Final = frames.CONTENT_TYPE
    CONTENT_LENGTH: Final = frames.CONTENT_LENGTH
    CONTENT_DISPOSITION: Final = "Content-Disposition"
    REPLY_TEXT: Final = "Reply-Text"
    JOB_UUID: Final = "Job-UUID"
    JOB_COMMAND: Final = "Job-Command"
    EVENT_NAME: Final = "Event-Name"
    EVENT_SUBCLASS: Final = "Event-Subclass"
    CORE_UUID: Final = "Core-UUID"
    EVENT_SEQUENCE: Final = "Event-Sequence"
    EVENT_DATE_TIMESTAMP: Final = "Event-Date-Timestamp"
    UNIQUE_ID: Final = "Unique-ID"
    CHANNEL_CALL_UUID: Final = "Channel-Call-UUID"
    CALL_DIRECTION: Final = "Call-Direction"
    ANSWER_STATE: Final = "Answer-State"
    HANGUP_CAUSE: Final = "Hangup-Cause"
    CALLER_ID_NUMBER: Final = "Caller-Caller-ID-Number"
    DESTINATION_NUMBER: Final = "Caller-Destination-Number"
    CREATED_TIME: Final = "Caller-Channel-Created-Time"
    ANSWERED_TIME: Final = "Caller-Channel-Answered-Time"
    HANGUP_TIME: Final = "Caller-Channel-Hangup-Time"
    JSON_BODY: Final = "_body"  # the body of a text/event-json event
    VARIABLE_PREFIX: Final = "variable_"


class Var:
    """Channel variable names (read as `variable_<name>`)."""

    BILLSEC: Final = "billsec"
    BILLMSEC: Final = "billmsec"
    BILLUSEC: Final = "billusec"
    ACCOUNTCODE: Final = "accountcode"
    RATER_DIRECTION: Final = "rater_direction"
    RATER_ACCOUNT: Final = "rater_account"
    RATER_DESTINATION: Final = "rater_destination"


class EventName:
    """Event names (the value of Event-Name) and the subscription wildcard."""

    ALL: Final = "ALL"
    CUSTOM: Final = "CUSTOM"
    HEARTBEAT: Final = "HEARTBEAT"
    BACKGROUND_JOB: Final = "BACKGROUND_JOB"
    SHUTDOWN: Final = "SHUTDOWN"
    CHANNEL_CREATE: Final = "CHANNEL_CREATE"
    CHANNEL_PARK: Final = "CHANNEL_PARK"
    CHANNEL_ANSWER: Final = "CHANNEL_ANSWER"
    CHANNEL_HANGUP: Final = "CHANNEL_HANGUP"
    CHANNEL_HANGUP_COMPLETE: Final = "CHANNEL_HANGUP_COMPLETE"
    CHANNEL_DESTROY: Final = "CHANNEL_DESTROY"


class ContentType:
    AUTH_REQUEST: Final = "auth/request"
    COMMAND_REPLY: Final = "command/reply"
    API_RESPONSE: Final = "api/response"
    EVENT_PLAIN: Final = "text/event-plain"
    EVENT_JSON: Final = "text/event-json"
    DISCONNECT_NOTICE: Final = "text/disconnect-notice"
    RUDE_REJECTION: Final = "text/rude-rejection"


class EventFormat:
    PLAIN: Final = "plain"
    JSON: Final = "json"


LINGER: Final = "linger"  # Content-Disposition of a disconnect notice in linger mode


# --- replies and notices ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AuthRequest:
    """FreeSWITCH asks for the password (first frame of every connection)."""


@dataclass(frozen=True, slots=True)
class CommandReply:
    """Answer to an ESL command (auth, event, filter, bgapi, exit ...)."""

    text: str
    job_uuid: str | None = None

    @property
    def ok(self) -> bool:
        return self.text.startswith("+OK")


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """Answer to `api`: the command's output, verbatim."""

    body: str


@dataclass(frozen=True, slots=True)
class DisconnectNotice:
    body: str
    linger: bool = False


@dataclass(frozen=True, slots=True)
class RudeRejection:
    """The listener's ACL refused this client."""

    body: str


@dataclass(frozen=True, slots=True)
class OtherFrame:
    """A frame of a type the daemon does not use (log/data, ...), kept raw."""

    frame: Frame


Reply = AuthRequest | CommandReply | ApiResponse


# --- events -------------------------------------------------------------------------------

class ChannelEvent:
    """An event, plain or JSON, with typed accessors.

    String accessors return None for an absent header; integer accessors return None
    when absent and raise MalformedFrame when the value is not an integer. Times are
    microseconds since the epoch; 0 means "never" (e.g. answered time of an unanswered
    call).
    """

    __slots__ = ("offset",)

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def get(self, name: str) -> str | None:
        """Decoded value of the first header `name`, or None."""
        raise NotImplementedError

    def _int(self, name: str) -> int | None:
        raise NotImplementedError

    @property
    def headers(self) -> dict[str, str]:
        """Every header, decoded (first wins). Slower than the accessors: use sparingly."""
        raise NotImplementedError

    @property
    def body(self) -> str | None:
        """The event's own body (BACKGROUND_JOB result ...), or None."""
        raise NotImplementedError

    def variable(self, name: str) -> str | None:
        """Channel variable `name` (header `variable_<name>`), or None."""
        return self.get(Header.VARIABLE_PREFIX + name)

    def _int_checked(self, name: str, raw: str | None) -> int | None:
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise MalformedFrame(
                f"{name} is not an integer: {raw[:40]!r} "
                f"(event in the frame at byte offset {self.offset})"
            ) from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.unique_id} @{self.offset}>"

    # Typed accessors: the fields the daemon reads.
    @property
    def name(self) -> str:
        return self.get(Header.EVENT_NAME) or ""

    @property
    def subclass(self) -> str | None:
        return self.get(Header.EVENT_SUBCLASS)

    @property
    def unique_id(self) -> str | None:
        return self.get(Header.UNIQUE_ID)

    @property
    def call_uuid(self) -> str | None:
        return self.get(Header.CHANNEL_CALL_UUID)

    @property
    def core_uuid(self) -> str | None:
        return self.get(Header.CORE_UUID)

    @property
    def sequence(self) -> int | None:
        return self._int(Header.EVENT_SEQUENCE)

    @property
    def timestamp(self) -> int | None:
        """Event-Date-Timestamp, µs since the epoch."""
        return self._int(Header.EVENT_DATE_TIMESTAMP)

    @property
    def created_time(self) -> int | None:
        return self._int(Header.CREATED_TIME)

    @property
    def answered_time(self) -> int | None:
        return self._int(Header.ANSWERED_TIME)

    @property
    def hangup_time(self) -> int | None:
        return self._int(Header.HANGUP_TIME)

    @property
    def billsec(self) -> int | None:
        """Truncated whole seconds: can be one short; prefer billmsec/billusec."""
        return self._int(_V_BILLSEC)

    @property
    def billmsec(self) -> int | None:
        return self._int(_V_BILLMSEC)

    @property
    def billusec(self) -> int | None:
        return self._int(_V_BILLUSEC)

    @property
    def hangup_cause(self) -> str | None:
        return self.get(Header.HANGUP_CAUSE)

    @property
    def destination_number(self) -> str | None:
        return self.get(Header.DESTINATION_NUMBER)

    @property
    def caller_id_number(self) -> str | None:
        return self.get(Header.CALLER_ID_NUMBER)

    @property
    def call_direction(self) -> str | None:
        """FreeSWITCH's channel direction, not the business direction."""
        return self.get(Header.CALL_DIRECTION)

    @property
    def answer_state(self) -> str | None:
        return self.get(Header.ANSWER_STATE)

    @property
    def job_uuid(self) -> str | None:
        return self.get(Header.JOB_UUID)

    @property
    def ordering_key(self) -> str | None:
        """What this event must stay in order with: its channel (Unique-ID), else its
        job (Job-UUID); None for node-wide events (HEARTBEAT ...)."""
        return self.get(Header.UNIQUE_ID) or self.get(Header.JOB_UUID)


_V_BILLSEC = Header.VARIABLE_PREFIX + Var.BILLSEC
_V_BILLMSEC = Header.VARIABLE_PREFIX + Var.BILLMSEC
_V_BILLUSEC = Header.VARIABLE_PREFIX + Var.BILLUSEC

# ChannelEvent accessor -> the header it reads (PlainEvent plans these searches once).
_ACCESSOR_HEADERS: Final = {
    "subclass": Header.EVENT_SUBCLASS, "unique_id": Header.UNIQUE_ID,
    "call_uuid": Header.CHANNEL_CALL_UUID, "core_uuid": Header.CORE_UUID,
    "sequence": Header.EVENT_SEQUENCE, "timestamp": Header.EVENT_DATE_TIMESTAMP,
    "created_time": Header.CREATED_TIME, "answered_time": Header.ANSWERED_TIME,
    "hangup_time": Header.HANGUP_TIME, "billsec": _V_BILLSEC, "billmsec": _V_BILLMSEC,
    "billusec": _V_BILLUSEC, "hangup_cause": Header.HANGUP_CAUSE,
    "destination_number": Header.DESTINATION_NUMBER,
    "caller_id_number": Header.CALLER_ID_NUMBER, "call_direction": Header.CALL_DIRECTION,
    "answer_state": Header.ANSWER_STATE, "job_uuid": Header.JOB_UUID,
}
_INT_ACCESSORS: Final = frozenset({
    "sequence", "timestamp", "created_time", "answered_time", "hangup_time",
    "billsec", "billmsec", "billusec",
})

# --- plain events: targeted byte searches ----------------------------------------------------

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


def _decoded(value: bytes) -> str:
    """A raw plain-event value as text: URL-decoded, a stray byte kept (surrogateescape)."""
    text = value.decode("utf-8", "surrogateescape")
    return unquote(text) if "%" in text else text


def _first_wins(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """dict() keeps the last of repeated names; build it reversed so the first wins
    (the order of the result does not matter to its users). Consumes `pairs`."""
    pairs.reverse()
    return dict(pairs)


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
                headers.update(_first_wins(items))  # ... so put the first one back
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


for _accessor, _header in _ACCESSOR_HEADERS.items():
    setattr(PlainEvent, _accessor, _plain_accessor(
        _header, as_int=_accessor in _INT_ACCESSORS,
        doc=getattr(ChannelEvent, _accessor).__doc__))
del _accessor, _header


def _json_value(value: object) -> str | None:
    """A JSON value as the string plain events carry (arrays as ARRAY::a|:b)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return "ARRAY::" + "|:".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


class JsonEvent(ChannelEvent):
    """A text/event-json event: one JSON object; the body is in `_body`."""

    __slots__ = ("_obj",)

    def __init__(self, raw: bytes, offset: int = 0) -> None:
        super().__init__(offset)
        try:
            # cJSON copies a value's bytes as they are (a SIP display name may not be
            # UTF-8): a bad byte becomes U+FFFD, as a %-escaped one does in plain events,
            # rather than costing the whole event
            obj = json.loads(raw.decode("utf-8", "replace"), object_pairs_hook=_first_wins)
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
            raise MalformedFrame(
                f"bad JSON event in the frame at byte offset {offset}: {exc}"
            ) from None
        if not isinstance(obj, dict):
            raise MalformedFrame(f"JSON event is not an object at byte offset {offset}")
        self._obj: dict[str, object] = obj

    def get(self, name: str) -> str | None:
        value = self._obj.get(name)
        return value if value is None or type(value) is str else _json_value(value)

    def _int(self, name: str) -> int | None:
        return self._int_checked(name, self.get(name))

    @property
    def headers(self) -> dict[str, str]:
        return {
            k: v
            for k, raw in self._obj.items()
            if k != Header.JSON_BODY and (v := _json_value(raw)) is not None
        }

    @property
    def body(self) -> str | None:
        return self.get(Header.JSON_BODY)


Message = (
    AuthRequest | CommandReply | ApiResponse | DisconnectNotice | RudeRejection
    | ChannelEvent | OtherFrame
)


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "replace")


def _command_reply(frame: Frame) -> CommandReply:
    job = frame.header(Header.JOB_UUID)
    return CommandReply(_text(frame.header(Header.REPLY_TEXT)), None if job is None else _text(job))


def _disconnect(frame: Frame) -> DisconnectNotice:
    linger = frame.header(Header.CONTENT_DISPOSITION) == LINGER.encode()
    return DisconnectNotice(_text(frame.body), linger)


_BUILDERS = {
    ContentType.EVENT_PLAIN.encode(): lambda f: PlainEvent(f.body, f.offset),
    ContentType.EVENT_JSON.encode(): lambda f: JsonEvent(f.body, f.offset),
    ContentType.COMMAND_REPLY.encode(): _command_reply,
    ContentType.API_RESPONSE.encode(): lambda f: ApiResponse(_text(f.body)),
    ContentType.AUTH_REQUEST.encode(): lambda f: AuthRequest(),
    ContentType.DISCONNECT_NOTICE.encode(): _disconnect,
    ContentType.RUDE_REJECTION.encode(): lambda f: RudeRejection(_text(f.body)),
}


_PLAIN_TYPE: Final = ContentType.EVENT_PLAIN.encode()


def parse_frame(frame: Frame) -> Message:
    """The typed message a frame carries. Raises MalformedFrame for a bad event."""
    headers = frame[0]
    if len(headers) == 2 and headers[1][1] == _PLAIN_TYPE and headers[1][0] == Header.CONTENT_TYPE:
        return PlainEvent(frame[1], frame[2])  # an event as FreeSWITCH heads it
    build = _BUILDERS.get(frame.header(Header.CONTENT_TYPE) or b"")
    return OtherFrame(frame) if build is None else build(frame)


# --- serialisers (the simulator and tests) --------------------------------------------------

# What switch_url_encode() escapes, besides control and non-ASCII bytes.
_URL_UNSAFE = frozenset(b'\r\n "#%&+:;<=>?@[\\]^`{|}')


def url_encode(value: str) -> str:
    """Encode a header value the way FreeSWITCH does in plain events."""
    raw = value.encode("utf-8")
    if all(32 <= b <= 126 and b not in _URL_UNSAFE for b in raw):
        return value
    return "".join(
        chr(b) if 32 <= b <= 126 and b not in _URL_UNSAFE else f"%{b:02X}" for b in raw
    )


def encode_plain_event(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes | str = b""
) -> bytes:
    """The body of a text/event-plain frame, byte for byte as FreeSWITCH writes it."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    payload = body.encode("utf-8") if isinstance(body, str) else body
    lines = [
        f"{k}: {url_encode(v)}\n"
        for k, v in items
        if not (payload and k == Header.CONTENT_LENGTH)
    ]
    text = "".join(lines).encode("utf-8")
    if payload:
        return text + b"%s: %d\n\n" % (Header.CONTENT_LENGTH.encode(), len(payload)) + payload
    return text + b"\n"


def encode_json_event(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], body: str | None = None
) -> bytes:
    """The body of a text/event-json frame (duplicate names kept, as FreeSWITCH does)."""
    items = list(headers.items() if isinstance(headers, Mapping) else headers)
    if body is not None:
        items = [(k, v) for k, v in items if k != Header.CONTENT_LENGTH]
        items.append((Header.CONTENT_LENGTH, str(len(body.encode("utf-8")))))
        items.append((Header.JSON_BODY, body))
    inner = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in items)
    return ("{" + inner + "}").encode("utf-8")


def event_frame(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str = b"",
    event_format: str = EventFormat.PLAIN,
) -> bytes:
    """A whole event frame, ready to send."""
    if event_format == EventFormat.JSON:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        payload = encode_json_event(headers, text or None)
        content_type = ContentType.EVENT_JSON
    else:
        payload = encode_plain_event(headers, body)
        content_type = ContentType.EVENT_PLAIN
    return frames.build_frame(
        [(Header.CONTENT_LENGTH, str(len(payload))), (Header.CONTENT_TYPE, content_type)],
        payload,
    )
