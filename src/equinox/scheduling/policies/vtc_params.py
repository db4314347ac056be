"""VTC-family parameters and the VTC artifact's accounting options (Sheng et al., OSDI'24).

The artifact (Ying1123/VTC-artifact, `slora/server/router/*req_queue.py`,
`fair_bench/REVISION.md`) runs VTC with two options these parameters reproduce:

- `cost_function = "profile"` (`--cost-func profile`): a request with x prompt and y
  output tokens costs f(x, y) = 0.21001891 x + 0.10075395 y + 0.0039868 x y +
  0.00324733 y^2 + 1.14601454 (the artifact's fit of Llama-7B time on an A10G);
  f(x, 0) is charged at admission and f(x, y) - f(x, y - 1) per generated token.
  `prompt_weight` / `output_weight` do not apply (the artifact ignores its prices there).
- `output_predictor = "oracle"` with `predict_range = r` (`--scheduler vtc_oracle
  --predict-range r`): charge the output length L at admission, drawn uniformly from
  [L(1 - r), L(1 + r)]; a request that outgrows its prediction is charged per token as
  it generates, one that falls short is refunded at completion. L is the request's
  `max_tokens` (the artifact's `max_output_len`: its client sends `max_new_tokens` equal
  to the output length with `ignore_eos`); without `max_tokens` the policy falls back to
  the moving-average predictor. Draws come from `random.Random(predict_seed)`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from equinox.errors import ConfigError
from equinox.request import RequestView

COST_FUNCTIONS = ("linear", "profile")
OUTPUT_PREDICTORS = ("ema", "oracle")
BASE_KEYS = frozenset({"cost_function"})  # what vtc and lcf accept; vtc-predict accepts every field


@dataclass(frozen=True)
class VtcParams:
    """Typed knobs of vtc, lcf and vtc-predict (vtc and lcf read only `cost_function`)."""

    cost_function: str = "linear"
    output_predictor: str = "ema"
    predict_range: float = 0.0
    predict_seed: int = 0
    ema_alpha: float = 0.1
    prior_output_tokens: float = 256.0

    def __post_init__(self) -> None:
        if self.cost_function not in COST_FUNCTIONS:
            raise ConfigError(f"vtc parameter cost_function must be one of {', '.join(COST_FUNCTIONS)}, "
                              f"got {self.cost_function!r}")
        if self.output_predictor not in OUTPUT_PREDICTORS:
            raise ConfigError(f"vtc parameter output_predictor must be one of {', '.join(OUTPUT_PREDICTORS)}, "
                              f"got {self.output_predictor!r}")
        checks = [
            ("predict_range", 0.0 <= self.predict_range < 1.0, "in [0, 1)"),
            ("ema_alpha", 0.0 < self.ema_alpha <= 1.0, "in (0, 1]"),
            ("prior_output_tokens", self.prior_output_tokens >= 0.0, ">= 0"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ConfigError(f"vtc parameter {name} must be {want}, got {getattr(self, name)!r}")
        if self.predict_range > 0 and self.output_predictor != "oracle":
            raise ConfigError("vtc parameter predict_range applies to output_predictor = 'oracle' only")

    @property
    def tracks_requests(self) -> bool:
        """True when output charges follow each running request (profile cost or oracle lengths)."""
        return self.cost_function == "profile" or self.output_predictor == "oracle"

    @classmethod
    def from_mapping(
        cls, params: Mapping[str, object], policy: str, allowed: Collection[str] | None = None
    ) -> VtcParams:
        """Parse policy params; unknown names and wrong types are ConfigErrors naming the key."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        known = set(fields) if allowed is None else set(allowed)
        values: dict[str, Any] = {}
        for key, raw in params.items():
            if key not in known:
                raise ConfigError(f"unknown {policy} parameter {key!r}; known: {', '.join(sorted(known))}")
            values[key] = _coerce(policy, key, raw, str(fields[key].type))
        return cls(**values)


def _coerce(policy: str, key: str, raw: object, kind: str) -> object:
    if kind == "str":
        if isinstance(raw, str):
            return raw.strip().lower()
        raise ConfigError(f"{policy} parameter {key!r} must be a string, got {raw!r}")
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)  # type: ignore[arg-type]
        if kind == "int":
            if value != int(value):
                raise ValueError
            return int(value)
        return value
    except (TypeError, ValueError):
        raise ConfigError(f"{policy} parameter {key!r} must be a{'n' if kind == 'int' else ''} "
                          f"{'integer' if kind == 'int' else 'number'}, got {raw!r}") from None


