"""One simulated call leg: its state, its timers and the header values of its events.

The leg is an inbound SIP channel (FreeSWITCH's `Call-Direction` is `inbound` for both business
directions) that the dialplan marks for rating and parks while ringing. The rater then either
transfers it (it rings the far end, is answered, talks, hangs up) or kills it. Timestamps are
wall-clock microseconds like FreeSWITCH's; timers run on the gevent loop.
"""

from __future__ import annotations

import enum
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent.event
from gevent import get_hub

from rater.sim import templates
from rater.sim.causes import q850, str2cause
from rater.sim.separate import separate

if TYPE_CHECKING:
    from rater.sim.simulator import Simulator

log = logging.getLogger(__name__)

_VAR_REF = re.compile(r"\$\{([^}]*)\}")
_APP_SEP = re.compile(r"::|:| ")


def _split_app(value: str) -> tuple[str, str]:
    """`app data`, `app:data` or `app::data` (run asynchronously) -> (app, data)."""
    parts = _APP_SEP.split(value, maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def new_uuid() -> str:
    """A random (version 4) uuid as text, at a fraction of uuid.uuid4()'s cost (one per
    call and per transfer); not for secrets."""
    n = _getrandbits(128) & _UUID_CLEAR | _UUID_SET
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_getrandbits = random.getrandbits
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version and variant bits
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)       # version 4, RFC 4122 variant


def now_us() -> int:
    """Wall-clock microseconds since the epoch (FreeSWITCH's time unit)."""
    return time.time_ns() // 1000


def c_atol(text: str) -> int:
    """C `atol`: optional sign and leading digits, 0 when there are none."""
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


