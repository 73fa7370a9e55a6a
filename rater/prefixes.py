"""Destination prefixes as operators write them: plain digits, or ASTPP's `^44.*` pattern."""

from __future__ import annotations

CATCH_ALL_PATTERN = "^.*"


def normalize_prefix(text: object, *, allow_catch_all: bool = True) -> str:
    """Return the digits of a prefix: `"44"` and `"^44.*"` both give `"44"`.

    ASTPP's catch-all `"^.*"` gives `""` (a rate that matches every destination) when
    `allow_catch_all`; an empty string is refused, so a forgotten cell never becomes a
    catch-all by accident. Raises ValueError with a short reason (the caller adds the place).
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a string of digits, got {text!r}")
    if text.isdigit() and text.isascii():
        return text
    if text.startswith("^") and text.endswith(".*"):
        digits = text[1:-2]
        if not digits:
            if allow_catch_all:
                return ""
            raise ValueError(f"{text!r}: a catch-all is not allowed here")
        if digits.isdigit() and digits.isascii():
            return digits
    if not text:
        hint = f" (write {CATCH_ALL_PATTERN!r} for a catch-all)" if allow_catch_all else ""
        raise ValueError(f"must not be empty{hint}")
    raise ValueError(f"{text!r} is not a prefix (digits, or ASTPP's '^44.*' form)")
