"""Backends: an adaptive concurrency window per engine, and its health.

Which backend serves a request is decided in one place, `admission.Admission` (issue #12);
this module holds the per-engine state it reads and updates.

The window is AIMD on what users feel (issue #7): every first token whose upstream
TTFT is under `target_ttft_s`, and every finished stream whose mean inter-token
latency is under `target_itl_s`, grows the window by 1/window (about +1 per window of
good samples); a sample over target shrinks it by `decrease_factor`, at most once per
`decrease_cooldown_s` so one burst of slow samples counts once. A failure halves it.
Requests beyond the window wait in the gateway's fair queue instead of the engine's
FIFO, which is where the policy can order them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from equinox.integrations.gateway.config import BackendConfig, ConcurrencyConfig

logger = logging.getLogger(__name__)


@dataclass
class AdaptiveWindow:
    """How many requests a backend may have in flight, adapted from latency samples."""

    config: ConcurrencyConfig
    max_window: float
    value: float = 0.0
    _last_decrease_time: float = -math.inf

    def __post_init__(self) -> None:
        self.value = min(max(self.config.initial_window, self.config.min_window), self.max_window)

    @property
    def limit(self) -> int:
        """Whole requests allowed in flight (at least 1)."""
        return max(1, int(self.value))

    def on_sample(self, now: float, *, ttft_s: float | None = None, itl_s: float | None = None) -> bool:
        """Fold one latency sample in; True when the integer limit grew."""
        cfg = self.config
        is_slow = (ttft_s is not None and ttft_s > cfg.target_ttft_s) or (
            itl_s is not None and itl_s > cfg.target_itl_s
        )
        before = self.limit
        if is_slow:
            if now - self._last_decrease_time >= cfg.decrease_cooldown_s:
                self._last_decrease_time = now
                self.value = max(cfg.min_window, self.value * cfg.decrease_factor)
        else:
            self.value = min(self.max_window, self.value + 1.0 / max(self.value, 1.0))
        return self.limit > before

    def on_failure(self, now: float) -> None:
        """A failed request halves the window."""
        self._last_decrease_time = now
        self.value = max(self.config.min_window, self.value * 0.5)


@dataclass(eq=False)
class Backend:
    """One OpenAI-compatible engine as the gateway sees it."""

    config: BackendConfig
    window: AdaptiveWindow
    models: set[str] = field(default_factory=set)
    num_in_flight: int = 0
    outstanding_tokens: float = 0.0  # predicted tokens still to process there (kept by Admission)
    is_probe_ok: bool = True
    unhealthy_until: float = 0.0
    num_failures: int = 0
    num_requests: int = 0

    def __post_init__(self) -> None:
        self.models = set(self.config.models)

    @property
    def name(self) -> str:
        """The backend's name from the config."""
        return self.config.name

    @property
    def url(self) -> str:
        """Base URL (no trailing slash)."""
        return self.config.url

    def is_healthy(self, now: float) -> bool:
        """Answering health probes and not cooling down after a failure."""
        return self.is_probe_ok and now >= self.unhealthy_until

    @property
    def has_capacity(self) -> bool:
        """Fewer requests in flight than the window allows."""
        return self.num_in_flight < self.window.limit

    def mark_failed(self, now: float, cooldown_s: float, reason: str) -> None:
        """A request failed here: shrink the window and keep traffic away for `cooldown_s`."""
        self.num_failures += 1
        self.unhealthy_until = max(self.unhealthy_until, now + cooldown_s)
        self.window.on_failure(now)
        logger.warning("backend %s failed (%s); no traffic for %.1f s", self.name, reason, cooldown_s)


def make_backends(configs: Sequence[BackendConfig], concurrency: ConcurrencyConfig) -> list[Backend]:
    """One Backend per configured engine, each with its own adaptive window."""
    return [Backend(cfg, AdaptiveWindow(concurrency, float(cfg.max_concurrency))) for cfg in configs]
