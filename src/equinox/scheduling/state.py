"""One versioned snapshot format for a policy's accounting, shared by every host.

A snapshot wraps `Policy.export_state()` in an envelope that says what it is, so a
restarted gateway, a Ray counter actor or a replica can check it before resuming a
tenant's debt (issues "Hardening" item 3 and "Scale-out on Ray" item 3):

    {"format": "equinox.policy-state", "version": 1, "policy": "vtc",
     "params": {...}, "taken_at": 1234.5, "state": {...}}

`params` are the policy's typed parameters when the snapshot was taken (informative: a
snapshot restores into a policy with other parameters, an operator may retune between
runs); `taken_at` is the host's clock. Everything is JSON (no NaN, no infinities), so
a host that prefers SQLite stores the same document in a text column.
`StateReader` checks the fields of a `state` mapping for the policies that read one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from equinox.errors import ConfigError
from equinox.scheduling.interface import Policy

FORMAT = "equinox.policy-state"
VERSION = 1

log = logging.getLogger(__name__)


def snapshot(policy: Policy, now: float) -> dict[str, Any]:
    """The policy's accounting at `now`, in the versioned envelope."""
    from equinox.scheduling.policy import policy_params

    return {
        "format": FORMAT, "version": VERSION, "policy": policy.name,
        "params": policy_params(policy), "taken_at": float(now), "state": policy.export_state(),
    }


def check_snapshot(snap: object, *, where: str = "policy snapshot") -> dict[str, Any]:
    """`snap` as a dict once its envelope is well-formed (format, version, field types), else ConfigError."""
    if not isinstance(snap, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(snap).__name__}")
    if snap.get("format") != FORMAT:
        raise ConfigError(f"{where}: field 'format' must be {FORMAT!r}, got {snap.get('format')!r}")
    version = snap.get("version")
    if version != VERSION or isinstance(version, bool):
        raise ConfigError(
            f"{where}: snapshot version {version!r} is not supported (this Equinox reads version {VERSION})"
        )
    if not isinstance(snap.get("policy"), str):
        raise ConfigError(f"{where}: field 'policy' must be a policy name, got {snap.get('policy')!r}")
    if not isinstance(snap.get("params", {}), dict):
        raise ConfigError(f"{where}: field 'params' must be an object, got {snap.get('params')!r}")
    taken_at = snap.get("taken_at")
    if not _is_number(taken_at):
        raise ConfigError(f"{where}: field 'taken_at' must be a finite number, got {taken_at!r}")
    if not isinstance(snap.get("state"), dict):
        raise ConfigError(f"{where}: field 'state' must be an object, got {snap.get('state')!r}")
    return snap


def restore(policy: Policy, snap: Mapping[str, Any], *, where: str = "policy snapshot") -> None:
    """Resume `policy` (fresh: nothing waiting) from a snapshot of a policy of the same name."""
    checked = check_snapshot(dict(snap) if isinstance(snap, Mapping) else snap, where=where)
    if checked["policy"].lower() != policy.name.lower():
        raise ConfigError(
            f"{where}: it holds the state of policy {checked['policy']!r}, not {policy.name!r}; "
            "restore it into the same policy or start without it"
        )
    if policy.num_waiting:
        raise ConfigError(f"{where}: restore before any request arrives ({policy.num_waiting} waiting)")
    from equinox.scheduling.policy import policy_params

    current = policy_params(policy)
    if checked.get("params", {}) != current:
        changed = sorted(k for k in {*checked.get("params", {}), *current}
                         if checked.get("params", {}).get(k) != current.get(k))
        log.warning("%s: taken with other %s parameters (%s); restoring the counters anyway",
                    where, policy.name, ", ".join(changed))
    policy.restore_state(checked["state"])


