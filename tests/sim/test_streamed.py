"""`equinox simulate`'s streamed path writes the run directory the in-memory path writes (issue 13)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from equinox.config import RunConfig
from equinox.errors import ConfigError
from equinox.rundir import write_run_dir
from equinox.sim.run import run_simulation
from equinox.sim.streamed import run_streamed
from equinox.workload import load_workload
from equinox.workload.io import write_workload

SAME_FILES = ("config.json", "summary.json", "steps.csv", "service.csv", "counters.csv", "fairness_windows.csv")


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return sorted(csv.reader(f))


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A canonical CSV trace of the overload suite (20 s), which the streamed path reads as it goes."""
    path = tmp_path_factory.mktemp("trace") / "overload.csv"
    write_workload(load_workload("overload", duration_s=40.0), path)
    return path


@pytest.mark.parametrize("policy", ["fcfs", "vtc", "equinox"])
@pytest.mark.parametrize("streamed_input", [True, False])
def test_streamed_run_dir_equals_in_memory(tmp_path: Path, trace: Path, policy: str, streamed_input: bool) -> None:
    workload = str(trace) if streamed_input else "overload"
    config = RunConfig(policy=policy, workload=workload, duration_s=40.0, cost_model="vtc-a10g", window_s=10.0,
                       warmup_s=5.0)
    cache = tmp_path / "cache"
    expected = write_run_dir(run_simulation(config), tmp_path / "memory", reference_cache=cache)
    got = run_streamed(config, tmp_path / "streamed", reference_cache=cache)
    assert got.is_streamed == streamed_input
    assert got.summary.holistic is not None and got.summary.holistic.has_reference
    for name in SAME_FILES:
        assert (got.out / name).read_bytes() == (expected / name).read_bytes(), name
    assert _rows(got.out / "requests.csv") == _rows(expected / "requests.csv")  # same rows, engine order


def test_reference_runs_streamed_equal_in_memory_and_can_be_skipped(tmp_path: Path, trace: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from equinox.metrics import baseline

    monkeypatch.setattr(baseline, "_memory", {})  # no reference run made by an earlier test in this process
    config = RunConfig(policy="vtc", workload=str(trace), duration_s=40.0, cost_model="vtc-a10g", window_s=10.0,
                       warmup_s=5.0)
    expected = write_run_dir(run_simulation(config), tmp_path / "memory", reference_cache=tmp_path / "a")
    got = run_streamed(config, tmp_path / "streamed", reference_cache=tmp_path / "b")  # its own, cold cache
    assert (got.out / "summary.json").read_text() == (expected / "summary.json").read_text()
    assert got.reference_s is not None and list((tmp_path / "b").glob("*.npz"))
    bare = run_streamed(config, tmp_path / "bare", reference=False)
    assert bare.reference_s is None
    assert bare.summary.holistic is not None and not bare.summary.holistic.has_reference
    assert bare.summary.latency == got.summary.latency and bare.summary.fairness == got.summary.fairness


def test_parquet_records_hold_the_csv_rows(tmp_path: Path, trace: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    config = RunConfig(policy="fcfs", workload=str(trace), duration_s=40.0, cost_model="vtc-a10g")
    as_csv = run_streamed(config, tmp_path / "csv", reference=False)
    as_parquet = run_streamed(config, tmp_path / "parquet", reference=False, records_format="parquet")
    table = pq.read_table(as_parquet.out / "requests.parquet").to_pylist()
    with open(as_csv.out / "requests.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["request_id"] for r in table] == [r["request_id"] for r in rows]
    assert [round(r["ttft_s"], 9) if r["ttft_s"] is not None else "" for r in table] == [
        float(r["ttft_s"]) if r["ttft_s"] else "" for r in rows]
    assert not (as_parquet.out / "requests.csv").exists()
    from equinox.report.load import load_run

    run = load_run(as_parquet.out)  # the report reads the Parquet rows as it reads requests.csv
    assert not run.missing and not run.problems
    assert run.requests["request_id"] == [r["request_id"] for r in rows]
    assert run.requests["status"] == [r["status"] for r in rows]


def test_a_run_that_serves_nothing_is_an_error_and_leaves_no_rows(tmp_path: Path, trace: Path) -> None:
    config = RunConfig(policy="fcfs", workload=str(trace), duration_s=40.0, cost_model="vtc-a10g", num_kv_blocks=1)
    with pytest.raises(ConfigError, match="cannot serve this workload"):
        run_streamed(config, tmp_path / "run", reference=False)
    assert not list((tmp_path / "run").glob("*.csv"))


def test_streamed_rows_of_rejected_and_unfinished_requests(tmp_path: Path) -> None:
    """A run stopped early (requests still waiting and running) with a KV pool too small for some prompts."""
    from equinox.request import RequestSpec
    from equinox.workload.schema import Workload

    specs = tuple(RequestSpec(f"r{i}", ("a", "b")[i % 2], 0.1 * i, 5000 if i % 10 == 3 else 100 + i, 200)
                  for i in range(300))
    path = tmp_path / "mixed.csv"
    write_workload(Workload("mixed", specs, source="test"), path)
    config = RunConfig(policy="vtc", workload=str(path), cost_model="vtc-a10g", until_s=20.0, num_kv_blocks=200)
    expected = write_run_dir(run_simulation(config), tmp_path / "memory", reference_cache=tmp_path / "cache")
    got = run_streamed(config, tmp_path / "streamed", reference=False)
    rows = _rows(got.out / "requests.csv")
    statuses = {row[15] for row in rows}
    assert {"finished", "rejected", "unfinished"} <= statuses, statuses
    assert rows == _rows(expected / "requests.csv")
