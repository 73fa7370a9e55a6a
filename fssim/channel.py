"""One simulated call leg: its state and its timers. What it does reaches the rest of the
switch only through the `LegSink` it is given (the Simulator is one); the header values of
its events are fssim.leg_values.

The leg is an inbound SIP channel (FreeSWITCH's `Call-Direction` is `inbound` for both business
directions) that the dialplan marks for rating and, while ringing, either asks the rater on a
connection of its own (the `socket` application, when the switch has a decision socket: see
fssim.outbound) or parks. The rater then either transfers it (it rings the far end, is
answered, talks, hangs up) or kills it; a leg the socket lets go (or that cannot connect)
parks. Timestamps are wall-clock microseconds like FreeSWITCH's; timers run on the gevent
loop.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import gevent.event

from fssim import dptools
from fssim.separate import separate
from fssim.timers import Timer, new_uuid, now_us

log = logging.getLogger(__name__)

_VAR_REF = re.compile(r"\$\{([^}]*)\}")
_APP_SEP = re.compile(r"::|:| ")


def _split_app(value: str) -> tuple[str, str]:
    """`app data`, `app:data` or `app::data` (run asynchronously) -> (app, data)."""
    parts = _APP_SEP.split(value, maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


class LegSink(Protocol):
    """Where a leg's doings go: its events, its end, and the two services of the switch's
    core it uses (the scheduler, for `sched_hangup` run on answer; the API, for
    `api_on_answer`)."""

    def leg_event(self, leg: Channel, name: str) -> None:
        """Fire one of the leg's channel events (CHANNEL_PARK, ...) as the leg is now."""

    def leg_asks(self, leg: Channel) -> bool:
        """The dialplan's `socket` application: True when the switch connects the leg to
        the rater's decision socket (the leg then waits in it), False to park at once."""

    def leg_hung_up(self, leg: Channel) -> None:
        """The leg is hung up, before CHANNEL_HANGUP_COMPLETE: its scheduled tasks go, and
        the switch writes its own record (mod_cdr_pg_csv's hook runs then)."""

    def leg_done(self, leg: Channel) -> None:
        """The leg's last event went out."""

    def schedule_hangup(self, runtime: int, uuid: str, cause: str) -> None:
        """Add a hangup task for `runtime` (epoch seconds)."""

    def api(self, command: str, arg: str | None) -> str:
        """Run an API command."""


class CallState(enum.StrEnum):
    PARKED = "parked"        # in the rating context, waiting for the rater
    ASKING = "asking"        # in the `socket` application, waiting for the rater's answer
    RINGING = "ringing"      # transferred on, the far end rings
    ANSWERED = "answered"
    HUNGUP = "hungup"


