"""Latency and throughput metrics from request records."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from equinox.metrics.collector import RequestRecord
from equinox.metrics.records import Columns, RecordColumns, as_columns


@dataclass(frozen=True)
class Stats:
    """Summary statistics of one latency metric (seconds)."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Stats:
        """Mean, percentiles (nearest rank) and max of `values`; NaN when empty."""
        xs = sorted(values)
        if not xs:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan)
        return cls(len(xs), math.fsum(xs) / len(xs), _pct(xs, 50), _pct(xs, 90), _pct(xs, 99), xs[-1])

    @classmethod
    def of_array(cls, values: np.ndarray) -> Stats:
        """`Stats.of` of a float array (the same figures, to the bit)."""
        n = len(values)
        if not n:
            return cls.of(())
        # The three ranks by a partial sort (np.partition puts each exactly where a full sort would);
        # fsum is correctly rounded, so the order it adds in does not matter.
        k50, k90, k99 = _rank(n, 50), _rank(n, 90), _rank(n, 99)
        part = np.partition(values, sorted({k50, k90, k99}))
        return cls(n, math.fsum(values.tolist()) / n, float(part[k50]), float(part[k90]), float(part[k99]),
                   float(values.max()))

    def as_dict(self) -> dict[str, float]:
        """Plain dict for JSON."""
        return {"count": self.count, "mean": self.mean, "p50": self.p50, "p90": self.p90, "p99": self.p99,
                "max": self.max}


def _pct(sorted_xs: Sequence[float], q: float) -> float:
    return sorted_xs[_rank(len(sorted_xs), q)]


def _rank(n: int, q: float) -> int:
    """Index of the nearest-rank q-th percentile among n sorted values."""
    return max(0, math.ceil(q / 100.0 * n) - 1)


@dataclass(frozen=True)
class LatencySummary:
    """TTFT, TPOT, E2E, queueing delay and max inter-token gap over a set of requests."""

    ttft: Stats
    tpot: Stats
    e2e: Stats
    queue: Stats
    max_itl: Stats

    @classmethod
    def of(cls, records: Iterable[RequestRecord] | RecordColumns | Columns) -> LatencySummary:
        """Summarise finished requests."""
        if isinstance(records, (RecordColumns, Columns)):
            return cls.of_columns(as_columns(records))
        ttft: list[float] = []
        tpot: list[float] = []
        e2e: list[float] = []
        queue: list[float] = []
        itl: list[float] = []
        for r in records:
            if r.finish_time is None:
                continue
            ttft.append(r.ttft_s)  # type: ignore[arg-type]
            e2e.append(r.e2e_s)  # type: ignore[arg-type]
            queue.append(r.queue_s)  # type: ignore[arg-type]
            t = r.tpot_s
            if t is not None:
                tpot.append(t)
                itl.append(r.max_itl_s)
        return cls(Stats.of(ttft), Stats.of(tpot), Stats.of(e2e), Stats.of(queue), Stats.of(itl))

    @classmethod
    def of_columns(cls, c: Columns) -> LatencySummary:
        """`of` over request columns."""
        f = c.is_finished
        arrival = c.arrival[f]
        tpot = c.tpot()[f]
        has_tpot = ~np.isnan(tpot)
        return cls(Stats.of_array(c.first_token[f] - arrival), Stats.of_array(tpot[has_tpot]),
                   Stats.of_array(c.finish[f] - arrival), Stats.of_array(c.scheduled[f] - arrival),
                   Stats.of_array(c.max_itl[f][has_tpot]))

    def as_dict(self) -> dict[str, dict[str, float]]:
        """Plain dict for JSON."""
        return {k: getattr(self, k).as_dict() for k in ("ttft", "tpot", "e2e", "queue", "max_itl")}


@dataclass(frozen=True)
class Throughput:
    """Served tokens and requests per second over the run's span (first arrival to last finish)."""

    span_s: float
    num_finished: int
    num_rejected: int
    num_unfinished: int
    num_prompt_tokens: int
    num_output_tokens: int
    tokens_per_s: float
    output_tokens_per_s: float
    requests_per_s: float

    @classmethod
    def of(cls, records: Sequence[RequestRecord] | RecordColumns | Columns) -> Throughput:
        """Throughput = (prompt + output) tokens of finished requests / span (VTC's definition)."""
        if isinstance(records, (RecordColumns, Columns)):
            return cls.of_columns(as_columns(records))
        finished = [r for r in records if r.finish_time is not None]
        rejected = sum(1 for r in records if r.reject_reason is not None)
        unfinished = len(records) - len(finished) - rejected
        if not finished:
            return cls(0.0, 0, rejected, unfinished, 0, 0, 0.0, 0.0, 0.0)
        start = min(r.arrival_time for r in records)
        end = max(r.finish_time for r in finished)  # type: ignore[type-var]
        span = max(end - start, 1e-9)  # type: ignore[operator]
        p = sum(r.num_prompt_tokens for r in finished)
        o = sum(r.num_output_tokens for r in finished)
        return cls(span, len(finished), rejected, unfinished, p, o, (p + o) / span, o / span, len(finished) / span)

    @classmethod
    def of_columns(cls, c: Columns) -> Throughput:
        """`of` over request columns."""
        f = c.is_finished
        num_finished = int(f.sum())
        rejected = int(c.rejected.sum())
        unfinished = len(c) - num_finished - rejected
        if not num_finished:
            return cls(0.0, 0, rejected, unfinished, 0, 0, 0.0, 0.0, 0.0)
        start = float(c.arrival.min())
        end = float(c.finish[f].max())
        span = max(end - start, 1e-9)
        p = int(c.num_prompt[f].sum())
        o = int(c.num_output[f].sum())
        return cls(span, num_finished, rejected, unfinished, p, o, (p + o) / span, o / span, num_finished / span)
