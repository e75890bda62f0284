"""The one hostile log-probability predicate that judges and prompt_logprobs both use."""

import math

import pytest

from emeval.judging.judge import check_logprobs
from emeval.sanitize.logprobs import MASS_TOLERANCE, impossible_logprob


@pytest.mark.parametrize(
    ("value", "reason"),
    [(math.nan, "non-finite log-probability nan"), (math.inf, "non-finite log-probability inf"),
     (-math.inf, "non-finite log-probability -inf"), (0.5, "positive log-probability 0.5"),
     (1, "non-finite log-probability 1"), (None, "non-finite log-probability None")],
)
def test_impossible_values_are_named(value, reason):
    assert impossible_logprob(value) == reason
    # the judge refuses the same value for the same reason, naming the token
    assert check_logprobs([("85", value)]).problem == f"{reason} for token '85'"


def test_rounding_above_zero_is_a_probability_beyond_the_tolerance_is_not():
    assert impossible_logprob(-30.0) is None and impossible_logprob(0.0) is None
    assert impossible_logprob(math.log1p(0.9 * MASS_TOLERANCE)) is None
    assert impossible_logprob(math.log1p(1.1 * MASS_TOLERANCE)) is not None
