"""The simulator's reference runs for the fairness metrics: each tenant served alone, and the capacity.

docs/algorithm.md, "Fairness metrics": the user-side index and isolation compare each
tenant's latency with the same tenant's requests served alone (same engine, platform
and config, policy FCFS), and the demand classification needs the platform's capacity
on the workload's mix (a saturation probe: the requests all arriving at once). Each is
one extra simulation, made through the public entry point `run_simulation`, cached in
memory per process and on disk under a hash of the config, the requests and the
simulator's source (so an engine change never reuses a stale baseline). Parallel
workers share the disk cache; a lock file makes the second wait for the first.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equinox.metrics.collector import RequestRecord, TimeSeries
from equinox.metrics.holistic import Reference, records_end_time

if TYPE_CHECKING:
    from equinox.config import RunConfig
    from equinox.sim.run import RunResult
    from equinox.workload import Workload

log = logging.getLogger(__name__)

REFERENCE_POLICY = "fcfs"
MAX_PROBE_REQUESTS = 2000  # the saturation probe's sample of the workload's mix
PROBE_FRACTION = 0.8  # capacity = service delivered until this fraction of the total / that time
CACHE_DIR_NAME = ".equinox-reference"
_FORMAT = 1  # bump when the cached file layout or a reference definition changes
# Config fields that do not change a reference run (the workload is hashed by content instead).
_IGNORED_FIELDS = ("workload", "policy", "policy_params", "rpm_limit", "tenant_weights", "seed", "duration_s",
                   "rate_scale", "num_tenants")
# Parts of the package whose code cannot change a simulated run's records.
_NOT_SIMULATION = ("report", "cli", "bench", "integrations", "experiments")

_memory: dict[str, Any] = {}
_fingerprint: str | None = None


def code_fingerprint() -> str:
    """Hash of the package source that shapes a simulated run (engines, policies, metrics, workloads)."""
    global _fingerprint
    if _fingerprint is None:
        root = Path(__file__).resolve().parent.parent
        h = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root)
            if rel.parts[0] in _NOT_SIMULATION:
                continue
            h.update(str(rel).encode())
            h.update(path.read_bytes())
        _fingerprint = h.hexdigest()[:16]
    return _fingerprint


def _requests_digest(workload: Workload) -> str:
    h = hashlib.sha256()
    for r in workload.requests:
        h.update(f"{r.request_id}|{r.tenant}|{r.arrival_time!r}|{r.num_prompt_tokens}|{r.num_output_tokens}|"
                 f"{r.max_tokens}|{len(r.prefix_hashes)}\n".encode())
    return h.hexdigest()


def reference_config(config: RunConfig) -> RunConfig:
    """The config of a reference run: the same engine, platform and settings under FCFS, no rate limit."""
    return config.replace(policy=REFERENCE_POLICY, policy_params={}, rpm_limit=None)


def cache_key(kind: str, config: RunConfig, workload: Workload) -> str:
    """Hash of what determines a reference run's result."""
    cfg = {k: v for k, v in reference_config(config).to_dict().items() if k not in _IGNORED_FIELDS}
    doc = json.dumps({"kind": kind, "format": _FORMAT, "config": cfg, "requests": _requests_digest(workload),
                      "code": code_fingerprint()}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:24]


def _cached(key: str, cache_dir: Path | None, make: Callable[[], Any]) -> Any:
    """The value under `key`: from memory, else from disk, else made (and stored in both)."""
    if key in _memory:
        return _memory[key]
    if cache_dir is None:
        value = make()
    else:
        cache_dir.mkdir(parents=True, exist_ok=True)
        path = cache_dir / f"{key}.json"
        with open(cache_dir / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel worker making the same run: wait for it
            value = _read(path)
            if value is None:
                value = make()
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(value))
                os.replace(tmp, path)
    _memory[key] = value
    return value


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("%s: unreadable reference cache entry; recomputing it", path)
        return None


def _alone_workload(workload: Workload, tenant: str) -> Workload:
    requests = tuple(r for r in workload.requests if r.tenant == tenant)
    return dataclasses.replace(workload, name=f"{workload.name}[{tenant} alone]", requests=requests)


