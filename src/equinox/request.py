"""Requests: the frozen input record, the read-only view policies see, and the live state."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from equinox.compiled import picklable_when_compiled
from equinox.errors import WorkloadError

DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request of a workload, as a trace or generator describes it (canonical schema)."""

    request_id: str
    tenant: str
    arrival_time: float
    num_prompt_tokens: int
    num_output_tokens: int
    max_tokens: int | None = None
    prompt_text: str | None = None
    prefix_hashes: tuple[int, ...] = ()
    tenant_weight: float | None = None

    def __init__(
        self, request_id: str, tenant: str, arrival_time: float, num_prompt_tokens: int, num_output_tokens: int,
        max_tokens: int | None = None, prompt_text: str | None = None, prefix_hashes: tuple[int, ...] = (),
        tenant_weight: float | None = None,
    ) -> None:
        # written out (frozen: fields set with object.__setattr__, as the generated one does): mypyc compiles
        # it, where it leaves a generated frozen __init__ to the interpreter
        setattr_ = object.__setattr__
        setattr_(self, "request_id", request_id)
        setattr_(self, "tenant", tenant)
        setattr_(self, "arrival_time", arrival_time)
        setattr_(self, "num_prompt_tokens", num_prompt_tokens)
        setattr_(self, "num_output_tokens", num_output_tokens)
        setattr_(self, "max_tokens", max_tokens)
        setattr_(self, "prompt_text", prompt_text)
        setattr_(self, "prefix_hashes", prefix_hashes)
        setattr_(self, "tenant_weight", tenant_weight)
        self.__post_init__()

    def __post_init__(self) -> None:
        if not self.tenant:
            raise WorkloadError("tenant must be a non-empty string", field="tenant")
        if not (self.arrival_time >= 0.0):  # also rejects NaN
            raise WorkloadError(
                f"arrival_time must be >= 0 seconds, got {self.arrival_time!r}",
                field="arrival_time",
            )
        if self.num_prompt_tokens <= 0:
            raise WorkloadError(
                f"num_prompt_tokens must be > 0, got {self.num_prompt_tokens}",
                field="num_prompt_tokens",
            )
        if self.num_output_tokens <= 0:
            raise WorkloadError(
                f"num_output_tokens must be > 0, got {self.num_output_tokens}",
                field="num_output_tokens",
            )
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise WorkloadError(f"max_tokens must be > 0, got {self.max_tokens}", field="max_tokens")
        if self.tenant_weight is not None and not (self.tenant_weight > 0.0):
            raise WorkloadError(
                f"tenant_weight must be > 0, got {self.tenant_weight!r}", field="tenant_weight"
            )

    @property
    def num_generated_tokens(self) -> int:
        """Tokens the engine will actually generate: the output length capped by max_tokens."""
        if self.max_tokens is None:
            return self.num_output_tokens
        return min(self.num_output_tokens, self.max_tokens)


class RequestStatus(enum.Enum):
    """Lifecycle of a request inside an engine."""

    WAITING = "waiting"
    RUNNING = "running"
    PREEMPTED = "preempted"
    FINISHED = "finished"
    REJECTED = "rejected"


class RequestView(Protocol):
    """What a policy may read of a request; policies never mutate requests."""

    @property
    def request_id(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def arrival_time(self) -> float: ...
    @property
    def num_prompt_tokens(self) -> int: ...
    @property
    def max_tokens(self) -> int | None: ...
    @property
    def num_computed_tokens(self) -> int: ...
    @property
    def num_output_tokens_done(self) -> int: ...
    @property
    def num_preemptions(self) -> int: ...
    @property
    def admit_seq(self) -> int: ...


@dataclass(slots=True, eq=False)
class Request:
    """Live state of one request inside an iteration scheduler (mechanism-owned, mutable).

    `num_computed_tokens` counts tokens whose KV is in cache (prompt and generated);
    after a preemption by recompute it drops to 0 and the prompt plus the tokens
    already generated are prefilled again, as in vLLM.
    """

    spec: RequestSpec
    status: RequestStatus = RequestStatus.WAITING
    num_computed_tokens: int = 0
    num_output_tokens_done: int = 0
    num_blocks: int = 0
    num_preemptions: int = 0
    admit_seq: int = -1
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    last_token_time: float | None = None
    finish_time: float | None = None
    max_itl_s: float = 0.0
    reject_reason: str | None = None
    # Target length the engine will generate (spec.num_generated_tokens); cached for speed.
    num_target_tokens: int = field(default=0)

    def __init__(  # written out, not generated: mypyc compiles it (one per arriving request)
        self, spec: RequestSpec, status: RequestStatus = RequestStatus.WAITING, num_computed_tokens: int = 0,
        num_output_tokens_done: int = 0, num_blocks: int = 0, num_preemptions: int = 0, admit_seq: int = -1,
        first_scheduled_time: float | None = None, first_token_time: float | None = None,
        last_token_time: float | None = None, finish_time: float | None = None, max_itl_s: float = 0.0,
        reject_reason: str | None = None, num_target_tokens: int = 0,
    ) -> None:
        self.spec = spec
        self.status = status
        self.num_computed_tokens = num_computed_tokens
        self.num_output_tokens_done = num_output_tokens_done
        self.num_blocks = num_blocks
        self.num_preemptions = num_preemptions
        self.admit_seq = admit_seq
        self.first_scheduled_time = first_scheduled_time
        self.first_token_time = first_token_time
        self.last_token_time = last_token_time
        self.finish_time = finish_time
        self.max_itl_s = max_itl_s
        self.reject_reason = reject_reason
        self.num_target_tokens = spec.num_generated_tokens  # as the generated __post_init__ set it

    # RequestView surface ---------------------------------------------------
    @property
    def request_id(self) -> str:
        return self.spec.request_id

    @property
    def tenant(self) -> str:
        return self.spec.tenant

    @property
    def arrival_time(self) -> float:
        return self.spec.arrival_time

    @property
    def num_prompt_tokens(self) -> int:
        return self.spec.num_prompt_tokens

    @property
    def max_tokens(self) -> int | None:
        return self.spec.max_tokens

    # Mechanism helpers -------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        """Tokens known so far: the prompt plus every generated token."""
        return self.spec.num_prompt_tokens + self.num_output_tokens_done

    @property
    def num_tokens_to_compute(self) -> int:
        """Tokens whose KV is still missing; 1 for a request in steady decode (as in vLLM)."""
        return self.spec.num_prompt_tokens + self.num_output_tokens_done - self.num_computed_tokens

    @property
    def is_decoding(self) -> bool:
        """True once the prompt (and any recompute) is done and one token per step remains."""
        return self.num_output_tokens_done > 0 and self.num_tokens_to_compute == 1


def spec_fields(view: RequestView) -> tuple[str, str, float, int, int | None]:
    """(request_id, tenant, arrival_time, num_prompt_tokens, max_tokens) of a view. Compiled, a
    RequestView's attributes are generic lookups (~180 instructions each); the simulator's own
    `Request` is read field by field instead, and the tuple comes back unboxed (no allocation)."""
    if isinstance(view, Request):
        s = view.spec
        return s.request_id, s.tenant, s.arrival_time, s.num_prompt_tokens, s.max_tokens
    return view.request_id, view.tenant, view.arrival_time, view.num_prompt_tokens, view.max_tokens


picklable_when_compiled(RequestSpec)  # frozen: see equinox.compiled
