"""The Policy contract: order, preemption victim and service accounting, nothing else.

A policy sees read-only request views and an explicit `now`; it never sees an engine
and never reads the wall clock, so the same object runs in the simulator, inside vLLM
and in the gateway. The mechanism (an iteration scheduler, vLLM, the gateway) calls:

- `add_request` when a request arrives (the policy may reject it, e.g. a rate limit),
- `peek`/`pop` to admit the next waiting request (peek first: when the head does not
  fit, the mechanism stops admitting; there is no skipping),
- `requeue` when a running request is preempted (it goes back to the front),
- `on_step` after every iteration with what each tenant used,
- `on_finish` when a request completes, `abort` when it is cancelled while waiting,
- `choose_victim` when KV memory runs out,
- `batch_limits` and `kv_reservation_tokens` (adaptive batching and predicted-length
  KV admission; the defaults leave the mechanism's settings unchanged).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from equinox.errors import ConfigError
from equinox.request import RequestView
from equinox.types import BatchLimits, StepReport


@dataclass(frozen=True)
class PolicyConfig:
    """Settings every policy understands; a policy reads the ones it uses."""

    tenant_weights: Mapping[str, float] = field(default_factory=dict)
    prompt_weight: float = 1.0  # VTC's w_p
    output_weight: float = 2.0  # VTC's w_q
    rpm_limit: float | None = None  # requests per minute per tenant (policy `rpm`)
    rpm_limits: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, object] = field(default_factory=dict)  # policy-specific knobs

    def __post_init__(self) -> None:
        for name in ("prompt_weight", "output_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
        for tenant, weight in self.tenant_weights.items():
            if not weight > 0:
                raise ConfigError(f"weight of tenant {tenant!r} must be > 0, got {weight!r}")

    def weight(self, tenant: str) -> float:
        """A tenant's weight (1.0 unless configured)."""
        return float(self.tenant_weights.get(tenant, 1.0))


class Policy(ABC):
    """Decides who is served next and keeps the books on service received."""

    name: str = "policy"

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()

    # Waiting queue -----------------------------------------------------------
    @abstractmethod
    def add_request(self, request: RequestView, now: float) -> str | None:
        """Enqueue an arriving request; return a rejection reason, or None when accepted."""

    @abstractmethod
    def peek(self, now: float) -> RequestView | None:
        """The request the policy wants admitted next, or None when nothing waits."""

    @abstractmethod
    def pop(self, request: RequestView, now: float) -> None:
        """`request` (the one `peek` returned) was admitted to the running batch."""

    @abstractmethod
    def requeue(self, request: RequestView, now: float) -> None:
        """A running request was preempted: put it back at the front of its tenant's queue."""

    @abstractmethod
    def abort(self, request: RequestView, now: float) -> None:
        """Remove a waiting request (cancelled by its client)."""

    @property
    @abstractmethod
    def num_waiting(self) -> int:
        """Requests waiting in the policy's queues."""

    @abstractmethod
    def num_waiting_of(self, tenant: str) -> int:
        """Requests of `tenant` waiting."""

    # Accounting --------------------------------------------------------------
    def on_step(self, report: StepReport) -> None:  # noqa: B027 - optional hook
        """An iteration finished; `report.per_tenant` says what each tenant used."""

    def on_first_token(self, request: RequestView, now: float) -> None:  # noqa: B027
        """`request` produced its first output token at `now`."""

    def on_finish(self, request: RequestView, now: float) -> None:  # noqa: B027
        """`request` completed at `now` (its output length is now known)."""

    def counters(self) -> Mapping[str, float]:
        """Per-tenant fairness counters for metrics (empty for policies without any)."""
        return {}

    def counter_breakdown(self) -> Mapping[str, Mapping[str, float]]:
        """Every counter kind the policy keeps, per tenant (default: `counters()` under the policy's name)."""
        values = self.counters()
        return {self.name: values} if values else {}

    # Mechanism hints ---------------------------------------------------------
    def choose_victim(self, candidates: Sequence[RequestView], now: float) -> RequestView:
        """Preemption victim among running requests; default: the last admitted (vLLM's)."""
        return max(candidates, key=lambda r: r.admit_seq)

    def batch_limits(self, now: float, default: BatchLimits) -> BatchLimits:
        """Limits for the next iteration; default: the engine's configured limits."""
        return default

    @property
    def reads_running_progress(self) -> bool:
        """True if the policy reads running requests' progress (computed/output tokens) when
        asked about admission; the simulator then brings them up to date before admitting."""
        return False

    def kv_reservation_tokens(self, request: RequestView) -> int:
        """Tokens of KV to find free before admitting `request`; default: its prompt."""
        return request.num_prompt_tokens + 1
