"""The tenants file of `equinox bench`: one API key per tenant, and optional weights.

    [tenants]            # tenant name = API key (the gateway maps the key to this tenant)
    alice = "eqx-…"
    bob = "eqx-…"

    [weights]            # optional: weights for the fairness figures (default 1.0)
    bob = 2.0

    admin_key = "eqx-…"  # optional, before the tables: the gateway's admin key, to sample its /metrics

Workload tenants are matched to these by name; when the names differ, the workload's
tenants (in order of first appearance) take the file's tenants in file order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from equinox.errors import ConfigError
from equinox.tomlfile import read_toml


@dataclass(frozen=True)
class TenantKeys:
    """API key and weight per tenant, in file order."""

    keys: dict[str, str]
    weights: dict[str, float] = field(default_factory=dict)
    source: str = "(none)"
    admin_key: str | None = None  # for the gateway's /metrics (fairness counters)

    def mapping(self, workload_tenants: Sequence[str]) -> dict[str, str]:
        """workload tenant -> tenant of this file (by name, else by order)."""
        if not self.keys:
            return {t: t for t in workload_tenants}
        if all(t in self.keys for t in workload_tenants):
            return {t: t for t in workload_tenants}
        names = list(self.keys)
        if len(names) < len(workload_tenants):
            raise ConfigError(
                f"{self.source}: the workload has {len(workload_tenants)} tenants "
                f"({', '.join(workload_tenants)}) but the tenants file has keys for only {len(names)}; "
                "add keys or use --num-tenants"
            )
        return dict(zip(workload_tenants, names, strict=False))


def load_tenant_keys(path: str | Path | None) -> TenantKeys:
    """Read a tenants file (None: no keys, for engines without authentication)."""
    if path is None:
        return TenantKeys({})
    p = Path(path)
    data = read_toml(p, "tenants file")
    unknown = sorted(set(data) - {"tenants", "weights", "admin_key"})
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {', '.join(unknown)}; known: tenants, weights, admin_key")
    admin_key = data.get("admin_key")
    if admin_key is not None and (not isinstance(admin_key, str) or not admin_key):
        raise ConfigError(f"{p}: admin_key must be a non-empty string")
    tenants = data.get("tenants")
    if not isinstance(tenants, dict) or not tenants:
        raise ConfigError(f"{p}: needs a [tenants] table of `name = \"api-key\"` lines")
    for name, key in tenants.items():
        if not name.strip():
            raise ConfigError(f"{p}: [tenants] has an empty tenant name")
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{p}: [tenants] {name}: the API key must be a non-empty string")
    weights = data.get("weights", {})
    if not isinstance(weights, dict):
        raise ConfigError(f"{p}: [weights] must be a table of `name = number` lines")
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
            raise ConfigError(f"{p}: [weights] {name}: weight must be a positive number, got {w!r}")
    return TenantKeys(dict(tenants), {k: float(v) for k, v in weights.items()}, str(p), admin_key)
