"""Presets ship with the package and reproduce their source statistics."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from equinox.workload import load_workload
from equinox.workload.presets import PRESET_NAMES, catalogue, preset_stats

SINGLE = [n for n in PRESET_NAMES if n != "servegen-multitenant"]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_file_names_source_and_licence(name: str) -> None:
    st = preset_stats(name)
    assert st["name"] == name
    for key in ("repo", "commit", "path", "licence"):
        assert st["source"][key]
    assert st["derived_by"] == "tools/derive_presets.py"
    text = resources.files("equinox.workload").joinpath("data", f"{name}.json").read_text()
    assert len(text) < 200_000  # statistics, never a copy of the data
    json.loads(text)


@pytest.mark.parametrize("name", SINGLE)
def test_single_source_preset_reproduces_lengths_rate_and_burstiness(name: str) -> None:
    st = preset_stats(name)
    lens, arr = st["lengths"], st["arrivals"]
    w = load_workload(name, seed=11, duration_s=30_000 / arr["rate_req_per_s"], num_tenants=1)
    p = np.array([r.num_prompt_tokens for r in w.requests])
    o = np.array([r.num_output_tokens for r in w.requests])
    for got, ref in ((p, lens["prompt_summary"]), (o, lens["output_summary"])):
        assert np.median(got) == pytest.approx(ref["p50"], rel=0.05, abs=1)
        assert np.quantile(got, 0.9) == pytest.approx(ref["p90"], rel=0.05, abs=1)
    assert len(w.requests) / w.duration_s == pytest.approx(arr["rate_req_per_s"], rel=0.1)
    gaps = np.diff([r.arrival_time for r in w.requests])
    assert gaps.std() / gaps.mean() == pytest.approx(arr["cv"], rel=0.2)
    assert all(r.max_tokens == r.num_output_tokens for r in w.requests)


@pytest.mark.parametrize("name", SINGLE)
def test_preset_default_tenants_are_zipf_and_labelled_synthetic(name: str) -> None:
    w = load_workload(name, seed=1, duration_s=300)
    assert w.is_synthetic_tenants and "zipf" in (w.tenant_assignment or "")
    counts = [sum(r.tenant == t for r in w.requests) for t in ("tenant-1", "tenant-2", "tenant-3", "tenant-4")]
    assert counts[0] > counts[3]
    assert "SYNTHETIC" in w.tenant_label


def test_servegen_multitenant_follows_client_statistics() -> None:
    st = preset_stats("servegen-multitenant")
    w = load_workload("servegen-multitenant", seed=2, duration_s=20_000, num_tenants=4)
    assert not w.is_synthetic_tenants and "chunk-" in (w.tenant_assignment or "")
    clients = st["clients"][:4]
    total = sum(c["mean_rate_req_per_s"] for c in clients)
    for i, c in enumerate(clients):
        reqs = [r for r in w.requests if r.tenant == f"tenant-{i + 1}"]
        expected = 4.0 * 20_000 * c["mean_rate_req_per_s"] / total
        # Counts of a renewal process with inter-arrival CV c vary by about c * sqrt(n).
        tol = max(0.05, 3 * float(np.median(c["hourly_cv"])) / np.sqrt(expected))
        assert len(reqs) == pytest.approx(expected, rel=tol)
        p = np.array([r.num_prompt_tokens for r in reqs])
        assert np.median(p) == pytest.approx(c["prompt_quantiles"][st["probs"].index(0.5)], rel=0.05, abs=1)
    assert len(w.requests) / 20_000 == pytest.approx(4.0, rel=0.15)


def test_servegen_multitenant_hour_shape_is_visible() -> None:
    st = preset_stats("servegen-multitenant")
    shape = np.array(st["clients"][0]["hourly_rate"])
    w = load_workload("servegen-multitenant", seed=3, duration_s=24_000, num_tenants=1)
    t = np.array([r.arrival_time for r in w.requests])
    counts = np.bincount((t // 1000).astype(int), minlength=24)[:24]
    assert np.corrcoef(counts, shape)[0, 1] > 0.8


def test_presets_are_deterministic_and_scale() -> None:
    a = load_workload("azure-conv", seed=4, duration_s=100)
    assert a == load_workload("azure-conv", seed=4, duration_s=100)
    b = load_workload("azure-conv", seed=4, duration_s=1000, rate_scale=3.0)
    assert len(b.requests) / 1000 == pytest.approx(3 * 5.53, rel=0.1)


def test_preset_tenant_override_and_catalogue() -> None:
    w = load_workload("sharegpt?tenants=round-robin:3", duration_s=60)
    assert sorted(w.tenants) == ["tenant-1", "tenant-2", "tenant-3"] and "round-robin" in w.tenant_assignment
    names = [n for n, _ in catalogue()]
    assert {"overload", "sharegpt", "servegen-multitenant"} <= set(names)
    assert load_workload("servegen_multitenant", duration_s=60).name == "servegen-multitenant"
