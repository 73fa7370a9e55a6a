"""The records the ASTPP mapping produces, and exact conversions of ASTPP's values. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

ADMIN = "admin"
CUSTOMER, RESELLER = 0, 1
NOT_CARRIED_TYPES = {-1: "an administrator (admin is the root of every tree here)",
                     2: "an administrator (admin is the root of every tree here)",
                     3: "a provider (carriers are not rated here)",
                     4: "a sub-admin (admin is the root of every tree here)",
                     5: "a callshop (not a billing level here)"}
PACKAGE_CATEGORY = 1
APPLICABLE_FOR = {0: "inbound", 1: "outbound", 2: "both"}
BILLING_TYPES = {0: "one_time", 1: "recurring"}


@dataclass(frozen=True)
class Unmapped:
    """An ASTPP row that is not carried, and why."""

    table: str
    row_id: Any
    reason: str

    def describe(self) -> str:
        return f"{self.table} #{self.row_id}: {self.reason}"


@dataclass
class AccountPlan:
    """What the sync does with one ASTPP account (printed by --dry-run)."""

    astpp_id: int
    number: str
    name: str
    kind: str
    reseller_type: str | None
    parent: str
    billing: str
    balance: str
    balance_is_seed: bool
    credit_limit: str
    status: str
    max_channels: int
    rate_group: str
    dids: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)

    def describe(self) -> str:
        kind = f"{self.reseller_type} reseller" if self.kind == "reseller" else "customer"
        seed = ("opening balance" if self.balance_is_seed
                else "balance already seeded (live here)")
        limit = f", credit limit {self.credit_limit}" if self.billing == "postpaid" else ""
        lines = [f"account {self.number} (ASTPP id {self.astpp_id}) {self.name!r}: {kind} "
                 f"under {self.parent}, {self.billing}, {self.status}, {seed} "
                 f"{self.balance}{limit}, max channels "
                 f"{self.max_channels or 'unlimited'}, rate group {self.rate_group!r}"]
        lines += [f"    DID {d}" for d in self.dids]
        lines += [f"    order {o}" for o in self.orders]
        return "\n".join(lines)


@dataclass
class Known:
    """What this project's database already holds, so live state is never re-seeded."""

    openings: dict[str, int] = field(default_factory=dict)          # number -> micros
    orders: dict[str, tuple[datetime, int]] = field(default_factory=dict)  # id -> (at, used)


@dataclass
class Mapping:
    """The dataset document, the ASTPP account id -> number map and what is left out."""

    dataset: dict[str, Any]
    numbers: dict[int, str]
    billing: dict[str, str]
    plans: list[AccountPlan]
    unmapped: list[Unmapped]
    groups: list[str]
    group_ids: dict[str, int] = field(default_factory=dict)  # rate group -> pricelist id


def amount(value: Any) -> str:
    """An exact decimal string from a DECIMAL column (never via float)."""
    if isinstance(value, float):
        raise TypeError("money must not arrive as a float")
    return format(Decimal(value if value is not None else 0).normalize(), "f")


def micros(value: Any) -> int:
    return int(Decimal(amount(value)) * 1_000_000)


def negate(text: str) -> str:
    return amount(-Decimal(text))


def iso(value: Any) -> str | None:
    """A DATETIME as ISO 8601 UTC (ASTPP stores UTC); zero dates give None."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    return None


def flag_yes(value: Any) -> bool:
    """ASTPP's inverted yes/no columns: 0 means yes, 1 means no."""
    return int(value or 0) == 0


def whole(value: Any, minimum: int = 0) -> int:
    return max(minimum, int(value or 0))
