"""Azure LLM inference traces (2023 Splitwise, 2024 DynamoLLM) and Vidur's processed copies.

Columns: TIMESTAMP (date-time; 2023 has 7 fractional digits, 2024 adds '+00:00'),
ContextTokens, GeneratedTokens. Vidur's `splitwise_*.csv` use arrived_at (seconds),
num_prefill_tokens, num_decode_tokens. CC-BY-4.0 (Azure) / MIT (Vidur).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
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

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _TimestampParser:
    """Parses 'YYYY-mm-dd HH:MM:SS[.fffffff][+HH:MM]' to seconds since the first row's second (cached)."""

    def __init__(self) -> None:
        self._last_key = ""
        self._last_value = 0.0
        # Seconds are counted from the first row's whole second, so sub-microsecond
        # fractions survive in a float (epoch seconds would lose them).
        self._ref: float | None = None

    def __call__(self, text: str, *, path: str, line: int) -> float:
        s = text.strip()
        tz = ""
        if len(s) > 19 and (s[-6] in "+-") and s[-3] == ":":
            s, tz = s[:-6], s[-6:]
        elif s.endswith("Z"):
            s, tz = s[:-1], "+00:00"
        base, _, frac = s.partition(".")
        key = base + tz
        if key != self._last_key:
            try:
                dt = datetime.fromisoformat(base.replace("T", " ") + tz)
            except ValueError:
                raise WorkloadError(
                    f"expected a date-time like 2023-11-16 18:17:03.9799600, got {text[:40]!r}",
                    path=path, line=line, field="TIMESTAMP",
                ) from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            epoch = (dt - _EPOCH).total_seconds()
            if self._ref is None:
                self._ref = epoch
            self._last_key, self._last_value = key, epoch - self._ref
        if frac:
            if not frac.isdigit() or len(frac) > 12:
                raise WorkloadError(
                    f"expected fractional seconds digits, got {frac[:20]!r}", path=path, line=line, field="TIMESTAMP"
                )
            return self._last_value + int(frac) / 10 ** len(frac)
        return self._last_value


def _read(path: Path, opts: LoadOptions, report: LoadReport) -> Iterator[RawRecord]:
    p = str(path)
    rows = iter_csv_rows(path)
    first = next(rows, None)
    if first is None:
        return
    header = first[1]
    is_vidur = any(h.strip().lower() == "arrived_at" for h in header)
    if is_vidur:
        required = {"time": ("arrived_at",), "prompt": ("num_prefill_tokens",), "output": ("num_decode_tokens",)}
    else:
        required = {"time": ("TIMESTAMP",), "prompt": ("ContextTokens",), "output": ("GeneratedTokens",)}
    extra = (opts.tenant_column,) if opts.tenant_column else ()
    cols = Columns(header, path=p, required=required, report=report, extra=extra)
    ts = _TimestampParser()
    tcol = opts.tenant_column
    i_t, i_p, i_o = cols.index["time"], cols.index["prompt"], cols.index["output"]
    f_p, f_o = header[i_p].strip(), header[i_o].strip()
    width = cols.width
    for line, row in rows:
        if len(row) != width:
            report.reject(WorkloadError(f"expected {width} fields, got {len(row)}", path=p, line=line))
            continue
        try:
            raw_t = row[i_t]
            if is_vidur:
                t = parse_seconds(raw_t, path=p, line=line, field="arrived_at")
            else:
                t = ts(raw_t, path=p, line=line)
            tenant = parse_tenant(cols.get(row, tcol), path=p, line=line, field=tcol) if tcol else None
            yield RawRecord(
                line,
                t,
                parse_count_fast(row[i_p], path=p, line=line, field=f_p),
                parse_count_fast(row[i_o], path=p, line=line, field=f_o),
                tenant=tenant,
            )
        except WorkloadError as exc:
            report.reject(exc)


def _sniff(path: Path, head: str) -> bool:
    first = head.lstrip("\ufeff").splitlines()[0] if head.strip() else ""
    low = first.lower()
    return ("contexttokens" in low and "generatedtokens" in low) or (
        "arrived_at" in low and "num_prefill_tokens" in low
    )


AZURE = TraceFormat(
    "azure",
    "Azure LLM inference trace CSV, 2023 or 2024 (TIMESTAMP, ContextTokens, GeneratedTokens); "
    "also Vidur's arrived_at/num_prefill_tokens/num_decode_tokens copies",
    _sniff,
    read=_read,
    source="Azure/AzurePublicDataset (CC-BY-4.0); Patel et al., Splitwise, ISCA 2024",
)
