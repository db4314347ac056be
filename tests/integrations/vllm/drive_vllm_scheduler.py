"""Drive vLLM's own V1 `Scheduler` without a model and print its decisions, step by step, as JSON.

Run with the vLLM environment's Python (`.venv-vllm/bin/python`): reads a workload (or a
list of them) as JSON on stdin, writes `{"steps": [...]}` (or a list) on stdout. The
scheduler is built as vLLM's unit tests build it (`tests/v1/core/utils.py`
`create_scheduler`: `VllmConfig` from `SchedulerConfig`, `CacheConfig` and a config-only
local model, a one-group `KVCacheConfig`) and fed
`ModelRunnerOutput`s with fake sampled tokens, so only scheduling decisions are exercised.

Workload: `{"config": {max_num_batched_tokens, max_num_seqs, block_size, num_kv_blocks,
enable_chunked_prefill, long_prefill_token_threshold, async_scheduling}, "requests":
[{"id", "arrival_step", "prompt", "output", "max_tokens"}]}`. `num_kv_blocks` counts usable
blocks as Equinox's engine does; vLLM's pool gets one more (its null block). A request is
added before the schedule call of step `arrival_step` (steps count from 1). It stops after
`output` tokens: by `max_tokens` when `max_tokens == output`, else by an EOS token.

With `async_scheduling`, the calls follow vLLM's engine loop with a batch queue of two
(`EngineCore.step_with_batch_queue`): schedule step n, then fold step n-1's output, so step
n is planned before step n-1's sampled tokens are known. A request that arrives in step
s's slot is then added before the schedule call of step s + 1 (the call made while step s
runs); see docs/algorithm.md ("vLLM engine model").

Each step: `{"step", "scheduled": [[id, tokens], ...] (vLLM's order), "preempted": [id, ...],
"finished": [id, ...]}` (finished: requests whose last token came out of that step).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

EOS_TOKEN_ID = 2
TOKEN_ID = 7  # every fake sampled token (never EOS)

TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32,
    "max_position_embeddings": 1 << 20, "vocab_size": 256, "bos_token_id": 1, "eos_token_id": EOS_TOKEN_ID,
    "torch_dtype": "float16", "rms_norm_eps": 1e-6,
}


def build_scheduler(cfg: dict[str, Any], max_model_len: int, model_dir: Path) -> Any:
    """vLLM's Scheduler (AsyncScheduler with async_scheduling) as `create_scheduler` builds it."""
    import torch
    from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.core.single_type_kv_cache_manager import register_all_kvcache_specs
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.structured_output import StructuredOutputManager

    block_size = cfg["block_size"]
    num_blocks = cfg["num_kv_blocks"] + 1  # vLLM keeps one block back (the null block)
    model_config = ModelConfig(model=str(model_dir), dtype="float16", seed=0, skip_tokenizer_init=True,
                               max_model_len=max_model_len)
    scheduler_config = SchedulerConfig(
        max_num_seqs=cfg["max_num_seqs"], max_num_batched_tokens=cfg["max_num_batched_tokens"],
        max_model_len=max_model_len, long_prefill_token_threshold=cfg.get("long_prefill_token_threshold", 0),
        enable_chunked_prefill=cfg["enable_chunked_prefill"], async_scheduling=cfg.get("async_scheduling", False),
        is_encoder_decoder=False, policy="fcfs",
    )
    cache_config = CacheConfig(block_size=block_size, gpu_memory_utilization=0.9, cache_dtype="auto",
                               enable_prefix_caching=False)
    vllm_config = VllmConfig(scheduler_config=scheduler_config, model_config=model_config, cache_config=cache_config)
    spec = FullAttentionSpec(block_size=block_size, num_kv_heads=1, head_size=1, dtype=torch.float32)
    kv_cache_config = KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[],
                                    kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)])
    cache_config.num_gpu_blocks = num_blocks
    register_all_kvcache_specs(vllm_config)
    cls = AsyncScheduler if cfg.get("async_scheduling") else Scheduler
    return cls(vllm_config=vllm_config, kv_cache_config=kv_cache_config, block_size=block_size, log_stats=False,
               structured_output_manager=StructuredOutputManager(vllm_config))


def make_request(spec: dict[str, Any], step: int) -> Any:
    """A vLLM Request with `prompt` tokens that stops after `output` tokens."""
    from vllm.sampling_params import SamplingParams
    from vllm.v1.request import Request

    max_tokens = spec.get("max_tokens") or spec["output"]
    by_length = max_tokens == spec["output"]
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=by_length)
    params.update_from_generation_config({}, EOS_TOKEN_ID)
    return Request(request_id=spec["id"], prompt_token_ids=[TOKEN_ID] * spec["prompt"], sampling_params=params,
                   pooling_params=None, arrival_time=float(step))


