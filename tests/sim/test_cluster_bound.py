"""Global fairness across replicas (issue 14, docs/algorithm.md "Global fairness across replicas").

With the global-counter protocol (merges every Δ) and two tenants backlogged on every
replica, the change of the gap between their cluster-wide counters within a backlogged
interval stays within 2 * (N * U + S): N replicas, U = max(w_p * L_input, w_q * M) as
in VTC's bound for one replica (M = one replica's KV tokens), S = the counter growth the
other replicas made between two merges (at most (N - 1) * R * (Δ + one iteration), R a
replica's charge rate). N = 1 is VTC's 2U. Checked with Hypothesis over N, Δ and workloads.
"""

from __future__ import annotations

import importlib.util
import random
from dataclasses import dataclass
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from equinox.config import RunConfig
from equinox.request import RequestSpec
from equinox.sim.cluster import ROUTER_FUNCTIONS, ClusterConfig, ClusterSimulator, Replica, build_replicas
from equinox.workload.schema import Workload

TENANTS = ("tenant-a", "tenant-b")
W_P, W_Q = 1.0, 2.0
ROOT = Path(__file__).resolve().parents[2]


def _load_probe() -> type[ClusterSimulator]:
    """The probe of benchmarks/cluster_staleness.py (one copy: the benchmark's tables and this test sample alike)."""
    spec = importlib.util.spec_from_file_location("cluster_staleness", ROOT / "benchmarks" / "cluster_staleness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.TENANTS == TENANTS
    return module.Probe  # type: ignore[no-any-return]


Probe = _load_probe()


def spread(samples: list[tuple[bool, float]]) -> float:
    worst = 0.0
    lo = hi = None
    for both, gap in samples:
        if not both:
            lo = hi = None
            continue
        lo = gap if lo is None else min(lo, gap)
        hi = gap if hi is None else max(hi, gap)
        worst = max(worst, hi - lo)
    return worst


@dataclass
class Outcome:
    spread: float
    bound: float
    num_backlogged: int


def run(num_replicas: int, sync_interval_s: float, seed: int, num_kv_blocks: int = 32,
        shares: tuple[int, int] = (1, 2)) -> Outcome:
    rng = random.Random(seed)
    requests = []
    for i in range(60 * num_replicas):
        tenant = TENANTS[0] if rng.random() * (shares[0] + shares[1]) < shares[0] else TENANTS[1]
        requests.append(RequestSpec(f"r{i:04d}", tenant, i * 0.01, rng.randint(16, 256), rng.randint(8, 128)))
    workload = Workload("bound", tuple(requests))
    config = RunConfig(policy="vtc", num_kv_blocks=num_kv_blocks)
    cluster = ClusterConfig(num_replicas, "round-robin", sync_interval_s)
    replicas, _ = build_replicas(config, cluster, workload)
    sim = Probe(workload.requests, replicas, ROUTER_FUNCTIONS["round-robin"], sync_interval_s=sync_interval_s)
    sim.samples, sim.merge_growth = [], []
    stats = sim.run()
    assert stats.num_finished == len(requests)
    u = max(W_P * max(r.num_prompt_tokens for r in requests), W_Q * num_kv_blocks * 16)
    s = max(sim.merge_growth, default=0.0)
    return Outcome(spread(sim.samples), 2 * (num_replicas * u + s), sum(1 for b, _ in sim.samples if b))


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 3), st.sampled_from([0.05, 0.5, 2.0, 10.0]), st.integers(0, 1000))
def test_global_counter_gap_within_bound(num_replicas: int, sync_interval_s: float, seed: int) -> None:
    out = run(num_replicas, sync_interval_s, seed)
    assert out.num_backlogged > 20  # both tenants really wait on every replica for a while
    assert out.spread <= out.bound


def test_protocol_breaks_show_up() -> None:
    """The check can fail: replicas that shift onto the merged view with the wrong sign blow the bound."""
    from equinox.scheduling import global_counters

    original = global_counters.CounterClient.apply

    def wrong_sign(self: global_counters.CounterClient, view: dict[str, dict[str, float]]) -> None:
        original(self, {k: {t: -v for t, v in per.items()} for k, per in view.items()})

    global_counters.CounterClient.apply = wrong_sign  # type: ignore[method-assign]
    try:
        out = run(2, 0.5, 3)
    finally:
        global_counters.CounterClient.apply = original  # type: ignore[method-assign]
    assert out.spread > out.bound


def _skewed_router(replicas: list[Replica], spec: RequestSpec, index: int) -> Replica:
    """tenant-b only ever reaches replica 0; tenant-a is spread round-robin."""
    return replicas[0] if spec.tenant == TENANTS[1] else replicas[index // 2 % len(replicas)]


def skewed_service(sync_interval_s: float | None) -> dict[str, float]:
    rng = random.Random(7)
    requests = tuple(
        RequestSpec(f"r{i:04d}", TENANTS[i % 2], i * 0.005, rng.randint(16, 256), rng.randint(8, 128))
        for i in range(2000)
    )
    workload = Workload("skewed", requests)
    config = RunConfig(policy="vtc", num_kv_blocks=256)
    cluster = ClusterConfig(2, "round-robin", sync_interval_s)
    replicas, _ = build_replicas(config, cluster, workload)
    sim = ClusterSimulator(workload.requests, replicas, _skewed_router, sync_interval_s=sync_interval_s,
                           until=8.0)
    sim.run()
    return sim.global_counters()["counter"]


def test_global_counters_even_out_a_tenant_on_fewer_replicas() -> None:
    """A tenant on both replicas gets two shares with per-replica counters; merged counters let the
    replica it shares favour the other tenant, so cluster-wide service comes much closer to equal."""
    local = skewed_service(None)
    merged = skewed_service(0.2)
    gap_local = local[TENANTS[0]] - local[TENANTS[1]]
    gap_merged = merged[TENANTS[0]] - merged[TENANTS[1]]
    assert gap_local > 0
    assert abs(gap_merged) < gap_local / 3
