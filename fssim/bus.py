"""Fired events: rendered at most once per format, then fanned out to the listeners that want
them, through the event-stream faults (duplicate, lose, hold back / reorder)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fssim.templates import LINES, Template

_FRAME_HEAD = {
    "plain": "Content-Length: {}\nContent-Type: text/event-plain\n\n",
    "json": "Content-Length: {}\nContent-Type: text/event-json\n\n",
}


class Event:
    """One fired event: a template, the slot values as of the firing, an optional body."""

    __slots__ = ("_frames", "body", "ctx", "name", "seq", "template", "uuid")

    def __init__(self, template: Template, ctx: Mapping[str, Any], body: str | None = None,
                 uuid: str | None = None) -> None:
        self.name = template.event_name
        self.template = template
        self.ctx = ctx
        self.body = body
        self.uuid = uuid
        self.seq = int(ctx["seq"])
        self._frames: dict[str, bytes] = {}

    def frame(self, fmt: str) -> bytes:
        """The complete ESL frame in `plain` or `json`, rendered once."""
        frame = self._frames.get(fmt)
        if frame is None:
            if fmt == "json":
                payload = self.template.render_json(self.ctx, self.body)
            else:
                payload = self.template.render_plain(self.ctx, self.body)
            frame = _FRAME_HEAD[fmt].format(len(payload)).encode() + payload
            self._frames[fmt] = frame
        return frame

    def header(self, name: str) -> str | None:
        """A header's (decoded) value, for filters; None when the event has no such header."""
        pieces = self.template.header_values.get(name.lower())
        if pieces is not None:
            return "".join(text if slot is None else self.ctx[slot] for slot, text in pieces)
        low = name.lower()
        for part in self.template.plain_parts:
            if isinstance(part, tuple) and part[0] == LINES:
                for header, value in self.ctx[part[1]]:
                    if header.lower() == low:
                        return value
        return None


class Listener(Protocol):
    """Where fired events go (fssim.connection.Connection is one)."""

    def wants(self, event: Event) -> bool: ...

    def send_event(self, event: Event) -> None: ...


@dataclass(eq=False)
class StreamRule:
    """One event-stream fault: which events it catches and how many more it will catch."""

    kind: str  # "duplicate" | "lose" | "hold"
    names: frozenset[str] | None
    uuid: str | None
    remaining: int | None  # None: no limit
    release_after: str | None = None

    def catches(self, event: Event) -> bool:
        if self.remaining == 0:
            return False
        if self.names is not None and event.name not in self.names:
            return False
        return self.uuid is None or self.uuid == event.uuid


@dataclass
class StreamFaults:
    """Event-stream faults applied when events are fanned out to listeners."""

    rules: list[StreamRule] = field(default_factory=list)
    held: list[tuple[Event, list[Listener], StreamRule]] = field(default_factory=list)

    def add(self, kind: str, names: Iterable[str] | None, uuid: str | None,
            count: int | None, release_after: str | None = None) -> StreamRule:
        rule = StreamRule(kind, frozenset(names) if names is not None else None, uuid, count,
                          release_after)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def match(self, event: Event) -> StreamRule | None:
        for rule in self.rules:
            if rule.catches(event):
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None

    def deliver_held(self) -> int:
        """Deliver every held event now, in order; returns how many."""
        released = self.release()
        for event, targets in released:
            for listener in targets:
                listener.send_event(event)
        return len(released)

    def release(self, after: Event | None = None) -> list[tuple[Event, list[Listener]]]:
        """Held events to deliver now: all of them, or those waiting for `after`."""
        out, keep = [], []
        for event, targets, rule in self.held:
            if after is None or (rule.release_after == after.name
                                 and (rule.uuid is None or rule.uuid == after.uuid)
                                 and (event.uuid is None or event.uuid == after.uuid)):
                out.append((event, targets))
            else:
                keep.append((event, targets, rule))
        self.held = keep
        return out


def deliver(event: Event, connections: Iterable[Listener], faults: StreamFaults) -> None:
    """Queue `event` on every listener that wants it, through the stream faults."""
    targets = [c for c in connections if c.wants(event)]
    if targets:
        rule = faults.match(event)
        if rule is not None and rule.kind == "lose":
            targets = []
        elif rule is not None and rule.kind == "hold":
            faults.held.append((event, targets, rule))
            targets = []
        for conn in targets:
            conn.send_event(event)
        if rule is not None and rule.kind == "duplicate":
            for conn in targets:
                conn.send_event(event)
    if faults.held:
        for held, held_targets in faults.release(after=event):
            for conn in held_targets:
                conn.send_event(held)
