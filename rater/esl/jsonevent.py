"""The JSON-event reader: `JsonEvent`, a text/event-json event (one JSON object, decoded
whole), its values given as the strings a plain event would carry."""

from __future__ import annotations

import json

from rater.errors import MalformedFrame
from rater.esl.events import ChannelEvent, first_wins
from rater.esl.names import Header


def _json_value(value: object) -> str | None:
    """A JSON value as the string plain events carry (arrays as ARRAY::a|:b)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return "ARRAY::" + "|:".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


class JsonEvent(ChannelEvent):
    """A text/event-json event: one JSON object; the body is in `_body`."""

    __slots__ = ("_obj",)

    def __init__(self, raw: bytes, offset: int = 0) -> None:
        super().__init__(offset)
        try:
            # cJSON copies a value's bytes as they are (a SIP display name may not be
            # UTF-8): a bad byte becomes U+FFFD, as a %-escaped one does in plain events,
            # rather than costing the whole event
            obj = json.loads(raw.decode("utf-8", "replace"), object_pairs_hook=first_wins)
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
            raise MalformedFrame(
                f"bad JSON event in the frame at byte offset {offset}: {exc}"
            ) from None
        if not isinstance(obj, dict):
            raise MalformedFrame(f"JSON event is not an object at byte offset {offset}")
        self._obj: dict[str, object] = obj

    def get(self, name: str) -> str | None:
        value = self._obj.get(name)
        return value if value is None or type(value) is str else _json_value(value)

    def _int(self, name: str) -> int | None:
        return self._int_checked(name, self.get(name))

    @property
    def headers(self) -> dict[str, str]:
        return {
            k: v
            for k, raw in self._obj.items()
            if k != Header.JSON_BODY and (v := _json_value(raw)) is not None
        }

    @property
    def body(self) -> str | None:
        return self.get(Header.JSON_BODY)
