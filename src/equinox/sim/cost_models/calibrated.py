"""A linear cost model calibrated on one machine's measured iteration times, stored as JSON.

    t = overhead_s + sum(coefficient[f] * batch.f)  over BatchShape fields f

(prefill tokens, decode sequences, decode context tokens, prefill attention pairs,
prefill sequences), fitted by non-negative least squares on (batch, seconds) samples,
e.g. the step log of a real vLLM engine (`equinox.integrations.vllm.calibration`).
The coefficients describe the machine and engine they were measured on and nothing else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from equinox.errors import ConfigError
from equinox.types import BatchShape

FORMAT = "equinox-calibrated-cost-model/1"
FEATURES = (
    "num_prefill_tokens", "num_decode_seqs", "decode_context_tokens", "prefill_attention_pairs", "num_prefill_seqs",
)
MACHINE_NOTE = "machine-specific: valid only for the machine, engine and model it was measured on"


@dataclass(frozen=True)
class Calibration:
    """Fitted coefficients (seconds per unit of each BatchShape field) plus free-form metadata."""

    overhead_s: float
    coefficients: Mapping[str, float]
    name: str = "calibrated"
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.coefficients) - set(FEATURES))
        if unknown:
            raise ConfigError(f"calibration {self.name!r}: unknown coefficient(s) {', '.join(unknown)}; "
                              f"known: {', '.join(FEATURES)}")
        for key, value in {"overhead_s": self.overhead_s, **self.coefficients}.items():
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ConfigError(f"calibration {self.name!r}: {key} must be a finite number >= 0, got {value!r}")

    def predict(self, batch: BatchShape) -> float:
        """Seconds for one iteration of `batch` (0 for an empty batch)."""
        if batch.num_tokens <= 0:
            return 0.0
        return self.overhead_s + sum(c * getattr(batch, f) for f, c in self.coefficients.items())

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {"format": FORMAT, "name": self.name, "note": MACHINE_NOTE, "overhead_s": self.overhead_s,
                "coefficients": dict(self.coefficients), "metadata": dict(self.metadata)}


class CalibratedCostModel:
    """The `CostModel` of a `Calibration`."""

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        self.name = calibration.name

    def iteration_time(self, batch: BatchShape) -> float:
        """Seconds for one iteration of `batch`."""
        return self.calibration.predict(batch)


def calibration_from_dict(data: Mapping[str, Any], source: str = "(dict)") -> Calibration:
    """Parse a calibration document; ConfigError naming the source and field when malformed."""
    if data.get("format") != FORMAT:
        raise ConfigError(f"{source}: not a calibration file (format must be {FORMAT!r}, got {data.get('format')!r})")
    coefficients = data.get("coefficients")
    if not isinstance(coefficients, dict):
        raise ConfigError(f"{source}: 'coefficients' must be an object of {', '.join(FEATURES)}")
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ConfigError(f"{source}: 'metadata' must be an object")
    return Calibration(overhead_s=data.get("overhead_s", -1.0), coefficients=coefficients,
                       name=str(data.get("name", "calibrated")), metadata=metadata)


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration JSON file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: calibration file not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a calibration file holds one JSON object")
    return calibration_from_dict(data, str(p))


def save_calibration(calibration: Calibration, path: str | Path) -> Path:
    """Write a calibration JSON file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(calibration.to_dict(), indent=2, sort_keys=True) + "\n")
    return p


def build_calibrated(path: str | Path) -> CalibratedCostModel:
    """The cost model stored in a calibration file."""
    return CalibratedCostModel(load_calibration(path))


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares with x >= 0 (active set: drop the most negative column until none is negative)."""
    active = list(range(a.shape[1]))
    x = np.zeros(a.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
        if (sol >= 0).all():
            x[:] = 0.0
            x[active] = sol
            return x
        del active[int(np.argmin(sol))]
    return x


def fit_calibration(
    batches: Sequence[BatchShape], durations_s: Sequence[float], *, features: Sequence[str] = FEATURES,
    name: str = "calibrated", metadata: Mapping[str, Any] | None = None, relative: bool = False,
) -> Calibration:
    """Fit overhead + non-negative per-feature coefficients to measured iteration times.

    `relative=True` weights each sample by 1/t, minimising relative error, so the many short
    decode steps are predicted as well as the few long prefills. The fit's mean absolute
    relative error and sample count go into the metadata.
    """
    if len(batches) != len(durations_s):
        raise ConfigError(f"{len(batches)} batches but {len(durations_s)} durations")
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise ConfigError(f"unknown feature(s) {', '.join(unknown)}; known: {', '.join(FEATURES)}")
    pairs = [(b, float(t)) for b, t in zip(batches, durations_s, strict=True) if b.num_tokens > 0 and t > 0]
    if len(pairs) < len(features) + 1:
        raise ConfigError(f"need at least {len(features) + 1} non-empty samples to fit, got {len(pairs)}")
    y = np.array([t for _, t in pairs])
    x = np.array([[1.0, *(float(getattr(b, f)) for f in features)] for b, _ in pairs])
    w = 1.0 / y if relative else np.ones_like(y)
    # Scale columns so the active-set solve is well conditioned (pairs reach 1e5 while seqs are ~1).
    scale = np.maximum(np.abs(x).max(axis=0), 1e-12)
    sol = _nnls((x / scale) * w[:, None], y * w) / scale
    calib = Calibration(overhead_s=float(sol[0]), coefficients=dict(zip(features, map(float, sol[1:]), strict=True)),
                        name=name)
    pred = np.array([calib.predict(b) for b, _ in pairs])
    stats = {"num_samples": len(pairs), "mean_abs_rel_error": float(np.mean(np.abs(pred - y) / y)),
             "mean_duration_s": float(y.mean())}
    return Calibration(calib.overhead_s, calib.coefficients, name, {**(metadata or {}), "fit": stats})
