"""A monotone piecewise-linear function of one variable, cheap enough to call per iteration."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import pairwise

from equinox.errors import ConfigError


class PiecewiseLinear:
    """Linear interpolation between knots; linear extrapolation beyond the ends, through 0 at x=0."""

    __slots__ = ("_slopes", "_xs", "_ys")

    def __init__(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        if len(xs) != len(ys) or len(xs) < 2:
            raise ConfigError(f"piecewise-linear table needs >= 2 matching knots, got {len(xs)}/{len(ys)}")
        if any(b <= a for a, b in pairwise(xs)) or xs[0] <= 0:
            raise ConfigError("piecewise-linear knots must be positive and strictly increasing")
        if any(b < a for a, b in pairwise(ys)) or ys[0] < 0:
            raise ConfigError("piecewise-linear values must be non-negative and non-decreasing")
        self._xs = [float(x) for x in xs]
        self._ys = [float(y) for y in ys]
        self._slopes = [(self._ys[i + 1] - self._ys[i]) / (self._xs[i + 1] - self._xs[i]) for i in range(len(xs) - 1)]

    @property
    def knots(self) -> list[tuple[float, float]]:
        """The (x, y) knots."""
        return list(zip(self._xs, self._ys, strict=True))

    def __call__(self, x: float) -> float:
        """Value at `x` (0 at x <= 0; between 0 and the first knot, the first knot's value)."""
        if x <= 0:
            return 0.0
        xs = self._xs
        i = bisect_right(xs, x) - 1
        if i < 0:
            return self._ys[0]
        if i >= len(self._slopes):
            i = len(self._slopes) - 1
        return self._ys[i] + self._slopes[i] * (x - xs[i])
