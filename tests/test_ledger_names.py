"""The names rater/ledger/fields.py gives the scripts' ARGV are the ones the scripts use."""

from __future__ import annotations

import re

import pytest

from rater.ledger import fields
from rater.ledger.scripts import SCRIPT_NAMES, script_source


def _unpacked(name: str) -> tuple[str, ...]:
    """The locals a script unpacks its leading ARGV into."""
    m = re.search(r"^local ([\w,\s]+?) = unpack\(ARGV, 1, (\d+)\)", script_source(name), re.M)
    assert m, f"{name}.lua does not unpack its ARGV into named locals"
    names = tuple(n.strip() for n in m.group(1).split(","))
    assert len(names) == int(m.group(2))
    return names


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_each_script_names_its_argv_as_fields_py_does(name: str) -> None:
    assert _unpacked(name) == fields.SCRIPT_ARGV[name]


def test_authorize_stores_each_level_argument_in_the_plan_field_fields_py_names() -> None:
    src = script_source("authorize")
    block = src[src.index("local L = {"):src.index("i = i + 13")]
    stored = {int(offset or 0): field for field, offset in
              re.findall(r"(\w+) = (?:tonumber\()?ARGV\[i(?: \+ (\d+))?\]", block)}
    stored[12] = None if "local n_buckets = tonumber(ARGV[i + 12])" in block else "?"
    assert stored == {i: f for i, (_, f) in enumerate(fields.AUTHORIZE_LEVEL_ARGV)}
    assert len(fields.AUTHORIZE_LEVEL_ARGV) == 13  # `i = i + 13` in the script
    tail = re.findall(r"^local (\w+) = (?:tonumber\()?ARGV\[i(?: \+ (\d+))?\]", src, re.M)
    assert tuple(n for n, _ in tail) == fields.AUTHORIZE_TAIL