def _probe_workload(workload: Workload) -> Workload:
    reqs = workload.requests
    m = min(len(reqs), MAX_PROBE_REQUESTS)
    sample = [reqs[i * len(reqs) // m] for i in range(m)] if m else []
    requests = tuple(sorted((dataclasses.replace(r, arrival_time=0.0) for r in sample),
                            key=lambda r: r.request_id))
    return dataclasses.replace(workload, name=f"{workload.name}[saturated]", requests=requests, duration_s=None)


def served_alone(config: RunConfig, workload: Workload, tenant: str,
                 cache_dir: Path | None = None) -> list[RequestRecord]:
    """Records of `tenant`'s requests served alone (reference policy, same engine and platform)."""
    from equinox.sim.run import run_simulation

    alone = _alone_workload(workload, tenant)

    def make() -> list[list[Any]]:
        result = run_simulation(reference_config(config), alone)
        return [list(dataclasses.astuple(r)) for r in result.records]

    rows = _cached(cache_key("alone", config, alone), cache_dir, make)
    return [RequestRecord(*row) for row in rows]


def saturation_capacity(config: RunConfig, workload: Workload, cache_dir: Path | None = None) -> float:
    """Weighted tokens/s the platform serves on the workload's mix when saturated (all requests at once)."""
    from equinox.sim.run import run_simulation

    probe = _probe_workload(workload)

    def make() -> float:
        cfg = reference_config(config).replace(until_s=None)
        result = run_simulation(cfg, probe)
        return delivery_rate(result.series, cfg.prompt_weight, cfg.output_weight, PROBE_FRACTION)

    return float(_cached(cache_key("capacity", config, probe), cache_dir, make))


def delivery_rate(series: TimeSeries, prompt_weight: float, output_weight: float, fraction: float) -> float:
    """Service delivered until `fraction` of the run's total was delivered, divided by that time (interpolated)."""
    n = len(series)
    per = [0.0] * n
    for cells in series.service.values():
        for i, (p, o) in cells.items():
            if i >= len(per):
                per.extend([0.0] * (i + 1 - len(per)))
            per[i] += prompt_weight * p + output_weight * o
    total = sum(per)
    if total <= 0:
        return 0.0
    target = fraction * total
    acc = 0.0
    for i, v in enumerate(per):
        if acc + v >= target and v > 0:
            t = (i + (target - acc) / v) * series.interval_s
            return target / t if t > 0 else 0.0
        acc += v
    return 0.0


def reference_runs(config: RunConfig, workload: Workload, tenants: Sequence[str],
                   cache_dir: Path | None = None) -> Reference:
    """Every reference run one run's metrics need: each tenant alone, and the saturation capacity."""
    alone = {t: served_alone(config, workload, t, cache_dir) for t in tenants}
    return Reference(alone, saturation_capacity(config, workload, cache_dir), REFERENCE_POLICY)


def with_reference(result: RunResult, cache_dir: str | Path | None = None) -> RunResult:
    """`result` with the user-side, isolation and holistic indices filled in (idempotent)."""
    summary = result.summary
    if summary.holistic is not None and summary.holistic.has_reference:
        return result
    config, workload = result.config, result.workload
    weights = {**workload.tenant_weights, **config.tenant_weights}
    tenants = [t.tenant for t in summary.tenants]
    reference = reference_runs(config, workload, tenants, Path(cache_dir) if cache_dir is not None else None)
    arrival_end = workload.duration_s
    if arrival_end is None:
        arrival_end = workload.requests[-1].arrival_time if workload.requests else 0.0
    end_time = max(result.stats.end_time, len(result.series) * result.series.interval_s,
                   records_end_time(result.records))
    summary = summary.with_reference(
        result.records, reference, weights=weights, arrival_end_time=arrival_end, end_time=end_time,
        prompt_weight=config.prompt_weight, output_weight=config.output_weight,
    )
    return dataclasses.replace(result, summary=summary)
