"""The simulator is a package of its own: the daemon never imports it (only `rater demo` and
`rater simulate` do, when they run), and it imports nothing from the daemon."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_WALK = textwrap.dedent("""
    import importlib, pkgutil, sys
    names = []
    for top in {tops!r}:
        package = importlib.import_module(top)
        names.append(top)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, top + ".")]
    for name in names:
        importlib.import_module(name)
    print(len(names), " ".join(sorted(m for m in sys.modules
                                      if m.split(".")[0] == {other!r})))
""")


def _import_all(tops: tuple[str, ...], other: str) -> tuple[int, str]:
    code = _WALK.format(tops=tops, other=other)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    count, _, found = done.stdout.strip().partition(" ")
    return int(count), found


@pytest.mark.parametrize("tops", [("rater", "loader")])
def test_no_daemon_module_imports_the_simulator(tops: tuple[str, ...]) -> None:
    count, found = _import_all(tops, "fssim")
    assert count > 50
    assert found == "", f"imported at module level: {found}"


def test_the_simulator_imports_nothing_from_the_daemon() -> None:
    count, found = _import_all(("fssim",), "rater")
    assert count > 15
    assert found == "", f"fssim imports {found}"


def test_building_the_command_line_does_not_import_the_simulator() -> None:
    """`rater run` builds the parser of every command, `simulate` and `demo` included."""
    code = ("import sys; from rater.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'fssim'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
