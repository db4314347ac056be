"""Equinox vs VTC vs FCFS on simulated GPUs: the issue-4 measurement, printed as Markdown tables.

    python benchmarks/equinox_eval.py                 # full: 2 platforms x 4 workloads x 2 loads + ablation
    python benchmarks/equinox_eval.py --quick         # shorter traces, one load level

Load levels are relative to each platform's measured capacity on each workload: a
short saturated FCFS run gives the capacity in requests/s, and the workload's rates
are scaled so the offered load is `rho` times that capacity.

Metric definitions (the same in every table):
- tok/s: (prompt + output) tokens of finished requests / (last finish - first arrival)
- TTFT: mean time to first token over finished requests, seconds (p90 also shown)
- svc diff: VTC's service difference, tokens/s, mean over 60 s windows after a 30 s warm-up
- Jain: Jain's index of weighted service relative to weighted max-min fair share, mean over windows
- busy: fraction of the span the engine was computing an iteration (GPU busy)
- MFU: model FLOPs / (span x peak FLOP/s)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from equinox.config import RunConfig
from equinox.sim.engine.slora import COMPARISON_MAX_REQ_TOTAL_LEN
from equinox.sim.run import run_simulation

PLATFORMS = (("a100-80gb", "llama-2-7b"), ("a10g", "llama-2-7b"))
DURATION_FACTOR = {"a10g": 3.0}  # the A10G serves ~8x fewer requests/s: longer traces, similar sample sizes
WORKLOADS = ("overload", "poisson_short_long", "sharegpt", "servegen-multitenant")
ABLATIONS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("equinox (defaults)", {}, "vllm"),
    ("- proactive charging", {"proactive": False}, "vllm"),
    ("- adaptive batching", {"adaptive_batching": False}, "vllm"),
    ("- predicted KV admission", {"kv_admission": False}, "vllm"),
    ("- shortest prompt first", {"shortest_prompt_first": False}, "vllm"),
    ("- stall-free engine (slora)", {}, "slora"),
    ("+ latency discount (f_min=0.5)", {"f_min": 0.5}, "vllm"),
    ("+ RFC (beta=0.1)", {"alpha": 0.9, "beta": 0.1}, "vllm"),
    ("DESIGN.md's reading (alpha=beta=0.5, f_min=0.5)", {"alpha": 0.5, "beta": 0.5, "f_min": 0.5}, "vllm"),
    ("all off (= VTC)", {"proactive": False, "adaptive_batching": False, "kv_admission": False,
                         "shortest_prompt_first": False}, "vllm"),
)


@dataclass(frozen=True)
class Job:
    """One simulated run."""

    key: tuple[Any, ...]
    config: RunConfig


def run_job(job: Job) -> tuple[tuple[Any, ...], dict[str, float]]:
    """Run one configuration and keep the headline numbers."""
    r = run_simulation(job.config)
    s = r.summary
    return job.key, {
        "tok_s": s.throughput.tokens_per_s, "ttft": s.latency.ttft.mean, "ttft_p90": s.latency.ttft.p90,
        "tpot": s.latency.tpot.mean, "sd_mean": s.fairness.service_diff_mean, "sd_max": s.fairness.service_diff_max,
        "jain": s.fairness.jain_mean, "busy": s.utilisation.busy_fraction, "mfu": s.utilisation.mfu,
        "preempt": float(s.num_preemptions), "rejected": float(s.throughput.num_rejected),
        "unfinished": float(s.throughput.num_unfinished), "wall": r.wall_s,
    }


def capacity_scale(platform: tuple[str, str], workload: str, rho: float, duration: float) -> float:
    """Rate scale that makes the offered load `rho` x the platform's saturated capacity."""
    probe = RunConfig(workload=workload, policy="fcfs", gpu=platform[0], model=platform[1],
                      duration_s=60.0, rate_scale=20.0)
    r = run_simulation(probe)
    reqs = r.workload.requests
    tokens_per_req = sum(q.num_prompt_tokens + q.num_generated_tokens for q in reqs) / len(reqs)
    capacity_req_s = r.summary.throughput.tokens_per_s / tokens_per_req
    base_rate = len(reqs) / 20.0 / 60.0  # requests/s of the workload at rate_scale 1
    return rho * capacity_req_s / base_rate