class Timer:
    """A one-shot callback on the gevent loop: far lighter than a greenlet per pending timer.

    The callback runs in the hub, so it must not block (firing events only queues bytes).
    """

    __slots__ = ("_watcher",)

    def __init__(self, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        self._watcher: Any = get_hub().loop.timer(max(delay, 0.0))
        self._watcher.start(self._run, callback, args)

    def _run(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.cancel()
        try:
            callback(*args)
        except Exception:
            log.exception("simulator timer callback failed")

    def cancel(self) -> None:
        """Stop the timer; harmless when it already ran or was cancelled."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.close()


class CallState(enum.StrEnum):
    PARKED = "parked"        # in the rating context, waiting for the rater
    RINGING = "ringing"      # transferred on, the far end rings
    ANSWERED = "answered"
    HUNGUP = "hungup"


@dataclass(eq=False)
class Channel:
    """A simulated leg and the record of what happened to it (times in µs since the epoch)."""

    sim: Simulator = field(repr=False)
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
    transferred_us: int = 0  # the first uuid_transfer (the rater's decision), 0 if none
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
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

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
        """CHANNEL_CREATE, then the dialplan's ring_ready + park: CHANNEL_PARK."""
        self.created_us = self.profile_created_us = now_us()
        self.dest = self.destination
        self.sim.emit_channel_event(self, "CHANNEL_CREATE")
        self.progress_us = now_us()
        self.callstate = "RINGING"
        if self.answer_first:
            self.answered_us = now_us()
            self.sim.emit_channel_event(self, "CHANNEL_ANSWER")
            self.callstate = "ACTIVE"
        self.sim.emit_channel_event(self, "CHANNEL_PARK")
        # The caller gives up if nobody takes the call out of park.
        self._arm("give_up", self.park_timeout, self.hangup, "ORIGINATOR_CANCEL", "caller")

    def record_command(self, line: str) -> None:
        self.commands.append((now_us(), line))

    def set_var(self, name: str, value: str | None) -> None:
        """switch_channel_set_variable: a (re)set variable moves to the bottom of the list."""
        self.dialplan_vars.pop(name, None)
        self.late_vars.pop(name, None)
        if value is not None:
            self.late_vars[name] = value
        self._cache.pop("vars", None)

    def transfer(self, dest: str, dialplan: str | None, context: str | None) -> None:
        """uuid_transfer: a new caller profile; a parked leg leaves park and rings. To the
        `inline` dialplan, `dest` is a list of applications run in order (see _run_inline)."""
        self._new_profile(dest, dialplan, context)
        if self.dialplan == "inline":
            self._run_inline(dest)
            return
        if self.state is not CallState.PARKED:
            return
        self._cancel("give_up")
        if self.answered_us:  # answered before it parked: it talks on, no ringing
            self.state = CallState.ANSWERED
            self.sim.emit_channel_event(self, "CHANNEL_UNPARK")
            self._arm("talk", self.duration, self.hangup, "NORMAL_CLEARING", "caller")
            return
        self.state = CallState.RINGING
        self.sim.emit_channel_event(self, "CHANNEL_UNPARK")
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
            if app == "set":
                name, _, value = data.partition("=")
                self.set_var(name, value or None)
            elif app == "transfer":
                dest, dialplan, context = [*separate(data, 3), None, None][:3]
                self.transfer(dest or "", dialplan, context)
                return
            elif app == "park":
                return
            elif app == "sched_hangup":
                self._execute_app(app, self.expand(data), now_us() // 1_000_000)
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
        self.sim.emit_channel_event(self, "CHANNEL_ANSWER")
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
        self.sim.scheduler.drop_group(self.uuid)
        self.hangup_us = now_us()
        self.cause = cause
        self.hangup_by = by
        self.state = CallState.HUNGUP
        self.sim.emit_channel_event(self, "CHANNEL_HANGUP")
        self.callstate = "HANGUP"
        if was_parked:
            self.sim.emit_channel_event(self, "CHANNEL_UNPARK")
        if self.sim.record_writer is not None:
            self.sim.record_writer(self)
        self.sim.emit_channel_event(self, "CHANNEL_HANGUP_COMPLETE")
        if self.sim.emit_destroy:
            self.sim.emit_channel_event(self, "CHANNEL_DESTROY")
        self.sim.channel_done(self)
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
                self._execute_app(app, self.expand(data))
            elif low.startswith("api_on_answer"):
                self.executed_on_answer.append(value)
                cmd, _, arg = self.expand(value).partition(" ")
                self.sim.api.execute(cmd, arg or None)
            if self.state is CallState.HUNGUP:
                return

    def _execute_app(self, app: str, data: str, now_s: int | None = None) -> None:
        """The dialplan applications the simulator understands (others are only recorded)."""
        if app != "sched_hangup":
            log.info("simulator ignores application %s on answer", app)
            return
        # mod_dptools sched_hangup: `[+]<time> [<cause>] [bleg]` for this channel; the seconds
        # are atol(argv[0] + 1) whatever the sign, and a uuid given as second argument is
        # parsed as the cause, as FreeSWITCH does.
        argv = data.split()
        if not argv:
            return
        sec = c_atol(argv[0][1:])
        cause = str2cause(argv[1]) if len(argv) > 1 else "ALLOTTED_TIMEOUT"
        if sec == 0:
            self.hangup(cause)
            return
        if now_s is None:
            # on answer it runs in the same instant as the answer: count from its second
            now_s = (self.answered_us or now_us()) // 1_000_000
        when = now_s + sec if argv[0].startswith("+") else c_atol(argv[0])
        self.sim.scheduler.schedule_hangup(when, self.uuid, cause)

    # --- header values -----------------------------------------------------------------------

    def context_values(self, timing: bool = False) -> dict[str, Any]:
        """Slot values of this leg's channel events, as of now (with the hangup-time
        variables once hung up, or when `timing` asks for them anyway)."""
        cache = self._cache
        hung = self.state is CallState.HUNGUP
        answer_state = "hangup" if hung else ("answered" if self.answered_us else "ringing")
        if "vars" not in cache:
            cache["vars"] = (
                tuple((f"variable_{k}", v) for k, v in self.dialplan_vars.items()),
                tuple((f"variable_{k}", v) for k, v in self.late_vars.items()),
            )
        dp_vars, late = cache["vars"]
        if "rfc2822" not in cache:
            cache["rfc2822"] = templates.rfc2822_date(self.created_us // 1_000_000)
        values: dict[str, Any] = {
            "uuid": self.uuid,
            "caller": self.caller,
            "dest": self.dest,
            "dialplan": self.dialplan,
            "context": self.context,
            "profile_index": str(self.profile_index),
            "profile_created_us": str(self.profile_created_us),
            "created_us": str(self.created_us),
            "answered_us": str(self.answered_us),
            "progress_us": str(self.progress_us),
            "progress_media_us": str(self.answered_us),
            "hangup_us": str(self.hangup_us),
            "callstate": self.callstate,
            "answer_state": answer_state,
            "cause_line": (("Hangup-Cause", self.cause),) if hung else (),
            "cause": self.cause or "",
            "q850": str(q850(self.cause)) if self.cause else "",
            "session_id": str(self.session_id),
            "rfc2822_date": cache["rfc2822"],
            "dp_match": f"ARRAY::{self.dest}|:{self.dest}",
            "dialplan_vars": dp_vars,
            "late_vars": late,
            "transfer_source": (
                (("Caller-Transfer-Source", self.transfer_source),) if self.transfer_source
                else ()
            ),
            "rdnis": (("Caller-RDNIS", self.rdnis),) if self.rdnis else (),
            "remote_hangup": hung and self.hangup_by == "caller",
        }
        if hung:
            if "timing" not in cache:
                cache["timing"] = self._timing_values()
            values.update(cache["timing"])
        elif timing:
            values.update(self._timing_values())
        return values

    def _timing_values(self) -> dict[str, Any]:
        """switch_channel_set_timestamps: epochs, *_stamp and the duration/bill variables
        (seconds and milliseconds are differences of truncated epochs, like FreeSWITCH)."""
        created, answered, hung = self.created_us, self.answered_us, self.hangup_us
        progress, media, prof = self.progress_us, self.answered_us, self.profile_created_us

        def diffs(name: str, since: int, until: int) -> dict[str, str]:
            if not since or not until:
                s = ms = us = 0
            else:
                s = until // 1_000_000 - since // 1_000_000
                ms = until // 1000 - since // 1000
                us = until - since
            return {f"v_{name}sec": str(s), f"v_{name}msec": str(ms), f"v_{name}usec": str(us)}

        values: dict[str, Any] = {}
        for name, t in (("start", created), ("profile_start", prof), ("answer", answered),
                        ("bridge", 0), ("progress", progress), ("progress_media", media),
                        ("end", hung)):
            values[f"v_{name}_epoch"] = str(t // 1_000_000)
            values[f"v_{name}_uepoch"] = str(t)
        stamps = [("variable_start_stamp", created), ("variable_profile_start_stamp", prof),
                  ("variable_answer_stamp", answered), ("variable_progress_stamp", progress),
                  ("variable_progress_media_stamp", media), ("variable_end_stamp", hung)]
        values["stamps"] = tuple((n, templates.stamp(t // 1_000_000)) for n, t in stamps if t)
        values.update({
            "v_duration": str(hung // 1_000_000 - created // 1_000_000),
            "v_mduration": str(hung // 1000 - created // 1000),
            "v_uduration": str(hung - created),
        })
        values.update(diffs("bill", answered, hung))
        values.update(diffs("progress", created if progress else 0, progress))
        values.update(diffs("answer", created if answered else 0, answered))
        values.update(diffs("wait", 0, 0))
        values.update(diffs("progress_media", created if media else 0, media))
        values.update(diffs("flow_bill", created if answered else 0, hung))
        return values

