"""Values that cross the scheduler/engine seam: batch shapes, scheduler outputs, step results.

The per-iteration values (BatchShape, TenantUsage, StepReport, StepResult) are NamedTuples:
as immutable as frozen dataclasses, but built in C. A million-request simulation builds
tens of millions of them, and a frozen dataclass's `__init__` (one `object.__setattr__`
per field) was the largest single cost in the simulator's profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

from equinox.compiled import picklable_when_compiled


class BatchShape(NamedTuple):
    """What an iteration computes, as a cost model needs it.

    `prefill_attention_pairs` counts causal (query, key) pairs of the prefill chunks:
    for a chunk of c new tokens after k cached tokens it adds c*k + c*(c+1)/2.
    `decode_context_tokens` is the sum of the KV lengths the decode sequences attend to.
    """

    num_prefill_tokens: int = 0
    num_prefill_seqs: int = 0
    prefill_attention_pairs: int = 0
    num_decode_seqs: int = 0
    decode_context_tokens: int = 0

    @property
    def num_tokens(self) -> int:
        """Tokens processed by the iteration (prefill tokens plus one per decode sequence)."""
        return self.num_prefill_tokens + self.num_decode_seqs

    @property
    def num_seqs(self) -> int:
        """Sequences in the iteration."""
        return self.num_prefill_seqs + self.num_decode_seqs

    @property
    def is_empty(self) -> bool:
        """True when the iteration computes nothing."""
        return batch_is_empty(self)


def batch_is_empty(batch: BatchShape) -> bool:
    """`batch.is_empty` (a NamedTuple's property is a generic lookup on the compiled core; this is not)."""
    return batch.num_prefill_tokens == 0 and batch.num_decode_seqs == 0


# Final: on the compiled core a Final module name is a C static; any other is a dict lookup at every use
_tuple_new: Final = tuple.__new__


def batch_shape(num_prefill_tokens: int, num_prefill_seqs: int, prefill_attention_pairs: int, num_decode_seqs: int,
                decode_context_tokens: int) -> BatchShape:
    """`BatchShape(...)` of all five counts, for paths that make one per step or per prediction: the
    same tuple, without the interpreted `__new__` a NamedTuple class generates (about 2,000 instructions
    a call on the compiled core, where this takes a few hundred)."""
    return _tuple_new(_BATCH_SHAPE, (num_prefill_tokens, num_prefill_seqs, prefill_attention_pairs,
                                     num_decode_seqs, decode_context_tokens))


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """Per-iteration limits the mechanism obeys; adaptive batching moves them."""

    max_num_batched_tokens: int
    max_num_seqs: int

    def __init__(self, max_num_batched_tokens: int, max_num_seqs: int) -> None:
        # written out (frozen: fields set with object.__setattr__, as the generated one does): mypyc compiles
        # it, where it leaves a generated frozen __init__ to the interpreter
        object.__setattr__(self, "max_num_batched_tokens", max_num_batched_tokens)
        object.__setattr__(self, "max_num_seqs", max_num_seqs)


_BATCH_SHAPE: Final = BatchShape


class TenantUsage(NamedTuple):
    """What one tenant used in one iteration (output tokens include the first token a prefill samples)."""

    num_prefill_tokens: int = 0
    num_output_tokens: int = 0
    num_context_tokens: int = 0
    num_kv_blocks: int = 0


_TENANT_USAGE: Final = TenantUsage


class StepReport(NamedTuple):
    """One finished iteration (or a folded run of decode iterations), as policies and predictors see it."""

    step_id: int
    start_time: float
    duration_s: float
    batch: BatchShape
    limits: BatchLimits
    per_tenant: dict[str, TenantUsage]  # tenants that used the iteration, in name order (simulator)
    num_kv_blocks_used: int
    num_kv_blocks_total: int
    num_steps: int = 1  # >1 when the simulator folded identical decode iterations (batch holds their sums)
    kv_block_seconds: float | None = None  # sum of used blocks x duration over folded iterations

    @property
    def mean_batch(self) -> BatchShape:
        """The average iteration of the report (the batch itself unless iterations were folded)."""
        return mean_batch_of(self)


_STEP_REPORT: Final = StepReport


def tenant_usage(counts: list[int]) -> TenantUsage:
    """`TenantUsage(*counts)` of four counts (prefill, output, context tokens, KV blocks), without the
    interpreted `__new__` of a NamedTuple class (see `batch_shape`): the simulator makes one per tenant
    per step."""
    if len(counts) != 4:
        raise ValueError(f"TenantUsage takes 4 counts, got {counts!r}")
    return _tuple_new(_TENANT_USAGE, counts)


def step_report(step_id: int, start_time: float, duration_s: float, batch: BatchShape, limits: BatchLimits,
                per_tenant: dict[str, TenantUsage], num_kv_blocks_used: int, num_kv_blocks_total: int,
                num_steps: int = 1, kv_block_seconds: float | None = None) -> StepReport:
    """`StepReport(...)` without the interpreted `__new__` of a NamedTuple class (see `batch_shape`)."""
    return _tuple_new(_STEP_REPORT, (step_id, start_time, duration_s, batch, limits, per_tenant, num_kv_blocks_used,
                                     num_kv_blocks_total, num_steps, kv_block_seconds))


def mean_batch_of(report: StepReport) -> BatchShape:
    """`report.mean_batch` (a NamedTuple's property runs interpreted on the compiled core; this does not)."""
    k = report.num_steps
    if k == 1:
        return report.batch
    b = report.batch
    return batch_shape(b.num_prefill_tokens // k, b.num_prefill_seqs // k, b.prefill_attention_pairs // k,
                       round_half_even(b.num_decode_seqs / k), round_half_even(b.decode_context_tokens / k))


def round_half_even(x: float) -> int:
    """`round(x)` of a finite x >= 0 (the builtin is a generic call on the compiled core, this is not): x - int(x)
    is x's fraction exactly (no bits below x's last place are lost), so a half rounds to the even neighbour."""
    n = int(x)
    frac = x - n
    if frac > 0.5 or (frac == 0.5 and n % 2 == 1):
        n += 1
    return n


class StepResult(NamedTuple):
    """What an engine reports after executing one iteration."""

    duration_s: float


picklable_when_compiled(BatchLimits)  # frozen: see equinox.compiled
