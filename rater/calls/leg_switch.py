"""The switch operations of the call handler, for one leg at a time: which switch to ask (the
leg's node, or for a decision the leg's own decision-socket connection, once) and what a
failure means for the leg."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rater.calls.items import SwitchControl
from rater.calls.registry import LiveLeg
from rater.errors import CommandFailed, SwitchError

log = logging.getLogger(__name__)


class LegSwitch:
    """Runs switch operations for legs; never raises for a switch that fails."""

    def __init__(self, switches: Mapping[str, SwitchControl]) -> None:
        self.switches = switches

    def call(self, live: LiveLeg, method: str, *args: Any, decision: bool = False) -> bool:
        """Run a switch operation; False when the switch could not be reached (the call
        is still as it was), True otherwise (done, or the channel is gone). A `decision`
        (admit or refusal) of a call asking on the decision socket goes there, once."""
        switch: Any = self.switches.get(live.node)
        if decision and live.asking is not None:
            switch, live.asking = live.asking, None
        if switch is None:
            log.error("call %s: no connection to node %s", live.leg.uuid, live.node)
            return False
        try:
            getattr(switch, method)(*args)
        except CommandFailed as exc:
            # typically "-ERR No such channel!": the caller left; its hangup event settles it
            log.info("call %s: %s: %s", live.leg.uuid, method, exc)
        except SwitchError as exc:
            log.warning("call %s: %s failed: %s", live.leg.uuid, method, exc)
            return False
        except ValueError as exc:  # a value no command may carry: sending again cannot help
            log.error("call %s: %s cannot be sent: %s", live.leg.uuid, method, exc)
        return True

    def channel_exists(self, live: LiveLeg) -> bool:
        """Whether the switch still has the leg's channel (True when it cannot tell)."""
        switch = self.switches.get(live.node)
        if switch is None:
            return True
        try:
            return switch.exists(live.leg.uuid)
        except SwitchError as exc:
            log.info("call %s: cannot check the channel: %s", live.leg.uuid, exc)
            return True
