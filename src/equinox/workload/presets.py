"""Built-in workloads by name (temporary core version: VTC's overload suite only)."""

from __future__ import annotations

import random

from equinox.errors import UnknownNameError
from equinox.request import RequestSpec
from equinox.workload.schema import Workload


def _uniform(tenant: str, rate: float, duration_s: float, rng: random.Random, n_in: int, n_out: int) -> list[RequestSpec]:
    gap = 1.0 / rate
    t = rng.random() * gap
    out = []
    i = 0
    while t < duration_s:
        out.append(RequestSpec(f"{tenant}-{i}", tenant, t, n_in, n_out, max_tokens=n_out))
        t += gap
        i += 1
    return out


def resolve(
    spec: str,
    *,
    seed: int = 0,
    duration_s: float | None = None,
    rate_scale: float = 1.0,
    num_tenants: int | None = None,
) -> Workload:
    """Resolve a workload name (only `overload` in the core version)."""
    if spec != "overload":
        raise UnknownNameError("workload", spec, ["overload"])
    rng = random.Random(seed)
    dur = duration_s if duration_s is not None else 360.0
    reqs = _uniform("tenant-1", 1.5 * rate_scale, dur, rng, 256, 256)
    reqs += _uniform("tenant-2", 3.0 * rate_scale, dur, rng, 256, 256)
    reqs.sort(key=lambda r: (r.arrival_time, r.request_id))
    return Workload("overload", tuple(reqs), {}, False, "VTC overload suite", dur)
