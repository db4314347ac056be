"""The holistic experiment set (issue 11 items 2-3): its sections, baselines and sweep, and a tiny run of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from equinox.calibration.replay import SLORA_RUNTIME
from equinox.experiments import ExperimentSet, get_experiment, run_experiment
from equinox.experiments.holistic import BASELINES, holistic_specs, sweep
from equinox.experiments.pareto import front, holistic_analysis
from equinox.scheduling.policies.equinox_params import EquinoxParams
from equinox.workload.scenarios import SCENARIOS


def test_full_set_covers_every_scenario_and_three_gpus_with_one_cost_model_family() -> None:
    specs = get_experiment("holistic").specs(quick=False)
    assert {s.config.workload for s in specs} == set(SCENARIOS)
    roofline = {s.config.gpu for s in specs if s.config.cost_model == "roofline"}
    assert roofline == {"a10g", "a100-80gb", "h100-80gb"}
    for section in {s.section for s in specs}:
        variants = {s.variant for s in specs if s.section == section}
        assert set(BASELINES) <= variants and len(variants) > len(BASELINES) + 10


def test_vtc_on_the_artifact_engine_uses_the_fitted_runtime() -> None:
    art = [s for s in holistic_specs(quick=True) if s.variant == "vtc@slora"]
    assert art and all(s.config.engine_mode == "slora" and s.config.policy == "vtc" for s in art)
    fitted = SLORA_RUNTIME["a10g"]["step_overhead_s"]
    assert fitted > 0 and all(s.config.step_overhead_s == fitted for s in art if s.config.gpu == "a10g")
    others = [s for s in holistic_specs(quick=True) if s.variant != "vtc@slora"]
    assert all(s.config.step_overhead_s == 0.0 and s.config.engine_mode == "vllm" for s in others)


def test_sweep_points_are_valid_and_distinct_from_the_defaults() -> None:
    for quick in (True, False):
        points = sweep(quick)
        params = [EquinoxParams.from_mapping(dict(k.params)) for k in points]
        assert EquinoxParams() not in params and len(set(params)) == len(params)
        assert len({k.label for k in points}) == len(points)


def test_front_keeps_exactly_the_non_dominated_points() -> None:
    pts = [("a", {"x": 1.0, "y": 1.0}), ("b", {"x": 2.0, "y": 0.5}), ("c", {"x": 0.5, "y": 0.5}),
           ("d", {"x": float("nan"), "y": 9.0})]
    assert [v for v, _ in front(pts, "x", "y", True, True)] == ["a", "b"]
    assert [v for v, _ in front(pts, "x", "y", False, False)] == ["c"]


def _tiny(quick: bool) -> list:
    specs = [s for s in holistic_specs(quick=True) if s.config.workload == "holistic-prefill-decode"]
    keep = {"vtc", "vtc@slora", "equinox", "eq a=0 b=1 f=1 c=0.5"}
    return [type(s)(s.path, s.config.replace(duration_s=40.0), s.section, s.labels, s.variant, s.rho,
                    s.rpm_share, False) for s in specs if s.variant in keep]


def test_a_tiny_holistic_run_writes_claims_sweep_and_pareto_views(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    exp = ExperimentSet("holistic-tiny", "a tiny holistic set", _tiny, comparisons=(("equinox", "vtc"),),
                        max_scenarios=0, analyse=holistic_analysis)
    out = run_experiment(exp, tmp_path / "h", quick=True, jobs=1, command="equinox experiment holistic --quick")
    assert not out.failures and len(out.run_dirs) == 4
    results = out.results_md.read_text()
    assert "## Claims check: equinox against VTC" in results and "## Equinox sweep across every section" in results
    figures = sorted((tmp_path / "h" / "report" / "analysis").glob("pareto-*.png"))
    assert len(figures) == 1 and figures[0].stat().st_size > 1000
    assert f"]({figures[0].relative_to(tmp_path / 'h').as_posix()})" in results
    report = (tmp_path / "h" / "report" / "report.md").read_text()
    assert "Pareto views" in report and "analysis/pareto-" in report
    summary = json.loads((out.run_dirs[0] / "summary.json").read_text())
    assert summary["holistic"]["num_within_share"] >= 1
