"""Sim-to-real: the calibrated cost model, the step log, the replay, and one reduced real-vs-sim run."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from equinox.errors import ConfigError
from equinox.integrations.vllm.calibration import (
    StepLog,
    api_latency,
    calibrate_on_run,
    contention,
    engine_ttfts,
    fit_frontend,
    frontend_of,
    frontend_samples,
    machine_speed,
    read_step_log,
    replay_requests,
    simulate_replay,
    step_samples,
    time_scaled,
)
from equinox.integrations.vllm.loadgen import RequestResult
from equinox.metrics.collector import RequestRecord
from equinox.request import RequestSpec
from equinox.scheduling.interface import PolicyConfig
from equinox.sim.cost_models.calibrated import (
    Calibration,
    build_calibrated,
    fit_calibration,
    load_calibration,
    save_calibration,
)
from equinox.sim.engine import EngineConfig
from equinox.sim.frontend import FrontendModel
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage

REPO = Path(__file__).resolve().parents[3]
TRUE = Calibration(0.0012, {"num_prefill_tokens": 5e-6, "num_decode_seqs": 8e-5, "decode_context_tokens": 2e-8,
                            "prefill_attention_pairs": 0.0, "num_prefill_seqs": 1e-3})


def synthetic_batches(n: int, seed: int = 0) -> list[BatchShape]:
    """Random hybrid batches like a small CPU engine runs."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p_seqs = rng.choice([0, 0, 1, 2])
        p_tokens = sum(rng.randint(16, 256) for _ in range(p_seqs))
        d = rng.randint(0 if p_seqs else 1, 8)
        out.append(BatchShape(p_tokens, p_seqs, p_tokens * (p_tokens + 1) // 2, d, d * rng.randint(20, 600)))
    return out


# Calibration fit ---------------------------------------------------------------------
def test_fit_recovers_noise_free_coefficients() -> None:
    batches = synthetic_batches(300)
    fit = fit_calibration(batches, [TRUE.predict(b) for b in batches])
    assert fit.overhead_s == pytest.approx(TRUE.overhead_s, rel=1e-6)
    for name, value in TRUE.coefficients.items():
        assert fit.coefficients[name] == pytest.approx(value, rel=1e-5, abs=1e-12)
    assert fit.metadata["fit"]["mean_abs_rel_error"] < 1e-6


def test_fit_with_noise_keeps_total_time_and_non_negative_coefficients() -> None:
    batches = synthetic_batches(2000, seed=1)
    rng = random.Random(2)
    measured = [TRUE.predict(b) * rng.uniform(0.8, 1.2) for b in batches]
    fit = fit_calibration(batches, measured)
    assert all(v >= 0 for v in fit.coefficients.values()) and fit.overhead_s >= 0
    assert sum(fit.predict(b) for b in batches) == pytest.approx(sum(measured), rel=0.01)
    assert fit.coefficients["num_decode_seqs"] == pytest.approx(8e-5, rel=0.2)


def test_fit_rejects_too_few_samples() -> None:
    with pytest.raises(ConfigError, match="at least"):
        fit_calibration([BatchShape(10, 1, 55)], [0.001])


def test_calibration_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = save_calibration(Calibration(TRUE.overhead_s, TRUE.coefficients, "cpu", {"engine": {"block_size": 128}}),
                            tmp_path / "cal.json")
    assert "machine-specific" in json.loads(path.read_text())["note"]
    model = build_calibrated(path)
    batch = BatchShape(100, 1, 5050, 4, 800)
    assert model.name == "cpu" and model.iteration_time(batch) == pytest.approx(TRUE.predict(batch))
    assert model.iteration_time(BatchShape()) == 0.0
    assert load_calibration(path).metadata["engine"] == {"block_size": 128}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(path.read_text()), "coefficients": {"num_layers": 1.0}}))
    with pytest.raises(ConfigError, match="num_layers"):
        load_calibration(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_calibration(tmp_path / "missing.json")


# Step log ------------------------------------------------------------------------------
def report(step_id: int, batch: BatchShape) -> StepReport:
    return StepReport(step_id, 0.0, 0.001, batch, BatchLimits(512, 8), {}, 3, 100)


def test_step_log_samples_use_the_engine_cycle_when_busy(tmp_path: Path) -> None:
    log = StepLog(tmp_path / "steps.jsonl")
    log.config(max_num_batched_tokens=512, max_num_seqs=8)
    log.request("arrival", "r1", "probe-0", 10.0)
    log.step(report(1, BatchShape(64, 1, 2080)), schedule_time=10.001, end_time=10.005, prev_end_time=9.0,
             was_idle=True)
    log.step(report(2, BatchShape(0, 0, 0, 1, 65)), schedule_time=10.0052, end_time=10.007, prev_end_time=10.005,
             was_idle=False)
    log.request("first_token", "r1", "probe-0", 10.005)
    log.close()
    with open(tmp_path / "steps.jsonl", "a") as f:
        f.write('{"event": "step", "torn')  # a killed engine's last line
    records = read_step_log(tmp_path / "steps.jsonl")
    batches, durations = step_samples(records)
    assert batches == [BatchShape(64, 1, 2080), BatchShape(0, 0, 0, 1, 65)]
    assert durations == pytest.approx([0.004, 0.002])  # idle: schedule->end; busy: end->end
    assert engine_ttfts(records) == {"probe-0": [pytest.approx(0.005)]}
    probe = RequestResult("probe-0", 64, status=200, send_time=9.997, token_times=[10.006], finish_reason="length")
    latency = api_latency(records, [probe])
    assert latency.in_s == pytest.approx(0.003) and latency.out_s == pytest.approx(0.001)


def test_step_log_from_env_is_off_by_default(tmp_path: Path) -> None:
    assert StepLog.from_env({}) is None
    log = StepLog.from_env({"EQUINOX_VLLM_STEP_LOG": str(tmp_path / "s.jsonl")})
    assert log is not None
    log.close()


def test_contention_window_is_measured_on_the_engine_clock(tmp_path: Path) -> None:
    log = StepLog(tmp_path / "steps.jsonl")

    def step(step_id: int, end: float, tenants: dict[str, TenantUsage]) -> None:
        rep = StepReport(step_id, end - 0.01, 0.01, BatchShape(0, 0, 0, 1, 1), BatchLimits(512, 8), tenants, 1, 100)
        log.step(rep, schedule_time=end - 0.01, end_time=end, prev_end_time=end - 0.01, was_idle=False)

    log.request("arrival", "h0", "heavy", 0.0)
    log.request("arrival", "h1", "heavy", 0.0)
    step(1, 1.0, {"heavy": TenantUsage(100, 1)})  # before light arrives: outside the window
    log.request("first_token", "h0", "heavy", 1.0)
    log.request("arrival", "l1", "light", 1.5)
    log.request("arrival", "l2", "light", 1.6)
    log.request("first_token", "h1", "heavy", 1.8)  # started while both light requests waited
    step(2, 2.0, {"heavy": TenantUsage(0, 3), "light": TenantUsage(20, 1)})
    log.request("first_token", "l1", "light", 2.0)
    step(3, 3.0, {"heavy": TenantUsage(0, 2), "light": TenantUsage(10, 2)})
    log.request("first_token", "l2", "light", 3.0)
    log.request("finish", "l1", "light", 3.0)
    log.request("abort", "l2", "light", 3.0)
    step(4, 4.0, {"heavy": TenantUsage(0, 50)})  # after light left: outside
    log.close()
    records = read_step_log(tmp_path / "steps.jsonl")
    light = contention(records, "light")
    assert (light.start, light.end) == (1.5, 3.0)
    assert light.ttfts_s == pytest.approx([0.5, 1.4])
    assert light.mean_ttft_s == pytest.approx(0.95) and light.max_ttft_s == pytest.approx(1.4)
    assert light.served == {"heavy": 5.0, "light": 33.0}
    assert light.shares()["light"] == pytest.approx(33 / 38)
    assert light.queued_ahead == [1, 1]  # h1 arrived before both and had no first token yet
    assert light.overtaken_by == [1, 1] and light.overtaken_fraction == 1.0
    alone = [{"event": e, "request_id": "a", "tenant": "light", "time": t}
             for e, t in (("arrival", 0.0), ("first_token", 0.1), ("finish", 0.2))]
    assert math.isnan(contention(alone, "light").overtaken_fraction)  # nobody was queued ahead
    with pytest.raises(ValueError, match="sent no request"):
        contention(records, "nobody")
    with pytest.raises(ValueError, match="never ended"):
        contention(records[:-3], "light")  # the finish/abort lines and step 4 cut off


# Replay in the simulator ---------------------------------------------------------------
def flood_results() -> list[RequestResult]:
    """A heavy burst at t=0 and light requests shortly after, as a client would have recorded them."""
    out = [RequestResult("heavy", 300, status=200, send_time=100.0 + 0.001 * i, token_times=[0.0],
                         num_output_tokens=64, finish_reason="length") for i in range(20)]
    out += [RequestResult("light", 40, status=200, send_time=100.05 + 0.1 * i, token_times=[0.0],
                          num_output_tokens=16, finish_reason="length") for i in range(5)]
    return out


@pytest.mark.parametrize("policy", ["fcfs", "vtc"])
def test_replay_finishes_everything_and_adds_api_latency(policy: str) -> None:
    cal = Calibration(TRUE.overhead_s, TRUE.coefficients, metadata={"api_in_s": 0.003, "api_out_s": 0.001})
    engine = EngineConfig(max_num_batched_tokens=512, max_num_seqs=4, block_size=128, num_kv_blocks=1000)
    requests = replay_requests(flood_results())
    assert requests[0].send_time == 0.0 and len(requests) == 25
    out = simulate_replay(requests, cal, policy, PolicyConfig(), engine)
    assert [o.tenant for o in out] == [r.tenant for r in requests]
    assert all(o.e2e_s > o.ttft_s > o.engine_ttft_s + 0.001 for o in out)
    assert out[0].ttft_s == pytest.approx(out[0].engine_ttft_s + 0.004)
    assert out == simulate_replay(requests, cal, policy, PolicyConfig(), engine)  # deterministic
    light = max(o.ttft_s for o in out if o.tenant == "light")
    heavy = max(o.ttft_s for o in out if o.tenant == "heavy")
    assert (light < heavy / 2) if policy == "vtc" else (light > heavy / 2)


def test_replay_with_a_calibrated_frontend() -> None:
    front = FrontendModel(ingress_s=0.004, ingress_per_token_s=2e-5, egress_s=0.002, egress_per_token_s=1e-3)
    cal = Calibration(TRUE.overhead_s, TRUE.coefficients, metadata={"frontend": front.to_dict()})
    assert frontend_of(cal) == front
    engine = EngineConfig(max_num_batched_tokens=512, max_num_seqs=4, block_size=128, num_kv_blocks=1000)
    requests = replay_requests(flood_results())
    out = simulate_replay(requests, cal, "vtc", PolicyConfig(), engine)
    bare = simulate_replay(requests, cal, "vtc", PolicyConfig(), engine, FrontendModel())
    assert all(o.e2e_s > o.ttft_s == pytest.approx(o.engine_ttft_s) for o in bare)
    # Ingress: the 20 heavy prompts (300 tokens, sent 1 ms apart) queue in the front-end, 6 ms each.
    assert out[19].ttft_s - out[19].engine_ttft_s > 20 * 300 * 2e-5 - out[19].send_time
    assert min(o.ttft_s - o.engine_ttft_s for o in out) >= 0.004 + 0.002 + 1e-3 - 1e-12  # one stream at least
    assert sum(o.ttft_s for o in out) > sum(b.ttft_s for b in bare)
    slower = simulate_replay(requests, time_scaled(cal, 2.0), "vtc", PolicyConfig(), engine)
    assert sum(o.e2e_s for o in slower) > sum(o.e2e_s for o in out)


def synthetic_run(front: FrontendModel) -> tuple[list[dict[str, object]], list[RequestResult]]:
    """A run whose API path follows `front` exactly: the engine's log and the client's results on one clock."""
    rng = random.Random(5)
    sends = [(4.0 + 0.002 * k, "heavy", 500) for k in range(12)]
    sends += [(rng.uniform(0, 10), "light", 40) for _ in range(30)] + [(rng.uniform(0, 10), "medium", 200)
                                                                      for _ in range(15)]
    sends.sort()
    specs = [RequestSpec(f"q{i}", t, 100.0 + s, p, 16) for i, (s, t, p) in enumerate(sends)]
    arrivals = list(front.engine_arrivals(specs))
    engine = [(a.arrival_time, a.arrival_time + rng.uniform(0.005, 0.3), rng.uniform(0.05, 0.5)) for a in arrivals]
    records: list[dict[str, object]] = [{"event": "config", "max_num_batched_tokens": 512, "max_num_seqs": 8,
                                         "block_size": 128, "num_kv_blocks": 100, "enable_chunked_prefill": True}]
    engine_recs = []
    for spec, (arrival, first, span) in zip(specs, engine, strict=True):
        for event, time in (("arrival", arrival), ("first_token", first), ("finish", first + span)):
            records.append({"event": event, "request_id": spec.request_id, "tenant": spec.tenant, "time": time})
        engine_recs.append(RequestRecord_(spec.request_id, arrival, first, first + span))
    client = front.client_records([r.as_record() for r in engine_recs], {s.request_id: s.arrival_time for s in specs})
    results = [RequestResult(s.tenant, s.num_prompt_tokens, status=200, send_time=s.arrival_time,
                             token_times=[c.first_token_time or 0.0], finish_time=c.finish_time or 0.0,
                             num_output_tokens=16, finish_reason="length") for s, c in zip(specs, client, strict=True)]
    return records, results


@dataclass(frozen=True)
class RequestRecord_:
    request_id: str
    arrival: float
    first: float
    finish: float

    def as_record(self) -> RequestRecord:
        return RequestRecord(self.request_id, "t", self.arrival, 1, 16, 16, self.arrival, self.first, self.finish,
                             0, 0.0, None)


def test_fit_frontend_recovers_a_known_front_end() -> None:
    true = FrontendModel(ingress_s=0.012, ingress_per_token_s=1e-5, egress_s=0.004, egress_per_token_s=0.003)
    records, results = synthetic_run(true)
    samples = {s.tenant: s for s in frontend_samples(records, results)}
    assert set(samples) == {"heavy", "light", "medium"}
    assert samples["heavy"].ingress_s > samples["light"].ingress_s  # the burst queued in the front-end
    fit = fit_frontend(records, results)
    assert fit.ingress_per_token_s == pytest.approx(true.ingress_per_token_s, rel=1e-6)  # a grid point
    for name in ("ingress_s", "egress_s", "egress_per_token_s"):
        assert getattr(fit, name) == pytest.approx(getattr(true, name), rel=1e-3), name
    assert fit_frontend(*synthetic_run(FrontendModel())) == FrontendModel()
    with pytest.raises(ValueError, match="tenant 'light': 30 client requests but 29"):
        frontend_samples([r for r in records if r.get("request_id") != "q1"], results)


def test_calibrate_on_run_and_machine_speed(tmp_path: Path) -> None:
    log = StepLog(tmp_path / "steps.jsonl")
    log.config(max_num_batched_tokens=512, max_num_seqs=8, block_size=128, num_kv_blocks=100,
               enable_chunked_prefill=True)
    records, results = synthetic_run(FrontendModel(ingress_s=0.01))
    end = min(r.send_time for r in results)  # the run's own iterations (earlier ones are not the workload's)
    for i, batch in enumerate(synthetic_batches(60, seed=3)):
        log.step(report(i, batch), schedule_time=end, end_time=end + 2 * TRUE.predict(batch), prev_end_time=end,
                 was_idle=False)
        end += 2 * TRUE.predict(batch)
    log.close()
    records = read_step_log(tmp_path / "steps.jsonl") + records[1:]
    cal = calibrate_on_run(records, results)
    assert frontend_of(cal).ingress_s == pytest.approx(0.01, rel=1e-3)
    assert cal.coefficients["num_decode_seqs"] == pytest.approx(2 * 8e-5, rel=1e-3)
    assert machine_speed(records, cal) == pytest.approx(1.0, rel=1e-6)
    assert machine_speed(records, time_scaled(cal, 0.5)) == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(ValueError, match="no iteration"):
        machine_speed(records[-5:], cal)


# Real vLLM versus the simulator ---------------------------------------------------------
def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sim_to_real", REPO / "benchmarks" / "sim_to_real.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


# The real test's band on mean TTFT and E2E per tenant, where the repeats' own spread is narrower: twice the
# 15 % target of the 60 s benchmark. Measured here (docs/results.md, "Sim-to-real on CPU"): two repeats of the
# same 60 s run differed by up to 44 % (medium TTFT, load average 7-11 on 2 cores); a 20 s run has a third of
# the requests and one or two bursts, so one unlucky scheduling stall weighs three times as much.
BAND_PCT = 30.0
# The comparison only means something when the check runs saw the machine as the calibration run did. On the
# shared 2-core machine the front-end's delays moved 0.4x-10x between runs minutes apart (docs/results.md); at
# 1.4x a reduced run's light TTFT was 57 % low, at 0.93x all rows were within the band.
MAX_DRIFT = 1.25


def band_verdict(bench: ModuleType, out: dict[str, object]) -> tuple[str, str]:
    """('pass' | 'fail' | 'unjudged', why) for one measurement's accuracy checks."""
    rows = {r.tenant: r for r in out["rows"]}  # type: ignore[attr-defined]
    frontend_x, speed_x = bench.drift(out)
    if not (1 / MAX_DRIFT <= frontend_x <= MAX_DRIFT and 1 / MAX_DRIFT <= speed_x <= MAX_DRIFT):
        # Throughput too: on a CI machine whose load rose after the calibration the real heavy tenant's
        # tokens/s came out 33 % off (engine slower than calibrated), which says nothing about the model.
        return "unjudged", (f"the machine's load moved between the calibration and the check runs (front-end "
                            f"delays x{frontend_x:.2f}, engine speed x{speed_x:.2f})")
    for row in rows.values():
        if abs(bench.Row.error(row.real_tput, row.sim_tput)) >= 25:
            return "fail", f"throughput off by 25 % or more: {row}"
    # When the two real repeats of the same run differ by more than the band, the real engine's own noise
    # is wider than the tolerance and the latencies cannot be judged (a clean-clone CI run here: medium TTFT
    # repeats 34 % apart, the simulator 38 % off their mean). Nor can the front-end model: it was fitted on
    # one calibration run of that same noisy machine (a clean-clone CI run: light's repeats 54 % apart, the
    # calibration run's front-end 142 ms + 56 us/token where the check runs measured 20 ms for light).
    noisy = {r.tenant: max(r.ttft_spread_pct, r.e2e_spread_pct) for r in rows.values()
             if max(r.ttft_spread_pct, r.e2e_spread_pct) > BAND_PCT}
    if noisy:
        return "unjudged", (f"the real repeats differ by more than the {BAND_PCT:g} % band ("
                            + ", ".join(f"{t} {v:.0f} %" for t, v in noisy.items()) + ")")
    # The front-end is what the light tenants' TTFT is made of: a bare engine misses most of it.
    for tenant in ("light", "medium"):
        row = rows[tenant]
        if abs(bench.Row.error(row.real_ttft_s, row.sim_ttft_s)) >= abs(bench.Row.error(row.real_ttft_s,
                                                                                         row.bare_ttft_s)):
            return "fail", f"the front-end model does not bring {tenant}'s TTFT closer than a bare engine: {row}"
    for row in rows.values():
        for what, real, sim in (("TTFT", row.real_ttft_s, row.sim_ttft_s), ("E2E", row.real_e2e_s, row.sim_e2e_s)):
            if abs(bench.Row.error(real, sim)) > BAND_PCT:
                return "fail", f"{row.tenant} mean {what} {bench.Row.error(real, sim):+.1f} % off (band {BAND_PCT:g} %)"
    return "pass", "every row within its band"


def test_band_verdict_judges_only_a_quiet_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_benchmark()

    def row(tenant: str, real: float, sim: float, bare: float, spread: float = 10.0, tput: float = 1.0) -> object:
        return bench.Row(tenant, 10, real, spread, sim, sim, bare, real, spread, sim, sim, bare, 100.0, 100.0 * tput)

    def verdict(rows: list[object], drift: tuple[float, float] = (1.0, 1.0)) -> str:
        monkeypatch.setattr(bench, "drift", lambda out: drift)
        return band_verdict(bench, {"rows": rows})[0]

    good = [row("light", 0.05, 0.055, 0.004), row("medium", 0.2, 0.21, 0.01), row("heavy", 0.8, 0.75, 0.2),
            row("all", 0.4, 0.42, 0.1)]
    assert verdict(good) == "pass"
    assert verdict(good, (1.4, 1.0)) == verdict(good, (1.0, 0.7)) == "unjudged"
    assert verdict([*good[:3], row("all", 0.4, 0.42, 0.1, tput=1.3)]) == "fail"  # throughput 30 % off
    assert verdict([row("light", 0.05, 0.07, 0.004), *good[1:]]) == "fail"  # 40 % off a quiet light tenant
    far = [row("light", 0.05, 0.18, 0.004), *good[1:]]  # the front-end worse than none (CI: light 54 % spread)
    assert verdict(far) == "fail"
    assert verdict([row("light", 0.05, 0.18, 0.004, spread=54.0), *good[1:]]) == "unjudged"


# A measurement on the shared 2-core machine is itself noisy: a clean-clone CI run had light TTFT 36.6 % low
# with its two repeats 29.8 % apart (just inside the band's own gate), heavy and all 22 % low, after the
# engine sped up 1.20x since calibrating. So the whole measurement (calibration and checks) is taken again
# once when the first cannot be judged or misses; the test fails when every judged measurement misses, and
# a model that is really off misses both.
ATTEMPTS = 2


@pytest.mark.vllm
@pytest.mark.slow
def test_sim_to_real_reduced(vllm_python: Path, tiny_model: Path, tmp_path: Path) -> None:
    """~3 min on 2 cores: calibrate on a 20 s run (seed 1), check two 20 s runs of seed 0 under VTC.

    Up to 6 min when the first measurement is taken again.
    """
    bench = load_benchmark()
    verdicts = []
    for attempt in range(1, ATTEMPTS + 1):
        args = bench.parse_args(["--policy", "vtc", "--duration-s", "20", "--repeats", "2", "--workdir",
                                 str(tmp_path / f"attempt-{attempt}"), "--model", str(tiny_model),
                                 "--python", str(vllm_python)])
        out = bench.run(args)
        print(f"\nmeasurement {attempt}:\n" + bench.report(out, args))
        rows = {r.tenant: r for r in out["rows"]}
        assert set(rows) == {"heavy", "medium", "light", "all"}
        # The bursty heavy tenant waits longest, in the real engine and in the simulator.
        for ttft in (lambda r: r.real_ttft_s, lambda r: r.sim_ttft_s):
            assert ttft(rows["heavy"]) > ttft(rows["light"]) and ttft(rows["heavy"]) > ttft(rows["medium"])
        verdict, why = band_verdict(bench, out)
        print(f"measurement {attempt}: {verdict}: {why}")
        verdicts.append((verdict, why))
        if verdict == "pass":
            return
    judged = [why for verdict, why in verdicts if verdict == "fail"]
    if judged:
        pytest.fail("every judged measurement missed: " + "; ".join(judged))
    pytest.skip("no measurement could be judged: " + "; ".join(why for _, why in verdicts))