def fmt(x: float, digits: int = 1) -> str:
    """Markdown cell."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}" if abs(x) >= 1 else f"{x:.3f}"


def pct(new: float, old: float) -> str:
    """Relative change."""
    if not old or math.isnan(old) or math.isnan(new):
        return "n/a"
    return f"{(new / old - 1) * 100:+.0f}%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter traces and one load level")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--duration", type=float, default=None)
    args = ap.parse_args()
    duration = args.duration or (120.0 if args.quick else 300.0)
    loads = (1.1,) if args.quick else (0.9, 1.2)
    started = time.time()
    scales: dict[tuple[Any, ...], float] = {}
    for plat in PLATFORMS:
        for wl in WORKLOADS:
            for rho in loads:
                scales[(plat, wl, rho)] = capacity_scale(plat, wl, rho, duration)
    jobs: list[Job] = []
    for (plat, wl, rho), scale in scales.items():
        base = RunConfig(workload=wl, gpu=plat[0], model=plat[1], rate_scale=scale,
                         duration_s=duration * DURATION_FACTOR.get(plat[0], 1.0))
        jobs.append(Job(("main", plat, wl, rho, "vtc@slora"), base.replace(
            policy="vtc", engine_mode="slora", max_req_total_len=COMPARISON_MAX_REQ_TOTAL_LEN)))
        for pol in ("fcfs", "vtc", "equinox"):
            jobs.append(Job(("main", plat, wl, rho, pol), base.replace(policy=pol)))
    ab_rho = loads[-1]
    for wl in WORKLOADS:
        plat = PLATFORMS[0]
        base = RunConfig(workload=wl, gpu=plat[0], model=plat[1], duration_s=duration,
                         rate_scale=scales[(plat, wl, ab_rho)], policy="equinox")
        for name, params, engine in ABLATIONS:
            config = base.replace(policy_params=params, engine_mode=engine,
                                  max_req_total_len=COMPARISON_MAX_REQ_TOTAL_LEN)
            jobs.append(Job(("ablation", plat, wl, ab_rho, name), config))
    results: dict[tuple[Any, ...], dict[str, float]] = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for key, row in pool.map(run_job, jobs):
            results[key] = row
    print(f"# Equinox evaluation ({'quick' if args.quick else 'full'}; {duration:.0f} s traces; "
          f"{len(jobs)} runs in {time.time() - started:.0f} s)\n")
    print(__doc__.split("Metric definitions", 1)[1].replace("(the same in every table):", "Metric definitions:"))
    for plat in PLATFORMS:
        for rho in loads:
            print(f"\n## {plat[1]} on {plat[0]}, offered load {rho:.1f} x capacity\n")
            print("| workload | policy (engine) | tok/s | TTFT s | TTFT p90 s | TPOT s | svc diff | Jain | busy | MFU "
                  "| preempt |")
            print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for wl in WORKLOADS:
                for pol, label in (("vtc@slora", "VTC (slora)"), ("fcfs", "FCFS (vllm)"), ("vtc", "VTC (vllm)"),
                                   ("equinox", "Equinox (vllm)")):
                    r = results[("main", plat, wl, rho, pol)]
                    print(f"| {wl} | {label} | {fmt(r['tok_s'])} | {fmt(r['ttft'], 2)} | {fmt(r['ttft_p90'], 2)} | "
                          f"{fmt(r['tpot'], 3)} | {fmt(r['sd_mean'])} | {r['jain']:.3f} | {r['busy']:.2f} | "
                          f"{r['mfu']:.3f} | {r['preempt']:.0f} |")
            print("\nClaims check (Equinox vs VTC):\n")
            print("| workload | artifact engine: throughput | TTFT | Jain | busy | same engine: TTFT | Jain | "
                  "svc diff | throughput vs FCFS |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for wl in WORKLOADS:
                e = results[("main", plat, wl, rho, "equinox")]
                a = results[("main", plat, wl, rho, "vtc@slora")]
                v = results[("main", plat, wl, rho, "vtc")]
                f = results[("main", plat, wl, rho, "fcfs")]
                print(f"| {wl} | {e['tok_s'] / a['tok_s']:.2f}x | {pct(e['ttft'], a['ttft'])} | "
                      f"{pct(e['jain'], a['jain'])} | "
                      f"{e['busy']:.0%} | {pct(e['ttft'], v['ttft'])} | {pct(e['jain'], v['jain'])} | "
                      f"{pct(e['sd_mean'], v['sd_mean'])} | {pct(e['tok_s'], f['tok_s'])} |")
    plat = PLATFORMS[0]
    print(f"\n## Ablation: {plat[1]} on {plat[0]}, offered load {ab_rho:.1f} x capacity (each row switches one "
          "component off)\n")
    print("| workload | variant | tok/s | TTFT s | TPOT s | svc diff | Jain | MFU | preempt |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for wl in WORKLOADS:
        for name, _, _ in ABLATIONS:
            r = results[("ablation", plat, wl, ab_rho, name)]
            print(f"| {wl} | {name} | {fmt(r['tok_s'])} | {fmt(r['ttft'], 2)} | {fmt(r['tpot'], 3)} | "
                  f"{fmt(r['sd_mean'])} | {r['jain']:.3f} | {r['mfu']:.3f} | {r['preempt']:.0f} |")
    print("\nRate scales used: " + ", ".join(f"{p[0]}/{w}/{r:.1f}: {s:.2f}" for (p, w, r), s in scales.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
