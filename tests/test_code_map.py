"""The README's code map names every module of the daemon, so it cannot fall behind the tree."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def code_map() -> str:
    """The README's code map: from its heading to the import rule that follows it."""
    text = (REPO / "README.md").read_text()
    start = text.index("Code map (")
    return text[start:text.index("The daemon (`rater`) imports", start)]


def unnamed_modules(section: str) -> list[str]:
    """Modules of `rater/` the section does not name, in backquotes, with or without `.py`
    (the commands of `rater/commands/` are named as a package: one module per command)."""
    named = set(re.findall(r"`(?:[\w/]+/)?(\w+)(?:\.py)?`", section))
    return [str(path.relative_to(REPO)) for path in sorted((REPO / "rater").rglob("*.py"))
            if path.stem not in ("__init__", "__main__", *named)
            and path.parent.name != "commands"]


def test_the_code_map_names_every_module_of_the_daemon():
    section = code_map()
    assert "`rater/commands/`" in section
    assert unnamed_modules(section) == []


def test_a_module_missing_from_the_map_is_reported():
    assert "rater/calls/leg.py" in unnamed_modules(code_map().replace("`leg.py`", "leg"))
