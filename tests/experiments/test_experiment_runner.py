"""Running an experiment: probes, parallel runs, one report and a results.md that names its command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from equinox.cli.main import build_parser, main
from equinox.config import RunConfig
from equinox.experiments import ExperimentSet, RunSpec, run_experiment


def _tiny(quick: bool) -> list[RunSpec]:
    base = RunConfig(workload="overload", duration_s=30.0)
    return [
        RunSpec(f"overload/{p}", base.replace(policy=p, rpm_limit=1.0 if p == "rpm" else None), "overload on a10g",
                (("workload", "overload"), ("policy", p)), p, rho=1.2, rpm_share=1.0 if p == "rpm" else None,
                is_detailed=p == "equinox")
        for p in ("equinox", "vtc", "rpm")
    ]


TINY = ExperimentSet("tiny", "a tiny test set", _tiny, comparisons=(("equinox", "vtc"),))


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_experiment_writes_runs_report_and_results(tmp_path: Path, jobs: int) -> None:
    pytest.importorskip("matplotlib")
    seen: list[tuple[str, int, int]] = []
    out = run_experiment(TINY, tmp_path / "exp", quick=True, jobs=jobs, command="equinox experiment tiny --quick",
                         progress=lambda phase, done, total: seen.append((phase, done, total)))
    assert len(out.run_dirs) == 3 and out.num_probes == 1
    for d in out.run_dirs:
        meta = json.loads((d / "experiment.json").read_text())
        assert meta["rho"] == 1.2 and meta["section"] == "overload on a10g"
    config = json.loads((tmp_path / "exp" / "runs" / "overload" / "rpm" / "config.json").read_text())["config"]
    assert config["rpm_limit"] > 1.0 and config["rate_scale"] != 1.0  # filled in from the probe
    results = out.results_md.read_text()
    assert "Produced by `equinox experiment tiny --quick`" in results
    assert "## overload on a10g" in results and "## equinox relative to vtc" in results
    assert out.report_html.is_file()
    assert {p for p, _, _ in seen} == {"probes", "runs", "report"}
    assert ("runs", 3, 3) in seen
    page = out.report_html.read_text()
    assert "Run: overload/equinox" in page and "Run: overload/vtc" not in page  # per-run figures only where asked


def test_experiment_cli_lists_the_sets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["experiment", "--help"])
    text = capsys.readouterr().out
    for name in ("paper", "vtc-suites", "load-sweep", "alpha-beta", "--quick"):
        assert name in text


def test_experiment_cli_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "nope"]) == 2  # a one-line usage error, exit status 2, no traceback
    err = capsys.readouterr().err
    assert "invalid choice" in err and err.startswith("equinox: error:") and err.count("\n") == 1


@pytest.mark.slow
def test_quick_paper_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert main(["experiment", "paper", "--quick", "-o", str(tmp_path / "paper"), "--no-progress"]) == 0
    results = (tmp_path / "paper" / "results.md").read_text()
    assert "`equinox experiment paper --quick`" in results
    for platform in ("llama-2-7b@a10g", "llama-2-13b@a100-80gb", "llama-3-8b@h100-80gb", "llama-2-70b@h100-80gbx4"):
        assert platform in results
    assert len(list((tmp_path / "paper" / "runs").glob("*/*/*/summary.json"))) == 48


def _with_a_broken_run(quick: bool) -> list[RunSpec]:
    good = RunSpec("good/vtc", RunConfig(workload="overload", policy="vtc", duration_s=20.0), "s",
                   (("policy", "vtc"),), "vtc")
    bad = RunSpec("bad/vtc", RunConfig(workload="/nonexistent/trace.jsonl", policy="vtc"), "s",
                  (("policy", "vtc"),), "vtc-bad")
    return [good, bad]


def test_a_failed_run_is_named_and_the_rest_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    exp = ExperimentSet("broken", "one run cannot load its workload", _with_a_broken_run)
    out = run_experiment(exp, tmp_path / "exp", jobs=1)
    assert len(out.run_dirs) == 1 and len(out.failures) == 1
    assert out.failures[0].startswith("bad/vtc: ") and "nonexistent" in out.failures[0]
    assert "bad/vtc" in out.results_md.read_text() and "run failed: bad/vtc" in out.report_html.read_text()
