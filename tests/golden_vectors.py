"""The hand-worked call decisions of tests/golden/decisions.json, read once for the tests
that check them: the Python tariff (test_tariff.py) and authorize.lua through Redis, real
and dry run (test_ledger.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from rater.rating.tariff import Tariff

PATH = Path(__file__).resolve().parent / "golden" / "decisions.json"


@dataclass(frozen=True)
class Bucket:
    left: int
    held: int = 0

    @property
    def free(self) -> int:
        return max(0, self.left - self.held)


@dataclass(frozen=True)
class Level:
    tariff: Tariff
    balance: int | None             # None: the account is not in Redis
    held: int = 0
    floor: int = 0
    live_legs: int = 0
    max_channels: int = 0
    buckets: tuple[Bucket, ...] = ()
    expect: dict = field(default_factory=dict)

    @property
    def funds(self) -> int:
        assert self.balance is not None
        return self.balance - self.held - self.floor

    @property
    def free(self) -> int:
        return sum(b.free for b in self.buckets)


@dataclass(frozen=True)
class Case:
    name: str
    cap: int
    billed: int
    levels: tuple[Level, ...]
    decision: dict

    def __str__(self) -> str:
        return self.name


@cache
def cases() -> tuple[Case, ...]:
    raw = json.loads(PATH.read_text())
    tariffs = {name: Tariff(**{k: v for k, v in t.items() if k != "why"})
               for name, t in raw["tariffs"].items()}
    return tuple(
        Case(c["name"], c["cap"], c["billed"], tuple(
            Level(tariffs[lv["tariff"]], lv["balance"], lv.get("held", 0), lv.get("floor", 0),
                  lv.get("live_legs", 0), lv.get("max_channels", 0),
                  tuple(Bucket(**b) for b in lv.get("buckets", ())), lv.get("expect", {}))
            for lv in c["levels"]), c["decision"])
        for c in raw["cases"])


def ids() -> list[str]:
    return [c.name for c in cases()]
