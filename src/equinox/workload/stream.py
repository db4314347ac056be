"""A canonical CSV trace read as the simulation goes, instead of loaded whole (issue 13).

`load_trace` builds every `RequestSpec` before the run starts: about 300 bytes a
request, 300 MB for a million. A canonical CSV trace that is already sorted by arrival
time needs none of that: one light pre-scan (arrival times, tenants, ids, weights; no
objects kept) gives what the run needs up front (tenants, weights, request count, span),
and a second pass yields the requests one at a time. The requests are the same, in the
same order, as `load_trace` would give: same ids (generated ones included), same scaled
and clipped arrival times, ties in arrival time ordered by request id, the same
provenance from the file's header.

Anything the streaming reader does not handle (other formats, unsorted or negative
times, rows without a time or a tenant to be assigned, trace options, duplicate ids)
makes `open_stream` return None, and the caller loads the trace as before.
"""

from __future__ import annotations

import csv
import itertools
import math
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from equinox.compiled import picklable_when_compiled
from equinox.errors import WorkloadError
from equinox.request import DEFAULT_TENANT, RequestSpec
from equinox.workload.build import LoadOptions
from equinox.workload.formats.canonical import CANONICAL_CSV, FIELDS, read_meta, record_from_mapping
from equinox.workload.parsing import (
    MAX_TOKENS_PER_FIELD,
    Columns,
    LoadReport,
    iter_csv_rows,
    tenant_problem,
)


@dataclass(frozen=True)
class StreamedWorkload:
    """A sorted canonical CSV trace: its facts up front, its requests by iteration (each pass rereads the file)."""

    name: str
    path: Path
    source: str
    tenants: tuple[str, ...]  # in order of first appearance
    tenant_weights: dict[str, float]
    is_synthetic_tenants: bool
    tenant_assignment: str | None
    duration_s: float
    num_requests: int
    trace_format: str = CANONICAL_CSV.name
    options: LoadOptions = field(default_factory=LoadOptions)
    id_width: int | None = None  # width of generated ids (None: the file's ids)

    def __iter__(self) -> Iterator[RequestSpec]:
        return _read_specs(self)

    @property
    def tenant_label(self) -> str:
        """One line saying where tenants come from (as Workload.tenant_label)."""
        if self.is_synthetic_tenants:
            return f"SYNTHETIC tenants ({self.tenant_assignment or 'assigned by Equinox'})"
        return self.tenant_assignment or "tenants from the source"


@dataclass
class _Scan:
    num_rows: int = 0
    num_kept: int = 0
    last_time: float = 0.0
    tenants: dict[str, None] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    num_with_id: int = 0
    num_with_tenant: int = 0


def open_stream(spec: str, *, seed: int = 0, duration_s: float | None = None, rate_scale: float = 1.0,
                num_tenants: int | None = None) -> StreamedWorkload | None:
    """A streamed view of trace file `spec` when it is a sorted canonical CSV, else None (load it whole)."""
    path = Path(spec.strip()).expanduser()
    if not path.is_file() or not CANONICAL_CSV.sniff(path, _head(path)):
        return None
    opts = LoadOptions(num_tenants=num_tenants, seed=seed, duration_s=duration_s, rate_scale=rate_scale)
    scan = _prescan(path, opts)
    if scan is None or scan.num_kept == 0:
        return None
    has_tenants = scan.num_with_tenant == scan.num_rows
    if not has_tenants and (scan.num_with_tenant or (num_tenants is not None and num_tenants > 1)):
        return None  # tenants assigned over the whole trace, or a row without one (load_trace says which)
    report = LoadReport(str(path))
    if has_tenants and num_tenants is not None:
        report.warn("the trace has its own tenants; num_tenants is ignored")
    label = None if has_tenants else "single tenant (the trace has none)"
    tenants = tuple(scan.tenants) if has_tenants else (DEFAULT_TENANT,)
    weights = dict(scan.weights)
    id_width = None if scan.num_with_id == scan.num_rows else max(6, len(str(scan.num_rows)))
    duration = scan.last_time if duration_s is None else duration_s
    meta = read_meta(path)
    name = meta.get("name")
    source = meta.get("source")
    meta_label = meta.get("tenant_assignment")
    raw_w = meta.get("tenant_weights")
    if isinstance(raw_w, dict):
        for k, v in raw_w.items():
            if isinstance(k, str) and isinstance(v, (int, float)) and v > 0:
                weights.setdefault(k, float(v))
    meta_duration = meta.get("duration_s")
    if duration_s is None and isinstance(meta_duration, (int, float)) and meta_duration >= scan.last_time:
        duration = float(meta_duration)
    return StreamedWorkload(
        name=name if isinstance(name, str) and name else path.name,
        path=path,
        source=source if isinstance(source, str) and source else f"{path} ({CANONICAL_CSV.description})",
        tenants=tenants,
        tenant_weights=weights,
        is_synthetic_tenants=bool(meta.get("is_synthetic_tenants", False)) if meta else False,
        tenant_assignment=meta_label if isinstance(meta_label, str) else label,
        duration_s=float(duration),
        num_requests=scan.num_kept,
        options=opts,
        id_width=id_width,
    )


