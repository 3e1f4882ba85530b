"""The package as users install it: layout, typing marker, command line."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
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
    assert f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info/licenses/LICENSE" in names
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


#: What the sdist must carry for the suite to run from it (MANIFEST.in).
SDIST_FOLDERS = ("tests", "docs", "bench", ".ci", "maintainer")


def _shipped_files(root: Path) -> set[str]:
    """The files of SDIST_FOLDERS that an sdist of ``root`` must hold: the
    tracked ones in a git checkout, otherwise (an unpacked sdist) all of them."""
    if (root / ".git").exists():
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--", *SDIST_FOLDERS], capture_output=True, check=True, timeout=60
        )
        return {name for name in listed.stdout.decode().split("\0") if name}
    return {
        path.relative_to(root).as_posix()
        for folder in SDIST_FOLDERS
        for path in (root / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.timeout(300)
def test_the_sdist_carries_the_suite_and_what_it_reads(tmp_path):
    root = Path(__file__).resolve().parents[1]
    # Built from a copy without the egg-info an editable install leaves:
    # setuptools would add every file its old SOURCES.txt lists, whatever
    # MANIFEST.in says.
    tree = tmp_path / "tree"
    shutil.copytree(root, tree, ignore=shutil.ignore_patterns(".git", ".venv*", "*.egg-info", "build", "dist", "__pycache__", ".*_cache", ".hypothesis"))
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "-o", str(tmp_path), str(tree)],
        # Not from the checkout: its git-ignored build/ folder (API reference,
        # rendered diagrams) would shadow the build package.
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=280,
    )
    (sdist,) = tmp_path.glob("taskfate-*.tar.gz")
    with tarfile.open(sdist) as archive:
        prefix, names = sdist.name.removesuffix(".tar.gz") + "/", archive.getnames()
    shipped = {name.removeprefix(prefix) for name in names}
    missing = _shipped_files(root) - shipped
    assert not missing, f"not in the sdist: {sorted(missing)}"
    for required in ("LICENSE", "README.md", "pyproject.toml", "tests/conftest.py", "docs/examples/pulse_lifecycle.py"):
        assert required in shipped, required
    assert not any(name.endswith(".pyc") or "/.venv" in name for name in names)


def test_the_installed_metadata_names_the_license_and_its_file():
    metadata = importlib.metadata.metadata("taskfate")
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert not [c for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]


def test_the_readmes_relative_links_name_files_that_ship():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    targets = {link.split("#", 1)[0] for link in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in link}
    targets.discard("")
    assert targets, "README lost its links"
    for target in sorted(targets):
        assert (root / target).is_file(), f"README links to {target}, which does not exist"
        assert target == "LICENSE" or target.split("/", 1)[0] in SDIST_FOLDERS, f"{target} is not in a folder the sdist ships"
