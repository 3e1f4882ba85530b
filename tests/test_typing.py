"""What taskfate's types promise a user, checked with ``mypy --strict``.

``tests/typed/user.py`` is a typed program using the library as users do;
it must pass. ``tests/typed/wrong.py`` holds mistakes the types exist to
catch; each marked line must be rejected with the marked error code, so
this test fails if the types go slack (an ``Any`` where a value's type
should be). mypy reads the installed package through a tree of symlinks
laid out as .ci/typecheck lays it out: the folders install under
``taskfate`` by a package-dir mapping that mypy cannot follow itself.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from taskfate.fsm import POLICIES, STARTED_LIFECYCLES, STOCK_LIFECYCLES, Policy
from taskfate.fsm.lifecycle import LATE_RESULT_TRANSITIONS

ROOT = Path(__file__).resolve().parents[1]
TYPED = Path(__file__).resolve().parent / "typed"
LAYERS = ("protocol", "fsm", "client", "scheduler")
#: mypy is slow to start cold; each run is bounded, well inside the test's timeout.
MYPY_TIMEOUT = 60


def test_the_policy_type_names_every_stock_policy():
    assert set(get_args(Policy)) == set(POLICIES) == set(LATE_RESULT_TRANSITIONS) == set(STOCK_LIFECYCLES) == set(STARTED_LIFECYCLES)


@pytest.fixture(scope="module")
def mypy(tmp_path_factory):
    """Run ``mypy --strict`` on one file against the installed taskfate."""
    tree = tmp_path_factory.mktemp("installed")
    package = tree / "taskfate"
    package.mkdir()
    (top,) = importlib.util.find_spec("taskfate").submodule_search_locations
    for path in Path(top).iterdir():
        if path.is_file() and path.suffix in (".py", ".typed"):
            (package / path.name).symlink_to(path)
    for layer in LAYERS:
        (location,) = importlib.util.find_spec(f"taskfate.{layer}").submodule_search_locations
        (package / layer).symlink_to(location)
    cache = tmp_path_factory.mktemp("mypy-cache")

    def run(script: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(cache), str(script)],
            capture_output=True,
            text=True,
            timeout=MYPY_TIMEOUT,
            env={**os.environ, "MYPYPATH": str(tree)},
            cwd=ROOT,
        )

    return run


@pytest.mark.slow
@pytest.mark.timeout(3 * MYPY_TIMEOUT)
def test_a_typed_user_program_passes_mypy_strict(mypy):
    checked = mypy(TYPED / "user.py")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Success: no issues found in 1 source file" in checked.stdout


@pytest.mark.slow
@pytest.mark.timeout(3 * MYPY_TIMEOUT)
def test_mypy_strict_rejects_each_mistake_and_nothing_else(mypy):
    script = TYPED / "wrong.py"
    # line -> the error codes accepted there ("call-arg|misc": mypy releases
    # differ in the code they give some mistakes)
    expected = {
        number: set(match.group(1).split("|"))
        for number, line in enumerate(script.read_text().splitlines(), 1)
        if (match := re.search(r"# error: ([a-z|-]+)$", line))
    }
    assert len(expected) >= 10
    checked = mypy(script)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    found = {
        int(match.group(1)): match.group(2)
        for match in re.finditer(r"^[^:\n]*wrong\.py:(\d+): error: .*\[([a-z-]+)\]$", checked.stdout, re.MULTILINE)
    }
    assert set(found) == set(expected), checked.stdout
    assert all(found[number] in expected[number] for number in found), checked.stdout
