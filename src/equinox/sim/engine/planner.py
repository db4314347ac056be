"""Decode runs: many identical-shape decode iterations folded into one simulator event (one planner).

When nothing waits and every running request is decoding, the next iterations are
fully determined: each running request generates one token per iteration, its KV
grows by one token, and requests leave when they reach their length. Nothing about
the policy's choices can change until something arrives. The simulator then plans a
run of such iterations at O(1) cost each (the batch shape is an aggregate; block
allocations and finishes are scheduled by step index) and applies it in one pass over
the running requests, instead of one pass per iteration.

A run stops before the first iteration that would end after `stop_time` (the next
event: an arrival or the end of the run), that would end in a later metrics interval
than the one it starts in (so per-interval series stay exact), or that would need more KV
blocks than are free (the normal path then preempts). The policy sees one StepReport
with `num_steps` iterations and the sums of their batches; VTC-style token charges
are additive, so its counters end where step-by-step execution leaves them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from equinox.request import Request, RequestStatus
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage, batch_shape, step_report, tenant_usage


@dataclass(slots=True)
class DecodeRun:
    """A planned run of `num_steps` decode-only iterations starting at `start_time`."""

    start_time: float
    step_ends: list[float]
    step_max_gap: list[float]  # running maximum of end_j - end_(j-1) over the run's later iterations
    limits: BatchLimits
    batch: BatchShape  # sums over the run's iterations
    kv_block_seconds: float  # sum over iterations of blocks in use after it x its duration
    # One more decode iteration that starts before the next arrival and ends after it (cohort
    # runs only). It is reported on its own, as the iteration it stands for would be: the
    # run's iterations fold in when the arrival comes, this one when it ends.
    cross_end: float | None = None
    cross_duration_s: float = 0.0
    cross_batch: BatchShape | None = None
    cross_limits: BatchLimits | None = None  # the policy's limits for it, asked when the run folds
    is_folded: bool = False  # the run's own iterations were applied (the crossing one may remain)
    needs: dict[int, list[RunMember]] = field(default_factory=dict)  # members given a new block, by iteration

    @property
    def num_steps(self) -> int:
        """Iterations in the run (without a crossing one)."""
        return len(self.step_ends)

    @property
    def end_time(self) -> float:
        """When the run's last iteration ends (without a crossing one)."""
        return self.step_ends[-1]

    @property
    def event_time(self) -> float:
        """When the engine is next free: the crossing iteration's end, else the run's."""
        return self.cross_end if self.cross_end is not None else self.step_ends[-1]


class RunMember:
    """A decoding request as the planner sees it: counts as of epoch `base`, last token at `finish`.

    The cohort keeps one per member (stale, `is_live` False, once the request left it); the
    eager path builds them for the running requests with base 0.
    """

    __slots__ = ("base", "finish", "is_live", "req")

    def __init__(self, req: Request, base: int, finish: int) -> None:
        self.req = req
        self.base = base  # the epoch the request's counts are up to date with
        self.finish = finish  # the epoch that produces its last token
        self.is_live = True


def plan_run(
    *, size: int, ctx: int, num_free: int, num_used: int, block_size: int, epoch: int,
    need_at: Mapping[int, list[RunMember]], finish_at: Mapping[int, list[RunMember]],
    limits: BatchLimits, now: float, decode_time: Callable[[int, int], float], stop_time: float,
    interval_s: float, max_steps: int = 100_000, visible_time: float = math.inf,
) -> DecodeRun | None:
    """Plan the longest run of decode-only iterations from `now` (epoch `epoch`); None when none qualifies.

    The one planner behind both the eager path (`plan_decode_run`) and the decode cohort.
    `need_at[e]` lists the members whose decode in iteration e needs a new KV block (their
    first such iteration; later ones, every `block_size` iterations up to `finish`, are
    derived here), `finish_at[e]` those whose last token comes out of iteration e; stale
    members are skipped. Every block in use belongs to a member (`num_used`), `ctx` is the
    sum over members of computed tokens + 1. A run stops before the first iteration that
    needs more blocks than are free, ends after `stop_time` or in a later metrics interval
    than `now`; with a `visible_time` (the next arrival) the iteration that starts before
    it and ends after it becomes the run's crossing iteration.
    """
    if size == 0 or size > limits.max_num_batched_tokens or size > limits.max_num_seqs:
        return None
    cross: tuple[float, float, BatchShape] | None = None
    total_blocks_used = num_used
    free = num_free
    extra_need: dict[int, list[RunMember]] = {}  # epoch -> members needing a block again within the run
    needs: dict[int, list[RunMember]] = {}  # epoch -> members given a block then (for applying the run)
    kv_block_s = 0.0
    ends: list[float] = []
    gaps: list[float] = []
    gap = 0.0
    t = now
    active = size
    sum_seqs = sum_ctx = 0
    first_interval = int(now / interval_s)  # the whole run stays inside one metrics interval
    last_epoch = epoch + max_steps
    while epoch < last_epoch and active:
        epoch += 1
        entries = need_at.get(epoch)
        needy = [m for m in entries if m.is_live] if entries else []
        extra = extra_need.pop(epoch, None)
        if extra:
            needy.extend(extra)
        need = len(needy)
        if need > free:
            break
        d = decode_time(active, ctx)
        end = t + d
        if end > stop_time:
            break
        if end > visible_time:
            if ends and t < visible_time:
                cross = (end, d, batch_shape(0, 0, 0, active, ctx))
            break
        if int(end / interval_s) != first_interval:
            break
        if need:
            free -= need
            needs[epoch] = needy
            nxt = epoch + block_size
            for m in needy:
                if nxt <= m.finish:
                    extra_need.setdefault(nxt, []).append(m)
        if ends:
            gap = max(gap, end - t)  # the same float the step-by-step path computes
        t = end
        ends.append(end)
        gaps.append(gap)
        sum_seqs += active
        sum_ctx += ctx
        ctx += active
        total_blocks_used += need
        for m in finish_at.get(epoch) or ():
            if not m.is_live:
                continue
            req = m.req
            active -= 1
            ctx -= req.num_computed_tokens + (epoch - m.base) + 1
            # Its blocks now: those it held plus those it gained since (see `_blocks_added`).
            first_need = m.base + 1 + req.num_blocks * block_size - req.num_computed_tokens
            released = req.num_blocks
            if epoch >= first_need:
                released += 1 + (epoch - first_need) // block_size
            free += released
            total_blocks_used -= released
        kv_block_s += d * total_blocks_used
    if not ends:
        return None
    run = DecodeRun(now, ends, gaps, limits, batch_shape(0, 0, 0, sum_seqs, sum_ctx), kv_block_s)
    run.needs = needs
    if cross is not None:
        run.cross_end, run.cross_duration_s, run.cross_batch = cross
    return run


