"""The package as users install it: layout, typing marker, command line."""

from __future__ import annotations

import importlib.metadata
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
    # The root package's folder lands as taskfate/ itself, and only its files.
    assert {name for name in names if name.count("/") == 1 and name.startswith("taskfate/")} == {
        f"taskfate/{path.name}" for path in (root / "root").iterdir() if path.suffix in (".py", ".typed")
    }


@pytest.mark.parametrize("layer", ["", ".protocol", ".fsm", ".client"])
def test_every_layer_is_marked_typed(layer):
    spec = importlib.util.find_spec(f"taskfate{layer}")
    assert spec is not None and spec.submodule_search_locations
    assert any((Path(p) / "py.typed").is_file() for p in spec.submodule_search_locations)


def test_protocol_and_fsm_stay_free_of_io():
    code = "import sys, taskfate.fsm, taskfate.protocol; print('zmq' in sys.modules, 'threading' in sys.modules and 'taskfate.client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


def test_the_version_is_the_installed_distributions():
    import taskfate

    assert taskfate.__version__ == importlib.metadata.version("taskfate")
    # Read on first use: importing taskfate (or a layer) reads no metadata.
    code = "import sys, taskfate, taskfate.protocol; print('importlib.metadata' in sys.modules, 'taskfate.client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


def test_the_version_without_an_installed_distribution(monkeypatch):
    import taskfate

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.delattr(taskfate, "__version__", raising=False)
    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert taskfate.__version__ == taskfate.UNKNOWN_VERSION == "0+unknown"
    with pytest.raises(AttributeError, match="no attribute 'version'"):
        getattr(taskfate, "version")


@pytest.mark.timeout(120)
def test_python_dash_m_taskfate_is_the_command_line():
    root = Path(__file__).resolve().parents[1]
    for cwd in (root, Path(__file__).parent):  # the repository root shadows nothing
        version = subprocess.run([sys.executable, "-m", "taskfate", "--version"], capture_output=True, text=True, timeout=60, cwd=cwd)
        assert version.returncode == 0, version.stderr
        assert version.stdout.strip() == f"taskfate {importlib.metadata.version('taskfate')}"
    usage = subprocess.run([sys.executable, "-m", "taskfate", "--help"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: taskfate"), usage.stderr


@pytest.mark.timeout(120)
def test_command_line_version_and_demo():
    version = subprocess.run([sys.executable, "-m", "taskfate.client", "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("taskfate ")
    demo = subprocess.run([sys.executable, "-m", "taskfate.client", "demo"], capture_output=True, text=True, timeout=100)
    assert demo.returncode == 0, demo.stderr
    for line in ("cancel while queued: cancelled", "cancel while running: cancelled", "graph node d: cancelled", "every future ended"):
        assert line in demo.stdout, demo.stdout
