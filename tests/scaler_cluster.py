"""A real Scaler cluster on loopback for the Scaler tests and the benchmark.

Scaler's own ``SchedulerClusterCombo`` (scheduler, object storage and a fixed
pool of workers, each a process) bound to 127.0.0.1 on free ports. The
network backend is Scaler's choice by environment variable, read when a
process or client starts, so the cluster and the clients made while it runs
share the backend it was started with.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

BACKEND_VARIABLE = "SCALER_NETWORK_BACKEND"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Cluster:
    address: str
    backend: str
    combo: Any

    def kill_scheduler(self) -> None:
        """SIGKILL the scheduler process alone (workers and storage stay)."""
        scheduler = getattr(self.combo, "_scheduler", None)
        if scheduler is None:
            raise RuntimeError("SchedulerClusterCombo no longer exposes its scheduler process as _scheduler")
        scheduler.kill()
        scheduler.join(timeout=10)


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Run the body with Scaler's network backend set to ``name``."""
    previous = os.environ.get(BACKEND_VARIABLE)
    os.environ[BACKEND_VARIABLE] = name
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(BACKEND_VARIABLE, None)
        else:
            os.environ[BACKEND_VARIABLE] = previous


@contextlib.contextmanager
def running_cluster(backend_name: str = "ymq", n_workers: int = 2, **options: Any) -> Iterator[Cluster]:
    """A started cluster, shut down on the way out whatever happened inside."""
    from scaler import SchedulerClusterCombo

    with backend(backend_name):
        address = f"tcp://127.0.0.1:{free_port()}"
        options.setdefault("logging_level", "WARNING")
        combo = SchedulerClusterCombo(n_workers=n_workers, address=address, **options)
        try:
            yield Cluster(address, backend_name, combo)
        finally:
            started = time.monotonic()
            combo.shutdown()
            if time.monotonic() - started > 30:
                print(f"cluster shutdown took {time.monotonic() - started:.1f}s")
