"""The package as users install it: layout, typing marker, command line."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest


def test_layers_install_under_the_taskfate_namespace_only():
    files = [str(f) for f in distribution("taskfate").files or []]
    for bare in ("client", "protocol", "fsm"):
        assert importlib.util.find_spec(f"taskfate.{bare}") is not None
        assert not any(f.startswith(f"{bare}/") for f in files), f"a bare top-level {bare} is installed"


@pytest.mark.parametrize("layer", ["protocol", "fsm", "client"])
def test_every_layer_is_marked_typed(layer):
    spec = importlib.util.find_spec(f"taskfate.{layer}")
    assert spec is not None and spec.submodule_search_locations
    assert any((Path(p) / "py.typed").is_file() for p in spec.submodule_search_locations)


def test_protocol_and_fsm_stay_free_of_io():
    code = "import sys, taskfate.fsm, taskfate.protocol; print('zmq' in sys.modules, 'threading' in sys.modules and 'taskfate.client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


def test_command_line_version_and_demo():
    version = subprocess.run([sys.executable, "-m", "taskfate.client", "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("taskfate ")
    demo = subprocess.run([sys.executable, "-m", "taskfate.client", "demo"], capture_output=True, text=True, timeout=60)
    assert demo.returncode == 0, demo.stderr
    assert "result races cancel: cancelled" in demo.stdout
    assert "cancel refused: done" in demo.stdout
