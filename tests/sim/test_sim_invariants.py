"""Hypothesis invariants of the simulator over random small workloads and engine configs.

KV blocks never exceed the pool and all are freed at the end; every request finishes or
is rejected with a reason; finished requests generated exactly what they asked for;
output tokens reported per step add up to what finished requests generated; same
inputs, same records. Plus: same seed gives a byte-identical run directory.
"""

from __future__ import annotations

import filecmp
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from equinox.config import RunConfig
from equinox.metrics.collector import Collector
from equinox.request import RequestSpec
from equinox.rundir import write_run_dir
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policy import make_policy
from equinox.sim.backend import FunctionBackend
from equinox.sim.engine import Engine, EngineConfig, make_engine
from equinox.sim.loop import Simulator
from equinox.sim.run import run_simulation
from equinox.types import StepReport

POLICIES = ("fcfs", "vtc", "lcf", "vtc-predict", "rpm")


class CheckingCollector(Collector):
    """A collector that checks KV bookkeeping after every step and sums per-tenant usage."""

    def __init__(self, scheduler: Engine) -> None:
        super().__init__(1.0)
        self.scheduler = scheduler
        self.output_tokens: dict[str, int] = {}
        self.prefill_tokens: dict[str, int] = {}

    def on_step(self, report: StepReport, num_waiting: int, num_running: int, num_preempted: int) -> None:
        super().on_step(report, num_waiting, num_running, num_preempted)
        kv = self.scheduler.kv
        assert 0 <= report.num_kv_blocks_used <= report.num_kv_blocks_total == kv.num_blocks
        assert kv.num_used == sum(r.num_blocks for r in self.scheduler.running)
        for r in self.scheduler.running:
            assert r.num_blocks * kv.block_size >= r.num_computed_tokens
        assert report.batch.num_tokens <= report.limits.max_num_batched_tokens
        assert report.batch.num_seqs <= report.limits.max_num_seqs
        for tenant, u in report.per_tenant.items():
            self.output_tokens[tenant] = self.output_tokens.get(tenant, 0) + u.num_output_tokens
            self.prefill_tokens[tenant] = self.prefill_tokens.get(tenant, 0) + u.num_prefill_tokens


@st.composite
def engine_configs(draw: st.DrawFn) -> EngineConfig:
    mode = draw(st.sampled_from(["vllm", "slora"]))
    chunked = None if mode == "slora" else draw(st.sampled_from([None, False]))
    return EngineConfig(
        mode=mode,
        max_num_batched_tokens=draw(st.integers(8, 200)),
        max_num_seqs=draw(st.integers(1, 12)),
        block_size=draw(st.sampled_from([1, 4, 16])),
        num_kv_blocks=draw(st.integers(1, 60)),
        enable_chunked_prefill=chunked,
        admission_interval_steps=draw(st.integers(1, 5)),
    )


@st.composite
def workloads(draw: st.DrawFn) -> list[RequestSpec]:
    n = draw(st.integers(1, 25))
    t = 0.0
    specs = []
    for i in range(n):
        t += draw(st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.3, 2.0]))  # bursts at one instant included
        max_tokens = draw(st.one_of(st.none(), st.integers(1, 80)))
        specs.append(
            RequestSpec(
                f"r{i}", draw(st.sampled_from(["a", "b", "c"])), t, draw(st.integers(1, 120)),
                draw(st.integers(1, 60)), max_tokens=max_tokens,
            )
        )
    return specs


def simulate(specs: list[RequestSpec], engine: EngineConfig, policy: str, weights: dict[str, float]):
    pcfg = PolicyConfig(tenant_weights=weights, rpm_limit=6.0 if policy == "rpm" else None)
    sched = make_engine(engine, make_policy(policy, pcfg))
    collector = CheckingCollector(sched)
    backend = FunctionBackend(lambda out: 0.005 + 1e-4 * out.batch.num_tokens + 1e-6 * out.batch.decode_context_tokens)
    stats = Simulator(specs, sched, backend, collector, num_requests_hint=len(specs)).run()
    return stats, collector, sched


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workloads(), engine_configs(), st.sampled_from(POLICIES),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from([0.5, 1.0, 3.0])),
)
def test_invariants(specs: list[RequestSpec], engine: EngineConfig, policy: str, weights: dict[str, float]) -> None:
    stats, collector, sched = simulate(specs, engine, policy, weights)
    records = collector.records
    # every request is accounted for: finished, or rejected with a reason; nothing left running
    assert len(records) == len(specs) == stats.num_arrivals
    assert sorted(r.request_id for r in records) == sorted(s.request_id for s in specs)
    assert not stats.is_truncated
    for r in records:
        assert r.is_finished != (r.reject_reason is not None), r
        if r.is_finished:
            assert r.num_output_tokens == r.num_requested_tokens
            assert r.arrival_time <= r.first_scheduled_time <= r.first_token_time <= r.finish_time
        else:
            assert r.reject_reason
    assert stats.num_finished + stats.num_rejected == len(specs)
    # KV: everything returned to the pool, nothing waiting or running
    assert sched.kv.num_free == sched.kv.num_blocks
    assert not sched.running and sched.policy.num_waiting == 0
    # tokens conserved: what steps reported generating is what finished requests hold
    by_tenant: dict[str, int] = {}
    prompt_by_tenant: dict[str, int] = {}
    for r in records:
        if r.is_finished:
            by_tenant[r.tenant] = by_tenant.get(r.tenant, 0) + r.num_output_tokens
            prompt_by_tenant[r.tenant] = prompt_by_tenant.get(r.tenant, 0) + r.num_prompt_tokens
    assert {t: n for t, n in collector.output_tokens.items() if n} == by_tenant
    for tenant, p in prompt_by_tenant.items():
        assert collector.prefill_tokens[tenant] >= p  # recompute after preemption only adds
    if engine.mode == "slora":
        assert collector.num_preemptions == 0
    else:
        assert collector.num_preemptions == sched.num_preemptions
    # determinism: same inputs, same records and series
    again = simulate(specs, engine, policy, weights)
    assert again[1].records == records and again[1].series.columns == collector.series.columns


def _same_dirs(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert {"config.json", "summary.json", "requests.csv", "steps.csv", "service.csv", "counters.csv"} <= set(names)
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, mismatch


def test_same_seed_byte_identical_run_dir(tmp_path: Path) -> None:
    for i, cfg in enumerate([
        RunConfig(policy="vtc", duration_s=60, num_kv_blocks=120, seed=3),
        RunConfig(policy="vtc-predict", duration_s=40, engine_mode="slora", seed=5),
    ]):
        first = write_run_dir(run_simulation(cfg), tmp_path / f"{i}-a")
        second = write_run_dir(run_simulation(cfg), tmp_path / f"{i}-b")
        _same_dirs(first, second)


def test_different_seed_changes_the_run(tmp_path: Path) -> None:
    a = write_run_dir(run_simulation(RunConfig(policy="vtc", duration_s=40, seed=1)), tmp_path / "a")
    b = write_run_dir(run_simulation(RunConfig(policy="vtc", duration_s=40, seed=2)), tmp_path / "b")
    assert (a / "requests.csv").read_bytes() != (b / "requests.csv").read_bytes()
