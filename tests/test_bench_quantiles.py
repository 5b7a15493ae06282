"""The benchmarks' quantiles: nearest rank, always a value that was measured."""

from __future__ import annotations

import pytest

from bench.quantiles import quantile, quantiles


def test_a_quantile_is_the_value_at_rank_ceil_q_n_of_the_sorted_values() -> None:
    values = [float(n) for n in range(1000, 0, -1)]  # 1..1000, unsorted

    assert quantiles(values, [0.5, 0.99, 0.999, 1.0]) == [500.0, 990.0, 999.0, 1000.0]


def test_of_few_values_the_high_quantiles_are_the_largest() -> None:
    assert quantile([3.0, 1.0, 2.0], 0.99) == 3.0
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([7.0], 0.001) == 7.0


def test_no_values_or_a_fraction_outside_0_to_1_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        quantile([], 0.5)
    with pytest.raises(ValueError, match="fraction"):
        quantile([1.0], 0.0)
    with pytest.raises(ValueError, match="fraction"):
        quantile([1.0], 99)
