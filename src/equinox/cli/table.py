"""Plain-text tables for the terminal (no dependencies)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def fmt(value: object, digits: int = 3) -> str:
    """Human formatting: NaN as n/a, floats to a few significant digits."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits}g}"
        return f"{value:,.{digits}f}" if abs(value) < 10 else f"{value:,.{max(0, digits - 2)}f}"
    return str(value)


def render(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """Align columns: text left, numbers right."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) for i in range(len(headers))]

    def line(items: Sequence[str]) -> str:
        out = []
        for i, c in enumerate(items):
            out.append(c.rjust(widths[i]) if numeric[i] else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    parts = [title] if title else []
    parts.append(line(headers))
    parts.append("  ".join("-" * w for w in widths))
    parts.extend(line(r) for r in cells)
    return "\n".join(parts)
