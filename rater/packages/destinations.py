"""Package destinations picked from rate groups by filter (the packages document's "Create
Destination in Edit Package"). Pure: no I/O.

A `RateFilter` selects rates of the product owner's rate groups: by rate group, country and
call type (each compared case-insensitively), code (rates whose prefix starts with it) and
destination (a case-insensitive pattern over the whole name, ``*`` standing for any run of
characters). Only rates of the directions the product applies to are candidates.

The matching rates are folded into one `Destination` per prefix (`pick`): the first rate
wins, in rate group name order, outbound before inbound. `add` then keeps those the product
does not have; `remove` those it has. Filtering itself runs in SQL (`like_pattern` is the
destination pattern as an ILIKE operand); this module decides everything else.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rater.errors import InputError
from rater.prefixes import normalize_prefix

# applicable_for -> the rate directions whose prefixes a product may take
DIRECTIONS_FOR = {
    "outbound": ("outbound",),
    "inbound": ("inbound",),
    "both": ("outbound", "inbound"),
}


@dataclass(frozen=True, slots=True)
class RateFilter:
    """The filters of one command; None = not given. `code` is digits."""

    rate_group: str | None = None
    country: str | None = None
    call_type: str | None = None
    code: str | None = None
    destination: str | None = None

    @classmethod
    def of(
        cls, *, rate_group: str | None = None, country: str | None = None,
        call_type: str | None = None, code: str | None = None, destination: str | None = None,
    ) -> RateFilter:
        """Validate command-line values: none may be empty; `code` is digits or ``^44.*``."""
        given = {"--rate-group": rate_group, "--country": country, "--call-type": call_type,
                 "--code": code, "--destination": destination}
        for option, value in given.items():
            if value is not None and not value.strip():
                raise InputError(f"{option}: must not be empty")
        if code is not None:
            try:
                code = normalize_prefix(code.strip(), allow_catch_all=False)
            except ValueError as exc:
                raise InputError(f"--code: {exc}") from None
        return cls(rate_group, country, call_type, code, destination)

    @property
    def empty(self) -> bool:
        return all(v is None for v in asdict(self).values())

    def describe(self) -> str:
        """The filter as it would be typed: ``--country GB --destination '*mobile*'``."""
        words = [f"--{name.replace('_', '-')} {shlex.quote(value)}"
                 for name, value in asdict(self).items() if value is not None]
        return " ".join(words) or "(no filter)"

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def like_pattern(pattern: str) -> str:
    """A destination pattern as an ILIKE operand: ``*`` is any run, everything else literal."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


@dataclass(frozen=True, slots=True)
class RateMatch:
    """One rate the filter selected."""

    rate_group: str
    direction: str
    prefix: str
    destination: str
    country: str
    call_type: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, order=True)
class Destination:
    """A product prefix and its destination name (a row of ``product_prefixes``)."""

    prefix: str
    destination: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Change:
    """What `add` or `remove` does: `changed` is written (added or removed), `unchanged` is
    what the filter selected that needs nothing (already there, or not there to remove)."""

    changed: tuple[Destination, ...]
    unchanged: tuple[Destination, ...]


def pick(matches: Iterable[RateMatch]) -> list[Destination]:
    """One destination per prefix, by prefix: the first rate in (rate group, outbound first)
    order names it."""
    ordered = sorted(matches, key=lambda m: (m.prefix, m.rate_group, m.direction != "outbound"))
    picked: dict[str, Destination] = {}
    for m in ordered:
        picked.setdefault(m.prefix, Destination(m.prefix, m.destination))
    return list(picked.values())


def plan_add(picked: Sequence[Destination], existing: Iterable[Destination]) -> Change:
    """Add the picked prefixes the product does not have (a prefix it has is left as it is,
    whatever its destination name)."""
    have = {d.prefix for d in existing}
    return Change(tuple(d for d in picked if d.prefix not in have),
                  tuple(d for d in picked if d.prefix in have))


def plan_remove(picked: Sequence[Destination], existing: Iterable[Destination]) -> Change:
    """Remove the product's prefixes that were picked (with the product's own names)."""
    have = {d.prefix: d for d in existing}
    return Change(tuple(have[d.prefix] for d in picked if d.prefix in have),
                  tuple(d for d in picked if d.prefix not in have))
