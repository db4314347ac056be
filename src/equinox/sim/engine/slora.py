"""The S-LoRA / LightLLM router the VTC artifact runs on, rule for rule, as an engine model.

Read from `slora/server/router/manager.py` and `req_queue.py` / `vtc_req_queue.py` of the
public Ying1123/VTC-artifact repository (docs/algorithm.md, "Engine models", says it in
full). In our words:

- **Pool.** KV memory is a token-granular pool of `max_total_token_num` tokens (here
  `num_kv_blocks * block_size`); a request holds its prompt after prefill and one more
  token per decode step, and frees everything when it finishes.
- **Admission (`generate_new_batch`).** Waiting requests are taken in the policy's order
  while (a) their prompts together fit `batch_max_tokens`, (b) the batch stays within
  `running_max_req_size` requests, and (c) the *peak* future KV use fits: every running
  and admitted request is assumed to run to its `max_output_len`; sorted by remaining
  output descending, need = max_i(remaining_i * i + sum of (prompt + generated) of the
  first i), which must stay strictly below the pool minus 4 x rank tokens per adapter in
  the batch. The first request that fails ends the batch (no skipping).
- **Loop (`_step`).** With no running batch, a new batch is prefilled as soon as one
  can be formed. Otherwise the running batch decodes; once it has decoded
  `max_wait_tokens` (10) times since the last prefill, every step first tries to form a
  new mini-batch, prefills it alone (a prefill-only iteration, decodes paused) and merges
  it. Prefill and decode never share an iteration, prompts are never chunked, and nothing
  is ever preempted.

`kv_admission = "reserve-all"` keeps the earlier model (reserve prompt + full output up
front, blocks of `block_size`), to show what the peak rule changes.
"""

from __future__ import annotations

from equinox.errors import ConfigError
from equinox.request import Request
from equinox.scheduling.interface import Policy
from equinox.sim.engine.base import Engine
from equinox.sim.engine.config import EngineConfig
from equinox.sim.engine.kv_pool import BlockPool
from equinox.sim.engine.registry import ENGINES
from equinox.types import BatchLimits, BatchShape

KV_ADMISSION_RULES = ("peak", "reserve-all")
RUNNING_MAX_REQ_SIZE = 1000  # S-LoRA's launcher default
# What comparisons set S-LoRA's max_req_total_len to: long enough for every built-in workload's
# prompts (the longest, sharegpt's, is 7,794 tokens), as an operator serving them would; with the
# launcher's 3,072 the engine refuses longer prompts and its throughput is not comparable.
COMPARISON_MAX_REQ_TOTAL_LEN = 8192



def peak_kv_need(entries: list[tuple[int, int]]) -> int:
    """S-LoRA's peak future KV use of requests given as (tokens held, output tokens still to come).

    Sorted by remaining output, descending: the i-th request finishes no later than the
    ones before it, so when it finishes the first i hold at most their tokens now plus
    `remaining_i` each; the peak is the largest such sum.
    """
    need = cum = 0
    for i, (held, left) in enumerate(sorted(entries, key=lambda e: -e[1]), 1):
        cum += held
        value = left * i + cum
        if value > need:
            need = value
    return need


