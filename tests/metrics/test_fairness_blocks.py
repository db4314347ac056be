"""Jain's index over windows taken together gives the floats of the loop over windows it replaced (issue 13)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from equinox.metrics import fairness, resource
from equinox.metrics.fairness import water_fill, water_fill_rows
from equinox.metrics.resource import weighted_water_fill, weighted_water_fill_rows


def service_jains(s: np.ndarray, queued: np.ndarray) -> list[float]:
    """fairness()'s loop over windows before issue 13."""
    out = []
    for j in range(s.shape[1]):
        active = (s[:, j] > 0) | (queued[:, j] > 0)
        if int(active.sum()) < 2:
            continue
        served = s[active, j]
        fair = water_fill(float(served.sum()), served + queued[active, j])
        x = served / np.where(fair > 0, fair, 1.0)
        if float((x * x).sum()) > 0:
            out.append(float(x.sum() ** 2 / (len(x) * (x * x).sum())))
    return out


def resource_jains(share: np.ndarray, waiting: np.ndarray, w: np.ndarray) -> list[float]:
    """resource_fairness()'s loop over windows before issue 13."""
    out = []
    for j in range(share.shape[1]):
        d = share[:, j]
        active = (d > 0) | waiting[:, j]
        if int(active.sum()) < 2:
            continue
        got = d[active]
        fair = weighted_water_fill(float(got.sum()), np.where(waiting[active, j], np.inf, got), w[active])
        x = got / np.where(fair > 0, fair, 1.0)
        sq = float((x * x).sum())
        if sq > 0:
            out.append(float(x.sum() ** 2 / (len(x) * sq)))
    return out


def matrix(rng: np.random.Generator, n: int, m: int, *, zeros: float, ties: bool) -> np.ndarray:
    """Tenants x windows of rates: spread over magnitudes, some zero, some equal (ties in the water-fill)."""
    x = rng.random((n, m)) * 10.0 ** rng.uniform(-3, 5, size=(n, m))
    if ties:
        x = np.round(x, 1)
        x[rng.random((n, m)) < 0.3] = 4.0
    x[rng.random((n, m)) < zeros] = 0.0
    return x


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), m=st.integers(1, 60),
       zeros=st.sampled_from([0.0, 0.3, 0.8]), ties=st.booleans(), inf=st.booleans())
def test_service_jain_block_equals_the_window_loop(seed: int, n: int, m: int, zeros: float, ties: bool,
                                                    inf: bool) -> None:
    rng = np.random.default_rng(seed)
    s = matrix(rng, n, m, zeros=zeros, ties=ties)
    queued = matrix(rng, n, m, zeros=0.6, ties=ties)
    if inf:  # the waiting-time form: a tenant that waited half the window wants without bound
        queued = np.where(queued > 0, np.inf, 0.0)
    assert fairness._jain_block(s, queued) == service_jains(s, queued)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), m=st.integers(1, 60),
       zeros=st.sampled_from([0.0, 0.3, 0.8]), ties=st.booleans(), equal_weights=st.booleans())
def test_resource_jain_block_equals_the_window_loop(seed: int, n: int, m: int, zeros: float, ties: bool,
                                                     equal_weights: bool) -> None:
    rng = np.random.default_rng(seed)
    share = matrix(rng, n, m, zeros=zeros, ties=ties)
    waiting = rng.random((n, m)) < 0.4
    w = np.ones(n) if equal_weights else np.round(rng.uniform(0.5, 4.0, n), 1)
    assert resource._jain_block(share, waiting, w) == resource_jains(share, waiting, w)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30), m=st.integers(1, 20), ties=st.booleans())
def test_water_fills_by_rows_equal_one_at_a_time(seed: int, n: int, m: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    demand = matrix(rng, m, n, zeros=0.2, ties=ties)
    demand[rng.random((m, n)) < 0.2] = np.inf
    total = np.round(rng.uniform(0, 2, m) * np.where(np.isinf(demand), 1.0, demand).sum(axis=1), 2)
    weights = np.round(rng.uniform(0.25, 3.0, (m, n)), 2)
    by_rows = water_fill_rows(total, demand)
    weighted = weighted_water_fill_rows(total, demand, weights)
    for r in range(m):
        assert by_rows[r].tolist() == water_fill(float(total[r]), demand[r]).tolist()
        assert weighted[r].tolist() == weighted_water_fill(float(total[r]), demand[r], weights[r]).tolist()


def test_dense_equals_the_cell_loop() -> None:
    """resource._dense (arrays) against the loop over cells it replaced: Cells and plain dicts, -0.0, late cells."""
    from equinox.metrics.collector import Cells

    compact = Cells("d")
    for i, (g, kv) in enumerate([(0.5, 1.0), (-0.0, 2.0), (1e-300, 0.0), (3.25, -0.0)]):
        compact.add(2 * i, g, kv)
    cells = {"a": compact, "b": {0: [1, 2], 5: [-0.0, 7.5], 9: [4.0, 4.0]}}
    tenants = ["b", "absent", "a"]
    for n in (3, 7, 12):
        for column in (0, 1):
            want = np.zeros((len(tenants), n))
            for row, tenant in enumerate(tenants):
                for i, cell in cells.get(tenant, {}).items():
                    if i < n:
                        want[row, i] += cell[column]
            got = resource._dense(cells, tenants, n, column)
            assert got.tobytes() == want.tobytes()  # -0.0 and 0.0 told apart


def test_service_matrix_service_equals_the_cell_loop() -> None:
    from equinox.metrics.collector import Cells, TimeSeries
    from equinox.metrics.records import RecordColumns

    series = TimeSeries(interval_s=0.5)
    series.columns["busy_s"].extend([0.0] * 8)
    compact = Cells("i")
    for i, (p, o) in enumerate([(3, 1), (0, 7), (12345, 0), (1, 1)]):
        compact.add(2 * i, p, o)
    series.service = {"a": compact, "b": {0: [1, 2], 5: [4, 0]}}
    m = fairness.service_matrix(RecordColumns(), series, {"a": 3.0}, prompt_weight=0.7, output_weight=2.1)
    want = np.zeros(m.service.shape)
    for tenant, per in series.service.items():
        for i, (p, o) in per.items():
            want[m.tenants.index(tenant), i] += 0.7 * p + 2.1 * o
    want[m.tenants.index("a")] /= 3.0
    assert m.service.tobytes() == want.tobytes()
