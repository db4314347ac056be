"""The API-server front-end around the simulated engine: ingress queue, egress delay, the run hook, config and CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from equinox.cli.main import main
from equinox.config import RunConfig
from equinox.errors import ConfigError
from equinox.metrics.collector import RequestRecord
from equinox.request import RequestSpec
from equinox.sim.frontend import FrontendModel
from equinox.sim.run import run_simulation

TINY = RunConfig(workload="overload", duration_s=20.0, seed=3)


def spec(rid: str, time: float, prompt: int, tenant: str = "a") -> RequestSpec:
    return RequestSpec(rid, tenant, time, prompt, 8)


def record(rid: str, arrival: float, first: float | None, finish: float | None) -> RequestRecord:
    return RequestRecord(rid, "a", arrival, 10, 8, 8, arrival, first, finish, 0, 0.0, None)


def test_default_is_a_bare_engine_and_bad_values_are_named() -> None:
    assert not FrontendModel().is_active
    assert FrontendModel(egress_per_token_s=1e-4).is_active
    for bad in (-1.0, math.nan, math.inf, True, "1"):
        with pytest.raises(ConfigError, match="ingress_per_token_s"):
            FrontendModel(ingress_per_token_s=bad)  # type: ignore[arg-type]
    model = FrontendModel(0.01, 2e-5, 0.003, 1e-3)
    assert FrontendModel.from_dict(model.to_dict()) == model
    with pytest.raises(ConfigError, match=r"unknown key.*egress_ms.*known: ingress_s"):
        FrontendModel.from_dict({"egress_ms": 1.0})


def test_ingress_queues_bursts_first_come_first_served() -> None:
    model = FrontendModel(ingress_s=0.005, ingress_per_token_s=1e-3)
    burst = [spec("h0", 0.0, 100), spec("h1", 0.0, 100), spec("l0", 0.05, 10), spec("l1", 1.0, 10)]
    out = list(model.engine_arrivals(burst))
    # h0 done at 0.1, h1 queued behind it until 0.2, l0 (sent at 0.05) behind both; l1 finds it idle.
    assert [s.arrival_time for s in out] == pytest.approx([0.105, 0.205, 0.215, 1.015])
    assert [dataclasses.replace(s, arrival_time=0.0) for s in out] == [
        dataclasses.replace(s, arrival_time=0.0) for s in burst]  # nothing else changes
    assert next(FrontendModel(ingress_s=0.002).engine_arrivals(burst)).arrival_time == pytest.approx(0.002)


def test_egress_grows_with_streams_and_waits_behind_queued_ingress() -> None:
    model = FrontendModel(egress_s=0.001, egress_per_token_s=0.002)
    assert model.egress_delay(1) == pytest.approx(0.003)  # alone: its own token only
    assert model.egress_delay(7) == pytest.approx(0.009)  # on average behind half of 7 streams' tokens
    # Two requests streaming over [1, 2] and [1.5, 3]: at 1.5 both stream, at 3 only the second.
    recs = [record("x", 0.9, 1.0, 2.0), record("y", 1.4, 1.5, 3.0)]
    out = model.client_records(recs, {"x": 0.5, "y": 1.2})
    assert [r.arrival_time for r in out] == [0.5, 1.2]
    assert out[0].first_token_time == pytest.approx(1.0 + model.egress_delay(1))
    assert out[1].first_token_time == pytest.approx(1.5 + model.egress_delay(2))
    assert out[0].finish_time == pytest.approx(2.0 + model.egress_delay(2))
    assert out[1].finish_time == pytest.approx(3.0 + model.egress_delay(1))
    # A token leaving the engine while prompts are still being tokenised waits for them.
    busy = FrontendModel(ingress_per_token_s=0.01)
    recs = [record("p", 0.1, 0.15, 0.2), record("q", 1.0, 1.01, 1.02)]  # q: 100 tokens sent at 0.0 ...
    out = busy.client_records(recs, {"p": 0.0, "q": 0.05})  # ... its ingress ends at its arrival, 1.0
    assert out[0].first_token_time == pytest.approx(0.15 + (1.0 - 0.15))
    unfinished = busy.client_records([record("u", 0.2, None, None)], {})
    assert unfinished[0].first_token_time is None and unfinished[0].arrival_time == 0.2


def test_run_with_a_frontend_reports_client_times() -> None:
    bare = run_simulation(TINY)
    assert run_simulation(TINY.replace(frontend_egress_s=0.0)).records == bare.records  # zero: untouched
    front = TINY.replace(frontend_ingress_s=0.02, frontend_egress_s=0.01, frontend_egress_per_token_s=1e-4)
    run = run_simulation(front)
    assert run.records == run_simulation(front).records  # deterministic
    sends = {r.request_id: r.arrival_time for r in run.workload.requests}
    assert {r.request_id: r.arrival_time for r in run.records} == sends
    finished = [r for r in run.records if r.ttft_s is not None]
    assert finished and all(r.ttft_s is not None and r.ttft_s >= 0.03 for r in finished)
    assert run.summary.latency.ttft.mean > bare.summary.latency.ttft.mean + 0.03


def test_config_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="frontend_egress_s must be a finite number of seconds >= 0"):
        RunConfig(frontend_egress_s=-0.001)
    assert RunConfig(frontend_ingress_per_token_s=1e-5).frontend() == FrontendModel(ingress_per_token_s=1e-5)
    code = main(["simulate", "-p", "fcfs", "--duration", "10", "--no-progress", "--frontend-ingress", "0.01",
                 "--frontend-egress-per-token", "0.0005", "-o", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "config.json").read_text())["config"]["frontend_egress_per_token_s"] == 0.0005
    code = main(["simulate", "-p", "fcfs", "--duration", "10", "--no-progress", "--frontend-egress", "-1"])
    _, err = capsys.readouterr()
    assert code == 2 and "frontend_egress_s must be" in err and "Traceback" not in err
