"""Turn live measurements into the simulator's records, time series and summary, and write a run directory.

The files are the simulator's (see `equinox.rundir`), so `equinox report` and
`equinox compare` read live runs too. What a client can and cannot see:

- service per tenant per interval: prompt tokens when the first token arrived (prefill
  done), output tokens when each token arrived, exactly as the simulator counts them;
- `first_scheduled_time`: arrival plus the gateway's reported queue wait
  (`x-equinox-queue-wait-s`) when the target is the gateway, else the first-token time
  (an engine's internal queue is invisible, so "waiting" means "no token yet");
- no GPU busy time, FLOPs or KV use (those columns are 0; utilisation is not measured);
- fairness counters, when the target exposes the gateway's /metrics, sampled per interval.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from equinox.bench.loadgen import Outcome
from equinox.metrics.collector import RequestRecord, TimeSeries
from equinox.metrics.summary import RunSummary, summarise


def to_record(out: Outcome) -> RequestRecord:
    """A RequestRecord of one live request (errors become reject reasons; drained ones stay unfinished)."""
    spec = out.request.spec
    arrival = spec.arrival_time
    if out.queue_wait_s is not None and out.first_token_time is not None:
        scheduled: float | None = arrival + out.queue_wait_s
    else:
        scheduled = out.first_token_time
    times = out.token_times
    max_itl = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
    is_unfinished = out.error is not None and out.error.startswith("unfinished")
    reason = None if out.error is None or is_unfinished else out.error
    finish = out.finish_time if out.error is None else None
    return RequestRecord(
        request_id=spec.request_id, tenant=out.request.tenant, arrival_time=arrival,
        num_prompt_tokens=out.num_prompt_tokens or spec.num_prompt_tokens,
        num_output_tokens=out.num_output_tokens, num_requested_tokens=spec.num_generated_tokens,
        first_scheduled_time=scheduled if reason is None else None,
        first_token_time=out.first_token_time if reason is None else None,
        finish_time=finish, num_preemptions=0, max_itl_s=max_itl, reject_reason=reason,
    )


def build_series(outcomes: Sequence[Outcome], records: Sequence[RequestRecord], interval_s: float,
                 end_time: float) -> TimeSeries:
    """Per-interval service (prompt at first token, output per token) and waiting/running counts."""
    series = TimeSeries(interval_s)
    num = int(end_time / interval_s) + 1
    series._grow(num - 1)
    cols = series.columns
    waiting = [0] * (num + 1)  # difference arrays: requests without a token yet / streaming, at interval ends
    running = [0] * (num + 1)
    for out, rec in zip(outcomes, records, strict=True):
        if rec.reject_reason is not None:
            continue
        per = series.service.setdefault(rec.tenant, {})
        if out.first_token_time is not None:
            i = min(num - 1, int(out.first_token_time / interval_s))
            per.setdefault(i, [0, 0])[0] += rec.num_prompt_tokens
            cols["num_prefill_tokens"][i] += rec.num_prompt_tokens
            cols["num_tokens"][i] += rec.num_prompt_tokens
        counted = 0
        for t in out.token_times:
            i = min(num - 1, int(t / interval_s))
            per.setdefault(i, [0, 0])[1] += 1
            cols["num_tokens"][i] += 1
            counted += 1
        extra = rec.num_output_tokens - counted  # tokens a chunk carried beyond one: at the last chunk
        if extra > 0 and out.token_times:
            per[min(num - 1, int(out.token_times[-1] / interval_s))][1] += extra
        start = out.send_time if out.send_time is not None else rec.arrival_time
        first = rec.first_token_time if rec.first_token_time is not None else math.inf
        end = rec.finish_time if rec.finish_time is not None else end_time
        _mark(waiting, start, first, interval_s)
        _mark(running, first, end, interval_s)
    for name, diff in (("num_waiting", waiting), ("num_running", running)):
        level = 0
        for i in range(num):
            level += diff[i]
            cols[name][i] = float(level)
    return series


def _mark(diff: list[int], lo: float, hi: float, dt: float) -> None:
    """Count +1 at every interval i whose end (i+1)*dt lies in [lo, hi)."""
    num = len(diff) - 1
    if not hi > lo:
        return
    i = max(0, math.ceil(lo / dt) - 1)
    j = num if math.isinf(hi) else min(num, max(0, math.ceil(hi / dt) - 1))
    if i < j:
        diff[i] += 1
        diff[j] -= 1


def live_summary(records: Sequence[RequestRecord], series: TimeSeries, *, weights: Mapping[str, float],
                 arrival_end_time: float, prompt_weight: float, output_weight: float,
                 window_s: float, warmup_s: float) -> RunSummary:
    """The simulator's RunSummary of a live run (no GPU figures: peak FLOPs unknown)."""
    summary, _ = summarise(
        records, series, weights=weights, peak_flops=0.0, arrival_end_time=arrival_end_time, num_preemptions=0,
        prompt_weight=prompt_weight, output_weight=output_weight, window_s=window_s, warmup_s=warmup_s,
        keep_matrix=False,
    )
    return summary


def write_live_run_dir(path: str | Path, *, config: Mapping[str, Any], summary: RunSummary,
                       stats: Mapping[str, Any], records: Sequence[RequestRecord], series: TimeSeries,
                       weights: Mapping[str, float], prompt_weight: float, output_weight: float) -> Path:
    """Write the seven run-directory files of `equinox.rundir` for a live run."""
    from equinox.rundir import write_run_files

    return write_run_files(path, config=config, summary=summary, stats=stats, records=records, series=series,
                           weights=weights, prompt_weight=prompt_weight, output_weight=output_weight)


def parse_fairness_counters(text: str) -> dict[str, dict[str, float]]:
    """`equinox_gateway_fairness_counter{kind=…,tenant=…}` samples of a Prometheus page: kind -> tenant -> value."""
    out: dict[str, dict[str, float]] = {}
    prefix = "equinox_gateway_fairness_counter{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels_end = line.rfind("}")
        labels = dict(_label(p) for p in line[len(prefix):labels_end].split('",') if "=" in p)
        try:
            value = float(line[labels_end + 1:].strip())
        except ValueError:
            continue
        if "kind" in labels and "tenant" in labels:
            out.setdefault(labels["kind"], {})[labels["tenant"]] = value
    return out


def _label(part: str) -> tuple[str, str]:
    key, _, value = part.partition("=")
    return key.strip(), value.strip().strip('"')
