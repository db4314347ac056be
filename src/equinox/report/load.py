"""Read run directories (simulated or live) into plain columns, naming every missing or broken file."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equinox.errors import EquinoxError

RUN_FILES = (
    "config.json", "summary.json", "requests.csv", "steps.csv", "service.csv", "counters.csv",
    "fairness_windows.csv",
)
META_FILE = "experiment.json"  # optional: written by `equinox experiment` next to the run files
# What each file feeds, so a missing file is reported with its consequence.
FILE_USES = {
    "config.json": "run labels, policy, platform, MFU and KV plots",
    "summary.json": "headline table (throughput, latency, fairness, utilisation)",
    "requests.csv": "TTFT plots and per-tenant latency",
    "steps.csv": "GPU busy / MFU / KV and batch-size plots",
    "service.csv": "service-rate and accumulated-service-difference plots",
    "counters.csv": "fairness-counter plots",
    "fairness_windows.csv": "per-window service difference",
    META_FILE: "experiment grouping (load level, alpha/beta)",
}
_REQUIRED_COLUMNS = {
    "requests.csv": ("tenant", "arrival_time", "ttft_s", "status"),
    "steps.csv": ("time", "busy_s", "num_steps"),
    "service.csv": ("time", "tenant", "weighted_service"),
    "counters.csv": ("time", "kind", "tenant", "value"),
    "fairness_windows.csv": ("window_start", "service_diff"),
}


class ReportError(EquinoxError):
    """A run directory that cannot be reported on at all (absent, or not a run directory)."""


@dataclass
class RunData:
    """One run directory's contents as plain Python values; `problems` names what could not be read."""

    path: Path
    label: str
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    requests: dict[str, list[str]] = field(default_factory=dict)
    steps: dict[str, list[str]] = field(default_factory=dict)
    service: dict[str, list[str]] = field(default_factory=dict)
    counters: dict[str, list[str]] = field(default_factory=dict)
    fairness_windows: dict[str, list[str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # experiment.json: how an experiment placed this run
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def run_config(self) -> dict[str, Any]:
        """The RunConfig dict (empty when config.json is missing)."""
        cfg = self.config.get("config")
        return cfg if isinstance(cfg, dict) else {}

    @property
    def policy(self) -> str:
        """Policy name, with the engine when it is not the default chunked one."""
        cfg = self.run_config
        name = str(cfg.get("policy") or self.config.get("policy") or "?")
        engine = cfg.get("engine_mode")
        return f"{name}@{engine}" if engine and engine != "vllm" else name

    @property
    def deployment(self) -> str:
        """model@gpu[xTP], or '?' when unknown."""
        dep = self.config.get("deployment")
        if isinstance(dep, dict) and dep.get("model") and dep.get("gpu"):
            tp = int(dep.get("tensor_parallel") or 1)
            return f"{dep['model']}@{dep['gpu']}" + (f"x{tp}" if tp > 1 else "")
        return "?"

    @property
    def workload(self) -> str:
        """Workload name, or '?'."""
        wl = self.config.get("workload")
        if isinstance(wl, dict) and wl.get("name"):
            return str(wl["name"])
        return str(self.run_config.get("workload") or "?")

    @property
    def interval_s(self) -> float:
        """Length of one metrics interval."""
        value = self.run_config.get("interval_s")
        return float(value) if isinstance(value, (int, float)) and value > 0 else 1.0

    def params(self) -> dict[str, Any]:
        """Policy parameters: those the run set, the policy's defaults (from the registry) for the rest."""
        from equinox.errors import ConfigError
        from equinox.scheduling.policy import policy_param_defaults

        given = dict(self.run_config.get("policy_params") or {})
        try:
            defaults = policy_param_defaults(str(self.run_config.get("policy") or ""))
        except ConfigError:  # a policy this version does not know (an older run directory)
            defaults = {}
        return {**defaults, **given}


def floats(values: Iterable[str]) -> list[float]:
    """CSV cells as floats; empty or unparsable cells become NaN."""
    out = []
    for v in values:
        try:
            out.append(float(v) if v != "" else math.nan)
        except ValueError:
            out.append(math.nan)
    return out


def _read_json(path: Path, run: RunData) -> dict[str, Any]:
    if not path.is_file():
        run.missing.append(path.name)
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        run.problems.append(f"{path.name}: not valid JSON (line {exc.lineno}: {exc.msg}); skipped "
                            f"{FILE_USES[path.name]}")
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        run.problems.append(f"{path.name}: cannot be read ({exc}); skipped {FILE_USES[path.name]}")
        return {}
    if not isinstance(data, dict):
        run.problems.append(f"{path.name}: expected a JSON object, got {type(data).__name__}")
        return {}
    return data


def _read_parquet(path: Path, run: RunData) -> dict[str, list[str]]:
    """requests.parquet as the same text columns requests.csv gives (needs pyarrow)."""
    uses = FILE_USES["requests.csv"]
    try:
        import pyarrow.parquet as pq
    except ImportError:
        run.problems.append(f"{path.name}: reading it needs pyarrow (pip install 'equinox[parquet]'); skipped {uses}")
        return {}
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        run.problems.append(f"{path.name}: cannot be read ({exc}); skipped {uses}")
        return {}
    cols = {name: ["" if v is None else str(v) for v in column.to_pylist()]
            for name, column in zip(table.column_names, table.columns, strict=True)}
    absent = [c for c in _REQUIRED_COLUMNS["requests.csv"] if c not in cols]
    if absent:
        run.problems.append(f"{path.name}: missing column(s) {', '.join(absent)}; skipped {uses}")
        return {}
    return cols


def _read_csv(path: Path, run: RunData) -> dict[str, list[str]]:
    if not path.is_file():
        run.missing.append(path.name)
        return {}
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                run.problems.append(f"{path.name}: empty file (no header row); skipped {FILE_USES[path.name]}")
                return {}
            cols: dict[str, list[str]] = {h: [] for h in header}
            for lineno, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    run.problems.append(f"{path.name}:{lineno}: {len(row)} cells, header has {len(header)}; "
                                        "the rest of the file was skipped")
                    break
                for h, v in zip(header, row, strict=True):
                    cols[h].append(v)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        run.problems.append(f"{path.name}: cannot be read ({exc}); skipped {FILE_USES[path.name]}")
        return {}
    absent = [c for c in _REQUIRED_COLUMNS.get(path.name, ()) if c not in cols]
    if absent:
        run.problems.append(f"{path.name}: missing column(s) {', '.join(absent)}; skipped {FILE_USES[path.name]}")
        return {}
    return cols


def is_run_dir(path: Path) -> bool:
    """True when `path` holds at least one run-directory file."""
    return path.is_dir() and any((path / name).is_file() for name in RUN_FILES)


def expand_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Each path itself when it is a run directory, else its run-directory children (sorted)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ReportError(f"{p}: no such directory; pass run directories written by `equinox simulate`, "
                              "`equinox compare` or `equinox experiment`")
        if not p.is_dir():
            raise ReportError(f"{p}: not a directory; pass a run directory (it holds {', '.join(RUN_FILES)})")
        if is_run_dir(p):
            out.append(p)
            continue
        children = sorted(c for c in p.rglob("*") if c.is_dir() and is_run_dir(c))
        if not children:
            raise ReportError(f"{p}: not a run directory: none of {', '.join(RUN_FILES)} found in it or below it")
        out.extend(children)
    return list(dict.fromkeys(out))


def _labels(paths: Sequence[Path]) -> list[str]:
    """Shortest distinct labels: paths relative to the runs' common parent."""
    resolved = [p.resolve() for p in paths]
    if len(resolved) == 1:
        return [resolved[0].name]
    common = Path(os.path.commonpath(resolved))
    return [str(r.relative_to(common)) for r in resolved]


def load_run(path: str | Path, label: str | None = None) -> RunData:
    """Read one run directory; missing or malformed files are recorded in `problems`, not raised."""
    p = Path(path)
    if not p.is_dir():
        raise ReportError(f"{p}: no such run directory")
    run = RunData(path=p, label=label or p.name)
    run.config = _read_json(p / "config.json", run)
    run.summary = _read_json(p / "summary.json", run)
    if not (p / "requests.csv").is_file() and (p / "requests.parquet").is_file():
        run.requests = _read_parquet(p / "requests.parquet", run)  # equinox simulate --records-format parquet
    else:
        run.requests = _read_csv(p / "requests.csv", run)
    run.steps = _read_csv(p / "steps.csv", run)
    run.service = _read_csv(p / "service.csv", run)
    run.counters = _read_csv(p / "counters.csv", run)
    run.fairness_windows = _read_csv(p / "fairness_windows.csv", run)
    if (p / META_FILE).is_file():
        run.meta = _read_json(p / META_FILE, run)
    if len(run.missing) == len(RUN_FILES):
        raise ReportError(f"{p}: not a run directory: none of {', '.join(RUN_FILES)} found")
    for name in run.missing:
        run.problems.insert(0, f"{name} is missing; skipped {FILE_USES[name]}")
    return run


def load_runs(paths: Sequence[str | Path]) -> list[RunData]:
    """Expand and read every run directory, labelled relative to their common parent."""
    dirs = expand_run_dirs(paths)
    return [load_run(d, label) for d, label in zip(dirs, _labels(dirs), strict=True)]
