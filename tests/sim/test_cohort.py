"""The decode cohort (lazy decoding) changes nothing a user can see, to the bit.

Whole simulations run twice, with and without the cohort (decode-run folding on in both),
must give identical request records, time series and policy counters. The workloads force
every path the cohort has: preemption and a token budget smaller than the cohort (both
disband it), recomputed requests rejoining, a policy that reads running requests'
progress (Equinox's predicted-KV admission), a chunk-less engine, and a run cut short.
"""

from __future__ import annotations

import random
from typing import Any

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


def workload(seed: int, n: int, rate: float, tenants: int, max_output: int = 300) -> list[RequestSpec]:
    rng = random.Random(seed)
    t, out = 0.0, []
    for i in range(n):
        t += rng.expovariate(rate)
        out.append(RequestSpec(f"r{i}", f"t{rng.randrange(tenants)}", t, rng.randint(1, 600),
                               rng.randint(1, max_output)))
    return out


def simulate(specs: list[RequestSpec], policy: str, engine: EngineConfig, lazy: bool,
             until: float | None = None) -> dict[str, Any]:
    dep = make_deployment("a100-80gb", "llama-2-7b")
    pol = make_policy(policy, PolicyConfig(rpm_limit=120.0 if policy == "rpm" else None))
    sched = make_engine(engine, pol)
    coll = Collector(0.5, lambda r: dep.flops(r.batch))
    stats = Simulator(specs, sched, CostModelBackend(build_cost_model("roofline", dep)), coll,
                      until=until, lazy_decode=lazy).run()
    return {
        "stats": stats, "records": coll.records, "columns": coll.series.columns, "service": coll.series.service,
        "counters": coll.series.counters, "final_counters": dict(pol.counters()),
        "preemptions": sched.num_preemptions, "free_blocks": sched.kv.num_free, "cohort": sched._cohort,
    }


def assert_identical(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["records"] == b["records"]  # same order; every time, count, preemption and ITL
    assert a["stats"] == b["stats"]
    assert a["columns"] == b["columns"]  # exact floats, not approx
    assert a["service"] == b["service"] and a["counters"] == b["counters"]
    assert a["final_counters"] == b["final_counters"]
    assert a["preemptions"] == b["preemptions"] and a["free_blocks"] == b["free_blocks"]


@pytest.mark.parametrize("policy", ["fcfs", "vtc", "lcf", "vtc-predict", "equinox", "rpm"])
@pytest.mark.parametrize("blocks", [60, 5000])  # KV-scarce (preemptions) and plenty
def test_cohort_matches_eager_decoding(policy: str, blocks: int) -> None:
    specs = workload(7, 250, 12.0, 4)
    engine = EngineConfig(num_kv_blocks=blocks, max_num_batched_tokens=512)
    lazy, eager = simulate(specs, policy, engine, True), simulate(specs, policy, engine, False)
    assert lazy["cohort"] is not None and eager["cohort"] is None
    assert_identical(lazy, eager)
    assert lazy["stats"].num_finished + lazy["stats"].num_rejected == len(specs)
    if blocks == 60 and policy != "rpm":
        assert lazy["preemptions"] > 0  # the disband path ran


def test_cohort_with_a_budget_smaller_than_the_batch() -> None:
    specs = workload(3, 200, 30.0, 3, max_output=200)
    engine = EngineConfig(num_kv_blocks=5000, max_num_batched_tokens=24, max_num_seqs=64)
    lazy, eager = simulate(specs, "vtc", engine, True), simulate(specs, "vtc", engine, False)
    assert_identical(lazy, eager)
    assert max(r.max_itl_s for r in lazy["records"]) > 0


def test_cohort_without_chunked_prefill() -> None:
    specs = workload(5, 200, 15.0, 3)
    engine = EngineConfig(num_kv_blocks=300, max_num_batched_tokens=1024, enable_chunked_prefill=False)
    assert_identical(simulate(specs, "vtc", engine, True), simulate(specs, "vtc", engine, False))


@pytest.mark.parametrize("policy", ["fcfs", "vtc"])
@pytest.mark.parametrize("blocks", [80, 5000])
def test_cohort_with_a_long_prefill_threshold(policy: str, blocks: int) -> None:
    # Capped chunks leave prefilling requests ahead of decoding ones in running order: with
    # the budget binding, vLLM's running-order pass is not decodes-first (the cohort steps aside).
    specs = workload(11, 250, 20.0, 3)
    engine = EngineConfig(num_kv_blocks=blocks, max_num_batched_tokens=160, long_prefill_token_threshold=48)
    lazy, eager = simulate(specs, policy, engine, True), simulate(specs, policy, engine, False)
    assert_identical(lazy, eager)
    assert lazy["stats"].num_finished == len(specs)


def test_a_run_cut_short_reports_up_to_date_requests() -> None:
    specs = workload(9, 300, 10.0, 3)
    engine = EngineConfig(num_kv_blocks=5000)
    lazy, eager = simulate(specs, "vtc", engine, True, until=12.0), simulate(specs, "vtc", engine, False, until=12.0)
    assert lazy["stats"].is_truncated
    unfinished = [r for r in lazy["records"] if r.finish_time is None and r.first_token_time is not None]
    assert unfinished and any(r.num_output_tokens > 1 for r in unfinished)  # cohort members, brought up to date
    assert_identical(lazy, eager)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), policy=st.sampled_from(["fcfs", "vtc", "equinox"]),
       blocks=st.integers(30, 600), budget=st.sampled_from([16, 64, 512, 2048]),
       rate=st.sampled_from([2.0, 10.0, 40.0]))
