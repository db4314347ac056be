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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from equinox.metrics.collector import SERIES_COLUMNS, RequestRecord, TimeSeries
from equinox.metrics.summary import RunSummary
from equinox.sim.run import RunResult

REQUEST_COLUMNS = (
    "request_id", "tenant", "arrival_time", "num_prompt_tokens", "num_output_tokens",
    "num_requested_tokens", "first_scheduled_time", "first_token_time", "finish_time",
    "ttft_s", "tpot_s", "e2e_s", "queue_s", "max_itl_s", "num_preemptions", "status", "reject_reason",
)


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return repr(round(x, 9)) if isinstance(x, float) else str(x)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def request_row(r: RequestRecord) -> list[str]:
    """One requests.csv row."""
    status = "rejected" if r.reject_reason is not None else ("finished" if r.finish_time is not None else "unfinished")
    return [
        r.request_id, r.tenant, _num(r.arrival_time), str(r.num_prompt_tokens), str(r.num_output_tokens),
        str(r.num_requested_tokens), _num(r.first_scheduled_time), _num(r.first_token_time),
        _num(r.finish_time), _num(r.ttft_s), _num(r.tpot_s), _num(r.e2e_s), _num(r.queue_s),
        _num(r.max_itl_s), str(r.num_preemptions), status, r.reject_reason or "",
    ]


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
    config = {
        "kind": "simulated",
        "config": result.config.to_dict(),
        "workload": {
            "name": wl.name, "source": wl.source, "is_synthetic_tenants": wl.is_synthetic_tenants,
            "num_requests": len(wl.requests), "duration_s": wl.duration_s,
            "tenant_weights": dict(wl.tenant_weights),
        },
        "deployment": {
            "name": result.deployment.name, "gpu": result.deployment.gpu.name,
            "model": result.deployment.model.name, "tensor_parallel": result.deployment.tensor_parallel,
            "kv_capacity_tokens": result.engine.num_kv_blocks * result.engine.block_size,
            "peak_flops": result.deployment.peak_flops,
        },
        "engine": {**result.engine.__dict__, "is_chunked": result.engine.is_chunked},
        "cost_model": result.cost_model_name,
    }
    cfg = result.config
    return write_run_files(
        path, config=config, summary=result.summary, stats=dict(result.stats.__dict__), records=result.records,
        series=result.series, weights={**wl.tenant_weights, **cfg.tenant_weights},
        prompt_weight=cfg.prompt_weight, output_weight=cfg.output_weight,
    )


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
    """Write the seven files of a run directory (shared by simulated and live runs)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(_json_safe(dict(config)), indent=2, sort_keys=True) + "\n")
    doc = summary.as_dict()
    doc["stats"] = dict(stats)
    (out / "summary.json").write_text(json.dumps(_json_safe(doc), indent=2, sort_keys=True) + "\n")
    with open(out / "requests.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(REQUEST_COLUMNS)
        w.writerows(request_row(r) for r in sorted(records, key=lambda r: (r.arrival_time, r.request_id)))
    dt = series.interval_s
    with open(out / "steps.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("time", *SERIES_COLUMNS))
        cols = [series.columns[c] for c in SERIES_COLUMNS]
        for i in range(len(series)):
            w.writerow((_num(i * dt), *(_num(float(c[i])) for c in cols)))
    with open(out / "service.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("time", "tenant", "prompt_tokens", "output_tokens", "weighted_service", "gpu_s", "kv_block_s"))
        for tenant in sorted(series.service):
            wt = float(weights.get(tenant, 1.0))
            resource = series.resource.get(tenant, {})
            for i, (p, o) in sorted(series.service[tenant].items()):
                g, kv = resource.get(i, (0.0, 0.0))
                w.writerow((_num(i * dt), tenant, p, o, _num((prompt_weight * p + output_weight * o) / wt),
                            _num(g), _num(kv)))
    with open(out / "counters.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("time", "kind", "tenant", "value"))
        for i in sorted(series.counters):
            for kind, values in sorted(series.counters[i].items()):
                for tenant, value in sorted(values.items()):
                    w.writerow((_num(i * dt), kind, tenant, _num(value)))
    fair = summary.fairness
    with open(out / "fairness_windows.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("window_start", "service_diff"))
        w.writerows((_num(t), _num(d)) for t, d in zip(fair.window_starts, fair.service_diff, strict=True))
    return out
