"""Service difference, Jain's index and latency/throughput on hand-made inputs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from equinox.metrics.collector import Collector, RequestRecord, TimeSeries
from equinox.metrics.fairness import ServiceMatrix, fairness, jain_index, max_min_fair, service_matrix
from equinox.metrics.latency import Stats, Throughput
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage

N = 200  # one-second intervals


def matrix(service: list[float], demand: list[float], waiting: list[float]) -> ServiceMatrix:
    """Constant per-second service, demand and waiting seconds for each tenant."""
    ones = np.ones(N)
    return ServiceMatrix(
        tuple(f"t{i}" for i in range(len(service))), 1.0,
        np.array([s * ones for s in service]), np.array([d * ones for d in demand]),
        np.array([w * ones for w in waiting]),
    )


def test_service_difference_zero_when_everyone_gets_what_they_ask() -> None:
    f = fairness(matrix([10, 20], [10, 40], [0, 1]), end_time=150)
    assert f.num_windows == 150 - 60 - 30 + 1
    assert f.window_starts[0] == 30.0 and f.window_starts[-1] == 90.0
    # t0: s_max - s = 10 but |r - s| = 0; t1 has s_max
    assert f.service_diff_max == pytest.approx(0.0)


def test_service_difference_counts_unserved_demand() -> None:
    f = fairness(matrix([10, 20, 5], [30, 20, 100], [1, 0, 1]), end_time=150)
    # t0: min(20 - 10, |30 - 10|) = 10; t1: 0; t2: min(20 - 5, 95) = 15
    assert f.service_diff_max == pytest.approx(25.0)
    assert f.service_diff_mean == pytest.approx(25.0)
    assert f.service_diff_var == pytest.approx(0.0, abs=1e-9)
    assert all(d == pytest.approx(25.0) for d in f.service_diff)


def test_windows_need_enough_run_time() -> None:
    f = fairness(matrix([1, 1], [1, 1], [1, 1]), end_time=80)  # warm-up 30 + window 60 > 80
    assert f.num_windows == 0 and math.isnan(f.service_diff_max) and math.isnan(f.jain_mean)


def test_jain_among_backlogged_tenants() -> None:
    f = fairness(matrix([10, 20], [100, 100], [1, 1]), end_time=150)
    assert f.jain_mean == pytest.approx(900 / 1000)  # (10 + 20)^2 / (2 * (100 + 400))
    assert f.jain_min == pytest.approx(0.9)


def test_jain_does_not_penalise_a_tenant_that_asked_for_less() -> None:
    f = fairness(matrix([10, 20], [10, 100], [0, 1]), end_time=150)
    assert f.jain_mean == pytest.approx(1.0)


def test_jain_weighted_via_service_matrix_scaling() -> None:
    # Weighted service (service / weight) equal across tenants is perfectly fair.
    f = fairness(matrix([10, 10], [100, 100], [1, 1]), end_time=150)
    assert f.jain_mean == pytest.approx(1.0)


def test_max_min_fair_water_fills() -> None:
    fair = max_min_fair(np.array([2.0, 10.0, 30.0]), np.array([False, True, True]))
    assert fair.tolist() == pytest.approx([2.0, 20.0, 20.0])
    assert max_min_fair(np.array([5.0, 5.0]), np.array([True, True])).tolist() == [5.0, 5.0]


def test_jain_index_function() -> None:
    assert jain_index([3, 3, 3]) == pytest.approx(1.0)
    assert jain_index([1, 0]) == pytest.approx(0.5)
    assert jain_index([1, 0, 0, 0]) == pytest.approx(0.25)
    assert math.isnan(jain_index([])) and math.isnan(jain_index([0, 0]))


def record(rid: str, tenant: str, arrival: float, prompt: int, output: int, scheduled: float | None,
           first: float | None, finish: float | None, reject: str | None = None) -> RequestRecord:
    return RequestRecord(rid, tenant, arrival, prompt, output if finish else 0, output, scheduled, first, finish,
                         0, 0.0, reject)


def test_service_matrix_weights_and_waiting() -> None:
    series = TimeSeries(1.0)
    series._grow(9)
    series.service = {"a": {0: [100, 10]}, "b": {2: [50, 0], 3: [0, 20]}}
    records = [
        record("a0", "a", 0.0, 100, 10, 0.0, 0.5, 1.5),
        record("b0", "b", 0.5, 50, 20, 2.5, 2.8, 3.9),
        record("b1", "b", 1.0, 7, 7, None, None, None, reject="rate limit"),
    ]
    m = service_matrix(records, series, {"b": 2.0})
    assert m.tenants == ("a", "b")
    assert m.service[0, 0] == 100 + 2 * 10
    assert m.service[1, 2] == 50 / 2 and m.service[1, 3] == 2 * 20 / 2
    assert m.demand[0, 0] == 120 and m.demand[1, 0] == (50 + 40) / 2 and m.demand[1, 1] == (7 + 14) / 2
    # b0 waited from 0.5 to 2.5; the rejected b1 never waited
    assert m.waiting[1, :4].tolist() == pytest.approx([0.5, 1.0, 0.5, 0.0])
    assert m.waiting[0].sum() == 0.0


def test_stats_nearest_rank() -> None:
    s = Stats.of(float(x) for x in range(1, 101))
    assert (s.count, s.mean, s.p50, s.p90, s.p99, s.max) == (100, 50.5, 50.0, 90.0, 99.0, 100.0)
    assert Stats.of([]).count == 0 and math.isnan(Stats.of([]).mean)


def test_throughput_counts_finished_rejected_unfinished() -> None:
    records = [
        record("a", "t", 0.0, 100, 50, 0.0, 1.0, 10.0),
        record("b", "t", 1.0, 10, 10, 1.0, 2.0, 5.0),
        record("c", "t", 2.0, 10, 10, None, None, None, reject="too big"),
        record("d", "t", 3.0, 10, 10, 4.0, None, None),
    ]
    t = Throughput.of(records)
    assert (t.num_finished, t.num_rejected, t.num_unfinished) == (2, 1, 1)
    assert t.span_s == 10.0 and t.tokens_per_s == pytest.approx((110 + 60) / 10)
    assert t.output_tokens_per_s == pytest.approx(6.0) and t.requests_per_s == pytest.approx(0.2)


def test_collector_splits_busy_time_across_intervals() -> None:
    c = Collector(1.0, lambda report: 1e12)
    usage = {"a": TenantUsage(num_prefill_tokens=8, num_output_tokens=1)}
    c.on_step(StepReport(1, 0.75, 0.5, BatchShape(8, 1, 36, 0, 0), BatchLimits(64, 4), usage, 3, 10), 2, 1, 0)
    s = c.series
    assert s.columns["busy_s"][:2] == pytest.approx([0.25, 0.25])
    assert s.columns["kv_block_s"][:2] == pytest.approx([0.75, 0.75])
    assert s.columns["num_steps"][1] == 1 and s.columns["flops"][1] == 1e12
    assert {t: dict(cells) for t, cells in s.service.items()} == {"a": {1: (8, 1)}}


def queued_matrix(service: list[float], queued: list[float]) -> ServiceMatrix:
    """Constant service per second and constant service still queued at every interval's end."""
    ones = np.ones(N)
    n = len(service)
    return ServiceMatrix(
        tuple(f"t{i}" for i in range(n)), 1.0, np.array([s * ones for s in service]),
        np.array([s * ones for s in service]), np.zeros((n, N)), np.array([q * ones for q in queued]),
    )