def _head(path: Path) -> str:
    from equinox.workload.parsing import read_head

    try:
        return read_head(path)
    except OSError:
        return ""


def _prescan(path: Path, opts: LoadOptions) -> _Scan | None:
    """Check sortedness and collect tenants, weights and counts; None when the file needs `load_trace`."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            scan = _scan_rows(path, _csv_reader(fh), opts)
    except (ValueError, OSError, csv.Error, WorkloadError):  # (a UnicodeDecodeError is a ValueError)
        return None  # load_trace gives the precise error
    return scan


def _scan_rows(path: Path, reader: Iterator[list[str]], opts: LoadOptions) -> _Scan | None:
    """`_prescan` of the rows `reader` gives."""
    header = _first_row(reader)
    if header is None:
        return None
    required = {"arrival_time": ("arrival_time",), "num_prompt_tokens": ("num_prompt_tokens",),
                "num_output_tokens": ("num_output_tokens",)}
    cols = Columns(header, path=str(path), required=required, optional={f: (f,) for f in FIELDS})
    width = cols.width
    i_time = cols.index["arrival_time"]
    i_tenant, i_id, i_weight = (cols.index.get(k) for k in ("tenant", "request_id", "tenant_weight"))
    scan = _Scan()
    last = -math.inf
    id_hashes = array("q")
    scale, clip = opts.rate_scale, opts.duration_s
    for row in reader:
        if len(row) != width:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line (or a comment)
            return None
        t = float(row[i_time])
        if not (t >= last) or t < 0 or not math.isfinite(t):
            return None  # unsorted, negative or missing time: load_trace sorts, rebases or explains
        last = t
        scan.num_rows += 1
        tenant = row[i_tenant].strip() if i_tenant is not None else ""
        if tenant:
            scan.num_with_tenant += 1
        if i_id is not None and row[i_id]:
            scan.num_with_id += 1
            id_hashes.append(hash(row[i_id]))
        if clip is not None and t / scale >= clip:
            continue
        scan.num_kept += 1
        scan.last_time = t / scale
        if tenant:
            scan.tenants[tenant] = None
            if i_weight is not None and row[i_weight]:
                w = float(row[i_weight])
                if scan.weights.setdefault(tenant, w) != w:
                    return None  # load_trace names the conflicting line
    if scan.num_with_id and _has_repeats(id_hashes):
        return None  # maybe a duplicate id: load_trace checks exactly
    return scan


def _csv_reader(fh: TextIO) -> Any:
    """csv.reader over `fh` with each '#' line read as a blank one: `iter_csv_rows(skip_comments=True)`'s rows,
    blank ones included (the caller skips them), without a Python generator step per line."""
    return csv.reader(itertools.chain.from_iterable(_uncommented_chunks(fh)))


def _uncommented_chunks(fh: TextIO) -> Iterator[list[str]]:
    """`fh`'s lines about 64 KiB at a time, a line starting with '#' replaced by a line break (line numbers stay)."""
    while True:
        lines = fh.readlines(65536)
        if not lines:
            return
        for i, line in enumerate(lines):
            if line.startswith("#"):
                lines[i] = "\n"
        yield lines


def _first_row(reader: Iterator[list[str]]) -> list[str] | None:
    """The first row of `reader` that is not blank, None at the end."""
    for row in reader:
        if row and not (len(row) == 1 and not row[0].strip()):
            return row
    return None


def _has_repeats(values: array[int]) -> bool:
    """Whether an int64 array holds a value twice (a sort; np.unique would import numpy.ma, 10 ms)."""
    a = np.sort(np.frombuffer(values, dtype=np.int64))
    return bool((a[1:] == a[:-1]).any())


def _read_specs(w: StreamedWorkload) -> Iterator[RequestSpec]:
    """The requests of `w`, as load_trace would order them (ties in time by request id)."""
    opts = w.options
    p = str(w.path)
    scale, clip, width = opts.rate_scale, opts.duration_s, w.id_width
    weights: dict[str, float] = {}
    # Names already checked, each to the one string the run uses for it: every request of a tenant then
    # carries the same object, so the many lookups by tenant name a run makes per request (counters,
    # queues, usage) match by identity instead of comparing text, and a million rows keep one name each.
    names: dict[str, str] = {}
    group: list[RequestSpec] = []
    group_time = -math.inf
    last = -math.inf
    index = -1
    for line, raw, num_prompt, num_output, name, request_id, max_tokens, text, hashes, weight in _records(
            w.path, LoadReport(p)):
        index += 1
        if raw is None or raw < last:
            raise WorkloadError("the trace changed while it was read (rows out of arrival order)", path=p, line=line)
        last = raw
        t = raw / scale
        if clip is not None and t >= clip:
            continue
        tenant = name or DEFAULT_TENANT
        known = names.get(tenant)
        if known is None:
            problem = tenant_problem(tenant) if name else None
            if problem is not None:
                raise WorkloadError(problem, path=p, line=line, field="tenant")
            known = names[tenant] = tenant
        tenant = known
        if weight is not None:
            old = weights.setdefault(tenant, weight)
            if old != weight:
                raise WorkloadError(
                    f"tenant {tenant!r} has weight {weight} here but {old} earlier; use one weight per tenant",
                    path=p, line=line, field="tenant_weight")
        rid = f"r{index:0{width}d}" if width is not None else str(request_id)
        try:
            spec = RequestSpec(rid, tenant, t, num_prompt, num_output, max_tokens, text, hashes, weight)
        except WorkloadError as exc:
            raise WorkloadError(str(exc), path=p, line=line) from None
        if t != group_time:
            if len(group) > 1:
                group.sort(key=_request_id)
            yield from group
            group = [spec]
            group_time = t
        else:
            group.append(spec)
    if len(group) > 1:
        group.sort(key=_request_id)
    yield from group


