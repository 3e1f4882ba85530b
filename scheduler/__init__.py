"""A reference scheduler for the taskfate protocol.

One ROUTER socket for clients, a ready queue, and a pool of worker processes
running cloudpickled callables. Its per-task decisions are declared in
``taskfate.scheduler.lifecycle``, beside the client's future lifecycle, so
both sides of the protocol can be drawn and explored together.
"""

from taskfate.scheduler.server import DEFAULT_ADDRESS, FaultPlan, Scheduler

__all__ = ["DEFAULT_ADDRESS", "FaultPlan", "Scheduler"]
