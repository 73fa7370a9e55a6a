"""The channel's data: what FreeSWITCH's `socket` application answers `connect` with on its
outbound connection (mod_event_socket's parse_command builds a CHANNEL_DATA event with the
caller profile under `Channel-` and the channel's headers and variables, adds the reply
headers, and writes it serialized as one `command/reply` frame with no body).

The template is compiled from the real frame (captured.CHANNEL_DATA) like the event
templates: per-call values are slots, and three runs of headers are lines slots of their
own, so a simulated leg fills them with its own:

- `directory_vars`: the captured caller authenticated by digest against a directory user
  (the REQUEST_PARAMS copy, `user_context`, `accountcode`, ...). The simulator's calls are
  not authenticated (their dialplan names the account, as the capture's sipp calls in
  `captures/` did): none.
- `dialplan_vars`: what the dialplan set (`rater_account`, `rater_direction`,
  `rater_destination` in the capture): the leg's dialplan variables.
- `late_vars`: `socket_host`, set by the `socket` application, then whatever was set later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fssim import captured
from fssim.channel import Channel
from fssim.leg_values import event_values
from fssim.templates import LINE_GROUPS, Template, compile_template

# The captured digest-authenticated caller's directory block (sofia's REQUEST_PARAMS copy
# and the directory user's variables), in wire order.
DIRECTORY_VARS = frozenset(f"variable_{name}" for name in (
    "sip_authorized", "Event-Name", "Core-UUID", "FreeSWITCH-Hostname",
    "FreeSWITCH-Switchname", "FreeSWITCH-IPv4", "FreeSWITCH-IPv6", "Event-Date-Local",
    "Event-Date-GMT", "Event-Date-Timestamp", "Event-Calling-File", "Event-Calling-Function",
    "Event-Calling-Line-Number", "Event-Sequence", "sip_number_alias", "sip_auth_username",
    "sip_auth_realm", "number_alias", "requested_user_name", "requested_domain_name",
    "record_stereo", "default_gateway", "default_areacode", "transfer_fallback_extension",
    "user_context", "accountcode", "user_name", "domain_name",
))
GROUPS: dict[str, frozenset[str]] = {
    **LINE_GROUPS,
    "directory_vars": DIRECTORY_VARS,
    "dialplan_vars": frozenset({"variable_rater_account", "variable_rater_direction",
                                "variable_rater_destination"}),
    "late_vars": frozenset({"variable_socket_host"}),
}
# the `socket` application's argument (`host:port`)
VALUE_SLOTS = {"variable_current_application_data": "socket_data"}


def _compile() -> Template:
    source, headers = captured.CHANNEL_DATA
    return compile_template("CHANNEL_DATA", source, headers, None, groups=GROUPS,
                            value_slots=VALUE_SLOTS, late_vars=False)


TEMPLATE = _compile()


def render(leg: Channel, socket_data: str, event_fields: Mapping[str, Any]) -> bytes:
    """The whole frame for this leg as it is now; `socket_data` is the application's
    argument (`127.0.0.1:8084`), `event_fields` the Event-* slot values (core uuid,
    hostname, dates, sequence)."""
    ctx = event_values(leg)
    ctx["directory_vars"] = ()
    ctx["socket_data"] = socket_data
    ctx.update(event_fields)
    return TEMPLATE.render_plain(ctx)
