"""Collects what a run did: per-request records and per-interval time series."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from equinox.compiled import mypyc_attr, picklable_when_compiled
from equinox.request import Request, RequestStatus
from equinox.scheduling.interface import Platform
from equinox.types import StepReport


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request's fate (times in seconds since the start of the run)."""

    request_id: str
    tenant: str
    arrival_time: float
    num_prompt_tokens: int
    num_output_tokens: int  # generated so far (all of them when finished)
    num_requested_tokens: int
    first_scheduled_time: float | None
    first_token_time: float | None
    finish_time: float | None
    num_preemptions: int
    max_itl_s: float
    reject_reason: str | None

    def __init__(
        self, request_id: str, tenant: str, arrival_time: float, num_prompt_tokens: int, num_output_tokens: int,
        num_requested_tokens: int, first_scheduled_time: float | None, first_token_time: float | None,
        finish_time: float | None, num_preemptions: int, max_itl_s: float, reject_reason: str | None,
    ) -> None:
        # written out (frozen: fields set with object.__setattr__, as the generated one does): mypyc compiles
        # it, where it leaves a generated frozen __init__ to the interpreter
        setattr_ = object.__setattr__
        setattr_(self, "request_id", request_id)
        setattr_(self, "tenant", tenant)
        setattr_(self, "arrival_time", arrival_time)
        setattr_(self, "num_prompt_tokens", num_prompt_tokens)
        setattr_(self, "num_output_tokens", num_output_tokens)
        setattr_(self, "num_requested_tokens", num_requested_tokens)
        setattr_(self, "first_scheduled_time", first_scheduled_time)
        setattr_(self, "first_token_time", first_token_time)
        setattr_(self, "finish_time", finish_time)
        setattr_(self, "num_preemptions", num_preemptions)
        setattr_(self, "max_itl_s", max_itl_s)
        setattr_(self, "reject_reason", reject_reason)

    @property
    def is_finished(self) -> bool:
        """True when the request completed."""
        return self.finish_time is not None

    @property
    def ttft_s(self) -> float | None:
        """Time to first token."""
        return None if self.first_token_time is None else self.first_token_time - self.arrival_time

    @property
    def e2e_s(self) -> float | None:
        """Arrival to last token."""
        return None if self.finish_time is None else self.finish_time - self.arrival_time

    @property
    def queue_s(self) -> float | None:
        """Arrival to first admission."""
        return None if self.first_scheduled_time is None else self.first_scheduled_time - self.arrival_time

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first."""
        if self.finish_time is None or self.first_token_time is None or self.num_output_tokens < 2:
            return None
        return (self.finish_time - self.first_token_time) / (self.num_output_tokens - 1)

    @classmethod
    def from_request(cls, req: Request) -> RequestRecord:
        """Snapshot a live request."""
        spec = req.spec
        return cls(
            spec.request_id, spec.tenant, spec.arrival_time, spec.num_prompt_tokens,
            req.num_output_tokens_done, req.num_target_tokens, req.first_scheduled_time, req.first_token_time,
            req.finish_time, req.num_preemptions, req.max_itl_s,
            req.reject_reason if req.status is RequestStatus.REJECTED else None,
        )


SERIES_COLUMNS = (
    "busy_s", "flops", "num_steps", "num_seqs", "num_tokens", "num_prefill_tokens",
    "num_decode_seqs", "token_budget", "max_num_seqs", "kv_block_s", "num_waiting", "num_running",
)


class Cells(Mapping[int, tuple[Any, Any]]):
    """One tenant's per-interval pair of values, compact: 12 or 20 bytes a cell instead of ~200.

    Reads like `{interval index: (x, y)}` in index order; `add` folds into the last cell
    when the index repeats (steps end in time order, so it nearly always does).
    """

    __slots__ = ("_index", "_x", "_y", "_zero")

    def __init__(self, typecode: str) -> None:
        self._index = array("i")  # interval indices: 2**31 one-second intervals is 68 years
        self._x: array[Any] = array(typecode)
        self._y: array[Any] = array(typecode)
        self._zero: int | float = 0.0 if typecode == "d" else 0  # a new cell is zero plus the first values, as a list's

    def add(self, i: int, x: int | float, y: int | float) -> None:  # not `float`: mypyc would make ints floats
        """Add (x, y) to cell `i` (created at zero if absent)."""
        idx = self._index
        if idx and idx[-1] == i:
            self._x[-1] += x
            self._y[-1] += y
            return
        zero = self._zero
        if not idx or idx[-1] < i:
            idx.append(i)
            self._x.append(zero + x)
            self._y.append(zero + y)
            return
        k = bisect_left(idx, i)
        if idx[k] == i:
            self._x[k] += x
            self._y[k] += y
        else:
            idx.insert(k, i)
            self._x.insert(k, zero + x)
            self._y.insert(k, zero + y)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        k = bisect_left(self._index, i)
        if k == len(self._index) or self._index[k] != i:
            raise KeyError(i)
        return self._x[k], self._y[k]

    def __iter__(self) -> Iterator[int]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def items(self) -> Iterator[tuple[int, tuple[Any, Any]]]:  # type: ignore[override]
        """(interval index, (x, y)) in index order."""
        return zip(self._index, zip(self._x, self._y, strict=True), strict=True)

    def values(self) -> Iterator[tuple[Any, Any]]:  # type: ignore[override]
        """(x, y) in index order."""
        return zip(self._x, self._y, strict=True)


@dataclass
class TimeSeries:
    """Per-interval aggregates; index i covers [i*interval_s, (i+1)*interval_s).

    The collector fills `service` and `resource` with compact `Cells`; hosts that build a
    series by hand (live runs) may use plain dicts of two-item lists: readers only iterate.
    """

    interval_s: float
    # column -> per-interval values: lists, or float arrays (8 bytes a value) in the collector's series
    columns: dict[str, Any] = field(default_factory=lambda: {c: [] for c in SERIES_COLUMNS})
    # tenant -> interval index -> (prompt tokens computed, output tokens generated)
    service: dict[str, Any] = field(default_factory=dict)
    # interval index -> counter kind (e.g. "vtc", "ufc", "rfc", "hf") -> tenant -> value
    counters: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    # tenant -> interval index -> (GPU-seconds apportioned, KV block-seconds held) (docs/algorithm.md, M4)
    resource: dict[str, Any] = field(default_factory=dict)
    num_kv_blocks: int = 0

    def __len__(self) -> int:
        return len(self.columns["busy_s"])

    def _grow(self, index: int) -> None:
        n = index + 1 - len(self)
        if n > 0:
            for col in self.columns.values():
                col.extend([0.0] * n)


RequestSink = Callable[[Request], None]
CounterSink = Callable[[int, Mapping[str, Mapping[str, float]]], None]


class _Pending:
    """One tenant's cells of the interval being filled, as native numbers until the interval changes.

    Adding to a compact `Cells` boxes every number; a step adds to each tenant's cell of the
    interval it ends in, dozens of steps an interval, so the sums wait here and go into the
    cells once (`Collector._flush`). The sums are formed in the same order from the same
    zero, so the cells hold the same values to the bit. Only an interval after every cell
    the tenant has is kept pending; anything else is added to the cells directly, as before.
    """

    __slots__ = ("gpu_s", "has_resource", "index", "kv_s", "output", "prefill", "resource", "service")

    def __init__(self, service: Cells) -> None:
        self.service = service
        self.resource: Cells | None = None
        self.index = -1  # the pending interval (-1: nothing pending)
        self.has_resource = False  # whether the pending interval has a resource cell
        self.prefill = 0
        self.output = 0
        self.gpu_s = 0.0
        self.kv_s = 0.0

    def flush(self) -> None:
        """Move the pending sums into the cells."""
        i = self.index
        if i >= 0:
            self.index = -1
            self.service.add(i, self.prefill, self.output)
            if self.has_resource:
                res = self.resource
                assert res is not None
                res.add(i, self.gpu_s, self.kv_s)

    def last_index(self) -> int:
        """The last interval with a service cell once flushed (-1: none)."""
        if self.index >= 0:
            return self.index
        idx = self.service._index
        return idx[-1] if idx else -1


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled core: Python subclasses still work
class Collector:
    """Receives simulator events and keeps records and time series (no per-token storage).

    With `request_sink` every finished, rejected or unfinished request goes there instead
    of into `records`; with `counter_sink` the policy's counters go there (interval index,
    kind -> tenant -> value) instead of into `series.counters`. A streamed run directory
    uses both, so memory does not grow with the number of requests (issue 13).

    A step's sums for the interval it ends in wait in native numbers (`_Pending`, and the
    `_p_*` fields for the step columns) until a step ends in another interval, or until
    `series` is read: reading `series` always gives every step folded so far.
    """

    def __init__(
        self, interval_s: float = 1.0, flops_of: Callable[[StepReport], float] | None = None,
        platform: Platform | None = None, *, request_sink: RequestSink | None = None,
        counter_sink: CounterSink | None = None,
    ) -> None:
        self._series = TimeSeries(interval_s, {c: array("d") for c in SERIES_COLUMNS})
        self.interval_s = interval_s
        plat = platform or Platform.proxy()
        # Seconds per prefill token, per context token read, per weight read: apportion iteration time.
        self._costs = (plat.s_per_prefill_token, plat.s_per_context_token, plat.s_weight_read)
        self.records: list[RequestRecord] = []
        self._flops_of = flops_of
        self._request_sink = request_sink
        self._counter_sink = counter_sink
        self._last_counter_index = -1
        self.num_preemptions = 0
        self._num_kv_blocks = 0
        self._num_intervals = 0  # len(series) as grown so far
        self._pending: dict[str, _Pending] = {}  # tenant -> its pending cells
        # The step columns of interval `_p_index` (-1: none pending): the float ones as running
        # values (taken from the arrays, put back in place), the integer ones as sums to add.
        self._p_index = -1
        self._p_busy = self._p_kv = self._p_flops = 0.0
        self._p_steps = self._p_seqs = self._p_tokens = self._p_prefill = self._p_decode = 0
        self._p_budget = self._p_max_seqs = self._p_waiting = self._p_running = 0
        cols = self._series.columns  # the arrays grow in place, so references stay valid
        self._step_columns = tuple(cols[c] for c in (
            "num_steps", "num_seqs", "num_tokens", "num_prefill_tokens", "num_decode_seqs", "token_budget",
            "max_num_seqs", "num_waiting", "num_running", "flops", "busy_s", "kv_block_s"))

    @property
    def series(self) -> TimeSeries:
        """The time series of every step folded so far."""
        self._flush()
        return self._series

    def _flush(self) -> None:
        """Move every pending sum into the series."""
        self._series.num_kv_blocks = self._num_kv_blocks
        self._flush_steps()
        for p in self._pending.values():
            p.flush()

    def _grow(self, index: int) -> None:
        if index >= self._num_intervals:
            self._series._grow(index)
            self._num_intervals = index + 1

    def _flush_steps(self) -> None:
        i = self._p_index
        if i < 0:
            return
        self._p_index = -1
        self._grow(i)
        (c_steps, c_seqs, c_tokens, c_prefill, c_decode, c_budget, c_max_seqs, c_waiting, c_running,
         c_flops, c_busy, c_kv) = self._step_columns
        c_busy[i] = self._p_busy
        c_kv[i] = self._p_kv
        c_steps[i] += self._p_steps
        c_seqs[i] += self._p_seqs
        c_tokens[i] += self._p_tokens
        c_prefill[i] += self._p_prefill
        c_decode[i] += self._p_decode
        c_budget[i] += self._p_budget
        c_max_seqs[i] += self._p_max_seqs
        c_waiting[i] = self._p_waiting
        c_running[i] = self._p_running
        if self._flops_of is not None:
            c_flops[i] = self._p_flops

    def on_step(self, report: StepReport, num_waiting: int, num_running: int, num_preempted: int) -> None:
        """Fold one iteration into the time series."""
        self._num_kv_blocks = report.num_kv_blocks_total
        start = report.start_time
        duration = report.duration_s
        end = start + duration
        interval = self.interval_s
        i_end = int(end / interval)
        num_kv_blocks_used = float(report.num_kv_blocks_used)
        kv_block_seconds = report.kv_block_seconds
        if kv_block_seconds is not None and duration > 0:  # folded decode iterations
            num_kv_blocks_used = kv_block_seconds / duration
        flops = self._flops_of(report) if self._flops_of is not None else 0.0
        if int(start / interval) != i_end:  # spans intervals: busy time is split exactly across them
            self._flush_steps()
            self._direct_step(report, start, end, i_end, num_kv_blocks_used, flops, num_waiting, num_running)
        else:  # the usual case: the step lies inside one interval
            b = report.batch
            limits = report.limits
            num_steps = report.num_steps
            num_decode_seqs = b.num_decode_seqs
            num_prefill_tokens = b.num_prefill_tokens
            busy_s = end - start
            if i_end != self._p_index:
                self._flush_steps()
                self._grow(i_end)
                self._p_index = i_end
                _, _, _, _, _, _, _, _, _, c_flops, c_busy, c_kv = self._step_columns
                self._p_busy = c_busy[i_end]
                self._p_kv = c_kv[i_end]
                self._p_flops = c_flops[i_end]
                self._p_steps = self._p_seqs = self._p_tokens = self._p_prefill = self._p_decode = 0
                self._p_budget = self._p_max_seqs = 0
            self._p_busy += busy_s
            self._p_kv += busy_s * num_kv_blocks_used
            self._p_flops += flops
            self._p_steps += num_steps
            self._p_seqs += b.num_prefill_seqs + num_decode_seqs
            self._p_tokens += num_prefill_tokens + num_decode_seqs
            self._p_prefill += num_prefill_tokens
            self._p_decode += num_decode_seqs
            self._p_budget += limits.max_num_batched_tokens * num_steps
            self._p_max_seqs += limits.max_num_seqs * num_steps
            self._p_waiting = num_waiting
            self._p_running = num_running
        per = report.per_tenant
        if per:
            if duration > 0:
                self._fold_tenants(report, i_end)
            else:
                self._add_service(report, i_end)
        self.num_preemptions += num_preempted

    def _direct_step(self, report: StepReport, start: float, end: float, i_end: int, num_kv_blocks_used: float,
                     flops: float, num_waiting: int, num_running: int) -> None:
        """Add a step that spans intervals to the columns in place."""
        self._grow(i_end)
        (c_steps, c_seqs, c_tokens, c_prefill, c_decode, c_budget, c_max_seqs, c_waiting, c_running,
         c_flops, busy, kv_block_s) = self._step_columns
        interval = self.interval_s
        t = start
        i = int(t / interval)
        if i == i_end:
            busy[i] += end - t
            kv_block_s[i] += (end - t) * num_kv_blocks_used
        else:
            while t < end:
                edge = min(end, (i + 1) * interval)
                busy[i] += edge - t
                kv_block_s[i] += (edge - t) * num_kv_blocks_used
                t = edge
                i += 1
        b = report.batch
        limits = report.limits
        num_decode_seqs = b.num_decode_seqs
        num_prefill_tokens = b.num_prefill_tokens
        num_steps = report.num_steps
        c_steps[i_end] += num_steps
        c_seqs[i_end] += b.num_prefill_seqs + num_decode_seqs
        c_tokens[i_end] += num_prefill_tokens + num_decode_seqs
        c_prefill[i_end] += num_prefill_tokens
        c_decode[i_end] += num_decode_seqs
        c_budget[i_end] += limits.max_num_batched_tokens * num_steps
        c_max_seqs[i_end] += limits.max_num_seqs * num_steps
        c_waiting[i_end] = num_waiting
        c_running[i_end] = num_running
        if self._flops_of is not None:
            c_flops[i_end] += flops

    def _tenant(self, tenant: str) -> _Pending:
        """A tenant's pending cells, its service cells made (as they always were) on its first step."""
        service = self._series.service
        cells = service.get(tenant)
        if cells is None:
            cells = service[tenant] = Cells("i")  # tokens a tenant gets in one interval fit 32 bits
        p = self._pending[tenant] = _Pending(cells)
        return p

    def _add_service(self, report: StepReport, index: int) -> None:
        """Each tenant's tokens of a step that took no time (no resource share) into cell `index`."""
        pending = self._pending
        for tenant, u in report.per_tenant.items():
            p = pending.get(tenant)
            if p is None:
                p = self._tenant(tenant)
            if p.index != index:
                p.flush()
                if index <= p.last_index():
                    p.service.add(index, u[0], u[1])
                    continue
                p.index = index
                p.has_resource = False
                p.prefill = p.output = 0
            p.prefill += u[0]
            p.output += u[1]

    def _fold_tenants(self, report: StepReport, index: int) -> None:
        """Each tenant's tokens, and its part of the iteration's time and KV time, into cell `index`.

        The iteration's time is split by what each tenant's work costs (prefill compute,
        context reads, weight reads). One pass over the tenants; the common case (the cell
        is the tenant's pending one) is added in native numbers.
        """
        per = report.per_tenant
        num_prefill = num_out = num_context = num_blocks = 0
        for u in per.values():
            num_prefill += u[0]
            num_out += u[1]
            num_context += u[2]
            num_blocks += u[3]
        c_prefill, c_context, c_weights = self._costs
        per_out = c_weights * report.num_steps / num_out if num_out else 0.0  # weight reads, shared per sequence
        total = c_prefill * num_prefill + c_context * num_context + per_out * num_out
        dur = report.duration_s
        gpu_scale = dur / total if total > 0 else 0.0
        c_prefill *= gpu_scale
        c_context *= gpu_scale
        per_out *= gpu_scale
        kv_scale = dur
        kv_block_seconds = report.kv_block_seconds
        if kv_block_seconds is not None and num_blocks:  # folded run: blocks at its end, scaled to its total
            kv_scale = kv_block_seconds / num_blocks
        pending = self._pending
        resource = self._series.resource
        for tenant, u in per.items():
            p = pending.get(tenant)
            if p is None:
                p = self._tenant(tenant)
            res = p.resource
            if res is None:
                res = resource.get(tenant)
                if res is None:
                    res = resource[tenant] = Cells("d")
                p.resource = res
            n_prefill: int = u[0]
            n_out: int = u[1]
            n_blocks: int = u[3]
            gpu_s = c_prefill * n_prefill + c_context * u[2] + per_out * n_out
            kv_s = n_blocks * kv_scale
            if p.index != index:
                p.flush()
                if index <= p.last_index():
                    p.service.add(index, n_prefill, n_out)
                    res.add(index, gpu_s, kv_s)
                    continue
                p.index = index
                p.has_resource = False
                p.prefill = p.output = 0
            if not p.has_resource:
                p.has_resource = True
                p.gpu_s = p.kv_s = 0.0  # the cells' zero, then `+=` as on them
            p.prefill += n_prefill
            p.output += n_out
            p.gpu_s += gpu_s
            p.kv_s += kv_s

    def sample_counters(self, now: float, counters: Callable[[], Mapping[str, Mapping[str, float]]]) -> None:
        """Record policy counters once per interval (cheap when called every step)."""
        i = int(now / self.interval_s)
        if i != self._last_counter_index:
            self._last_counter_index = i
            values = counters()
            if values:
                if self._counter_sink is not None:
                    self._counter_sink(i, values)
                else:
                    self._series.counters[i] = {kind: dict(v) for kind, v in values.items()}

    def on_done(self, req: Request) -> None:
        """A request finished or was rejected."""
        if self._request_sink is not None:
            self._request_sink(req)
        else:
            self.records.append(RequestRecord.from_request(req))


picklable_when_compiled(RequestRecord)  # frozen: see equinox.compiled
