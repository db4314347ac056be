"""`equinox bench`: tenants files, live records and series, and run directories like the simulator's."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from equinox.bench.keys import TenantKeys, load_tenant_keys
from equinox.bench.live import build_series, parse_fairness_counters, to_record
from equinox.bench.loadgen import BenchRequest, Outcome, synth_prompt
from equinox.cli.main import main
from equinox.errors import ConfigError
from equinox.request import RequestSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations" / "gateway"))
from servers import ServerThread

RUN_FILES = {"config.json", "summary.json", "requests.csv", "steps.csv", "service.csv", "counters.csv",
             "fairness_windows.csv"}


def test_tenants_file_maps_by_name_then_by_order(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text('[tenants]\nalice = "ka"\nbob = "kb"\n[weights]\nbob = 2.0\n')
    keys = load_tenant_keys(path)
    assert keys.keys == {"alice": "ka", "bob": "kb"} and keys.weights == {"bob": 2.0}
    assert keys.mapping(["bob"]) == {"bob": "bob"}
    assert keys.mapping(["tenant-1", "tenant-2"]) == {"tenant-1": "alice", "tenant-2": "bob"}
    with pytest.raises(ConfigError, match="only 2"):
        keys.mapping(["t1", "t2", "t3"])
    assert TenantKeys({}).mapping(["x"]) == {"x": "x"}
    path.write_text('[tenants]\nalice = 3\n')
    with pytest.raises(ConfigError, match="non-empty string"):
        load_tenant_keys(path)
    with pytest.raises(ConfigError, match="not found"):
        load_tenant_keys(tmp_path / "missing.toml")


def test_synthetic_prompts_are_deterministic_and_sized() -> None:
    assert synth_prompt(50, 3) == synth_prompt(50, 3) != synth_prompt(50, 4)
    assert len(synth_prompt(50, 3).split()) == 50


def test_live_records_and_series_count_service_like_the_simulator() -> None:
    spec = RequestSpec("r0", "alice", 0.5, 100, 3, 3)
    ok = Outcome(BenchRequest(spec, "alice", "k", "p"), send_time=0.5, first_token_time=1.2, finish_time=2.4,
                 token_times=[1.2, 1.8, 2.4], num_output_tokens=3, queue_wait_s=0.25, status=200)
    bad = Outcome(BenchRequest(RequestSpec("r1", "bob", 0.6, 10, 3, 3), "bob", "k", "p"), send_time=0.6,
                  status=429, error="HTTP 429: queue full")
    records = [to_record(ok), to_record(bad)]
    assert records[0].first_scheduled_time == pytest.approx(0.75) and records[0].max_itl_s == pytest.approx(0.6)
    assert records[0].ttft_s == pytest.approx(0.7) and records[0].is_finished
    assert records[1].reject_reason == "HTTP 429: queue full" and not records[1].is_finished
    series = build_series([ok, bad], records, 1.0, 3.0)
    assert series.service["alice"] == {1: [100, 2], 2: [0, 1]}  # prompt at the first token, output per token
    assert "bob" not in series.service
    assert series.columns["num_waiting"][:3] == [1.0, 0.0, 0.0]
    assert series.columns["num_running"][:3] == [0.0, 1.0, 0.0]


def test_fairness_counters_are_parsed_from_prometheus_text() -> None:
    text = ('# HELP x\nequinox_gateway_fairness_counter{kind="vtc",tenant="a"} 12.5\n'
            'equinox_gateway_fairness_counter{kind="vtc",tenant="b"} 3.0\nother 1\n')
    assert parse_fairness_counters(text) == {"vtc": {"a": 12.5, "b": 3.0}}


def test_bench_against_an_engine_writes_a_simulator_style_run_dir(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from equinox.integrations.gateway.fake_backend import FakeBackend, FakeState

    state = FakeState(models=("m",), ttft_s=0.01, itl_s=0.001)
    server = ServerThread(FakeBackend(state)).start()
    try:
        out = tmp_path / "live"
        code = main(["bench", "--target", server.url, "--workload", "overload", "--duration", "4",
                     "--rate-scale", "2", "--tenant-xargs", "--out", str(out), "--interval", "0.5"])
    finally:
        server.stop()
    assert code == 0
    printed = capsys.readouterr().out
    assert "Jain's index" in printed and "tenant-1" in printed and "errors 0" in printed
    assert {p.name for p in out.iterdir()} == RUN_FILES
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "live" and config["deployment"]["model"] == "m"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stats"]["num_errors"] == 0 and summary["stats"]["num_sent"] == state.num_requests
    assert {t["tenant"] for t in summary["tenants"]} == {"tenant-1", "tenant-2"}
    assert summary["fairness"]["num_windows"] >= 1
    with open(out / "requests.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["status"] == "finished" for r in rows)
    assert {x["vllm_xargs"]["tenant"] for x in state.recent} == {"tenant-1", "tenant-2"}


def test_live_run_dir_has_the_simulators_columns(tmp_path: Path) -> None:
    from equinox.rundir import REQUEST_COLUMNS

    sim = tmp_path / "sim"
    assert main(["simulate", "-w", "overload", "--duration", "20", "--no-progress", "-o", str(sim)]) == 0
    spec = RequestSpec("r0", "alice", 0.0, 10, 2, 2)
    from equinox.bench.live import live_summary, write_live_run_dir

    outcome = Outcome(BenchRequest(spec, "alice", None, "p"), send_time=0.0, first_token_time=0.1,
                      finish_time=0.2, token_times=[0.1, 0.2], num_output_tokens=2, status=200)
    records = [to_record(outcome)]
    series = build_series([outcome], records, 1.0, 1.0)
    summary = live_summary(records, series, weights={}, arrival_end_time=0.0, prompt_weight=1.0,
                           output_weight=2.0, window_s=60.0, warmup_s=30.0)
    live = write_live_run_dir(tmp_path / "live", config={"kind": "live"}, summary=summary, stats={},
                              records=records, series=series, weights={}, prompt_weight=1.0, output_weight=2.0)
    for name in RUN_FILES - {"config.json", "summary.json"}:
        assert (sim / name).read_text().splitlines()[0] == (live / name).read_text().splitlines()[0], name
    assert (live / "requests.csv").read_text().splitlines()[0] == ",".join(REQUEST_COLUMNS)
    sim_summary = json.loads((sim / "summary.json").read_text())
    live_summary_doc = json.loads((live / "summary.json").read_text())
    assert set(sim_summary) == set(live_summary_doc)
