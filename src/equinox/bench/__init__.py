"""`equinox bench`: an open-loop multi-tenant load generator for OpenAI-compatible endpoints.

Writes the simulator's run-directory format, so live runs are read by the same
report and comparison tools. Needs httpx (the `gateway` extra), imported lazily.
"""

from __future__ import annotations

from equinox.bench.keys import TenantKeys, load_tenant_keys

__all__ = ["TenantKeys", "load_tenant_keys"]
