"""Small simulated run directories shared by the report tests (one short run per policy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from equinox.config import RunConfig
from equinox.report import ReportResult, write_report
from equinox.rundir import write_run_dir
from equinox.sim.run import run_simulation


@pytest.fixture(scope="session")
def small_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/<policy>/ for fcfs, vtc and equinox on 40 s of VTC's overload suite (a few seconds to make)."""
    pytest.importorskip("matplotlib")
    root = tmp_path_factory.mktemp("runs")
    for policy in ("fcfs", "vtc", "equinox"):
        result = run_simulation(RunConfig(workload="overload", policy=policy, duration_s=40.0))
        write_run_dir(result, root / policy)
    return root


@pytest.fixture(scope="session")
def small_report(small_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    """The report of `small_runs`, written once."""
    return write_report([small_runs], tmp_path_factory.mktemp("report") / "report")
