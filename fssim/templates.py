"""Event templates compiled from real captured events, rendered as plain or json ESL frames.

Each template is one real event from `captured.py` with its header order kept. Values that
change per call or per event become slots: a *value* slot stands for one header's value (or a
token inside it, e.g. the caller number inside `Channel-Name`); a *lines* slot stands for zero
or more whole headers (the dialplan's variables, variables set later by the API, the `*_stamp`
variables, transfer headers). Constant parts are encoded once, at import, for both formats;
rendering joins the pre-encoded pieces with the encoded slot values.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from fssim import captured
from fssim.encoding import json_lines, json_string, json_value, plain_lines, url_encode

VALUE = 0  # a slot inside a header value (a token such as the caller number)
LINES = 1  # zero or more whole headers
WHOLE = 2  # a header's whole value (json: rendered as an array when it is `ARRAY::...`)
Slot = tuple[int, str]
Part = str | Slot
Context = Mapping[str, Any]
_chain = chain.from_iterable

# Headers whose whole value is a slot (header name -> slot key).
VALUE_SLOTS: dict[str, str] = {
    "Core-UUID": "core_uuid",
    "FreeSWITCH-Hostname": "hostname",
    "FreeSWITCH-Switchname": "hostname",
    "Event-Date-Local": "date_local",
    "Event-Date-GMT": "date_gmt",
    "Event-Date-Timestamp": "timestamp",
    "Event-Sequence": "seq",
    "Channel-Call-State": "callstate",
    "Answer-State": "answer_state",
    "Unique-ID": "uuid",
    "Channel-Call-UUID": "uuid",
    "Caller-Unique-ID": "uuid",
    "Caller-Destination-Number": "dest",
    "Caller-Dialplan": "dialplan",
    "Caller-Context": "context",
    "Caller-Profile-Index": "profile_index",
    "Caller-Profile-Created-Time": "profile_created_us",
    "Caller-Channel-Created-Time": "created_us",
    "Caller-Channel-Answered-Time": "answered_us",
    "Caller-Channel-Progress-Time": "progress_us",
    "Caller-Channel-Progress-Media-Time": "progress_media_us",
    "Caller-Channel-Hangup-Time": "hangup_us",
    # the caller profile again, as the channel's data carries it (prefix `Channel-`)
    "Channel-Unique-ID": "uuid",
    "Channel-Destination-Number": "dest",
    "Channel-Dialplan": "dialplan",
    "Channel-Context": "context",
    "Channel-Profile-Index": "profile_index",
    "Channel-Profile-Created-Time": "profile_created_us",
    "Channel-Channel-Created-Time": "created_us",
    "Channel-Channel-Answered-Time": "answered_us",
    "Channel-Channel-Progress-Time": "progress_us",
    "Channel-Channel-Progress-Media-Time": "progress_media_us",
    "Channel-Channel-Hangup-Time": "hangup_us",
    "variable_uuid": "uuid",
    "variable_call_uuid": "uuid",
    "variable_session_id": "session_id",
    "variable_sip_invite_stamp": "created_us",
    "variable_RFC2822_DATE": "rfc2822_date",
    "variable_DP_MATCH": "dp_match",
    "variable_hangup_cause": "cause",
    "variable_hangup_cause_q850": "q850",
    "Job-UUID": "job_uuid",
    "Job-Command": "job_command",
    "API-Command": "api_command",
    "Task-ID": "task_id",
    "Task-Group": "task_group",
    "Task-Runtime": "task_runtime",
    "Up-Time": "up_time",
    "Uptime-msec": "uptime_msec",
    "Session-Count": "session_count",
    "Session-Since-Startup": "session_since_startup",
    "Session-Peak-Max": "session_peak_max",
    "Session-Peak-FiveMin": "session_peak_fivemin",
    "Session-Per-Sec-Last": "sps_last",
    "Session-Per-Sec-Max": "sps_max",
    "Session-Per-Sec-FiveMin": "sps_fivemin",
    "Idle-CPU": "idle_cpu",
}

# Timing and billing variables set at hangup (switch_channel_set_timestamps); slot "v_<name>".
TIMING_VARS = (
    "start_epoch", "start_uepoch", "profile_start_epoch", "profile_start_uepoch",
    "answer_epoch", "answer_uepoch", "bridge_epoch", "bridge_uepoch", "progress_epoch",
    "progress_uepoch", "progress_media_epoch", "progress_media_uepoch", "end_epoch", "end_uepoch",
    "duration", "billsec", "progresssec", "answersec", "waitsec", "progress_mediasec",
    "flow_billsec", "mduration", "billmsec", "progressmsec", "answermsec", "waitmsec",
    "progress_mediamsec", "flow_billmsec", "uduration", "billusec", "progressusec",
    "answerusec", "waitusec", "progress_mediausec", "flow_billusec",
)
for _name in TIMING_VARS:
    VALUE_SLOTS[f"variable_{_name}"] = f"v_{_name}"

# Slots whose values never need encoding (digits, uuids, FreeSWITCH's own enum names): they
# are substituted as they are, which keeps rendering cheap.
SAFE_SLOTS = frozenset({
    "core_uuid", "timestamp", "seq", "callstate", "answer_state", "uuid", "profile_index",
    "profile_created_us", "created_us", "answered_us", "progress_us", "progress_media_us",
    "hangup_us", "session_id", "q850", "cause", "job_uuid", "task_id", "task_runtime",
    "uptime_msec", "session_count", "session_since_startup", "session_peak_max",
    "session_peak_fivemin", "sps_last", "sps_max", "sps_fivemin", "idle_cpu",
    *(f"v_{name}" for name in TIMING_VARS),
})

# Groups of headers replaced by one lines slot at the position of the first of them.
LINE_GROUPS: dict[str, frozenset[str]] = {
    # what the capture's dialplan set; the simulated dialplan sets rater_* and accountcode
    "dialplan_vars": frozenset({"variable_accountcode", "variable_rating_dest"}),
    "stamps": frozenset({
        "variable_start_stamp", "variable_profile_start_stamp", "variable_answer_stamp",
        "variable_bridge_stamp", "variable_resurrect_stamp", "variable_progress_stamp",
        "variable_progress_media_stamp", "variable_end_stamp",
    }),
    # present only when the far end hung up (BYE / CANCEL received)
    "sip_hangup_vars": frozenset({
        "variable_sip_term_status", "variable_proto_specific_hangup_cause",
        "variable_sip_term_cause", "variable_sip_hangup_disposition",
        "variable_sip_invite_failure_status", "variable_sip_invite_failure_phrase",
    }),
    "transfer_source": frozenset({"Caller-Transfer-Source"}),
    "rdnis": frozenset({"Caller-RDNIS"}),
    "job_arg": frozenset({"Job-Command-Arg"}),
    "api_arg": frozenset({"API-Command-Argument"}),
}
_LINE_GROUP_OF = {name: key for key, names in LINE_GROUPS.items() for name in names}

# Headers present only in some states, each occurrence its own lines slot: Hangup-Cause comes
# once the channel is hung up (twice in CHANNEL_HANGUP_COMPLETE).
REPEATED_LINES = {"Hangup-Cause": "cause_line"}

# Lines slots inserted after a header when the template does not carry them (a profile that
# was never transferred has no Caller-Transfer-Source / Caller-RDNIS).
_INSERT_AFTER = {"Caller-Source": "transfer_source", "Caller-Context": "rdnis"}


# --- templates ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Template:
    """One compiled event: header names in wire order and render-ready parts per format."""

    key: str
    event_name: str
    source: str
    header_names: tuple[str, ...]
    plain_parts: tuple[Part, ...]
    json_parts: tuple[Part, ...]
    plain_layout: Layout
    json_layout: Layout
    has_body: bool
    slots: frozenset[str]
    # lower-cased header name -> value pieces (slot key or None, literal text), first occurrence
    header_values: dict[str, tuple[tuple[str | None, str], ...]] = field(compare=False)
    captured_values: dict[str, Any] = field(compare=False)

    def render_plain(self, ctx: Context, body: str | None = None) -> bytes:
        """The text/event-plain payload (without the outer frame headers)."""
        layout = self.plain_layout
        safe, encoded, lines, whole = layout.fields
        enc = {name: ctx[key] for name, key in safe}
        enc.update({name: url_encode(ctx[key]) for name, key in encoded})
        enc.update({name: url_encode(ctx[key]) for name, key in whole})
        for name, key in lines:
            enc[name] = plain_lines(ctx[key])
        text = layout.join(enc)
        if body is not None:
            raw = body.encode()
            return f"{text}Content-Length: {len(raw)}\n\n".encode() + raw
        return f"{text}\n".encode()

    def render_json(self, ctx: Context, body: str | None = None) -> bytes:
        """The text/event-json payload."""
        layout = self.json_layout
        safe, encoded, lines, whole = layout.fields
        enc = {name: ctx[key] for name, key in safe}
        enc.update({name: json_string(ctx[key]) for name, key in encoded})
        enc.update({name: json_value(ctx[key]) for name, key in whole})
        for name, key in lines:
            enc[name] = json_lines(ctx[key])
        text = layout.join(enc)
        if body is not None:
            tail = f'"Content-Length":"{len(body.encode())}","_body":"{json_string(body)}"}}'
            return f"{{{text}{tail}".encode()
        return f"{{{text[:-1]}}}".encode()


Fields = tuple[tuple[tuple[str, str], ...], ...]


@dataclass(frozen=True)
class Layout:
    """A rendering plan: literal pieces interleaved with named fields, and how each field's
    value is encoded (grouped as safe, encoded, lines, whole)."""

    literals: tuple[str, ...]  # one more than fields
    getter: Callable[[Mapping[str, str]], tuple[str, ...]]
    fields: Fields

    def join(self, values: Mapping[str, str]) -> str:
        return "".join(_chain(zip(self.literals, self.getter(values), strict=False))) + \
            self.literals[-1]


def _layout(parts: Sequence[Part]) -> Layout:
    literals: list[str] = [""]
    names: list[str] = []
    groups: tuple[dict[str, str], ...] = ({}, {}, {}, {})
    for part in parts:
        if isinstance(part, str):
            literals[-1] += part
            continue
        kind, key = part
        name = f"{key}__{kind}"
        if kind == LINES:
            groups[2][name] = key
        elif kind == WHOLE:
            groups[3][name] = key
        elif key in SAFE_SLOTS:
            groups[0][name] = key
        else:
            groups[1][name] = key
        names.append(name)
        literals.append("")
    if len(names) == 1:
        only = names[0]

        def getter(values: Mapping[str, str]) -> tuple[str, ...]:
            return (values[only],)
    else:
        getter = operator.itemgetter(*names)  # type: ignore[assignment]
    return Layout(tuple(literals), getter, tuple(tuple(g.items()) for g in groups))


def _token_parts(value: str, tokens: Sequence[tuple[str, str]]) -> list[tuple[str | None, str]]:
    """Split `value` on captured per-call tokens: [(slot key or None, text), ...]."""
    parts: list[tuple[str | None, str]] = [(None, value)]
    for token, key in tokens:
        if not token:
            continue
        split: list[tuple[str | None, str]] = []
        for slot, text in parts:
            if slot is not None or token not in text:
                split.append((slot, text))
                continue
            pieces = text.split(token)
            for i, piece in enumerate(pieces):
                if i:
                    split.append((key, token))
                if piece:
                    split.append((None, piece))
        parts = split
    return parts


class _Builder:
    """Accumulates parts for both formats, merging adjacent literals."""

    def __init__(self) -> None:
        self.plain: list[Part] = []
        self.json: list[Part] = []

    @staticmethod
    def _add(parts: list[Part], item: Part) -> None:
        if isinstance(item, str) and parts and isinstance(parts[-1], str):
            parts[-1] = parts[-1] + item
        else:
            parts.append(item)

    def literal_header(self, name: str, value: str) -> None:
        self._add(self.plain, f"{name}: {url_encode(value)}\n")
        self._add(self.json, f'"{json_string(name)}":{json_value(value)},')

    def whole_value_header(self, name: str, key: str) -> None:
        if key in SAFE_SLOTS:
            self.value_header(name, [(key, "")])
            return
        self._add(self.plain, f"{name}: ")
        self._add(self.plain, (WHOLE, key))
        self._add(self.plain, "\n")
        self._add(self.json, f'"{json_string(name)}":')
        self._add(self.json, (WHOLE, key))
        self._add(self.json, ",")

    def value_header(self, name: str, pieces: list[tuple[str | None, str]]) -> None:
        self._add(self.plain, f"{name}: ")
        self._add(self.json, f'"{json_string(name)}":"')
        for slot, text in pieces:
            if slot is None:
                self._add(self.plain, url_encode(text))
                self._add(self.json, json_string(text))
            else:
                self._add(self.plain, (VALUE, slot))
                self._add(self.json, (VALUE, slot))
        self._add(self.plain, "\n")
        self._add(self.json, '",')

    def lines(self, key: str) -> None:
        self._add(self.plain, (LINES, key))
        self._add(self.json, (LINES, key))


def compile_template(key: str, source: str, headers: Sequence[tuple[str, str]],
                     body: str | None, *, line_slots: bool = True,
                     groups: Mapping[str, frozenset[str]] | None = None,
                     value_slots: Mapping[str, str] | None = None,
                     late_vars: bool = True) -> Template:
    """Turn one captured event into a Template (see the module docstring). Without
    `line_slots` only value slots are made (any event then renders back unchanged).
    `groups` replaces LINE_GROUPS, `value_slots` adds to VALUE_SLOTS; without `late_vars`
    no `late_vars` slot is placed after the channel's variables (a group may hold it)."""
    group_of = _LINE_GROUP_OF if groups is None else {
        name: k for k, names in groups.items() for name in names}
    slot_of = VALUE_SLOTS if value_slots is None else {**VALUE_SLOTS, **value_slots}
    values = dict(headers)
    tokens = sorted(
        ((values.get("Unique-ID", ""), "uuid"),
         (values.get("Caller-Caller-ID-Number", ""), "caller"),
         (values.get("Caller-Destination-Number", ""), "dest")),
        key=lambda t: -len(t[0]),
    )
    names = tuple(n for n, _ in headers)
    builder = _Builder()
    captured_values: dict[str, Any] = {}
    header_values: dict[str, tuple[tuple[str | None, str], ...]] = {}
    slots: set[str] = set()
    seen_groups: set[str] = set()
    has_late_vars = any(n == "variable_current_application" for n in names)
    last_var = max((i for i, n in enumerate(names) if n.startswith("variable_")), default=-1)
    groups_present = {group_of[n] for n in names if n in group_of}

    def lines_slot(slot_key: str, taken: list[tuple[str, str]]) -> None:
        builder.lines(slot_key)
        slots.add(slot_key)
        captured_values.setdefault(slot_key, []).extend(taken)

    for index, (name, value) in enumerate(headers):
        group = group_of.get(name) if line_slots else None
        if line_slots and name in REPEATED_LINES:
            builder.lines(REPEATED_LINES[name])
            slots.add(REPEATED_LINES[name])
            captured_values[REPEATED_LINES[name]] = [(name, value)]
        elif group is not None:
            if group not in seen_groups:
                seen_groups.add(group)
                lines_slot(group, [])
            captured_values[group].append((name, value))
        elif name in slot_of:
            slot_key = slot_of[name]
            builder.whole_value_header(name, slot_key)
            slots.add(slot_key)
            captured_values[slot_key] = value
            header_values.setdefault(name.lower(), ((slot_key, ""),))
        else:
            pieces = _token_parts(value, tokens)
            header_values.setdefault(name.lower(), tuple(pieces))
            if any(slot is not None for slot, _ in pieces):
                builder.value_header(name, pieces)
                for slot, text in pieces:
                    if slot is not None:
                        slots.add(slot)
                        captured_values[slot] = text
            else:
                builder.literal_header(name, value)
        if not line_slots:
            continue
        follow = _INSERT_AFTER.get(name)
        if follow and follow not in seen_groups and follow not in groups_present:
            seen_groups.add(follow)
            lines_slot(follow, [])
        if late_vars and (name == "variable_current_application"
                          or (not has_late_vars and index == last_var)):
            lines_slot("late_vars", [])
    return Template(
        key=key,
        event_name=values["Event-Name"],
        source=source,
        header_names=names,
        plain_parts=tuple(builder.plain),
        json_parts=tuple(builder.json),
        plain_layout=_layout(builder.plain),
        json_layout=_layout(builder.json),
        has_body=body is not None,
        slots=frozenset(slots),
        header_values=header_values,
        captured_values=captured_values,
    )


def _compile_all() -> dict[str, Template]:
    return {
        key: compile_template(key, source, headers, body)
        for key, (source, headers, body) in captured.EVENTS.items()
    }


TEMPLATES: dict[str, Template] = _compile_all()


def template(key: str) -> Template:
    """The compiled template for a key of `captured.EVENTS` (e.g. `CHANNEL_PARK`)."""
    return TEMPLATES[key]
