"""Turn one vLLM iteration into an Equinox `StepReport`: who used how many tokens, how long it took.

Token counts are read from vLLM's request objects around `update_from_output`, so they
are exact under both the synchronous and the asynchronous scheduler (where the next
step is scheduled before the previous one's output is processed). vLLM-free: only
plain attributes of vLLM's `SchedulerOutput` and `Request` are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage


@dataclass(frozen=True, slots=True)
class ScheduledEntry:
    """One request of a scheduled step: tokens scheduled and KV already cached before them."""

    request_id: str
    tenant: str
    num_scheduled_tokens: int
    num_computed_before: int
    num_outputs_at_schedule: int


@dataclass(frozen=True, slots=True)
class PendingStep:
    """A scheduled step whose output has not been processed yet."""

    step_id: int
    scheduled_time: float
    limits: BatchLimits
    entries: tuple[ScheduledEntry, ...]


def record_step(
    step_id: int, now: float, limits: BatchLimits, num_scheduled: Mapping[str, int],
    requests: Mapping[str, Any], tenant_of: Mapping[str, Any],
) -> PendingStep:
    """Capture what a just-scheduled step computes (called right after vLLM's `schedule`)."""
    entries = []
    for rid, n in num_scheduled.items():
        request = requests.get(rid)
        view = tenant_of.get(rid)
        if request is None or view is None:
            continue
        # vLLM has already advanced num_computed_tokens by the scheduled tokens.
        computed_before = max(int(request.num_computed_tokens) - n, 0)
        entries.append(ScheduledEntry(rid, view.tenant, n, computed_before, int(request.num_output_tokens)))
    return PendingStep(step_id, now, limits, tuple(entries))


def is_decode(entry: ScheduledEntry, num_prompt_tokens: int) -> bool:
    """True for a sequence in steady decode: one token after a complete prompt."""
    return entry.num_scheduled_tokens == 1 and entry.num_computed_before >= num_prompt_tokens


def build_report(
    pending: PendingStep, start_time: float, end_time: float, output_deltas: Mapping[str, int],
    prompt_lengths: Mapping[str, int], block_size: int, num_kv_blocks_used: int, num_kv_blocks_total: int,
) -> StepReport:
    """The StepReport of a finished step; `output_deltas` are tokens each request gained in it."""
    per_tenant: dict[str, list[int]] = {}
    num_prefill_tokens = num_prefill_seqs = pairs = num_decode = decode_ctx = 0
    for e in pending.entries:
        acc = per_tenant.setdefault(e.tenant, [0, 0, 0, 0])
        n, k = e.num_scheduled_tokens, e.num_computed_before
        if is_decode(e, prompt_lengths.get(e.request_id, 0)):
            num_decode += 1
            decode_ctx += k + 1
            acc[2] += k + 1
        else:
            num_prefill_tokens += n
            num_prefill_seqs += 1
            pairs += n * k + n * (n + 1) // 2
            acc[0] += n
        acc[1] += max(output_deltas.get(e.request_id, 0), 0)
        acc[3] += -(-(k + n) // block_size)
    batch = BatchShape(
        num_prefill_tokens=num_prefill_tokens, num_prefill_seqs=num_prefill_seqs,
        prefill_attention_pairs=pairs, num_decode_seqs=num_decode, decode_context_tokens=decode_ctx,
    )
    usage = {
        t: TenantUsage(num_prefill_tokens=a[0], num_output_tokens=a[1], num_context_tokens=a[2], num_kv_blocks=a[3])
        for t, a in per_tenant.items()
    }
    return StepReport(
        step_id=pending.step_id, start_time=start_time, duration_s=max(end_time - start_time, 0.0),
        batch=batch, limits=pending.limits, per_tenant=usage,
        num_kv_blocks_used=num_kv_blocks_used, num_kv_blocks_total=num_kv_blocks_total,
    )
