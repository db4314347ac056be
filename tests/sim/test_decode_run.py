"""Folding identical decode iterations changes nothing a user can see (only simulation speed)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equinox.metrics.collector import Collector
from equinox.request import RequestSpec
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policy import make_policy
from equinox.sim.backend import CostModelBackend
from equinox.sim.cost_models import build_cost_model
from equinox.sim.engine import EngineConfig, make_engine
from equinox.sim.hardware import make_deployment
from equinox.sim.loop import Simulator


def workload(seed: int, n: int, rate: float, tenants: int) -> list[RequestSpec]:
    rng = random.Random(seed)
    t, out = 0.0, []
    for i in range(n):
        t += rng.expovariate(rate)
        out.append(RequestSpec(f"r{i}", f"t{rng.randrange(tenants)}", t, rng.randint(1, 600), rng.randint(1, 300)))
    return out


def simulate(specs: list[RequestSpec], policy: str, mode: str, blocks: int, fast: bool):
    dep = make_deployment("a100-80gb", "llama-2-7b")
    cost = build_cost_model("roofline", dep)
    pol = make_policy(policy, PolicyConfig())
    sched = make_engine(EngineConfig(mode=mode, num_kv_blocks=blocks, max_num_batched_tokens=1024), pol)
    coll = Collector(0.5, lambda r: dep.flops(r.batch))
    stats = Simulator(specs, sched, CostModelBackend(cost), coll, fast_forward=fast).run()
    records = sorted(coll.records, key=lambda r: r.request_id)
    return stats, records, coll, pol, sched


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), policy=st.sampled_from(["fcfs", "vtc", "lcf", "vtc-predict"]),
       mode=st.sampled_from(["vllm", "slora"]), blocks=st.integers(40, 400), rate=st.sampled_from([2.0, 10.0, 40.0]))
def test_folded_runs_give_the_same_requests_series_and_counters(seed: int, policy: str, mode: str, blocks: int,
                                                                rate: float) -> None:
    specs = workload(seed, 150, rate, 3)
    s_fast, r_fast, c_fast, p_fast, k_fast = simulate(specs, policy, mode, blocks, True)
    s_slow, r_slow, c_slow, p_slow, k_slow = simulate(specs, policy, mode, blocks, False)
    assert r_fast == r_slow  # every time, token count, preemption and ITL of every request
    assert s_fast.num_steps == s_slow.num_steps and s_fast.end_time == s_slow.end_time
    assert c_fast.series.service == c_slow.series.service
    for col in ("num_steps", "num_seqs", "num_tokens", "num_decode_seqs", "token_budget"):
        assert c_fast.series.columns[col] == c_slow.series.columns[col], col
    for col in ("busy_s", "flops", "kv_block_s"):
        assert c_fast.series.columns[col] == pytest.approx(c_slow.series.columns[col], rel=1e-9, abs=1e-6), col
    assert p_fast.counters() == pytest.approx(p_slow.counters())
    assert k_fast.kv.num_free == k_fast.kv.num_blocks == k_slow.kv.num_free


def test_folding_actually_happens_when_nothing_waits() -> None:
    specs = workload(1, 200, 2.0, 2)
    dep = make_deployment("a100-80gb", "llama-2-7b")
    backend = CostModelBackend(build_cost_model("roofline", dep))
    calls = 0
    inner = backend.execute

    def counting(output):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return inner(output)

    backend.execute = counting  # type: ignore[method-assign]
    sched = make_engine(EngineConfig(num_kv_blocks=4000), make_policy("vtc"))
    stats = Simulator(specs, sched, backend, Collector()).run()
    assert stats.num_finished == 200
    assert calls < stats.num_steps / 3  # most iterations were folded into runs
