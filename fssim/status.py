"""Who the simulated switch is and how busy it has been: what `status`, `hostname`,
`global_getvar` and HEARTBEAT report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fssim.timers import now_us


@dataclass
class SessionStats:
    """FreeSWITCH's session counters, as `status` and HEARTBEAT report them."""

    sessions_since_startup: int = 0
    session_peak: int = 0
    sps_last: int = 0
    sps_max: int = 0
    _sps_second: int = 0
    _sps_count: int = 0

    def session_created(self, live: int) -> None:
        self.sessions_since_startup += 1
        self.session_peak = max(self.session_peak, live)
        second = int(time.time())
        if second != self._sps_second:
            self.sps_last = self._sps_count if second == self._sps_second + 1 else 0
            self._sps_second, self._sps_count = second, 0
        self._sps_count += 1
        self.sps_max = max(self.sps_max, self._sps_count)


@dataclass
class SwitchInfo:
    """The switch's identity and counters."""

    hostname: str
    core_uuid: str
    max_sessions: int
    started_us: int = field(default_factory=now_us)
    stats: SessionStats = field(default_factory=SessionStats)

    def uptime_us(self) -> int:
        return now_us() - self.started_us


def _plural(n: int) -> str:
    return "" if n == 1 else "s"


def uptime_text(micros: int) -> str:
    """`0 years, 0 days, 0 hours, 1 minute, 26 seconds, 807 milliseconds, 791 microseconds`."""
    us = micros % 1000
    ms = micros // 1000 % 1000
    sec = micros // 1_000_000
    years, rem = divmod(sec, 365 * 86400)
    days, rem = divmod(rem, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, seconds = divmod(rem, 60)
    return (f"{years} year{_plural(years)}, {days} day{_plural(days)}, "
            f"{hours} hour{_plural(hours)}, {minutes} minute{_plural(minutes)}, "
            f"{seconds} second{_plural(seconds)}, {ms} millisecond{_plural(ms)}, "
            f"{us} microsecond{_plural(us)}")