# One row as `_records` gives it: RawRecord's fields in order (a tuple costs far less to make than the record).
_Row = tuple[int, "float | None", int, int, "str | None", "str | None", "int | None", "str | None", tuple[int, ...],
             "float | None"]


def _records(path: Path, report: LoadReport) -> Iterator[_Row]:
    """The canonical CSV reader's records; plain rows (numbers, no hashes or weights) skip its per-field parsers.

    A row the quick path does not take goes through `record_from_mapping`, which gives the
    same values and the same errors as `load_trace`.
    """
    p = str(path)
    line = 0
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = _csv_reader(fh)
            header = _first_row(reader)
            if header is None:
                return
            line = reader.line_num
            cols = _columns(p, header, report)
            n_cols, (i_time, i_prompt, i_output, i_max, i_text, i_hashes, i_weight, i_tenant, i_id) = cols.width, (
                cols.index.get(k) for k in _RECORD_FIELDS)
            assert i_time is not None and i_prompt is not None and i_output is not None  # (required columns)
            top = MAX_TOKENS_PER_FIELD
            rows: Iterator[list[str]] = reader  # typed: compiled, a row's fields are read as a list's strings
            for row in rows:
                line = reader.line_num
                if len(row) != n_cols:
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue  # a blank line (or a comment): n_cols is at least 3
                    raise WorkloadError(f"expected {n_cols} fields, got {len(row)}", path=p, line=line)
                try:
                    if (i_hashes is not None and row[i_hashes]) or (i_weight is not None and row[i_weight]):
                        raise ValueError  # the careful parser handles these
                    t = float(row[i_time])
                    num_prompt, num_output = int(row[i_prompt]), int(row[i_output])
                    max_tokens = int(row[i_max]) if i_max is not None and row[i_max] else None
                    if not (0 < num_prompt <= top and 0 < num_output <= top and math.isfinite(t)) or (
                            max_tokens is not None and not 0 < max_tokens <= top):
                        raise ValueError
                except ValueError:
                    yield _careful(cols, row, p, line)
                    continue
                yield (line, t, num_prompt, num_output, (row[i_tenant] or None) if i_tenant is not None else None,
                       (row[i_id] or None) if i_id is not None else None, max_tokens,
                       (row[i_text] or None) if i_text is not None else None, (), None)
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        for _ in iter_csv_rows(path, skip_comments=True):  # raises its WorkloadError, load_trace's words
            pass
        raise WorkloadError(f"cannot read the trace near line {line + 1}: {exc}", path=p) from None


_RECORD_FIELDS = ("arrival_time", "num_prompt_tokens", "num_output_tokens", "max_tokens", "prompt_text",
                  "prefix_hashes", "tenant_weight", "tenant", "request_id")


def _columns(p: str, header: list[str], report: LoadReport) -> Columns:
    required = {"arrival_time": ("arrival_time",), "num_prompt_tokens": ("num_prompt_tokens",),
                "num_output_tokens": ("num_output_tokens",)}
    return Columns(header, path=p, required=required, optional={f: (f,) for f in FIELDS if f not in required},
                   report=report)


def _careful(cols: Columns, row: list[str], p: str, line: int) -> _Row:
    """One row through `record_from_mapping` (load_trace's parser: its values, its errors)."""
    r = record_from_mapping(_getter(cols, row), path=p, line=line, tenant_column=None)
    return (r.line, r.arrival_time, r.num_prompt_tokens, r.num_output_tokens, r.tenant, r.request_id,
            r.max_tokens, r.prompt_text, r.prefix_hashes, r.tenant_weight)


def _getter(cols: Columns, row: list[str]) -> Callable[[str], str | None]:
    """One row's field by name, for `record_from_mapping`."""
    return lambda key: cols.get(row, key)


def _request_id(spec: RequestSpec) -> str:
    return spec.request_id


picklable_when_compiled(StreamedWorkload)  # frozen: see equinox.compiled
