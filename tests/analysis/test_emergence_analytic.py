"""The analytic emergence numbers (Schaeffer et al. 2023) and the answer metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unimask.analysis.emergence import (
    analytic_rows,
    composite,
    composite_example,
    digit_accuracy,
    exact_match,
    expected_edit_distance,
    levenshtein,
    per_token_accuracy,
)


def test_composite_five_subtasks_forty_to_sixty_percent() -> None:
    """5 subtasks at 40% -> 60% each: about 1.0% -> 7.8% overall."""
    ex = composite_example(0.4, 0.6, 5)
    assert ex["overall_before"] == pytest.approx(0.01024)
    assert ex["overall_after"] == pytest.approx(0.07776)
    assert round(100 * ex["overall_before"], 1) == 1.0 and round(100 * ex["overall_after"], 1) == 7.8
    assert ex["overall_gain"] == pytest.approx(7.59375)
    assert ex["subtask_gain"] == pytest.approx(1.5)


def test_exact_match_is_p_to_the_length() -> None:
    assert float(exact_match(0.9, 1)) == pytest.approx(0.9)
    assert float(exact_match(0.9, 10)) == pytest.approx(0.3486784401)
    assert float(exact_match(0.5, 3)) == pytest.approx(0.125)
    np.testing.assert_allclose(exact_match([0.0, 1.0], 7), [0.0, 1.0])


def test_expected_edit_distance_is_linear_in_p() -> None:
    assert float(expected_edit_distance(0.9, 10)) == pytest.approx(1.0)
    assert float(expected_edit_distance(1.0, 10)) == 0.0
    ps = np.linspace(0, 1, 11)
    steps = np.diff(expected_edit_distance(ps, 20))
    np.testing.assert_allclose(steps, -2.0)  # constant slope: no jump


def test_per_token_accuracy_from_power_law_cross_entropy() -> None:
    # N = N_c: CE = 1 nat, p = 1/e
    assert float(per_token_accuracy(1e6, n_c=1e6, alpha=0.3)) == pytest.approx(math.exp(-1))
    p = per_token_accuracy(np.logspace(6, 12, 13))
    assert np.all(np.diff(p) > 0) and p[-1] < 1


def test_analytic_rows_agree_with_the_formulas() -> None:
    rows = analytic_rows([1e8, 1e10], lengths=(1, 4))
    for row in rows:
        p = row["per_token_accuracy"]
        assert row["exact_match_L1"] == pytest.approx(p)
        assert row["exact_match_L4"] == pytest.approx(p ** 4)
        assert row["edit_distance_L4"] == pytest.approx(4 * (1 - p))
        assert math.exp(-row["cross_entropy"]) == pytest.approx(p)
    # the nonlinear metric rises relatively much more than the per-token accuracy
    gain_token = rows[1]["per_token_accuracy"] / rows[0]["per_token_accuracy"]
    gain_exact = rows[1]["exact_match_L4"] / rows[0]["exact_match_L4"]
    assert gain_exact == pytest.approx(gain_token ** 4)
    assert float(composite(0.5, 2)) == 0.25


def test_levenshtein() -> None:
    assert levenshtein("", "") == 0
    assert levenshtein("579", "579") == 0
    assert levenshtein("579", "578") == 1
    assert levenshtein("1579", "579") == 1
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3


def test_digit_accuracy_aligns_place_values() -> None:
    assert digit_accuracy("1102", "1102") == 1.0
    assert digit_accuracy("102", "1102") == 0.75  # missing carry digit: the other three still count
    assert digit_accuracy("1103", "1102") == 0.75
    assert digit_accuracy("", "42") == 0.0
    assert digit_accuracy("9", "") == 0.0
