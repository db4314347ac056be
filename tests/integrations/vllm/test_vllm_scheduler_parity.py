"""The simulator's `vllm` engine decides every step as vLLM 0.32's own V1 Scheduler does (issue 10 item 2).

vLLM's `Scheduler` runs without a model in the vLLM environment (`drive_vllm_scheduler.py`,
fed fake sampled tokens) and `VllmEngine` runs here, on the same random FCFS workloads:
the same arrivals (by step), prompt and output lengths, token budget, `max_num_seqs`,
block size, KV blocks, chunked prefill and long-prefill threshold. KV is tight enough to
preempt, prompts long enough to chunk, and `max_num_seqs` binds. Every step's batch must
agree: which requests, how many tokens each (in vLLM's order), which were preempted,
which finished. Async scheduling is compared against vLLM's `AsyncScheduler` driven in
the engine loop's batch-queue order.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from equinox.request import Request, RequestSpec
from equinox.scheduling.policy import make_policy
from equinox.sim.engine import EngineConfig, make_engine
from equinox.types import StepResult

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[3]
DRIVER = Path(__file__).with_name("drive_vllm_scheduler.py")
SEEDS = range(12)


def random_workload(seed: int, *, is_async: bool = False) -> dict[str, Any]:
    """A workload that chunks, preempts and fills max_num_seqs (varied by seed)."""
    rng = random.Random(seed)
    block_size = rng.choice((4, 8, 16))
    budget = rng.choice((32, 48, 64, 128))
    chunked = rng.random() < 0.8
    max_num_seqs = rng.randint(2, 8)
    threshold = rng.choice((0, 0, budget // 4, budget // 2)) if chunked else 0
    longest_prompt = 3 * budget if chunked else budget // 2
    requests: list[dict[str, Any]] = []
    for i in range(rng.randint(12, 30)):
        prompt = rng.randint(1, longest_prompt)
        # Unchunked, vLLM's max_model_len is the budget: keep prompt + max_tokens below it.
        output = rng.randint(1, 40 if chunked else budget - prompt - 9)
        stops_by_eos = is_async and rng.random() < 0.5
        requests.append({"id": f"r{i}", "arrival_step": rng.randint(1, 40), "prompt": prompt, "output": output,
                         "max_tokens": output + rng.randint(1, 8) if stops_by_eos else output})
    longest = max(r["prompt"] + r["output"] for r in requests)
    # Room for the longest request and a bit more: running requests compete for blocks.
    num_blocks = -(-longest // block_size) + rng.randint(0, 2 * -(-longest // block_size))
    config = {"max_num_batched_tokens": budget, "max_num_seqs": max_num_seqs, "block_size": block_size,
              "num_kv_blocks": num_blocks, "enable_chunked_prefill": chunked,
              "long_prefill_token_threshold": threshold, "async_scheduling": is_async}
    return {"config": config, "requests": requests}


def run_equinox(workload: dict[str, Any]) -> list[dict[str, Any]]:
    """Our `vllm` engine on the workload, one step per time unit, in the driver's step format."""
    cfg = workload["config"]
    engine = make_engine(EngineConfig(
        mode="vllm", max_num_batched_tokens=cfg["max_num_batched_tokens"], max_num_seqs=cfg["max_num_seqs"],
        block_size=cfg["block_size"], num_kv_blocks=cfg["num_kv_blocks"],
        enable_chunked_prefill=cfg["enable_chunked_prefill"],
        long_prefill_token_threshold=cfg["long_prefill_token_threshold"], async_scheduling=cfg["async_scheduling"],
    ), make_policy("fcfs"))
    pending = sorted(workload["requests"], key=lambda r: (r["arrival_step"], r["id"]))
    steps: list[dict[str, Any]] = []
    step = 0
    while pending or engine.has_work:
        step += 1
        while pending and pending[0]["arrival_step"] <= step:
            r = pending.pop(0)
            spec = RequestSpec(r["id"], "t", float(r["arrival_step"]), r["prompt"], r["output"], r["max_tokens"])
            assert engine.add_request(Request(spec), float(step)) is None
        out = engine.schedule(float(step))
        outcome = engine.update_from_result(out, StepResult(1.0))
        steps.append({
            "step": step, "scheduled": [[req.request_id, n] for req, n in out.scheduled],
            "preempted": sorted(req.request_id for req in out.preempted),
            "finished": [req.request_id for req in outcome.finished],
        })
    while steps and not steps[-1]["scheduled"] and not steps[-1]["preempted"]:
        steps.pop()  # async: the plan that releases the last finished requests' KV
    return steps


