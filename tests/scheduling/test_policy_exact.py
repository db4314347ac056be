"""Policy bookkeeping made cheaper must decide exactly as before (issue 13 item 2).

Each case runs a seeded workload through the simulator and digests, to the bit, every
request's outcome (admission order, first scheduled / first token / last token / finish
times, inter-token gap, preemptions, tokens) and every policy counter the collector samples
(UFC, RFC, HF per interval: the floats every later decision reads). The digests were
taken before the incremental structures of issue 13 item 2 went in; a speed-up that moves
a single decision or a single counter bit changes them.

Cases cover light load (the benchmark's: no queueing), overload (queueing, KV pressure,
preemptions), both engines, the explicit path (a backend without `time_of`), tenant
weights and Equinox's knobs that change which structures are used.

When a change is *meant* to move these results, regenerate and review:

    PYTHONPATH=src python tests/scheduling/test_policy_exact.py --regenerate
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from equinox.metrics.collector import Collector
from equinox.request import Request, RequestSpec
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policy import make_policy
from equinox.sim.backend import CostModelBackend, FunctionBackend
from equinox.sim.cost_models import build_cost_model
from equinox.sim.engine import EngineConfig, make_engine
from equinox.sim.hardware import make_deployment
from equinox.sim.loop import Simulator

DIGESTS = Path(__file__).with_name("policy_exact_digests.json")
WEIGHTS = {"t1": 2.0, "t3": 0.5}

# name -> (policy, params, workload (num_requests, rate), engine, weighted)
CASES: dict[str, tuple[str, dict[str, Any], tuple[int, float], str, bool]] = {
    "fcfs-light": ("fcfs", {}, (1500, 8.0), "vllm", False),
    "vtc-light": ("vtc", {}, (1500, 8.0), "vllm", False),
    "vtc-over": ("vtc", {}, (1200, 30.0), "vllm", True),
    "equinox-light": ("equinox", {}, (1500, 8.0), "vllm", False),
    "equinox-over": ("equinox", {}, (1200, 30.0), "vllm", False),
    "equinox-over-weighted": ("equinox", {}, (1200, 30.0), "vllm", True),
    "equinox-over-holistic": ("equinox", {"beta": 0.5, "f_min": 0.5}, (1200, 30.0), "vllm", True),
    "equinox-over-rfc-only": ("equinox", {"alpha": 0.0, "beta": 1.0}, (800, 30.0), "vllm", False),
    "equinox-over-no-share": ("equinox", {"kv_fair_share": False}, (1200, 30.0), "vllm", False),
    "equinox-over-reactive": ("equinox", {"proactive": False, "f_min": 0.6}, (800, 30.0), "vllm", False),
    "equinox-over-fifo-static": (
        "equinox", {"shortest_prompt_first": False, "adaptive_batching": False, "kv_headroom": 1.5},
        (800, 30.0), "vllm", False),
    "equinox-over-slora": ("equinox", {}, (800, 30.0), "slora", False),
    "equinox-over-explicit": ("equinox", {"beta": 0.3}, (600, 30.0), "explicit", True),
    "vtc-over-explicit": ("vtc", {}, (600, 30.0), "explicit", True),
}


def workload(num_requests: int, rate: float, seed: int = 3) -> list[RequestSpec]:
    """Poisson arrivals, ShareGPT-like log-normal lengths, 8 tenants of skewed popularity."""
    rng = random.Random(seed)
    t = 0.0
    specs = []
    for i in range(num_requests):
        t += rng.expovariate(rate)
        prompt = min(2048, max(1, int(rng.lognormvariate(5.1, 1.0))))
        output = min(1024, max(1, int(rng.lognormvariate(4.9, 0.9))))
        tenant = f"t{min(7, int(rng.paretovariate(1.2)) - 1)}"
        specs.append(RequestSpec(f"r{i}", tenant, t, prompt, output))
    return specs


class _Digest:
    """Feeds request outcomes and sampled counters into one SHA-256, floats by their bits."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.num_requests = 0

    def _floats(self, *values: float | None) -> None:
        for v in values:
            self.hash.update(b"-" if v is None else struct.pack("<d", v))

    def request(self, req: Request) -> None:
        self.num_requests += 1
        self.hash.update(f"{req.request_id}|{req.status.name}|{req.admit_seq}|{req.num_preemptions}|"
                         f"{req.num_output_tokens_done}|{req.num_computed_tokens}|".encode())
        self._floats(req.first_scheduled_time, req.first_token_time, req.last_token_time, req.finish_time,
                     req.max_itl_s)

    def counters(self, index: int, values: Mapping[str, Mapping[str, float]]) -> None:
        self.hash.update(f"#{index}".encode())
        for kind in sorted(values):
            for tenant in sorted(values[kind]):
                self.hash.update(f"{kind}:{tenant}".encode())
                self._floats(values[kind][tenant])


def run_case(name: str) -> str:
    """The digest of case `name` (with the number of requests it saw)."""
    policy_name, params, (num_requests, rate), engine, weighted = CASES[name]
    weights = WEIGHTS if weighted else {}
    policy = make_policy(policy_name, PolicyConfig(params=params, tenant_weights=weights))
    digest = _Digest()
    specs = workload(num_requests, rate)
    if engine == "explicit":
        backend: Any = FunctionBackend(
            lambda out: 0.01 + 1e-4 * out.batch.num_tokens + 2e-4 * out.batch.num_decode_seqs
            + 2e-7 * out.batch.decode_context_tokens)
        cfg = EngineConfig(mode="vllm", num_kv_blocks=600, max_num_seqs=64, max_num_batched_tokens=2048,
                           block_size=16)
    else:
        # Light load on the benchmark's A100; overload on a smaller A40 (KV pressure, preemptions).
        dep = make_deployment("a100-80gb" if rate < 20 else "a40", "llama-2-7b")
        cost = build_cost_model("vidur", dep)
        policy.set_platform(dep.platform(cost))
        backend = CostModelBackend(cost)
        if engine == "slora":
            cfg = EngineConfig(mode="slora", num_kv_blocks=dep.num_kv_blocks(1), block_size=1,
                               max_num_seqs=1000, max_num_batched_tokens=4096)
        else:
            cfg = EngineConfig(mode="vllm", num_kv_blocks=dep.num_kv_blocks(16), max_num_seqs=128,
                               max_num_batched_tokens=4096, block_size=16)
    collector = Collector(1.0, request_sink=digest.request, counter_sink=digest.counters)
    Simulator(specs, make_engine(cfg, policy), backend, collector, num_requests_hint=len(specs)).run()
    return f"{digest.num_requests}:{digest.hash.hexdigest()}"


@pytest.fixture(scope="module")
def digests() -> dict[str, str]:
    return dict(json.loads(DIGESTS.read_text()))


@pytest.mark.parametrize("name", list(CASES))
def test_policy_decides_to_the_bit_as_before(name: str, digests: dict[str, str]) -> None:
    assert run_case(name) == digests[name]


def test_digest_file_covers_every_case(digests: dict[str, str]) -> None:
    assert set(digests) == set(CASES)


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: PYTHONPATH=src python tests/scheduling/test_policy_exact.py --regenerate")
    DIGESTS.write_text(json.dumps({n: run_case(n) for n in CASES}, indent=2, sort_keys=True) + "\n")
    print(f"wrote {DIGESTS}")
