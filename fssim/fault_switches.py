"""The simulator's fault switches, for the tests: connections dropped, stalled or fed broken
bytes, events duplicated, lost or held back, replies withheld. A mixin of the Simulator,
on its ESL server, emitter and stream faults."""

from __future__ import annotations

from collections.abc import Iterable

from fssim.bus import StreamFaults, StreamRule
from fssim.emitter import Emitter
from fssim.faults import MALFORMED, WithholdRule
from fssim.server import EslServer


class FaultSwitches:
    """Fault injection on the switch's Event Socket (the Simulator sets the attributes)."""

    server: EslServer
    emitter: Emitter
    stream_faults: StreamFaults
    _withhold: list[WithholdRule]

    def drop_connections(self, mid_frame: bool = False, reset: bool = False) -> int:
        """Close every client socket abruptly (no disconnect notice); with `mid_frame` send
        half of a frame first, with `reset` send a TCP RST. Returns how many were dropped."""
        return self.server.drop_all(mid_frame, reset, sample=self.emitter.sample_event_frame)

    def stall(self, seconds: float) -> None:
        """Stop sending anything on every connection for `seconds` (sockets stay open;
        commands are still read and their replies queue up)."""
        self.server.stall_all(seconds)

    def resume(self) -> None:
        """End a stall now."""
        self.server.resume_all()

    def inject(self, data: bytes) -> None:
        """Write raw bytes into every connection's output stream, in order with the rest."""
        self.server.inject_all(data)

    def send_malformed(self, kind: str = "garbage") -> None:
        """Inject one of `faults.MALFORMED` (garbage, no-colon, bad-length, negative-length,
        huge-length, short-body, bad-event-body, bad-json, unknown-type) or `truncated`
        (the first half of a real event frame, the stream then goes on)."""
        for conn in self.server.connections:
            data = (self.emitter.sample_event_frame(conn.format)[:300] if kind == "truncated"
                    else MALFORMED[kind])
            conn.inject(data)

    def duplicate_events(self, count: int | None = 1, names: Iterable[str] | None = None,
                         uuid: str | None = None) -> StreamRule:
        """Deliver the next `count` matching events twice (same Event-Sequence)."""
        return self.stream_faults.add("duplicate", names, uuid, count)

    def lose_events(self, count: int | None = 1, names: Iterable[str] | None = None,
                    uuid: str | None = None) -> StreamRule:
        """Never deliver the next `count` matching events."""
        return self.stream_faults.add("lose", names, uuid, count)

    def hold_events(self, names: Iterable[str], uuid: str | None = None,
                    release_after: str | None = None, count: int | None = None) -> StreamRule:
        """Hold back matching events; they go out (in their order) right after the event
        named `release_after` for the same call, or at `release_held()`. E.g. hold
        CHANNEL_ANSWER until CHANNEL_HANGUP_COMPLETE to deliver them out of order."""
        return self.stream_faults.add("hold", names, uuid, count, release_after)

    def release_held(self) -> int:
        """Deliver every held event now; returns how many."""
        return self.stream_faults.deliver_held()

    def clear_faults(self) -> None:
        """Forget event-stream and withhold rules (held events stay held)."""
        self.stream_faults.clear()
        self._withhold.clear()

    def withhold_replies(self, count: int | None = 1, command: str | None = None) -> WithholdRule:
        """Run the next `count` api/bgapi commands starting with `command` (e.g.
        "uuid_transfer") but never send their reply."""
        rule = WithholdRule(command, count)
        self._withhold.append(rule)
        return rule
