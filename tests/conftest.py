"""Shared test configuration.

Hypothesis profiles: ``ci`` is bounded so the whole suite stays well inside
CI's budget; ``dev`` digs deeper for local runs. ``.ci/run`` selects ``ci``;
otherwise ``HYPOTHESIS_PROFILE`` decides, defaulting to ``ci`` when the ``CI``
variable is set and ``dev`` when it is not.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

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
