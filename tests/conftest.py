"""Shared test configuration.

Hypothesis profiles: ``ci`` is bounded so the whole suite stays well inside
CI's budget; ``dev`` digs deeper for local runs. ``.ci/run`` selects ``ci``;
otherwise ``HYPOTHESIS_PROFILE`` decides, defaulting to ``ci`` when the ``CI``
variable is set and ``dev`` when it is not.

The maintainer's scripts (``maintainer/``: refreshing the docs, rendering
their diagrams) are importable by name, so the tests use the very functions
that write and check the docs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

_MAINTAINER = str(Path(__file__).resolve().parents[1] / "maintainer")
if _MAINTAINER not in sys.path:
    sys.path.insert(0, _MAINTAINER)

settings.register_profile(
    "ci",
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,
    print_blob=True,
)
settings.register_profile(
    "dev",
    max_examples=1500,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
