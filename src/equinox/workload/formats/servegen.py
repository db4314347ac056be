"""ServeGen per-client statistics (Alibaba Bailian; Xiang et al., arXiv:2505.09999; Apache-2.0).

A `chunk-<id>-trace.csv` (no header) has one row per 600 s window:
`window_start_s, rate_req_per_s, cv, family (Gamma|Weibull|empty), param1, param2`.
A sibling `chunk-<id>-dataset.json` maps 6 h windows to `{field: "<python dict {value: prob}>"}`.
Loading samples arrivals window by window as ServeGen does: gaps from
Gamma(a=param1, scale=param2) or Weibull(c=param1, scale=param2), rescaled so the window's
mean rate is `rate`; lengths from the window's input/output distributions. A directory loads
its clients as tenants (the `num_tenants` busiest, 8 by default).
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from equinox.errors import WorkloadError
from equinox.request import RequestSpec
from equinox.workload.build import LoadOptions
from equinox.workload.formats.base import TraceFormat
from equinox.workload.parsing import LoadReport, iter_csv_rows
from equinox.workload.schema import Workload

WINDOW_S = 600.0
DATASET_WINDOW_S = 21600.0
DEFAULT_DURATION_S = 600.0
DEFAULT_NUM_CLIENTS = 8
MAX_PMF_CHARS = 8_000_000
_CHUNK_RE = re.compile(r"chunk-(\d+)-trace\.csv$")


@dataclass(frozen=True, slots=True)
class Window:
    """One 600 s window of a client's arrival statistics."""

    start_s: float
    rate: float
    cv: float
    family: str
    param1: float
    param2: float


def read_trace_windows(path: Path, report: LoadReport) -> list[Window]:
    """All windows of one ServeGen trace CSV (bad rows via `report`)."""
    p = str(path)
    out = []
    for line, row in iter_csv_rows(path):
        try:
            if len(row) != 6:
                raise WorkloadError(f"expected 6 fields (start, rate, cv, family, p1, p2), got {len(row)}",
                                    path=p, line=line)
            vals = []
            for name, text in zip(("window_start_s", "rate", "cv"), row[:3], strict=True):
                try:
                    x = float(text)
                except ValueError:
                    raise WorkloadError(f"expected a number, got {text[:40]!r}", path=p, line=line,
                                        field=name) from None
                if not math.isfinite(x) or x < 0:
                    raise WorkloadError(f"expected a finite number >= 0, got {text[:40]!r}", path=p, line=line,
                                        field=name)
                vals.append(x)
            family = row[3].strip()
            if family not in ("", "Gamma", "Weibull"):
                raise WorkloadError(f"expected Gamma, Weibull or empty, got {family[:40]!r}", path=p, line=line,
                                    field="family")
            params = []
            for name, text in (("param1", row[4]), ("param2", row[5])):
                try:
                    x = float(text) if text.strip() else 0.0
                except ValueError:
                    raise WorkloadError(f"expected a number, got {text[:40]!r}", path=p, line=line,
                                        field=name) from None
                if family and vals[1] > 0 and not (math.isfinite(x) and x > 0):
                    raise WorkloadError(f"expected a parameter > 0, got {text[:40]!r}", path=p, line=line,
                                        field=name)
                params.append(x)
            out.append(Window(vals[0], vals[1], vals[2], family, params[0], params[1]))
        except WorkloadError as exc:
            report.reject(exc)
    return out


def parse_pmf(text: Any, *, path: str, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, probabilities) from a ServeGen '{value: prob}' literal (never eval)."""
    if not isinstance(text, str) or len(text) > MAX_PMF_CHARS:
        raise WorkloadError("expected a '{value: probability}' string", path=path, field=field)
    try:
        obj = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        raise WorkloadError("expected a python dict literal {value: probability}", path=path, field=field) from None
    if not isinstance(obj, dict) or not obj:
        raise WorkloadError("expected a non-empty {value: probability} dict", path=path, field=field)
    try:
        values = np.array([float(k) for k in obj], dtype=float)
        probs = np.array([float(v) for v in obj.values()], dtype=float)
    except (TypeError, ValueError):
        raise WorkloadError("expected numeric values and probabilities", path=path, field=field) from None
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(probs)) and np.all(probs >= 0) and probs.sum() > 0):
        raise WorkloadError("expected finite values and probabilities >= 0 summing to > 0", path=path, field=field)
    return values, probs / probs.sum()


def read_dataset(path: Path) -> dict[float, dict[str, Any]]:
    """A ServeGen dataset JSON: {window_start_s: {field: pmf string}} (pmfs parsed lazily)."""
    p = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise WorkloadError(f"cannot read ServeGen dataset JSON ({exc})", path=p) from None
    if not isinstance(obj, dict) or not obj:
        raise WorkloadError("expected a non-empty JSON object {window_start_s: {...}}", path=p)
    out = {}
    for key, fields in obj.items():
        try:
            start = float(key)
        except ValueError:
            start = math.nan
        if not (math.isfinite(start) and start >= 0):
            raise WorkloadError(f"expected window keys in seconds >= 0, got {key[:40]!r}", path=p)
        if not isinstance(fields, dict):
            raise WorkloadError("expected an object of fields per window", path=p, field=key)
        out[start] = fields
    return out


def sample_window(rng: np.random.Generator, w: Window, rate: float, width: float) -> np.ndarray:
    """Arrival times in [w.start_s, w.start_s + width) with ServeGen's gap families, mean rate `rate`."""
    if rate <= 0:
        return np.empty(0)
    m = math.ceil(rate * width) + 1
    if w.family == "Gamma":
        gaps = rng.gamma(w.param1, w.param2, size=m)
    elif w.family == "Weibull":
        gaps = w.param2 * rng.weibull(w.param1, size=m)
    else:
        gaps = rng.exponential(1.0, size=m)
    mean = float(gaps.mean())
    if not (mean > 0 and math.isfinite(mean)):
        gaps = np.full(m, 1.0 / rate)
    else:
        gaps *= (1.0 / rate) / mean
    t = w.start_s + np.cumsum(gaps)
    return t[t < w.start_s + width]


