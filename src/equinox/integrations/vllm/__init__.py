"""Equinox inside vLLM: a `--scheduler-cls` plug-in, tenant ids from `vllm_xargs`, per-tenant metrics.

Start vLLM with::

    python -m vllm.entrypoints.openai.api_server --model MODEL \\
        --scheduler-cls equinox.integrations.vllm.EquinoxScheduler \\
        --middleware equinox.integrations.vllm.middleware.EquinoxMiddleware

or simply `equinox vllm serve MODEL --policy vtc`. Importing this package does not
import vLLM: the scheduler classes are built (and the vLLM version checked) the first
time one of them is accessed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EquinoxAsyncScheduler", "EquinoxScheduler", "EquinoxSyncScheduler"]


def __getattr__(name: str) -> Any:
    if name == "EquinoxScheduler":
        from equinox.integrations.vllm import compat

        return compat.EquinoxScheduler
    if name in ("EquinoxSyncScheduler", "EquinoxAsyncScheduler"):
        from equinox.integrations.vllm import compat

        sync_cls, async_cls = compat.scheduler_classes()
        return sync_cls if name == "EquinoxSyncScheduler" else async_cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
