"""Workloads: the canonical schema, real trace loaders, generators, VTC suites and presets."""

from __future__ import annotations

from equinox.workload.schema import Workload

__all__ = ["Workload", "load_workload"]


def load_workload(
    spec: str,
    *,
    seed: int = 0,
    duration_s: float | None = None,
    rate_scale: float = 1.0,
    num_tenants: int | None = None,
) -> Workload:
    """Resolve `spec` (a preset name, a VTC suite name, or a file path) into a Workload."""
    from equinox.workload.presets import resolve

    return resolve(spec, seed=seed, duration_s=duration_s, rate_scale=rate_scale, num_tenants=num_tenants)
