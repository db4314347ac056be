"""vLLM V1's scheduler (vllm 0.32) as an engine model, decision by decision.

Each step serves the running requests in running order (what each still needs, capped by
the long-prefill threshold and the token budget; KV short: preempt from the end of the
running list, by recompute), then, if nothing was preempted, admits waiting requests in
the policy's order while the budget, `max_num_seqs` and KV for the whole sequence allow.
With async scheduling, a step is planned while the previous one runs. The victim is the
policy's choice (vLLM's: the request admitted last). docs/algorithm.md ("vLLM engine
model") says what is modelled and what is not; tests/integrations/vllm/
test_vllm_scheduler_parity.py compares every step with vLLM's own Scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from equinox.request import Request, RequestStatus
from equinox.scheduling.interface import Policy
from equinox.sim.engine.base import Engine
from equinox.sim.engine.cohort import DecodeCohort
from equinox.sim.engine.config import EngineConfig
from equinox.sim.engine.planner import DecodeRun
from equinox.sim.engine.registry import ENGINES
from equinox.types import BatchLimits, BatchShape, batch_shape


class VllmEngine(Engine):
    """vLLM V1's scheduling rules (token budget, long-prefill threshold, max_num_seqs, recompute, async)."""

    name = "vllm"
    chunks_by_default = True
    options: ClassVar[frozenset[str]] = frozenset({"long_prefill_token_threshold", "async_scheduling"})

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

    def __init__(self, config: EngineConfig, policy: Policy) -> None:
        super().__init__(config, policy)
        self._threshold = config.long_prefill_token_threshold
        # Async scheduling (see module doc): requests that finished in the step in flight keep
        # their KV and their seat until the next step is planned; `_prev_start` is when that
        # step started (None: nothing in flight), the latest arrival the plan can see.
        self._is_async = config.async_scheduling
        self._prev_start: float | None = None
        if self._is_async:
            self._lagging = set()

    def _plan(
        self, now: float, limits: BatchLimits
    ) -> tuple[list[tuple[Request, int]], list[Request], BatchShape, int]:
        if not self._is_async:
            if self._cohort is not None:
                return self._schedule_lazy(now, limits, self._cohort)
            return (*self._schedule_explicit(now, limits, None), 0)
        cutoff = now if self._prev_start is None else self._prev_start
        scheduled, preempted, shape = self._schedule_explicit(now, limits, cutoff)
        self._release_lagging()  # the in-flight step's output is folded in right after this plan
        if not scheduled and not preempted and cutoff < now:
            # An empty plan is no step: the engine folds the step in flight and plans again,
            # now seeing every arrival.
            scheduled, preempted, shape = self._schedule_explicit(now, limits, None)
        self._prev_start = now if scheduled else None
        return scheduled, preempted, shape, 0

    def _release_lagging(self) -> None:
        """Free the KV and seats of requests that finished in the step in flight (async)."""
        lagging = self._lagging
        if not lagging:
            return
        for req in lagging:
            self.kv.free(req.num_blocks)
            req.num_blocks = 0
        lagging.clear()
        self.running = [r for r in self.running if r.status is RequestStatus.RUNNING]

    def use_cohort(self) -> None:
        """Advance decoding requests lazily from now on (see cohort.py; not with async scheduling).

        Running requests' counts are then only up to date after `sync()`, and the
        `scheduled` of each SchedulerOutput omits the cohort: for backends that only read
        the batch shape (the simulator's cost models).
        """
        if self._cohort is not None or self._is_async:
            return
        if self.running:
            raise RuntimeError("use_cohort() must be called before any request runs")
        self._cohort = DecodeCohort(self.kv)
        self.policy.bind_progress_sync(self.sync)
        self.policy.bind_kv_held(self.kv_held_by_tenant)

    def plan_decode_run(
        self, now: float, step_time: Callable[[BatchShape], float], stop_time: float, interval_s: float,
        visible_time: float | None = None, decode_time: Callable[[int, int], float] | None = None,
    ) -> DecodeRun | None:
        """As `Engine.plan_decode_run`; never with async scheduling (every step is planned)."""
        if self._is_async:
            return None
        return super().plan_decode_run(now, step_time, stop_time, interval_s, visible_time, decode_time)

    def _long_prefill_threshold(self, cutoff: float | None) -> int:
        """vLLM's cap on one request's tokens per step: only when two or more requests are there."""
        threshold = self._threshold
        if threshold <= 0:
            return 0
        num = len(self.running)
        if num >= 2:
            return threshold
        if cutoff is None:
            num += self.policy.num_waiting
        else:  # async: requests that arrived after the cutoff are not in vLLM's queue yet
            for view in self.policy.waiting():
                if view.arrival_time <= cutoff:
                    num += 1
                    if num >= 2:
                        break
        return threshold if num >= 2 else 0

    # The fast path ------------------------------------------------------------------
    def _schedule_lazy(
        self, now: float, limits: BatchLimits, cohort: DecodeCohort
    ) -> tuple[list[tuple[Request, int]], list[Request], BatchShape, int]:
        """`_schedule_explicit` with the decodes taken from the cohort in O(tenants).

        Taken only when it gives the explicit path's result: every running request's share
        fits the budget (or every prefilling request comes after every member in running
        order, so vLLM's running-order pass is decodes first), and the blocks they need are
        free (no preemption). Otherwise the cohort is disbanded and the explicit path runs.
        """
        budget = limits.max_num_batched_tokens
        threshold = self._long_prefill_threshold(None)
        chunks = self._lazy_prefills(budget, cohort, threshold)
        if chunks is None:
            cohort.disband()
            self._pending = list(self.running)
            return (*self._schedule_explicit(now, limits, None), 0)
        if not cohort.allocate_next():
            raise RuntimeError("KV blocks checked free for the cohort are gone")
        num_cohort = cohort.size
        budget -= num_cohort
        scheduled: list[tuple[Request, int]] = []
        kv = self.kv
        for req, n, need in chunks:
            if need > 0:
                kv.allocate(need)
                req.num_blocks += need
            scheduled.append((req, n))
            budget -= n
        self._admit(now, limits, budget, scheduled, None, threshold)
        p_tokens = pairs = 0
        for req, n in scheduled:  # chunks of n after k cached tokens (scheduling leaves k as is)
            k = req.num_computed_tokens
            p_tokens += n
            pairs += n * k + n * (n + 1) // 2
        shape = batch_shape(p_tokens, len(scheduled), pairs, num_cohort, cohort.ctx)
        return scheduled, [], shape, num_cohort

    def _lazy_prefills(
        self, budget: int, cohort: DecodeCohort, threshold: int
    ) -> list[tuple[Request, int, int]] | None:
        """The pending prefills' (request, tokens, new blocks) after the cohort's decodes, or
        None when the explicit path would decide differently (see `_schedule_lazy`)."""
        if budget < cohort.size:
            return None
        kv = self.kv
        free = kv.num_free - cohort.num_blocks_needed_next()
        if free < 0:
            return None
        left = budget - cohort.size
        is_clipped = False
        chunks: list[tuple[Request, int, int]] = []
        for req in self._pending:
            if left <= 0:
                is_clipped = True
                break
            n = req.num_tokens_to_compute
            if 0 < threshold < n:
                n = threshold
            if n > left:
                n = left
                is_clipped = True
            need = kv.blocks_for(req.num_computed_tokens + n) - req.num_blocks
            free -= need
            if free < 0:
                return None  # a preemption: victims depend on running order
            chunks.append((req, n, need))
            left -= n
        if is_clipped and not self._pending_after_members(cohort):
            return None  # the budget binds and a prefill comes before some decode in running order
        return chunks

    def _pending_after_members(self, cohort: DecodeCohort) -> bool:
        """True if every pending (prefilling) request comes after every cohort member in running order."""
        num = 0
        for req in reversed(self.running):
            if cohort.is_member(req):
                break
            num += 1
        return num == len(self._pending)

    # The explicit path (vLLM's Scheduler.schedule) ------------------------------------
    def _schedule_explicit(
        self, now: float, limits: BatchLimits, cutoff: float | None
    ) -> tuple[list[tuple[Request, int]], list[Request], BatchShape]:
        """One step as vLLM plans it: running requests in running order, then admissions.

        Each running request gets what it still needs (1 for a decode), capped by the long
        prefill threshold and the budget left; a request that needs KV blocks preempts from
        the end of the running list until they fit (if it is itself preempted, the pass
        ends). Admissions happen only when nothing was preempted. With async scheduling
        (`cutoff` set), requests that finished in the step in flight still hold their KV and
        seat (they can be victims), and one stopped by EOS gets a wasted decode.
        """
        budget = limits.max_num_batched_tokens
        threshold = self._long_prefill_threshold(cutoff)
        scheduled: list[tuple[Request, int]] = []
        preempted: list[Request] = []
        running = RequestStatus.RUNNING
        lagging = self._lagging
        for req in list(self.running):
            if budget <= 0:
                break
            if req.status is not running:
                if lagging is None or req not in lagging or not _stops_by_eos(req):
                    continue  # preempted earlier in this pass, or vLLM knows it reached max_tokens
                n = 1  # async: vLLM does not know yet that it stopped; its slot is wasted
            else:
                n = req.num_tokens_to_compute
                if 0 < threshold < n:
                    n = threshold
                if n > budget:
                    n = budget
            if not self._grow(req, req.num_computed_tokens + n, scheduled, preempted, now):
                break  # req itself was preempted: vLLM stops scheduling running requests
            scheduled.append((req, n))
            budget -= n
        if not preempted:
            self._admit(now, limits, budget, scheduled, cutoff, threshold)
        return scheduled, preempted, self._shape(scheduled)

    def _grow(
        self, req: Request, num_tokens: int, scheduled: list[tuple[Request, int]], preempted: list[Request], now: float
    ) -> bool:
        """Give `req` blocks for `num_tokens`, preempting others if needed; False if req was preempted.

        Victims are running requests not yet `scheduled` in this iteration (req included):
        with the policy's default choice (the last admitted) that is vLLM's `running[-1]`.
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
        self.running.remove(req)
        self.num_preemptions += 1
        lagging = self._lagging
        if lagging is not None and req in lagging:
            lagging.discard(req)  # async: it already finished; vLLM drops it when its output arrives
            return
        req.num_computed_tokens = 0
        req.num_preemptions += 1
        req.status = RequestStatus.PREEMPTED
        if self._cohort is not None:
            self._pending.remove(req)
        self.policy.requeue(req, now)

    def _admit(
        self, now: float, limits: BatchLimits, budget: int, scheduled: list[tuple[Request, int]],
        cutoff: float | None, threshold: int,
    ) -> None:
        """Admit waiting requests in the policy's order until the head does not fit (no skipping).

        As vLLM: a request is admitted only when the blocks for its whole sequence so far
        (prompt, plus output for a preempted one) are free, though only its first chunk's
        are allocated now; the policy may ask for more (`Policy.kv_reservation_tokens`).
        """
        if self._cohort is not None and self.policy.reads_running_progress and self.policy.num_waiting:
            self._cohort.refresh_all()  # the policy reads running requests' progress when it admits
        kv = self.kv
        chunked = self._is_chunked
        while budget > 0 and len(self.running) < limits.max_num_seqs:
            view = self.policy.peek(now)
            if view is None:
                break
            req: Request = view  # type: ignore[assignment]  # the mechanism owns the views it gave
            if cutoff is not None and req.spec.arrival_time > cutoff:
                break  # async: it arrived after this plan was made
            n = req.num_tokens_to_compute
            if 0 < threshold < n:
                n = threshold
            if n > budget and not chunked and (scheduled or n > self.config.max_num_batched_tokens):
                break  # an empty batch takes the head whole even if the policy shrank the budget
            if not chunked:
                budget = max(budget, n)
            n = min(n, budget)
            need = kv.blocks_for(n)
            wanted = self.policy.kv_reservation_tokens(req, kv.num_free * kv.block_size)
            reserve = max(kv.blocks_for(req.num_tokens), min(kv.blocks_for(wanted), kv.num_blocks))
            if kv.num_free < max(need, reserve):
                break
            self._start_running(req, need, now)
            scheduled.append((req, n))
            budget -= n


def _stops_by_eos(req: Request) -> bool:
    """True if the request ends before max_tokens (an EOS token vLLM only sees when sampled)."""
    max_tokens = req.spec.max_tokens
    return max_tokens is None or req.num_target_tokens < max_tokens


# Registered by a call, not a class decorator: mypyc compiles only undecorated classes to native ones.
ENGINES.register("vllm", VllmEngine,
                 help="vLLM V1's scheduler: hybrid batches, chunked prefill, preemption by recompute")
