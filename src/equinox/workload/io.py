"""Write workloads in the canonical CSV or JSONL schema (readers live in formats/canonical.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from equinox.errors import ConfigError, WorkloadError
from equinox.request import RequestSpec
from equinox.workload.formats.canonical import CSV_META_PREFIX, FIELDS, JSONL_META_KEY
from equinox.workload.schema import Workload


def workload_meta(workload: Workload) -> dict[str, Any]:
    """Provenance written at the top of every canonical file (labels synthetic tenants)."""
    return {
        "name": workload.name,
        "source": workload.source,
        "is_synthetic_tenants": workload.is_synthetic_tenants,
        "tenant_assignment": workload.tenant_assignment,
        "tenants": workload.tenant_label,
        "duration_s": workload.duration_s,
        "tenant_weights": dict(workload.tenant_weights),
        "num_requests": len(workload.requests),
    }


def _row(spec: RequestSpec, weights: dict[str, float]) -> dict[str, Any]:
    weight = spec.tenant_weight if spec.tenant_weight is not None else weights.get(spec.tenant)
    return {
        "request_id": spec.request_id,
        "tenant": spec.tenant,
        "arrival_time": repr(spec.arrival_time),
        "num_prompt_tokens": spec.num_prompt_tokens,
        "num_output_tokens": spec.num_output_tokens,
        "max_tokens": spec.max_tokens,
        "prompt_text": spec.prompt_text,
        "prefix_hashes": list(spec.prefix_hashes),
        "tenant_weight": weight,
    }


def output_kind(path: str | Path, kind: str | None = None) -> str:
    """'csv' or 'jsonl', from `kind` or the file suffix."""
    k = (kind or Path(path).suffix.lstrip(".")).lower()
    if k in ("csv",):
        return "csv"
    if k in ("jsonl", "ndjson"):
        return "jsonl"
    raise ConfigError(f"cannot tell the output format of {str(path)!r}; use a .csv or .jsonl name")


def write_workload(workload: Workload, path: str | Path, kind: str | None = None) -> Path:
    """Write `workload` to `path` as canonical CSV or JSONL (by suffix unless `kind`)."""
    out = Path(path)
    k = output_kind(out, kind)
    weights = dict(workload.tenant_weights)
    meta = workload_meta(workload)
    try:
        with open(out, "w", newline="", encoding="utf-8") as fh:
            if k == "csv":
                fh.write(CSV_META_PREFIX + json.dumps(meta, sort_keys=True) + "\n")
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(FIELDS)
                for spec in workload.requests:
                    row = _row(spec, weights)
                    row["prefix_hashes"] = " ".join(str(h) for h in spec.prefix_hashes)
                    writer.writerow(["" if row[f] is None else row[f] for f in FIELDS])
            else:
                fh.write(json.dumps({JSONL_META_KEY: meta}, sort_keys=True) + "\n")
                for spec in workload.requests:
                    row = _row(spec, weights)
                    row["arrival_time"] = spec.arrival_time
                    obj = {f: row[f] for f in FIELDS if row[f] not in (None, [])}
                    fh.write(json.dumps(obj) + "\n")
    except OSError as exc:
        raise WorkloadError(f"cannot write file: {exc.strerror or exc}", path=str(out)) from None
    return out
