"""``taskfate diagram``: the lifecycle (or one future's path through it) as a picture.

The text forms come from ``taskfate.fsm.diagram`` and need nothing beyond the
base install. svg and png are rendered from the dot text, in-process by
pygraphviz when the ``taskfate[diagrams]`` extra is installed (its wheel
bundles Graphviz), otherwise by a ``dot`` program on ``PATH``. With neither,
the command says so in one line and exits 1; nothing is written.

``--declaration MODULE:NAME`` draws a lifecycle declared elsewhere (a
``Lifecycle``, a declaration dict declared with the stock classifier, or a
function returning either) instead of a stock policy's.

Refreshing the diagrams in taskfate's own docs is a maintainer's job, done
from a checkout by ``maintainer/refresh_docs.py``, not by this command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from taskfate.fsm import diagram
from taskfate.fsm import lifecycle as lc
from taskfate.fsm.declare import Lifecycle
from taskfate.fsm.explore import load_lifecycle

_log = logging.getLogger("taskfate.client")

FORMATS = ("mermaid", "dot", "svg", "png")
_SUFFIXES = {".mmd": "mermaid", ".mermaid": "mermaid", ".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png"}
INSTALL_HINT = "pip install 'taskfate[diagrams]' (or install Graphviz so that `dot` is on PATH)"


class DiagramError(Exception):
    """Something the user can fix; its message is the one line printed."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diagram",
        help="draw the lifecycle, or a saved future's path through it",
        description="Draw the declared lifecycle as Mermaid, dot, svg or png.",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (default: from --output's suffix, else mermaid); svg and png need Graphviz",
    )
    parser.add_argument(
        "--machine",
        choices=("future", "scheduler"),
        default="future",
        help="which declared machine: a client's future (default) or the reference scheduler's task (Mermaid only)",
    )
    parser.add_argument("--policy", choices=lc.POLICIES, help=f"late_result policy to draw (default: {lc.DEFAULT_POLICY})")
    parser.add_argument(
        "--declaration",
        metavar="MODULE:NAME",
        help="draw this lifecycle instead of a stock policy's: a Lifecycle, a declaration dict, or a function returning one",
    )
    parser.add_argument("--output", "-o", type=Path, help="write here instead of standard output")
    parser.add_argument(
        "--history",
        type=Path,
        metavar="FILE",
        help="highlight the path saved by taskfate.fsm.diagram.history_to_json(future.history, policy)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        data = _draw(args)
        _write(data, args.output)
    except DiagramError as exc:
        print(f"taskfate diagram: {exc}", file=sys.stderr)
        return 1
    return 0


def _draw(args: argparse.Namespace) -> bytes:
    fmt = args.format or (_SUFFIXES.get(args.output.suffix.lower()) if args.output else None) or "mermaid"
    if args.machine == "scheduler":
        if fmt != "mermaid" or args.policy or args.history or args.declaration:
            raise DiagramError("the scheduler's machine is drawn as Mermaid only, with no --policy, --declaration or --history")
        return _scheduler_mermaid().encode()
    if args.policy and args.declaration:
        raise DiagramError("pass --policy or --declaration, not both")
    policy: str | Lifecycle = _declared(args.declaration) if args.declaration else args.policy or lc.DEFAULT_POLICY
    history = None
    if args.history is not None:
        saved = _read_history(args.history)
        if args.declaration and saved.policy:
            raise DiagramError(f"{args.history} was saved under late_result={saved.policy!r}; drop --declaration or pass --policy {saved.policy}")
        if args.policy and saved.policy and args.policy != saved.policy:
            raise DiagramError(
                f"{args.history} was saved under late_result={saved.policy!r}; drop --policy or pass --policy {saved.policy}"
            )
        if not args.declaration:
            policy = args.policy or saved.policy or lc.DEFAULT_POLICY
        history = saved.steps
    if fmt == "png" and args.output is None and sys.stdout.isatty():
        raise DiagramError("png is binary; pass --output FILE.png")
    try:
        if fmt == "mermaid":
            return diagram.mermaid(policy, history).encode()
        text = diagram.dot(policy, history)
    except diagram.HistoryError as exc:
        raise DiagramError(f"{args.history}: {exc}") from None
    if fmt == "dot":
        return text.encode()
    return render(text, fmt)


def _declared(spec: str) -> Lifecycle:
    """The Lifecycle ``--declaration`` names, or one line saying why not."""
    # Imported here: the explore command owns the MODULE:NAME loader.
    from taskfate.client.commands.explore import load_target

    try:
        return load_lifecycle(load_target(spec), spec)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        raise DiagramError(f"cannot load the lifecycle {spec}: {exc}") from None


def _read_history(path: Path) -> diagram.SavedHistory:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DiagramError(f"cannot read {path}: {exc}") from None
    try:
        return diagram.history_from_json(text)
    except diagram.HistoryError as exc:
        raise DiagramError(f"{path}: {exc}") from None


def render(dot_text: str, fmt: str) -> bytes:
    """``dot_text`` rendered as ``fmt`` (svg or png).

    pygraphviz first (in-process, nothing else to install with its wheel),
    then the ``dot`` program. ``DiagramError`` naming the install hint when
    neither exists, or carrying Graphviz's own message when it fails.
    """
    try:
        pygraphviz: Any = importlib.import_module("pygraphviz")
    except ImportError:
        pygraphviz = None
    if pygraphviz is not None:
        try:
            data: bytes = pygraphviz.AGraph(string=dot_text).draw(format=fmt, prog="dot")
        except Exception as exc:  # pygraphviz raises several unrelated types
            raise DiagramError(f"Graphviz (pygraphviz) could not render {fmt}: {exc}") from None
        return data
    program = shutil.which("dot")
    if program is None:
        raise DiagramError(f"{fmt} output needs Graphviz: {INSTALL_HINT}")
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DiagramError(f"running {program} failed: {exc}") from None
    if done.returncode != 0 or not done.stdout:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise DiagramError(f"{program} -T{fmt} exited {done.returncode}: {detail[0] if detail else 'no output'}")
    return done.stdout


def _write(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    _replace(output, data)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder,
    so a failure part-way leaves the old file as it was. (The docs refresh,
    maintainer/refresh_docs.py, writes through it too.)"""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _replace(path: Path, data: bytes) -> None:
    try:
        write_atomically(path, data)
    except OSError as exc:
        raise DiagramError(f"cannot write {path}: {exc}") from None


def _scheduler_mermaid() -> str:
    from taskfate.scheduler import lifecycle as scheduler_lifecycle

    return scheduler_lifecycle.mermaid()