def test_jain_uses_demand_still_queued_at_window_end() -> None:
    # t0 gets all it asks (nothing left queued); t1 has a large queue and takes the rest: fair.
    fair = fairness(queued_matrix([30, 70], [0, 1e6]), end_time=150)
    assert fair.jain_mean == pytest.approx(1.0)
    # Both keep large queues but t0 only gets 30 of 100: unfair.
    unfair = fairness(queued_matrix([30, 70], [1e6, 1e6]), end_time=150)
    assert unfair.jain_mean == pytest.approx((0.6 + 1.4) ** 2 / (2 * (0.6**2 + 1.4**2)))
    assert unfair.jain_mean < 0.9


def test_service_matrix_records_queued_service_at_interval_ends() -> None:
    def rec(rid: str, tenant: str, arrival: float, admitted: float) -> RequestRecord:
        return RequestRecord(rid, tenant, arrival, 10, 5, 5, admitted, admitted + 0.1, admitted + 1, 0, 0.0, None)

    m = service_matrix([rec("a", "t0", 0.2, 2.5), rec("b", "t0", 1.5, 1.7)], TimeSeries(1.0), {}, 1.0, 2.0)
    assert m.queued is not None
    # "a" (10 + 2 * 5 = 20) waits at the ends of intervals 0 and 1; "b" is admitted within its interval.
    assert m.queued[0, :4].tolist() == [20.0, 20.0, 0.0, 0.0]


