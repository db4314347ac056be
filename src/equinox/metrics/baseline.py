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
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from equinox.metrics.collector import RequestRecord, TimeSeries
from equinox.metrics.holistic import Reference, records_end_time
from equinox.metrics.records import Columns
from equinox.request import RequestSpec

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


def _requests_digest(workload: Any) -> str:
    """Hash of the requests (`workload.requests`: any iterable of RequestSpec)."""
    h = hashlib.sha256()
    for r in workload.requests:
        h.update(f"{r.request_id}|{r.tenant}|{r.arrival_time!r}|{r.num_prompt_tokens}|{r.num_output_tokens}|"
                 f"{r.max_tokens}|{len(r.prefix_hashes)}\n".encode())
    return h.hexdigest()


def reference_config(config: RunConfig) -> RunConfig:
    """The config of a reference run: the same engine, platform and settings under FCFS, no rate limit."""
    return config.replace(policy=REFERENCE_POLICY, policy_params={}, rpm_limit=None)


def cache_key(kind: str, config: RunConfig, workload: Any) -> str:
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


# --- Streamed runs (issue 13): the same reference runs without holding the workload or the records -----------


class TenantSpill:
    """Each tenant's requests, kept compactly (~80 bytes each) while a streamed run reads them, for its references.

    `tee` passes the requests through unchanged; afterwards `requests(tenant)` rebuilds
    that tenant's RequestSpecs in order (the served-alone workload) and `probe` holds the
    saturation probe's sample, picked as `_probe_workload` picks it from the whole list.
    """

    def __init__(self, num_requests: int) -> None:
        m = min(num_requests, MAX_PROBE_REQUESTS)
        self._probe_at = {i * num_requests // m for i in range(m)} if m else set()
        self.probe: list[RequestSpec] = []
        self._ids: dict[str, list[str]] = {}
        self._numbers: dict[str, array[float]] = {}  # arrival, prompt, output, max_tokens (-1: none) per request
        self._extras: dict[str, dict[int, tuple[Any, ...]]] = {}  # rare fields, by position in the tenant's list

    def tee(self, specs: Iterable[RequestSpec]) -> Iterator[RequestSpec]:
        """Yield `specs` unchanged, keeping a compact copy."""
        ids, numbers, extras, probe_at = self._ids, self._numbers, self._extras, self._probe_at
        for index, spec in enumerate(specs):
            tenant = spec.tenant
            own = ids.get(tenant)
            if own is None:
                own = ids[tenant] = []
                numbers[tenant] = array("d")
                extras[tenant] = {}
            nums = numbers[tenant]
            if spec.prompt_text is not None or spec.prefix_hashes or spec.tenant_weight is not None:
                extras[tenant][len(own)] = (spec.prompt_text, spec.prefix_hashes, spec.tenant_weight)
            own.append(spec.request_id)
            nums.extend((spec.arrival_time, spec.num_prompt_tokens, spec.num_output_tokens,
                         -1 if spec.max_tokens is None else spec.max_tokens))
            if index in probe_at:
                self.probe.append(spec)
            yield spec

    def num_requests(self, tenant: str) -> int:
        """How many requests `tenant` sent."""
        return len(self._ids.get(tenant, ()))

    def requests(self, tenant: str) -> Iterator[RequestSpec]:
        """`tenant`'s requests in arrival order, as the run read them."""
        nums = self._numbers.get(tenant, array("d"))
        extras = self._extras.get(tenant, {})
        for k, rid in enumerate(self._ids.get(tenant, ())):
            t, p, o, mt = nums[4 * k: 4 * k + 4]
            text, hashes, weight = extras.get(k, (None, (), None))
            yield RequestSpec(rid, tenant, t, int(p), int(o), None if mt < 0 else int(mt), text, hashes, weight)


class _Requests:
    """A re-iterable `.requests` for `cache_key`."""

    def __init__(self, make: Callable[[], Iterator[RequestSpec]]) -> None:
        self._make = make

    @property
    def requests(self) -> Iterator[RequestSpec]:
        return self._make()


def _cached_columns(key: str, cache_dir: Path | None, make: Callable[[], Columns]) -> Columns:
    """Columns under `key`: from memory, else from `<key>.npz` on disk, else made (and stored in both)."""
    memory_key = f"columns:{key}"  # `_cached` keeps the same run's records under `key`
    if memory_key in _memory:
        return cast(Columns, _memory[memory_key])
    value: Columns | None = None
    if cache_dir is None:
        value = make()
    else:
        cache_dir.mkdir(parents=True, exist_ok=True)
        path = cache_dir / f"{key}.npz"
        with open(cache_dir / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            value = _read_columns(path)
            if value is None:
                value = make()
                tmp = path.with_name(f"{key}.{os.getpid()}.tmp.npz")
                np.savez(tmp, names=np.array(value.tenant_names, dtype=object).astype(str),
                         **{f: getattr(value, f) for f in _COLUMN_FIELDS})
                os.replace(tmp, path)
    _memory[memory_key] = value
    return value


_COLUMN_FIELDS = ("tenant", "arrival", "scheduled", "first_token", "finish", "num_prompt", "num_output",
                  "num_requested", "num_preemptions", "max_itl", "rejected")


def _read_columns(path: Path) -> Columns | None:
    try:
        with np.load(path) as z:
            return Columns(tuple(str(n) for n in z["names"]), *(z[f] for f in _COLUMN_FIELDS))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError):
        log.warning("%s: unreadable reference cache entry; recomputing it", path)
        return None


def streamed_reference(config: RunConfig, spill: TenantSpill, tenants: Sequence[str], weights_source: Any,
                       cache_dir: Path | None = None) -> Reference:
    """`reference_runs` of a streamed run: each tenant alone from the spill, the probe from its sample."""
    from equinox.sim.run import simulate_columns
    from equinox.workload.schema import Workload

    ref_config = reference_config(config)
    alone: dict[str, Columns] = {}
    for tenant in tenants:
        def make(tenant: str = tenant) -> Columns:
            run, _ = simulate_columns(ref_config, spill.requests(tenant), weights_source=weights_source,
                                      num_requests=spill.num_requests(tenant))
            return run.records.columns()

        def requests(tenant: str = tenant) -> Iterator[RequestSpec]:
            return spill.requests(tenant)

        key = cache_key("alone", config, _Requests(requests))
        alone[tenant] = _cached_columns(key, cache_dir, make)
    # The spill sampled the probe from the whole stream; `_probe_workload` of the sample is the sample.
    probe = Workload("probe", tuple(spill.probe), tenant_weights=dict(weights_source.tenant_weights))
    capacity = saturation_capacity(config, probe, cache_dir)
    return Reference(alone, capacity, REFERENCE_POLICY)
