"""Firing events: every event takes the next Event-Sequence, is rendered from its template only
when some listener wants it (or the stream faults hold events back), and is fanned out to the
listeners through the stream faults (fssim.bus)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fssim import socket_data
from fssim.bus import Event, Listener, StreamFaults, deliver
from fssim.channel import CallState, Channel
from fssim.dates import EventClock
from fssim.leg_values import event_values
from fssim.scheduler import HangupTask
from fssim.status import SwitchInfo, uptime_text
from fssim.templates import TEMPLATES
from fssim.timers import now_us

# Channel events whose capture differs for an answered and an unanswered leg.
_BY_ANSWER = ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY")


class Emitter:
    """The event source of one simulated switch."""

    def __init__(self, info: SwitchInfo, live: Mapping[str, Channel],
                 listeners: Sequence[Listener], faults: StreamFaults) -> None:
        self.info = info
        self.live = live
        self.listeners = listeners  # the server's connections, as they come and go
        self.faults = faults
        self._seq = itertools.count(1)
        self._clock = EventClock()
        self._wanted: frozenset[str] = frozenset()
        self._want_all = False

    def want(self, all_events: bool, names: frozenset[str]) -> None:
        """What the listeners subscribe to, together (others are not even rendered)."""
        self._want_all = all_events
        self._wanted = names

    def _event_fields(self, seq: int) -> dict[str, str]:
        local, gmt, stamp = self._clock.fields(now_us())
        return {"core_uuid": self.info.core_uuid, "hostname": self.info.hostname,
                "date_local": local, "date_gmt": gmt, "timestamp": stamp, "seq": str(seq)}

    def fire(self, key: str, values: Callable[[], dict[str, Any]], *,
             uuid: str | None = None, body: str | None = None) -> int:
        """Fire the event of template `key`; `values()` gives its slot values. Returns its
        Event-Sequence."""
        seq = next(self._seq)
        template = TEMPLATES[key]
        if not (self._want_all or template.event_name in self._wanted or self.faults.held):
            return seq
        ctx = values()
        ctx.update(self._event_fields(seq))
        deliver(Event(template, ctx, body, uuid), self.listeners, self.faults)
        return seq

    # --- channel events ---------------------------------------------------------------------

    def channel_event(self, leg: Channel, name: str, *, stray: bool = False) -> int:
        """Fire one of the leg's events (the template follows its answered state) and note it
        in `leg.events`."""
        key = name
        if name in _BY_ANSWER:
            key = f"{name}.{'answered' if leg.answered_us else 'unanswered'}"
        if key not in TEMPLATES:
            raise ValueError(f"the simulator has no template for {name}")
        seq = self.fire(key, lambda: _leg_values(leg, key, stray), uuid=leg.uuid)
        leg.events.append((name, seq))
        return seq

    def channel_data(self, leg: Channel) -> str:
        """uuid_dump: the leg's headers as a plain CHANNEL_DATA event body."""
        key = {CallState.PARKED: "CHANNEL_PARK", CallState.ASKING: "CHANNEL_PARK",
               CallState.RINGING: "CHANNEL_UNPARK"}.get(leg.state, "CHANNEL_ANSWER")
        ctx = _leg_values(leg, key, False)
        ctx.update(self._event_fields(next(self._seq)))
        text = TEMPLATES[key].render_plain(ctx).decode()
        return "Event-Name: CHANNEL_DATA\n" + text.split("\n", 1)[1]

    def channel_data_reply(self, leg: Channel, application_data: str) -> bytes:
        """The `socket` application's answer to `connect`: the leg's data as one
        command/reply frame (fssim.socket_data); `application_data` is its `host:port`."""
        return socket_data.render(leg, application_data, self._event_fields(next(self._seq)))

    # --- core events ------------------------------------------------------------------------

    def api_event(self, command: str, arg: str | None) -> None:
        self.fire("API", lambda: {
            "api_command": command,
            "api_arg": [("API-Command-Argument", arg)] if arg else [],
        })

    def background_job(self, job_uuid: str, command: str, arg: str | None, reply: str) -> None:
        self.fire("BACKGROUND_JOB", lambda: {
            "job_uuid": job_uuid, "job_command": command,
            "job_arg": [("Job-Command-Arg", arg)] if arg else [],
        }, body=reply)

    def task_event(self, name: str, task: HangupTask) -> None:
        """ADD_SCHEDULE or DEL_SCHEDULE."""
        self.fire(name, lambda: {"task_id": str(task.task_id), "task_group": task.group,
                                 "task_runtime": str(task.runtime)})

    def heartbeat(self) -> None:
        self.fire("HEARTBEAT", self._heartbeat_values)

    def _heartbeat_values(self) -> dict[str, Any]:
        up = self.info.uptime_us()
        stats = self.info.stats
        return {
            "up_time": uptime_text(up), "uptime_msec": str(up // 1000),
            "session_count": str(len(self.live)),
            "session_since_startup": str(stats.sessions_since_startup),
            "session_peak_max": str(stats.session_peak),
            "session_peak_fivemin": str(stats.session_peak),
            "sps_last": str(stats.sps_last), "sps_max": str(stats.sps_max),
            "sps_fivemin": str(stats.sps_max), "idle_cpu": "95.000000",
        }

    def sample_event_frame(self, fmt: str) -> bytes:
        """A complete HEARTBEAT frame (not fired), e.g. to cut in half."""
        ctx = {**self._heartbeat_values(), **self._event_fields(next(self._seq))}
        return Event(TEMPLATES["HEARTBEAT"], ctx).frame(fmt)


def _leg_values(leg: Channel, key: str, timing: bool) -> dict[str, Any]:
    ctx = event_values(leg, timing=timing)
    # the SIP variables of the template's own capture when the far end hung up
    sip_vars = TEMPLATES[key].captured_values.get("sip_hangup_vars", ())
    ctx["sip_hangup_vars"] = tuple(sip_vars) if ctx["remote_hangup"] else ()
    return ctx