def test_cohort_matches_eager_on_random_workloads(seed: int, policy: str, blocks: int, budget: int,
                                                  rate: float) -> None:
    specs = workload(seed, 120, rate, 3)
    engine = EngineConfig(num_kv_blocks=blocks, max_num_batched_tokens=budget, max_num_seqs=48)
    assert_identical(simulate(specs, policy, engine, True), simulate(specs, policy, engine, False))


def test_runs_end_with_the_iteration_that_crosses_an_arrival() -> None:
    """The decode iteration in flight when a request arrives joins the run before it."""
    specs = workload(11, 200, 4.0, 3)
    dep = make_deployment("a100-80gb", "llama-2-7b")
    results = []
    for fast in (True, False):
        sched = make_engine(EngineConfig(num_kv_blocks=5000), make_policy("vtc"))
        crossings = 0
        inner = sched.apply_crossing_step

        def counting(run, inner=inner):  # type: ignore[no-untyped-def]
            nonlocal crossings
            crossings += 1
            return inner(run)

        sched.apply_crossing_step = counting  # type: ignore[method-assign]
        coll = Collector(0.5, lambda r: dep.flops(r.batch))
        Simulator(specs, sched, CostModelBackend(build_cost_model("roofline", dep)), coll, fast_forward=fast).run()
        results.append((coll.records, coll.series.columns, coll.series.service, crossings))
    (fast_records, fast_cols, fast_service, fast_crossings), (slow_records, slow_cols, slow_service, _) = results
    assert fast_crossings > 50
    assert fast_records == slow_records and fast_service == slow_service
    for col in ("num_steps", "num_seqs", "num_tokens", "num_decode_seqs", "num_waiting", "num_running"):
        assert fast_cols[col] == slow_cols[col], col


def test_equinox_crosses_arrivals_as_it_would_step_by_step() -> None:
    # Equinox's adaptive batching sets each iteration's limits from what it has just learnt, so
    # the crossing iteration's limits are asked when the run folds (after its reports), and
    # everything recorded, the budgets and the counters included, is as without crossing.
    specs = workload(11, 160, 4.0, 3)
    dep = make_deployment("a100-80gb", "llama-2-7b")
    results = []
    for is_crossing in (True, False):
        policy = make_policy("equinox")
        if not is_crossing:
            policy.batch_limits_floor = lambda default: None  # type: ignore[method-assign]
        sched = make_engine(EngineConfig(num_kv_blocks=5000), policy)
        crossings = 0
        inner = sched.apply_crossing_step

        def counting(run, inner=inner):  # type: ignore[no-untyped-def]
            nonlocal crossings
            crossings += 1
            return inner(run)

        sched.apply_crossing_step = counting  # type: ignore[method-assign]
        coll = Collector(0.5, lambda r: dep.flops(r.batch))
        Simulator(specs, sched, CostModelBackend(build_cost_model("roofline", dep)), coll).run()
        results.append((coll.records, coll.series.columns, coll.series.service, coll.series.counters, crossings))
    (records, cols, service, counters, num_crossed), (ref_records, ref_cols, ref_service, ref_counters, none) = results
    assert num_crossed > 20 and none == 0
    assert records == ref_records and service == ref_service and counters == ref_counters
    assert cols == ref_cols


@pytest.mark.parametrize("blocks", [60, 400, 5000])  # preempting, tight, plenty
def test_the_engines_kv_sums_are_the_policys_walk_at_every_read(blocks: int) -> None:
    """Equinox's KV fair share reads the engine's per-tenant sums (`bind_kv_held`: the cohort's, without
    bringing every member up to date); at every read they are what walking the running requests gives."""
    from equinox.scheduling.policies.equinox import EquinoxPolicy

    reads: list[int] = []

    class Checked(EquinoxPolicy):
        def _kv_held(self) -> dict[str, float]:
            fast = super()._kv_held()
            host, self._held_of = self._held_of, None
            try:
                walked = super()._kv_held()
            finally:
                self._held_of = host
            assert host is not None and fast == walked, (fast, walked)
            reads.append(len(fast))
            return fast

    dep = make_deployment("a100-80gb", "llama-2-7b")
    sched = make_engine(EngineConfig(num_kv_blocks=blocks, max_num_batched_tokens=512), Checked(PolicyConfig()))
    coll = Collector(0.5, lambda r: dep.flops(r.batch))
    specs = workload(11, 300, 14.0, 5)
    stats = Simulator(specs, sched, CostModelBackend(build_cost_model("roofline", dep)), coll, lazy_decode=True).run()
    assert sched._cohort is not None and stats.num_finished + stats.num_rejected == len(specs)
    assert len(reads) > 20 and max(reads) > 1  # read often, with several tenants holding KV
