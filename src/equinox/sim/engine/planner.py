"""Decode runs: many identical-shape decode iterations folded into one simulator event.

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

from collections.abc import Callable
from dataclasses import dataclass, field

from equinox.request import Request, RequestStatus
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage


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
    is_folded: bool = False  # the run's own iterations were applied (the crossing one may remain)
    cohort_needs: dict[int, list[Request]] = field(default_factory=dict)  # cohort runs: new blocks by iteration

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
    """Plan the longest run allowed from `now`; None when not even one iteration qualifies."""
    n = len(running)
    if n == 0 or n > limits.max_num_batched_tokens or n > limits.max_num_seqs:
        return None
    finish_at: dict[int, list[Request]] = {}
    block_need: dict[int, int] = {}  # step index -> requests needing a new block at that step
    ctx = 0
    for req in running:
        spec = req.spec
        computed = req.num_computed_tokens
        done = req.num_output_tokens_done
        if done == 0 or spec.num_prompt_tokens + done - computed != 1:
            return None  # a prefill (or recompute) is in flight: take the normal path
        left = req.num_target_tokens - done
        finish_at.setdefault(left, []).append(req)
        first_need = req.num_blocks * block_size - computed + 1
        if first_need <= left:
            block_need[first_need] = block_need.get(first_need, 0) + 1
        ctx += computed + 1
    total_blocks_used = sum(r.num_blocks for r in running)  # every block in use belongs to a running request
    kv_block_s = 0.0
    ends: list[float] = []
    gaps: list[float] = []
    t = now
    free = num_free_blocks
    active = n
    sum_seqs = sum_ctx = 0
    gap = 0.0
    first_interval = int(now / interval_s)  # the whole run stays inside one metrics interval
    step = 0
    while step < max_steps and active:
        step += 1
        need = block_need.pop(step, 0)
        if need > free:
            break
        d = step_time(BatchShape(0, 0, 0, active, ctx))
        end = t + d
        if end > stop_time or int(end / interval_s) != first_interval:
            break
        free -= need
        if need:  # these requests need their next block `block_size` steps later
            block_need[step + block_size] = block_need.get(step + block_size, 0) + need
        if ends:
            gap = max(gap, end - t)  # the same float the step-by-step path computes
        t = end
        ends.append(end)
        gaps.append(gap)
        sum_seqs += active
        sum_ctx += ctx
        ctx += active
        total_blocks_used += need
        for req in finish_at.get(step, ()):
            active -= 1
            ctx -= req.num_computed_tokens + step + 1
            released = req.num_blocks + _blocks_added(req, step, block_size)
            free += released
            total_blocks_used -= released
            _drop_block_needs(block_need, req, step, block_size)
        kv_block_s += d * total_blocks_used
    if not ends:
        return None
    return DecodeRun(now, ends, gaps, limits, BatchShape(0, 0, 0, sum_seqs, sum_ctx), kv_block_s)


def _blocks_added(req: Request, num_steps: int, block_size: int) -> int:
    """Blocks a request gains over `num_steps` decode iterations."""
    first_need = req.num_blocks * block_size - req.num_computed_tokens + 1
    if num_steps < first_need:
        return 0
    return 1 + (num_steps - first_need) // block_size


def _drop_block_needs(block_need: dict[int, int], req: Request, step: int, block_size: int) -> None:
    """A finished request needs no more blocks: remove its future entry."""
    first_need = req.num_blocks * block_size - req.num_computed_tokens + 1
    if first_need > req.num_target_tokens - req.num_output_tokens_done:
        return  # it never needed one
    nxt = first_need if step < first_need else first_need + ((step - first_need) // block_size + 1) * block_size
    count = block_need.get(nxt, 0)
    if count > 1:
        block_need[nxt] = count - 1
    elif count == 1:
        del block_need[nxt]


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
    per_tenant = {t: TenantUsage(0, *usage[t]) for t in sorted(usage)}  # canonical order: tenant name
    return finished, per_tenant, k


def run_report(run: DecodeRun, step_id: int, per_tenant: dict[str, TenantUsage], used: int, total: int) -> StepReport:
    """The StepReport policies and the collector see for a whole run."""
    return StepReport(step_id, run.start_time, run.end_time - run.start_time, run.batch, run.limits, per_tenant,
                      used, total, run.num_steps, run.kv_block_seconds)
