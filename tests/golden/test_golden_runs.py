"""Small golden runs: a few summary numbers of short deterministic runs, pinned.

Integers (finished, rejected, preemptions, steps) must match exactly; floats to 1e-9
relative. Two kinds of run:

- `mechanism/*`: a fixed in-test workload and an analytic backend (no cost model, no
  presets), so only the scheduler, the policies, the loop and the metrics can move them;
- `end_to_end/*`: `run_simulation` on the `overload` preset with the measured
  `vtc-a10g` cost model, as `equinox simulate` runs it.

When a change is *meant* to move these numbers, regenerate and review the diff:

    PYTHONPATH=src python tests/golden/test_golden_runs.py --regenerate
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from equinox.config import RunConfig
from equinox.metrics.collector import Collector
from equinox.metrics.summary import summarise
from equinox.request import RequestSpec
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policy import make_policy
from equinox.sim.backend import FunctionBackend
from equinox.sim.engine import EngineConfig, make_engine
from equinox.sim.loop import Simulator
from equinox.sim.run import run_simulation

GOLDEN = Path(__file__).with_name("golden_runs.json")
REL = 1e-9

MECHANISM = {
    "fcfs-vllm": ("fcfs", dict(mode="vllm", num_kv_blocks=160)),
    "vtc-vllm": ("vtc", dict(mode="vllm", num_kv_blocks=160)),
    "vtc-slora": ("vtc", dict(mode="slora", num_kv_blocks=160, max_num_batched_tokens=4096)),
    "lcf-vllm-nochunk": ("lcf", dict(mode="vllm", num_kv_blocks=160, enable_chunked_prefill=False)),
    "vtc-predict-vllm": ("vtc-predict", dict(mode="vllm", num_kv_blocks=160)),
    "equinox-vllm": ("equinox", dict(mode="vllm", num_kv_blocks=160)),
}
END_TO_END = {
    "vtc": RunConfig(policy="vtc", duration_s=100, cost_model="vtc-a10g"),
    "fcfs": RunConfig(policy="fcfs", duration_s=100, cost_model="vtc-a10g"),
    "vtc-slora": RunConfig(policy="vtc", duration_s=100, cost_model="vtc-a10g", engine_mode="slora"),
    "equinox": RunConfig(policy="equinox", duration_s=100, cost_model="vtc-a10g"),
}


def mechanism_workload() -> list[RequestSpec]:
    """Three tenants, Poisson arrivals, mixed lengths; tenant c is twice as heavy."""
    rng = random.Random(7)
    specs = []
    t = 0.0
    for i in range(240):
        t += rng.expovariate(6.0)
        tenant = rng.choice("abcc")
        specs.append(RequestSpec(f"r{i}", tenant, round(t, 6), rng.randint(8, 400), rng.randint(4, 200)))
    return specs


def _figures(summary: Any, stats: Any) -> dict[str, Any]:
    t, f = summary.throughput, summary.fairness
    return {
        "num_finished": t.num_finished, "num_rejected": t.num_rejected, "num_unfinished": t.num_unfinished,
        "num_preemptions": summary.num_preemptions, "num_steps": stats.num_steps,
        "end_time": stats.end_time, "tokens_per_s": t.tokens_per_s, "ttft_mean": summary.latency.ttft.mean,
        "ttft_p90": summary.latency.ttft.p90, "tpot_mean": summary.latency.tpot.mean,
        "service_diff_max": f.service_diff_max,
        "tenant_service": {ts.tenant: ts.service for ts in summary.tenants},
    }


def run_mechanism(name: str) -> dict[str, Any]:
    policy, engine = MECHANISM[name]
    cfg = dict(max_num_batched_tokens=512, max_num_seqs=32, block_size=16)
    cfg.update(engine)
    scheduler = make_engine(EngineConfig(**cfg), make_policy(policy, PolicyConfig(tenant_weights={"c": 2.0})))
    collector = Collector(1.0)
    backend = FunctionBackend(lambda out: 0.02 + 1e-4 * out.batch.num_tokens + 1e-7 * out.batch.decode_context_tokens)
    specs = mechanism_workload()
    stats = Simulator(specs, scheduler, backend, collector).run()
    summary, _ = summarise(collector.records, collector.series, weights={"c": 2.0}, peak_flops=1e15,
                           arrival_end_time=specs[-1].arrival_time, num_preemptions=collector.num_preemptions,
                           window_s=20.0, warmup_s=5.0)
    return _figures(summary, stats)


def run_end_to_end(name: str) -> dict[str, Any]:
    result = run_simulation(END_TO_END[name])
    return _figures(result.summary, result.stats)


def compute_all() -> dict[str, dict[str, Any]]:
    out = {f"mechanism/{n}": run_mechanism(n) for n in MECHANISM}
    out.update({f"end_to_end/{n}": run_end_to_end(n) for n in END_TO_END})
    return out


def _assert_same(actual: Any, expected: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert set(actual) == set(expected), where
        for k in expected:
            _assert_same(actual[k], expected[k], f"{where}.{k}")
    elif isinstance(expected, int) and not isinstance(expected, bool):
        assert actual == expected, where
    elif expected is None:  # NaN is stored as null
        assert actual is None or math.isnan(actual), where
    else:
        assert actual == pytest.approx(expected, rel=REL, abs=1e-12), where


def _json_ready(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_ready(v) for k, v in x.items()}
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name", list(MECHANISM))
def test_mechanism_golden(name: str, golden: dict[str, Any]) -> None:
    _assert_same(run_mechanism(name), golden[f"mechanism/{name}"], name)


@pytest.mark.parametrize("name", list(END_TO_END))
def test_end_to_end_golden(name: str, golden: dict[str, Any]) -> None:
    _assert_same(run_end_to_end(name), golden[f"end_to_end/{name}"], name)


def test_golden_file_covers_every_run(golden: dict[str, Any]) -> None:
    assert set(golden) == {f"mechanism/{n}" for n in MECHANISM} | {f"end_to_end/{n}" for n in END_TO_END}


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: PYTHONPATH=src python tests/golden/test_golden_runs.py --regenerate")
    GOLDEN.write_text(json.dumps(_json_ready(compute_all()), indent=2, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
