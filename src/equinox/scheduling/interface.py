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

Three parts of the contract serve every host alike (issues "Engines that tell the truth",
"Holistic fairness", "Hardening", "Scale-out on Ray"):

- `waiting()` lists the waiting requests in the policy's order: the order in which
  successive `peek`/`pop` calls would admit them if nothing else happened (vLLM iterates
  and indexes its waiting queue; the gateway and dashboards list it).
- `set_platform(platform)`: the host says what hardware the policy schedules on (a
  `Platform`: cost constants, an optional iteration-time model). The simulator derives it
  from its deployment and cost model, the vLLM plug-in from the engine's model config and
  measured step times, the gateway from configuration. A policy that never gets one uses
  `Platform.proxy()` (token proxies), so the Resource Fairness Counter means the same
  thing in every host that knows the same platform.
- `export_state()` / `restore_state(state)`: the policy's accounting (counters, lift
  floors, what its predictors learned) as a JSON-safe mapping, so a restarted gateway, a
  counter actor or a replica resumes a heavy tenant's debt instead of zeroing it. Waiting
  requests are not part of the state (hosts own them). `scheduling/state.py` wraps it in
  one versioned snapshot format shared by every host. A host whose running requests
  outlive the restart hands them back with `resume_running(requests)`.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from equinox.compiled import mypyc_attr, picklable_when_compiled
from equinox.errors import ConfigError
from equinox.request import RequestView
from equinox.types import BatchLimits, BatchShape, StepReport


