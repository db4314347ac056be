"""Name -> factory registries: a new policy, GPU, model, cost model or trace format is one entry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from equinox.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A case-insensitive mapping from names to entries, with clear errors for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, entry: T, help: str = "") -> T:
        """Add `entry` under `name`; registering a name twice is a programming error."""
        key = name.lower()
        if key in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is registered twice")
        self._entries[key] = entry
        self._help[key] = help
        return entry

    def decorator(self, name: str, help: str = "") -> Callable[[T], T]:
        """Register the decorated object under `name`."""

        def wrap(entry: T) -> T:
            return self.register(name, entry, help)

        return wrap

    def get(self, name: str) -> T:
        """The entry for `name`, or an UnknownNameError listing the known names."""
        try:
            return self._entries[name.lower()]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self._entries)) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def help(self, name: str) -> str:
        """The one-line description given at registration."""
        return self._help.get(name.lower(), "")
