"""Built-in workloads by name: presets (statistics shipped in data/), VTC suites, and files.

Presets are small JSON tables derived from ../shared/data by tools/derive_presets.py
(each names its source and licence). Single-source presets (sharegpt, arxiv-summarization,
bwb, azure-code, azure-conv, mooncake-conv) generate one arrival stream with the source's
rate and burstiness and split it over `num_tenants` Zipf-skewed SYNTHETIC tenants (default 4).
`servegen-multitenant` gives each tenant one production client's hour-of-day rate shape
(the day compressed into the run unless `day_s` is set), burstiness and length table.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from equinox.errors import ConfigError, UnknownNameError
from equinox.workload.schema import Workload
from equinox.workload.synthetic import (
    ConstantRate,
    GeneratorConfig,
    LengthModel,
    Piecewise,
    QuantileTable,
    RenewalArrivals,
    TenantProfile,
    generate,
)
from equinox.workload.tenants import TenantAssignment, parse_tenant_spec

PRESET_NAMES = (
    "sharegpt",
    "arxiv-summarization",
    "bwb",
    "azure-code",
    "azure-conv",
    "mooncake-conv",
    "servegen-multitenant",
    "lmsys-chat",
)
DEFAULT_DURATION_S = 600.0
DEFAULT_PRESET_TENANTS = 4
DEFAULT_SERVEGEN_TENANTS = 8
# Total request rate of servegen-multitenant at rate_scale 1: production rates (hundreds of
# req/s) are far beyond one simulated GPU, so the clients' relative volumes are kept and the
# sum is normalised to this.
SERVEGEN_TOTAL_RATE = 4.0


@cache
def preset_stats(name: str) -> dict[str, Any]:
    """The statistics table of preset `name` (parsed JSON, cached)."""
    key = preset_key(name)
    if key is None:
        raise UnknownNameError("preset", name, list(PRESET_NAMES))
    text = resources.files("equinox.workload").joinpath("data", f"{key}.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def preset_key(name: str) -> str | None:
    """The canonical preset name for `name` (underscores accepted), or None."""
    key = name.strip().lower().replace("_", "-")
    return key if key in PRESET_NAMES else None


def _table(probs: list[float], values: list[float]) -> QuantileTable:
    return QuantileTable(tuple(probs), tuple(float(v) for v in values))


def servegen_clients(num_tenants: int) -> list[dict[str, Any]]:
    """The `num_tenants` busiest ServeGen clients (cycled when more are asked than shipped)."""
    clients: list[dict[str, Any]] = preset_stats("servegen-multitenant")["clients"]
    return [clients[i % len(clients)] for i in range(num_tenants)]


def servegen_pooled_lengths(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and output lengths from the rate-weighted pool of all ServeGen clients."""
    st = preset_stats("servegen-multitenant")
    model = LengthModel(_table(st["probs"], st["pooled"]["prompt_quantiles"]),
                        _table(st["probs"], st["pooled"]["output_quantiles"]))
    return model.sample(rng, n)


def generate_preset(
    name: str,
    *,
    seed: int = 0,
    duration_s: float | None = None,
    rate_scale: float = 1.0,
    num_tenants: int | None = None,
    tenants: str | None = None,
    day_s: float | None = None,
) -> Workload:
    """Sample preset `name`; `tenants` overrides the Zipf split (e.g. 'round-robin:4')."""
    key = preset_key(name)
    if key is None:
        raise UnknownNameError("preset", name, list(PRESET_NAMES))
    if not (rate_scale > 0 and math.isfinite(rate_scale)):
        raise ConfigError(f"rate_scale must be > 0, got {rate_scale}")
    duration = DEFAULT_DURATION_S if duration_s is None else float(duration_s)
    if not duration > 0:
        raise ConfigError(f"duration_s must be > 0, got {duration_s}")
    st = preset_stats(key)
    if st["kind"] == "servegen":
        return _servegen(st, seed, duration, rate_scale, num_tenants or DEFAULT_SERVEGEN_TENANTS, day_s)
    return _single_source(st, seed, duration, rate_scale, num_tenants, tenants)


def _source_line(st: dict[str, Any]) -> str:
    src = st["source"]
    return f"preset {st['name']}: {src['repo']}@{src['commit'][:8]} {src['path']} ({src['licence']})"