def write_snapshot(path: str | os.PathLike[str], snap: Mapping[str, Any]) -> None:
    """Write `snap` as JSON atomically: a temporary file in the same folder, then `os.replace`."""
    target = Path(path)
    text = json.dumps(check_snapshot(dict(snap)), allow_nan=False, separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_snapshot(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a snapshot written by `write_snapshot` (ConfigError naming the file when bad)."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the policy snapshot ({exc.strerror or exc})") from None
    try:
        snap = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{where}: not a JSON policy snapshot ({exc})") from None
    return check_snapshot(snap, where=where)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in a snapshot")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class StateReader:
    """Typed access to the fields of a policy's `state` mapping; errors name the policy and field."""

    def __init__(self, policy: str, state: Mapping[str, Any], *, path: str = "") -> None:
        self.policy = policy
        self.path = path  # where inside the state this reader is (for messages)
        if not isinstance(state, Mapping):
            raise ConfigError(f"{self._where()} must be an object, got {type(state).__name__}")
        self.state = state

    def _where(self) -> str:
        return f"state of policy {self.policy!r}" + (f" at {self.path}" if self.path else "")

    def error(self, key: str, expected: str, value: object) -> ConfigError:
        """The ConfigError for field `key` holding `value` where `expected` was needed."""
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return ConfigError(f"{self._where()}: field {key!r} must be {expected}, got {shown}")

    def has(self, key: str) -> bool:
        """True when the field is present."""
        return key in self.state

    def number(self, key: str, default: float | None = None) -> float:
        """A finite number."""
        value = self.state.get(key, default)
        if not _is_number(value):
            raise self.error(key, "a finite number", value)
        return float(value)  # type: ignore[arg-type]

    def optional_number(self, key: str) -> float | None:
        """A finite number or null."""
        value = self.state.get(key)
        return None if value is None else self.number(key)

    def integer(self, key: str, default: int | None = None) -> int:
        """An integer >= 0."""
        value = self.state.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.error(key, "an integer >= 0", value)
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        """true or false."""
        value = self.state.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "true or false", value)
        return value

    def optional_string(self, key: str) -> str | None:
        """A string or null."""
        value = self.state.get(key)
        if value is not None and not isinstance(value, str):
            raise self.error(key, "a string or null", value)
        return value

    def strings(self, key: str) -> list[str]:
        """A list of strings (missing: empty)."""
        value = self.state.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "a list of strings", value)
        return list(value)

    def numbers(self, key: str) -> list[float]:
        """A list of finite numbers (missing: empty)."""
        value = self.state.get(key, [])
        if not isinstance(value, list) or not all(_is_number(v) for v in value):
            raise self.error(key, "a list of finite numbers", value)
        return [float(v) for v in value]

    def number_rows(self, key: str) -> list[list[float]]:
        """A list of lists of finite numbers (missing: empty)."""
        value = self.state.get(key, [])
        if not isinstance(value, list) or not all(
            isinstance(row, list) and all(_is_number(v) for v in row) for row in value
        ):
            raise self.error(key, "a list of lists of finite numbers", value)
        return [[float(v) for v in row] for row in value]

    def number_map(self, key: str) -> dict[str, float]:
        """A mapping name -> finite number (missing: empty), in its stored order."""
        value = self.state.get(key, {})
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and _is_number(v) for k, v in value.items()
        ):
            raise self.error(key, "an object of name -> finite number", value)
        return {k: float(v) for k, v in value.items()}

    def mapping(self, key: str) -> Mapping[str, Any]:
        """A nested object (missing: empty)."""
        value = self.state.get(key, {})
        if not isinstance(value, Mapping):
            raise self.error(key, "an object", value)
        return value

    def sub(self, key: str) -> StateReader:
        """A reader over a nested object, its errors naming the path."""
        return StateReader(self.policy, self.mapping(key), path=self._path(key))

    def mappings(self, key: str) -> dict[str, StateReader]:
        """An object of name -> object, as readers."""
        readers = {}
        for k, v in self.mapping(key).items():
            if not isinstance(v, Mapping):
                raise self.error(key, "an object of name -> object", {k: v})
            readers[k] = StateReader(self.policy, v, path=f"{self._path(key)}.{k}")
        return readers

    def _path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key
