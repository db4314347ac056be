"""Equinox: holistic fair scheduling for multi-tenant LLM serving."""

from __future__ import annotations

from equinox.errors import ConfigError, EquinoxError, UnknownNameError, WorkloadError
from equinox.request import RequestSpec

__version__ = "0.1.0"

__all__ = ["ConfigError", "EquinoxError", "RequestSpec", "UnknownNameError", "WorkloadError", "__version__"]
