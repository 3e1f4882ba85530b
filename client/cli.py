"""The ``taskfate`` command line.

Each subcommand lives in its own module under ``taskfate.client.commands`` exposing ``register(subparsers)``,
which adds a parser whose ``handler`` default takes the parsed arguments and
returns the exit status. The list below is the only place that names them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

_COMMANDS = (
    "taskfate.client.commands.demo",
    "taskfate.client.commands.scheduler",
    "taskfate.client.commands.diagram",
    "taskfate.client.commands.explore",
    "taskfate.client.commands.mutants",
)


def _version() -> str:
    try:
        return version("taskfate")
    except PackageNotFoundError:  # running from a source tree without install
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskfate",
        description="Futures for remote tasks whose lifecycle is one declared state machine.",
    )
    parser.add_argument("--version", action="version", version=f"taskfate {_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (repeat for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    status: int = handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
