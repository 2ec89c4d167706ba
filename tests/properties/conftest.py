"""Hypothesis profiles for the property tests: `dev` explores new examples on every run;
`ci` (loaded when CI is set, or with --hypothesis-profile=ci) is derandomised, so a CI run
is reproducible; `thorough` runs ten times as many examples. None keeps an example
database: what a run finds is kept as an explicit @example in the test module."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,  # requests through the app; time is not the property
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("dev", max_examples=60, **_COMMON)
settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)
# A longer hunt, by hand: pytest tests/properties --hypothesis-profile=thorough
settings.register_profile("thorough", max_examples=600, **_COMMON)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
