"""Replay a multi-tenant workload against real vLLM under FCFS, VTC and Equinox; print a comparison table.

On one H100 (the default: a Llama-2-7B-shaped model with `--load-format dummy` and a
locally built tokenizer, nothing downloaded) it finishes in under 8 minutes:

    python benchmarks/vllm_gpu_compare.py                      # sharegpt preset, 60 s, 3 policies

On CPU it measures the plug-in with the tiny test model, e.g. the synchronous versus
the asynchronous scheduler base and vLLM's own scheduler:

    .venv-vllm/bin/python benchmarks/vllm_gpu_compare.py --shape tiny --workload flood \\
        --policies vllm,vtc --schedulers sync,async -- --max-num-seqs 32

`--policies` takes registered policy names plus `vllm` (vLLM's own scheduler, no plug-in).
Run it with the Python that has vLLM (or pass --python). Arguments after `--` go to vLLM.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from equinox.integrations.vllm.launcher import ServeSpec, VllmServer, free_port
from equinox.integrations.vllm.loadgen import (
    WORDS,
    PlannedRequest,
    RequestResult,
    flood_plan,
    run_plan,
    send_completion,
)
from equinox.integrations.vllm.metrics import read_snapshot

SCHEDULERS = {
    "auto": "equinox.integrations.vllm.EquinoxScheduler",
    "sync": "equinox.integrations.vllm.EquinoxSyncScheduler",
    "async": "equinox.integrations.vllm.EquinoxAsyncScheduler",
}
GPU_ARGS = ("--load-format", "dummy", "--enforce-eager", "--max-model-len", "4096", "--gpu-memory-utilization", "0.9")
CPU_ARGS = ("--enforce-eager", "--max-model-len", "512")


def build_plan(args: argparse.Namespace, max_model_len: int) -> list[PlannedRequest]:
    """The requests to replay: a workload preset / VTC suite / trace, or the test's `flood`."""
    if args.workload == "flood":
        return flood_plan(args.flood_heavy, 4, 0.5, 100, 128)
    from equinox.workload.presets import resolve

    workload = resolve(args.workload, seed=args.seed, duration_s=args.duration_s, rate_scale=args.rate_scale,
                       num_tenants=args.num_tenants)
    plan = []
    for r in workload.requests:
        prompt_len = max(1, min(r.num_prompt_tokens, max_model_len // 2))
        out_len = max(1, min(r.num_generated_tokens, max_model_len - prompt_len - 16))
        start = zlib.crc32(r.request_id.encode())  # deterministic, distinct prompts
        prompt = " ".join(WORDS[(start + j) % len(WORDS)] for j in range(prompt_len))
        plan.append(PlannedRequest(r.tenant, r.arrival_time, prompt, out_len, num_prompt_tokens=prompt_len))
    return plan


def summarize_run(results: list[RequestResult], wall_s: float) -> dict[str, Any]:
    """Throughput, TTFT and per-tenant service of one run."""
    ok = [r for r in results if r.is_ok]
    tokens = sum(r.num_prompt_tokens + r.num_output_tokens for r in ok)
    ttfts = sorted(r.ttft_s for r in ok if r.ttft_s is not None)
    per_tenant: dict[str, list[RequestResult]] = {}
    for r in results:
        per_tenant.setdefault(r.tenant or "-", []).append(r)
    tenant_ttft = {t: statistics.fmean([x.ttft_s for x in rs if x.ttft_s is not None] or [float("nan")])
                   for t, rs in per_tenant.items()}
    # Share of each tenant's demand that was served (tokens), and Jain's index over those ratios.
    ratios = []
    for rs in per_tenant.values():
        demand = sum(x.num_prompt_tokens + x.num_output_tokens for x in rs) or 1
        ratios.append(sum(x.num_prompt_tokens + x.num_output_tokens for x in rs if x.is_ok) / demand)
    jain = sum(ratios) ** 2 / (len(ratios) * sum(x * x for x in ratios)) if ratios and any(ratios) else float("nan")
    finite = [v for v in tenant_ttft.values() if v == v]
    return {
        "num_requests": len(results), "num_ok": len(ok), "wall_s": wall_s, "tokens_per_s": tokens / wall_s,
        "mean_ttft_s": statistics.fmean(ttfts) if ttfts else float("nan"),
        "p90_ttft_s": ttfts[int(0.9 * (len(ttfts) - 1))] if ttfts else float("nan"),
        "worst_tenant_ttft_s": max(finite, default=float("nan")),
        "best_tenant_ttft_s": min(finite, default=float("nan")),
        "jain_served": jain, "tenant_ttft_s": tenant_ttft,
    }


def run_one(args: argparse.Namespace, model: str, policy: str, scheduler: str, plan: list[PlannedRequest],
            workdir: Path, base_args: tuple[str, ...]) -> dict[str, Any]:
    """Start a server for (policy, scheduler), replay the plan, stop it."""
    name = f"{policy}-{scheduler}"
    metrics_file = workdir / f"{name}-metrics.json"
    spec = ServeSpec(
        model=model, policy=None if policy == "vllm" else policy, metrics_file=str(metrics_file),
        port=free_port(), scheduler_cls=None if policy == "vllm" else SCHEDULERS[scheduler],
        python=args.python, extra_args=(*base_args, *args.vllm_args),
        env={"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "4")},
    )
    started = time.monotonic()
    with VllmServer(spec, workdir / f"{name}.log", startup_timeout_s=args.startup_timeout_s) as server:
        startup_s = time.monotonic() - started
        warm = send_completion(server.base_url, model, PlannedRequest(
            None, 0.0, "def warm_up(value): return value * 2 + 1", 8, stream=False), timeout_s=300)
        if not warm.is_ok:
            raise SystemExit(f"warm-up failed for {name}: {warm.error}\n{server.log_tail()}")
        t0 = time.monotonic()
        results = run_plan(server.base_url, model, plan, timeout_s=args.request_timeout_s)
        row = summarize_run(results, time.monotonic() - t0)
    snapshot = read_snapshot(metrics_file)
    engine = (snapshot or {}).get("engine", {})
    steps = engine.get("num_steps") or 0
    row.update(policy=policy, scheduler="vllm" if policy == "vllm" else scheduler, startup_s=startup_s,
               snapshot=snapshot, overhead_us_per_step=1e6 * engine.get("overhead_s", 0.0) / steps if steps else 0.0)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    """The comparison table (one line per run)."""
    head = (f"{'policy':<10} {'sched':<6} {'ok':>9} {'tok/s':>9} {'TTFT mean':>10} {'TTFT p90':>9} "
            f"{'worst-tenant TTFT':>18} {'best-tenant TTFT':>17} {'Jain':>6} {'eqx us/step':>11}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['policy']:<10} {r['scheduler']:<6} {r['num_ok']:>4}/{r['num_requests']:<4} "
              f"{r['tokens_per_s']:>9.0f} {r['mean_ttft_s']:>10.3f} {r['p90_ttft_s']:>9.3f} "
              f"{r['worst_tenant_ttft_s']:>18.3f} {r['best_tenant_ttft_s']:>17.3f} {r['jain_served']:>6.3f} "
              f"{r['overhead_us_per_step']:>11.0f}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options; everything after `--` goes to vLLM."""
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="sharegpt", help="preset, VTC suite, trace path, or 'flood'")
    p.add_argument("--duration-s", type=float, default=60.0, help="workload duration (default 60 s)")
    p.add_argument("--rate-scale", type=float, default=1.0)
    p.add_argument("--num-tenants", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flood-heavy", type=int, default=128, help="heavy requests of the 'flood' workload")
    p.add_argument("--policies", default="fcfs,vtc,equinox")
    p.add_argument("--schedulers", default="auto", help="comma list of auto, sync, async")
    p.add_argument("--shape", choices=["llama-2-7b", "tiny"], default="llama-2-7b")
    p.add_argument("--model-dir", default=None, help="a model directory to use instead of building one")
    p.add_argument("--python", default=sys.executable, help="Python with vLLM installed")
    p.add_argument("--startup-timeout-s", type=float, default=300.0)
    p.add_argument("--request-timeout-s", type=float, default=300.0)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    args.vllm_args = extra
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the model, run every (policy, scheduler) pair, print the table."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="equinox-vllm-bench-"))
    if args.model_dir:
        model = args.model_dir
    else:
        from equinox.integrations.vllm.tiny_model import build_model

        model = str(build_model(workdir / f"model-{args.shape}", args.shape))
    base_args = GPU_ARGS if args.shape != "tiny" else CPU_ARGS
    max_model_len = int(base_args[base_args.index("--max-model-len") + 1])
    plan = build_plan(args, max_model_len)
    print(f"workload {args.workload}: {len(plan)} requests, {len({r.tenant for r in plan})} tenants; "
          f"model {model} ({args.shape}); logs in {workdir}", flush=True)
    rows: list[dict[str, Any]] = []
    for scheduler in args.schedulers.split(","):
        for policy in args.policies.split(","):
            if policy == "vllm" and any(r["policy"] == "vllm" for r in rows):
                continue
            row = run_one(args, model, policy, scheduler, plan, workdir, base_args)
            rows.append(row)
            print(f"  {policy}/{row['scheduler']}: {row['num_ok']}/{row['num_requests']} ok, "
                  f"{row['tokens_per_s']:.0f} tok/s, startup {row['startup_s']:.0f} s", flush=True)
    print()
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
