"""Virtual Token Counter (Sheng et al., OSDI'24) and its variants LCF and VTC(predict).

One counter per tenant. On admission charge `w_p * prompt_tokens`, after every
generated token charge `w_q` (weighted VTC divides by the tenant weight). Admit from
the backlogged tenant with the smallest counter, FIFO within a tenant. When a tenant
becomes backlogged its counter is lifted to the smallest counter among backlogged
tenants (or, if none is backlogged, to the counter of the tenant that left last), so
idle time banks no credit. LCF is VTC without the lift. VTC(predict) charges a
per-tenant moving average of output length up front and reconciles on completion.
The VTC artifact's `profile` cost function and oracle lengths with `--predict-range`
are parameters (`vtc_params.py`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Self

from equinox.compiled import mypyc_attr
from equinox.request import RequestView
from equinox.scheduling.interface import Policy, PolicyConfig
from equinox.scheduling.policies.vtc_params import BASE_KEYS, RequestCharges, VtcParams
from equinox.scheduling.policy import POLICIES
from equinox.scheduling.queues import LazyMinHeap, TenantPriorityQueues, TenantQueues
from equinox.scheduling.state import StateReader
from equinox.types import StepReport


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled core: Python subclasses still work
class CounterPolicy(Policy):
    """Shared machinery of counter-based fair policies: per-tenant FIFOs, counters, lift."""

    is_lifting = True

    def __init__(self, config: PolicyConfig | None = None) -> None:
        super().__init__(config)
        self._queues: TenantQueues | TenantPriorityQueues = TenantQueues()
        self._counter: dict[str, float] = {}
        self._backlogged = LazyMinHeap(self.score)
        self._last_left: str | None = None

    # Ordering ------------------------------------------------------------------
    def score(self, tenant: str) -> float:
        """The key admission minimises (VTC: the counter)."""
        return self._counter.get(tenant, 0.0)

    def charge(self, tenant: str, amount: float) -> None:
        """Add `amount` (already weighted) to `tenant`'s counter."""
        self._counter[tenant] = self._counter.get(tenant, 0.0) + amount
        if amount < 0 and tenant in self._backlogged:
            self._backlogged.add(tenant)  # key dropped: refresh the heap entry

    def lift(self, tenant: str) -> None:
        """VTC's counter lift for a tenant that just became backlogged."""
        if not self.is_lifting:
            return
        floor_tenant = self._backlogged.min()
        if floor_tenant is None:
            floor_tenant = self._last_left
        if floor_tenant is None or floor_tenant == tenant:
            return
        self.lift_to(tenant, floor_tenant)

    def lift_to(self, tenant: str, floor_tenant: str) -> None:
        """Raise `tenant`'s counter to `floor_tenant`'s (never lower it)."""
        floor = self._counter.get(floor_tenant, 0.0)
        if self._counter.get(tenant, 0.0) < floor:
            self._counter[tenant] = floor

    # Waiting queue ------------------------------------------------------------
    def add_request(self, request: RequestView, now: float) -> str | None:
        """Enqueue in the tenant's FIFO, lifting its counter if it was idle."""
        self._enqueue(request, front=False)
        return None

    def _enqueue(self, request: RequestView, *, front: bool) -> None:
        tenant = request.tenant
        self._counter.setdefault(tenant, 0.0)
        if self._queues.push(request, front=front):
            self.lift(tenant)
            self._backlogged.add(tenant)

    def peek(self, now: float) -> RequestView | None:
        """Head request of the backlogged tenant with the smallest score."""
        tenant = self._backlogged.min()
        return None if tenant is None else self._queues.head(tenant)

    def pop(self, request: RequestView, now: float) -> None:
        """Admit the head of its tenant's queue and charge for it."""
        tenant = request.tenant
        if self._queues.pop(tenant):
            self._backlogged.discard(tenant)
            self._last_left = tenant
        self.charge_admission(request)

    def requeue(self, request: RequestView, now: float) -> None:
        """A preempted request returns to the front of its tenant's queue."""
        self._enqueue(request, front=True)

    def abort(self, request: RequestView, now: float) -> None:
        """Remove a waiting request."""
        if self._queues.remove(request):
            self._backlogged.discard(request.tenant)

    @property
    def num_waiting(self) -> int:
        """Requests waiting."""
        return len(self._queues)

    def num_waiting_of(self, tenant: str) -> int:
        """Requests of `tenant` waiting."""
        return self._queues.num_of(tenant)

    def counters(self) -> Mapping[str, float]:
        """Per-tenant counters."""
        return dict(self._counter)

    # Counters shared across replicas -------------------------------------------------
    def shared_counters(self) -> dict[str, dict[str, float]]:
        """The counter every charge goes to (lifts excluded when a cluster turns `is_lifting` off)."""
        return {"counter": dict(self._counter)}

    def shift_counters(self, deltas: Mapping[str, Mapping[str, float]]) -> None:
        """Add the merged cluster's deltas (a drop refreshes the tenant's heap entry)."""
        for tenant, amount in deltas.get("counter", {}).items():
            if amount:
                self.charge(tenant, amount)

    # Listing ---------------------------------------------------------------------
    def waiting(self) -> Iterator[RequestView]:
        """Waiting requests in admission order: selection replayed on a fork of the policy.

        The fork pops the lowest-score tenant's head and charges what `pop` charges, so
        later picks see the counters move exactly as they would (no tenant becomes
        backlogged meanwhile, so no lift applies). The list is built before this returns:
        O(waiting x log tenants) plus copying the selection state; peek/pop pay nothing.
        """
        fork = self._fork()
        now = self._listing_time()
        listed = []
        while (head := fork.peek(now)) is not None:
            fork.pop(head, now)
            listed.append(head)
        return iter(listed)

    def _fork(self) -> Self:
        """A copy whose peek/pop leave this policy untouched (subclasses copy what their pop mutates)."""
        fork = copy.copy(self)
        fork._queues = self._queues.copy()
        fork._counter = dict(self._counter)
        fork._backlogged = self._backlogged.copy(fork.score)
        return fork

    def _listing_time(self) -> float:
        """The `now` the listing admits at (the latest time the host told the policy)."""
        return 0.0

    # Accounting hooks for subclasses -------------------------------------------
    def charge_admission(self, request: RequestView) -> None:
        """Charge made when `request` is admitted."""

    # State that survives the host ------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        """Counters, the tenants' tie-break order (first seen first) and the tenant that left last."""
        return {
            "counters": dict(self._counter), "tenant_order": self._backlogged.tie_order(),
            "last_left": self._last_left,
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Resume the counters (before any request arrives)."""
        reader = StateReader(self.name, state)
        self._counter = reader.number_map("counters")
        self._backlogged.restore_tie_order(reader.strings("tenant_order"))
        self._last_left = reader.optional_string("last_left")


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled core: Python subclasses still work
class VtcPolicy(CounterPolicy):
    """VTC: w_p per prompt token at admission, w_q per generated token, divided by weight."""

    name = "vtc"
    param_keys: ClassVar[frozenset[str] | None] = BASE_KEYS  # None: every VtcParams field
    params_class = VtcParams

    @classmethod
    def param_names(cls) -> list[str]:
        """The VtcParams fields this variant reads."""
        # super(VtcPolicy, cls): mypyc passes the metaclass to a bare super() in a classmethod.
        return super(VtcPolicy, cls).param_names() if cls.param_keys is None else sorted(cls.param_keys)  # noqa: UP008

    @classmethod
    def parse_params(cls, params: Mapping[str, object]) -> VtcParams:
        """Typed VTC parameters; keys this variant does not read are an error naming the valid ones."""
        return VtcParams.from_mapping(params, cls.name, cls.param_keys)

    def __init__(self, config: PolicyConfig | None = None) -> None:
        super().__init__(config)
        self._charged: set[str] = set()
        cfg = self.config
        self.params = self.parse_params(cfg.params)
        self._charges = (
            RequestCharges(self.params, cfg.prompt_weight, cfg.output_weight) if self.params.tracks_requests else None
        )
        # Each configured tenant's weight as a float, read for every tenant in every step
        # (`cfg.weight(tenant)`: PolicyConfig checked them when it was made; a frozen config keeps them).
        self._weights: dict[str, float] = {t: float(w) for t, w in cfg.tenant_weights.items()}

    def export_state(self) -> dict[str, Any]:
        """Counters plus the running requests whose prompt was charged (not charged again if preempted);
        with charges that follow requests, what each was charged and the oracle draws' state."""
        state = {**super().export_state(), "charged": sorted(self._charged)}
        if self._charges is not None:
            state["request_charges"] = self._charges.export_state()
        return state

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Resume counters and the charged running requests."""
        super().restore_state(state)
        reader = StateReader(self.name, state)
        self._charged = set(reader.strings("charged"))
        if self._charges is not None and reader.has("request_charges"):
            charges = reader.sub("request_charges")
            draw = charges.state.get("draw_state")
            if draw is not None and not isinstance(draw, list):
                raise charges.error("draw_state", "a list", draw)
            self._charges.restore_state(charges.number_map("charged_output"), draw)

    def charge_admission(self, request: RequestView) -> None:
        """Charge the prompt once (a preempted request re-admitted is not charged again)."""
        if request.request_id in self._charged:
            if self._charges is not None:
                self._charges.attach(request)
            return
        self._charged.add(request.request_id)
        cfg = self.config
        if self._charges is not None:  # profile cost: f(x, 0) now, the output as it is generated
            self.charge(request.tenant, self._charges.admit(request, 0.0) / cfg.weight(request.tenant))
            return
        self.charge(request.tenant, cfg.prompt_weight * request.num_prompt_tokens / cfg.weight(request.tenant))

    def on_step(self, report: StepReport) -> None:
        """Charge every generated token (called every iteration: `charge` inlined; PolicyConfig
        keeps the amounts >= 0, so no heap entry needs refreshing)."""
        if self._charges is not None:
            self._settle(report.per_tenant)
            return
        w_q = self.config.output_weight
        weights = self._weights
        counter = self._counter
        if not weights:  # every weight 1: x / 1.0 is x exactly, so no lookup
            for tenant, usage in report.per_tenant.items():
                n = usage.num_output_tokens
                if n:
                    counter[tenant] = counter.get(tenant, 0.0) + w_q * n
            return
        for tenant, usage in report.per_tenant.items():
            n = usage.num_output_tokens
            if n:
                counter[tenant] = counter.get(tenant, 0.0) + w_q * n / weights.get(tenant, 1.0)

    def on_finish(self, request: RequestView, now: float) -> None:
        """Forget the request (settling what it generated when charges follow requests)."""
        self._charged.discard(request.request_id)
        if self._charges is not None:
            self._charges.attach(request)
            amount = self._charges.finish(request.request_id)
            if amount:
                self.charge(request.tenant, amount / self.config.weight(request.tenant))

    def peek(self, now: float) -> RequestView | None:
        """As CounterPolicy, after charging running requests' output when charges follow requests
        (CounterPolicy.peek inlined: called at every admission)."""
        if self._charges is not None:
            self._settle(None)
        tenant = self._backlogged.min()
        return None if tenant is None else self._queues.head(tenant)

    @property
    def reads_running_progress(self) -> bool:
        """Charges that follow requests read their progress at admission."""
        return self._charges is not None

    def _settle(self, tenants: Mapping[str, object] | None) -> None:
        """Charge running requests (of `tenants`, or all) for output beyond what they were charged."""
        charges = self._charges
        assert charges is not None
        for request_id, (view, _) in list(charges.running.items()):
            if view is not None and (tenants is None or view.tenant in tenants):
                amount = charges.settle(request_id)
                if amount:
                    self.charge(view.tenant, amount / self.config.weight(view.tenant))

    def _fork(self) -> Self:
        fork = super()._fork()
        fork._charged = set(self._charged)
        if self._charges is not None:
            fork._charges = self._charges.copy()
        return fork


class LcfPolicy(VtcPolicy):
    """Least counter first: VTC without the counter lift (idle tenants bank credit)."""

    name = "lcf"
    is_lifting = False


class VtcPredictPolicy(VtcPolicy):
    """VTC(predict): charge a per-tenant moving-average output length up front, reconcile at the end."""

    name = "vtc-predict"
    param_keys = None

    def __init__(self, config: PolicyConfig | None = None) -> None:
        super().__init__(config)
        self._alpha = self.params.ema_alpha
        self._prior = self.params.prior_output_tokens
        self._avg: dict[str, float] = {}
        self._predicted: dict[str, float] = {}

    def predicted_output(self, request: RequestView) -> float:
        """The tenant's moving-average output length, capped by max_tokens (oracle: max_tokens
        itself, drawn within +-predict_range of it)."""
        if self.params.output_predictor == "oracle" and request.max_tokens is not None and self._charges is not None:
            length, spread = float(request.max_tokens), self.params.predict_range
            return length if spread == 0 else self._charges.rng.uniform(length * (1 - spread), length * (1 + spread))
        guess = self._avg.get(request.tenant, self._prior)
        if request.max_tokens is not None:
            guess = min(guess, float(request.max_tokens))
        return guess

    def export_state(self) -> dict[str, Any]:
        """VTC's state plus the per-tenant moving averages and the running requests' up-front charges."""
        return {**super().export_state(), "averages": dict(self._avg), "predicted": dict(self._predicted)}

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Resume VTC's state, the averages and the charges to reconcile."""
        super().restore_state(state)
        reader = StateReader(self.name, state)
        self._avg = reader.number_map("averages")
        self._predicted = reader.number_map("predicted")

    def charge_admission(self, request: RequestView) -> None:
        """Charge the prompt and the predicted output once."""
        if request.request_id in self._charged:
            return
        if self._charges is not None:  # oracle / profile: over-runs charged per token, shortfalls refunded
            self._charged.add(request.request_id)
            guess = self.predicted_output(request)
            self.charge(request.tenant, self._charges.admit(request, guess) / self.config.weight(request.tenant))
            return
        super().charge_admission(request)
        guess = self.predicted_output(request)
        self._predicted[request.request_id] = guess
        cfg = self.config
        self.charge(request.tenant, cfg.output_weight * guess / cfg.weight(request.tenant))

    def on_step(self, report: StepReport) -> None:
        """Output was charged up front; reconciliation happens on completion (or per token beyond
        the prediction when charges follow requests)."""
        if self._charges is not None:
            super().on_step(report)

    def on_finish(self, request: RequestView, now: float) -> None:
        """Charge (or refund) the difference between actual and predicted output, update the average."""
        super().on_finish(request, now)
        actual = float(request.num_output_tokens_done)
        if self._charges is None:
            guess = self._predicted.pop(request.request_id, 0.0)
            cfg = self.config
            self.charge(request.tenant, cfg.output_weight * (actual - guess) / cfg.weight(request.tenant))
        prev = self._avg.get(request.tenant)
        self._avg[request.tenant] = actual if prev is None else prev + self._alpha * (actual - prev)

    def _fork(self) -> Self:
        fork = super()._fork()
        fork._predicted = dict(self._predicted)
        return fork


POLICIES.register("vtc", VtcPolicy, "Virtual Token Counter (w_p=1, w_q=2, counter lift, weights)")
POLICIES.register("lcf", LcfPolicy, "least counter first: VTC without counter lift")
POLICIES.register("vtc-predict", VtcPredictPolicy, "VTC charging a moving-average output length up front")
