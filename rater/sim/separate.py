"""FreeSWITCH's switch_separate_string on spaces, as api commands split their arguments."""

from __future__ import annotations


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
