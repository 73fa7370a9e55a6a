"""One FreeSWITCH node as the daemon uses it: an event connection, a command connection,
and the two switch operations the call handler needs (admit and hang up).

`api` runs inline in FreeSWITCH's listener and holds back that connection's events, so
commands go over their own connection; both reconnect by themselves (EslConnection.run).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from rater.calls.items import SwitchEvent
from rater.clock import Clock, SystemClock
from rater.config import FreeSwitchNode
from rater.errors import NoSuchChannel, SwitchUnavailable
from rater.esl import commands
from rater.esl.connection import EslConnection
from rater.esl.events import ChannelEvent
from rater.esl.names import EventName
from rater.esl.plain import PlainEvent
from rater.metrics import Metrics

log = logging.getLogger(__name__)

SUBSCRIBED = (EventName.CHANNEL_PARK, EventName.CHANNEL_ANSWER,
              EventName.CHANNEL_HANGUP_COMPLETE)

# channel variables of the dialplan contract (config/freeswitch/dialplan)
VAR_DIRECTION = "rater_direction"
VAR_ACCOUNT = "rater_account"
VAR_ACCOUNTCODE = "accountcode"
VAR_DESTINATION = "rater_destination"
RATED_DIRECTIONS = ("outbound", "inbound")
# the cause of a call the safety net cuts (the daemon's own cut-off uses it too)
NET_CAUSE = "ALLOTTED_TIMEOUT"

# Ask the switch only for the events of rated legs: the A leg of a call the dialplan marked.
# B legs and unrated calls never reach the daemon (mod_event_socket's `filter`: an event
# passes when one filter matches; the connection adds one for HEARTBEAT).
RATED_LEG_FILTERS = tuple((f"variable_{VAR_DIRECTION}", d) for d in RATED_DIRECTIONS)


def parked_event(node: str, ev: ChannelEvent) -> SwitchEvent:
    """A CHANNEL_PARK's fields; also built from `uuid_dump` for a channel found parked."""
    direction = ev.variable(VAR_DIRECTION) or ""
    return SwitchEvent(
        EventName.CHANNEL_PARK, node, rated=direction in RATED_DIRECTIONS, direction=direction,
        account=ev.variable(VAR_ACCOUNT) or ev.variable(VAR_ACCOUNTCODE) or None,
        destination=ev.variable(VAR_DESTINATION) or ev.destination_number or "",
        caller=ev.caller_id_number or "", created_usec=ev.created_time or 0,
        answered_usec=ev.answered_time or 0,
    )


def switch_event(node: str, ev: ChannelEvent) -> SwitchEvent:
    """The fields the call handler reads, taken from a channel event (lazily decoded)."""
    name = ev.name
    if name == EventName.CHANNEL_PARK:
        return parked_event(node, ev)
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


