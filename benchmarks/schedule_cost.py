"""Decision cost of the scheduler at 1, 100 and 10,000 tenants with 100k waiting requests (issue #2, item 11).

Two figures per policy and tenant count:

- policy: microseconds per admission decision (peek + pop, then one output-token charge
  for the admitted tenant and one new arrival so 100k requests keep waiting);
- scheduler: microseconds per `schedule()` + `update_from_result()` iteration of the
  iteration scheduler with 100k waiting and a churning running batch (short requests,
  so every iteration admits and finishes some), and per admission inside it.

Target: cost grows at most logarithmically with tenants and waiting requests. The
backlog is moved out of the cyclic GC (`gc.freeze`) before timing, so one full GC pass
over 100k+ long-lived objects does not land in a 2,000-iteration sample.

    PYTHONPATH=src python benchmarks/schedule_cost.py
    PYTHONPATH=src python benchmarks/schedule_cost.py --tenants 1,100,10000 --waiting 100000 --policies fcfs,vtc
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from equinox.request import Request, RequestSpec
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policy import make_policy
from equinox.sim.engine import EngineConfig, make_engine
from equinox.types import BatchLimits, BatchShape, StepReport, StepResult, TenantUsage


def make_requests(n: int, num_tenants: int, rng: random.Random, start: int = 0) -> list[Request]:
    """`n` requests spread over `num_tenants` tenants (skewed: a few tenants send most)."""
    out = []
    for i in range(start, start + n):
        tenant = f"t{min(num_tenants - 1, int(rng.paretovariate(1.1)) - 1) if num_tenants > 1 else 0}"
        if rng.random() < 0.5:  # half uniform so every tenant is backlogged
            tenant = f"t{rng.randrange(num_tenants)}"
        out.append(Request(RequestSpec(f"r{i}", tenant, 0.0, rng.randint(8, 64), rng.randint(1, 8))))
    return out


def policy_cost(policy_name: str, num_tenants: int, num_waiting: int, num_decisions: int, seed: int) -> float:
    """Microseconds per peek + pop (+ one charge and one arrival to hold the backlog)."""
    rng = random.Random(seed)
    policy = make_policy(policy_name, PolicyConfig())
    for r in make_requests(num_waiting, num_tenants, rng):
        policy.add_request(r, 0.0)
    arrivals = make_requests(num_decisions, num_tenants, rng, start=num_waiting)
    limits = BatchLimits(2048, 256)
    shape = BatchShape()
    gc.collect()
    gc.freeze()  # the backlog is long-lived: keep one full GC pass over it out of the per-decision figure
    started = time.perf_counter()
    for i in range(num_decisions):
        head = policy.peek(1.0)
        policy.pop(head, 1.0)  # type: ignore[arg-type]
        usage = {head.tenant: TenantUsage(num_output_tokens=1)}  # type: ignore[union-attr]
        policy.on_step(StepReport(i, 1.0, 0.01, shape, limits, usage, 0, 1))
        policy.add_request(arrivals[i], 1.0)
    elapsed = time.perf_counter() - started
    gc.unfreeze()
    assert policy.num_waiting == num_waiting
    return elapsed / num_decisions * 1e6


def scheduler_cost(
    policy_name: str, num_tenants: int, num_waiting: int, num_steps: int, seed: int
) -> tuple[float, float]:
    """Microseconds per iteration (schedule + update) and per admission, with `num_waiting` held waiting."""
    rng = random.Random(seed)
    engine = EngineConfig(max_num_batched_tokens=2048, max_num_seqs=64, block_size=16, num_kv_blocks=100_000)
    sched = make_engine(engine, make_policy(policy_name, PolicyConfig()))
    for r in make_requests(num_waiting, num_tenants, rng):
        sched.add_request(r, 0.0)
    fresh = make_requests(num_steps * 64, num_tenants, rng, start=num_waiting)
    k = 0
    admitted = 0
    now = 0.0
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    for _ in range(num_steps):
        out = sched.schedule(now)
        n_new = sum(1 for r, _ in out.scheduled if r.num_computed_tokens == 0)
        admitted += n_new
        sched.update_from_result(out, StepResult(0.01))
        now += 0.01
        for _ in range(n_new):  # hold the backlog constant
            sched.add_request(fresh[k], now)
            k += 1
    elapsed = time.perf_counter() - started
    gc.unfreeze()
    return elapsed / num_steps * 1e6, elapsed / max(admitted, 1) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tenants", default="1,100,10000")
    p.add_argument("--waiting", type=int, default=100_000)
    p.add_argument("--policies", default="fcfs,vtc")
    p.add_argument("--decisions", type=int, default=50_000)
    p.add_argument("--steps", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(f"{args.waiting:,} waiting requests; {args.decisions:,} policy decisions; "
          f"{args.steps:,} scheduler iterations")
    print(f"{'policy':<12} {'tenants':>8} {'us/decision':>12} {'us/iteration':>13} {'us/admission':>13}")
    for policy in args.policies.split(","):
        for n in (int(x) for x in args.tenants.split(",")):
            per_decision = policy_cost(policy, n, args.waiting, args.decisions, args.seed)
            per_step, per_admit = scheduler_cost(policy, n, args.waiting, args.steps, args.seed)
            print(f"{policy:<12} {n:>8} {per_decision:>12.2f} {per_step:>13.1f} {per_admit:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
