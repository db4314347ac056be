"""Per-tenant requests-per-minute limits in front of FCFS (what many API gateways do)."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from equinox.errors import ConfigError
from equinox.request import RequestView
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policies.fcfs import FcfsPolicy
from equinox.scheduling.policy import POLICIES
from equinox.scheduling.state import StateReader

WINDOW_S = 60.0


class RpmPolicy(FcfsPolicy):
    """FCFS, but a tenant over its limit in the last 60 s has the request rejected.

    Rejections are returned to the caller, which records them; nothing is dropped silently.
    The limit is `rpm_limits[tenant]`, else `rpm_limit`, scaled by the tenant's weight.
    """

    name = "rpm"

    def __init__(self, config: PolicyConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        if cfg.rpm_limit is None and not cfg.rpm_limits:
            raise ConfigError("policy 'rpm' needs a limit: set --rpm-limit (requests per minute per tenant)")
        for tenant, limit in {**cfg.rpm_limits, "*": cfg.rpm_limit or 1.0}.items():
            if not limit > 0:  # also rejects NaN
                raise ConfigError(f"rpm limit for tenant {tenant!r} must be > 0, got {limit}")
        self._accepted: dict[str, deque[float]] = {}

    def limit_of(self, tenant: str) -> float:
        """Requests per minute `tenant` may send."""
        base = self.config.rpm_limits.get(tenant, self.config.rpm_limit)
        if base is None:  # only some tenants are limited
            return float("inf")
        return base * self.config.weight(tenant)

    def add_request(self, request: RequestView, now: float) -> str | None:
        """Accept while the tenant's last-60-s count is under its limit, else reject."""
        times = self._accepted.setdefault(request.tenant, deque())
        while times and times[0] <= now - WINDOW_S:
            times.popleft()
        limit = self.limit_of(request.tenant)
        if len(times) + 1 > limit:
            return f"rate limit: tenant {request.tenant!r} is over {limit:g} requests/minute"
        times.append(now)
        return super().add_request(request, now)

    def export_state(self) -> dict[str, Any]:
        """Each tenant's accepted-request times still inside the window (host clock)."""
        return {"windows": {t: list(times) for t, times in self._accepted.items() if times}}

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Resume the windows: a tenant at its limit before a restart stays at it."""
        windows = StateReader(self.name, state).sub("windows")
        self._accepted = {t: deque(windows.numbers(t)) for t in windows.state}


POLICIES.register("rpm", RpmPolicy, "FCFS behind a per-tenant requests-per-minute limit (rejects over it)")
