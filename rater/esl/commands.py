"""Event Socket commands as exact bytes, api command lines, and reply interpretation.

No I/O. ESL-level builders (`auth`, `event`, `filter`, `api`, `bgapi`, `noevents`,
`exit`) return the bytes to write, blank line included. The api command builders
(`uuid_kill`, `uuid_setvar`, ...) return the command line to wrap in `api()` or
`bgapi()`. Every argument is validated so that no value can end a command early or
smuggle in another one: FreeSWITCH splits api arguments on spaces or `;` and honours
quotes and backslashes, so values containing those are refused, never escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

from rater.errors import CommandFailed, NoSuchChannel
from rater.esl.names import EventFormat, Header

_END = b"\n\n"
_TOKEN = re.compile(r"[^\s'\"\\;]+")  # a uuid, a destination, a context ...
_CAUSE = re.compile(r"[A-Z][A-Z0-9_]*")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_EVENT_NAME = re.compile(r"[A-Za-z0-9_:\-]+")  # CHANNEL_PARK, CUSTOM, sofia::register
_HEADER_NAME = re.compile(r"[A-Za-z0-9_\-]+")
_FORBIDDEN_IN_VALUE = frozenset("\r\n\0'\\")
# uuid_setvar_multi splits on ';' (switch_separate_string, at most 64 pieces).
_MAX_MULTI = 64

NO_SUCH_CHANNEL = "-ERR No such channel!"


def _token(value: str, what: str) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValueError(f"{what} must be one word without quotes, ';' or '\\': {value!r}")
    return value


def _cause(value: str) -> str:
    if not isinstance(value, str) or not _CAUSE.fullmatch(value):
        raise ValueError(f"hangup cause must look like NORMAL_CLEARING: {value!r}")
    return value


def _var_name(value: str) -> str:
    if not isinstance(value, str) or not _VAR_NAME.fullmatch(value):
        raise ValueError(f"bad channel variable name: {value!r}")
    return value


# One search finds any forbidden character (the slow path below names them).
_FORBIDDEN_RE = {
    extra: re.compile("[" + re.escape("".join(sorted(_FORBIDDEN_IN_VALUE | set(extra)))) + "]")
    for extra in ("", ";")
}


def _value(value: str, what: str, extra: str = "") -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    forbidden = _FORBIDDEN_RE.get(extra)
    if forbidden is None or forbidden.search(value) is not None:
        bad = _FORBIDDEN_IN_VALUE.union(extra).intersection(value)
        if bad:
            raise ValueError(f"{what} contains {''.join(sorted(bad))!r}: {value!r}")
    if value[:1] == " " or value[-1:] == " ":
        raise ValueError(f"{what} has leading or trailing spaces, which FreeSWITCH drops")
    return value


def _line(text: str) -> bytes:
    if "\n" in text or "\r" in text:
        raise ValueError("a command cannot contain a line break")
    return text.encode("utf-8") + _END


# --- ESL-level commands --------------------------------------------------------------------

def auth(password: str) -> bytes:
    """`auth <password>`. The error message never repeats the password."""
    if not isinstance(password, str) or not password or any(c.isspace() for c in password):
        raise ValueError("the Event Socket password must be non-empty, without spaces")
    return b"auth " + password.encode("utf-8") + _END


def event(event_format: str, names: Iterable[str]) -> bytes:
    """`event plain|json <names>`: subscribe to exactly these events."""
    if event_format not in (EventFormat.PLAIN, EventFormat.JSON):
        raise ValueError(f"event format must be plain or json: {event_format!r}")
    words = list(dict.fromkeys(names))  # once each, in order
    if not words:
        raise ValueError("subscribe to at least one event")
    for name in words:
        if not isinstance(name, str) or not _EVENT_NAME.fullmatch(name):
            raise ValueError(f"bad event name: {name!r}")
    return _line(f"event {event_format} {' '.join(words)}")


def filter(header: str, value: str) -> bytes:
    """`filter <header> <value>`: only deliver events whose header has this value."""
    if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header):
        raise ValueError(f"bad header name: {header!r}")
    return _line(f"filter {header} {_value(value, 'filter value')}")


def noevents() -> bytes:
    return _line("noevents")


def exit() -> bytes:
    return _line("exit")


def api(command: str) -> bytes:
    """`api <command>`: run inline; FreeSWITCH holds this connection's events meanwhile."""
    if not command:
        raise ValueError("empty api command")
    return _line(f"api {command}")


def bgapi(command: str, job_uuid: str | None = None) -> bytes:
    """`bgapi <command>` (result in a BACKGROUND_JOB event), with our own Job-UUID."""
    if not command:
        raise ValueError("empty bgapi command")
    line = _line(f"bgapi {command}")
    if job_uuid is None:
        return line
    return line[:-1] + f"{Header.JOB_UUID}: {_token(job_uuid, 'Job-UUID')}".encode() + _END


# --- api command lines ----------------------------------------------------------------------

def uuid_kill(uuid: str, cause: str | None = None) -> str:
    text = f"uuid_kill {_token(uuid, 'uuid')}"
    return text if cause is None else f"{text} {_cause(cause)}"


def uuid_setvar(uuid: str, name: str, value: str) -> str:
    """Set a channel variable; an empty `value` unsets it."""
    text = f"uuid_setvar {_token(uuid, 'uuid')} {_var_name(name)}"
    return text if value == "" else f"{text} {_value(value, f'value of {name}')}"


