"""Frame -> typed message: an event (plain or JSON reader), a reply, a notice, or the
frame kept raw. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from rater.esl.events import ChannelEvent
from rater.esl.frames import Frame
from rater.esl.jsonevent import JsonEvent
from rater.esl.names import LINGER, ContentType, Header
from rater.esl.plain import PlainEvent
from rater.esl.replies import (
    ApiResponse,
    AuthRequest,
    CommandReply,
    DisconnectNotice,
    OtherFrame,
    RudeRejection,
)

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


_BUILDERS: dict[bytes, Callable[[Frame], Message]] = {
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
