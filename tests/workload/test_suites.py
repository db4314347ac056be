"""VTC suites reproduce their specified per-tenant rates and lengths (within sampling tolerance)."""

from __future__ import annotations

import numpy as np
import pytest

from equinox.errors import ConfigError
from equinox.workload import DEFAULT_WORKLOAD, load_workload
from equinox.workload.suites import SUITES

# name -> (duration, {tenant: (mean rate over the run, prompt, output)}, weights)
EXPECTED = {
    "overload": (360, {"tenant-1": (1.5, 256, 256), "tenant-2": (3.0, 256, 256)}, {}),
    "proportional": (600, {"tenant-1": (0.25, 256, 256), "tenant-2": (0.5, 256, 256), "tenant-3": (1.5, 256, 256)},
                     {}),
    # ON/OFF: 5 ON windows of 60 s out of 10 -> half the nominal rate.
    "on_off_less": (600, {"tenant-1": (0.25, 256, 256), "tenant-2": (2.0, 256, 256)}, {}),
    "on_off_overload": (600, {"tenant-1": (1.0, 256, 256), "tenant-2": (3.0, 256, 256)}, {}),
    "poisson_short_long": (600, {"tenant-1": (8.0, 64, 64), "tenant-2": (1.5, 256, 256)}, {}),
    "poisson_short_long_2": (600, {"tenant-1": (8.0, 512, 32), "tenant-2": (1.5, 32, 512)}, {}),
    # Ramp 0.2 -> 2: mean 1.1.
    "increase": (600, {"tenant-1": (0.5, 256, 256), "tenant-2": (1.1, 256, 256)}, {}),
    # tenant 1: 0.5 ON/OFF in [0,300) has 3 of 5 windows ON (90 req), then 300 and 150 -> 540/900.
    "dist_shift": (900, {"tenant-1": (0.6, 256, 256), "tenant-2": ((600 + 300 + 450) / 900, 256, 256)}, {}),
    "overload_weighted": (360, {f"tenant-{i}": (0.4 * i, 256, 256) for i in range(1, 5)},
                          {f"tenant-{i}": float(i) for i in range(1, 5)}),
    "overload_multi": (360, {f"tenant-{i}": (0.4 if i <= 3 else 0.6, 256, 256) for i in range(1, 9)}, {}),
}


def test_every_suite_is_specified() -> None:
    assert set(SUITES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_suite_rates_lengths_and_weights(name: str) -> None:
    duration, tenants, weights = EXPECTED[name]
    is_poisson = name.startswith("poisson")
    for seed in (0, 1):
        w = load_workload(name, seed=seed)
        assert w.duration_s == duration and w.name == name
        assert set(w.tenants) == set(tenants)
        assert dict(w.tenant_weights) == weights
        for tenant, (rate, n_in, n_out) in tenants.items():
            reqs = [r for r in w.requests if r.tenant == tenant]
            tol = 4 / np.sqrt(rate * duration) if is_poisson else 0.01
            assert len(reqs) / duration == pytest.approx(rate, rel=tol, abs=1.5 / duration)
            assert {(r.num_prompt_tokens, r.num_output_tokens, r.max_tokens) for r in reqs} == {(n_in, n_out, n_out)}
        assert all(0 <= r.arrival_time < duration for r in w.requests)


@pytest.mark.parametrize("name", ["overload", "proportional", "overload_multi"])
def test_uniform_gaps_are_exactly_one_over_rate(name: str) -> None:
    w = load_workload(name, seed=5)
    for tenant, (rate, _, _) in EXPECTED[name][1].items():
        t = np.array([r.arrival_time for r in w.requests if r.tenant == tenant])
        assert np.allclose(np.diff(t), 1 / rate)
        assert 0 <= t[0] < 1 / rate


def test_on_off_silences_tenant_1_in_every_other_minute() -> None:
    w = load_workload("on_off_overload", seed=2)
    t1 = np.array([r.arrival_time for r in w.requests if r.tenant == "tenant-1"])
    t2 = np.array([r.arrival_time for r in w.requests if r.tenant == "tenant-2"])
    assert np.all((t1 // 60) % 2 == 0)
    assert np.any((t2 // 60) % 2 == 1)


def test_poisson_suite_gaps_are_exponential() -> None:
    w = load_workload("poisson_short_long", seed=3, duration_s=3000)
    gaps = np.diff([r.arrival_time for r in w.requests])
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)
    assert len(w.requests) / 3000 == pytest.approx(9.5, rel=0.03)


def test_increase_ramps_linearly() -> None:
    w = load_workload("increase")
    t2 = np.array([r.arrival_time for r in w.requests if r.tenant == "tenant-2"])
    first, last = np.sum(t2 < 60) / 60, np.sum(t2 >= 540) / 60
    assert first == pytest.approx(0.29, abs=0.05) and last == pytest.approx(1.91, abs=0.05)


def test_same_seed_same_workload_and_seed_changes_phase() -> None:
    a, b, c = (load_workload("overload", seed=s) for s in (7, 7, 8))
    assert a == b and a.requests != c.requests


def test_hyphenated_aliases_rate_scale_duration_and_default() -> None:
    assert DEFAULT_WORKLOAD == "overload"
    w = load_workload("on-off-less", rate_scale=2.0, duration_s=120)
    assert w.name == "on_off_less" and w.duration_s == 120
    assert sum(r.tenant == "tenant-2" for r in w.requests) == 480
    d = load_workload("dist-shift", duration_s=90)
    assert len({r.tenant for r in d.requests}) == 2


def test_request_ids_unique_and_sorted() -> None:
    for name in SUITES:
        w = load_workload(name)
        ids = [r.request_id for r in w.requests]
        assert len(set(ids)) == len(ids)
        keys = [(r.arrival_time, r.request_id) for r in w.requests]
        assert keys == sorted(keys)


def test_wrong_tenant_count_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="has 2 tenants"):
        load_workload("overload", num_tenants=4)
    assert load_workload("overload", num_tenants=2).tenants
