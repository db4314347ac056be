"""Equinox's own request schema in CSV and JSONL, with an optional provenance header line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from equinox.errors import WorkloadError
from equinox.workload.build import LoadOptions
from equinox.workload.formats.base import TraceFormat
from equinox.workload.parsing import (
    Columns,
    LoadReport,
    RawRecord,
    iter_csv_rows,
    iter_jsonl_objects,
    parse_count,
    parse_count_fast,
    parse_hashes,
    parse_seconds,
    parse_weight,
)

FIELDS = (
    "request_id",
    "tenant",
    "arrival_time",
    "num_prompt_tokens",
    "num_output_tokens",
    "max_tokens",
    "prompt_text",
    "prefix_hashes",
    "tenant_weight",
)
CSV_META_PREFIX = "# equinox-workload "
JSONL_META_KEY = "equinox_workload"


def record_from_mapping(get: Any, *, path: str, line: int, tenant_column: str | None) -> RawRecord:
    """Build a RawRecord from a field getter (`get(name) -> value or None`)."""
    tenant_field = tenant_column or "tenant"
    tenant = get(tenant_field)
    if tenant is not None and not isinstance(tenant, str):
        tenant = str(tenant)
    if tenant_column and not tenant:
        raise WorkloadError("expected a tenant name, got an empty value", path=path, line=line, field=tenant_field)
    mt = get("max_tokens")
    tw = get("tenant_weight")
    rid = get("request_id")
    text = get("prompt_text")
    at = get("arrival_time")
    return RawRecord(
        line=line,
        arrival_time=None if at in (None, "") else parse_seconds(at, path=path, line=line, field="arrival_time"),
        num_prompt_tokens=parse_count_fast(get("num_prompt_tokens"), path=path, line=line, field="num_prompt_tokens"),
        num_output_tokens=parse_count_fast(get("num_output_tokens"), path=path, line=line, field="num_output_tokens"),
        tenant=tenant or None,
        request_id=None if rid in (None, "") else str(rid),
        max_tokens=None if mt in (None, "") else parse_count(mt, path=path, line=line, field="max_tokens"),
        prompt_text=None if text in (None, "") else str(text),
        prefix_hashes=parse_hashes(get("prefix_hashes"), path=path, line=line, field="prefix_hashes"),
        tenant_weight=None if tw in (None, "") else parse_weight(tw, path=path, line=line, field="tenant_weight"),
    )


def read_meta(path: Path) -> dict[str, Any]:
    """The provenance header of a canonical file ({} when absent or unreadable)."""
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError):
        return {}
    try:
        if first.startswith(CSV_META_PREFIX):
            meta = json.loads(first[len(CSV_META_PREFIX):])
        elif first.lstrip().startswith("{") and JSONL_META_KEY in first:
            meta = json.loads(first).get(JSONL_META_KEY)
        else:
            return {}
    except (json.JSONDecodeError, RecursionError, AttributeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _read_csv(path: Path, opts: LoadOptions, report: LoadReport) -> Iterator[RawRecord]:
    p = str(path)
    rows = iter_csv_rows(path, skip_comments=True)
    header = next(rows, None)
    if header is None:
        return
    required = {"arrival_time": ("arrival_time",), "num_prompt_tokens": ("num_prompt_tokens",),
                "num_output_tokens": ("num_output_tokens",)}
    optional = {f: (f,) for f in FIELDS if f not in required}
    extra = (opts.tenant_column,) if opts.tenant_column else ()
    cols = Columns(header[1], path=p, required=required, optional=optional, report=report, extra=extra)
    for line, row in rows:
        if len(row) != cols.width:
            report.reject(WorkloadError(f"expected {cols.width} fields, got {len(row)}", path=p, line=line))
            continue
        try:
            yield record_from_mapping(
                lambda k, row=row: cols.get(row, k), path=p, line=line, tenant_column=opts.tenant_column
            )
        except WorkloadError as exc:
            report.reject(exc)


def _read_jsonl(path: Path, opts: LoadOptions, report: LoadReport) -> Iterator[RawRecord]:
    p = str(path)
    warned = False
    known = set(FIELDS) | ({opts.tenant_column} if opts.tenant_column else set())
    for line, obj in iter_jsonl_objects(path, report):
        if line == 1 and JSONL_META_KEY in obj:
            continue
        if not warned:
            unknown = sorted(set(obj) - known)
            if unknown:
                report.warn(f"ignored unknown field(s): {', '.join(unknown)}")
            warned = True
        try:
            field = opts.tenant_column or "tenant"
            if isinstance(obj.get(field), str) and not obj[field].strip():  # JSON says "no tenant" by omission
                raise WorkloadError(f"tenant is empty ({obj[field]!r}); omit the field for a trace without tenants",
                                    path=p, line=line, field=field)
            yield record_from_mapping(obj.get, path=p, line=line, tenant_column=opts.tenant_column)
        except WorkloadError as exc:
            report.reject(exc)


def _sniff_csv(path: Path, head: str) -> bool:
    lines = [ln for ln in head.splitlines() if not ln.startswith("#")]
    if not lines or lines[0].lstrip().startswith("{"):  # a JSONL record naming the same fields
        return False
    return "num_prompt_tokens" in lines[0] and "arrival_time" in lines[0]


def _sniff_jsonl(path: Path, head: str) -> bool:
    first = head.lstrip()[:2000]
    return first.startswith("{") and (JSONL_META_KEY in first or '"num_prompt_tokens"' in first)


CANONICAL_CSV = TraceFormat(
    "equinox-csv", "Equinox canonical request CSV (optional '# equinox-workload {...}' header)",
    _sniff_csv, read=_read_csv, rebase_time=False,
)
CANONICAL_JSONL = TraceFormat(
    "equinox-jsonl", "Equinox canonical request JSONL (optional first-line provenance object)",
    _sniff_jsonl, read=_read_jsonl, rebase_time=False,
)
