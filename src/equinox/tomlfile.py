"""Reading TOML files with errors that name the file and what was wrong."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from equinox.errors import ConfigError


def read_toml(path: str | Path, what: str = "config file", hint: str = "") -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or malformed file is a ConfigError naming it."""
    p = Path(path)
    suffix = f" ({hint})" if hint else ""
    try:
        return tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} not found{suffix}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read {what}: {exc}") from None
