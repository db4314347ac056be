"""pytest plugin for vLLM's own test run (`-p equinox_suite_plugin`): Equinox where vLLM builds its scheduler.

Loaded into `pytest tests/v1/core/test_scheduler.py` inside the cached vLLM sources (see
`test_vllm_scheduler_suite.py`). With `EQUINOX_SUITE_SCHEDULER=equinox` it wraps
`tests.v1.core.utils.create_scheduler` before any test module imports it, so every scheduler
that helper builds is the Equinox plug-in over the same vLLM base: `Scheduler` becomes
`EquinoxSyncScheduler`, `AsyncScheduler` becomes `EquinoxAsyncScheduler` (the helper chooses the
base from its `async_scheduling` argument, not from the engine config). A caller that passes
its own `scheduler_cls` keeps it. Nothing in vLLM's files is changed. The number of
schedulers built is written to `EQUINOX_SUITE_REPORT` (JSON) so the caller can check the swap.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from typing import Any

import pytest

_built = {"equinox_schedulers": 0}


def pytest_configure(config: pytest.Config) -> None:
    """Swap the schedulers `create_scheduler` builds (before test modules bind the name)."""
    if os.environ.get("EQUINOX_SUITE_SCHEDULER", "vllm") != "equinox":
        return
    utils: Any = importlib.import_module("tests.v1.core.utils")
    from equinox.integrations.vllm import EquinoxAsyncScheduler, EquinoxSyncScheduler

    original = utils.create_scheduler

    @functools.wraps(original)
    def create_scheduler(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("scheduler_cls") is None:
            kwargs["scheduler_cls"] = EquinoxAsyncScheduler if kwargs.get("async_scheduling") else EquinoxSyncScheduler
        scheduler = original(*args, **kwargs)
        if hasattr(scheduler, "eqx_policy"):
            _built["equinox_schedulers"] += 1
        return scheduler

    utils.create_scheduler = create_scheduler


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Report how many Equinox schedulers the run built."""
    path = os.environ.get("EQUINOX_SUITE_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(_built, f)
