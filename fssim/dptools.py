"""The dialplan applications the simulator runs on a leg (mod_dptools): `set`, `multiset`,
`unset`, `transfer`, `hangup`, `sched_hangup`, as the decision socket's `sendmsg` and the
leg's `execute_on_answer` run them.

Each follows mod_dptools.c of FreeSWITCH 1.10.12. The argument comes expanded (`${var}`), as
switch_core_session_exec passes it. Other applications FreeSWITCH has are logged and
ignored (the simulator has no media, bridges or IVRs); a name FreeSWITCH has no
application for hangs the leg up with DESTINATION_OUT_OF_ORDER, as
switch_core_session_execute_application does ("Invalid Application").
"""

from __future__ import annotations

import logging
from typing import Protocol

from fssim.causes import str2cause
from fssim.separate import c_atol, separate, split_on

log = logging.getLogger(__name__)

# mod_dptools' applications (SWITCH_ADD_APP in mod_dptools.c) and mod_event_socket's `socket`.
KNOWN_APPS = frozenset((
    "blind_transfer_ack", "bind_digit_action", "capture", "clear_digit_action",
    "digit_action_set_realm", "privacy", "set_audio_level", "set_mute", "flush_dtmf", "hold",
    "unhold", "mutex", "page", "transfer", "check_acl", "verbose_events", "novideo", "cng_plc",
    "early_hangup", "sleep", "delay_echo", "strftime", "phrase", "eval", "set_media_stats",
    "stop", "set_zombie_exec", "pre_answer", "answer", "wait_for_answer",
    "wait_for_video_ready", "hangup", "set_name", "presence", "log", "info", "event",
    "sound_test", "export", "bridge_export", "set", "multiset", "push", "unshift",
    "set_global", "set_profile_var", "unset", "multiunset", "capture_text", "acknowledge_call",
    "ring_ready", "remove_bugs", "break", "detect_speech", "play_and_detect_speech", "ivr",
    "redirect", "video_refresh", "video_decode", "send_info", "jitterbuffer", "send_display",
    "respond", "deflect", "recovery_refresh", "reuse_caller_profile", "queue_dtmf",
    "send_dtmf", "sched_cancel", "sched_hangup", "sched_broadcast", "sched_transfer",
    "execute_extension", "sched_heartbeat", "enable_heartbeat", "filter_codecs",
    "enable_keepalive", "media_reset", "mkdir", "rename", "transfer_vars", "soft_hold",
    "bind_meta_app", "unbind_meta_app", "block_dtmf", "unblock_dtmf", "intercept", "eavesdrop",
    "native_eavesdrop", "three_way", "set_user", "stop_dtmf", "start_dtmf",
    "stop_dtmf_generate", "start_dtmf_generate", "stop_tone_detect", "fax_detect",
    "tone_detect", "echo", "park", "park_state", "gentones", "playback", "broadcast",
    "endless_playback", "loop_playback", "att_xfer", "read", "play_and_get_digits",
    "stop_video_write_overlay", "video_write_overlay", "stop_record_session", "record_session",
    "record_session_mask", "record_session_unmask", "record_session_pause",
    "record_session_resume", "record", "preprocess", "stop_displace_session",
    "displace_session", "speak", "clear_speech_cache", "system", "bgsystem", "say",
    "detect_audio", "detect_silence", "wait_for_silence", "session_loglevel", "limit",
    "limit_hash", "limit_execute", "limit_hash_execute", "pickup", "deduplicate_dtmf",
    "vad_test", "debug_media", "socket",
))


class AppLeg(Protocol):
    """What the applications do to a leg (fssim.channel.Channel is one)."""

    uuid: str

    def set_var(self, name: str, value: str | None) -> None: ...

    def expand(self, text: str) -> str: ...

    def transfer(self, dest: str, dialplan: str | None, context: str | None) -> None: ...

    def hangup(self, cause: str = "NORMAL_CLEARING", by: str = "switch") -> bool: ...

    def schedule_hangup(self, runtime: int, cause: str) -> None: ...


def execute(leg: AppLeg, app: str, data: str, now_s: int) -> None:
    """Run one application with its (expanded) argument; `now_s` is the epoch second it
    runs in (what `sched_hangup +N` counts from)."""
    runner = _APPS.get(app)
    if runner is not None:
        runner(leg, data, now_s)
    elif app in KNOWN_APPS:
        log.info("simulator ignores application %s on %s", app, leg.uuid)
    else:
        log.warning("invalid application %s on %s: hung up", app, leg.uuid)
        leg.hangup("DESTINATION_OUT_OF_ORDER")


def base_set(leg: AppLeg, data: str) -> None:
    """`set name=value` (or `name,value`); an empty value unsets; the value is expanded."""
    if not data:
        log.info("set on %s: no variable name specified", leg.uuid)
        return
    at = data.find("=")
    if at < 0:
        at = data.find(",")
    if at < 0:
        leg.set_var(data, None)
        return
    value = data[at + 1:]
    leg.set_var(data[:at], leg.expand(value) if value else None)


def _set(leg: AppLeg, data: str, now_s: int) -> None:
    base_set(leg, data)


def _multiset(leg: AppLeg, data: str, now_s: int) -> None:
    """`multiset a=1 b=2`, or with another delimiter `multiset ^^|a=1|b=x y`."""
    delim = " "
    if data.startswith("^^") and len(data) > 2:
        delim, data = data[2], data[3:]
    parts = separate(data, 256) if delim == " " else split_on(data, delim, 256)
    for part in parts:
        base_set(leg, part)


def _unset(leg: AppLeg, data: str, now_s: int) -> None:
    if data:
        leg.set_var(data, None)


def _transfer(leg: AppLeg, data: str, now_s: int) -> None:
    """`transfer <dest> [<dialplan> [<context>]]`; `-bleg` / `-both` name a bridged partner
    the simulator never has (with `-both` the leg itself still goes)."""
    argv = separate(data, 4)
    if not argv:
        log.info("transfer on %s: no extension specified", leg.uuid)
        return
    if argv[0].lower() in ("-bleg", "-both"):
        log.info("transfer %s on %s: no B-leg present", argv[0], leg.uuid)
        if argv[0].lower() == "-bleg":
            return
        argv = argv[1:]
    dest, dialplan, context = [*argv, None, None, None][:3]
    leg.transfer(dest or "", dialplan or None, context or None)


def _hangup(leg: AppLeg, data: str, now_s: int) -> None:
    leg.hangup(str2cause(data) if data else "NORMAL_CLEARING")


def _sched_hangup(leg: AppLeg, data: str, now_s: int) -> None:
    """`sched_hangup [+]<time> [<cause>] [bleg]`: the seconds are atol(argv[0] + 1) whatever
    the sign, and 0 hangs up at once (a uuid given as second argument is parsed as the
    cause, as FreeSWITCH does)."""
    argv = separate(data, 5)
    if not argv:
        log.info("sched_hangup on %s: no time specified", leg.uuid)
        return
    sec = c_atol(argv[0][1:])
    cause = str2cause(argv[1]) if len(argv) > 1 else "ALLOTTED_TIMEOUT"
    if sec == 0:
        leg.hangup(cause)
        return
    leg.schedule_hangup(now_s + sec if argv[0].startswith("+") else c_atol(argv[0]), cause)


_APPS = {"set": _set, "multiset": _multiset, "unset": _unset, "transfer": _transfer,
         "hangup": _hangup, "sched_hangup": _sched_hangup}
