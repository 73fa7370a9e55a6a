"""Why a call or a ledger operation is refused, and the status words of a reservation and a
leg: each declared once, here.

They are `StrEnum`s, so every member *is* its string: the words in config files
(`[rating.hangup_causes]`), metrics labels, logs, JSON output and the Lua scripts' replies
(`rater/ledger/scripts/*.lua`, which write the same words) are unchanged, and a word read
from a reply compares equal to its member.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a call is refused: each has a hangup cause (`rating.hangup_causes`) and a label
    of `rater_calls_refused`."""

    INSUFFICIENT_FUNDS = "insufficient_funds"    # authorize/reserve/apply: a level's funds
    BLOCKED_DESTINATION = "blocked_destination"  # chain: a level blocks the prefix
    NO_RATE = "no_rate"                          # chain: a level has no rate for the number
    UNKNOWN_ACCOUNT = "unknown_account"          # chain, or the ledger has no balance
    ACCOUNT_SUSPENDED = "account_suspended"      # chain: a level is not active
    MAX_CHANNELS = "max_channels"                # authorize: a level's channel cap
    INTERNAL_ERROR = "internal_error"            # the daemon could not decide


class LegRefusal(StrEnum):
    """Why reserve or commit refuses a leg (besides a `Reason`)."""

    UNKNOWN_LEG = "unknown_leg"                  # no such leg in Redis (expired, lost)
    LEG_COMMITTED = "leg_committed"              # the leg is settled already


class ReservationStatus(StrEnum):
    """reserve's outcome: the first word of its reply."""

    OK = "ok"                                    # all that was asked is held
    SHORT = "short"                              # less than asked: the call ends there
    REFUSED = "refused"                          # nothing more


class SettlementKind(StrEnum):
    """How a leg was settled: the CDR's `settlement` and a label of `rater_commits`."""

    FINAL = "final"                  # from its hangup event
    SWITCH_RECORD = "switch_record"  # ended unseen: from FreeSWITCH's own record
    UNANSWERED = "unanswered"        # never answered: nothing charged
    AS_RESERVED = "as_reserved"      # ended unseen, no record in time: what was reserved
    # Refused although its authorization may have been written (Redis's reply was lost):
    # taken back, holds and channel freed, no CDR (the call never was).
    WITHDRAWN = "withdrawn"


class LegStatus(StrEnum):
    """A leg's stored status in Redis (its `st` field, written by the Lua scripts)."""

    AUTHORIZED = "authorized"
    ANSWERED = "answered"
    COMMITTED = "committed"
