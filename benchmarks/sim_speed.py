"""Simulator speed and peak memory at 10k, 100k and 1M requests (issue #2, item 11).

Prints requests simulated per second, wall seconds, steps per second and peak memory.
The workload is built here with a seeded RNG (ShareGPT-like log-normal lengths, Poisson
arrivals, several tenants) so it needs no workload presets. Target: 1M requests in
under 60 s on one core.

    PYTHONPATH=src python benchmarks/sim_speed.py                    # 10k and 100k
    PYTHONPATH=src python benchmarks/sim_speed.py --sizes 1000000    # the 1M target
    PYTHONPATH=src python benchmarks/sim_speed.py --sizes 10000 --profile   # cProfile top 25
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import pstats
import random
import resource
import sys
import time
import tracemalloc

from equinox.metrics.collector import Collector
from equinox.request import RequestSpec
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policy import make_policy
from equinox.sim.backend import CostModelBackend
from equinox.sim.cost_models import default_cost_model
from equinox.sim.engine import EngineConfig, make_engine
from equinox.sim.hardware import make_deployment
from equinox.sim.loop import Simulator


def sharegpt_like(num_requests: int, *, seed: int, rate: float, num_tenants: int) -> list[RequestSpec]:
    """Poisson arrivals at `rate` req/s, log-normal prompt/output lengths (medians ~160/140 tokens)."""
    rng = random.Random(seed)
    t = 0.0
    out = []
    for i in range(num_requests):
        t += rng.expovariate(rate)
        prompt = min(2048, max(1, int(rng.lognormvariate(5.1, 1.0))))
        output = min(1024, max(1, int(rng.lognormvariate(4.9, 0.9))))
        tenant = f"tenant-{min(num_tenants - 1, int(rng.paretovariate(1.2)) - 1)}"
        out.append(RequestSpec(f"r{i}", tenant, t, prompt, output))
    return out


def run_once(args: argparse.Namespace, size: int) -> dict[str, float]:
    """Simulate `size` requests; return the figures."""
    specs = sharegpt_like(size, seed=args.seed, rate=args.rate, num_tenants=args.tenants)
    dep = make_deployment(args.gpu, args.model)
    engine = EngineConfig(mode=args.engine, num_kv_blocks=dep.num_kv_blocks(16), max_num_seqs=args.max_num_seqs)
    policy = make_policy(args.policy, PolicyConfig())
    sched = make_engine(engine, policy)
    collector = Collector(1.0, lambda report: dep.flops(report.batch))
    sim = Simulator(specs, sched, CostModelBackend(default_cost_model(dep)), collector, num_requests_hint=size)
    gc.collect()
    if args.tracemalloc:
        tracemalloc.start()
    started = time.perf_counter()
    cpu0 = time.process_time()
    if args.profile:
        prof = cProfile.Profile()
        stats = prof.runcall(sim.run)
    else:
        stats = sim.run()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if args.tracemalloc else math.nan
    if args.tracemalloc:
        tracemalloc.stop()
    if args.profile:
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "requests": size, "finished": stats.num_finished, "steps": stats.num_steps, "sim_time_s": stats.end_time,
        "wall_s": wall, "cpu_s": cpu, "req_per_s": size / wall, "steps_per_s": stats.num_steps / wall,
        "peak_rss_mib": rss_mib, "traced_peak_mib": traced_peak,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000", help="comma-separated request counts (1000000 for the target)")
    p.add_argument("--policy", default="vtc")
    p.add_argument("--engine", default="vllm", choices=["vllm", "slora"])
    p.add_argument("--gpu", default="a100-80gb")
    p.add_argument("--model", default="llama-2-7b")
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--rate", type=float, default=8.0, help="arrival rate, req/s (default keeps a100+7b ~busy)")
    p.add_argument("--tenants", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tracemalloc", action="store_true", help="also trace Python allocations (slows the run ~2x)")
    p.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    args = p.parse_args()
    header = (f"{'requests':>9} {'finished':>9} {'steps':>9} {'sim_s':>9} {'wall_s':>8} {'cpu_s':>8} {'req/s':>8} "
              f"{'steps/s':>8} {'peak_rss_MiB':>12} {'traced_MiB':>10}")
    print(f"policy {args.policy}, engine {args.engine}, {args.model}@{args.gpu}, rate {args.rate}/s, "
          f"{args.tenants} tenants")
    print(header)
    for size in (int(s) for s in args.sizes.split(",")):
        r = run_once(args, size)
        print(f"{r['requests']:>9} {r['finished']:>9} {r['steps']:>9} {r['sim_time_s']:>9.0f} {r['wall_s']:>8.1f} "
              f"{r['cpu_s']:>8.1f} {r['req_per_s']:>8.0f} {r['steps_per_s']:>8.0f} {r['peak_rss_mib']:>12.0f} "
              f"{r['traced_peak_mib']:>10.1f}",
              flush=True)


if __name__ == "__main__":
    main()
