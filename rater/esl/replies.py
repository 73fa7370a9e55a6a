"""The frames that are not events: replies to requests, notices, and the rest kept raw."""

from __future__ import annotations

from dataclasses import dataclass

from rater.esl.frames import Frame


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


Reply = AuthRequest | CommandReply | ApiResponse  # what answers a request, in order
