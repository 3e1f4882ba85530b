"""taskfate: the lifecycle of a remote task's future as one declared,
checkable state machine.

The layers are subpackages, imported by name: ``taskfate.protocol`` (the
wire vocabulary), ``taskfate.fsm`` (the lifecycle, declared), ``taskfate.client``
(futures, their manager, the ZeroMQ client) and ``taskfate.scheduler``
(a reference scheduler). Importing ``taskfate`` itself imports none of them,
so ``import taskfate.protocol`` stays free of I/O.

``__version__`` is the installed distribution's version, read from its
metadata (whose one source is pyproject.toml) when first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["__version__"]

#: What ``__version__`` is when no taskfate distribution is installed (the
#: package imported from a bare source tree): a valid version that sorts
#: below every release.
UNKNOWN_VERSION = "0+unknown"

if TYPE_CHECKING:
    __version__: str
else:

    def __getattr__(name: str) -> str:
        # Read on first use: importlib.metadata is not free to import, and
        # most programs never ask.
        if name != "__version__":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("taskfate")
        except PackageNotFoundError:
            found = UNKNOWN_VERSION
        globals()["__version__"] = found
        return found