def uuid_setvar_multi(uuid: str, variables: Mapping[str, str]) -> str:
    """Set several channel variables at once (`k=v;k=v`)."""
    if not variables:
        raise ValueError("uuid_setvar_multi needs at least one variable")
    if len(variables) > _MAX_MULTI:
        raise ValueError(f"uuid_setvar_multi takes at most {_MAX_MULTI} variables")
    pairs = ";".join(
        f"{_var_name(k)}={_value(v, f'value of {k}', extra=';')}" for k, v in variables.items()
    )
    return f"uuid_setvar_multi {_token(uuid, 'uuid')} {pairs}"


def uuid_transfer(uuid: str, destination: str, context: str, dialplan: str = "XML") -> str:
    return (
        f"uuid_transfer {_token(uuid, 'uuid')} {_token(destination, 'destination')} "
        f"{_token(dialplan, 'dialplan')} {_token(context, 'context')}"
    )


def transferable(destination: str) -> bool:
    """Whether a transfer can carry this destination: one word (no quotes, spaces, ';' or
    '\\', which FreeSWITCH would split on) and no '$' (the `transfer` application, run
    through the decision socket, would expand it)."""
    try:
        _token(destination, "destination")
    except ValueError:
        return False
    return "$" not in destination


def sched_hangup(seconds: int, uuid: str, cause: str | None = None) -> str:
    """Hang up `seconds` from now. Adds a task: earlier ones stay (see sched_del)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ValueError(f"seconds must be a non-negative int: {seconds!r}")
    text = f"sched_hangup +{seconds} {_token(uuid, 'uuid')}"
    return text if cause is None else f"{text} {_cause(cause)}"


def sched_del(uuid: str) -> str:
    """Remove every task scheduled for this uuid (sched_hangup uses it as the group)."""
    return f"sched_del {_token(uuid, 'uuid')}"


def show_channels_json() -> str:
    return "show channels as json"


def uuid_exists(uuid: str) -> str:
    """`true` or `false`: whether the switch has this channel now (its session table)."""
    return f"uuid_exists {_token(uuid, 'uuid')}"


def uuid_dump(uuid: str) -> str:
    """The channel's event headers, plain text (Caller-Channel-Answered-Time among them)."""
    return f"uuid_dump {_token(uuid, 'uuid')}"


def dump_header(text: str, name: str) -> str | None:
    """One header's value from a plain `uuid_dump` reply (values are URL-encoded)."""
    prefix = f"{name}: "
    for line in text.splitlines():
        if line.startswith(prefix):
            return unquote(line[len(prefix):])
    return None


# --- replies --------------------------------------------------------------------------------

def _describe(command: str) -> str:
    verb = command.split(None, 1)[0] if command.strip() else "command"
    return "auth" if verb == "auth" else command  # never echo a password


def check_reply(text: str, command: str) -> str:
    """Return `text` unless it is an error reply; raise NoSuchChannel for
    `-ERR No such channel!`, CommandFailed for any other `-ERR` or `-USAGE`."""
    stripped = text.strip()
    if stripped.startswith(NO_SUCH_CHANNEL):
        raise NoSuchChannel(f"{_describe(command)}: {stripped}")
    if stripped.startswith(("-ERR", "-USAGE")):
        raise CommandFailed(f"{_describe(command)}: {stripped}")
    return text


# --- outbound mode (FreeSWITCH's `socket` application connected to us) ------------------------

# The application data of `sendmsg` is expanded by the channel (`${...}` runs variables and
# api calls), so values sent that way must not hold a '$' either.
_MULTISET_DELIM = "|"


def connect() -> bytes:
    """`connect`: the first command of an outbound connection; FreeSWITCH answers with the
    channel's data (a command/reply carrying every channel header and variable)."""
    return _line("connect")


def execute(app: str, arg: str) -> bytes:
    """`sendmsg` running one dialplan application on the connected channel. In the
    `socket` application's default (static, not async) mode it runs at once, in the
    channel's own thread, and the reply comes after it."""
    if not _VAR_NAME.fullmatch(app):
        raise ValueError(f"bad application name: {app!r}")
    arg = _value(arg, f"argument of {app}")
    if "$" in arg:
        raise ValueError(f"argument of {app} contains '$', which the channel would expand: "
                         f"{arg!r}")
    return (f"sendmsg\ncall-command: execute\nexecute-app-name: {app}\n"
            f"execute-app-arg: {arg}").encode() + _END


def multiset_arg(variables: Mapping[str, str]) -> str:
    """`multiset`'s argument for these variables: `^^|k=v|k=v` (values may hold spaces)."""
    if not variables:
        raise ValueError("multiset needs at least one variable")
    pairs = []
    for name, value in variables.items():
        if _MULTISET_DELIM in value:
            raise ValueError(f"value of {name} contains {_MULTISET_DELIM!r}: {value!r}")
        pairs.append(f"{_var_name(name)}={_value(value, f'value of {name}')}")
    return f"^^{_MULTISET_DELIM}" + _MULTISET_DELIM.join(pairs)


def global_getvar(name: str) -> str:
    """A global variable's value (`core_uuid`: the switch's id until it restarts)."""
    return f"global_getvar {_var_name(name)}"
