"""The iteration scheduler: mechanism (token budget, chunked prefill, KV, preemption).

It owns running requests and the KV block pool and asks its Policy for every choice:
who is admitted next, who is preempted, what limits the next batch has. Two engine
modes make baselines honest (DESIGN.md):

- `vllm`: stall-free, decode-first hybrid batches; running decodes are scheduled
  first, then unfinished prefills, then new requests in chunks (chunked prefill), and
  new requests join at every iteration (Sarathi-Serve / vLLM V1).
- `slora`: what the VTC artifact runs on (S-LoRA/LightLLM): prefill and decode are
  separate iterations, new requests are admitted only every N decode steps (or when
  nothing runs), prompts are never chunked, and admission reserves KV for the whole
  output up front so nothing is ever preempted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from equinox.errors import ConfigError
from equinox.request import Request, RequestStatus
from equinox.scheduling.cohort import DecodeCohort
from equinox.scheduling.decode_run import DecodeRun, apply_decode_run, plan_decode_run, run_report
from equinox.scheduling.interface import Policy
from equinox.sim.kv_cache import BlockPool
from equinox.types import BatchLimits, BatchShape, StepReport, StepResult, TenantUsage

ENGINE_MODES = ("vllm", "slora")


@dataclass(frozen=True)
class EngineConfig:
    """Mechanism settings of one engine replica."""

    mode: str = "vllm"
    max_num_batched_tokens: int = 2048
    max_num_seqs: int = 256
    block_size: int = 16
    num_kv_blocks: int = 8192
    enable_chunked_prefill: bool | None = None  # None: on for vllm, off for slora
    admission_interval_steps: int = 10  # slora: decode steps between admissions

    def __post_init__(self) -> None:
        if self.mode not in ENGINE_MODES:
            raise ConfigError(f"unknown engine mode {self.mode!r}; choose one of {', '.join(ENGINE_MODES)}")
        if self.mode == "slora" and self.enable_chunked_prefill:
            raise ConfigError("engine mode 'slora' never chunks prefills; drop --chunked-prefill or use mode 'vllm'")
        for name in ("max_num_batched_tokens", "max_num_seqs", "block_size", "num_kv_blocks"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.admission_interval_steps < 1:
            raise ConfigError(f"admission_interval_steps must be >= 1, got {self.admission_interval_steps}")

    @property
    def is_chunked(self) -> bool:
        """Whether prompts may be split across iterations."""
        if self.enable_chunked_prefill is None:
            return self.mode == "vllm"
        return self.enable_chunked_prefill

    @property
    def limits(self) -> BatchLimits:
        """The configured per-iteration limits."""
        return BatchLimits(self.max_num_batched_tokens, self.max_num_seqs)


@dataclass(frozen=True, slots=True)
class SchedulerOutput:
    """One iteration's plan: which requests compute how many new tokens.

    With a decode cohort (the simulator's fast path), its `num_cohort` members each decode
    one token too but are not listed in `scheduled`; `batch` counts them.
    """

    step_id: int
    time: float
    scheduled: tuple[tuple[Request, int], ...]
    batch: BatchShape
    limits: BatchLimits
    preempted: tuple[Request, ...] = ()
    num_cohort: int = 0

    @property
    def is_empty(self) -> bool:
        """True when nothing is scheduled."""
        return not self.scheduled and not self.num_cohort


@dataclass(slots=True)
class StepOutcome:
    """What changed when an iteration finished: first tokens, completions, the report."""

    report: StepReport
    first_tokens: list[Request] = field(default_factory=list)
    finished: list[Request] = field(default_factory=list)


class IterationScheduler:
    """Builds each iteration from the running set and the policy's waiting order."""

    def __init__(self, config: EngineConfig, policy: Policy) -> None:
        self.config = config
        self.policy = policy
        self.kv = BlockPool(config.num_kv_blocks, config.block_size)
        self.running: list[Request] = []
        self._step_id = 0
        self._admit_seq = 0
        self._steps_since_admission = config.admission_interval_steps
        self._next_decode_ctx = -1  # -1 unless every running request decodes next iteration
        self.num_preemptions = 0
        # Lazy decoding (use_cohort): decoding running requests live in the cohort, the
        # others (prefilling) in `_pending`, both in running order.
        self._cohort: DecodeCohort | None = None
        self._pending: list[Request] = []

    def use_cohort(self) -> None:
        """Advance decoding requests lazily from now on (vllm mode; see scheduling/cohort.py).

        Running requests' counts are then only up to date after `sync()`, and the
        `scheduled` of each SchedulerOutput omits the cohort: for backends that only read
        the batch shape (the simulator's cost models).
        """
        if self.config.mode != "vllm" or self._cohort is not None:
            return
        if self.running:
            raise RuntimeError("use_cohort() must be called before any request runs")
        self._cohort = DecodeCohort(self.kv)

    def sync(self) -> None:
        """Bring every running request's fields up to date (a no-op without a cohort)."""
        if self._cohort is not None:
            self._cohort.refresh_all()

    # Arrivals -----------------------------------------------------------------
    def add_request(self, request: Request, now: float) -> str | None:
        """Queue an arriving request; returns why it was rejected, or None."""
        reason = self._never_fits(request)
        if reason is None:
            reason = self.policy.add_request(request, now)
        if reason is not None:
            request.status = RequestStatus.REJECTED
            request.reject_reason = reason
        return reason

    def _never_fits(self, request: Request) -> str | None:
        cfg = self.config
        capacity = self.kv.capacity_tokens
        num_output = self._reserved_output(request) if cfg.mode == "slora" else request.num_target_tokens
        total = request.num_prompt_tokens + num_output
        if total > capacity:
            return (
                f"request needs {total} tokens of KV (prompt {request.num_prompt_tokens} + output "
                f"{num_output}) but the KV cache holds {capacity}"
            )
        if not cfg.is_chunked and request.num_prompt_tokens > cfg.max_num_batched_tokens:
            return (
                f"prompt of {request.num_prompt_tokens} tokens exceeds max_num_batched_tokens "
                f"{cfg.max_num_batched_tokens} and chunked prefill is off"
            )
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

    @property
    def has_work(self) -> bool:
        """True while requests run or wait."""
        return bool(self.running) or self.policy.num_waiting > 0

    # Scheduling ---------------------------------------------------------------
    def schedule(self, now: float) -> SchedulerOutput:
        """Plan the next iteration at time `now`."""
        limits = self.policy.batch_limits(now, self.config.limits)
        num_cohort = 0
        if self.config.mode == "slora":
            scheduled, preempted = self._schedule_slora(now, limits)
            shape = self._shape(scheduled)
        elif self._cohort is not None:
            scheduled, preempted, shape, num_cohort = self._schedule_lazy(now, limits, self._cohort)
        else:
            scheduled, preempted, shape = self._schedule_hybrid(now, limits)
        self._step_id += 1
        return SchedulerOutput(self._step_id, now, tuple(scheduled), shape, limits, tuple(preempted), num_cohort)

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
            candidates = [r for r in self.running if id(r) not in done and r.cohort_token < 0]
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
        reserve_all: bool = False,
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
            if reserve_all:
                need = kv.blocks_for(req.num_prompt_tokens + self._reserved_output(req))
                reserve = need
            else:
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

    def _reserved_output(self, req: Request) -> int:
        """Output tokens slora mode reserves: max_tokens when given, else the true length."""
        return req.max_tokens if req.max_tokens is not None else req.num_target_tokens

    def _schedule_slora(self, now: float, limits: BatchLimits) -> tuple[list[tuple[Request, int]], list[Request]]:
        scheduled: list[tuple[Request, int]] = []
        due = not self.running or self._steps_since_admission >= self.config.admission_interval_steps
        if due and self.policy.num_waiting:
            self._admit(now, limits, limits.max_num_batched_tokens, scheduled, reserve_all=True)
            if scheduled:  # a prefill-only iteration for the new batch
                self._steps_since_admission = 0
                return scheduled, []
        self._steps_since_admission += 1
        return [(r, 1) for r in self.running], []

    def _shape(self, scheduled: list[tuple[Request, int]]) -> BatchShape:
        p_tokens = p_seqs = pairs = d_seqs = d_ctx = 0
        for req, n in scheduled:
            k = req.num_computed_tokens
            num_done = req.num_output_tokens_done
            if num_done > 0 and req.spec.num_prompt_tokens + num_done - k == 1:  # req.is_decoding
                d_seqs += 1
                d_ctx += k + 1
            else:
                p_tokens += n
                p_seqs += 1
                pairs += n * k + n * (n + 1) // 2
        return BatchShape(p_tokens, p_seqs, pairs, d_seqs, d_ctx)

    # Folded decode runs (simulator fast path) ---------------------------------------
    def plan_decode_run(
        self, now: float, step_time: Callable[[BatchShape], float], stop_time: float, interval_s: float,
        visible_time: float | None = None, decode_time: Callable[[int, int], float] | None = None,
    ) -> DecodeRun | None:
        """Plan identical decode iterations from `now` (only when nothing waits; see decode_run.py).

        `stop_time` is the next event; with `visible_time` (the next arrival, which then is not
        part of `stop_time`) a cohort run may end with the iteration that crosses it, when the
        policy's batch limits do not depend on what it learns (the iteration is then planned
        before the run's reports reach the policy). `decode_time(sequences, context)` is an
        optional exact shortcut for `step_time` of a decode-only batch.
        """
        if self.policy.num_waiting or not self.running or self._next_decode_ctx < 0:
            return None  # something waits, or a prefill is in flight
        first_stop = stop_time if visible_time is None else min(stop_time, visible_time)
        # Cheap look-ahead: if the very next iteration passes the stop, there is no run to fold.
        first = now + step_time(BatchShape(0, 0, 0, len(self.running), self._next_decode_ctx))
        if first > first_stop or int(first / interval_s) != int(now / interval_s):
            return None
        limits = self.policy.batch_limits(now, self.config.limits)
        if self._cohort is not None:
            if self._pending:
                return None
            if visible_time is not None and type(self.policy).batch_limits is Policy.batch_limits:
                return self._cohort.plan_run(limits, now, step_time, stop_time, interval_s,
                                             visible_time=visible_time, decode_time=decode_time)
            return self._cohort.plan_run(limits, now, step_time, first_stop, interval_s, decode_time=decode_time)
        return plan_decode_run(
            self.running, self.kv.num_free, self.config.block_size, limits, now, step_time, first_stop, interval_s
        )

    def apply_decode_run(self, run: DecodeRun) -> StepOutcome:
        """Fold a planned run back, as `update_from_result` does for one iteration."""
        if self._cohort is not None:
            finished, usage = self._cohort.apply_run(run)
            per_tenant = {t: TenantUsage(*usage[t]) for t in sorted(usage)}
            k = run.num_steps
        else:
            finished, per_tenant, k = apply_decode_run(
                run, self.running, self.config.block_size, self.kv.allocate, self.kv.free
            )
        if finished:
            self.running = [r for r in self.running if r.status is RequestStatus.RUNNING]
        if self._cohort is not None:
            self._next_decode_ctx = self._cohort.ctx  # every running request is a member
        else:
            self._next_decode_ctx = sum(r.num_computed_tokens + 1 for r in self.running)
        self._step_id += k
        self._steps_since_admission += k
        run.is_folded = True
        report = run_report(run, self._step_id, per_tenant, self.kv.num_used, self.kv.num_blocks)
        return self._tell_policy(report, [], finished)

    def apply_crossing_step(self, run: DecodeRun) -> StepOutcome:
        """Fold a run's crossing iteration back (after the run), exactly as a scheduled one."""
        cohort = self._cohort
        if cohort is None or run.cross_end is None or run.cross_batch is None or not run.is_folded:
            raise RuntimeError("apply_crossing_step needs a folded cohort run with a crossing iteration")
        if not cohort.allocate_next():
            raise RuntimeError("KV blocks planned for the crossing iteration are gone")
        self._step_id += 1
        usage: dict[str, list[int]] = {}
        finished = cohort.advance(run.cross_end, usage)
        if finished:
            self.running = [r for r in self.running if r.status is RequestStatus.RUNNING]
        self._next_decode_ctx = cohort.ctx  # every running request is a member
        per_tenant = {t: TenantUsage(*usage[t]) for t in sorted(usage)}
        report = StepReport(self._step_id, run.end_time, run.cross_duration_s, run.cross_batch, run.limits,
                            per_tenant, self.kv.num_used, self.kv.num_blocks)
        return self._tell_policy(report, [], finished)

    def _tell_policy(self, report: StepReport, first_tokens: list[Request], finished: list[Request]) -> StepOutcome:
        """Report an applied iteration (or run) to the policy: the step, first tokens, completions."""
        policy = self.policy
        policy.on_step(report)
        for req in first_tokens:
            policy.on_first_token(req, req.first_token_time)  # type: ignore[arg-type]
        for req in finished:
            policy.on_finish(req, req.finish_time)  # type: ignore[arg-type]
        return StepOutcome(report, first_tokens, finished)

    # Results ------------------------------------------------------------------
    def update_from_result(self, output: SchedulerOutput, result: StepResult) -> StepOutcome:
        """Fold an executed iteration back: advance requests, sample tokens, finish, free KV."""
        end = output.time + result.duration_s
        usage: dict[str, list[int]] = {}
        outcome_first: list[Request] = []
        cohort = self._cohort
        # The cohort's decodes come first, as in scheduling order; finished members leave it.
        finished: list[Request] = [] if cohort is None else cohort.advance(end, usage)
        decode_ctx = 0  # context the next iteration attends to, if every running request decodes
        all_decode = output.num_cohort + len(output.scheduled) == len(self.running)
        for req, n in output.scheduled:
            spec = req.spec
            u = usage.get(spec.tenant)
            if u is None:
                u = usage[spec.tenant] = [0, 0, 0, 0]
            # Hot loop: `is_decoding` and `num_tokens` inlined.
            num_done = req.num_output_tokens_done
            num_tokens = spec.num_prompt_tokens + num_done
            computed = req.num_computed_tokens
            if num_done == 0 or num_tokens - computed != 1:  # not decoding: a prefill chunk
                u[0] += n
            computed += n
            req.num_computed_tokens = computed
            u[2] += computed
            u[3] += req.num_blocks
            if computed < num_tokens:
                all_decode = False
                continue  # a prefill chunk: no token sampled yet
            decode_ctx += computed + 1
            num_done += 1
            req.num_output_tokens_done = num_done
            u[1] += 1
            if req.first_token_time is None:
                req.first_token_time = end
                outcome_first.append(req)
            elif req.last_token_time is not None:
                gap = end - req.last_token_time
                if gap > req.max_itl_s:
                    req.max_itl_s = gap
            req.last_token_time = end
            if num_done >= req.num_target_tokens:
                finished.append(req)
        if finished:
            for req in finished:
                if req.status is RequestStatus.FINISHED:
                    continue  # a cohort member: already done
                self.kv.free(req.num_blocks)
                req.num_blocks = 0
                req.status = RequestStatus.FINISHED
                req.finish_time = end
                decode_ctx -= req.num_computed_tokens + 1
            self.running = [r for r in self.running if r.status is RequestStatus.RUNNING]
        if cohort is not None:
            # Every running request that decodes next joins: the invariant `_schedule_lazy` needs.
            pending = self._pending
            for req in pending:
                if req.status is RequestStatus.RUNNING and req.is_decoding:
                    cohort.join(req)
            self._pending = [r for r in pending if r.status is RequestStatus.RUNNING and r.cohort_token < 0]
            decode_ctx = cohort.ctx
        self._next_decode_ctx = decode_ctx if all_decode else -1
        per_tenant = {t: TenantUsage(*usage[t]) for t in sorted(usage)}  # canonical order: tenant name
        report = StepReport(
            output.step_id, output.time, result.duration_s, output.batch, output.limits,
            per_tenant, self.kv.num_used, self.kv.num_blocks,
        )
        return self._tell_policy(report, outcome_first, finished)
