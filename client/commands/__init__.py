"""Subcommands of the ``taskfate`` command line, one module each.

Each module exposes ``register(subparsers)``, which adds its parser and sets
a ``handler(args) -> int`` default. ``taskfate.client.cli`` lists them.
"""
