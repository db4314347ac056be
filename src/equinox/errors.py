"""The one error family of Equinox: every message says what was wrong and how to fix it."""

from __future__ import annotations


class EquinoxError(Exception):
    """Base class of every error Equinox raises on purpose (bad input, bad config)."""


class ConfigError(EquinoxError):
    """An impossible or contradictory configuration."""


class UnknownNameError(ConfigError):
    """A name (policy, GPU, model, workload...) that no registry knows."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = known
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(known)) or '(none)'}")


class WorkloadError(EquinoxError):
    """A malformed workload file or request (names file, line and field where known)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            where += f"field {field!r}: "
        super().__init__(where + message)


class BackendError(EquinoxError):
    """An engine backend that failed or answered something unusable."""
