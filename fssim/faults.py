"""Catalogue of broken byte streams and reply-withholding rules for fault injection."""

from __future__ import annotations

from dataclasses import dataclass

# Raw bytes a broken or hostile peer could send; each is a different way to break a parser.
MALFORMED: dict[str, bytes] = {
    # not a frame at all: binary junk, then a blank line
    "garbage": b"\x00\xff\xfe GARBAGE \x01\x02 not an ESL frame\n\n",
    # a header line without ": "
    "no-colon": b"Content-Type command/reply\nReply-Text +OK\n\n",
    # Content-Length that is not a number
    "bad-length": b"Content-Type: api/response\nContent-Length: twelve\n\n",
    "negative-length": b"Content-Type: api/response\nContent-Length: -5\n\n",
    # a length no sane frame has (a parser must refuse it, not allocate it)
    "huge-length": b"Content-Type: api/response\nContent-Length: 99999999999\n\n",
    # an event whose body is shorter than announced: the next frame's bytes become its body
    "short-body": (b"Content-Length: 200\nContent-Type: text/event-plain\n\n"
                   b"Event-Name: HEARTBEAT\nCore-UUID: x\n\n"),
    # an event whose body is not url-encoded key: value lines
    "bad-event-body": (b"Content-Length: 21\nContent-Type: text/event-plain\n\n"
                       b"this is not a header\n"),
    # a json event that is not json
    "bad-json": b"Content-Length: 12\nContent-Type: text/event-json\n\n{\"Event-Name\"",
    # an unknown content type
    "unknown-type": b"Content-Type: text/x-unknown\nContent-Length: 3\n\nabc",
}


@dataclass(eq=False)
class WithholdRule:
    """Drop the replies of the next `remaining` commands starting with `prefix` (any when
    None); `None` remaining means every matching command."""

    prefix: str | None
    remaining: int | None

    def take(self, command: str) -> bool:
        if self.remaining == 0:
            return False
        if self.prefix is not None and not command.startswith(self.prefix):
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True
