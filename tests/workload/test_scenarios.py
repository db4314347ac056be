"""Scenario workloads (issue 11 item 2): each mix has a tenant within its share, and sends what it says."""

from __future__ import annotations

import numpy as np
import pytest

from equinox.errors import ConfigError, UnknownNameError
from equinox.workload import load_workload
from equinox.workload.scenarios import (
    BASE_TOKENS_PER_S,
    OUTPUT_WEIGHT,
    PROMPT_WEIGHT,
    SCENARIOS,
    generate_scenario,
    tenant_rates,
)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_has_a_tenant_clearly_within_its_share(name: str) -> None:
    sc = SCENARIOS[name]
    assert len(sc.tenants) >= 2 and sc.within_share
    assert sum(t.demand_share for t in sc.tenants) == pytest.approx(1.0)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_sends_its_demand_shares_in_weighted_tokens(name: str) -> None:
    w = load_workload(name, seed=3, duration_s=3000.0)
    demand: dict[str, float] = {}
    for r in w.requests:
        demand[r.tenant] = demand.get(r.tenant, 0.0) + PROMPT_WEIGHT * r.num_prompt_tokens + OUTPUT_WEIGHT * \
            r.num_output_tokens
    total = sum(demand.values())
    assert total / w.duration_s == pytest.approx(BASE_TOKENS_PER_S, rel=0.15)
    for t in SCENARIOS[name].tenants:
        assert demand[t.name] / total == pytest.approx(t.demand_share, rel=0.2, abs=0.02)


def test_bursty_tenant_is_burstier_than_the_steady_ones() -> None:
    w = generate_scenario("holistic-bursty", seed=1, duration_s=2000.0)

    def cv(tenant: str) -> float:
        gaps = np.diff([r.arrival_time for r in w.requests if r.tenant == tenant])
        return float(gaps.std() / gaps.mean())

    assert cv("bursty") > 2.0 > 1.3 > cv("steady-heavy")


def test_weighted_scenario_carries_weights_and_rate_scale_scales() -> None:
    w = generate_scenario("holistic-weighted", duration_s=100.0)
    assert w.tenant_weights == {"w1": 1.0, "w2": 2.0, "w4": 4.0}
    one, two = tenant_rates("holistic-weighted"), tenant_rates("holistic-weighted", 2.0)
    assert all(two[t] == pytest.approx(2 * one[t]) for t in one)


def test_scenarios_are_deterministic_and_errors_are_clear() -> None:
    a = generate_scenario("holistic-lmsys", seed=5, duration_s=60.0)
    assert a.requests == generate_scenario("holistic-lmsys", seed=5, duration_s=60.0).requests
    assert a.requests != generate_scenario("holistic-lmsys", seed=6, duration_s=60.0).requests
    with pytest.raises(UnknownNameError):
        generate_scenario("holistic-nope")
    with pytest.raises(ConfigError, match="has 3 tenants"):
        load_workload("holistic-lmsys", num_tenants=4)
    with pytest.raises(ConfigError, match="no options"):
        load_workload("holistic-lmsys?tenants=zipf:2")
