"""Quantiles of measured latencies, computed one way by every benchmark: nearest rank, the
value at rank ceil(q·n) of the n values sorted. p99.9 is as defined as p50 (of 1,000 values,
the 999th), and every quantile is a value that was measured."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def quantiles(values: Iterable[float], fractions: Sequence[float]) -> list[float]:
    """The quantile of `values` at each of `fractions` (each in (0, 1]), sorting once."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values to take a quantile of")
    out = []
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ValueError(f"a quantile's fraction is in (0, 1], not {fraction}")
        out.append(ordered[max(math.ceil(fraction * len(ordered)), 1) - 1])
    return out


def quantile(values: Iterable[float], fraction: float) -> float:
    """The quantile of `values` at `fraction` (0.99 for p99)."""
    return quantiles(values, [fraction])[0]
