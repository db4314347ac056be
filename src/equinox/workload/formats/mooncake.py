"""Mooncake FAST'25 traces: JSONL of {timestamp (ms), input_length, output_length, hash_ids}.

`hash_ids` are prefix-block hashes (512 tokens per block) kept as `prefix_hashes`.
Apache-2.0; Qin et al., "Mooncake", FAST 2025.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from equinox.errors import WorkloadError
from equinox.workload.build import LoadOptions
from equinox.workload.formats.base import TraceFormat
from equinox.workload.parsing import (
    LoadReport,
    RawRecord,
    iter_jsonl_objects,
    parse_count_fast,
    parse_hashes,
    parse_seconds,
    parse_tenant,
)

KNOWN = {"timestamp", "input_length", "output_length", "hash_ids"}


def _read(path: Path, opts: LoadOptions, report: LoadReport) -> Iterator[RawRecord]:
    p = str(path)
    tcol = opts.tenant_column
    warned = False
    for line, obj in iter_jsonl_objects(path, report):
        if not warned:
            unknown = sorted(set(obj) - KNOWN - {tcol})
            if unknown:
                report.warn(f"ignored unknown field(s): {', '.join(unknown)}")
            warned = True
        try:
            if "timestamp" not in obj:
                raise WorkloadError("missing field (expected milliseconds since trace start)", path=p, line=line,
                                    field="timestamp")
            tenant = parse_tenant(obj.get(tcol), path=p, line=line, field=tcol) if tcol else None
            yield RawRecord(
                line,
                parse_seconds(obj["timestamp"], path=p, line=line, field="timestamp", scale=1e-3),
                parse_count_fast(obj.get("input_length"), path=p, line=line, field="input_length"),
                parse_count_fast(obj.get("output_length"), path=p, line=line, field="output_length"),
                tenant=tenant,
                prefix_hashes=parse_hashes(obj.get("hash_ids"), path=p, line=line, field="hash_ids"),
            )
        except WorkloadError as exc:
            report.reject(exc)


def _sniff(path: Path, head: str) -> bool:
    first = head.lstrip()[:1000]
    return first.startswith("{") and '"input_length"' in first and '"timestamp"' in first


MOONCAKE = TraceFormat(
    "mooncake",
    "Mooncake JSONL (timestamp ms, input_length, output_length, hash_ids as prefix blocks)",
    _sniff,
    read=_read,
    source="kvcache-ai/Mooncake (Apache-2.0); Qin et al., Mooncake, FAST 2025",
)
