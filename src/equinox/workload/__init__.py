"""Workloads: the canonical schema, real trace loaders, generators, VTC suites and presets.

`load_workload` is the one entry point the simulator and CLI need; it accepts a VTC suite
name (`overload`, `on-off-less`...), a preset name (`sharegpt`, `servegen-multitenant`...)
or a trace path whose format is detected. Heavier modules load lazily so that
`import equinox.workload` stays cheap.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from equinox.workload.schema import Workload

if TYPE_CHECKING:
    from equinox.workload.build import LoadOptions
    from equinox.workload.formats import TRACE_FORMATS, detect_format, load_trace
    from equinox.workload.io import write_workload
    from equinox.workload.presets import PRESET_NAMES, catalogue, generate_preset, known_workloads
    from equinox.workload.stats import TraceStats, trace_stats
    from equinox.workload.suites import SUITES, generate_suite

__all__ = [
    "DEFAULT_WORKLOAD",
    "PRESET_NAMES",
    "SUITES",
    "TRACE_FORMATS",
    "LoadOptions",
    "TraceStats",
    "Workload",
    "catalogue",
    "detect_format",
    "generate_preset",
    "generate_suite",
    "known_workloads",
    "load_trace",
    "load_workload",
    "trace_stats",
    "write_workload",
]

DEFAULT_WORKLOAD = "overload"

_LAZY = {
    "LoadOptions": "equinox.workload.build",
    "TRACE_FORMATS": "equinox.workload.formats",
    "detect_format": "equinox.workload.formats",
    "load_trace": "equinox.workload.formats",
    "write_workload": "equinox.workload.io",
    "PRESET_NAMES": "equinox.workload.presets",
    "generate_preset": "equinox.workload.presets",
    "known_workloads": "equinox.workload.presets",
    "catalogue": "equinox.workload.presets",
    "TraceStats": "equinox.workload.stats",
    "trace_stats": "equinox.workload.stats",
    "SUITES": "equinox.workload.suites",
    "generate_suite": "equinox.workload.suites",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'equinox.workload' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def load_workload(
    spec: str,
    *,
    seed: int = 0,
    duration_s: float | None = None,
    rate_scale: float = 1.0,
    num_tenants: int | None = None,
) -> Workload:
    """Resolve `spec` (a preset name, a VTC suite name, or a file path) into a Workload."""
    from equinox.errors import ConfigError
    from equinox.workload.presets import resolve

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if duration_s is not None and not (0 < duration_s < math.inf):
        raise ConfigError(f"duration must be a finite number of seconds > 0, got {duration_s!r}")
    if not (0 < rate_scale < math.inf):
        raise ConfigError(f"rate scale must be a finite number > 0, got {rate_scale!r}")
    return resolve(spec, seed=seed, duration_s=duration_s, rate_scale=rate_scale, num_tenants=num_tenants)