def test_fairness_of_a_run_that_ended_before_the_arrival_span() -> None:
    """A served-alone reference run can record fewer intervals than the arrival span: no index error."""
    import numpy as np

    from equinox.metrics.fairness import ServiceMatrix, fairness

    n = 149  # intervals recorded; the arrival span asks for 151
    m = ServiceMatrix(("a", "b"), 1.0, np.ones((2, n)), np.ones((2, n)), np.zeros((2, n)), np.zeros((2, n)))
    out = fairness(m, end_time=151.0)
    assert out.num_windows == n - 60 - 30 + 1
    assert out.jain_mean == 1.0


def test_blocked_summary_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests and windows taken in blocks (to bound memory) give the same summary to the bit."""
    import json

    import equinox.metrics.fairness as fairness_module
    from equinox.config import RunConfig
    from equinox.metrics.summary import summarise
    from equinox.sim.run import run_simulation

    run = run_simulation(RunConfig(policy="vtc", workload="overload", duration_s=150.0, seed=5))
    args = dict(weights={}, peak_flops=run.deployment.peak_flops, arrival_end_time=150.0,
                num_preemptions=run.summary.num_preemptions)
    whole, whole_matrix = summarise(run.records, run.series, **args)
    assert whole.fairness.num_windows > 20 and len(run.records) > 50
    monkeypatch.setattr(fairness_module, "REQUEST_BLOCK", 7)
    monkeypatch.setattr(fairness_module, "WINDOW_BLOCK", 5)
    import equinox.metrics.resource as resource_module
    monkeypatch.setattr(resource_module, "WINDOW_BLOCK", 5)
    blocked, blocked_matrix = summarise(run.records, run.series, **args)
    assert json.dumps(blocked.as_dict()) == json.dumps(whole.as_dict())
    assert blocked.fairness.service_diff == whole.fairness.service_diff
    for name in ("service", "demand", "waiting", "queued"):
        assert np.array_equal(getattr(blocked_matrix, name), getattr(whole_matrix, name)), name


def test_summary_without_the_matrix_is_the_same() -> None:
    """`keep_matrix=False` (the streamed CLI path: no waiting matrix, arrays let go early) changes
    no figure of the summary; the matrix it would have returned has its waiting matrix."""
    import json

    from equinox.config import RunConfig
    from equinox.metrics.summary import summarise
    from equinox.sim.run import run_simulation

    run = run_simulation(RunConfig(policy="equinox", workload="overload", duration_s=120.0, seed=3))
    args = dict(weights={"tenant-0": 2.0}, peak_flops=run.deployment.peak_flops, arrival_end_time=120.0,
                num_preemptions=run.summary.num_preemptions)
    kept, matrix = summarise(run.records, run.series, **args)
    lean, none = summarise(run.records, run.series, keep_matrix=False, **args)
    assert none is None and matrix.waiting is not None and matrix.waiting.sum() > 0.0
    assert kept.fairness.num_windows > 20 and kept.fairness.jain_min < 1.0
    assert json.dumps(lean.as_dict()) == json.dumps(kept.as_dict())
    assert lean.fairness.service_diff == kept.fairness.service_diff
    bare = service_matrix(run.records, run.series, {"tenant-0": 2.0}, with_waiting=False)
    assert bare.waiting is None and np.array_equal(bare.queued, matrix.queued)
    with pytest.raises(ValueError, match="queued or its waiting"):
        fairness(dataclasses.replace(bare, queued=None), 120.0)
