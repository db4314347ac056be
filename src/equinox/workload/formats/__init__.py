"""Trace formats by name (TRACE_FORMATS) with auto-detection; a new format is one module + one entry."""

from __future__ import annotations

from pathlib import Path

from equinox.errors import WorkloadError
from equinox.registry import Registry
from equinox.workload.build import LoadOptions, build_workload
from equinox.workload.formats.azure import AZURE
from equinox.workload.formats.base import TraceFormat
from equinox.workload.formats.canonical import CANONICAL_CSV, CANONICAL_JSONL, read_meta
from equinox.workload.formats.csvtables import BURSTGPT, LENGTHS_CSV, VTC_TRACE
from equinox.workload.formats.mooncake import MOONCAKE
from equinox.workload.formats.servegen import SERVEGEN
from equinox.workload.formats.textual import SHAREGPT, VLLM_BENCH
from equinox.workload.parsing import LoadReport, read_head
from equinox.workload.schema import Workload

__all__ = ["TRACE_FORMATS", "TraceFormat", "detect_format", "load_trace"]

TRACE_FORMATS: Registry[TraceFormat] = Registry("trace format")
# Sniffing order: most specific first.
for _fmt in (CANONICAL_CSV, CANONICAL_JSONL, AZURE, MOONCAKE, BURSTGPT, VTC_TRACE, LENGTHS_CSV,
             SHAREGPT, VLLM_BENCH, SERVEGEN):
    TRACE_FORMATS.register(_fmt.name, _fmt, _fmt.description)
_ORDER = [CANONICAL_CSV, CANONICAL_JSONL, AZURE, MOONCAKE, BURSTGPT, VTC_TRACE, LENGTHS_CSV,
          SHAREGPT, VLLM_BENCH, SERVEGEN]
_ALIASES = {"csv": "equinox-csv", "jsonl": "equinox-jsonl", "azure-2023": "azure", "azure-2024": "azure",
            "vllm": "vllm-bench", "vtc-trace": "vtc", "etalon": "lengths-csv"}


def get_format(name: str) -> TraceFormat:
    """The format called `name` (aliases: csv, jsonl, vllm, azure-2023, azure-2024, etalon)."""
    key = name.strip().lower().replace("_", "-")
    return TRACE_FORMATS.get(_ALIASES.get(key, key))


def detect_format(path: str | Path) -> TraceFormat:
    """Guess the format of `path` from its name and first bytes, or say how to name it."""
    p = Path(path)
    if not p.exists():
        raise WorkloadError("no such file or directory", path=str(p))
    head = "" if p.is_dir() else read_head(p)
    if not p.is_dir() and not head.strip():
        raise WorkloadError("the file is empty (no requests)", path=str(p))
    for fmt in _ORDER:
        try:
            if fmt.sniff(p, head):
                return fmt
        except OSError:
            continue
    if p.name.endswith("-dataset.json"):
        raise WorkloadError("this is a ServeGen dataset file; load the matching chunk-<id>-trace.csv", path=str(p))
    raise WorkloadError(
        f"cannot tell the trace format; name it with format=NAME (known: {', '.join(TRACE_FORMATS.names())})",
        path=str(p),
    )


def load_trace(path: str | Path, opts: LoadOptions | None = None) -> Workload:
    """Read a trace file (format by name or detected) into a sorted, validated Workload."""
    opts = opts or LoadOptions()
    p = Path(path)
    fmt = get_format(opts.format) if opts.format else detect_format(p)
    if fmt.load is not None:
        return fmt.load(p, opts)
    if p.is_dir():
        raise WorkloadError(f"expected a file for format {fmt.name!r}, got a directory", path=str(p))
    assert fmt.read is not None
    report = LoadReport(str(p), skip_bad=opts.skip_bad)
    source = fmt.source or f"{fmt.name} trace"
    workload = build_workload(
        fmt.read(p, opts, report), report, opts, name=p.name, trace_format=fmt.name, source=f"{p} ({source})",
        rebase_time=fmt.rebase_time,
    )
    if fmt in (CANONICAL_CSV, CANONICAL_JSONL):
        workload = _apply_meta(workload, read_meta(p), keep_duration=opts.duration_s is not None)
    return workload


def _apply_meta(workload: Workload, meta: dict[str, object], *, keep_duration: bool) -> Workload:
    """Restore provenance from a canonical file's header (keeps the synthetic-tenant label)."""
    from dataclasses import replace

    if not meta:
        return workload
    weights = dict(workload.tenant_weights)
    raw_w = meta.get("tenant_weights")
    if isinstance(raw_w, dict):
        for k, v in raw_w.items():
            if isinstance(k, str) and isinstance(v, (int, float)) and v > 0:
                weights.setdefault(k, float(v))
    name = meta.get("name")
    source = meta.get("source")
    label = meta.get("tenant_assignment")
    duration = meta.get("duration_s")
    if keep_duration or not isinstance(duration, (int, float)) or duration < workload.requests[-1].arrival_time:
        duration = workload.duration_s
    return replace(
        workload,
        name=name if isinstance(name, str) and name else workload.name,
        source=source if isinstance(source, str) and source else workload.source,
        is_synthetic_tenants=bool(meta.get("is_synthetic_tenants", workload.is_synthetic_tenants)),
        tenant_assignment=label if isinstance(label, str) else workload.tenant_assignment,
        tenant_weights=weights,
        duration_s=float(duration) if duration is not None else None,
    )
