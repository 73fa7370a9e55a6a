"""What one Event Socket connection listens to: `event`, `noevents`, `nixevent` and `filter`,
as mod_event_socket parses them, and which fired events pass. No I/O: each command returns
the Reply-Text FreeSWITCH answers with."""

from __future__ import annotations

import re
from typing import Protocol

from fssim.wire import event_name


class Headers(Protocol):
    """A fired event as the filters see it (fssim.bus.Event is one)."""

    name: str

    def header(self, name: str) -> str | None: ...


class Subscription:
    """One connection's event subscription and filters."""

    def __init__(self) -> None:
        self.listening = False
        self.format = "plain"
        self.all_events = False
        self.events: set[str] = set()
        self.filters: list[tuple[str, str]] = []

    def wants(self, event: Headers) -> bool:
        if not self.listening:
            return False
        if not (self.all_events or event.name in self.events):
            return False
        return not self.filters or self._passes_filters(event)

    def _passes_filters(self, event: Headers) -> bool:
        """mod_event_socket's filter loop: any positive match lets the event through, a
        matching `-value` filter stops it; `/regex/` values are regular expressions."""
        send = False
        for name, raw in self.filters:
            value = event.header(name)
            if value is None:
                continue
            pos = True
            comp = raw
            while comp and comp[0] in "+- ":
                if comp[0] == "+":
                    pos = True
                elif comp[0] == "-":
                    pos = False
                comp = comp[1:]
            if send and pos:
                continue
            if raw.startswith("/"):
                pattern = comp.strip("/")
                hit = re.search(pattern, value) is not None
            else:
                hit = value.lower() == comp.lower()
            if hit:
                if pos:
                    send = True
                else:
                    return False
        return send

    # --- commands: each returns the Reply-Text --------------------------------------------

    def event(self, args: str) -> str:
        """`event [plain|json|xml] NAME ...`"""
        words = args.split()
        fmt = "plain"
        if words and words[0].lower() in ("plain", "json", "xml"):
            fmt = words.pop(0).lower()
        if fmt == "xml":
            return "-ERR xml events are not simulated"
        found, custom = 0, False
        for word in words:
            if custom:
                continue  # CUSTOM subclass names: the simulator fires no custom events
            name = event_name(word)
            if name is None:
                continue
            found += 1
            if name == "ALL":
                self.all_events = True
            else:
                self.events.add(name)
            custom = name == "CUSTOM"
        if not found:
            return "-ERR no keywords supplied"
        self.format = fmt
        self.listening = True
        return f"+OK event listener enabled {fmt}"

    def noevents(self) -> str:
        if not self.listening:
            return "-ERR not listening for events"
        self.listening = False
        self.all_events = False
        self.events.clear()
        return "+OK no longer listening for events"

    def nixevent(self, args: str) -> str:
        for word in args.split():
            name = event_name(word)
            if name == "ALL":
                self.all_events = False
                self.events.clear()
            elif name is not None:
                self.events.discard(name)
        return "+OK events nixed"

    def filter(self, args: str) -> str:
        """`filter [add] NAME VALUE`, `filter delete NAME [VALUE]`, `filter delete all`."""
        name, _, value = args.strip().partition(" ")
        if name.lower() == "delete" and value:
            name, _, value = value.partition(" ")
            if name.lower() == "all":
                self.filters.clear()
            else:
                self.filters = [
                    (n, v) for n, v in self.filters
                    if not (n.lower() == name.lower() and (not value or v == value))
                ]
            return f"+OK filter deleted. [{name}][{value}]"  # (no "=", unlike "added")
        if value:
            if name.lower() == "add":
                name, _, value = value.partition(" ")
            self.filters.append((name, value))
            return f"+OK filter added. [{name}]=[{value}]"
        return "-ERR invalid syntax"
