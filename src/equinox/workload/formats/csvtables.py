"""Simple column-mapped CSV traces: BurstGPT, the VTC artifact's trace, per-request length tables.

- BurstGPT: Timestamp (s), Model, Request tokens, Response tokens, Total tokens, Log Type.
  Rows with 0 response tokens are failed requests: dropped and counted in a warning.
- VTC artifact (Sheng et al., OSDI'24): req_time (s), adapter_dir (the tenant), prompt_len, output_len.
- Length tables (Etalon/Vidur/Sarathi processed traces): num_prefill_tokens, num_decode_tokens,
  no timestamps (arrivals are generated, Poisson at the load option `rate`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from equinox.errors import WorkloadError
from equinox.workload.build import LoadOptions
from equinox.workload.formats.base import TraceFormat
from equinox.workload.parsing import (
    Columns,
    LoadReport,
    RawRecord,
    iter_csv_rows,
    parse_count_fast,
    parse_seconds,
    parse_tenant,
)


@dataclass(frozen=True)
class CsvLayout:
    """Column aliases of one CSV trace format."""

    time: tuple[str, ...] | None
    prompt: tuple[str, ...]
    output: tuple[str, ...]
    tenant: tuple[str, ...] | None = None
    optional: tuple[str, ...] = ()
    drop_zero_output: bool = False


def make_reader(layout: CsvLayout):  # type: ignore[no-untyped-def]
    """A streaming reader for `layout`."""

    def read(path: Path, opts: LoadOptions, report: LoadReport) -> Iterator[RawRecord]:
        p = str(path)
        rows = iter_csv_rows(path)
        first = next(rows, None)
        if first is None:
            return
        required: dict[str, tuple[str, ...]] = {"prompt": layout.prompt, "output": layout.output}
        if layout.time:
            required["time"] = layout.time
        optional: dict[str, tuple[str, ...]] = {f"opt:{name}": (name,) for name in layout.optional}
        tcol = opts.tenant_column
        if layout.tenant and not tcol:
            optional["tenant"] = layout.tenant
        extra = (tcol,) if tcol else ()
        cols = Columns(first[1], path=p, required=required, optional=optional, report=report, extra=extra)
        tenant_key = tcol or ("tenant" if "tenant" in cols.index else None)
        names = {k: first[1][i].strip() for k, i in cols.index.items()}
        dropped = 0
        for line, row in rows:
            if len(row) != cols.width:
                report.reject(WorkloadError(f"expected {cols.width} fields, got {len(row)}", path=p, line=line))
                continue
            try:
                t = None
                if layout.time:
                    t = parse_seconds(cols.get(row, "time"), path=p, line=line, field=names["time"])
                out_raw = cols.get(row, "output")
                if layout.drop_zero_output and out_raw is not None and out_raw.strip() in ("0", "0.0"):
                    dropped += 1
                    continue
                tenant = None
                if tenant_key:
                    tenant = parse_tenant(cols.get(row, tenant_key), path=p, line=line,
                                          field=names.get(tenant_key, tenant_key))
                yield RawRecord(
                    line,
                    t,
                    parse_count_fast(cols.get(row, "prompt"), path=p, line=line, field=names["prompt"]),
                    parse_count_fast(out_raw, path=p, line=line, field=names["output"]),
                    tenant=tenant,
                )
            except WorkloadError as exc:
                report.reject(exc)
        if dropped:
            report.warn(f"dropped {dropped} failed request(s) with 0 response tokens")

    return read


def _header(head: str) -> set[str]:
    lines = head.lstrip("\ufeff").splitlines()
    return {c.strip().lower() for c in lines[0].split(",")} if lines else set()


BURSTGPT = TraceFormat(
    "burstgpt",
    "BurstGPT CSV (Timestamp s, Model, Request tokens, Response tokens, Total tokens, Log Type)",
    lambda path, head: {"timestamp", "request tokens", "response tokens"} <= _header(head),
    read=make_reader(
        CsvLayout(("Timestamp",), ("Request tokens",), ("Response tokens",),
                  optional=("Model", "Total tokens", "Log Type"), drop_zero_output=True)
    ),
    source="HPMLL/BurstGPT (CC-BY-4.0); Wang et al., BurstGPT, arXiv:2401.17644",
)
VTC_TRACE = TraceFormat(
    "vtc",
    "VTC artifact trace CSV (req_time s, adapter_dir = tenant, prompt_len, output_len)",
    lambda path, head: {"req_time", "prompt_len", "output_len"} <= _header(head),
    read=make_reader(
        CsvLayout(("req_time",), ("prompt_len",), ("output_len",), tenant=("adapter_dir",),
                  optional=("req_id", "model_dir", "prompt"))
    ),
    source="Ying1123/VTC-artifact (Apache-2.0); Sheng et al., OSDI 2024",
)
LENGTHS_CSV = TraceFormat(
    "lengths-csv",
    "per-request length table without timestamps (num_prefill_tokens, num_decode_tokens); "
    "Poisson arrivals at the load option rate",
    lambda path, head: {"num_prefill_tokens", "num_decode_tokens"} <= _header(head)
    and "arrived_at" not in _header(head),
    read=make_reader(
        CsvLayout(None, ("num_prefill_tokens",), ("num_decode_tokens",),
                  optional=("num_total_tokens", "pd_ratio"))
    ),
    source="project-etalon/etalon processed traces (Apache-2.0)",
)