@dataclass(frozen=True)
class Platform:
    """The hardware a policy schedules on, as every host can describe it.

    Cost constants are seconds per unit of work at peak: a prefill token's compute
    (`2N / F`), a context token's KV read in decode (`kv_bytes / B`) and one read of the
    weights (`weight_bytes / B`); `tokens_per_s = F / 2N` is the platform's capacity, the
    unit of the Resource Fairness Counter. `iteration_time` (seconds for a batch shape) and
    `flops` (FLOPs of a batch) are optional models a host may supply; `peak_flops` goes
    with `flops`. `source` says where the values came from (for reports and logs).
    """

    name: str = "proxy"
    s_per_prefill_token: float = 1.0
    s_per_context_token: float = 1.0 / 64.0
    s_weight_read: float = 1.0
    tokens_per_s: float = 1.0
    iteration_time: Callable[[BatchShape], float] | None = field(default=None, compare=False)
    flops: Callable[[BatchShape], float] | None = field(default=None, compare=False)
    peak_flops: float | None = None
    source: str = "token proxies"

    def __post_init__(self) -> None:
        for name in ("s_per_prefill_token", "s_per_context_token", "s_weight_read", "tokens_per_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ConfigError(f"platform {self.name!r}: {name} must be a finite number > 0, got {value!r}")

    @classmethod
    def proxy(cls) -> Platform:
        """Token proxies for hosts that know nothing of the hardware: a prefill token costs 1,
        a context token 1/64, a decode sequence 1; capacity 1 token/s (only ratios matter)."""
        return cls()

    @classmethod
    def from_model(
        cls, name: str, *, num_matmul_params: float, kv_bytes_per_token: float, weight_bytes: float,
        peak_flops: float, hbm_bandwidth: float, source: str,
        iteration_time: Callable[[BatchShape], float] | None = None,
        flops: Callable[[BatchShape], float] | None = None,
    ) -> Platform:
        """Cost constants from a model's size and a GPU's peak compute and memory bandwidth."""
        return cls(
            name, 2.0 * num_matmul_params / peak_flops, kv_bytes_per_token / hbm_bandwidth,
            weight_bytes / hbm_bandwidth, peak_flops / (2.0 * num_matmul_params),
            iteration_time, flops, peak_flops, source,
        )


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


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled core: Python subclasses still work
class Policy(ABC):
    """Decides who is served next and keeps the books on service received."""

    name: ClassVar[str] = "policy"
    # The frozen dataclass `PolicyConfig.params` is parsed into (None: the policy takes none).
    params_class: ClassVar[type[Any] | None] = None

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.platform = Platform.proxy()

    # Typed parameters ------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """Names `PolicyConfig.params` may hold for this policy (default: the fields of `params_class`)."""
        if cls.params_class is None:
            return []
        return sorted(f.name for f in dataclasses.fields(cls.params_class))

    @classmethod
    def parse_params(cls, params: Mapping[str, object]) -> Any:
        """`params` as this policy's typed parameters (None when it takes none); a ConfigError names
        an unknown or ill-typed key and the valid ones. Default: `params_class.from_mapping(params)`."""
        if cls.params_class is None:
            if params:
                raise ConfigError(
                    f"policy {cls.name!r} takes no parameters, got {', '.join(map(repr, sorted(params)))}"
                )
            return None
        return cls.params_class.from_mapping(params)

    # Host-supplied platform ------------------------------------------------------
    def set_platform(self, platform: Platform) -> None:
        """The host says what hardware this policy schedules on (call before the first request)."""
        self.platform = platform

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

    def waiting(self) -> Iterator[RequestView]:
        """Waiting requests in the order successive `peek`/`pop` calls would admit them if
        nothing else happened (no arrivals, steps or completions in between)."""
        raise NotImplementedError(f"policy {self.name!r} does not list its waiting queue")

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

    # Counters shared across replicas (scheduling/global_counters.py) ----------------
    def shared_counters(self) -> dict[str, dict[str, float]]:
        """The additive per-tenant counters a cluster merges (kind -> tenant -> value); default:
        none (the policy cannot take part in the global-counter protocol)."""
        return {}

    def shift_counters(self, deltas: Mapping[str, Mapping[str, float]]) -> None:
        """Add `deltas[kind][tenant]` to the shared counters (the merged view of a cluster)."""
        if any(deltas.values()):
            raise ConfigError(f"policy {self.name!r} keeps no counters a cluster can share")

    # State that survives the host ---------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        """The policy's accounting as a JSON-safe mapping (counters, lift floors, learned
        predictions); waiting requests are not included. Default: nothing to keep."""
        return {}

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Resume from `export_state()`'s output (before any request arrives). Raises
        ConfigError naming the problem when `state` is malformed."""
        if state:
            raise ConfigError(f"policy {self.name!r} keeps no state but was given {sorted(state)}")

    def resume_running(self, requests: Iterable[RequestView]) -> None:  # noqa: B027 - optional hook
        """After `restore_state`, a host whose running requests outlived the restart hands them back,
        so a policy that reads running requests' progress sees them again (Equinox's KV fair share
        weighs the KV each tenant's running requests hold). Hosts that restore before any request
        arrives (the gateway) have none to hand back."""

    # Mechanism hints ---------------------------------------------------------
    def choose_victim(self, candidates: Sequence[RequestView], now: float) -> RequestView:
        """Preemption victim among running requests; default: the last admitted (vLLM's)."""
        return max(candidates, key=lambda r: r.admit_seq)

    def batch_limits(self, now: float, default: BatchLimits) -> BatchLimits:
        """Limits for the next iteration; default: the engine's configured limits."""
        return default

    def batch_limits_floor(self, default: BatchLimits) -> BatchLimits | None:
        """Limits every `batch_limits` answer stays at or above (None: no such promise).

        With a floor that holds the running decodes, the simulator may plan a decode-only
        iteration before the policy has seen the iterations ahead of it (their outcome does
        not depend on the limits) and asks `batch_limits` only when it reports it.
        """
        return default if type(self).batch_limits is Policy.batch_limits else None

    @property
    def reads_running_progress(self) -> bool:
        """True if the policy reads running requests' progress (computed/output tokens) when
        asked about admission; the simulator then brings them up to date before admitting."""
        return False

    def bind_progress_sync(self, sync: Callable[[], None]) -> None:
        """A host that advances running requests lazily (the simulator's decode cohort) hands over
        `sync`, which brings their progress up to date. A policy that reads progress only now and
        then may call it itself before reading (after the host's latest `on_step`) and stop
        asking for `reads_running_progress`'s refresh before every admission pass. Default: unused."""
        del sync

    def bind_kv_held(self, held: Callable[[], Mapping[str, int]]) -> None:
        """A host that advances running requests lazily may also hand over `held`: the KV tokens
        (computed tokens) each tenant's running requests hold now, every tenant with a running
        request named, worked out from its own sums without bringing each request up to date (the
        simulator's decode cohort keeps them per tenant). Default: unused."""
        del held

    def kv_reservation_tokens(self, request: RequestView, num_free_tokens: int | None = None) -> int:
        """Tokens of KV to find free before admitting `request`; default: its prompt.

        Engines add their own rule (vLLM's: the whole sequence so far must fit); a policy
        asks for more here, e.g. room for predicted output. An engine that only compares the
        answer with its free KV says how much is free (`num_free_tokens`); a policy may then
        answer any bound between its reservation and `num_free_tokens` (the same decision)
        instead of working the reservation out.
        """
        return request.num_prompt_tokens


picklable_when_compiled(Platform, PolicyConfig)  # frozen: see equinox.compiled
