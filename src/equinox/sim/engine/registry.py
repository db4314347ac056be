"""The engine registry: every engine model is one module in `sim/engine/` plus one entry here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from equinox.registry import Registry

if TYPE_CHECKING:
    from equinox.scheduling.interface import Policy
    from equinox.sim.engine.base import Engine
    from equinox.sim.engine.config import EngineConfig

ENGINES: Registry[type[Engine]] = Registry("engine")


def load_builtin_engines() -> None:
    """Import the built-in engine modules (importing registers them)."""
    from equinox.sim.engine import slora, vllm  # noqa: F401


def engine_class(name: str) -> type[Engine]:
    """The engine model registered as `name` (a clear error for unknown names)."""
    load_builtin_engines()
    return ENGINES.get(name)


def engine_names() -> list[str]:
    """Names of the registered engine models."""
    load_builtin_engines()
    return ENGINES.names()


def make_engine(config: EngineConfig, policy: Policy) -> Engine:
    """Build the engine model `config.mode` names, driven by `policy`."""
    return engine_class(config.mode)(config, policy)
