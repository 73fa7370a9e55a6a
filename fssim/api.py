"""FreeSWITCH API commands (`api` / `bgapi`) with the reply texts FreeSWITCH 1.10 gives.

Texts seen in the captures are copied from them; the others follow mod_commands.c (marked
"source" below). Every function takes the argument string as FreeSWITCH does (None when the
command has no argument) and returns the exact reply body.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from fssim import captured, templates
from fssim.causes import str2cause
from fssim.channel import CallState, Channel
from fssim.dates import stamp
from fssim.scheduler import Scheduler
from fssim.separate import c_atol, separate
from fssim.status import SwitchInfo, uptime_text

NO_CHANNEL = "-ERR No such channel!\n"
KILL_USAGE = "-USAGE: <uuid> [cause]\n"
SCHED_HANGUP_USAGE = "-USAGE: [+]<time> <uuid> [<cause>]\n"
SETVAR_USAGE = "-USAGE: <uuid> <var> [value]\n"  # source
SETVAR_MULTI_USAGE = "-USAGE: <uuid> <var>=<value>;<var>=<value>...\n"  # source
GETVAR_USAGE = "-USAGE: <uuid> <var> [index]\n"  # source
TRANSFER_USAGE = "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"  # source
SHOW_USAGE = (  # source
    "-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|"
    "channels [count|like <match string>]|calls|detailed_calls|bridged_calls|"
    "detailed_bridged_calls|aliases|complete|chat|management|modules|nat_map|say|"
    "interfaces|interface_types|tasks|limits|status\n"
)
VERSION = "FreeSWITCH Version 1.10.12-release~64bit ( 64bit)\n"
EMPTY_JSON = '{"row_count": 0}\n'
# what a channel runs while it waits for the rater (`show channels` column `application`)
_APPLICATION = {CallState.PARKED: "park", CallState.ASKING: "socket"}


def _show_channel_keys() -> tuple[str, ...]:
    for _session, command, _ctype, text, _job in captured.REPLIES:
        if command == "api show channels as json" and text.startswith('{"row_count":2'):
            return tuple(json.loads(text)["rows"][0])
    raise LookupError("no captured `show channels as json` with rows")


SHOW_CHANNEL_KEYS = _show_channel_keys()
_CREATE = templates.template("CHANNEL_CREATE").captured_values
_CREATE_HEADERS = dict(captured.EVENTS["CHANNEL_CREATE"][1])


class ApiSink(Protocol):
    """What the API commands fire and render (the Simulator is one)."""

    def api_event(self, command: str, arg: str | None) -> None:
        """Fire the API event every command fires (switch_api_execute)."""

    def channel_data(self, leg: Channel) -> str:
        """uuid_dump's reply: the leg's headers as a CHANNEL_DATA event body."""


class Api:
    """The API commands of one simulator, over its live legs and its scheduler."""

    def __init__(self, info: SwitchInfo, live: Mapping[str, Channel], scheduler: Scheduler,
                 sink: ApiSink) -> None:
        self.info = info
        self.live = live
        self.scheduler = scheduler
        self.sink = sink
        self._commands: dict[str, Callable[[str | None], str]] = {
            "status": self.status,
            "version": self.version,
            "global_getvar": self.global_getvar,
            "hostname": self.hostname,
            "uuid_kill": self.uuid_kill,
            "uuid_setvar": self.uuid_setvar,
            "uuid_setvar_multi": self.uuid_setvar_multi,
            "uuid_getvar": self.uuid_getvar,
            "uuid_exists": self.uuid_exists,
            "uuid_transfer": self.uuid_transfer,
            "uuid_dump": self.uuid_dump,
            "sched_hangup": self.sched_hangup,
            "sched_del": self.sched_del,
            "show": self.show,
        }

    def execute(self, command: str, arg: str | None) -> str:
        """Run one API command; fires the API event like switch_api_execute."""
        self.sink.api_event(command, arg)
        handler = self._commands.get(command.lower())
        if handler is None:
            return f"-ERR {command} Command not found!\n"
        return handler(arg or None)

    def _channel(self, uuid: str | None, line: str) -> Channel | None:
        channel = self.live.get(uuid or "")
        if channel is not None:
            channel.record_command(line)
        return channel

    # --- core ------------------------------------------------------------------------------

    def status(self, arg: str | None) -> str:
        info, stats = self.info, self.info.stats
        return (
            f"UP {uptime_text(info.uptime_us())}\n"
            "FreeSWITCH (Version 1.10.12-release  64bit) is ready\n"
            f"{stats.sessions_since_startup} session(s) since startup\n"
            f"{len(self.live)} session(s) - peak {stats.session_peak}, "
            f"last 5min {stats.session_peak} \n"
            f"{stats.sps_last} session(s) per Sec out of max 30, peak {stats.sps_max}, "
            f"last 5min {stats.sps_max} \n"
            f"{info.max_sessions} session(s) max\n"
            "min idle cpu 0.00/95.00\n"
            "Current Stack Size/Max 240K/8192K\n"
        )

    def version(self, arg: str | None) -> str:
        return VERSION

    def hostname(self, arg: str | None) -> str:
        return self.info.hostname

    def global_getvar(self, arg: str | None) -> str:
        return {"hostname": self.info.hostname, "core_uuid": self.info.core_uuid}.get(arg or "", "")

    # --- channels --------------------------------------------------------------------------

    def uuid_kill(self, arg: str | None) -> str:
        if not arg:
            return KILL_USAGE
        uuid, _, cause_text = arg.partition(" ")
        channel = self._channel(uuid, f"uuid_kill {arg}")
        if channel is None:
            return NO_CHANNEL
        channel.hangup(str2cause(cause_text) if cause_text else "NORMAL_CLEARING")
        return "+OK\n"

    def uuid_setvar(self, arg: str | None) -> str:
        argv = separate(arg, 3)
        if len(argv) not in (2, 3) or not argv[0]:
            return SETVAR_USAGE
        channel = self._channel(argv[0], f"uuid_setvar {arg}")
        if channel is None:
            return NO_CHANNEL
        channel.set_var(argv[1], argv[2] if len(argv) == 3 else None)
        return "+OK\n"

    def uuid_setvar_multi(self, arg: str | None) -> str:
        if not arg or " " not in arg:
            return ""
        uuid, _, assignments = arg.partition(" ")
        channel = self._channel(uuid, f"uuid_setvar_multi {arg}")
        if channel is None:
            # mod_commands falls through to the usage line after the error (source)
            return NO_CHANNEL + SETVAR_MULTI_USAGE
        reply, applied = "", 0
        for item in [a for a in assignments.split(";") if a][:64]:
            name, eq, value = item.partition("=")
            if not name:
                reply += "-ERR No variable specified\n"
                continue
            channel.set_var(name, value if eq else None)
            applied += 1
        return reply + ("+OK\n" if applied else SETVAR_MULTI_USAGE)

    def uuid_getvar(self, arg: str | None) -> str:
        argv = separate(arg, 3)
        if len(argv) not in (2, 3) or not argv[0]:
            return GETVAR_USAGE
        channel = self._channel(argv[0], f"uuid_getvar {arg}")
        if channel is None:
            return NO_CHANNEL
        value = channel.get_var(argv[1])
        return "_undef_" if value is None else value

    def uuid_exists(self, arg: str | None) -> str:
        return "true" if arg and arg in self.live else "false"

    def uuid_transfer(self, arg: str | None) -> str:
        argv = separate(arg, 5)
        if not 2 <= len(argv) <= 5:
            return TRANSFER_USAGE
        channel = self._channel(argv[0], f"uuid_transfer {arg}")
        if channel is None:
            return NO_CHANNEL
        rest = argv[1:]
        if rest[0].startswith("-"):
            # -bleg / -both: a leg with no bridged partner is transferred itself (source)
            rest = rest[1:]
        if not rest:
            return "-ERR\n"
        dest, dialplan, context = [*rest, None, None][:3]
        channel.transfer(dest, dialplan, context)  # type: ignore[arg-type]
        return "+OK\n"

    def uuid_dump(self, arg: str | None) -> str:
        channel = self._channel(arg, f"uuid_dump {arg}")
        if channel is None:
            return NO_CHANNEL
        return self.sink.channel_data(channel)

    def sched_hangup(self, arg: str | None) -> str:
        argv = separate(arg, 4)
        if not argv or not argv[0]:
            return SCHED_HANGUP_USAGE
        uuid = argv[1] if len(argv) > 1 else None
        cause = str2cause(argv[2]) if len(argv) > 2 else "ALLOTTED_TIMEOUT"
        sec = c_atol(argv[0][1:])
        when = int(time.time()) + sec if argv[0].startswith("+") else c_atol(argv[0])
        channel = self._channel(uuid, f"sched_hangup {arg}")
        if channel is None:
            return NO_CHANNEL
        if sec == 0:
            channel.hangup(cause)
        else:
            self.scheduler.schedule_hangup(when, channel.uuid, cause)
        return "+OK\n"

    def sched_del(self, arg: str | None) -> str:
        if arg is None:
            return "-ERR Invalid syntax\n"
        if arg.isdigit():
            count = self.scheduler.delete_task(int(arg)) if int(arg) > 0 else 0
        else:
            channel = self.live.get(arg)
            if channel is not None:
                channel.record_command(f"sched_del {arg}")
            count = self.scheduler.delete_group(arg)
        return f"+OK Deleted: {count}\n"

    def show(self, arg: str | None) -> str:
        words = (arg or "").split()
        # `show calls` lists the same legs: the simulator bridges nothing
        if not words or words[0].lower() not in ("channels", "calls") or len(words) not in (1, 3):
            return SHOW_USAGE
        as_json = len(words) == 3 and words[1].lower() == "as" and words[2].lower() == "json"
        if len(words) == 3 and not as_json:
            return SHOW_USAGE
        rows = [self._channel_row(c) for c in self.live.values()]
        if as_json:
            if not rows:
                return EMPTY_JSON
            body = json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"),
                              ensure_ascii=False)
            return body
        if not rows:
            return "\n0 total.\n"
        lines = [",".join(SHOW_CHANNEL_KEYS)]
        lines += [",".join(row[k] for k in SHOW_CHANNEL_KEYS) for row in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n"

    def _channel_row(self, c: Channel) -> dict[str, str]:
        name = _CREATE_HEADERS["Channel-Name"].replace(_CREATE["caller"], c.caller)
        cid_name = _CREATE_HEADERS["Caller-Caller-ID-Name"].replace(_CREATE["caller"], c.caller)
        presence = _CREATE_HEADERS["Channel-Presence-ID"].replace(_CREATE["caller"], c.caller)
        created_s = c.created_us // 1_000_000
        row = dict.fromkeys(SHOW_CHANNEL_KEYS, "")
        row.update({
            "uuid": c.uuid, "direction": "inbound", "created": stamp(created_s),
            "created_epoch": str(created_s), "name": name, "state": "CS_EXECUTE",
            "cid_name": cid_name, "cid_num": c.caller, "ip_addr": "127.0.0.1", "dest": c.dest,
            "application": _APPLICATION.get(c.state, ""),
            "dialplan": c.dialplan, "context": c.context, "read_codec": "PCMU",
            "read_rate": "8000", "read_bit_rate": "64000", "write_codec": "PCMU",
            "write_rate": "8000", "write_bit_rate": "64000", "hostname": self.info.hostname,
            "presence_id": presence, "accountcode": c.get_var("accountcode") or "",
            "callstate": c.callstate, "call_uuid": c.uuid, "initial_cid_name": cid_name,
            "initial_cid_num": c.caller, "initial_ip_addr": "127.0.0.1",
            "initial_dest": c.destination, "initial_dialplan": "XML",
            "initial_context": "default",
        })
        return row
