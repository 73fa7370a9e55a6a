"""Who may import whom. The daemon (`rater`) imports nothing from `loader`, the simulator
(`fssim`) or the demo (`rater_demo`); `loader` may import `rater`, but neither of the other
two; `fssim` imports nothing of ours; the demo, a composition root, may import all three.

Two checks for the daemon: every `import` statement in `rater/`'s source, including those
inside functions and `TYPE_CHECKING` blocks (an import that runs late is still a dependency),
and every module of each package imported for real in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# package -> the top-level packages it must never import
FORBIDDEN = {
    "rater": ("loader", "fssim", "rater_demo"),
    "loader": ("fssim", "rater_demo"),
    "fssim": ("rater", "loader", "rater_demo"),
}

_WALK = textwrap.dedent("""
    import importlib, pkgutil, sys
    package = importlib.import_module({top!r})
    names = [{top!r}] + [m.name for m in pkgutil.walk_packages(package.__path__, {top!r} + ".")]
    for name in names:
        importlib.import_module(name)
    print(len(names), " ".join(sorted(m for m in sys.modules
                                      if m.split(".")[0] in {forbidden!r})))
""")


def _import_all(top: str, forbidden: tuple[str, ...]) -> tuple[int, str]:
    code = _WALK.format(top=top, forbidden=forbidden)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    count, _, found = done.stdout.strip().partition(" ")
    return int(count), found


def imported_names(source: str, tops: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, module) of every import statement anywhere in `source`, and of every string
    that is a dotted module name under `tops` (`importlib.import_module("loader.sync")`)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and node.value.split(".")[0] in tops
              and all(part.isidentifier() for part in node.value.split("."))):
            found.append((node.lineno, node.value))
    return found


def forbidden_imports(top: str) -> list[str]:
    bad = []
    for path in sorted((REPO / top).rglob("*.py")):
        for line, name in imported_names(path.read_text(), FORBIDDEN[top]):
            if name.split(".")[0] in FORBIDDEN[top]:
                bad.append(f"{path.relative_to(REPO)}:{line}: {name}")
    return bad


@pytest.mark.parametrize("top", sorted(FORBIDDEN))
def test_no_import_statement_names_a_package_it_must_not(top: str) -> None:
    """For `rater`: nothing of `loader`, the simulator or the demo, even imported late."""
    assert len(list((REPO / top).rglob("*.py"))) > 15
    assert forbidden_imports(top) == []


def test_the_source_check_sees_imports_however_they_are_written() -> None:
    source = textwrap.dedent("""
        import loader
        import fssim.load as fl
        from rater_demo.demo import Demo
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from fssim import Simulator
        def late():
            from loader.sync import sync_once
            return importlib.import_module("rater_demo.cli")
        from rater.config import Config
        NOT_A_MODULE = "loader sync: done"
    """)
    names = [name for _, name in imported_names(source, FORBIDDEN["rater"])
             if name.split(".")[0] in FORBIDDEN["rater"]]
    assert names == ["loader", "fssim.load", "rater_demo.demo", "fssim", "loader.sync",
                     "rater_demo.cli"]


@pytest.mark.parametrize("top", sorted(FORBIDDEN))
def test_importing_every_module_of_a_package_loads_none_it_must_not(top: str) -> None:
    count, found = _import_all(top, FORBIDDEN[top])
    assert count > 15
    assert found == "", f"importing all of {top} imported: {found}"


def test_building_the_command_line_does_not_import_the_simulator_or_the_demo() -> None:
    """`rater run` builds the parser of every command."""
    code = ("import sys; from rater.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('fssim', 'loader', 'rater_demo')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_console_script_names_a_function_that_exists() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"rater", "loader", "rater-demo", "fssim"} <= set(scripts)
    code = textwrap.dedent(f"""
        import importlib
        for target in {sorted(scripts.values())!r}:
            module, _, name = target.partition(":")
            assert callable(getattr(importlib.import_module(module), name)), target
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
