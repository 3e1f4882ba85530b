"""Build the API reference from the docstrings with pdoc; any warning fails it.

Usage: python .ci/apidoc.py [OUTPUT]   (default: build/api, which git ignores)

Documents every module of taskfate.protocol, taskfate.fsm, taskfate.client
and taskfate.scheduler except the command line (``taskfate.client.cli``,
``taskfate.client.commands``, ``taskfate.client.__main__``), whose reference
is ``taskfate --help``. The docstrings are reStructuredText.

pdoc reports what it cannot document (a module that fails to import, an
annotation it cannot evaluate, a member of ``__all__`` that does not exist)
as Python warnings and carries on. Here every warning raised while pdoc
works is printed and fails the build (exit 1), except those listed in
TOLERATED, each matched exactly and with the reason it cannot be fixed
here. A tolerated warning that no longer occurs is reported, so the entry
can be dropped.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import re
import sys
import warnings
from pathlib import Path

import pdoc
import pdoc.extract
import pdoc.render

PACKAGES = ("taskfate.protocol", "taskfate.fsm", "taskfate.client", "taskfate.scheduler")
COMMAND_LINE = re.compile(r"^taskfate\.client\.(__main__|cli|commands)(\.|$)")

#: (pattern the whole warning message must match, why it is tolerated).
TOLERATED: tuple[tuple[str, str], ...] = (
    (
        r"Error parsing type annotation ForwardRef\('tuple\[HistoryStep, \.\.\.\]'\) "
        r"for taskfate\.fsm\.diagram\.SavedHistory\.__init__\. "
        r"Import of HistoryStep failed: name 'HistoryStep' is not defined",
        "a NamedTuple field annotated with a name of its own module, under postponed annotations: "
        "pdoc evaluates it in the synthetic namespace of the generated __new__; the fix belongs in fsm/diagram.py",
    ),
)


def modules() -> list[str]:
    """The packages, then each submodule pdoc would not reach from them
    (a package's ``__all__`` hides the submodules it does not list)."""
    reached = set(pdoc.extract.walk_specs(list(PACKAGES)))
    names = list(PACKAGES)
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        for info in pkgutil.walk_packages(path, package + "."):
            if COMMAND_LINE.match(info.name) or info.name in reached or info.name.rsplit(".", 1)[1].startswith("_"):
                continue
            names.append(info.name)
    return names


def main(argv: list[str]) -> int:
    output = Path(argv[0] if argv else "build/api")
    version = importlib.metadata.version("taskfate")
    pdoc.render.configure(docformat="restructuredtext", footer_text=f"taskfate {version}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*modules(), output_directory=output)
    failures, seen = [], set()
    for warning in caught:
        message = str(warning.message)
        tolerated = [index for index, (pattern, _) in enumerate(TOLERATED) if re.fullmatch(pattern, message)]
        if tolerated:
            seen.update(tolerated)
            print(f"apidoc: tolerated: {message}\n  because {TOLERATED[tolerated[0]][1]}", file=sys.stderr)
        else:
            failures.append(f"{warning.category.__name__} ({warning.filename}:{warning.lineno}): {message}")
    for index, (pattern, _) in enumerate(TOLERATED):
        if index not in seen:
            print(f"apidoc: the tolerated warning {pattern!r} no longer occurs; drop it from .ci/apidoc.py", file=sys.stderr)
    if failures:
        print(f"apidoc: {len(failures)} warning(s), treated as errors:", file=sys.stderr)
        for failure in failures:
            print("  " + failure, file=sys.stderr)
        return 1
    pages = sum(1 for _ in output.rglob("*.html"))
    print(f"apidoc: {pages} pages in {output}/ (open {output}/index.html)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
