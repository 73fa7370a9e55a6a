"""A channel event, plain or JSON: the typed accessors the daemon reads it through.

`ChannelEvent` is the one type handlers see; plain.py (`PlainEvent`) and jsonevent.py
(`JsonEvent`) are its two readers, and messages.py picks one per frame. Accessors decode
a value only when it is read. Where a header repeats (FreeSWITCH sends `Hangup-Cause`
twice), the first one wins, for plain and JSON alike.
"""

from __future__ import annotations

from typing import Final, TypeVar

from rater.errors import MalformedFrame
from rater.esl.names import Header, Var


class ChannelEvent:
    """An event, plain or JSON, with typed accessors.

    String accessors return None for an absent header; integer accessors return None
    when absent and raise MalformedFrame when the value is not an integer. Times are
    microseconds since the epoch; 0 means "never" (e.g. answered time of an unanswered
    call).
    """

    __slots__ = ("offset",)

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def get(self, name: str) -> str | None:
        """Decoded value of the first header `name`, or None."""
        raise NotImplementedError

    def _int(self, name: str) -> int | None:
        raise NotImplementedError

    @property
    def headers(self) -> dict[str, str]:
        """Every header, decoded (first wins). Slower than the accessors: use sparingly."""
        raise NotImplementedError

    @property
    def body(self) -> str | None:
        """The event's own body (BACKGROUND_JOB result ...), or None."""
        raise NotImplementedError

    def variable(self, name: str) -> str | None:
        """Channel variable `name` (header `variable_<name>`), or None."""
        return self.get(Header.VARIABLE_PREFIX + name)

    def _int_checked(self, name: str, raw: str | None) -> int | None:
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise MalformedFrame(
                f"{name} is not an integer: {raw[:40]!r} "
                f"(event in the frame at byte offset {self.offset})"
            ) from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.unique_id} @{self.offset}>"

    # Typed accessors: the fields the daemon reads.
    @property
    def name(self) -> str:
        return self.get(Header.EVENT_NAME) or ""

    @property
    def subclass(self) -> str | None:
        return self.get(Header.EVENT_SUBCLASS)

    @property
    def unique_id(self) -> str | None:
        return self.get(Header.UNIQUE_ID)

    @property
    def call_uuid(self) -> str | None:
        return self.get(Header.CHANNEL_CALL_UUID)

    @property
    def core_uuid(self) -> str | None:
        return self.get(Header.CORE_UUID)

    @property
    def sequence(self) -> int | None:
        return self._int(Header.EVENT_SEQUENCE)

    @property
    def timestamp(self) -> int | None:
        """Event-Date-Timestamp, µs since the epoch."""
        return self._int(Header.EVENT_DATE_TIMESTAMP)

    @property
    def created_time(self) -> int | None:
        return self._int(Header.CREATED_TIME)

    @property
    def answered_time(self) -> int | None:
        return self._int(Header.ANSWERED_TIME)

    @property
    def hangup_time(self) -> int | None:
        return self._int(Header.HANGUP_TIME)

    @property
    def billsec(self) -> int | None:
        """Truncated whole seconds: can be one short; prefer billmsec/billusec."""
        return self._int(_V_BILLSEC)

    @property
    def billmsec(self) -> int | None:
        return self._int(_V_BILLMSEC)

    @property
    def billusec(self) -> int | None:
        return self._int(_V_BILLUSEC)

    @property
    def hangup_cause(self) -> str | None:
        return self.get(Header.HANGUP_CAUSE)

    @property
    def destination_number(self) -> str | None:
        return self.get(Header.DESTINATION_NUMBER)

    @property
    def caller_id_number(self) -> str | None:
        return self.get(Header.CALLER_ID_NUMBER)

    @property
    def call_direction(self) -> str | None:
        """FreeSWITCH's channel direction, not the business direction."""
        return self.get(Header.CALL_DIRECTION)

    @property
    def answer_state(self) -> str | None:
        return self.get(Header.ANSWER_STATE)

    @property
    def job_uuid(self) -> str | None:
        return self.get(Header.JOB_UUID)

    @property
    def ordering_key(self) -> str | None:
        """What this event must stay in order with: its channel (Unique-ID), else its
        job (Job-UUID); None for node-wide events (HEARTBEAT ...)."""
        return self.get(Header.UNIQUE_ID) or self.get(Header.JOB_UUID)


_V_BILLSEC = Header.VARIABLE_PREFIX + Var.BILLSEC
_V_BILLMSEC = Header.VARIABLE_PREFIX + Var.BILLMSEC
_V_BILLUSEC = Header.VARIABLE_PREFIX + Var.BILLUSEC

# ChannelEvent accessor -> the header it reads (plain.py plans these searches once).
ACCESSOR_HEADERS: Final = {
    "subclass": Header.EVENT_SUBCLASS, "unique_id": Header.UNIQUE_ID,
    "call_uuid": Header.CHANNEL_CALL_UUID, "core_uuid": Header.CORE_UUID,
    "sequence": Header.EVENT_SEQUENCE, "timestamp": Header.EVENT_DATE_TIMESTAMP,
    "created_time": Header.CREATED_TIME, "answered_time": Header.ANSWERED_TIME,
    "hangup_time": Header.HANGUP_TIME, "billsec": _V_BILLSEC, "billmsec": _V_BILLMSEC,
    "billusec": _V_BILLUSEC, "hangup_cause": Header.HANGUP_CAUSE,
    "destination_number": Header.DESTINATION_NUMBER,
    "caller_id_number": Header.CALLER_ID_NUMBER, "call_direction": Header.CALL_DIRECTION,
    "answer_state": Header.ANSWER_STATE, "job_uuid": Header.JOB_UUID,
}
INT_ACCESSORS: Final = frozenset({
    "sequence", "timestamp", "created_time", "answered_time", "hangup_time",
    "billsec", "billmsec", "billusec",
})


V = TypeVar("V")


def first_wins(pairs: list[tuple[str, V]]) -> dict[str, V]:
    """dict() keeps the last of repeated names; build it reversed so the first wins
    (the order of the result does not matter to its users). Consumes `pairs`."""
    pairs.reverse()
    return dict(pairs)
