"""The documentation runs: README code blocks, docstring examples, the CI test command."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import pkgutil
import re
import subprocess

import numpy as np
import pytest

import cnnperf

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

MODULES = [
    m.name
    for m in pkgutil.walk_packages(cnnperf.__path__, "cnnperf.")
    if m.name not in ("cnnperf.__main__",)
]


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_quickstart_has_exactly_two_commands_and_ci_runs_the_test_one():
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```\n(.*?)\n```", quickstart, re.S)
    assert len(commands) == 2, commands
    assert "cnnperf demo" in commands[0]
    assert "[test]" in commands[1] and "pytest" in commands[1]
    # .ci/run picks the README line with this pattern; it must be the Quickstart's command.
    picked = subprocess.run(
        ["grep", "-m1", "-E", r"^pip install .*\[test\].*pytest", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert picked == commands[1]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
