"""The ledger scripts' replies and the typed results they become, in one place.

Every script answers one line of words, its first word the outcome; the tables below map
(script, outcome) to the result it builds, as redis-py's parsers map an error prefix to an
exception class. An outcome a script cannot give is a LedgerError, never a guess.

    authorize  ok <max_seconds>                      Authorization(allowed)
               refused <reason> <account>            reason: unknown_account, max_channels,
                                                     insufficient_funds
    dry run    [<authorize's line>, level figures...] DryRun (see authorize.lua)
    reserve    ok <granted>                          Reservation("ok")
               short <granted> <reason> <account>    Reservation("short"): less than asked
               refused <granted> <reason> [account]  Reservation("refused"): nothing more;
                                                     reason also unknown_leg, leg_committed
    commit     ok <billed> <cost level 1> ...        Settlement(ok)
               refused <reason>                      unknown_leg, leg_committed
    apply      ok                                    ApplyResult(ok)
               refused <reason> <account>            unknown_account, insufficient_funds
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from rater.errors import LedgerError
from rater.reasons import LegRefusal, Reason, ReservationStatus


@dataclass(frozen=True, slots=True)
class Authorization:
    allowed: bool
    max_seconds: int = 0
    reason: Reason | None = None  # insufficient_funds, max_channels, unknown_account
    account: str | None = None    # the level that refused


@dataclass(frozen=True, slots=True)
class Reservation:
    status: ReservationStatus     # ok | short (less than asked) | refused (nothing more)
    granted_seconds: int          # billed seconds covered by holds so far
    reason: Reason | LegRefusal | None = None
    account: str | None = None

    @property
    def complete(self) -> bool:
        return self.status == ReservationStatus.OK


@dataclass(frozen=True, slots=True)
class Settlement:
    ok: bool
    billed_seconds: int = 0
    level_costs: tuple[int, ...] = ()  # what each level paid, customer first
    reason: LegRefusal | None = None   # unknown_leg, leg_committed

    @property
    def total_cost_micros(self) -> int:
        """What the customer (level 0) paid."""
        return self.level_costs[0] if self.level_costs else 0


@dataclass(frozen=True, slots=True)
class ApplyResult:
    ok: bool
    reason: Reason | None = None       # unknown_account, insufficient_funds
    account: str | None = None


@dataclass(frozen=True, slots=True)
class LevelFigures:
    """What authorize's decision at one level was taken from (a dry run), and what the
    dry run's billed seconds would cost that level."""

    balance_micros: int
    held_micros: int
    live_legs: int
    max_seconds: int              # the most this level affords, capped
    charged_seconds: int
    free_seconds: int
    cost_micros: int
    seconds_left: tuple[int, ...]  # free seconds each of the level's buckets can give


@dataclass(frozen=True, slots=True)
class DryRun:
    """authorize's decision without its writes, and its figures per level, customer first
    (None: the account is not in Redis)."""

    decision: Authorization
    levels: tuple[LevelFigures | None, ...]


def _at(words: list[str], i: int) -> str | None:
    return words[i] if len(words) > i else None


def _any_reason(word: str) -> Reason | LegRefusal:
    """reserve refuses with either kind of reason; ValueError for any other word."""
    try:
        return LegRefusal(word)
    except ValueError:
        return Reason(word)


Words = list[str]
Result = Authorization | Reservation | Settlement | ApplyResult

# A reason word the scripts cannot give raises ValueError (Reason(...)): a LedgerError.
REPLIES: dict[str, dict[str, Callable[[Words], Result]]] = {
    "authorize": {
        "ok": lambda w: Authorization(True, max_seconds=int(w[1])),
        "refused": lambda w: Authorization(False, reason=Reason(w[1]), account=_at(w, 2)),
    },
    "reserve": {
        "ok": lambda w: Reservation(ReservationStatus.OK, int(w[1])),
        "short": lambda w: Reservation(ReservationStatus.SHORT, int(w[1]),
                                       reason=_any_reason(w[2]), account=_at(w, 3)),
        "refused": lambda w: Reservation(ReservationStatus.REFUSED, int(w[1]),
                                         reason=_any_reason(w[2]), account=_at(w, 3)),
    },
    "commit": {
        "ok": lambda w: Settlement(True, int(w[1]), tuple(int(c) for c in w[2:])),
        "refused": lambda w: Settlement(False, reason=LegRefusal(w[1])),
    },
    "apply": {
        "ok": lambda _w: ApplyResult(True),
        "refused": lambda w: ApplyResult(False, reason=Reason(w[1]), account=_at(w, 2)),
    },
}

R = TypeVar("R", Authorization, Reservation, Settlement, ApplyResult)


def parse(script: str, reply: object, result: type[R]) -> R:
    """The typed result of one script's reply line (`result`: the type that script gives)."""
    words = _text(reply).split()
    try:
        parsed = REPLIES[script][words[0]](words)
    except (KeyError, IndexError, ValueError) as exc:
        raise LedgerError(f"ledger script {script}: unexpected reply {reply!r}") from exc
    if not isinstance(parsed, result):
        raise LedgerError(f"ledger script {script}: {type(parsed).__name__}, not {result}")
    return parsed


def parse_dry_run(reply: Any) -> DryRun:
    """authorize's dry-run reply: its decision line, then per level either [0] (not in
    Redis) or [1, balance, held, live legs, max seconds, charged, free, cost, bucket...]."""
    try:
        decision = parse("authorize", reply[0], Authorization)
        levels = tuple(None if not f[0] else _level_figures(f) for f in reply[1:])
    except (TypeError, IndexError, ValueError) as exc:
        raise LedgerError(f"ledger script authorize (dry run): unexpected reply {reply!r}"
                          ) from exc
    return DryRun(decision, levels)


def _level_figures(f: Any) -> LevelFigures:
    n = [int(x) for x in f[1:8]]
    if len(n) != 7:
        raise IndexError("a level's figures are short")
    return LevelFigures(n[0], n[1], n[2], n[3], n[4], n[5], n[6],
                        tuple(int(x) for x in f[8:]))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