class Driver:
    """Feeds arrivals and fake model outputs to the scheduler and records each step's decisions."""

    def __init__(self, workload: dict[str, Any], model_dir: Path) -> None:
        cfg = workload["config"]
        self.requests = sorted(workload["requests"], key=lambda r: (r["arrival_step"], r["id"]))
        longest = max(r["prompt"] + max(r["output"], r.get("max_tokens") or 0) for r in self.requests)
        max_model_len = longest + 1 if cfg["enable_chunked_prefill"] else cfg["max_num_batched_tokens"]
        self.sched = build_scheduler(cfg, max_model_len, model_dir)
        self.is_async = bool(cfg.get("async_scheduling"))
        self.outputs = {r["id"]: r["output"] for r in self.requests}
        self.num_sampled: dict[str, int] = {}
        self.steps: list[dict[str, Any]] = []
        self.next_arrival = 0

    def add_arrivals(self, step: int) -> None:
        while self.next_arrival < len(self.requests) and self.requests[self.next_arrival]["arrival_step"] <= step:
            spec = self.requests[self.next_arrival]
            self.sched.add_request(make_request(spec, step))
            self.next_arrival += 1

    def schedule(self, step: int) -> tuple[Any, dict[str, bool]]:
        out = self.sched.schedule()
        preempted = sorted(out.preempted_req_ids or ())  # a set in vLLM: order unknown
        scheduled = [[rid, n] for rid, n in out.num_scheduled_tokens.items()]
        # Sampling happens for a request whose scheduled tokens reach the end of its sequence.
        samples = {rid: not self.sched.requests[rid].is_prefill_chunk for rid in out.num_scheduled_tokens}
        self.steps.append({"step": step, "scheduled": scheduled, "preempted": preempted, "finished": []})
        return out, samples

    def fold(self, out: Any, samples: dict[str, bool], step: int) -> None:
        from vllm.v1.outputs import ModelRunnerOutput

        ids = list(out.num_scheduled_tokens)
        tokens: list[list[int]] = []
        for rid in ids:
            if not samples[rid]:
                tokens.append([])
                continue
            k = self.num_sampled[rid] = self.num_sampled.get(rid, 0) + 1
            tokens.append([EOS_TOKEN_ID if k == self.outputs[rid] else TOKEN_ID])
        result = ModelRunnerOutput(req_ids=ids, req_id_to_index={r: i for i, r in enumerate(ids)},
                                   sampled_token_ids=tokens, logprobs=None, prompt_logprobs_dict={}, pooler_output=[])
        finished_before = {rid for rid in ids if self._is_finished(rid)}
        self.sched.update_from_output(out, result)
        finished = [rid for rid in ids if rid not in finished_before and self._is_finished(rid)]
        self.steps[step - 1]["finished"] = finished

    def _is_finished(self, rid: str) -> bool:
        req = self.sched.requests.get(rid)
        return req is None or req.is_finished()

    def run(self, max_steps: int) -> list[dict[str, Any]]:
        in_flight: deque[tuple[Any, dict[str, bool], int]] = deque()
        step = 0
        is_busy = False  # async: the previous step scheduled something (it runs while this one is planned)
        while step < max_steps:
            if self.next_arrival >= len(self.requests) and not self.sched.has_requests() and not in_flight:
                break
            step += 1
            if self.is_async and is_busy:
                # Planned while step n-1 runs: the latest arrivals seen are those of slot n-1.
                self.add_arrivals(step - 1)
                out, samples = self.schedule(step)
                if not out.num_scheduled_tokens and not out.preempted_req_ids:
                    # An empty batch is no step: the engine loop folds step n-1 and plans again.
                    self.steps.pop()
                    self.fold(*in_flight.popleft())
                    self.add_arrivals(step)
                    out, samples = self.schedule(step)
            else:
                self.add_arrivals(step)
                out, samples = self.schedule(step)
            is_busy = bool(out.num_scheduled_tokens)
            in_flight.append((out, samples, step))
            if not self.is_async or len(in_flight) == 2:
                self.fold(*in_flight.popleft())
        while in_flight:
            self.fold(*in_flight.popleft())
        while self.steps and not self.steps[-1]["scheduled"] and not self.steps[-1]["preempted"]:
            self.steps.pop()  # vLLM may plan once more after the last finish (to tell the workers)
        return self.steps


def main() -> int:
    """Read one workload, or a JSON list of them, on stdin; print the steps of each (same shape)."""
    data = json.load(sys.stdin)
    workloads = data if isinstance(data, list) else [data]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        (model_dir / "config.json").write_text(json.dumps(TINY_LLAMA))
        for workload in workloads:
            results.append({"steps": Driver(workload, model_dir).run(workload.get("max_steps", 100_000))})
    json.dump(results if isinstance(data, list) else results[0], sys.stdout)
    return 0


if __name__ == "__main__":
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    logging.disable(logging.WARNING)
    raise SystemExit(main())
