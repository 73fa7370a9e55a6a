"""What the call handler is given: the switch events it reads, the leg's own items (timers,
a readmit, an adoption), and what it needs from a FreeSWITCH node. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rater.calls import leg as L


class SwitchControl(Protocol):
    """What the handler needs from one FreeSWITCH node (rater.calls.switch implements it)."""

    def admit(self, uuid: str, net_seconds: int, destination: str, context: str,
              variables: dict[str, str], answered_usec: int = 0) -> None: ...

    def hangup(self, uuid: str, cause: str) -> None: ...

    def exists(self, uuid: str) -> bool: ...

    def arm_net(self, uuid: str, seconds: int) -> None: ...


class AskingControl(Protocol):
    """A call waiting on its decision-socket connection: admit or hang it up there, once
    (rater.calls.decision_socket implements it), or release it to its dialplan."""

    @property
    def open(self) -> bool: ...

    def admit(self, uuid: str, net_seconds: int, destination: str, context: str,
              variables: dict[str, str], answered_usec: int = 0) -> None: ...

    def hangup(self, uuid: str, cause: str) -> None: ...

    def release(self) -> None: ...


@dataclass(slots=True)  # not frozen: built for every event, and frozen inits cost 6x
class SwitchEvent:
    """The fields of a channel event the handler reads (built by the ESL layer)."""

    name: str                      # CHANNEL_PARK | CHANNEL_ANSWER | CHANNEL_HANGUP_COMPLETE
    node: str
    rated: bool                    # the dialplan marked the call for rating
    direction: str = ""
    account: str | None = None
    destination: str = ""
    caller: str = ""
    created_usec: int = 0
    answered_usec: int = 0
    hangup_usec: int = 0
    billmsec: int | None = None
    hangup_cause: str = ""


@dataclass(frozen=True, slots=True)
class CutOff:
    """A leg's hangup timer fired: its paid time is over."""


@dataclass(frozen=True, slots=True)
class FindRecordDue:
    """Time to look again for the switch's record of a leg that ended unseen."""


@dataclass(frozen=True, slots=True)
class Readmit:
    """What the switch should have and did not get: the admit of a leg whose channel is
    still parked, or the safety net of a leg whose last move failed. Send it again."""


@dataclass(frozen=True, slots=True)
class AdoptLeg:
    """A leg Redis knows and this process does not (after a restart), handled in the
    leg's own order so that none of its events can slip in before it is taken up."""

    node: str
    tag: str
    keys: list[str]
    adopted: L.Adopted
    on_switch: bool


@dataclass(frozen=True, slots=True)
class AskedCall:
    """A call that asks for its decision on a decision-socket connection (instead of
    parking): its data as a CHANNEL_PARK would carry it, and where to answer."""

    event: SwitchEvent
    control: AskingControl
