"""Tenant assignment for traces that have no tenants: Zipf, round-robin, a column, ServeGen shapes.

Every assignment except `column` is synthetic: the resulting Workload carries
`is_synthetic_tenants=True` and the label from `TenantAssignment.label`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from equinox.errors import ConfigError

ASSIGNMENT_KINDS = ("zipf", "round-robin", "column", "servegen", "single")


@dataclass(frozen=True)
class TenantAssignment:
    """How to give each request of an untenanted trace a tenant."""

    kind: str
    num_tenants: int = 1
    zipf_s: float = 1.0
    column: str | None = None

    @property
    def is_synthetic(self) -> bool:
        """True unless tenants come from the trace itself."""
        return self.kind not in ("column", "single")

    def label(self, seed: int) -> str:
        """A one-line description stored with the workload and printed by every report."""
        if self.kind == "zipf":
            return f"zipf(n={self.num_tenants}, s={self.zipf_s:g}, seed={seed})"
        if self.kind == "round-robin":
            return f"round-robin(n={self.num_tenants})"
        if self.kind == "servegen":
            return f"servegen-shapes(n={self.num_tenants}, seed={seed})"
        if self.kind == "column":
            return f"column {self.column!r}"
        return "single tenant"

    def assign(self, arrival_times: np.ndarray, seed: int) -> list[str]:
        """Tenant names (`tenant-1`...) for requests with these sorted arrival times."""
        n = len(arrival_times)
        k = self.num_tenants
        names = [f"tenant-{i + 1}" for i in range(k)]
        if self.kind == "round-robin":
            return [names[i % k] for i in range(n)]
        rng = np.random.default_rng([seed, 0x7E7A])
        if self.kind == "zipf":
            p = 1.0 / np.arange(1, k + 1, dtype=float) ** self.zipf_s
            idx = rng.choice(k, size=n, p=p / p.sum())
            return [names[i] for i in idx]
        if self.kind == "servegen":
            return _assign_servegen(arrival_times, k, rng, names)
        raise ConfigError(f"tenant assignment {self.kind!r} does not generate tenants")


def _assign_servegen(
    arrival_times: np.ndarray, k: int, rng: np.random.Generator, names: list[str]
) -> list[str]:
    """Probability of tenant i at time t follows client i's hour-of-day rate shape.

    The trace span is mapped onto one day (as in the servegen-multitenant preset), so the
    mix of tenants shifts over the run the way the production clients' mix shifts over a day.
    """
    from equinox.workload.presets import servegen_clients

    clients = servegen_clients(k)
    shapes = np.array([c["hourly_rate"] for c in clients], dtype=float).T  # [24, k]
    shapes = shapes + 1e-12
    probs = shapes / shapes.sum(axis=1, keepdims=True)
    t = np.asarray(arrival_times, dtype=float)
    span = float(t[-1] - t[0]) if len(t) else 0.0
    if span <= 0:
        hours = np.zeros(len(t), dtype=int)
    else:
        hours = np.minimum((24.0 * (t - t[0]) / span).astype(int), 23)
    cum = np.cumsum(probs, axis=1)[hours]  # [n, k]
    u = rng.random(len(t))[:, None]
    idx = np.minimum((u > cum).sum(axis=1), k - 1)
    return [names[i] for i in idx]


def parse_tenant_spec(spec: str) -> TenantAssignment:
    """Parse `zipf:N[:S]`, `round-robin:N`, `column:NAME`, `servegen:N` or `single`."""
    text = spec.strip()
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower().replace("_", "-")
    parts = [p.strip() for p in rest.split(":")] if rest else []
    hint = "use zipf:N[:S], round-robin:N, column:NAME, servegen:N or single"
    if kind == "single":
        return TenantAssignment("single")
    if kind == "column":
        if not parts or not parts[0]:
            raise ConfigError(f"tenant assignment {spec!r} needs a column name; {hint}")
        return TenantAssignment("column", column=rest.strip())
    if kind not in ("zipf", "round-robin", "servegen"):
        raise ConfigError(f"unknown tenant assignment {spec!r}; {hint}")
    try:
        n = int(parts[0]) if parts else 0
        s = float(parts[1]) if len(parts) > 1 else 1.0
    except ValueError:
        raise ConfigError(f"bad tenant assignment {spec!r}; {hint}") from None
    if n < 1:
        raise ConfigError(f"tenant assignment {spec!r} needs a tenant count >= 1; {hint}")
    if not (s >= 0.0) or s > 10.0:
        raise ConfigError(f"zipf exponent must be in [0, 10], got {s}")
    return TenantAssignment(kind, num_tenants=n, zipf_s=s)
