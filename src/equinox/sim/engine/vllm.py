"""vLLM V1's scheduler as an engine model: stall-free, decode-first hybrid batches.

Running decodes are scheduled first, then unfinished prefills, then new requests in
chunks (chunked prefill), and new requests join at every iteration (Sarathi-Serve /
vLLM V1). Preemption is by recompute; the victim is the policy's choice (vLLM's default:
the request admitted last). docs/algorithm.md ("Engine models") lists what is modelled.
"""

from __future__ import annotations

from equinox.request import Request, RequestStatus
from equinox.sim.engine.base import Engine
from equinox.sim.engine.cohort import DecodeCohort
from equinox.sim.engine.registry import ENGINES
from equinox.types import BatchLimits, BatchShape


@ENGINES.decorator("vllm", help="vLLM V1: decode-first hybrid batches, chunked prefill, preemption by recompute")
class VllmEngine(Engine):
    """vLLM V1's scheduling rules (token budget, chunked prefill, max_num_seqs, recompute preemption)."""

    name = "vllm"
    chunks_by_default = True

    def _never_fits(self, request: Request) -> str | None:
        reason = super()._never_fits(request)
        if reason is not None:
            return reason
        cfg = self.config
        if not cfg.is_chunked and cfg.mode == "vllm":
            # Preemption recomputes prompt + generated tokens in one unchunked iteration (up to
            # prompt + output - 1); past the budget the request would wait forever (vLLM without
            # chunking likewise requires max_num_batched_tokens >= max_model_len).
            recompute = request.num_prompt_tokens + request.num_target_tokens - 1
            if recompute > cfg.max_num_batched_tokens:
                return (
                    f"request may need {recompute} tokens recomputed in one iteration after a preemption "
                    f"(prompt {request.num_prompt_tokens} + output {request.num_target_tokens} - 1) but "
                    f"max_num_batched_tokens is {cfg.max_num_batched_tokens} and chunked prefill is off; "
                    "raise --max-num-batched-tokens or enable --chunked-prefill"
                )
        return None

    def _plan(
        self, now: float, limits: BatchLimits
    ) -> tuple[list[tuple[Request, int]], list[Request], BatchShape, int]:
        if self._cohort is not None:
            return self._schedule_lazy(now, limits, self._cohort)
        return (*self._schedule_hybrid(now, limits), 0)

    def use_cohort(self) -> None:
        """Advance decoding requests lazily from now on (see cohort.py).

        Running requests' counts are then only up to date after `sync()`, and the
        `scheduled` of each SchedulerOutput omits the cohort: for backends that only read
        the batch shape (the simulator's cost models).
        """
        if self._cohort is not None:
            return
        if self.running:
            raise RuntimeError("use_cohort() must be called before any request runs")
        self._cohort = DecodeCohort(self.kv)

    def _schedule_lazy(
        self, now: float, limits: BatchLimits, cohort: DecodeCohort
    ) -> tuple[list[tuple[Request, int]], list[Request], BatchShape, int]:
        """`_schedule_hybrid` with the decodes taken from the cohort in O(tenants).

        Falls back to the explicit path (disbanding the cohort) when the decodes would not
        all fit: a budget below the cohort's size, or too few free blocks (preemption).
        """
        budget = limits.max_num_batched_tokens
        if cohort.size and (budget < cohort.size or not cohort.allocate_next()):
            cohort.disband()
            self._pending = list(self.running)
            return (*self._schedule_hybrid(now, limits), 0)
        num_cohort = cohort.size
        scheduled: list[tuple[Request, int]] = []
        preempted: list[Request] = []
        # Every decoding request is in the cohort: the others are all prefilling.
        p_tokens, pairs = self._prefill_and_admit(
            list(self._pending), budget - num_cohort, limits, scheduled, preempted, now
        )
        shape = BatchShape(p_tokens, len(scheduled), pairs, num_cohort, cohort.ctx)
        return scheduled, preempted, shape, num_cohort

    def _schedule_hybrid(
        self, now: float, limits: BatchLimits
    ) -> tuple[list[tuple[Request, int]], list[Request], BatchShape]:
        budget = limits.max_num_batched_tokens
        scheduled: list[tuple[Request, int]] = []
        preempted: list[Request] = []
        running = RequestStatus.RUNNING
        block_size = self.kv.block_size
        # Decode-first: running decodes never wait behind a prefill (stall-free). One pass
        # schedules the decodes and collects the unfinished prefills in running order; the
        # batch shape is summed on the way (as `_shape` would). (Hot loop: `is_decoding` and
        # `num_tokens_to_compute` are inlined.)
        prefills: list[Request] = []
        d_ctx = 0
        for req in list(self.running):
            if budget <= 0:
                break  # the prefill pass would not run either
            if req.status is not running:
                continue  # preempted earlier in this pass
            computed = req.num_computed_tokens
            num_done = req.num_output_tokens_done
            if num_done == 0 or req.spec.num_prompt_tokens + num_done - computed != 1:
                prefills.append(req)
                continue
            # A decode needs a new block only when its KV fills the blocks it holds.
            if req.num_blocks * block_size <= computed and not self._grow(req, computed + 1, scheduled, preempted, now):
                continue  # req itself was preempted
            scheduled.append((req, 1))
            d_ctx += computed + 1
            budget -= 1
        d_seqs = len(scheduled)
        p_tokens, pairs = self._prefill_and_admit(prefills, budget, limits, scheduled, preempted, now)
        shape = BatchShape(p_tokens, len(scheduled) - d_seqs, pairs, d_seqs, d_ctx)
        return scheduled, preempted, shape

    def _prefill_and_admit(
        self, prefills: list[Request], budget: int, limits: BatchLimits, scheduled: list[tuple[Request, int]],
        preempted: list[Request], now: float,
    ) -> tuple[int, int]:
        """After the decodes: unfinished prefills in running order, then admissions (if nothing
        was preempted). Returns the prefill tokens and attention pairs they add to the batch."""
        running = RequestStatus.RUNNING
        chunked = self.config.is_chunked
        num_before = len(scheduled)
        for req in prefills:
            if budget <= 0:
                break
            if req.status is not running:
                continue  # preempted earlier in this pass
            n = req.num_tokens_to_compute
            if not chunked and n > budget:
                continue
            n = min(n, budget)
            if not self._grow(req, req.num_computed_tokens + n, scheduled, preempted, now):
                continue  # req itself was preempted
            scheduled.append((req, n))
            budget -= n
        if not preempted:
            self._admit(now, limits, budget, scheduled)
        p_tokens = pairs = 0
        for req, n in scheduled[num_before:]:  # chunks of n after k cached tokens (scheduling leaves k as is)
            k = req.num_computed_tokens
            p_tokens += n
            pairs += n * k + n * (n + 1) // 2
        return p_tokens, pairs

    def _grow(
        self, req: Request, num_tokens: int, scheduled: list[tuple[Request, int]], preempted: list[Request], now: float
    ) -> bool:
        """Give `req` blocks for `num_tokens`, preempting others if needed; False if req was preempted.

        Victims are running requests not yet `scheduled` in this iteration (req included);
        cohort members are scheduled (they decode first).
        """
        need = self.kv.blocks_for(num_tokens) - req.num_blocks
        done: set[int] | None = None
        while need > self.kv.num_free:
            if done is None:
                done = {id(r) for r, _ in scheduled}
            cohort = self._cohort
            candidates = [r for r in self.running if id(r) not in done and (cohort is None or not cohort.is_member(r))]
            victim = self.policy.choose_victim(candidates, now)
            self._preempt(victim, now)  # type: ignore[arg-type]
            preempted.append(victim)  # type: ignore[arg-type]
            if victim is req:
                return False
        if need > 0:
            self.kv.allocate(need)
            req.num_blocks += need
        return True

    def _preempt(self, req: Request, now: float) -> None:
        """Preempt by recompute: free the KV and send the request back to the policy."""
        self.kv.free(req.num_blocks)
        req.num_blocks = 0
        req.num_computed_tokens = 0
        req.num_preemptions += 1
        req.status = RequestStatus.PREEMPTED
        self.running.remove(req)
        if self._cohort is not None:
            self._pending.remove(req)
        self.num_preemptions += 1
        self.policy.requeue(req, now)

    def _admit(
        self,
        now: float,
        limits: BatchLimits,
        budget: int,
        scheduled: list[tuple[Request, int]],
    ) -> None:
        """Admit waiting requests in the policy's order until the head does not fit (no skipping)."""
        if self._cohort is not None and self.policy.reads_running_progress and self.policy.num_waiting:
            self._cohort.refresh_all()  # the policy reads running requests' progress when it admits
        kv = self.kv
        chunked = self.config.is_chunked
        while budget > 0 and len(self.running) < limits.max_num_seqs:
            view = self.policy.peek(now)
            if view is None:
                break
            req: Request = view  # type: ignore[assignment]  # the mechanism owns the views it gave
            n = req.num_tokens_to_compute
            if n > budget and not chunked and (scheduled or n > self.config.max_num_batched_tokens):
                break  # an empty batch takes the head whole even if the policy shrank the budget
            if not chunked:
                budget = max(budget, n)
            n = min(n, budget)
            need = kv.blocks_for(n)
            reserve = min(kv.blocks_for(self.policy.kv_reservation_tokens(req)), kv.num_blocks)
            if kv.num_free < max(need, reserve):
                break
            self.policy.pop(req, now)
            kv.allocate(need)
            req.num_blocks = need
            req.status = RequestStatus.RUNNING
            req.admit_seq = self._admit_seq
            self._admit_seq += 1
            if req.first_scheduled_time is None:
                req.first_scheduled_time = now
            self.running.append(req)
            if self._cohort is not None:
                self._pending.append(req)
            scheduled.append((req, n))
            budget -= n
