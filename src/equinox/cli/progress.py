"""A dependency-free progress bar on stderr (silent when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Call with (done, total); redraws at most ten times a second."""

    def __init__(self, label: str, *, force: bool = False) -> None:
        self.label = label
        self._enabled = force or sys.stderr.isatty()
        self._last = 0.0
        self._start = time.monotonic()
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        frac = done / total if total else 0.0
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {done:,}/{total:,} {now - self._start:5.1f}s")
        sys.stderr.flush()
        self._drawn = True

    def done(self) -> None:
        """Finish the line."""
        if self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