def profile_cost(num_prompt_tokens: float, num_output_tokens: float) -> float:
    """The artifact's profiled cost of a request (`ReqQueue.cost_func_profile`, Llama-7B on A10G)."""
    x, y = num_prompt_tokens, num_output_tokens
    return 0.21001891 * x + 0.10075395 * y + 0.0039868 * x * y + 0.00324733 * y * y + 1.14601454


class RequestCharges:
    """Charges that follow each running request: what it was charged up to, settled on demand.

    A request charged for `c` output tokens (its prediction at admission, or what it has
    generated since) is charged `cost(x, y) - cost(x, c)` once it has generated y > c.
    `settle` reads the requests' progress, so the host must keep running requests up to
    date when the policy asks (`Policy.reads_running_progress`).
    """

    def __init__(self, params: VtcParams, prompt_weight: float, output_weight: float) -> None:
        self.is_profile = params.cost_function == "profile"
        self.prompt_weight = prompt_weight
        self.output_weight = output_weight
        # request id -> (view, output tokens charged); the view is None after a restore until the
        # host mentions the request again (its output is then settled at the latest on completion)
        self.running: dict[str, tuple[RequestView | None, float]] = {}
        self.rng = random.Random(params.predict_seed)

    def cost(self, num_prompt_tokens: float, num_output_tokens: float) -> float:
        """Unweighted cost of a request with these token counts."""
        if self.is_profile:
            return profile_cost(num_prompt_tokens, num_output_tokens)
        return self.prompt_weight * num_prompt_tokens + self.output_weight * num_output_tokens

    def admit(self, request: RequestView, predicted: float) -> float:
        """Start following `request`; returns the admission charge (prompt plus `predicted` output)."""
        self.running[request.request_id] = (request, predicted)
        return self.cost(request.num_prompt_tokens, predicted)

    def attach(self, request: RequestView) -> None:
        """Give a restored entry its view back (the host mentioned the request)."""
        entry = self.running.get(request.request_id)
        if entry is not None and entry[0] is None:
            self.running[request.request_id] = (request, entry[1])

    def settle(self, request_id: str) -> float:
        """The charge for output generated beyond what `request_id` was charged so far."""
        view, charged = self.running[request_id]
        if view is None:
            return 0.0
        done = view.num_output_tokens_done
        if done <= charged:
            return 0.0
        self.running[request_id] = (view, float(done))
        x = view.num_prompt_tokens
        return self.cost(x, done) - self.cost(x, charged)

    def finish(self, request_id: str) -> float:
        """Settle and stop following `request_id`; refunds a prediction it fell short of."""
        if request_id not in self.running:
            return 0.0
        amount = self.settle(request_id)
        view, charged = self.running.pop(request_id)
        if view is None:
            return amount
        x, done = view.num_prompt_tokens, view.num_output_tokens_done
        return amount + self.cost(x, done) - self.cost(x, charged)

    def export_state(self) -> dict[str, Any]:
        """Output tokens charged per running request and the oracle draws' generator state, JSON-safe."""
        version, internal, gauss = self.rng.getstate()
        return {"charged_output": {rid: c for rid, (_, c) in self.running.items()},
                "draw_state": [version, list(internal), gauss]}

    def restore_state(self, charged_output: Mapping[str, float], draw_state: list[Any] | None) -> None:
        """Resume from `export_state()` (entries get their views back when the host mentions them)."""
        self.running = {rid: (None, c) for rid, c in charged_output.items()}
        if draw_state is not None:
            try:
                version, internal, gauss = draw_state
                self.rng.setstate((version, tuple(internal), gauss))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"vtc state: draw_state is not a generator state ({exc})") from None

    def copy(self) -> RequestCharges:
        """An independent copy (the policy's fork for `waiting()`)."""
        other = object.__new__(RequestCharges)
        other.__dict__.update(self.__dict__)
        other.running = dict(self.running)
        other.rng = random.Random()
        other.rng.setstate(self.rng.getstate())
        return other
