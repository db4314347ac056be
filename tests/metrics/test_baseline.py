"""Reference runs for the fairness metrics: served-alone runs and the saturation capacity, cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from equinox.config import RunConfig
from equinox.metrics import baseline
from equinox.metrics.baseline import delivery_rate, with_reference
from equinox.metrics.collector import TimeSeries
from equinox.sim.run import run_simulation


def test_delivery_rate_interpolates_inside_an_interval() -> None:
    s = TimeSeries(1.0)
    s._grow(9)
    s.service = {"a": {i: [10, 0] for i in range(10)}}  # 10 tokens/s for 10 s, total 100
    assert delivery_rate(s, 1.0, 2.0, 0.8) == pytest.approx(10.0)
    s.service["a"][9] = [0, 0]  # the drain tail does not count: 80 of 90 delivered by t = 8 s
    assert delivery_rate(s, 1.0, 2.0, 0.8) == pytest.approx(72 / 7.2)


def test_reference_runs_are_cached_on_disk_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baseline, "_memory", {})  # runs that earlier tests made stay out of this cache
    config = RunConfig(workload="overload", policy="vtc", duration_s=40.0)
    result = run_simulation(config)
    enriched = with_reference(result, tmp_path)
    h = enriched.summary.holistic
    assert h is not None and h.has_reference and h.capacity > 0
    assert {t.tenant for t in h.tenants} == {"tenant-1", "tenant-2"}
    assert all(t.latency_inflation > 0 for t in h.tenants)
    assert 0.0 < h.holistic_index <= 1.0 and 0.0 < h.user_index <= 1.0
    assert with_reference(enriched, tmp_path) is enriched  # idempotent
    entries = sorted(p.name for p in tmp_path.glob("*.json"))
    assert len(entries) == 3  # two tenants alone + the saturation probe

    # A fresh process (empty memory cache) reads the disk and simulates nothing.
    monkeypatch.setattr(baseline, "_memory", {})

    def no_simulation(*args: object, **kwargs: object) -> None:
        raise AssertionError("reference run recomputed despite the disk cache")

    monkeypatch.setattr("equinox.sim.run.run_simulation", no_simulation)
    again = with_reference(result, tmp_path)
    assert again.summary.holistic == h


def test_reference_does_not_depend_on_the_policy_under_test() -> None:
    vtc = RunConfig(workload="overload", policy="vtc", duration_s=40.0)
    rpm = vtc.replace(policy="rpm", rpm_limit=30.0, policy_params={"x": 1})
    workload = run_simulation(vtc).workload
    assert baseline.cache_key("alone", vtc, workload) == baseline.cache_key("alone", rpm, workload)
    other_engine = vtc.replace(max_num_batched_tokens=512)
    assert baseline.cache_key("alone", vtc, workload) != baseline.cache_key("alone", other_engine, workload)