def admit_values(variables: dict[str, str], net_seconds: int, answered_usec: int,
                 now_s: int) -> tuple[dict[str, str], int | None]:
    """What admitting a leg sets on its channel, and the safety net to schedule at once
    (seconds from now), if any: a call not yet answered gets the net armed on its answer
    (`execute_on_answer`), one answered before it was decided gets it now, counted from
    its answer. N = net_seconds + 1 because FreeSWITCH schedules in whole epoch seconds
    (see NodeLink.admit)."""
    net = net_seconds + 1
    if not answered_usec:
        return {**variables, "execute_on_answer": f"sched_hangup +{net} {NET_CAUSE}"}, None
    talked = max(0, now_s - answered_usec // 1_000_000)
    return variables, max(1, net - talked)


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """One channel of `show channels as json`: what the channel sync needs of it."""

    uuid: str
    parked: bool          # waiting in the park application
    answered: bool        # callstate ACTIVE (or HELD)
    created_epoch: int


def channel_rows(text: str) -> dict[str, ChannelRow]:
    """uuid -> row, from the reply to `show channels as json` (`{"row_count":0}` when empty)."""
    doc = json.loads(text or "{}")
    rows: dict[str, ChannelRow] = {}
    for row in doc.get("rows", []):
        uuid = row.get("uuid")
        if not uuid:
            continue
        created = row.get("created_epoch") or "0"
        rows[uuid] = ChannelRow(
            uuid, parked=row.get("application") == "park",
            answered=row.get("callstate") in ("ACTIVE", "HELD"),
            created_epoch=int(created) if created.isdigit() else 0)
    return rows


class NodeLink:
    """The daemon's two connections to one node, and its SwitchControl."""

    def __init__(
        self,
        node: FreeSwitchNode,
        submit: Callable[[tuple[str, object]], None],
        on_connected: Callable[[NodeLink], None],
        metrics: Metrics,
        clock: Clock | None = None,
    ) -> None:
        self.node = node
        self._clock = clock or SystemClock()
        self.name = node.name
        self._submit = submit
        self._on_connected_cb = on_connected
        self._metrics = metrics
        self._events_seen = metrics.esl_events.labels(node.name)  # counted on every event
        self._core_uuid: str | None = None  # asked once per connection (core_uuid())
        liveness = 2 * node.heartbeat_interval + 5
        self.events = EslConnection(
            node.host, node.port, node.password, name=f"{node.name}/events",
            events=SUBSCRIBED, event_format=node.event_format, filters=RATED_LEG_FILTERS,
            on_event=self._on_event,
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
        self._core_uuid = None  # a restarted switch has a new one
        self._metrics.esl_reconnects.labels(self.name).inc()
        self._on_connected_cb(self)

    # --- what the call handler asks of the switch -------------------------------------------

    def admit(self, uuid: str, net_seconds: int, destination: str, context: str,
              variables: dict[str, str], answered_usec: int = 0) -> None:
        """Set the leg's variables and arm the safety net, then transfer the call on. Each
        command waits for the one before: a call never leaves park without its net (if
        setting it fails, nothing is transferred and the call stays parked).

        The net is `execute_on_answer=sched_hangup +N`: FreeSWITCH keeps whole epoch
        seconds for scheduled tasks, so with N = net_seconds + 1 it fires between net and
        net + 2 s after the answer, after the daemon's own cut-off (0.5 s before the paid
        end), only if the daemon is gone. A call answered before it parked
        (`answered_usec`) gets the net at once, counted from its answer.

        (One inline `uuid_transfer 'set:…,transfer:…' inline` would do it in one command,
        but cost FreeSWITCH 5 ms more CPU per call than these: benchmarks/README.md.)"""
        values, net_now = admit_values(variables, net_seconds, answered_usec,
                                       int(self._clock.now()))
        self._commands_ready()
        self.commands.api(commands.uuid_setvar_multi(uuid, values))
        if net_now is not None:
            self.commands.api(commands.sched_hangup(net_now, uuid, NET_CAUSE))
        self.commands.api(commands.uuid_transfer(uuid, destination, context))

    def arm_net(self, uuid: str, seconds: int) -> None:
        """Move the safety net to `seconds` from now: the old task removed and the new one
        added in one write, which FreeSWITCH runs back to back."""
        self._commands_ready()
        replies = self.commands.api_many([commands.sched_del(uuid),
                                          commands.sched_hangup(seconds, uuid, NET_CAUSE)])
        for reply in replies:
            reply.result()

    def hangup(self, uuid: str, cause: str) -> None:
        self._commands_ready()
        self.commands.api(commands.uuid_kill(uuid, cause))

    def exists(self, uuid: str) -> bool:
        """Whether the node has this channel now (its session table, not its database)."""
        self._commands_ready()
        return self.commands.api(commands.uuid_exists(uuid)).strip() == "true"

    def _commands_ready(self) -> None:
        # the command connection may still be (re)connecting while events already flow
        if not self.commands.wait_ready(self.node.command_timeout):
            raise SwitchUnavailable(f"{self.name}: command connection not ready")

    def core_uuid(self, timeout: float, fresh: bool = False) -> str:
        """The node's Core-UUID (new at every start of FreeSWITCH), asked once per
        connection unless `fresh`: it names the node a decision-socket call comes from."""
        if self._core_uuid is None or fresh:
            if not self.commands.wait_ready(timeout):
                raise SwitchUnavailable(f"{self.name}: command connection not ready")
            value = self.commands.api(commands.global_getvar("core_uuid"), timeout=timeout)
            self._core_uuid = value.strip()
        return self._core_uuid

    def channels(self, timeout: float) -> dict[str, ChannelRow]:
        """Every channel the node has now (`show channels as json`, which FreeSWITCH reads
        from its core database: a channel may show there a moment after it is gone)."""
        if not self.commands.wait_ready(timeout):
            raise SwitchUnavailable(f"{self.name}: command connection not ready")
        return channel_rows(self.commands.api(commands.show_channels_json(), timeout=timeout))

    def parked(self, uuid: str, timeout: float) -> SwitchEvent | None:
        """A CHANNEL_PARK for a channel found waiting in park (from `uuid_dump`), or None
        when it is gone."""
        try:
            text = self.commands.api(commands.uuid_dump(uuid), timeout=timeout)
        except NoSuchChannel:
            return None
        return parked_event(self.name, PlainEvent(text.encode("utf-8")))

    def answered_usec(self, uuid: str, timeout: float) -> int:
        """When the channel was answered (epoch µs), 0 if not yet or if it is gone: for a
        leg whose CHANNEL_ANSWER may have been lost while the daemon could not see it."""
        try:
            text = self.commands.api(commands.uuid_dump(uuid), timeout=timeout)
        except NoSuchChannel:
            return 0
        value = commands.dump_header(text, "Caller-Channel-Answered-Time") or "0"
        return int(value) if value.isdigit() else 0
