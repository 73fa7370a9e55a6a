"""Who may import whom. The daemon (`rater`) imports nothing from `loader`, the simulator
(`fssim`) or the demo (`rater_demo`); `loader` may import `rater`, but neither of the other
two; `fssim` imports nothing of ours; the demo, a composition root, may import all three.

Two checks for the daemon: every `import` statement in `rater/`'s source, including those
inside functions and `TYPE_CHECKING` blocks (an import that runs late is still a dependency),
and every module of each package imported for real in a fresh interpreter."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

OURS = ("rater", "loader", "fssim", "rater_demo")
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


def module_graph(root: Path, tops: tuple[str, ...]) -> dict[str, set[str]]:
    """Each module of ours -> the modules of ours its import statements name, anywhere in
    the file (relative ones resolved; `from p import n` names `p.n` when that is a module,
    else the package `p`)."""
    files = {}
    for top in tops:
        for path in (root / top).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            package = parts[-1] == "__init__"
            files[".".join(parts[:-1] if package else parts)] = (path, package)

    def ours(name: str) -> str:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for module, (path, package) in files.items():
        named: list[str] = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                named += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = module.split(".")[:len(module.split(".")) - (not package)]
                    here = here[:len(here) - node.level + 1]
                    base = ".".join([*here, base] if base else here)
                named += [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                          for a in node.names]
        graph[module] = {ours(n) for n in named} - {"", module}
    return graph


def test_no_module_imports_itself_through_others() -> None:
    """No import circle between any two modules of ours (graphlib names the circle)."""
    graph = module_graph(REPO, OURS)
    assert len(graph) > 100 and graph["rater.calls.handler"]
    tuple(graphlib.TopologicalSorter(graph).static_order())


def test_the_circle_check_sees_a_circle_through_a_relative_import(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from .a import x\n")
    graph = module_graph(tmp_path, ("pkg",))
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(graph).static_order())
