"""The run-directory format shared by simulated and live runs.

    config.json            what was run (config, workload provenance, deployment, engine)
    summary.json           RunSummary.as_dict()
    requests.csv           one row per request (times in seconds from the run's start)
    steps.csv              one row per metrics interval (busy time, FLOPs, batch, KV, queue)
    service.csv            per tenant per interval: prompt and output tokens, weighted service,
                           GPU-seconds and KV block-seconds apportioned to the tenant (0 on live runs)
    counters.csv           per counter kind per tenant per interval: the policy's fairness counters
    fairness_windows.csv   VTC service difference per 60 s window

Every file is a pure function of the run's inputs (no wall-clock values), so two runs
with the same config and seed produce byte-identical directories.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from equinox.config import RunConfig
from equinox.metrics.collector import SERIES_COLUMNS, RequestRecord, TimeSeries
from equinox.metrics.rows import (
    COUNTER_COLUMNS,
    REQUEST_COLUMNS,
    CounterLines,
    RequestRows,
    counter_text,
    num,
    request_row,
    write_service_rows,
    write_step_rows,
)
from equinox.metrics.summary import RunSummary
from equinox.request import Request
from equinox.sim.engine import EngineConfig
from equinox.sim.hardware import Deployment
from equinox.sim.run import RunResult


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_run_dir(result: RunResult, path: str | Path, *, reference_cache: str | Path | None = None) -> Path:
    """Write a simulated run as a run directory at `path` (created if needed).

    The fairness metrics that need the simulator's reference runs (each tenant served
    alone, the saturation capacity) are computed first unless `result` has them; the
    runs are cached in `reference_cache` (default: `.equinox-reference` beside `path`).
    """
    from equinox.metrics.baseline import CACHE_DIR_NAME, with_reference

    cache = Path(reference_cache) if reference_cache is not None else Path(path).parent / CACHE_DIR_NAME
    result = with_reference(result, cache)
    wl = result.workload
    config = simulated_config(result.config, wl, result.deployment, result.engine, result.cost_model_name,
                              num_requests=len(wl.requests))
    cfg = result.config
    return write_run_files(
        path, config=config, summary=result.summary, stats=dict(result.stats.__dict__), records=result.records,
        series=result.series, weights={**wl.tenant_weights, **cfg.tenant_weights},
        prompt_weight=cfg.prompt_weight, output_weight=cfg.output_weight,
    )


def simulated_config(config: RunConfig, workload: Any, deployment: Deployment, engine: EngineConfig,
                     cost_model_name: str, *, num_requests: int) -> dict[str, Any]:
    """config.json of a simulated run (`workload`: a Workload or a StreamedWorkload)."""
    wl = workload
    return {
        "kind": "simulated",
        "config": config.to_dict(),
        "workload": {
            "name": wl.name, "source": wl.source, "is_synthetic_tenants": wl.is_synthetic_tenants,
            "num_requests": num_requests, "duration_s": wl.duration_s,
            "tenant_weights": dict(wl.tenant_weights),
        },
        "deployment": {
            "name": deployment.name, "gpu": deployment.gpu.name,
            "model": deployment.model.name, "tensor_parallel": deployment.tensor_parallel,
            "kv_capacity_tokens": engine.num_kv_blocks * engine.block_size,
            "peak_flops": deployment.peak_flops,
        },
        "engine": {**engine.__dict__, "is_chunked": engine.is_chunked},
        "cost_model": cost_model_name,
    }


def write_run_files(
    path: str | Path,
    *,
    config: Mapping[str, Any],
    summary: RunSummary,
    stats: Mapping[str, Any],
    records: Sequence[RequestRecord],
    series: TimeSeries,
    weights: Mapping[str, float],
    prompt_weight: float,
    output_weight: float,
) -> Path:
    """Write the seven files of a run directory from a finished run held in memory (simulated or live)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "requests.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(REQUEST_COLUMNS)
        w.writerows(request_row(r) for r in sorted(records, key=lambda r: (r.arrival_time, r.request_id)))
    with open(out / "counters.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COUNTER_COLUMNS)
        for i in sorted(series.counters):
            f.write(counter_text(i * series.interval_s, series.counters[i]))
    write_run_tail(out, config=config, summary=summary, stats=stats, series=series, weights=weights,
                   prompt_weight=prompt_weight, output_weight=output_weight)
    return out


def write_run_tail(
    out: Path,
    *,
    config: Mapping[str, Any],
    summary: RunSummary,
    stats: Mapping[str, Any],
    series: TimeSeries,
    weights: Mapping[str, float],
    prompt_weight: float,
    output_weight: float,
) -> None:
    """The files written once a run is over: config, summary, steps, service and fairness windows."""
    (out / "config.json").write_text(json.dumps(_json_safe(dict(config)), indent=2, sort_keys=True) + "\n")
    doc = summary.as_dict()
    doc["stats"] = dict(stats)
    (out / "summary.json").write_text(json.dumps(_json_safe(doc), indent=2, sort_keys=True) + "\n")
    dt = series.interval_s
    with open(out / "steps.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("time", *SERIES_COLUMNS))
        write_step_rows(f.write, [series.columns[c] for c in SERIES_COLUMNS], len(series), dt)
    with open(out / "service.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("time", "tenant", "prompt_tokens", "output_tokens", "weighted_service", "gpu_s", "kv_block_s"))
        times: dict[int, str] = {}  # interval starts' texts, shared by the tenants
        for tenant in sorted(series.service):
            write_service_rows(f.write, tenant, series.service[tenant], series.resource.get(tenant, {}),
                               float(weights.get(tenant, 1.0)), prompt_weight, output_weight, dt, times=times)
    fair = summary.fairness
    with open(out / "fairness_windows.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("window_start", "service_diff"))
        w.writerows((num(t), num(d)) for t, d in zip(fair.window_starts, fair.service_diff, strict=True))


class RunDirWriter:
    """A run directory written while the run goes (issue 13): request rows and counters as they come.

    Nothing per request stays in memory here. requests.csv (or requests.parquet) lists
    requests in the order they left the engine (finished or rejected as it happened, then
    those unfinished when the run stopped), not by arrival as `write_run_files` does;
    counters.csv is the same as `write_run_files` writes. `finish` writes the rest.
    """

    def __init__(self, path: str | Path, *, interval_s: float, records_format: str = "csv") -> None:
        if records_format not in RECORD_FORMATS:
            from equinox.errors import ConfigError

            raise ConfigError(f"unknown records format {records_format!r}; use one of {', '.join(RECORD_FORMATS)}")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._interval_s = interval_s
        self._created: list[Path] = []
        self._parquet: _ParquetRequests | None = None
        self._requests_file = None
        self._request_rows: RequestRows | None = None
        if records_format == "parquet":
            self._parquet = _ParquetRequests(self._create("requests.parquet"))
        else:
            self._requests_file = open(self._create("requests.csv"), "w", newline="")
            self._requests = csv.writer(self._requests_file, lineterminator="\n")
            self._requests.writerow(REQUEST_COLUMNS)
            self._request_rows = RequestRows(self._requests_file.write)
        self._counters_file = open(self._create("counters.csv"), "w", newline="")
        self._counters = csv.writer(self._counters_file, lineterminator="\n")
        self._counters.writerow(COUNTER_COLUMNS)
        self._counter_lines = CounterLines()

    def _create(self, name: str) -> Path:
        p = self.path / name
        self._created.append(p)
        return p

    def request(self, record: RequestRecord) -> None:
        """Write one request's row."""
        if self._parquet is not None:
            self._parquet.add(record)
        else:
            self._flush_requests()
            self._requests.writerow(request_row(record))

    def request_of(self, req: Request) -> None:
        """Write the row of a request leaving the engine (what `request(RequestRecord.from_request(req))` writes)."""
        if self._request_rows is not None:
            self._request_rows(req)
        else:
            self._parquet_of(req)

    @property
    def request_sink(self) -> Callable[[Request], None]:
        """`request_of` as the quickest callable: the CSV row writer itself (rows are written in batches)."""
        return self._request_rows if self._request_rows is not None else self._parquet_of

    def _parquet_of(self, req: Request) -> None:
        assert self._parquet is not None
        self._parquet.add(RequestRecord.from_request(req))

    def _flush_requests(self) -> None:
        if self._request_rows is not None:
            self._request_rows.flush()

    def counters(self, index: int, values: Mapping[str, Mapping[str, float]]) -> None:
        """Write one interval's policy counters (a Collector counter sink)."""
        self._counters_file.write(self._counter_lines(index * self._interval_s, values))

    def _close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._requests_file is not None:
            self._flush_requests()
            self._requests_file.close()
        self._counters_file.close()

    def finish(self, **tail: Any) -> Path:
        """Close the streamed files and write the others (`write_run_tail`'s arguments)."""
        self._close()
        write_run_tail(self.path, **tail)
        return self.path

    def abort(self) -> None:
        """Close and remove the files written so far (the run failed)."""
        self._close()
        for p in self._created:
            p.unlink(missing_ok=True)


RECORD_FORMATS = ("csv", "parquet")
_PARQUET_BATCH = 65536


class _ParquetRequests:
    """requests.parquet through pyarrow (`pip install equinox[parquet]`), in row groups of 65,536 requests."""

    def __init__(self, path: Path) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            from equinox.errors import ConfigError

            raise ConfigError("--records-format parquet needs pyarrow: pip install 'equinox[parquet]'") from None
        self._pa = pa
        f64, i64, text = pa.float64(), pa.int64(), pa.string()
        kinds = {"request_id": text, "tenant": text, "status": text, "reject_reason": text,
                 "num_prompt_tokens": i64, "num_output_tokens": i64, "num_requested_tokens": i64,
                 "num_preemptions": i64}
        self._schema = pa.schema([(c, kinds.get(c, f64)) for c in REQUEST_COLUMNS])
        self._writer = pq.ParquetWriter(str(path), self._schema)
        self._rows: list[RequestRecord] = []

    def add(self, r: RequestRecord) -> None:
        self._rows.append(r)
        if len(self._rows) >= _PARQUET_BATCH:
            self._flush()

    def _flush(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        cols: dict[str, list[Any]] = {c: [] for c in REQUEST_COLUMNS}
        for r in rows:
            status = ("rejected" if r.reject_reason is not None
                      else "finished" if r.finish_time is not None else "unfinished")
            for c, v in zip(REQUEST_COLUMNS, (
                    r.request_id, r.tenant, r.arrival_time, r.num_prompt_tokens, r.num_output_tokens,
                    r.num_requested_tokens, r.first_scheduled_time, r.first_token_time, r.finish_time, r.ttft_s,
                    r.tpot_s, r.e2e_s, r.queue_s, r.max_itl_s, r.num_preemptions, status, r.reject_reason),
                    strict=True):
                cols[c].append(v)
        self._writer.write_table(self._pa.table(cols, schema=self._schema))

    def close(self) -> None:
        self._flush()
        self._writer.close()
