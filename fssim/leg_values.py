"""The slot values of a leg's channel events (see fssim.templates), as of now: what each
header of CHANNEL_CREATE ... CHANNEL_DESTROY says about the leg, and at hangup the timing and
billing variables switch_channel_set_timestamps sets."""

from __future__ import annotations

from typing import Any

from fssim.causes import q850
from fssim.channel import CallState, Channel
from fssim.dates import rfc2822_date, stamp


def event_values(leg: Channel, timing: bool = False) -> dict[str, Any]:
    """Slot values of this leg's channel events, as of now (with the hangup-time
    variables once hung up, or when `timing` asks for them anyway)."""
    cache = leg.values_cache
    hung = leg.state is CallState.HUNGUP
    answer_state = "hangup" if hung else ("answered" if leg.answered_us else "ringing")
    if "vars" not in cache:
        cache["vars"] = (
            tuple((f"variable_{k}", v) for k, v in leg.dialplan_vars.items()),
            tuple((f"variable_{k}", v) for k, v in leg.late_vars.items()),
        )
    dp_vars, late = cache["vars"]
    if "rfc2822" not in cache:
        cache["rfc2822"] = rfc2822_date(leg.created_us // 1_000_000)
    values: dict[str, Any] = {
        "uuid": leg.uuid,
        "caller": leg.caller,
        "dest": leg.dest,
        "dialplan": leg.dialplan,
        "context": leg.context,
        "profile_index": str(leg.profile_index),
        "profile_created_us": str(leg.profile_created_us),
        "created_us": str(leg.created_us),
        "answered_us": str(leg.answered_us),
        "progress_us": str(leg.progress_us),
        "progress_media_us": str(leg.answered_us),
        "hangup_us": str(leg.hangup_us),
        "callstate": leg.callstate,
        "answer_state": answer_state,
        "cause_line": (("Hangup-Cause", leg.cause),) if hung else (),
        "cause": leg.cause or "",
        "q850": str(q850(leg.cause)) if leg.cause else "",
        "session_id": str(leg.session_id),
        "rfc2822_date": cache["rfc2822"],
        "dp_match": f"ARRAY::{leg.dest}|:{leg.dest}",
        "dialplan_vars": dp_vars,
        "late_vars": late,
        "transfer_source": (
            (("Caller-Transfer-Source", leg.transfer_source),) if leg.transfer_source
            else ()
        ),
        "rdnis": (("Caller-RDNIS", leg.rdnis),) if leg.rdnis else (),
        "remote_hangup": hung and leg.hangup_by == "caller",
    }
    if hung:
        if "timing" not in cache:
            cache["timing"] = _timing_values(leg)
        values.update(cache["timing"])
    elif timing:
        values.update(_timing_values(leg))
    return values

def _timing_values(leg: Channel) -> dict[str, Any]:
    """switch_channel_set_timestamps: epochs, *_stamp and the duration/bill variables
    (seconds and milliseconds are differences of truncated epochs, like FreeSWITCH)."""
    created, answered, hung = leg.created_us, leg.answered_us, leg.hangup_us
    progress, media, prof = leg.progress_us, leg.answered_us, leg.profile_created_us

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
    values["stamps"] = tuple((n, stamp(t // 1_000_000)) for n, t in stamps if t)
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
