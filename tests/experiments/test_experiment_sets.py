"""The named experiment sets say what issue #6 asks, and capacity-relative placement is arithmetic we can check."""

from __future__ import annotations

import pytest

from equinox.config import RunConfig
from equinox.errors import UnknownNameError
from equinox.experiments import Capacity, experiment_names, get_experiment
from equinox.experiments.runner import resolve
from equinox.experiments.sets import VTC_SUITES
from equinox.scheduling.policy import policy_names
from equinox.workload import catalogue


def test_the_four_sets_exist() -> None:
    assert {"paper", "vtc-suites", "load-sweep", "alpha-beta"} <= set(experiment_names())
    with pytest.raises(UnknownNameError, match="unknown experiment 'nope'"):
        get_experiment("nope")


@pytest.mark.parametrize("quick", [True, False])
@pytest.mark.parametrize("name", ["paper", "vtc-suites", "load-sweep", "alpha-beta"])
def test_specs_are_valid_and_distinct(name: str, quick: bool) -> None:
    specs = get_experiment(name).specs(quick)
    assert specs and len({s.path for s in specs}) == len(specs)
    known = {n for n, _ in catalogue()}
    for s in specs:
        assert s.config.workload in known and s.config.policy in policy_names()
        assert s.config.policy != "rpm" or s.rpm_share is not None  # RPM limits come from measured capacity


def test_paper_covers_policies_workloads_and_platforms() -> None:
    specs = get_experiment("paper").specs(quick=True)
    assert {s.variant for s in specs} >= {"equinox", "vtc", "fcfs", "rpm"}
    assert {s.config.workload for s in specs} == {"sharegpt", "azure-conv", "poisson_short_long"}
    assert {s.config.gpu for s in specs} == {"a10g", "a100-80gb", "h100-80gb"}
    assert {s.config.model for s in specs} & {"llama-2-7b", "llama-2-13b", "llama-3-8b"}
    assert any(s.config.model == "llama-2-70b" and s.config.tensor_parallel > 1 for s in specs)
    assert all(s.rho is not None for s in specs)  # every run is placed relative to capacity


def test_vtc_suites_cover_every_suite_and_baseline() -> None:
    specs = get_experiment("vtc-suites").specs(quick=True)
    assert {s.config.workload for s in specs} == set(VTC_SUITES)
    assert {s.variant for s in specs} == {*policy_names(), "vtc@slora"}
    assert {s.config.engine_mode for s in specs if s.variant == "vtc@slora"} == {"slora"}


def test_load_sweep_reaches_past_saturation_and_alpha_beta_is_a_grid() -> None:
    rhos = {s.rho for s in get_experiment("load-sweep").specs(quick=True)}
    assert min(rhos) < 1.0 < max(rhos)  # type: ignore[type-var, operator]
    grid = {(s.config.policy_params["alpha"], s.config.policy_params["beta"])
            for s in get_experiment("alpha-beta").specs(quick=True) if s.config.policy == "equinox"}
    assert len({a for a, _ in grid}) >= 3 and len({b for _, b in grid}) >= 3 and (0.0, 0.0) not in grid


def test_resolve_places_load_and_rpm_limit_from_capacity() -> None:
    spec = next(s for s in get_experiment("paper").specs(quick=True) if s.variant == "rpm")
    cap = Capacity(capacity_req_s=2.0, base_req_s=4.0, num_tenants=4)
    out = resolve(spec, {spec.probe_key: cap})
    assert out.config.rate_scale == pytest.approx(spec.rho * 2.0 / 4.0)  # type: ignore[operator]
    assert out.config.rpm_limit == pytest.approx(2.0 * 60 / 4)  # an even share of capacity per tenant
    plain = resolve(spec.__class__("x", RunConfig(), "s", (), "vtc"), {})
    assert plain.config == RunConfig()
