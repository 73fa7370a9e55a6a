"""The frames FreeSWITCH 1.10 writes on the Event Socket, byte for byte (see the captures):
`auth/request`, `command/reply` with `Reply-Text`, `api/response` with `Content-Length`,
`text/disconnect-notice`, and the event names `event` and `nixevent` accept.

The simulator's own framing, on purpose not the daemon's (`rater.esl.frames`): the tests feed
one into the other, so a framing bug shared by both could not hide.
"""

from __future__ import annotations

from collections.abc import Iterable

CONTENT_LENGTH = "Content-Length"


def frame(headers: Iterable[tuple[str, str]], body: bytes | str = b"") -> bytes:
    """One frame: header lines, a blank line, the body. A body gets a Content-Length header
    (first, as FreeSWITCH places it in events) unless `headers` carries the right one.

    Raises ValueError for a name or value that would break the framing.
    """
    payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    lines: list[bytes] = []
    has_length = False
    for name, value in headers:
        if not name or ":" in name or "\n" in name or "\n" in value:
            raise ValueError(f"header {name!r} cannot be framed (empty, ':' or newline)")
        if name == CONTENT_LENGTH:
            if value != str(len(payload)):
                raise ValueError(f"Content-Length {value!r} does not match a body of "
                                 f"{len(payload)} bytes")
            has_length = True
        lines.append(f"{name}: {value}".encode())
    if payload and not has_length:
        lines.insert(0, b"%s: %d" % (CONTENT_LENGTH.encode(), len(payload)))
    if not lines:
        raise ValueError("a frame needs at least one header")
    return b"\n".join(lines) + b"\n\n" + payload


AUTH_REQUEST = frame([("Content-Type", "auth/request")])


def command_reply(text: str, job_uuid: str | None = None) -> bytes:
    """`command/reply` with Reply-Text (and Job-UUID after a bgapi)."""
    headers = [("Content-Type", "command/reply"), ("Reply-Text", text)]
    if job_uuid:
        headers.append(("Job-UUID", job_uuid))
    return frame(headers)


def api_response(body: str) -> bytes:
    """`api/response`: Content-Type first, then Content-Length, then the body (what frame()
    gives for these headers, without its checks: one per api command)."""
    raw = body.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(raw), raw)


def disconnect_notice(body: str, session: str | None = None) -> bytes:
    """`text/disconnect-notice`; on a connection controlling a channel (the `socket`
    application's) it names the channel and says `Content-Disposition: disconnect`."""
    raw = body.encode()
    headers = [("Content-Type", "text/disconnect-notice")]
    if session:
        headers += [("Controlled-Session-UUID", session), ("Content-Disposition", "disconnect")]
    return frame([*headers, ("Content-Length", str(len(raw)))], raw)


EVENT_NAMES = frozenset((
    "CUSTOM", "CLONE", "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE",
    "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_OUTGOING",
    "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_APPLICATION", "CHANNEL_ORIGINATE", "CHANNEL_UUID",
    "API", "LOG", "INBOUND_CHAN", "OUTBOUND_CHAN", "STARTUP", "SHUTDOWN", "PUBLISH", "UNPUBLISH",
    "TALK", "NOTALK", "SESSION_CRASH", "MODULE_LOAD", "MODULE_UNLOAD", "DTMF", "MESSAGE",
    "PRESENCE_IN", "NOTIFY_IN", "PRESENCE_OUT", "PRESENCE_PROBE", "MESSAGE_WAITING",
    "MESSAGE_QUERY", "ROSTER", "CODEC", "BACKGROUND_JOB", "DETECTED_SPEECH", "DETECTED_TONE",
    "PRIVATE_COMMAND", "HEARTBEAT", "TRAP", "ADD_SCHEDULE", "DEL_SCHEDULE", "EXE_SCHEDULE",
    "RE_SCHEDULE", "RELOADXML", "NOTIFY", "PHONE_FEATURE", "PHONE_FEATURE_SUBSCRIBE",
    "SEND_MESSAGE", "RECV_MESSAGE", "REQUEST_PARAMS", "CHANNEL_DATA", "GENERAL", "COMMAND",
    "SESSION_HEARTBEAT", "CLIENT_DISCONNECTED", "SERVER_DISCONNECTED", "SEND_INFO", "RECV_INFO",
    "RECV_RTCP_MESSAGE", "SEND_RTCP_MESSAGE", "CALL_SECURE", "NAT", "RECORD_START", "RECORD_STOP",
    "PLAYBACK_START", "PLAYBACK_STOP", "CALL_UPDATE", "FAILURE", "SOCKET_DATA", "MEDIA_BUG_START",
    "MEDIA_BUG_STOP", "CONFERENCE_DATA_QUERY", "CONFERENCE_DATA", "CALL_SETUP_REQ",
    "CALL_SETUP_RESULT", "CALL_DETAIL", "DEVICE_STATE", "TEXT", "SHUTDOWN_REQUESTED", "ALL",
))


def event_name(word: str) -> str | None:
    """switch_name_event: case-insensitive, `SWITCH_EVENT_` prefix allowed."""
    name = word.upper()
    if name.startswith("SWITCH_EVENT_"):
        name = name[13:]
    return name if name in EVENT_NAMES else None