def plan_decode_run(
    running: list[Request],
    num_free_blocks: int,
    block_size: int,
    limits: BatchLimits,
    now: float,
    step_time: Callable[[BatchShape], float],
    stop_time: float,
    interval_s: float,
    max_steps: int = 100_000,
) -> DecodeRun | None:
    """Plan a run over explicit running requests (no cohort): `plan_run` with members of base 0."""
    finish_at: dict[int, list[RunMember]] = {}
    need_at: dict[int, list[RunMember]] = {}
    ctx = num_used = 0
    for req in running:
        spec = req.spec
        computed = req.num_computed_tokens
        done = req.num_output_tokens_done
        if done == 0 or spec.num_prompt_tokens + done - computed != 1:
            return None  # a prefill (or recompute) is in flight: take the normal path
        left = req.num_target_tokens - done
        m = RunMember(req, 0, left)
        finish_at.setdefault(left, []).append(m)
        first_need = req.num_blocks * block_size - computed + 1
        if first_need <= left:
            need_at.setdefault(first_need, []).append(m)
        ctx += computed + 1
        num_used += req.num_blocks  # every block in use belongs to a running request

    def decode_time(num_seqs: int, context_tokens: int) -> float:
        return step_time(batch_shape(0, 0, 0, num_seqs, context_tokens))

    return plan_run(
        size=len(running), ctx=ctx, num_free=num_free_blocks, num_used=num_used, block_size=block_size, epoch=0,
        need_at=need_at, finish_at=finish_at, limits=limits, now=now, decode_time=decode_time,
        stop_time=stop_time, interval_s=interval_s, max_steps=max_steps,
    )


def _blocks_added(req: Request, num_steps: int, block_size: int) -> int:
    """Blocks a request gains over `num_steps` decode iterations."""
    first_need = req.num_blocks * block_size - req.num_computed_tokens + 1
    if num_steps < first_need:
        return 0
    return 1 + (num_steps - first_need) // block_size


def apply_decode_run(
    run: DecodeRun, running: list[Request], block_size: int, allocate: Callable[[int], None],
    free: Callable[[int], None],
) -> tuple[list[Request], dict[str, TenantUsage], int]:
    """Advance every running request through the run; returns finished requests, usage, steps."""
    k = run.num_steps
    ends, gaps = run.step_ends, run.step_max_gap
    usage: dict[str, list[int]] = {}
    finished: list[Request] = []
    num_added = 0
    for req in running:
        left = req.num_target_tokens - req.num_output_tokens_done
        s = left if left < k else k
        added = _blocks_added(req, s, block_size)
        c0 = req.num_computed_tokens
        req.num_computed_tokens = c0 + s
        req.num_output_tokens_done += s
        gap = gaps[s - 1]
        if req.last_token_time is not None and ends[0] - req.last_token_time > gap:
            gap = ends[0] - req.last_token_time
        if gap > req.max_itl_s:
            req.max_itl_s = gap
        req.last_token_time = ends[s - 1]
        u = usage.get(req.spec.tenant)
        if u is None:
            u = usage[req.spec.tenant] = [0, 0, 0]
        u[0] += s
        u[1] += s * c0 + s * (s + 1) // 2
        if s == left:
            # Blocks it gained during the run were freed with it: only its original ones return.
            free(req.num_blocks)
            req.num_blocks = 0
            req.status = RequestStatus.FINISHED
            req.finish_time = req.last_token_time
            finished.append(req)
        else:
            req.num_blocks += added
            num_added += added
            u[2] += req.num_blocks
    if num_added:
        allocate(num_added)  # after the frees: the plan checked every intermediate step fits
    finished.sort(key=lambda r: (r.finish_time, r.admit_seq))
    per_tenant = {t: tenant_usage([0, *usage[t]]) for t in sorted(usage)}  # canonical order: tenant name
    return finished, per_tenant, k


def run_report(run: DecodeRun, step_id: int, per_tenant: dict[str, TenantUsage], used: int, total: int) -> StepReport:
    """The StepReport policies and the collector see for a whole run."""
    return step_report(step_id, run.start_time, run.end_time - run.start_time, run.batch, run.limits, per_tenant,
                       used, total, run.num_steps, run.kv_block_seconds)
