"""Equinox's tunable parameters, parsed and checked from a plain mapping (CLI, TOML, vLLM config)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from equinox.errors import ConfigError


@dataclass(frozen=True)
class EquinoxParams:
    """Every knob of the Equinox policy; each component can be switched off for ablation."""

    # Defaults chosen by measurement (docs/results.md): on VTC's token-based fairness metrics
    # any RFC weight or latency discount trades fairness for TTFT (service difference x4-x10
    # on poisson_short_long for 3-10 % lower TTFT), so both are opt-in knobs.
    alpha: float = 1.0  # weight of the User Fairness Counter in the Holistic Fairness score
    beta: float = 0.0  # weight of the Resource Fairness Counter
    f_min: float = 1.0  # latency-discount floor; 1.0 switches the discount off
    latency_scale_s: float = 2.0  # TTFT at which a token counts (1 + f_min) / 2
    proactive: bool = True  # charge predicted output at admission, reconcile on completion
    adaptive_batching: bool = True
    tpot_target_s: float = 0.15  # adaptive batching keeps predicted time per output token under this
    min_batched_tokens: int = 256
    max_batched_tokens: int = 8192
    kv_admission: bool = True  # admit only when predicted KV growth fits (fewer preemptions)
    kv_headroom: float = 1.0  # multiplies the predicted growth of running requests
    compute_share: float = 0.5  # RFC: weight of iteration-time share vs KV-occupancy share
    quantile: float = 0.9  # output-length quantile used for KV admission
    shortest_prompt_first: bool = True  # within a tenant: shortest prompt first, with aging
    aging_tokens_per_s: float = 100.0  # a request overtakes prompts this many tokens longer per second waited
    # KV fair share (issue 11, isolation): a tenant under its weighted share of the KV pool is admitted on
    # its own predicted peak; one over it must also leave room for one request of each active tenant under
    # its share (docs/algorithm.md, "KV fair share").
    kv_fair_share: bool = True  # on after the holistic sweep (docs/results.md): H +2.7 ... +13.5 % over VTC
    kv_share_window_s: float = 10.0  # a tenant counts as active this long after its latest arrival
    kv_share_slack: float = 8192.0  # UFC an under-share tenant may be above an over-share head and go first

    def __post_init__(self) -> None:
        checks = [
            ("alpha", self.alpha >= 0), ("beta", self.beta >= 0), ("alpha + beta", self.alpha + self.beta > 0),
            ("f_min", 0 < self.f_min <= 1), ("latency_scale_s", self.latency_scale_s > 0),
            ("tpot_target_s", self.tpot_target_s > 0), ("min_batched_tokens", self.min_batched_tokens >= 1),
            ("max_batched_tokens", self.max_batched_tokens >= self.min_batched_tokens),
            ("kv_headroom", self.kv_headroom >= 0), ("compute_share", 0 <= self.compute_share <= 1),
            ("quantile", 0 < self.quantile < 1), ("aging_tokens_per_s", self.aging_tokens_per_s > 0),
            ("kv_share_window_s", self.kv_share_window_s > 0), ("kv_share_slack", self.kv_share_slack >= 0),
        ]
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"equinox parameter {name} is out of range ({self!r})")

    @classmethod
    def from_mapping(cls, params: Mapping[str, object]) -> EquinoxParams:
        """Parse policy params; unknown names and wrong types are ConfigErrors naming the key."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for key, raw in params.items():
            f = fields.get(key)
            if f is None:
                raise ConfigError(f"unknown equinox parameter {key!r}; known: {', '.join(sorted(fields))}")
            values[key] = _coerce(key, raw, f.type)
        return cls(**values)  # type: ignore[arg-type]


def _coerce(key: str, raw: object, annotation: object) -> object:
    kind = str(annotation)
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                return raw.lower() in ("true", "1", "yes", "on")
            raise ValueError
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)  # type: ignore[arg-type]
            if value != int(value):
                raise ValueError
            return int(value)
        if isinstance(raw, bool):
            raise ValueError
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"equinox parameter {key!r} must be a {kind}, got {raw!r}") from None
