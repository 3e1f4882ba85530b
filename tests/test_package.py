"""The package as users install it: layout, typing marker, command line."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest


@pytest.mark.timeout(300)
def test_the_wheel_installs_only_under_the_taskfate_namespace(tmp_path):
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        timeout=280,
    )
    (wheel,) = tmp_path.glob("taskfate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"taskfate", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    for layer in ("protocol", "fsm", "client"):
        assert f"taskfate/{layer}/py.typed" in names
        for source in (root / layer).rglob("*.py"):
            assert f"taskfate/{source.relative_to(root).as_posix()}" in names, f"{source} is not in the wheel"


@pytest.mark.parametrize("layer", ["protocol", "fsm", "client"])
def test_every_layer_is_marked_typed(layer):
    spec = importlib.util.find_spec(f"taskfate.{layer}")
    assert spec is not None and spec.submodule_search_locations
    assert any((Path(p) / "py.typed").is_file() for p in spec.submodule_search_locations)


def test_protocol_and_fsm_stay_free_of_io():
    code = "import sys, taskfate.fsm, taskfate.protocol; print('zmq' in sys.modules, 'threading' in sys.modules and 'taskfate.client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.timeout(120)
def test_command_line_version_and_demo():
    version = subprocess.run([sys.executable, "-m", "taskfate.client", "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("taskfate ")
    demo = subprocess.run([sys.executable, "-m", "taskfate.client", "demo"], capture_output=True, text=True, timeout=100)
    assert demo.returncode == 0, demo.stderr
    for line in ("cancel while queued: cancelled", "cancel while running: cancelled", "graph node d: cancelled", "every future ended"):
        assert line in demo.stdout, demo.stdout
