"""The dates in FreeSWITCH events (Event-Date-*, *_stamp, RFC2822_DATE), cached per second."""

from __future__ import annotations

import time

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def stamp(epoch: int) -> str:
    """`2026-11-23 17:19:50`: Event-Date-Local and the *_stamp variables (local time)."""
    text = _STAMPS.get(epoch)
    if text is None:
        t = time.localtime(epoch)
        text = (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} "
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")
        if len(_STAMPS) > 256:
            _STAMPS.clear()
        _STAMPS[epoch] = text
    return text


_STAMPS: dict[int, str] = {}


def gmt_date(epoch: int) -> str:
    """`Mon, 23 Nov 2026 17:19:50 GMT`: Event-Date-GMT."""
    t = time.gmtime(epoch)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def rfc2822_date(epoch: int) -> str:
    """`Mon, 23 Nov 2026 17:19:50 +0000`: variable_RFC2822_DATE (local time)."""
    text = _RFC2822.get(epoch)
    if text is None:
        if len(_RFC2822) > 256:
            _RFC2822.clear()
        text = _RFC2822[epoch] = _rfc2822_date(epoch)
    return text


_RFC2822: dict[int, str] = {}


def _rfc2822_date(epoch: int) -> str:
    t = time.localtime(epoch)
    off = t.tm_gmtoff // 60
    sign = "+" if off >= 0 else "-"
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
            f"{sign}{abs(off) // 60:02d}{abs(off) % 60:02d}")


class EventClock:
    """Event-Date-* values for a microsecond timestamp, cached per second."""

    __slots__ = ("_gmt", "_local", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._local = ""
        self._gmt = ""

    def fields(self, now_us: int) -> tuple[str, str, str]:
        """(Event-Date-Local, Event-Date-GMT, Event-Date-Timestamp)."""
        second = now_us // 1_000_000
        if second != self._second:
            self._second = second
            self._local = stamp(second)
            self._gmt = gmt_date(second)
        return self._local, self._gmt, str(now_us)
