"""Per-request outcomes as compact columns: what the summary needs of every request, ~70 bytes each.

A million `RequestRecord` objects cost about 400 MB; the same facts as typed arrays cost
70 MB, and numpy computes the summary from them in one pass (issue 13). Every function
here reproduces its record-list counterpart in `latency.py`, `fairness.py` and
`holistic.py` to the bit: sums of floats are made in the same order (`np.add.at`
applies its additions one by one, in index order), means use `math.fsum`, quantiles
sort the same values.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from equinox.compiled import picklable_when_compiled
from equinox.metrics.collector import RequestRecord
from equinox.request import Request, RequestStatus

NAN = math.nan
_NUM_TIMES = 5  # floats a row adds to RecordColumns' pending rows
_NUM_COUNTS = 6  # integers a row adds
_BATCH = 4096  # rows held before they move into the arrays


class RecordColumns:
    """Append-only columns of request outcomes (None times are NaN); tenants are small integers."""

    __slots__ = (
        "_arrival",
        "_finish",
        "_first_token",
        "_frozen",
        "_max_itl",
        "_output",
        "_pending_counts",
        "_pending_times",
        "_preemptions",
        "_prompt",
        "_rejected",
        "_requested",
        "_scheduled",
        "_tenant",
        "_tenant_index",
        "first_reject_reason",
        "tenants",
    )

    def __init__(self) -> None:
        self.tenants: list[str] = []  # in order of first appearance
        self._tenant_index: dict[str, int] = {}
        self._tenant = array("i")
        self._arrival, self._scheduled, self._first_token, self._finish = array("d"), array("d"), array("d"), array("d")
        self._prompt, self._output, self._requested, self._preemptions = array("q"), array("q"), array("q"), array("q")
        self._max_itl = array("d")
        self._rejected = array("b")
        # Rows not yet in the arrays, flat: two list extends a row cost far less than eleven array appends.
        self._pending_times: list[float] = []  # arrival, scheduled, first token, finish, max ITL (NaN for None)
        self._pending_counts: list[int] = []  # tenant, prompt, output, requested, preemptions, rejected
        self.first_reject_reason: str | None = None
        self._frozen: Columns | None = None

    def __len__(self) -> int:
        return len(self._tenant) + len(self._pending_counts) // _NUM_COUNTS

    def _tenant_id(self, tenant: str) -> int:
        i = self._tenant_index.get(tenant)
        if i is None:
            i = self._tenant_index[tenant] = len(self.tenants)
            self.tenants.append(tenant)
        return i

    def add(self, r: RequestRecord) -> None:
        """Append one record."""
        self._append(r.tenant, r.arrival_time, r.first_scheduled_time, r.first_token_time, r.finish_time,
                     r.num_prompt_tokens, r.num_output_tokens, r.num_requested_tokens, r.num_preemptions,
                     r.max_itl_s, r.reject_reason)

    def add_request(self, req: Request) -> None:
        """Append a finished, rejected or unfinished live request (as RequestRecord.from_request would)."""
        spec = req.spec
        reason = req.reject_reason if req.status is RequestStatus.REJECTED else None
        self._append(spec.tenant, spec.arrival_time, req.first_scheduled_time, req.first_token_time, req.finish_time,
                     spec.num_prompt_tokens, req.num_output_tokens_done, req.num_target_tokens, req.num_preemptions,
                     req.max_itl_s, reason)

    def _append(self, tenant: str, arrival: float, scheduled: float | None, first_token: float | None,
                finish: float | None, num_prompt: int, num_output: int, num_requested: int, num_preemptions: int,
                max_itl: float, reason: str | None) -> None:
        if self._frozen is not None:
            raise RuntimeError("RecordColumns: no rows can be added once columns() has been taken")
        i = self._tenant_index.get(tenant)
        self._pending_times.extend((arrival, NAN if scheduled is None else scheduled,
                                    NAN if first_token is None else first_token, NAN if finish is None else finish,
                                    max_itl))
        counts = self._pending_counts
        counts.extend((self._tenant_id(tenant) if i is None else i, num_prompt, num_output, num_requested,
                       num_preemptions, reason is not None))
        if reason is not None and self.first_reject_reason is None:
            self.first_reject_reason = reason
        if len(counts) >= _NUM_COUNTS * _BATCH:
            self._flush()

    def _flush(self) -> None:
        """Move the pending rows into the arrays."""
        times, counts = self._pending_times, self._pending_counts
        self._pending_times, self._pending_counts = [], []
        for column, k in ((self._arrival, 0), (self._scheduled, 1), (self._first_token, 2), (self._finish, 3),
                          (self._max_itl, 4)):
            column.fromlist(times[k::_NUM_TIMES])
        for int_column, k in ((self._tenant, 0), (self._prompt, 1), (self._output, 2), (self._requested, 3),
                              (self._preemptions, 4), (self._rejected, 5)):
            int_column.fromlist(counts[k::_NUM_COUNTS])

    @classmethod
    def of(cls, records: Iterable[RequestRecord]) -> RecordColumns:
        """Columns of `records`, in their order."""
        out = cls()
        for r in records:
            out.add(r)
        return out

    def columns(self) -> Columns:
        """Numpy views of the columns, without a copy: the columns take no further rows after this."""
        if self._frozen is None:
            self._flush()
            f, i = _f64, _i64
            tenant = np.frombuffer(self._tenant, dtype=np.int32) if len(self) else np.zeros(0, np.int32)
            rejected = np.frombuffer(self._rejected, dtype=np.int8).astype(bool) if len(self) else np.zeros(0, bool)
            self._frozen = Columns(
                tuple(self.tenants), tenant, f(self._arrival), f(self._scheduled), f(self._first_token),
                f(self._finish), i(self._prompt), i(self._output), i(self._requested), i(self._preemptions),
                f(self._max_itl), rejected,
            )
        return self._frozen


class RequestTee:
    """A request sink that adds each request to `columns`, then hands it to `then` (one call, no closure)."""

    def __init__(self, columns: RecordColumns, then: Callable[[Request], None]) -> None:
        self._columns = columns
        self._then = then

    def __call__(self, req: Request) -> None:
        """Take a request leaving the engine."""
        self._columns.add_request(req)
        self._then(req)


def _f64(a: array) -> np.ndarray:  # type: ignore[type-arg]
    return np.frombuffer(a, dtype=np.float64) if len(a) else np.zeros(0)


def _i64(a: array) -> np.ndarray:  # type: ignore[type-arg]
    return np.frombuffer(a, dtype=np.int64) if len(a) else np.zeros(0, np.int64)


@dataclass(frozen=True)
class Columns:
    """A frozen set of request columns (numpy arrays of equal length; NaN where a time is None)."""

    tenant_names: tuple[str, ...]
    tenant: np.ndarray
    arrival: np.ndarray
    scheduled: np.ndarray
    first_token: np.ndarray
    finish: np.ndarray
    num_prompt: np.ndarray
    num_output: np.ndarray
    num_requested: np.ndarray
    num_preemptions: np.ndarray
    max_itl: np.ndarray
    rejected: np.ndarray

    def __len__(self) -> int:
        return len(self.tenant)

    @property
    def is_finished(self) -> np.ndarray:
        """Mask of finished requests."""
        return ~np.isnan(self.finish)

    def take(self, mask: np.ndarray) -> Columns:
        """The rows where `mask` holds (order kept)."""
        return Columns(self.tenant_names, *(getattr(self, f)[mask] for f in _ARRAYS))  # type: ignore[arg-type, call-arg]

    def present_tenants(self) -> list[str]:
        """Tenants that have rows, in order of first appearance."""
        if not len(self):
            return []
        ids, first = np.unique(self.tenant, return_index=True)
        return [self.tenant_names[int(i)] for i in ids[np.argsort(first, kind="stable")]]

    def of_tenant(self, name: str) -> Columns:
        """One tenant's rows."""
        if name not in self.tenant_names:
            return self.take(np.zeros(len(self), bool))
        return self.take(self.tenant == self.tenant_names.index(name))

    def tpot(self) -> np.ndarray:
        """Time per output token after the first, NaN where RequestRecord.tpot_s is None."""
        ok = self.is_finished & ~np.isnan(self.first_token) & (self.num_output >= 2)
        out = np.full(len(self), NAN)
        out[ok] = (self.finish[ok] - self.first_token[ok]) / (self.num_output[ok] - 1).astype(np.float64)
        return out

    def end_time(self) -> float:
        """records_end_time: the latest instant any row mentions."""
        end = 0.0
        for col in (self.arrival, self.first_token, self.finish):
            if len(col):
                m = np.nanmax(col, initial=-math.inf)
                if m > end:
                    end = float(m)
        return end


_ARRAYS = ("tenant", "arrival", "scheduled", "first_token", "finish", "num_prompt", "num_output", "num_requested",
           "num_preemptions", "max_itl", "rejected")


def as_columns(records: Sequence[RequestRecord] | RecordColumns | Columns) -> Columns:
    """Columns of a record list (or the columns themselves)."""
    if isinstance(records, Columns):
        return records
    if isinstance(records, RecordColumns):
        return records.columns()
    return RecordColumns.of(records).columns()


picklable_when_compiled(Columns)  # frozen: see equinox.compiled
