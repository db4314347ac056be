"""VTC's experiment suites (Sheng et al., OSDI'24, artifact `fair_bench/exp_suite.py` and `trace.py`).

Rates are requests/s per tenant. `uniform`: deterministic gaps 1/rate, floor(rate * T)
requests, the first at a random phase in [0, 1/rate). `poisson`: exponential gaps at the
total rate, each request given to a tenant with probability proportional to its rate.
ON/OFF applies to tenant 1 only: it is silent in every other 60 s window (ON first).
`increase` follows the artifact: tenant 1 uniform with no phase; tenant 2 deterministic
with gap 1/rate(t), rate ramping linearly 0.2 -> 2 over the run, first arrival at 1/0.2 s.
`rate_scale` multiplies every rate; `duration_s` stretches the run (dist_shift keeps three
equal phases). Arrivals always lie in [0, duration).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from equinox.errors import ConfigError
from equinox.request import RequestSpec
from equinox.workload.schema import Workload
from equinox.workload.synthetic import UniformArrivals

ON_OFF_S = 60.0
SOURCE = "VTC artifact fair_bench/exp_suite.py (Ying1123/VTC-artifact, Apache-2.0); Sheng et al., OSDI 2024"


@dataclass(frozen=True)
class SuiteTenant:
    """One tenant of a suite phase."""

    rate: float
    num_prompt_tokens: int = 256
    num_output_tokens: int = 256
    on_off: bool = False
    weight: float | None = None


@dataclass(frozen=True)
class Suite:
    """A VTC experiment: arrival mode, phases of tenants, default duration."""

    name: str
    description: str
    mode: str  # uniform | poisson | increase
    phases: tuple[tuple[SuiteTenant, ...], ...]
    duration_s: float

    @property
    def num_tenants(self) -> int:
        """Tenants in the suite."""
        return len(self.phases[0])


def _t(rate: float, n_in: int = 256, n_out: int = 256, *, on_off: bool = False, weight: float | None = None
       ) -> SuiteTenant:
    return SuiteTenant(rate, n_in, n_out, on_off, weight)


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("overload", "2 tenants at 1.5 and 3 req/s, uniform, 256/256", "uniform",
              ((_t(1.5), _t(3.0)),), 360.0),
        Suite("proportional", "3 tenants at 0.25, 0.5, 1.5 req/s, uniform, 256/256", "uniform",
              ((_t(0.25), _t(0.5), _t(1.5)),), 600.0),
        Suite("on_off_less", "tenant 1 at 0.5 ON/OFF 60 s, tenant 2 at 2, uniform, 256/256", "uniform",
              ((_t(0.5, on_off=True), _t(2.0)),), 600.0),
        Suite("on_off_overload", "tenant 1 at 2 ON/OFF 60 s, tenant 2 at 3, uniform, 256/256", "uniform",
              ((_t(2.0, on_off=True), _t(3.0)),), 600.0),
        Suite("poisson_short_long", "tenant 1 at 8 with 64/64, tenant 2 at 1.5 with 256/256, poisson", "poisson",
              ((_t(8.0, 64, 64), _t(1.5, 256, 256)),), 600.0),
        Suite("poisson_short_long_2", "tenant 1 at 8 with 512 in/32 out, tenant 2 at 1.5 with 32 in/512 out, "
              "poisson", "poisson", ((_t(8.0, 512, 32), _t(1.5, 32, 512)),), 600.0),
        Suite("increase", "tenant 1 at 0.5 uniform; tenant 2 ramping 0.2 -> 2 over the run, 256/256", "increase",
              ((_t(0.5), _t(2.0)),), 600.0),
        Suite("dist_shift", "three 300 s phases: (0.5 ON/OFF, 2); (1, 1); (0.5, 1.5); uniform, 256/256",
              "uniform", ((_t(0.5, on_off=True), _t(2.0)), (_t(1.0), _t(1.0)), (_t(0.5), _t(1.5))), 900.0),
        Suite("overload_weighted", "4 tenants at 0.4, 0.8, 1.2, 1.6 req/s, weights 1:2:3:4, uniform, 256/256",
              "uniform", ((_t(0.4, weight=1), _t(0.8, weight=2), _t(1.2, weight=3), _t(1.6, weight=4)),), 360.0),
        Suite("overload_multi", "8 tenants: three at 0.4 and five at 0.6 req/s, uniform, 256/256", "uniform",
              ((_t(0.4),) * 3 + (_t(0.6),) * 5,), 360.0),
    )
}
RAMP_START_RATE = 0.2


def suite_key(name: str) -> str | None:
    """The canonical suite name for `name` (hyphens accepted), or None."""
    key = name.strip().lower().replace("-", "_")
    return key if key in SUITES else None


def _uniform(rng: np.random.Generator, t: SuiteTenant, start: float, length: float, scale: float,
             *, phase: bool = True) -> np.ndarray:
    proc = UniformArrivals(t.rate * scale, random_phase=phase)
    times = start + proc.sample(rng, length)
    if t.on_off:
        times = times[(times // ON_OFF_S).astype(int) % 2 == 0]
    return times


def _ramp(start_rate: float, end_rate: float, duration_s: float) -> np.ndarray:
    n = int(0.5 * (start_rate + end_rate) * duration_s)
    out, tic = [], 0.0
    for _ in range(n):
        tic += 1.0 / (start_rate + (end_rate - start_rate) * tic / duration_s)
        if tic >= duration_s:
            break
        out.append(tic)
    return np.asarray(out)


def _poisson(rng: np.random.Generator, tenants: tuple[SuiteTenant, ...], duration_s: float, scale: float
             ) -> list[np.ndarray]:
    rates = np.array([t.rate * scale for t in tenants])
    total = float(rates.sum())
    n = int(total * duration_s + 8 * np.sqrt(total * duration_s) + 16)
    times = np.cumsum(rng.exponential(1.0 / total, size=n))
    while times[-1] < duration_s:
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / total, size=n))])
    times = times[times < duration_s]
    owner = np.searchsorted(np.cumsum(rates / total), rng.random(len(times)), side="right")
    owner = np.minimum(owner, len(tenants) - 1)
    out = []
    for i, t in enumerate(tenants):
        ti = times[owner == i]
        if t.on_off:
            ti = ti[(ti // ON_OFF_S).astype(int) % 2 == 0]
        out.append(ti)
    return out


def generate_suite(
    name: str,
    *,
    seed: int = 0,
    duration_s: float | None = None,
    rate_scale: float = 1.0,
    num_tenants: int | None = None,
) -> Workload:
    """The VTC suite `name` as a Workload (tenant-1, tenant-2, ...; max_tokens = output length)."""
    key = suite_key(name)
    if key is None:
        from equinox.errors import UnknownNameError

        raise UnknownNameError("VTC suite", name, list(SUITES))
    suite = SUITES[key]
    if num_tenants is not None and num_tenants != suite.num_tenants:
        raise ConfigError(f"suite {key!r} has {suite.num_tenants} tenants; drop --tenants or pass "
                          f"{suite.num_tenants}")
    if not rate_scale > 0:
        raise ConfigError(f"rate_scale must be > 0, got {rate_scale}")
    duration = suite.duration_s if duration_s is None else float(duration_s)
    if not duration > 0:
        raise ConfigError(f"duration_s must be > 0, got {duration_s}")
    k = suite.num_tenants
    per_tenant: list[list[np.ndarray]] = [[] for _ in range(k)]
    phase_len = duration / len(suite.phases)
    for p, phase in enumerate(suite.phases):
        start = p * phase_len
        if suite.mode == "poisson":
            rng = np.random.default_rng([seed, p])
            for i, times in enumerate(_poisson(rng, phase, phase_len, rate_scale)):
                per_tenant[i].append(start + times)
            continue
        for i, t in enumerate(phase):
            rng = np.random.default_rng([seed, p, i])
            if suite.mode == "increase" and i == 1:
                per_tenant[i].append(_ramp(RAMP_START_RATE * rate_scale, t.rate * rate_scale, duration))
            else:
                per_tenant[i].append(_uniform(rng, t, start, phase_len, rate_scale, phase=suite.mode != "increase"))
    specs: list[RequestSpec] = []
    weights: dict[str, float] = {}
    for i in range(k):
        tenant = f"tenant-{i + 1}"
        proto = suite.phases[0][i]
        if proto.weight is not None:
            weights[tenant] = float(proto.weight)
        times = np.sort(np.concatenate(per_tenant[i])) if per_tenant[i] else np.empty(0)
        specs.extend(
            RequestSpec(f"{tenant}-{j}", tenant, float(x), proto.num_prompt_tokens, proto.num_output_tokens,
                        max_tokens=proto.num_output_tokens, tenant_weight=weights.get(tenant))
            for j, x in enumerate(times)
        )
    specs.sort(key=lambda s: (s.arrival_time, s.request_id))
    return Workload(
        name=key,
        requests=tuple(specs),
        tenant_weights=weights,
        source=f"{SOURCE}: {suite.description}",
        duration_s=duration,
        tenant_assignment="VTC suite tenants",
        trace_format="vtc-suite",
    )