def _single_source(
    st: dict[str, Any], seed: int, duration: float, rate_scale: float, num_tenants: int | None, tenants: str | None
) -> Workload:
    lens = st["lengths"]
    model = LengthModel(_table(lens["probs"], lens["prompt_quantiles"]),
                        _table(lens["probs"], lens["output_quantiles"]),
                        correlation=float(lens.get("normal_correlation", 0.0)))
    arr = st["arrivals"]
    rate = float(arr["rate_req_per_s"]) * rate_scale
    process = RenewalArrivals(ConstantRate(rate), float(arr.get("cv", 1.0)))
    base = generate(
        [TenantProfile("tenant-1", process, model)],
        GeneratorConfig(duration, seed, st["name"], _source_line(st)),
    )
    if tenants:
        assignment = parse_tenant_spec(tenants)
        if assignment.kind == "column":
            raise ConfigError("a preset has no columns; use zipf:N, round-robin:N or servegen:N")
    else:
        n = DEFAULT_PRESET_TENANTS if num_tenants is None else num_tenants
        if n < 1:
            raise ConfigError(f"num_tenants must be >= 1, got {n}")
        assignment = TenantAssignment("zipf", num_tenants=n) if n > 1 else TenantAssignment("single")
    if assignment.kind == "single" or not base.requests:
        return replace(base, tenant_assignment="single tenant")
    times = np.array([r.arrival_time for r in base.requests])
    names = assignment.assign(times, seed)
    counters: dict[str, int] = {}
    specs = []
    for r, tenant in zip(base.requests, names, strict=True):
        k = counters.get(tenant, 0)
        counters[tenant] = k + 1
        specs.append(replace(r, tenant=tenant, request_id=f"{tenant}-{k}"))
    specs.sort(key=lambda s: (s.arrival_time, s.request_id))
    return replace(base, requests=tuple(specs), is_synthetic_tenants=True,
                   tenant_assignment=assignment.label(seed))


def _servegen(
    st: dict[str, Any], seed: int, duration: float, rate_scale: float, num_tenants: int, day_s: float | None
) -> Workload:
    if num_tenants < 1:
        raise ConfigError(f"num_tenants must be >= 1, got {num_tenants}")
    clients = servegen_clients(num_tenants)
    total = sum(float(c["mean_rate_req_per_s"]) for c in clients)
    factor = SERVEGEN_TOTAL_RATE * rate_scale / total
    hour_s = (day_s if day_s is not None else duration) / 24.0
    probs = st["probs"]
    profiles = []
    for i, c in enumerate(clients):
        shape = Piecewise(tuple(float(r) * factor for r in c["hourly_rate"]), segment_s=hour_s)
        if day_s is not None:
            shape = _Cyclic(shape, 24 * hour_s)  # type: ignore[assignment]
        cv = float(np.median(c["hourly_cv"]))
        lengths = LengthModel(_table(probs, c["prompt_quantiles"]), _table(probs, c["output_quantiles"]))
        profiles.append(TenantProfile(f"tenant-{i + 1}", RenewalArrivals(shape, cv), lengths))
    cycled = " (clients reused cyclically)" if num_tenants > len(st["clients"]) else ""
    label = ", ".join(f"tenant-{i + 1}={c['model']}/chunk-{c['client']}" for i, c in enumerate(clients[:8]))
    more = ", ..." if len(clients) > 8 else ""
    return generate(
        profiles,
        GeneratorConfig(
            duration, seed, st["name"], _source_line(st),
            tenant_assignment=f"ServeGen client statistics: {label}{more}{cycled}",
        ),
    )


class _Cyclic:
    """A piecewise day shape repeated with period `period_s` (for runs longer than a day)."""

    def __init__(self, inner: Piecewise, period_s: float) -> None:
        self.inner = inner
        self.period_s = period_s

    def __call__(self, t: np.ndarray, duration_s: float) -> np.ndarray:
        return self.inner(np.mod(t, self.period_s), duration_s)

    def scaled(self, factor: float) -> _Cyclic:
        return _Cyclic(self.inner.scaled(factor), self.period_s)


# ---------------------------------------------------------------------------------------
# Name / file resolution used by load_workload.

_FILE_OPTIONS = {"format", "tenants", "skip_bad", "rate", "tokenizer", "start_s"}
_PRESET_OPTIONS = {"tenants", "day_s"}


