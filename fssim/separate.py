"""How FreeSWITCH splits and reads command arguments: switch_separate_string (on spaces, or
on another character), and C's atol."""

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


def split_on(arg: str, delim: str, limit: int) -> list[str]:
    """switch_separate_string on a character other than a space (`multiset ^^|a=1|b=2`):
    empty parts are kept, a quoted part keeps its delimiters, a backslash escapes the next
    character; each part loses its quotes, its escapes and its leading and trailing
    spaces."""
    starts: list[int] = []
    ends: list[int] = []
    quoted = False
    i, size = 0, len(arg)
    start = True
    while i < size and len(starts) < limit:
        if start:
            starts.append(i)
            start = False
            continue
        ch = arg[i]
        if ch == "\\":
            i += 1
        elif ch == "'" and (quoted or "'" in arg[i + 1:]):
            quoted = not quoted
        elif ch == delim and not quoted:
            ends.append(i)
            start = True
        i += 1
    ends.append(size)
    return [_cleanup(arg[s:e], delim) for s, e in zip(starts, ends, strict=False)]


def _cleanup(part: str, delim: str) -> str:
    """cleanup_separated_string: leading spaces, quotes and escapes go; trailing spaces go
    unless quoted or escaped."""
    out: list[str] = []
    end = 0
    quoted = False
    i = len(part) - len(part.lstrip(" "))
    while i < len(part):
        ch = part[i]
        nxt = part[i + 1] if i + 1 < len(part) else ""
        if ch == "\\" and nxt and nxt in ("'", '"', delim, "\\"):
            out.append(nxt)
            end = len(out)
            i += 2
            continue
        if ch == "'" and (quoted or "'" in part[i + 1:]):
            quoted = not quoted
            if quoted:
                end = len(out)
        else:
            out.append(ch)
            if ch != " " or quoted:
                end = len(out)
        i += 1
    return "".join(out[:end])


def c_atol(text: str) -> int:
    """C `atol`: optional sign and leading digits, 0 when there are none."""
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0
