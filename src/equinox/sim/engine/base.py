"""What every simulated engine shares: requests, the KV pool, folding results back, decode runs.

An engine model is the mechanism of one serving runtime (token budget, chunking, KV
admission, preemption, the order of prefill and decode iterations). It owns the running
requests and the KV pool and asks its Policy for every choice: who is admitted next,
who is preempted, what limits the next batch has. Each runtime is one module and one
`Engine` subclass registered in `registry.py` (`vllm.py`: vLLM V1; `slora.py`: the
S-LoRA router the VTC artifact runs on). The step protocol is vLLM's: `schedule(now)`
returns a `SchedulerOutput`, the backend executes it, `update_from_result` folds it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from equinox.compiled import mypyc_attr
from equinox.errors import ConfigError
from equinox.request import Request, RequestStatus
from equinox.scheduling.interface import Policy
from equinox.sim.engine.cohort import DecodeCohort
from equinox.sim.engine.config import EngineConfig
from equinox.sim.engine.kv_pool import BlockPool
from equinox.sim.engine.planner import DecodeRun, apply_decode_run, plan_decode_run, run_report
from equinox.types import (
    BatchLimits,
    BatchShape,
    StepReport,
    StepResult,
    batch_shape,
    step_report,
    tenant_usage,
)


@dataclass(slots=True, eq=False)
class SchedulerOutput:
    """One iteration's plan: which requests compute how many new tokens (never changed once made).

    With a decode cohort (the simulator's fast path), its `num_cohort` members each decode
    one token too but are not listed in `scheduled`; `batch` counts them.

    Not a frozen dataclass: mypyc leaves a frozen dataclass's generated `__init__` to the
    interpreter (a setattr call per field, ~10,000 instructions), and one is made every step.
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


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled core: Python subclasses still work
class Engine:
    """Builds each iteration from the running set and the policy's waiting order (one runtime's rules)."""

    name: ClassVar[str] = "engine"
    chunks_by_default: ClassVar[bool] = False  # EngineConfig.enable_chunked_prefill = None means this
    # EngineConfig fields only some engines honour (set away from their default elsewhere: an error).
    options: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def check_config(cls, config: EngineConfig) -> None:
        """Raise ConfigError when `config` asks for something this runtime cannot do."""
        if config.kv_admission is not None or config.lora_rank:
            raise ConfigError(f"engine {cls.name!r} has no kv_admission or lora_rank setting (engine 'slora' has)")

    @classmethod
    def default_limits(cls, config: EngineConfig) -> dict[str, int]:
        """Values for the limits `config` leaves unset (None): max_num_batched_tokens, max_num_seqs."""
        return {"max_num_batched_tokens": 2048, "max_num_seqs": 256}

    def __init__(self, config: EngineConfig, policy: Policy) -> None:
        self.config = config
        self._limits = config.limits  # the config is frozen: its limits and chunking, read every step, once
        self._is_chunked = config.is_chunked
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
        # Finished requests that keep their KV and running seat until the next plan (vLLM's
        # async scheduling); None: a finished request frees them at once.
        self._lagging: set[Request] | None = None

    def sync(self) -> None:
        """Bring every running request's fields up to date (a no-op without a cohort)."""
        if self._cohort is not None:
            self._cohort.refresh_all()

    def kv_held_by_tenant(self) -> dict[str, int]:
        """KV tokens (computed tokens) each tenant's running requests hold, without `sync`: a decode
        cohort member holds its context in the cohort's per-tenant sums less the token it attends next."""
        cohort = self._cohort
        held: dict[str, int] = {}
        for req in self.running:
            if req.status is RequestStatus.RUNNING and (cohort is None or not cohort.is_member(req)):
                tenant = req.spec.tenant
                held[tenant] = held.get(tenant, 0) + req.num_computed_tokens
        if cohort is not None:
            for tenant, agg in cohort.tenants.items():
                held[tenant] = held.get(tenant, 0) + agg[1] - agg[0]
        return held

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
        num_output = self._reserved_output(request)
        total = request.num_prompt_tokens + num_output
        if total > capacity:
            return (
                f"request needs {total} tokens of KV (prompt {request.num_prompt_tokens} + output "
                f"{num_output}) but the KV cache holds {capacity}"
            )
        if not self._is_chunked and request.num_prompt_tokens > cfg.max_num_batched_tokens:
            return (
                f"prompt of {request.num_prompt_tokens} tokens exceeds max_num_batched_tokens "
                f"{cfg.max_num_batched_tokens} and chunked prefill is off"
            )
        return None

    def _start_running(self, req: Request, num_blocks: int, now: float) -> None:
        """Admit `req` (the policy's head): take it from the policy, give it `num_blocks` blocks, run it."""
        self.policy.pop(req, now)
        self.kv.allocate(num_blocks)
        req.num_blocks = num_blocks
        req.status = RequestStatus.RUNNING
        req.admit_seq = self._admit_seq
        self._admit_seq += 1
        if req.first_scheduled_time is None:
            req.first_scheduled_time = now
        self.running.append(req)
        if self._cohort is not None:
            self._pending.append(req)  # prefilling; joins the cohort once it decodes

    def _reserved_output(self, req: Request) -> int:
        """Output tokens a request may need KV for (its true length: the simulator knows it)."""
        return req.num_target_tokens

    @property
    def has_work(self) -> bool:
        """True while requests run or wait."""
        return bool(self.running) or self.policy.num_waiting > 0

    # Scheduling ---------------------------------------------------------------
    def schedule(self, now: float) -> SchedulerOutput:
        """Plan the next iteration at time `now`."""
        limits = self.policy.batch_limits(now, self._limits)
        scheduled, preempted, shape, num_cohort = self._plan(now, limits)
        self._step_id += 1
        return SchedulerOutput(self._step_id, now, tuple(scheduled), shape, limits, tuple(preempted), num_cohort)

    def _plan(
        self, now: float, limits: BatchLimits
    ) -> tuple[list[tuple[Request, int]], list[Request], BatchShape, int]:
        """This runtime's iteration: (request, new tokens) pairs, preempted requests, shape, cohort size."""
        raise NotImplementedError

    def use_cohort(self) -> None:
        """Advance decoding requests lazily from now on, where the engine supports it (vllm)."""

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
        return batch_shape(p_tokens, p_seqs, pairs, d_seqs, d_ctx)

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
        first = now + step_time(batch_shape(0, 0, 0, len(self.running), self._next_decode_ctx))
        if first > first_stop or int(first / interval_s) != int(now / interval_s):
            return None
        limits = self.policy.batch_limits(now, self._limits)
        if self._cohort is not None:
            if self._pending:
                return None
            floor = self.policy.batch_limits_floor(self._limits)
            size = len(self.running)
            if (visible_time is not None and floor is not None
                    and size <= floor.max_num_batched_tokens and size <= floor.max_num_seqs):
                return self._cohort.plan_run(limits, now, step_time, stop_time, interval_s,
                                             visible_time=visible_time, decode_time=decode_time)
            return self._cohort.plan_run(limits, now, step_time, first_stop, interval_s, decode_time=decode_time)
        return plan_decode_run(
            self.running, self.kv.num_free, self.kv.block_size, limits, now, step_time, first_stop, interval_s
        )

    def apply_decode_run(self, run: DecodeRun) -> StepOutcome:
        """Fold a planned run back, as `update_from_result` does for one iteration."""
        if self._cohort is not None:
            finished, usage = self._cohort.apply_run(run)
            per_tenant = {t: tenant_usage(usage[t]) for t in sorted(usage)}
            k = run.num_steps
        else:
            finished, per_tenant, k = apply_decode_run(
                run, self.running, self.kv.block_size, self.kv.allocate, self.kv.free
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
        outcome = self._tell_policy(report, [], finished)
        if run.cross_end is not None:
            # The crossing iteration starts as the run ends: the policy's limits for it are asked
            # now, after it has seen the run, as step-by-step execution would ask them.
            run.cross_limits = self.policy.batch_limits(run.end_time, self._limits)
        return outcome

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
        per_tenant = {t: tenant_usage(usage[t]) for t in sorted(usage)}
        limits = run.limits if run.cross_limits is None else run.cross_limits
        report = step_report(self._step_id, run.end_time, run.cross_duration_s, run.cross_batch, limits,
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
            if req.status is not RequestStatus.RUNNING:
                continue  # finished in the step before (async scheduling): a wasted slot
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
            lagging = self._lagging
            for req in finished:
                if req.status is RequestStatus.FINISHED:
                    continue  # a cohort member: already done
                req.status = RequestStatus.FINISHED
                req.finish_time = end
                decode_ctx -= req.num_computed_tokens + 1
                if lagging is not None:
                    lagging.add(req)  # KV and seat held until the next plan
                    continue
                self.kv.free(req.num_blocks)
                req.num_blocks = 0
            if lagging is None:
                self.running = [r for r in self.running if r.status is RequestStatus.RUNNING]
        if cohort is not None:
            # Every running request that decodes next joins: the invariant `_schedule_lazy` needs.
            pending = self._pending
            for req in pending:
                if req.status is RequestStatus.RUNNING and req.is_decoding:
                    cohort.join(req)
            self._pending = [r for r in pending if r.status is RequestStatus.RUNNING and not cohort.is_member(r)]
            decode_ctx = cohort.ctx
        self._next_decode_ctx = decode_ctx if all_decode else -1
        per_tenant = {t: tenant_usage(usage[t]) for t in sorted(usage)}  # canonical order: tenant name
        report = step_report(
            output.step_id, output.time, result.duration_s, output.batch, output.limits,
            per_tenant, self.kv.num_used, self.kv.num_blocks,
        )
        return self._tell_policy(report, outcome_first, finished)


