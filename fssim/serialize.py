"""Events serialised the way FreeSWITCH writes them, in the plainest code: what tests build
frames with, and the yardstick the simulator's fast renderer (templates.py) is checked
against. Not used by the daemon, which only reads events."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from fssim.wire import CONTENT_LENGTH, frame

JSON_BODY = "_body"  # the body of a text/event-json event

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
        if not (payload and k == CONTENT_LENGTH)
    ]
    text = "".join(lines).encode("utf-8")
    if payload:
        return text + b"%s: %d\n\n" % (CONTENT_LENGTH.encode(), len(payload)) + payload
    return text + b"\n"


def encode_json_event(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], body: str | None = None
) -> bytes:
    """The body of a text/event-json frame (duplicate names kept, as FreeSWITCH does)."""
    items = list(headers.items() if isinstance(headers, Mapping) else headers)
    if body is not None:
        items = [(k, v) for k, v in items if k != CONTENT_LENGTH]
        items.append((CONTENT_LENGTH, str(len(body.encode("utf-8")))))
        items.append((JSON_BODY, body))
    inner = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in items)
    return ("{" + inner + "}").encode("utf-8")


def event_frame(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str = b"",
    event_format: str = "plain",
) -> bytes:
    """A whole event frame, ready to send."""
    if event_format == "json":
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        payload = encode_json_event(headers, text or None)
        content_type = "text/event-json"
    else:
        payload = encode_plain_event(headers, body)
        content_type = "text/event-plain"
    return frame(
        [(CONTENT_LENGTH, str(len(payload))), ("Content-Type", content_type)],
        payload,
    )