def run_vllm(python: Path, workloads: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """vLLM's scheduler on each workload (one subprocess for all: importing vLLM is slow)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(python), str(DRIVER)], input=json.dumps(workloads), capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert proc.returncode == 0, f"the vLLM driver failed:\n{proc.stderr[-4000:]}"
    return [result["steps"] for result in json.loads(proc.stdout)]


def first_difference(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> str | None:
    """The first step where the two runs differ, described with its neighbours; None if equal."""
    for i in range(max(len(ours), len(theirs))):
        a = ours[i] if i < len(ours) else None
        b = theirs[i] if i < len(theirs) else None
        if a is not None and b is not None:
            b = {**b, "finished": sorted(b["finished"])}
            a = {**a, "finished": sorted(a["finished"])}
        if a != b:
            context = [(ours[j] if j < len(ours) else None, theirs[j] if j < len(theirs) else None)
                       for j in range(max(0, i - 2), i + 1)]
            lines = [f"step {i + 1} differs:"] + [f"  equinox {x}\n  vllm    {y}" for x, y in context]
            return "\n".join(lines)
    return None


def check(python: Path, workloads: list[dict[str, Any]]) -> None:
    results = run_vllm(python, workloads)
    failures = []
    for seed, (workload, theirs) in enumerate(zip(workloads, results, strict=True)):
        ours = run_equinox(workload)
        diff = first_difference(ours, theirs)
        if diff is not None:
            failures.append(f"seed {seed} config {workload['config']}\n{diff}")
    assert not failures, "\n\n".join(failures)


def mechanisms(workload: dict[str, Any], steps: list[dict[str, Any]]) -> set[str]:
    """Which of the scheduler's mechanisms a run exercised."""
    cfg = workload["config"]
    prompts = {r["id"]: r["prompt"] for r in workload["requests"]}
    seen: set[str] = set()
    finished: set[str] = set()
    for step in steps:
        if step["preempted"]:
            seen.add("preemption")
        if len(step["scheduled"]) == cfg["max_num_seqs"]:
            seen.add("seat limit")
        for rid, n in step["scheduled"]:
            if 1 < n < prompts[rid]:
                seen.add("chunk")
            if n == cfg["long_prefill_token_threshold"]:
                seen.add("threshold")
            if rid in finished:
                seen.add("wasted slot")  # async: scheduled after its EOS
        finished.update(step["finished"])
    return seen


@pytest.mark.parametrize("is_async", [False, True])
def test_workloads_exercise_every_mechanism(is_async: bool) -> None:
    """Guards the comparisons below: the random workloads hit what they are about."""
    seen: set[str] = set()
    for seed in SEEDS:
        workload = random_workload(seed, is_async=is_async)
        seen |= mechanisms(workload, run_equinox(workload))
    expected = {"preemption", "seat limit", "chunk", "threshold"} | ({"wasted slot"} if is_async else set())
    assert seen == expected


def test_vllm_engine_matches_vllm_scheduler_step_for_step(vllm_python: Path) -> None:
    check(vllm_python, [random_workload(seed) for seed in SEEDS])


def test_async_scheduling_matches_vllm_async_scheduler_step_for_step(vllm_python: Path) -> None:
    check(vllm_python, [random_workload(seed, is_async=True) for seed in SEEDS])
