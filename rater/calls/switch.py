"""One FreeSWITCH node as the daemon uses it: an event connection, a command connection,
and the two switch operations the call handler needs (admit and hang up).

`api` runs inline in FreeSWITCH's listener and holds back that connection's events, so
commands go over their own connection; both reconnect by themselves (EslConnection.run).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from rater.calls.handler import SwitchEvent
from rater.config import FreeSwitchNode
from rater.errors import NoSuchChannel, SwitchUnavailable
from rater.esl import commands
from rater.esl.connection import EslConnection
from rater.esl.events import ChannelEvent, EventName
from rater.metrics import Metrics

log = logging.getLogger(__name__)

SUBSCRIBED = (EventName.CHANNEL_PARK, EventName.CHANNEL_ANSWER,
              EventName.CHANNEL_HANGUP_COMPLETE)

# channel variables of the dialplan contract (config/freeswitch/dialplan)
VAR_DIRECTION = "rater_direction"
VAR_ACCOUNT = "rater_account"
VAR_ACCOUNTCODE = "accountcode"
VAR_DESTINATION = "rater_destination"


def switch_event(node: str, ev: ChannelEvent) -> SwitchEvent:
    """The fields the call handler reads, taken from a channel event (lazily decoded)."""
    name = ev.name
    if name == EventName.CHANNEL_PARK:
        direction = ev.variable(VAR_DIRECTION) or ""
        return SwitchEvent(
            name, node, rated=direction in ("outbound", "inbound"), direction=direction,
            account=ev.variable(VAR_ACCOUNT) or ev.variable(VAR_ACCOUNTCODE) or None,
            destination=ev.variable(VAR_DESTINATION) or ev.destination_number or "",
            caller=ev.caller_id_number or "", created_usec=ev.created_time or 0,
        )
    # Whether a leg is rated is decided at CHANNEL_PARK (the handler reads `rated` there
    # only); later events concern legs already rated, so their variables are not searched.
    if name == EventName.CHANNEL_ANSWER:
        return SwitchEvent(name, node, rated=True,
                           answered_usec=ev.answered_time or ev.timestamp or 0)
    return SwitchEvent(
        name, node, rated=True, created_usec=ev.created_time or 0,
        answered_usec=ev.answered_time or 0, hangup_usec=ev.hangup_time or 0,
        billmsec=ev.billmsec, hangup_cause=ev.hangup_cause or "",
    )


class NodeLink:
    """The daemon's two connections to one node, and its SwitchControl."""

    def __init__(
        self,
        node: FreeSwitchNode,
        submit: Callable[[tuple[str, object]], None],
        on_connected: Callable[[NodeLink], None],
        metrics: Metrics,
    ) -> None:
        self.node = node
        self.name = node.name
        self._submit = submit
        self._on_connected_cb = on_connected
        self._metrics = metrics
        self._events_seen = metrics.esl_events.labels(node.name)  # counted on every event
        liveness = 2 * node.heartbeat_interval + 5
        self.events = EslConnection(
            node.host, node.port, node.password, name=f"{node.name}/events",
            events=SUBSCRIBED, event_format=node.event_format, on_event=self._on_event,
            on_connected=self._connected, connect_timeout=node.connect_timeout,
            command_timeout=node.command_timeout, liveness_timeout=liveness,
        )
        self.commands = EslConnection(
            node.host, node.port, node.password, name=f"{node.name}/commands",
            events=(), connect_timeout=node.connect_timeout,
            command_timeout=node.command_timeout, liveness_timeout=liveness,
        )

    @property
    def ready(self) -> bool:
        return self.events.connected and self.commands.connected

    def _on_event(self, ev: ChannelEvent) -> None:
        # runs in the reader greenlet: only route the event, decode it in the call's worker
        self._events_seen.inc()
        uuid = ev.unique_id
        if uuid and ev.name in SUBSCRIBED:
            self._submit((uuid, (self.name, ev)))

    def _connected(self, _conn: EslConnection) -> None:
        self._metrics.esl_reconnects.labels(self.name).inc()
        self._on_connected_cb(self)

    # --- what the call handler asks of the switch -------------------------------------------

    def admit(self, uuid: str, max_seconds: int, destination: str, context: str,
              variables: dict[str, str]) -> None:
        """Arm the safety net, set the leg's variables, and transfer the call on."""
        # FreeSWITCH keeps whole epoch seconds for scheduled tasks, so this fires between
        # max and max + 2 s: after the daemon's own cut-off (max - 0.5 s), only if it is gone.
        net = max_seconds + 1
        values = {**variables, "execute_on_answer": f"sched_hangup +{net} ALLOTTED_TIMEOUT"}
        self._commands_ready()
        setvars, transfer = self.commands.api_many([
            commands.uuid_setvar_multi(uuid, values),
            commands.uuid_transfer(uuid, destination, context)])
        transfer.result()  # replies come in order: once this one is in, both are
        setvars.result()

    def hangup(self, uuid: str, cause: str) -> None:
        self._commands_ready()
        self.commands.api(commands.uuid_kill(uuid, cause))

    def _commands_ready(self) -> None:
        # the command connection may still be (re)connecting while events already flow
        if not self.commands.wait_ready(self.node.command_timeout):
            raise SwitchUnavailable(f"{self.name}: command connection not ready")

    def live_channels(self, timeout: float) -> set[str]:
        """Uuids of every channel the node has now (`show channels as json`)."""
        if not self.commands.wait_ready(timeout):
            raise TimeoutError(f"{self.name}: command connection not ready")
        text = self.commands.api(commands.show_channels_json(), timeout=timeout)
        doc = json.loads(text or "{}")
        return {row["uuid"] for row in doc.get("rows", []) if row.get("uuid")}

    def answered_usec(self, uuid: str, timeout: float) -> int:
        """When the channel was answered (epoch µs), 0 if not yet or if it is gone: for a
        leg whose CHANNEL_ANSWER may have been lost while the daemon could not see it."""
        try:
            text = self.commands.api(commands.uuid_dump(uuid), timeout=timeout)
        except NoSuchChannel:
            return 0
        value = commands.dump_header(text, "Caller-Channel-Answered-Time") or "0"
        return int(value) if value.isdigit() else 0
