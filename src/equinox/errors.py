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

    def __reduce__(self) -> tuple[type, tuple[str, str, list[str]]]:
        # Picklable with its real arguments, so it crosses process pools (`equinox compare -j`).
        return (type(self), (self.kind, self.name, self.known))


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
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only fields survive pickling (process pools re-raise it in the parent).
        return (_rebuild_workload_error, (type(self), self.message, self.path, self.line, self.field))


def _rebuild_workload_error(
    cls: type[WorkloadError], message: str, path: str | None, line: int | None, field: str | None
) -> WorkloadError:
    return cls(message, path=path, line=line, field=field)


class BackendError(EquinoxError):
    """An engine backend that failed or answered something unusable."""