class SloraEngine(Engine):
    """The VTC artifact's runtime: prefill-only admission iterations after `max_wait_tokens` decode steps."""

    name = "slora"

    @classmethod
    def check_config(cls, config: EngineConfig) -> None:
        """S-LoRA never chunks a prompt; the admission rule is one of KV_ADMISSION_RULES."""
        if config.enable_chunked_prefill:
            raise ConfigError("engine 'slora' never chunks prefills; drop --chunked-prefill or use engine 'vllm'")
        if config.kv_admission is not None and config.kv_admission not in KV_ADMISSION_RULES:
            raise ConfigError(f"unknown kv_admission {config.kv_admission!r} for engine 'slora'; "
                              f"choose one of {', '.join(KV_ADMISSION_RULES)}")
        if config.lora_rank * 4 >= config.capacity_tokens:
            raise ConfigError(f"lora_rank {config.lora_rank} sets aside {4 * config.lora_rank} KV tokens per adapter "
                              f"but the pool holds only {config.capacity_tokens}")

    @classmethod
    def default_limits(cls, config: EngineConfig) -> dict[str, int]:
        """batch_max_tokens = max(pool / 6, max_req_total_len) and running_max_req_size = 1000, as S-LoRA's
        launcher sets them (max_req_total_len: 3072 unless configured)."""
        pool = config.num_kv_blocks * config.block_size
        return {"max_num_batched_tokens": max(pool // 6, config.max_req_total_len),
                "max_num_seqs": RUNNING_MAX_REQ_SIZE}

    def __init__(self, config: EngineConfig, policy: Policy) -> None:
        super().__init__(config, policy)
        self.is_peak_rule = config.kv_admission in (None, "peak")
        if self.is_peak_rule:
            self.kv = BlockPool(config.capacity_tokens, 1)  # token-granular, as S-LoRA's memory manager
        self._adapter_tokens = 4 * config.lora_rank

    def _reserved_output(self, req: Request) -> int:
        """S-LoRA's max_output_len: max_tokens when given, else the true length."""
        return req.max_tokens if req.max_tokens is not None else req.num_target_tokens

    def _never_fits(self, request: Request) -> str | None:
        reason = super()._never_fits(request)
        if reason is None and self.is_peak_rule:
            # Alone in the batch its peak is prompt + max_output_len (S-LoRA's own accounting).
            need = request.num_prompt_tokens + self._reserved_output(request)
            room = self.kv.capacity_tokens - self._adapter_tokens
            if need >= room:
                reason = (f"request needs {need} tokens of KV at its peak (prompt {request.num_prompt_tokens} + "
                          f"max output {self._reserved_output(request)}) but the pool admits below {room}")
        return reason

    def _plan(
        self, now: float, limits: BatchLimits
    ) -> tuple[list[tuple[Request, int]], list[Request], BatchShape, int]:
        due = not self.running or self._steps_since_admission >= self.config.admission_interval_steps
        if due and self.policy.num_waiting:
            scheduled = self._generate_new_batch(now, limits)
            if scheduled:  # a prefill-only iteration for the new (mini-)batch
                self._steps_since_admission = 0
                return scheduled, [], self._shape(scheduled), 0
        if not self.running:
            return [], [], BatchShape(), 0
        self._steps_since_admission += 1
        decodes = self._decode_all()
        return decodes, [], self._shape(decodes), 0

    def _decode_all(self) -> list[tuple[Request, int]]:
        """Every running request decodes one token; each takes one more token of KV if it needs it."""
        kv = self.kv
        block_size = kv.block_size
        scheduled = []
        for req in self.running:
            if req.num_blocks * block_size <= req.num_computed_tokens:
                if not kv.num_free:
                    raise RuntimeError("S-LoRA's peak admission rule should never let the KV pool run out")
                kv.allocate(1)
                req.num_blocks += 1
            scheduled.append((req, 1))
        return scheduled

    def _generate_new_batch(self, now: float, limits: BatchLimits) -> list[tuple[Request, int]]:
        """Admit waiting requests in the policy's order while they fit (S-LoRA's `generate_new_batch`)."""
        kv = self.kv
        max_seqs = limits.max_num_seqs
        if len(self.running) >= max_seqs:
            return []
        peak = self.is_peak_rule
        entries = [(r.num_prompt_tokens + r.num_output_tokens_done,
                    self._reserved_output(r) - r.num_output_tokens_done - 1) for r in self.running]
        adapters = {r.spec.tenant for r in self.running}
        room = kv.capacity_tokens
        scheduled: list[tuple[Request, int]] = []
        batch_tokens = 0
        while True:
            view = self.policy.peek(now)
            if view is None:
                break
            req: Request = view  # type: ignore[assignment]  # the mechanism owns the views it gave
            prompt = req.num_prompt_tokens
            # An empty batch takes the head whole even if the policy shrank the budget (it fits
            # the configured batch_max_tokens: longer prompts were rejected on arrival).
            if batch_tokens + prompt > limits.max_num_batched_tokens and scheduled:
                break
            if len(self.running) + 1 > max_seqs:
                break
            if peak:
                entries.append((prompt + 1, self._reserved_output(req) - 1))
                adapters.add(req.spec.tenant)
                if peak_kv_need(entries) >= room - self._adapter_tokens * len(adapters):
                    break
                need = kv.blocks_for(prompt)
            else:
                need = kv.blocks_for(prompt + self._reserved_output(req))
            if kv.num_free < need:
                break
            self._start_running(req, need, now)
            scheduled.append((req, prompt))
            batch_tokens += prompt
        return scheduled


# Registered by a call, not a class decorator: mypyc compiles only undecorated classes to native ones.
ENGINES.register("slora", SloraEngine,
                 help="S-LoRA/LightLLM router (VTC artifact): peak-KV admission, separate prefill/decode")
