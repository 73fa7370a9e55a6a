"""greenswitch-style event handlers, for an EslConnection given no `on_event`.

This is where greenswitch still earns its place in the daemon: the handler registry is
greenswitch's own (`register_handle` / `unregister_handle` as its users know them, and its
logging of a handler that raises, `_safe_exec_handler`), held by composition: one
`ESLProtocol` kept as the registry, whose socket, parser and greenlets are never started.
What greenswitch ran handlers in (one queue, one greenlet for every channel) is replaced
by the caller's KeyedDispatcher: one channel's events in order, channels concurrently.
"""

from __future__ import annotations

from collections.abc import Callable

from greenswitch.esl import ESLProtocol

from rater.esl.events import ChannelEvent
from rater.esl.names import EventName

Handler = Callable[[ChannelEvent], object]


class EventHandlers:
    """Handlers by event name (a CUSTOM event by its subclass), '*' for the rest."""

    def __init__(self) -> None:
        self._registry = ESLProtocol()  # only its handler table and its failure logging

    def register(self, name: str, handler: Handler) -> None:
        self._registry.register_handle(name, handler)

    def unregister(self, name: str, handler: Handler) -> None:
        """Raises ValueError when `name` has no handlers (as greenswitch does)."""
        self._registry.unregister_handle(name, handler)

    def run(self, event: ChannelEvent) -> None:
        """Run the handlers of the event's name, else '*'. Each failure is logged."""
        table = self._registry.event_handlers
        name = event.subclass if event.name == EventName.CUSTOM else event.name
        handlers = table.get(name or "") or table.get("*") or ()
        for handler in list(handlers):
            self._registry._safe_exec_handler(handler, event)
