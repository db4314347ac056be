"""General generators: rates, burstiness, on/off, ramps, diurnal, heavy hitters, join/leave, lengths."""

from __future__ import annotations

import numpy as np
import pytest

from equinox.errors import ConfigError
from equinox.workload.synthetic import (
    ActiveWindow,
    Discrete,
    GeneratorConfig,
    LengthModel,
    LogNormal,
    OnOff,
    QuantileTable,
    TenantProfile,
    UniformInt,
    diurnal,
    fixed_lengths,
    gamma,
    generate,
    heavy_hitter_rates,
    poisson,
    ramp,
    zipf_rates,
)
from equinox.workload.tenants import parse_tenant_spec


def _times(proc, duration=20_000.0, seed=0):
    return proc.sample(np.random.default_rng(seed), duration)


def _cv(t):
    g = np.diff(t)
    return g.std() / g.mean()


def test_poisson_and_gamma_rate_and_cv() -> None:
    t = _times(poisson(2.0))
    assert len(t) / 20_000 == pytest.approx(2.0, rel=0.03) and _cv(t) == pytest.approx(1.0, abs=0.05)
    t = _times(gamma(2.0, 3.0))
    assert len(t) / 20_000 == pytest.approx(2.0, rel=0.1) and _cv(t) == pytest.approx(3.0, rel=0.1)


def test_on_off_and_active_window() -> None:
    t = _times(OnOff(poisson(4.0), 30, 90))
    assert np.all(np.mod(t, 120) < 30) and len(t) / 20_000 == pytest.approx(1.0, rel=0.05)
    t = _times(ActiveWindow(poisson(1.0), 5000, 8000))
    assert t.min() >= 5000 and t.max() < 8000 and len(t) == pytest.approx(3000, rel=0.08)


def test_ramp_and_diurnal_follow_their_shapes() -> None:
    t = _times(ramp(0.5, 4.5), 10_000)
    first, last = np.sum(t < 1000) / 1000, np.sum(t >= 9000) / 1000
    assert first == pytest.approx(0.7, rel=0.15) and last == pytest.approx(4.3, rel=0.1)
    t = _times(diurnal(2.0, amplitude=0.8, period_s=4000), 8000)
    peak, trough = np.sum((t % 4000) // 1000 == 0), np.sum((t % 4000) // 1000 == 2)
    assert peak > 2.5 * trough
    with pytest.raises(ConfigError):
        diurnal(1.0, amplitude=1.5)


def test_length_distributions() -> None:
    rng = np.random.default_rng(0)
    qt = QuantileTable((0.0, 0.5, 1.0), (10.0, 100.0, 1000.0))
    p, o = LengthModel(qt, UniformInt(5, 9), correlation=0.0).sample(rng, 20_000)
    assert np.median(p) == pytest.approx(100, rel=0.03) and o.min() == 5 and o.max() == 9
    p, o = LengthModel(LogNormal(200, 0.5), Discrete((1.0, 2.0), (0.25, 0.75)), correlation=0.9).sample(rng, 20_000)
    assert np.median(p) == pytest.approx(200, rel=0.03) and np.mean(o == 2) == pytest.approx(0.75, abs=0.02)
    assert np.corrcoef(np.argsort(np.argsort(p)), o)[0, 1] > 0.4
    with pytest.raises(ConfigError):
        QuantileTable((0.0, 0.4), (1.0, 2.0))


def test_generate_heavy_hitter_join_leave_is_seeded() -> None:
    rates = heavy_hitter_rates(4.0, 4, heavy_share=0.7)
    assert rates[0] == pytest.approx(2.8) and sum(rates) == pytest.approx(4.0)
    profiles = [TenantProfile(f"tenant-{i + 1}", poisson(r), fixed_lengths(100, 50)) for i, r in enumerate(rates)]
    profiles.append(TenantProfile("late", ActiveWindow(poisson(1.0), 300, 600), fixed_lengths(10, 10), weight=2.0))
    cfg = GeneratorConfig(duration_s=900, seed=5, name="hh")
    w = generate(profiles, cfg)
    assert w == generate(profiles, cfg)
    assert w.weight("late") == 2.0
    late = [r.arrival_time for r in w.requests if r.tenant == "late"]
    assert min(late) >= 300 and max(late) < 600
    heavy = sum(r.tenant == "tenant-1" for r in w.requests) / sum(r.tenant != "late" for r in w.requests)
    assert heavy == pytest.approx(0.7, abs=0.05)
    keys = [(r.arrival_time, r.request_id) for r in w.requests]
    assert keys == sorted(keys) and len({r.request_id for r in w.requests}) == len(w.requests)


def test_zipf_rates_and_tenant_specs() -> None:
    r = zipf_rates(10.0, 3, s=1.0)
    assert sum(r) == pytest.approx(10.0) and r[0] == pytest.approx(2 * r[1])
    assert parse_tenant_spec("zipf:8:1.5").zipf_s == 1.5
    assert parse_tenant_spec("column:adapter dir").column == "adapter dir"
    for bad in ("zipf", "round-robin:0", "x:3", "zipf:2:abc", "column:"):
        with pytest.raises(ConfigError):
            parse_tenant_spec(bad)
    t = np.sort(np.random.default_rng(0).random(9000)) * 100
    names = parse_tenant_spec("servegen:3").assign(t, seed=0)
    assert set(names) <= {"tenant-1", "tenant-2", "tenant-3"}
    assert parse_tenant_spec("round-robin:3").assign(t[:4], 0) == ["tenant-1", "tenant-2", "tenant-3", "tenant-1"]


def test_generate_rejects_bad_profiles() -> None:
    with pytest.raises(ConfigError):
        generate([], GeneratorConfig(duration_s=10))
    p = TenantProfile("a", poisson(1.0), fixed_lengths(1, 1))
    with pytest.raises(ConfigError):
        generate([p, p], GeneratorConfig(duration_s=10))
    with pytest.raises(ConfigError):
        gamma(1.0, 0.0)
