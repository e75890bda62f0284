"""The one test of a log-probability a model or server returned, before any number is read from it.

Why: a server's garbage must never become a likelihood or a judge score. NaN sums to NaN, +inf wins
every choice, and a value above 0 is not a probability. Judges' top log-probabilities and
``/v1/completions`` prompt log-probabilities are both checked here, so both refuse the same values.
"""

from __future__ import annotations

import math

MASS_TOLERANCE = 1e-3
"""Relative slack on a distribution's total probability: servers round log-probabilities, so a
valid top-k list can sum to a hair above 1; anything beyond this is not a distribution."""


def impossible_logprob(value: object) -> str | None:
    """Why ``value`` cannot be a log-probability (non-finite or not a float, or above
    ``log(1 + MASS_TOLERANCE)``), or None when it can."""
    if not isinstance(value, float) or not math.isfinite(value):
        return f"non-finite log-probability {value!r}"
    if value > math.log1p(MASS_TOLERANCE):
        return f"positive log-probability {value:g}"
    return None
