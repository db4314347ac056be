"""The one place that imports Ray: a clear error when the extra is not installed."""

from __future__ import annotations

from types import ModuleType

from equinox.errors import ConfigError


def import_ray() -> ModuleType:
    """The `ray` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed: pip install 'equinox-sched[ray]'") from None
    return ray


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None) -> ModuleType:
    """Ray, initialised: connect to `address` ("auto": the running cluster), or start a local instance
    (`address` None or "local"); a no-op when this process is already connected."""
    ray = import_ray()
    if not ray.is_initialized():
        if address in (None, "", "local"):
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    return ray
