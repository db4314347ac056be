"""`Stats.of_array` (partial sort, fsum in any order) gives `Stats.of`'s figures to the bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from equinox.metrics.latency import Stats


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1e5, allow_nan=False), min_size=0, max_size=300),
       st.integers(0, 2**32 - 1))
def test_of_array_equals_of(values: list[float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    arr = np.array(values + [values[0]] * int(rng.integers(0, 5)) if values else values, dtype=np.float64)
    rng.shuffle(arr)
    got, want = Stats.of_array(arr), Stats.of(arr.tolist())
    assert got.count == want.count == len(arr)
    figures = np.array([[s.mean, s.p50, s.p90, s.p99, s.max] for s in (got, want)])
    assert np.array_equal(figures[0], figures[1], equal_nan=True)
