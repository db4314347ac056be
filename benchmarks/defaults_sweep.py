"""The sweep behind Equinox's defaults: RFC weight beta and discount floor f_min vs VTC.

    python benchmarks/defaults_sweep.py

Prints one line per (GPU, workload, setting): throughput, mean TTFT, VTC's service
difference and Jain's index. Scenarios are the 1.2x-capacity ones of
benchmarks/equinox_eval.py (rate scales as that script measured them).
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from equinox.config import RunConfig
from equinox.sim.run import run_simulation

CASES = (("a100-80gb", "overload", 3.80), ("a100-80gb", "poisson_short_long", 6.16),
         ("a100-80gb", "sharegpt", 0.86), ("a10g", "overload", 0.61), ("a10g", "poisson_short_long", 1.13))


def run(job: tuple[str, str, float, dict[str, Any] | None]) -> str:
    """One simulated run, one printed line."""
    gpu, workload, scale, params = job
    config = RunConfig(workload=workload, gpu=gpu, duration_s=900 if gpu == "a10g" else 300, rate_scale=scale,
                       policy="vtc" if params is None else "equinox", policy_params=params or {})
    s = run_simulation(config).summary
    return (f"{gpu} {workload} {params} {s.throughput.tokens_per_s:.0f} {s.latency.ttft.mean:.2f} "
            f"{s.fairness.service_diff_mean:.1f} {s.fairness.jain_mean:.4f}")


def main() -> int:
    jobs: list[tuple[str, str, float, dict[str, Any] | None]] = []
    for gpu, workload, scale in CASES:
        jobs.append((gpu, workload, scale, None))
        for beta in (0.0, 0.05):
            for f_min in (0.8, 0.9, 1.0):
                jobs.append((gpu, workload, scale, {"beta": beta, "alpha": 1 - beta, "f_min": f_min}))
    print("gpu workload params tok/s ttft_mean_s svc_diff_mean jain")
    with ProcessPoolExecutor(2) as pool:
        for line in pool.map(run, jobs):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