class _Lengths:
    """Per-6 h-window input/output samplers for one client (nearest window when one is missing)."""

    def __init__(self, dataset: dict[float, dict[str, Any]], path: str) -> None:
        self.dataset = dataset
        self.path = path
        self.cache: dict[tuple[float, str], tuple[np.ndarray, np.ndarray]] = {}

    def sample(self, rng: np.random.Generator, t_abs: np.ndarray, field: str) -> np.ndarray:
        keys = np.array(sorted(self.dataset))
        idx = np.clip(np.searchsorted(keys, t_abs, side="right") - 1, 0, len(keys) - 1)
        out = np.empty(len(t_abs), dtype=np.int64)
        for k in np.unique(idx):
            key = float(keys[k])
            if (key, field) not in self.cache:
                self.cache[(key, field)] = parse_pmf(
                    self.dataset[key].get(field), path=self.path, field=f"{key:g}.{field}"
                )
            values, probs = self.cache[(key, field)]
            sel = idx == k
            out[sel] = np.maximum(1, np.rint(rng.choice(values, size=sel.sum(), p=probs))).astype(np.int64)
        return out


def _client_files(path: Path) -> list[tuple[str, Path]]:
    if path.is_dir():
        files = sorted((m.group(1), f) for f in path.iterdir() if (m := _CHUNK_RE.search(f.name)))
        if not files:
            raise WorkloadError("no chunk-<id>-trace.csv files in this directory", path=str(path))
        return files
    m = _CHUNK_RE.search(path.name)
    return [(m.group(1) if m else path.stem, path)]


def load_servegen(path: Path, opts: LoadOptions) -> Workload:
    """Sample a ServeGen client (file) or the busiest clients of a model (directory)."""
    report = LoadReport(str(path), skip_bad=opts.skip_bad)
    clients = []
    for cid, f in _client_files(path):
        windows = read_trace_windows(f, report)
        clients.append((sum(w.rate for w in windows), cid, f, windows))
    if path.is_dir():
        clients.sort(key=lambda c: (-c[0], int(c[1]) if c[1].isdigit() else 0))
        clients = clients[: opts.num_tenants or DEFAULT_NUM_CLIENTS]
    duration = opts.duration_s if opts.duration_s is not None else DEFAULT_DURATION_S
    t0, t1 = opts.start_s, opts.start_s + duration
    specs: list[RequestSpec] = []
    for ci, (_, cid, f, windows) in enumerate(clients):
        rng = np.random.default_rng([opts.seed, ci, 0x5E6E])
        parts = []
        for w in windows:
            if w.start_s + WINDOW_S <= t0 or w.start_s >= t1:
                continue
            times = sample_window(rng, w, w.rate * opts.rate_scale, WINDOW_S)
            parts.append(times[(times >= t0) & (times < t1)])
        times = np.sort(np.concatenate(parts)) if parts else np.empty(0)
        if len(times) == 0:
            continue
        ds_path = f.with_name(f.name.replace("-trace.csv", "-dataset.json"))
        if ds_path.exists():
            lengths = _Lengths(read_dataset(ds_path), str(ds_path))
            n_in = lengths.sample(rng, times, "input_tokens")
            n_out = lengths.sample(rng, times, "output_tokens")
        else:
            from equinox.workload.presets import servegen_pooled_lengths

            report.warn(f"client {cid}: no dataset file; lengths from the pooled servegen-multitenant table")
            n_in, n_out = servegen_pooled_lengths(rng, len(times))
        tenant = f"client-{cid}"
        for k, t in enumerate(times):
            specs.append(RequestSpec(f"{tenant}-{k}", tenant, float(t - t0), int(n_in[k]), int(n_out[k]),
                                     max_tokens=int(n_out[k])))
    report.finish()
    if not specs:
        raise WorkloadError(f"no requests in [{t0:g}, {t1:g}) s; the clients are idle there", path=str(path))
    specs.sort(key=lambda s: (s.arrival_time, s.request_id))
    return Workload(
        name=path.name,
        requests=tuple(specs),
        source=f"ServeGen statistics {path} (Apache-2.0; Xiang et al., arXiv:2505.09999)",
        duration_s=duration,
        tenant_assignment="ServeGen clients (one tenant per client statistics file)",
        trace_format="servegen",
        num_skipped_rows=report.num_skipped,
        warnings=tuple(report.warnings),
    )


def _sniff(path: Path, head: str) -> bool:
    if path.is_dir():
        return any(_CHUNK_RE.search(f.name) for f in path.iterdir())
    if _CHUNK_RE.search(path.name):
        return True
    first = head.splitlines()[0] if head.strip() else ""
    parts = first.split(",")
    return len(parts) == 6 and parts[3].strip() in ("", "Gamma", "Weibull") and parts[0].strip().isdigit()


SERVEGEN = TraceFormat(
    "servegen",
    "ServeGen per-client statistics: chunk-<id>-trace.csv (+ dataset.json) or a model directory",
    _sniff,
    load=load_servegen,
    source="alibaba/ServeGen (Apache-2.0); Xiang et al., arXiv:2505.09999",
)
