"""Typed errors. Each says what is wrong and where; none decides the process's fate."""

from __future__ import annotations


class RaterError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(RaterError):
    """A configuration key is missing, mistyped or out of range (the message names the key)."""


class InputError(RaterError):
    """Bad input from a file or a command line: the message names the place (path, line)."""


class MoneyFormatError(InputError):
    """A decimal string that is not an exact amount in micro-units."""


# --- FreeSWITCH / ESL -------------------------------------------------------------------

class SwitchError(RaterError):
    """Anything that goes wrong talking to FreeSWITCH."""


class MalformedFrame(SwitchError):
    """The byte stream from FreeSWITCH does not follow the Event Socket framing."""


class SwitchUnavailable(SwitchError):
    """Not connected (or the connection dropped while a reply was pending)."""


class ReplyTimeout(SwitchError):
    """FreeSWITCH did not answer a command before its deadline."""


class AuthenticationFailed(SwitchError):
    """FreeSWITCH refused the Event Socket password."""


class CommandFailed(SwitchError):
    """FreeSWITCH answered a command with -ERR or -USAGE."""


# --- Ledger / rating --------------------------------------------------------------------

class LedgerError(RaterError):
    """The Redis ledger refused or could not run an operation."""


class LedgerBusy(LedgerError):
    """Redis answered but cannot run the script now (a read-only replica during a
    failover, out of memory, busy with another script, a cluster slot moving): worth
    retrying, unlike a script error."""


class UnknownAccount(LedgerError):
    """No such account in the snapshot or in Redis."""


class OperationConflict(LedgerError):
    """An operation id was reused for a different operation."""


class DatabaseUnavailable(RaterError):
    """PostgreSQL cannot be reached; the caller retries, nothing is lost."""


# --- Event Socket specifics (rater/esl) -------------------------------------------------

class FrameError(MalformedFrame):
    """Bad bytes at `offset` of the stream; `frames` are the complete frames that came
    before them in the same chunk, so a caller can still deliver everything received."""

    def __init__(self, message: str, offset: int, frames: list | None = None) -> None:
        super().__init__(message)
        self.offset = offset
        self.frames = frames if frames is not None else []


class NoSuchChannel(CommandFailed):
    """FreeSWITCH answered `-ERR No such channel!`: the call is already gone."""
