"""Simulated fairness across replicas versus the merge interval Δ and the replica count (issue 14).

Two tables, both from the deterministic cluster simulator (same seed, same figures, so they
measure the protocol, not this machine):

1. **Exact counter gap.** Two tenants (demand 1:2, 16-256 prompt and 8-128 output tokens,
   a small KV cache) on N replicas with per-replica counters ("local") or global counters
   merged every Δ. After every iteration the simulator's exact cluster-wide VTC counters are
   sampled. Printed: `even` routing (round-robin, both tenants on every replica): the largest
   change of the gap C_a - C_b within an interval where both wait on every replica, worst over
   `--seeds`, beside docs/algorithm.md's bound 2 (N U + S) for that run (S measured from the
   merges); `uneven` routing (both tenants flood with equal demand, tenant-b reaches replica 0
   only, tenant-a every replica: the case where per-replica counters are not fair per tenant):
   (C_a - C_b) / (C_a + C_b) after 8 simulated seconds (0 %: equal cluster-wide service).
2. **`equinox simulate` service difference** (VTC's windowed metric, the run summary's
   `service_diff_max` / `_mean`, Jain's minimum, throughput) for `-w overload` scaled with N
   (`--rate-scale` = 2 N, both tenants backlogged), round-robin routing, per Δ.

Run: `python benchmarks/cluster_staleness.py [--replicas 1 2 4] [--sync 0.05 0.5 2 10] [--seeds 3]`
(`--no-cli` skips table 2).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from equinox.config import RunConfig
from equinox.request import RequestSpec
from equinox.sim.cluster import ROUTER_FUNCTIONS, ClusterConfig, ClusterSimulator, Replica, Router, build_replicas
from equinox.sim.engine import SchedulerOutput
from equinox.types import StepResult
from equinox.workload.schema import Workload

TENANTS = ("tenant-a", "tenant-b")
W_P, W_Q, NUM_KV_BLOCKS, BLOCK_SIZE = 1.0, 2.0, 32, 16


class Probe(ClusterSimulator):
    """Samples the exact cluster-wide counter gap after every iteration, and what merges carried."""

    samples: list[tuple[bool, float]]
    merge_growth: list[float]

    def _on_step_done(self, replica: Replica, output: SchedulerOutput, result: StepResult) -> None:
        super()._on_step_done(replica, output, result)
        both = all(r.engine.policy.num_waiting_of(t) > 0 for r in self.replicas for t in TENANTS)
        c = self.global_counters().get("counter", {})
        self.samples.append((both, c.get(TENANTS[0], 0.0) - c.get(TENANTS[1], 0.0)))

    def _merge(self) -> None:
        growth = [sum(v for per in r.client.report().deltas.values() for v in per.values())  # type: ignore[union-attr]
                  for r in self.replicas]
        self.merge_growth.append(sum(growth) - min(growth))  # what the others grew, seen from the least busy
        super()._merge()


def _pinned(replicas: Sequence[Replica], spec: RequestSpec, index: int) -> Replica:
    """tenant-b reaches replica 0 only; tenant-a goes round-robin."""
    return replicas[0] if spec.tenant == TENANTS[1] else replicas[index // 2 % len(replicas)]


def uneven(num_replicas: int, sync_s: float | None, seed: int) -> tuple[float, float]:
    """(C_a - C_b, C_a + C_b) after 8 s: both tenants flood (equal demand), tenant-b reaches replica 0 only."""
    rng = random.Random(seed)
    requests = tuple(RequestSpec(f"r{i:05d}", TENANTS[i % 2], i * 0.005 / num_replicas, rng.randint(16, 256),
                                 rng.randint(8, 128)) for i in range(2000 * num_replicas))
    workload = Workload("uneven", requests)
    replicas, _ = build_replicas(RunConfig(policy="vtc", num_kv_blocks=256),
                                 ClusterConfig(num_replicas, "round-robin", sync_s), workload)
    sim = ClusterSimulator(workload.requests, replicas, _pinned, sync_interval_s=sync_s, until=8.0)
    sim.run()
    c = sim.global_counters()["counter"]
    return c[TENANTS[0]] - c[TENANTS[1]], c[TENANTS[0]] + c[TENANTS[1]]


def _spread(samples: list[tuple[bool, float]]) -> float:
    """Largest change of the gap within an interval where both tenants wait on every replica."""
    worst, lo, hi = 0.0, None, None
    for both, gap in samples:
        if not both:
            lo = hi = None
            continue
        lo = gap if lo is None else min(lo, gap)
        hi = gap if hi is None else max(hi, gap)
        worst = max(worst, hi - lo)
    return worst


def probe(num_replicas: int, sync_s: float | None, seed: int, router: Router) -> tuple[float, float]:
    """(spread within backlogged intervals, bound 2 (N U + S)) of one run."""
    rng = random.Random(seed)
    requests = []
    for i in range(60 * num_replicas):
        tenant = TENANTS[0] if rng.random() * 3 < 1 else TENANTS[1]
        requests.append(RequestSpec(f"r{i:04d}", tenant, i * 0.01, rng.randint(16, 256), rng.randint(8, 128)))
    workload = Workload("staleness", tuple(requests))
    replicas, _ = build_replicas(RunConfig(policy="vtc", num_kv_blocks=NUM_KV_BLOCKS),
                                 ClusterConfig(num_replicas, "round-robin", sync_s), workload)
    sim = Probe(workload.requests, replicas, router, sync_interval_s=sync_s)
    sim.samples, sim.merge_growth = [], []
    sim.run()
    u = max(W_P * max(r.num_prompt_tokens for r in requests), W_Q * NUM_KV_BLOCKS * BLOCK_SIZE)
    s = max(sim.merge_growth, default=0.0)
    return _spread(sim.samples), 2 * (num_replicas * u + s)


def gap_table(args: argparse.Namespace) -> None:
    """Table 1: exact counter gaps."""
    print(f"1. exact cluster-wide VTC counter gap, worst of {args.seeds} seeds (weighted tokens)")
    print(f"{'replicas':>8} {'Δ s':>6} {'even: spread':>12} {'bound':>8} {'uneven: gap / total':>19}")
    for n in args.replicas:
        for sync_s in ([None] if n == 1 else [None, *args.sync]):
            runs = [probe(n, sync_s, seed, ROUTER_FUNCTIONS["round-robin"]) for seed in range(args.seeds)]
            worst = max(runs, key=lambda r: r[0])
            label = "-" if n == 1 else ("local" if sync_s is None else f"{sync_s:g}")
            gap, total = uneven(n, sync_s, 0) if n > 1 else (0.0, 1.0)
            skew = "" if n == 1 else f"{100 * gap / total:.1f} %"
            print(f"{n:>8} {label:>6} {worst[0]:>12.0f} {worst[1]:>8.0f} {skew:>19}", flush=True)


def simulate(out: Path, args: argparse.Namespace, num_replicas: int, sync_s: float | None) -> dict[str, float]:
    """One `equinox simulate` cluster run; its fairness and throughput figures."""
    cmd = [sys.executable, "-m", "equinox", "simulate", "-p", "vtc", "-w", "overload", "--duration",
           str(args.duration), "--rate-scale", str(2 * num_replicas), "--replicas", str(num_replicas),
           "--router", "round-robin", "--no-reference", "--no-progress", "-o", str(out)]
    if sync_s is not None:
        cmd += ["--sync-interval", str(sync_s)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    summary = json.loads((out / "summary.json").read_text())
    fairness = summary["fairness"]
    return {"diff_max": fairness["service_diff_max"], "diff_mean": fairness["service_diff_mean"],
            "jain_min": fairness["jain_min"], "tok_s": summary["throughput"]["tokens_per_s"]}


def cli_table(args: argparse.Namespace) -> None:
    """Table 2: what `equinox simulate` reports."""
    print(f"\n2. equinox simulate -p vtc -w overload --rate-scale 2N --duration {args.duration:g} --replicas N "
          "--router round-robin [--sync-interval Δ]")
    print(f"{'replicas':>8} {'Δ s':>6} {'diff max':>9} {'diff mean':>9} {'Jain min':>8} {'tok/s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.replicas:
            for sync_s in ([None] if n == 1 else [None, *args.sync]):
                label = "-" if n == 1 else ("local" if sync_s is None else f"{sync_s:g}")
                r = simulate(Path(tmp) / f"n{n}-{label}", args, n, sync_s)
                print(f"{n:>8} {label:>6} {r['diff_max']:>9.1f} {r['diff_mean']:>9.1f} {r['jain_min']:>8.4f} "
                      f"{r['tok_s']:>8.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--sync", type=float, nargs="+", default=[0.05, 0.5, 2.0, 10.0], help="Δ values, seconds")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=120.0, help="table 2's workload duration, s")
    parser.add_argument("--no-cli", action="store_true", help="skip table 2")
    args = parser.parse_args()
    gap_table(args)
    if not args.no_cli:
        cli_table(args)


if __name__ == "__main__":
    main()
