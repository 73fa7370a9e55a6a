"""Dataset values: collecting problems, and one checker per kind of value (each takes
(value, JSON path) and raises InputError naming the path)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from loader.ratedeck import (
    MAX_INT,
    money,
)
from rater.errors import InputError
from rater.money import parse_percent_bp
from rater.prefixes import normalize_prefix

ADMIN = "admin"
MAX_PROBLEMS_SHOWN = 50
REQUIRED = object()  # marks a field with no default
UNSET = object()  # product_owner not given: take the nearest owner up the chain

Checker = Callable[[Any, str], Any]


# --- collecting problems -------------------------------------------------------------------

class Problems:
    """Every problem found in a pass; the message shows the first MAX_PROBLEMS_SHOWN."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        self.messages.append(message)

    def at(self, path: str, message: str) -> None:
        self.messages.append(f"{path}: {message}")

    def raise_if_any(self) -> None:
        if not self.messages:
            return
        shown = self.messages[:MAX_PROBLEMS_SHOWN]
        more = len(self.messages) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        raise InputError(
            f"{self.source}: {len(self.messages)} problem(s), nothing imported:\n  "
            + "\n  ".join(shown) + tail
        )


# --- single values: each checker takes (value, path) and raises InputError ---------------

def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where}: expected a string, got {_show(value)}")
    return value


def _name(value: Any, where: str) -> str:
    text = _text(value, where).strip()
    if not text:
        raise InputError(f"{where}: must not be empty")
    return text


def _account_number(value: Any, where: str) -> str:
    if not (isinstance(value, str) and len(value) == 10 and value.isdigit() and value.isascii()):
        raise InputError(f"{where}: {_show(value)} is not a 10-digit account number (a string)")
    return value


def _owner(value: Any, where: str) -> str | None:
    """"admin" (stored as None) or a reseller's account number."""
    if value == ADMIN or value is None:
        return None
    return _account_number(value, where)


def _amount(value: Any, where: str) -> int:
    if isinstance(value, Decimal):  # a JSON number, read exactly
        value = str(value)
    return money(value, where)


def _signed_amount(value: Any, where: str) -> int:
    if isinstance(value, Decimal):
        value = str(value)
    return money(value, where, signed=True)


def _percent(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InputError(f"{where}: expected a decimal string, got {_show(value)}")
    bp = parse_percent_bp(str(value), where)
    if bp < 0:
        raise InputError(f"{where}: {_show(value)} must not be negative")
    return bp


def _whole(minimum: int, maximum: int = MAX_INT) -> Checker:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: expected a whole number, got {_show(value)}")
        if not minimum <= value <= maximum:
            raise InputError(f"{where}: {value} must be between {minimum} and {maximum}")
        return value
    return check


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{where}: expected true or false, got {_show(value)}")
    return value


def _one_of(*options: str) -> Checker:
    def check(value: Any, where: str) -> str:
        if value not in options:
            raise InputError(f"{where}: {_show(value)} is not one of {', '.join(options)}")
        return value
    return check


def _prefix(value: Any, where: str) -> str:
    try:
        return normalize_prefix(value)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def _blocked_prefix(value: Any, where: str) -> str:
    try:
        return normalize_prefix(value, allow_catch_all=False)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def _did_number(value: Any, where: str) -> str:
    if not (isinstance(value, str) and value.isdigit() and value.isascii()):
        raise InputError(f"{where}: {_show(value)} is not a DID number (a string of digits)")
    return value


def _time(value: Any, where: str) -> datetime:
    text = _text(value, where)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{where}: {text!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        if len(text) != 10:  # a bare date means midnight UTC, as on the command line
            raise InputError(f"{where}: {text!r} has no time zone (add Z or +00:00)")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _currency(value: Any, where: str) -> str:
    if not (isinstance(value, str) and len(value) == 3 and value.isalpha() and value.isupper()):
        raise InputError(f"{where}: {_show(value)} is not a 3-letter currency code")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a list, got {_show(value)}")
    return value


def _nullable(check: Checker) -> Checker:
    def nullable(value: Any, where: str) -> Any:
        return None if value is None else check(value, where)
    return nullable


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value) if value is None or isinstance(value, bool) else repr(value)