@dataclass(eq=False)
class Channel:
    """A simulated leg and the record of what happened to it (times in µs since the epoch)."""

    sink: LegSink = field(repr=False)
    uuid: str
    destination: str
    account: str | None
    direction: str
    caller: str
    answer_after: float
    duration: float
    answer: bool
    unanswered_cause: str
    session_id: int
    dialplan_vars: dict[str, str]
    park_timeout: float = 20.0  # the caller gives up waiting in park after this
    answer_first: bool = False  # answered before it parks (an IVR that parks the call)
    state: CallState = CallState.PARKED
    created_us: int = 0
    progress_us: int = 0
    answered_us: int = 0
    hangup_us: int = 0
    profile_created_us: int = 0
    transferred_us: int = 0  # the first transfer (the rater's decision), 0 if none
    asked_us: int = 0  # it asked the rater: its data sent on the decision socket, or parked
    parked_us: int = 0  # CHANNEL_PARK fired, 0 if it never parked
    socket_decided: bool = False  # transferred or hung up by the rater on the decision socket
    moved: bool = False  # transferred while in the socket application: goes on when it ends
    cause: str | None = None
    hangup_by: str | None = None  # "caller" (BYE/CANCEL received) or "switch"
    late_vars: dict[str, str] = field(default_factory=dict)
    commands: list[tuple[int, str]] = field(default_factory=list)
    events: list[tuple[str, int]] = field(default_factory=list)
    transfers: list[tuple[str, str, str]] = field(default_factory=list)
    executed_on_answer: list[str] = field(default_factory=list)
    done: gevent.event.Event = field(default_factory=gevent.event.Event, repr=False)
    dest: str = ""
    context: str = "default"
    dialplan: str = "XML"
    profile_index: int = 1
    transfer_source: str = ""
    rdnis: str = ""
    callstate: str = "DOWN"
    _timers: dict[str, Timer] = field(default_factory=dict, repr=False)
    values_cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # --- what the rater reads back ------------------------------------------------------

    @property
    def answered(self) -> bool:
        return self.answered_us > 0

    @property
    def billsec(self) -> int:
        """FreeSWITCH's `billsec`: hangup epoch second minus answer epoch second, so
        floor(billusec / 1e6) or one more; bill from billusec/billmsec instead."""
        if not self.answered_us or not self.hangup_us:
            return 0
        return self.hangup_us // 1_000_000 - self.answered_us // 1_000_000

    @property
    def billmsec(self) -> int:
        if not self.answered_us or not self.hangup_us:
            return 0
        return self.hangup_us // 1000 - self.answered_us // 1000

    @property
    def billusec(self) -> int:
        if not self.answered_us or not self.hangup_us:
            return 0
        return self.hangup_us - self.answered_us

    @property
    def variables(self) -> dict[str, str]:
        """Every channel variable the simulator tracks (dialplan's, then set later)."""
        return {"uuid": self.uuid, **self.dialplan_vars, **self.late_vars}

    def get_var(self, name: str) -> str | None:
        if name in self.late_vars:
            return self.late_vars[name]
        if name in self.dialplan_vars:
            return self.dialplan_vars[name]
        if name in ("uuid", "call_uuid"):
            return self.uuid
        if name == "destination_number":
            return self.dest
        if name == "caller_id_number":
            return self.caller
        return None

    def expand(self, text: str) -> str:
        """Expand `${var}` references the way FreeSWITCH does for application data."""
        return _VAR_REF.sub(lambda m: self.get_var(m.group(1)) or "", text)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """CHANNEL_CREATE, then the dialplan's ring_ready, then `socket` (when the switch
        asks the rater there) or park: CHANNEL_PARK."""
        self.created_us = self.profile_created_us = now_us()
        self.dest = self.destination
        self.sink.leg_event(self, "CHANNEL_CREATE")
        self.progress_us = now_us()
        self.callstate = "RINGING"
        if self.answer_first:
            self.answered_us = now_us()
            self.sink.leg_event(self, "CHANNEL_ANSWER")
            self.callstate = "ACTIVE"
        # The caller gives up if nobody takes the call on (from the socket, or out of park).
        self._arm("give_up", self.park_timeout, self.hangup, "ORIGINATOR_CANCEL", "caller")
        self.state = CallState.ASKING
        if not self.sink.leg_asks(self):
            self.park()

    def park(self) -> None:
        """The dialplan's `park`: CHANNEL_PARK, and the leg waits for the rater."""
        self.state = CallState.PARKED
        self.parked_us = now_us()
        self.asked_us = self.asked_us or self.parked_us
        self.sink.leg_event(self, "CHANNEL_PARK")

    def socket_done(self) -> None:
        """The `socket` application returned with the leg up: transferred there, it goes on
        to its new extension (it never parks); otherwise the dialplan goes on and parks it."""
        if self.state is not CallState.ASKING:
            return
        if self.moved:
            self._go_on(unpark=False)
        else:
            self.park()

    def record_command(self, line: str) -> None:
        self.commands.append((now_us(), line))

    def set_var(self, name: str, value: str | None) -> None:
        """switch_channel_set_variable: a (re)set variable moves to the bottom of the list."""
        self.dialplan_vars.pop(name, None)
        self.late_vars.pop(name, None)
        if value is not None:
            self.late_vars[name] = value
        self.values_cache.pop("vars", None)

    def transfer(self, dest: str, dialplan: str | None, context: str | None) -> None:
        """uuid_transfer: a new caller profile; a parked leg leaves park and rings. To the
        `inline` dialplan, `dest` is a list of applications run in order (see _run_inline)."""
        self._new_profile(dest, dialplan, context)
        if self.dialplan == "inline":
            self._run_inline(dest)
            return
        if self.state is CallState.ASKING:
            # the `socket` application holds the channel's thread: the new extension runs
            # once the connection ends
            self.moved = True
            return
        if self.state is CallState.PARKED:
            self._go_on(unpark=True)

    def _go_on(self, unpark: bool) -> None:
        """Leave park (CHANNEL_UNPARK) or the socket for the transfer's extension: ring, or
        talk on when answered already."""
        self._cancel("give_up")
        if self.answered_us:  # answered before it asked: it talks on, no ringing
            self.state = CallState.ANSWERED
            if unpark:
                self.sink.leg_event(self, "CHANNEL_UNPARK")
            self._arm("talk", self.duration, self.hangup, "NORMAL_CLEARING", "caller")
            return
        self.state = CallState.RINGING
        if unpark:
            self.sink.leg_event(self, "CHANNEL_UNPARK")
        if self.answer:
            self._arm("answer", self.answer_after, self.do_answer)
        else:
            by = "caller" if self.unanswered_cause == "ORIGINATOR_CANCEL" else "switch"
            self._arm("no_answer", self.duration, self.hangup, self.unanswered_cause, by)

    def _run_inline(self, text: str) -> None:
        """mod_dptools' inline dialplan: `app:data` parts separated by ',' (or by X after
        an `m:X:` prefix). The simulator runs `set`, `sched_hangup` (from now), `transfer`
        and `park`; a list that neither transfers nor parks ends the call, as FreeSWITCH's
        would."""
        delim = ","
        if len(text) > 3 and text[0] == "m" and text[1] == ":" and text[3] == ":":
            delim, text = text[2], text[4:]
        for part in text.split(delim):
            app, _, data = part.partition(":")
            if app in ("set", "sched_hangup"):
                self.run_app(app, data)
            elif app == "transfer":
                dest, dialplan, context = [*separate(data, 3), None, None][:3]
                self.transfer(dest or "", dialplan, context)
                return
            elif app == "park":
                return
            else:
                log.info("simulator ignores inline application %s", app)
        self.hangup("NORMAL_CLEARING")

    def _new_profile(self, dest: str, dialplan: str | None, context: str | None) -> None:
        t = now_us()
        if not self.transfers:
            self.transferred_us = t
        self.transfers.append((dest, dialplan or "XML", context or "default"))
        self.rdnis = self.dest
        self.dest = dest
        self.dialplan = dialplan or "XML"
        self.context = context or "default"
        self.profile_index += 1
        self.profile_created_us = t
        self.transfer_source = (
            f"{t // 1_000_000}:{new_uuid()}:bl_xfer:{dest}/{self.context}/{self.dialplan}"
        )
        self.set_var("transfer_history", self.transfer_source)
        self.set_var("transfer_source", self.transfer_source)

    def do_answer(self) -> None:
        """The far end answers: CHANNEL_ANSWER, execute_on_answer, talk for `duration`."""
        if self.state is not CallState.RINGING:
            return
        self.answered_us = now_us()
        self.state = CallState.ANSWERED
        self.sink.leg_event(self, "CHANNEL_ANSWER")
        self.callstate = "ACTIVE"
        self._run_on_answer()
        if self.state is CallState.ANSWERED:
            self._arm("talk", self.duration, self.hangup, "NORMAL_CLEARING", "caller")

    def hangup(self, cause: str = "NORMAL_CLEARING", by: str = "switch") -> bool:
        """End the leg now: CHANNEL_HANGUP, (UNPARK), HANGUP_COMPLETE, DESTROY."""
        if self.state is CallState.HUNGUP:
            return False
        was_parked = self.state is CallState.PARKED
        self.silence()
        self.hangup_us = now_us()
        self.cause = cause
        self.hangup_by = by
        self.state = CallState.HUNGUP
        self.sink.leg_event(self, "CHANNEL_HANGUP")
        self.callstate = "HANGUP"
        if was_parked:
            self.sink.leg_event(self, "CHANNEL_UNPARK")
        self.sink.leg_hung_up(self)
        self.sink.leg_event(self, "CHANNEL_HANGUP_COMPLETE")
        self.sink.leg_event(self, "CHANNEL_DESTROY")
        self.sink.leg_done(self)
        self.done.set()
        return True

    def silence(self) -> None:
        """Cancel every pending timer: the leg stays as it is, forever."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _arm(self, name: str, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        self._cancel(name)
        self._timers[name] = Timer(delay, self._fire_timer, name, callback, args)

    def _fire_timer(self, name: str, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._timers.pop(name, None)
        callback(*args)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _run_on_answer(self) -> None:
        """switch_channel_execute_on / api_on for the answer: every variable whose name starts
        with execute_on_answer (an application) or api_on_answer (an API command)."""
        for name, value in list(self.variables.items()):
            low = name.lower()
            if low.startswith("execute_on_answer"):
                self.executed_on_answer.append(value)
                app, data = _split_app(value)
                # it runs in the same instant as the answer: count from its second
                self.run_app(app, data, (self.answered_us or now_us()) // 1_000_000)
            elif low.startswith("api_on_answer"):
                self.executed_on_answer.append(value)
                cmd, _, arg = self.expand(value).partition(" ")
                self.sink.api(cmd, arg or None)
            if self.state is CallState.HUNGUP:
                return

    def run_app(self, app: str, data: str, now_s: int | None = None) -> None:
        """Run a dialplan application on the leg (fssim.dptools), its argument expanded;
        `now_s` is the epoch second `sched_hangup +N` counts from (default: now)."""
        when = now_us() // 1_000_000 if now_s is None else now_s
        dptools.execute(self, app, self.expand(data), when)

    def schedule_hangup(self, runtime: int, cause: str) -> None:
        """A hangup task for this leg at `runtime` (epoch seconds)."""
        self.sink.schedule_hangup(runtime, self.uuid, cause)
