"""What MoPE's experts predict, and the small statistics they share.

Every expert is deterministic: the same observations in the same order give the same
predictions. No sampling, no wall clock.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Any, Final

from equinox.compiled import is_extension, picklable_when_compiled


@dataclass(frozen=True, slots=True)
class LengthPrediction:
    """Predicted output length: a point estimate and a conservative quantile, plus who said so."""

    mean: float
    quantile: float
    source: str  # "tenant", "bucket", "global", "prior" or "max_tokens"

    def __init__(self, mean: float, quantile: float, source: str) -> None:
        # written out (frozen: fields set with object.__setattr__, as the generated one does): mypyc compiles
        # it, where it leaves a generated frozen __init__ to the interpreter
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "quantile", quantile)
        object.__setattr__(self, "source", source)


# This module runs compiled (an extension module, not this .py file): `RecentStats` then searches its
# sorted window with the native loops below, which compare floats without a call through the
# interpreter's `bisect` (several times faster there; interpreted, `bisect` in C is the faster one).
IS_NATIVE: Final = is_extension(__file__)


def native_bisect_left(xs: list[float], x: float) -> int:
    """`bisect.bisect_left(xs, x)`, with the same comparisons (xs[mid] < x)."""
    lo, hi = 0, len(xs)
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def native_bisect_right(xs: list[float], x: float) -> int:
    """`bisect.bisect_right(xs, x)` (where `insort` inserts), with the same comparisons (x < xs[mid])."""
    lo, hi = 0, len(xs)
    while lo < hi:
        mid = (lo + hi) // 2
        if x < xs[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def is_whole(value: float) -> bool:
    """`value % 1.0 == 0.0` (a whole number; not inf or nan) without the division: glibc's fmod took a
    tenth of the output-length windows' time (perf, issue 13)."""
    if -4503599627370496.0 <= value <= 4503599627370496.0:  # |value| <= 2**52: int() is exact and small
        return value == float(int(value))
    return value - value == 0.0  # beyond 2**52 every finite double is whole; inf - inf and nan are nan


# A window not read for this many observations stops keeping its sorted copy up to date: it is sorted
# again when next read (at most once per this many observations: a sort of the window costs about as much).
# MoPE reads a tenant's window after nearly every observation; the prompt-length buckets' and the global
# window, the gate's fallbacks, are read only while a tenant has too little history of its own.
UNREAD_LIMIT: Final = 16


class RecentStats:
    """Mean and one quantile over the last `capacity` observations (recomputed lazily from a
    sorted copy, kept up to date as observations come and go while the window is being read)."""

    __slots__ = ("_capacity", "_dirty", "_int_sum", "_mean", "_next", "_non_integers", "_q", "_quantile", "_ring",
                 "_sorted", "_unread", "count")

    def __init__(self, capacity: int, quantile: float) -> None:
        if capacity < 1:
            raise ValueError(f"a window of recent observations needs a capacity of at least 1, not {capacity}")
        # The window: appended to until full, then each observation overwrites the oldest, at `_next`.
        self._ring: list[float] = []
        self._next = 0
        self._capacity = capacity
        self._sorted: list[float] = []  # the window sorted, while `_unread <= UNREAD_LIMIT`
        self._unread = 0  # observations since the window was last read
        self._quantile = quantile
        self._dirty = False
        self._mean = 0.0
        self._q = 0.0
        self.count = 0  # observations ever seen (evidence for the gate)
        # While every retained value is an integer (output lengths are), their exact sum as an int:
        # the mean is then float(sum) / n, which is what math.fsum gives, without a pass over the window.
        self._int_sum = 0
        self._non_integers = 0  # retained values that are not integers (the mean then takes math.fsum)

    def add(self, value: float) -> None:
        """Record one observation."""
        ring = self._ring
        xs = self._sorted
        unread = self._unread + 1
        self._unread = unread
        track = unread <= UNREAD_LIMIT  # else not read lately: sorted again when it is
        if len(ring) == self._capacity:
            i = self._next
            oldest = ring[i]  # the oldest leaves the window
            ring[i] = value
            i += 1
            self._next = i if i < self._capacity else 0
            if track:
                del xs[native_bisect_left(xs, oldest) if IS_NATIVE else bisect_left(xs, oldest)]
            self._forget(oldest)
        else:
            ring.append(value)
        if track:
            if IS_NATIVE:
                xs.insert(native_bisect_right(xs, value), value)
            else:
                insort(xs, value)
        self._count_in(value)
        self.count += 1
        self._dirty = True

    def _count_in(self, value: float) -> None:
        if is_whole(value):  # also an int restored from state
            self._int_sum += int(value)
        else:
            self._non_integers += 1

    def _forget(self, value: float) -> None:
        if is_whole(value):
            self._int_sum -= int(value)
        else:
            self._non_integers -= 1

    def values(self) -> list[float]:
        """The retained observations, oldest first."""
        i = self._next
        return self._ring[i:] + self._ring[:i]

    def export_state(self) -> dict[str, Any]:
        """The retained observations (oldest first) and the evidence count, JSON-safe."""
        return {"values": self.values(), "count": self.count}

    def restore_state(self, values: list[float], count: int) -> None:
        """Resume from `export_state()` (keeps the newest `capacity` values)."""
        self._ring = list(values[-self._capacity:])
        self._next = 0
        self._sorted = sorted(self._ring)
        self._unread = 0
        self._int_sum = 0
        self._non_integers = 0
        for v in self._ring:
            self._count_in(v)
        self.count = max(count, len(self._ring))
        self._dirty = bool(self._ring)

    def _refresh(self) -> None:
        if self._unread > UNREAD_LIMIT:
            self._sorted = sorted(self._ring)
        self._unread = 0
        xs = self._sorted
        self._mean = (math.fsum(xs) if self._non_integers else float(self._int_sum)) / len(xs)
        k = min(len(xs) - 1, max(0, math.ceil(self._quantile * len(xs)) - 1))
        self._q = xs[k]
        self._dirty = False

    @property
    def mean(self) -> float:
        """Mean of the retained observations."""
        if self._dirty:
            self._refresh()
        return self._mean

    @property
    def quantile(self) -> float:
        """The configured quantile of the retained observations."""
        if self._dirty:
            self._refresh()
        return self._q


picklable_when_compiled(LengthPrediction)  # frozen: see equinox.compiled
