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
from typing import Final
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

# The headers a plain event's single scan picks out: what the daemon reads.
_FAST_NAMES: Final = frozenset(
    {
        Header.CONTENT_LENGTH, Header.JOB_UUID, Header.EVENT_NAME, Header.EVENT_SUBCLASS,
        Header.CORE_UUID, Header.EVENT_SEQUENCE, Header.EVENT_DATE_TIMESTAMP,
        Header.UNIQUE_ID, Header.CHANNEL_CALL_UUID, Header.CALL_DIRECTION,
        Header.ANSWER_STATE, Header.HANGUP_CAUSE, Header.CALLER_ID_NUMBER,
        Header.DESTINATION_NUMBER, Header.CREATED_TIME, Header.ANSWERED_TIME,
        Header.HANGUP_TIME,
    }
    | {
        Header.VARIABLE_PREFIX + v
        for v in (Var.BILLSEC, Var.BILLMSEC, Var.BILLUSEC, Var.ACCOUNTCODE,
                  Var.RATER_DIRECTION, Var.RATER_ACCOUNT, Var.RATER_DESTINATION)
    }
)


def _trie_pattern(words: Iterable[str]) -> str:
    """An alternation of `words` factored as a trie, so the regex engine decides on one
    character per level instead of trying every name at every line."""
    root: dict[str, dict] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, dict]) -> str:
        # Most lines of a channel event start with "variable_" or "C": test those first.
        items = sorted(node.items(), key=lambda kv: (kv[0] not in "vC", kv[0]))
        alts = [re.escape(ch) + emit(child) for ch, child in items if ch]
        optional = "" in node
        if not alts:
            return ""
        if len(alts) == 1 and not optional:
            return alts[0]
        return "(?:" + "|".join(alts) + ")" + ("?" if optional else "")

    return emit(root)


# A line of a wanted header, except the first line (which has no "\n" before it).
_FAST_LINE = re.compile("\n(" + _trie_pattern(_FAST_NAMES) + "): (.*)")
_BLANK_LINE = re.compile("\n\n")
_BLANK_LINE_BYTES = re.compile(b"\n\n")


def _first_wins(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """dict() keeps the last of repeated names; build it reversed so the first wins
    (the order of the result does not matter to its users). Consumes `pairs`."""
    pairs.reverse()
    return dict(pairs)


class PlainEvent(ChannelEvent):
    """A text/event-plain event: a header block of URL-encoded values up to the first
    blank line, then, when the block has a `Content-Length`, that many bytes of body.

    The event is not split into its ~230 lines. The first read runs one regex pass that
    picks out the headers in `_FAST_NAMES` (raw, first wins); a value is URL-decoded
    only when read; any other header is found on demand. A body is only possible when
    the block has a Content-Length (FreeSWITCH writes it as the last header, exactly
    when there is a body); only then is the block end located and the scan redone
    within it, so nothing is ever read from a body.
    """

    __slots__ = ("_body", "_fields", "_first", "_headers", "_raw", "_text")

    def __init__(self, raw: bytes, offset: int = 0) -> None:
        self.offset = offset
        self._raw = raw
        # Values are URL-encoded ASCII; surrogateescape keeps a stray byte intact.
        self._text = text = raw.decode("utf-8", "surrogateescape")
        self._fields: dict[str, str] | None = None
        self._headers: dict[str, str] | None = None
        self._body: tuple[str | None] | None = None
        newline = text.find("\n")
        key, sep, value = (text if newline < 0 else text[:newline]).partition(": ")
        if not sep or not key:
            raise MalformedFrame(
                f"event line 1 is not 'Name: value' ({text[:60]!r}) "
                f"in the frame at byte offset {offset}"
            )
        self._first = (key, value)

    @property
    def name(self) -> str:
        key, value = self._first  # FreeSWITCH writes Event-Name first: no scan needed
        if key == Header.EVENT_NAME:
            return unquote(value) if "%" in value else value
        return self.get(Header.EVENT_NAME) or ""

    def _scan(self) -> dict[str, str]:
        text = self._text
        fields = _first_wins(_FAST_LINE.findall(text))
        if Header.CONTENT_LENGTH in fields:
            fields = _first_wins(_FAST_LINE.findall(text, 0, self._block_end()))
        key, value = self._first
        if key in _FAST_NAMES:
            fields[key] = value
        self._fields = fields
        return fields

    def _block_end(self) -> int:
        """Index of the blank line that ends the header block."""
        blank = _BLANK_LINE.search(self._text)  # much faster than str.find for "\n\n"
        return len(self._text.rstrip("\n")) if blank is None else blank.start()

    def _raw_value(self, name: str) -> str | None:
        fields = self._fields
        if fields is None:
            fields = self._scan()
        value = fields.get(name)
        if value is None and name not in _FAST_NAMES:
            return self._find(name, Header.CONTENT_LENGTH in fields)
        return value

    def _find(self, name: str, has_body: bool) -> str | None:
        key, value = self._first
        if key == name:
            return value
        text = self._text
        needle = "\n" + name + ": "
        at = text.find(needle, 0, self._block_end() if has_body else len(text))
        if at < 0:
            return None
        at += len(needle)
        stop = text.find("\n", at)
        return text[at : len(text) if stop < 0 else stop]

    def get(self, name: str) -> str | None:
        fields = self._fields
        if fields is None:
            fields = self._scan()
        value = fields.get(name)
        if value is None:
            if name in _FAST_NAMES:
                return None
            value = self._find(name, Header.CONTENT_LENGTH in fields)
            if value is None:
                return None
        return unquote(value) if "%" in value else value

    def _int(self, name: str) -> int | None:
        fields = self._fields
        if fields is None:
            fields = self._scan()
        value = fields.get(name)
        if value is None:
            return None if name in _FAST_NAMES else self._int_checked(name, self._raw_value(name))
        try:
            return int(value)
        except ValueError:
            return self._int_checked(name, value)  # raises, naming the header

    def header_items(self) -> list[tuple[str, str]]:
        """Every header line in order, duplicates kept, values decoded."""
        block = self._text[: self._block_end()]
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
        if self._headers is None:
            items = self.header_items()
            headers = dict(items)  # wire order, last value of a repeated name ...
            if len(headers) != len(items):
                headers.update(_first_wins(items))  # ... so put the first one back
            self._headers = headers
        return self._headers

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
        if self._body is None:
            raw = self.body_bytes
            self._body = (None if raw is None else raw.decode("utf-8", "replace"),)
        return self._body[0]


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
            obj = json.loads(raw, object_pairs_hook=_first_wins)
        except ValueError as exc:  # includes UnicodeDecodeError
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


def parse_frame(frame: Frame) -> Message:
    """The typed message a frame carries. Raises MalformedFrame for a bad event."""
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
