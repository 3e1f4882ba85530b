"""Refresh the generated sections of taskfate's docs from the declarations.

    python maintainer/refresh_docs.py            # from the root of a checkout
    python maintainer/refresh_docs.py --check    # write nothing; exit 1 if any is stale

A maintainer's tool, not part of the installed command line: it reads and
writes the files of a taskfate checkout (``README.md`` and ``docs/*.md``),
so it needs that checkout and taskfate installed from it with the
``scaler`` extra (``pip install -e '.[test,scaler]'``), since one section
draws the Scaler adapter's lifecycle.

Each document marks its generated sections with a pair of lines,
``<!-- BEGIN GENERATED name: ... -->`` and ``<!-- END GENERATED name -->``;
everything between them is rewritten, everything else kept byte for byte
(``taskfate.fsm.diagram.refresh_document``). The test suite builds the
same sections with the functions below and fails while a committed document
differs from them.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from taskfate.client.commands.diagram import write_atomically
from taskfate.fsm import diagram
from taskfate.fsm import lifecycle as lc
from taskfate.fsm.declare import Lifecycle

#: The checkout this script belongs to.
ROOT = Path(__file__).resolve().parents[1]

#: Generated sections drawn from the scheduler's declaration. They are
#: assembled here, not in taskfate.fsm, which does not import the scheduler.
SCHEDULER_DOCUMENTS = {"docs/transport.md": ("scheduler-diagram",)}

#: Generated sections drawn from lifecycles outside taskfate.fsm: the Scaler
#: adapter's (taskfate.client.scaler, which needs the ``scaler`` extra) and
#: the example library's of docs/declaring.md (a file of the checkout).
LIBRARY_DOCUMENTS = {"docs/lifecycle.md": ("declarations",), "docs/declaring.md": ("example-pulse", "example-pulse-diagram")}

#: The example library's declaration, relative to the checkout.
EXAMPLE = Path("docs/examples/pulse_lifecycle.py")


class RefreshError(Exception):
    """Something the maintainer can fix; its message is the one line printed."""


def documents() -> dict[str, tuple[str, ...]]:
    """Every document with generated sections, and the sections it holds."""
    merged: dict[str, tuple[str, ...]] = {}
    for source in (diagram.DOCUMENTS, SCHEDULER_DOCUMENTS, LIBRARY_DOCUMENTS):
        for relative, names in source.items():
            merged[relative] = merged.get(relative, ()) + names
    return merged


def scheduler_sections() -> dict[str, str]:
    """The generated sections drawn from the scheduler's declaration, by name."""
    from taskfate.scheduler import lifecycle as scheduler_lifecycle

    picture = diagram.fenced(scheduler_lifecycle.mermaid()) + "\n" + scheduler_lifecycle.legend()
    return {"scheduler-diagram": picture + "\n" + scheduler_lifecycle.table()}


def load_example(root: Path) -> Any:
    """The example library's module, loaded from ``root``'s copy of it."""
    path = root / EXAMPLE
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise RefreshError(f"cannot load the example lifecycle {path} (run from a taskfate checkout or pass --root)")
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs: dataclasses look their module up by name.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def side_by_side(root: Path) -> tuple[Lifecycle, ...]:
    """The declarations ``docs/lifecycle.md`` draws side by side: taskfate's
    own (the stock one, its ``Client``'s, the Scaler adapter's) and the
    example library's."""
    try:
        from taskfate.client.scaler import scaler_lifecycle
    except ImportError as exc:
        raise RefreshError(f"drawing the Scaler adapter's lifecycle needs the scaler extra: {exc}") from None
    return (
        lc.STOCK_LIFECYCLES[lc.DEFAULT_POLICY],
        lc.STARTED_LIFECYCLES[lc.DEFAULT_POLICY],
        scaler_lifecycle(lc.DEFAULT_POLICY),
        load_example(root).LIFECYCLE,
    )


def library_sections(root: Path) -> dict[str, str]:
    """The generated sections drawn from lifecycles outside taskfate.fsm."""
    drawn = side_by_side(root)
    example = drawn[-1]
    source = (root / EXAMPLE).read_text(encoding="utf-8")
    pictures = "".join(
        diagram.fenced(diagram.mermaid(lifecycle)) + "\n" + diagram.legend_markdown(lifecycle) + "\n" for lifecycle in drawn[1:]
    )
    return {
        "declarations": pictures + diagram.side_by_side_markdown(drawn),
        "example-pulse": f"```python\n# {EXAMPLE.as_posix()}\n{source}```\n",
        "example-pulse-diagram": diagram.fenced(diagram.mermaid(example))
        + "\n"
        + diagram.legend_markdown(example, messages=False)
        + "\n"
        + diagram.table_markdown(example),
    }


def all_sections(root: Path) -> dict[str, str]:
    """Every generated section of the checkout at ``root``, by name."""
    return {**diagram.docs_sections(), **scheduler_sections(), **library_sections(root)}


def refresh(root: Path, *, write: bool = True) -> list[Path]:
    """Regenerate every document's marked sections under ``root``; returns
    the documents that differed (and, with ``write``, were rewritten).

    Every document is read and checked before any is written, so a missing
    marker in one leaves all of them untouched.
    """
    sections = all_sections(root)
    refreshed = []
    for relative, names in documents().items():
        path = root / relative
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RefreshError(f"cannot read {path} (run from a taskfate checkout or pass --root): {exc}") from None
        try:
            new = diagram.refresh_document(text, names, sections)
        except diagram.DocsError as exc:
            raise RefreshError(f"{path}: {exc}") from None
        refreshed.append((path, text, new))
    changed = []
    for path, old, new in refreshed:
        if new != old:
            if write:
                try:
                    write_atomically(path, new.encode("utf-8"))
                except OSError as exc:
                    raise RefreshError(f"cannot write {path}: {exc}") from None
            changed.append(path)
        state = "up to date" if new == old else "updated" if write else "stale"
        print(f"{path}: {state}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python maintainer/refresh_docs.py",
        description="Regenerate the marked sections of README.md and docs/*.md from the lifecycle declarations.",
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose docs to refresh (default: this script's)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a document is stale")
    args = parser.parse_args(argv)
    try:
        changed = refresh(args.root, write=not args.check)
    except RefreshError as exc:
        print(f"refresh_docs: {exc}", file=sys.stderr)
        return 1
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
