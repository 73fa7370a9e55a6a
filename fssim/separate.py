"""How FreeSWITCH splits and reads command arguments: switch_separate_string on spaces, and
C's atol."""

from __future__ import annotations

import re


def separate(arg: str | None, limit: int) -> list[str]:
    """switch_separate_string on spaces: runs of spaces collapse, a single-quoted part
    keeps its spaces (the quotes are then removed), the last part keeps the rest."""
    out: list[str] = []
    rest = (arg or "").lstrip(" ")
    while rest:
        if len(out) == limit - 1:
            out.append(rest.replace("'", ""))
            break
        quoted = False
        end = len(rest)
        for i, ch in enumerate(rest):
            if ch == "'":
                quoted = not quoted
            elif ch == " " and not quoted:
                end = i
                break
        out.append(rest[:end].replace("'", ""))
        rest = rest[end:].lstrip(" ")
    return out


def c_atol(text: str) -> int:
    """C `atol`: optional sign and leading digits, 0 when there are none."""
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0