def _parse_query(spec: str) -> tuple[str, dict[str, str]]:
    base, sep, query = spec.partition("?")
    if not sep or Path(spec).exists():
        return spec, {}
    opts: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        k, eq, v = part.partition("=")
        if not eq:
            raise ConfigError(f"workload option {part!r} must look like key=value")
        opts[k.strip().lower()] = v.strip()
    return base, opts


def known_workloads() -> list[str]:
    """Every preset, VTC suite and scenario name."""
    from equinox.workload.scenarios import SCENARIOS
    from equinox.workload.suites import SUITES

    return sorted(PRESET_NAMES) + sorted(SUITES) + sorted(SCENARIOS)


def resolve(
    spec: str,
    *,
    seed: int = 0,
    duration_s: float | None = None,
    rate_scale: float = 1.0,
    num_tenants: int | None = None,
) -> Workload:
    """A VTC suite name, a preset name, a scenario name, or a trace path (format detected), each with
    optional `?key=value&...` options (files: format, tenants, skip_bad, rate, tokenizer, start_s;
    presets: tenants, day_s)."""
    from equinox.workload.scenarios import generate_scenario, scenario_key
    from equinox.workload.suites import generate_suite, suite_key

    name, opts = _parse_query(spec.strip())
    if scenario_key(name) is not None:
        if opts:
            raise ConfigError(f"scenarios take no options, got {', '.join(opts)}")
        return generate_scenario(name, seed=seed, duration_s=duration_s, rate_scale=rate_scale,
                                 num_tenants=num_tenants)
    if suite_key(name) is not None:
        if opts:
            raise ConfigError(f"VTC suites take no options, got {', '.join(opts)}")
        return generate_suite(name, seed=seed, duration_s=duration_s, rate_scale=rate_scale, num_tenants=num_tenants)
    if preset_key(name) is not None:
        bad = set(opts) - _PRESET_OPTIONS
        if bad:
            raise ConfigError(f"unknown preset option(s) {', '.join(sorted(bad))}; known: tenants, day_s")
        day = _float_opt(opts, "day_s")
        return generate_preset(name, seed=seed, duration_s=duration_s, rate_scale=rate_scale,
                               num_tenants=num_tenants, tenants=opts.get("tenants"), day_s=day)
    path = Path(name).expanduser()
    if path.exists():
        bad = set(opts) - _FILE_OPTIONS
        if bad:
            known = ", ".join(sorted(_FILE_OPTIONS))
            raise ConfigError(f"unknown trace option(s) {', '.join(sorted(bad))}; known: {known}")
        from equinox.workload.build import LoadOptions
        from equinox.workload.formats import load_trace

        skip = opts.get("skip_bad", "0").lower() in ("1", "true", "yes")
        lo = LoadOptions(format=opts.get("format"), skip_bad=skip, tenants=opts.get("tenants"),
                         num_tenants=num_tenants, seed=seed, duration_s=duration_s, rate_scale=rate_scale,
                         rate=_float_opt(opts, "rate"), tokenizer=opts.get("tokenizer"),
                         start_s=_float_opt(opts, "start_s") or 0.0)
        return load_trace(path, lo)
    if "/" in name or "\\" in name or path.suffix.lower() in (".csv", ".json", ".jsonl", ".ndjson"):
        from equinox.errors import WorkloadError

        raise WorkloadError("no such trace file (and not a preset or VTC suite name)", path=name)
    raise UnknownNameError("workload (preset, VTC suite or existing file)", spec, known_workloads())


def _float_opt(opts: dict[str, str], key: str) -> float | None:
    if key not in opts:
        return None
    try:
        return float(opts[key])
    except ValueError:
        raise ConfigError(f"workload option {key} must be a number, got {opts[key]!r}") from None


def catalogue() -> list[tuple[str, str]]:
    """(name, one-line description) of every VTC suite, preset and scenario, for `equinox list`."""
    from equinox.workload.scenarios import SCENARIOS
    from equinox.workload.suites import SUITES

    out = [(name, f"VTC suite: {s.description}, {s.duration_s:g} s") for name, s in SUITES.items()]
    for name in PRESET_NAMES:
        st = preset_stats(name)
        out.append((name, f"preset: {st['description']} [{st['source']['licence']}]"))
    out += [(name, f"scenario: {sc.description}") for name, sc in SCENARIOS.items()]
    return out
