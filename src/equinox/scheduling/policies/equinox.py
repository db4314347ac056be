"""Equinox: holistic fair scheduling (arXiv 2508.16646, as read in DESIGN.md and docs/algorithm.md).

Two counters per tenant, both with VTC's lift and divided by the tenant's weight:

- UFC (User Fairness Counter): weighted tokens delivered, w_p * prompt + w_q * output,
  multiplied by a latency discount d(TTFT) = f_min + (1 - f_min) * tau / (tau + TTFT)
  in [f_min, 1], so a tenant whose users waited long counts less and is served sooner.
  Charged proactively at admission from MoPE's predictions (output length, TTFT) and
  reconciled with the actual values when the request completes.
- RFC (Resource Fairness Counter): the tenant's share of GPU time in every iteration
  (prefill compute + decode memory traffic, split with the platform's cost constants)
  and of KV memory held, in platform-capacity units (tokens the platform could process
  at peak), so one unit means the same on an A10G and an H100.

Holistic Fairness score over backlogged tenants: HF_i = alpha * UFC_i / mean(UFC) +
beta * RFC_i / mean(RFC); the lowest is served first. Within a tenant, the shortest prompt goes first, with
linear aging so no request waits behind later, shorter ones indefinitely. With
beta = 0, f_min = 1, proactive charging, shortest-prompt-first and KV fair share off it makes
exactly VTC's decisions.
Adaptive batching (`batch_limits`) and predicted-length KV admission
(`kv_reservation_tokens`) use the same MoPE. The KV fair share knob (kv_share.py) lets a
tenant under its KV share pass a head over its share within a UFC slack.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Self

from equinox.compiled import mypyc_attr
from equinox.prediction.experts.iteration_time import IterationTimeExpert
from equinox.prediction.experts.output_length import OutputLengthConfig
from equinox.prediction.mope import MoPE
from equinox.request import RequestView, spec_fields
from equinox.scheduling.interface import Platform, PolicyConfig
from equinox.scheduling.policies.equinox_params import EquinoxParams
from equinox.scheduling.policies.kv_share import KvShareBook, KvShares
from equinox.scheduling.policies.vtc import CounterPolicy
from equinox.scheduling.policy import POLICIES
from equinox.scheduling.queues import TenantPriorityQueues
from equinox.scheduling.state import StateReader
from equinox.types import BatchLimits, BatchShape, StepReport, batch_shape, mean_batch_of

EXACT_SCAN_LIMIT: Final = 64  # up to this many backlogged tenants HF is renormalised at every decision


def _growth(item: tuple[float, float]) -> float:
    return item[0]


def _aged_prompt(aging: float) -> Callable[[RequestView], float]:
    """Shortest-prompt-first's key with linear aging: prompt tokens + `aging` x arrival time."""
    def key(r: RequestView) -> float:
        _, _, arrival_time, prompt, _ = spec_fields(r)
        return prompt + aging * arrival_time

    return key


@dataclass(slots=True)
class _Admitted:
    """Book-keeping for a request between admission and completion."""

    view: RequestView | None  # None after a restore until the host mentions the request again
    charged_ufc: float
    predicted_mean: float
    predicted_q: float
    discount: float
    first_token_time: float | None = None
    is_running: bool = True
    growth_bound: int = 0  # its share of EquinoxPolicy._growth_bound while it runs

    def __init__(self, view: RequestView | None, charged_ufc: float, predicted_mean: float, predicted_q: float,
                 discount: float, first_token_time: float | None = None, is_running: bool = True,
                 growth_bound: int = 0) -> None:
        # written out: mypyc compiles it, where it leaves a dataclass's generated __init__ to the interpreter
        self.view = view
        self.charged_ufc = charged_ufc
        self.predicted_mean = predicted_mean
        self.predicted_q = predicted_q
        self.discount = discount
        self.first_token_time = first_token_time
        self.is_running = is_running
        self.growth_bound = growth_bound


@dataclass(slots=True)
class _Replay:
    """Adaptive batching's last search as seen with some number of decodes (`EquinoxPolicy._replays`)."""

    # The path backwards, one entry a point: whether it fitted, its prefill chunk, its regime key.
    oks: list[bool]
    chunks: list[int]
    regimes: list[int]
    ratios: list[float] | None = None  # each point's ratio when every comparison last held
    ctx: int = 0  # the context then
    # The expert and its `ratio_version` then, and the points the walk could not imply from others with
    # those ratios: fitting ones (predicted again when the context grows), non-fitting ones (when it shrinks).
    expert: IterationTimeExpert | None = None
    version: int = -1
    fitting: list[int] = field(default_factory=list)
    failing: list[int] = field(default_factory=list)
    # Each point's base time as head + per_context_token * context + tail (`IterationTimeExpert.context_terms`)
    # for the expert `terms_of`, asked for the first time the point is predicted (head -1.0 until then); empty
    # where that expert's base offers no such terms.
    terms_of: IterationTimeExpert | None = None
    heads: list[float] = field(default_factory=list)
    slopes: list[float] = field(default_factory=list)
    tails: list[float] = field(default_factory=list)
    regime_mask: int = 0

    def __init__(self, oks: list[bool], chunks: list[int], regimes: list[int], ratios: list[float] | None = None,
                 ctx: int = 0, expert: IterationTimeExpert | None = None, version: int = -1,
                 fitting: list[int] | None = None, failing: list[int] | None = None) -> None:
        self.oks = oks  # written out, as _Admitted's
        self.chunks = chunks
        self.regimes = regimes
        self.ratios = ratios
        self.ctx = ctx
        self.expert = expert
        self.version = version
        self.fitting = [] if fitting is None else fitting
        self.failing = [] if failing is None else failing
        self.terms_of = None
        self.heads = []
        self.slopes = []
        self.tails = []
        self.regime_mask = 0  # bit k set: a point's regime key is k (`IterationTimeExpert.unchanged_since`)
        for key in regimes:
            self.regime_mask |= 1 << key

    def time_at(self, i: int, d: int, ctx: int, ratio: float, expert: IterationTimeExpert) -> float:
        """`expert.predict` of point `i` with `d` decodes attending `ctx` tokens, whose regime's ratio is
        `ratio`: from the point's context terms where the expert's base has them (bit for bit the same)."""
        if self.terms_of is not expert:
            self.terms_of = expert
            n = len(self.chunks) if expert.context_terms is not None else 0
            self.heads = [-1.0] * n  # not asked for yet (the built-in models' heads are >= 0; a negative one is
            # asked for again at each prediction: slower, still exact)
            self.slopes = [0.0] * n
            self.tails = [0.0] * n
        heads = self.heads
        if heads:
            head = heads[i]
            if head < 0.0:
                head = self._set_terms(i, d, expert)
            return (head + self.slopes[i] * ctx + self.tails[i]) * ratio
        chunk = self.chunks[i]
        return expert.predict(batch_shape(chunk, 1 if chunk else 0, chunk * (chunk + 1) // 2, d, ctx))

    def _set_terms(self, i: int, d: int, expert: IterationTimeExpert) -> float:
        terms = expert.context_terms
        assert terms is not None
        chunk = self.chunks[i]
        head, slope, tail = terms(chunk, 1 if chunk else 0, chunk * (chunk + 1) // 2, d)
        self.heads[i] = head
        self.slopes[i] = slope
        self.tails[i] = tail
        return head


class _Knobs:
    """The `EquinoxParams` values read at every admission and step, as typed attributes of a class the
    compiled core makes native (EquinoxParams stays an interpreted frozen dataclass: each read of it
    there is a generic attribute lookup). Made again whenever `EquinoxPolicy.params` is set."""

    def __init__(self, p: EquinoxParams) -> None:
        self.alpha = float(p.alpha)
        self.beta = float(p.beta)
        self.f_min = float(p.f_min)
        self.latency_scale_s = float(p.latency_scale_s)
        self.proactive = bool(p.proactive)
        self.adaptive_batching = bool(p.adaptive_batching)
        self.tpot_target_s = float(p.tpot_target_s)
        self.min_batched_tokens = int(p.min_batched_tokens)
        self.max_batched_tokens = int(p.max_batched_tokens)
        self.kv_admission = bool(p.kv_admission)
        self.kv_headroom = float(p.kv_headroom)
        self.compute_share = float(p.compute_share)
        self.kv_fair_share = bool(p.kv_fair_share)
        self.kv_share_slack = float(p.kv_share_slack)


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled core: Python subclasses still work
class EquinoxPolicy(CounterPolicy):
    """UFC + RFC -> Holistic Fairness score; MoPE predictions; adaptive batching; KV admission."""

    name = "equinox"
    params_class = EquinoxParams

    def __init__(self, config: PolicyConfig | None = None) -> None:
        super().__init__(config)
        self.params = p = EquinoxParams.from_mapping(self.config.params)
        self.mope = MoPE(output_config=OutputLengthConfig(quantile=p.quantile))
        if p.shortest_prompt_first:
            # Within a tenant, shorter prompts first with linear aging: the key
            # prompt + k * arrival equals prompt - k * waited up to a shared offset, so a
            # request is overtaken only by prompts shorter by k tokens per second it waited.
            self._queues = TenantPriorityQueues(_aged_prompt(p.aging_tokens_per_s))
        self._rfc: dict[str, float] = {}
        self._admitted: dict[str, _Admitted] = {}
        self._tenant_discount: dict[str, float] = {}
        self._is_proxy = True  # RFC from token proxies until a host supplies a platform
        self._coeffs = (1.0, 0.0)
        self._last_batch = BatchShape()
        self._sum_ufc = 0.0
        self._sum_rfc = 0.0
        self._now = 0.0  # the latest time the host told us (schedule, admission or step end)
        self._budget = 0  # the token budget of the current iteration (0: not known yet)
        self._kv_book = KvShareBook(p.kv_share_window_s)
        self._weight_of = self.config.weight  # one bound method: the book keeps the weights it gave
        self._search_path: list[tuple[int, bool]] = []  # adaptive batching's last search: (budget, fits)
        self._search_budget = 0
        self._replay_by_d: dict[int, _Replay] = {}  # the search's points as seen with d decodes
        # Sum over running requests of an upper bound on each one's predicted growth (integers, so
        # exact under additions and removals): a cheap bound on the predicted-peak reservation.
        self._growth_bound = 0
        self._sync: Callable[[], None] | None = None  # the host's, when it advances running requests lazily
        self._held_of: Callable[[], Mapping[str, int]] | None = None  # the host's KV held per tenant, if given
        self._is_synced = True  # running requests' progress read since the latest step is current
        # The limits last answered (one immutable BatchLimits made again only when it changes: a
        # frozen dataclass costs an interpreted __init__ on the compiled core, and this runs every step).
        self._limits = BatchLimits(0, 0)
        self._floor_of: BatchLimits | None = None
        self._floor = self._limits

    @property
    def params(self) -> EquinoxParams:
        """The policy's knobs (frozen; set a new EquinoxParams to change them)."""
        return self._params

    @params.setter
    def params(self, value: EquinoxParams) -> None:
        self._params = value
        self._k = _Knobs(value)

    # Platform ------------------------------------------------------------------
    def set_platform(self, platform: Platform) -> None:
        """RFC's cost constants and MoPE's iteration-time and FLOPs models from the host's platform.

        `Platform.proxy()` keeps the token proxies (a prefill token 1, a generated token 1, a
        context token 1/64) and an iteration-time model learned online from measured steps.
        What the output-length expert learned is kept; the platform-bound experts start over.
        """
        super().set_platform(platform)
        self._is_proxy = platform == Platform.proxy()
        learned = self.mope.output_length
        self.mope = MoPE(
            cost_model=platform.iteration_time, flops=platform.flops, peak_flops=platform.peak_flops or 0.0,
            output_config=OutputLengthConfig(quantile=self.params.quantile),
        )
        self.mope.output_length = learned

    # Holistic Fairness score ------------------------------------------------------
    def discount(self, latency_s: float) -> float:
        """d(latency) in [f_min, 1]: 1 for an immediate answer, towards f_min as users wait."""
        p = self._k
        if p.f_min >= 1.0:
            return 1.0
        tau = p.latency_scale_s
        return p.f_min + (1.0 - p.f_min) * tau / (tau + max(0.0, latency_s))

    def score(self, tenant: str) -> float:
        """The heap key: a * UFC + b * RFC with the current normalisation coefficients."""
        a, b = self._coeffs
        value = a * self._counter.get(tenant, 0.0)
        if b:
            value += b * self._rfc.get(tenant, 0.0)
        return value

    def holistic_scores(self) -> dict[str, float]:
        """HF_i for every known tenant, normalised by the means over all known tenants (for display)."""
        p = self._k
        n = len(self._counter) or 1
        mean_u = sum(self._counter.values()) / n
        mean_r = sum(self._rfc.values()) / n
        a = p.alpha / mean_u if mean_u > 0 else 0.0
        rfc = self._rfc
        if not rfc:  # no RFC yet (beta = 0 charges none): b * 0.0 is 0.0, so each score is a * u + 0.0
            return {t: a * u + 0.0 for t, u in self._counter.items()}
        b = p.beta / mean_r if mean_r > 0 else 0.0
        return {t: a * u + b * rfc.get(t, 0.0) for t, u in self._counter.items()}

    def _normalisation(self) -> tuple[float, float]:
        p = self._k
        if p.beta == 0.0:
            return 1.0, 0.0  # ordering by UFC alone: exactly VTC's keys (no float rescaling)
        if p.alpha == 0.0:
            return 0.0, 1.0
        n = len(self._backlogged) or 1
        mean_u = self._sum_ufc / n
        mean_r = self._sum_rfc / n
        a = p.alpha / mean_u if mean_u > 0 else 0.0
        b = p.beta / mean_r if mean_r > 0 else 0.0
        if a == 0.0 and b == 0.0:
            return 1.0, 0.0
        return a, b

    def peek(self, now: float) -> RequestView | None:
        """Head of the backlogged tenant with the lowest Holistic Fairness score."""
        if not len(self._backlogged):
            return None
        old_a, old_b = self._coeffs
        if self._k.beta == 0.0 and old_a == 1.0 and old_b == 0.0:
            a, b = old_a, old_b  # UFC alone, as before (what `_normalisation` answers): nothing to rekey
        else:
            a, b = self._normalisation()
        if (a, b) != (old_a, old_b):
            small = len(self._backlogged) <= EXACT_SCAN_LIMIT
            drift = abs(a - old_a) > 0.05 * abs(old_a) or abs(b - old_b) > 0.05 * abs(old_b)
            if small or drift or (old_a == 0.0) != (a == 0.0) or (old_b == 0.0) != (b == 0.0):
                self._coeffs = (a, b)
                self._backlogged.rekey()
        head = super().peek(now)
        num_backlogged = len(self._backlogged)
        if head is None or not self._k.kv_fair_share or not 1 < num_backlogged <= EXACT_SCAN_LIMIT:
            return head  # alone in the backlog, the head's tenant has nobody to let pass
        return self._under_share_first(head)

    def _under_share_first(self, head: RequestView) -> RequestView:
        """KV fair share: a tenant under its KV share goes before a head over its share, if its UFC
        is at most `kv_share_slack` above the head's (the bound grows by that much).

        A head over its KV share waits for memory its own tenant's growth fills; without this, every
        tenant behind it waits too (no skipping), however little memory it holds.
        """
        shares = self._kv_shares(head.tenant)
        tenant = None if shares is None else shares.passes(
            head.tenant, self._backlogged.members(), self._counter, self._k.kv_share_slack)
        other = None if tenant is None else self._queues.head(tenant)
        return head if other is None else other

    # Counter maintenance -------------------------------------------------------------
    def charge(self, tenant: str, amount: float) -> None:
        """Add to UFC, keeping the backlogged sum current."""
        if tenant in self._backlogged:
            self._sum_ufc += amount
        super().charge(tenant, amount)

    def charge_rfc(self, tenant: str, amount: float) -> None:
        """Add to RFC, keeping the backlogged sum current."""
        self._rfc[tenant] = self._rfc.get(tenant, 0.0) + amount
        if tenant in self._backlogged:
            self._sum_rfc += amount

    def shared_counters(self) -> dict[str, dict[str, float]]:
        """UFC and RFC (HF is derived from them), for the global-counter protocol."""
        return {"counter": dict(self._counter), "rfc": dict(self._rfc)}

    def shift_counters(self, deltas: Mapping[str, Mapping[str, float]]) -> None:
        """Add the merged cluster's UFC and RFC deltas, keeping the backlogged sums and heap current."""
        super().shift_counters(deltas)
        for tenant, amount in deltas.get("rfc", {}).items():
            if amount:
                self.charge_rfc(tenant, amount)
                if amount < 0 and tenant in self._backlogged:
                    self._backlogged.add(tenant)

    def lift_to(self, tenant: str, floor_tenant: str) -> None:
        """Lift UFC and RFC to those of the tenant with the lowest score (or the last to leave).

        The newcomer then scores exactly what the current minimum scores: it banks no
        credit for idle time and pays no penalty (VTC's rule, applied to both counters).
        """
        super().lift_to(tenant, floor_tenant)
        floor_r = self._rfc.get(floor_tenant, 0.0)
        if self._rfc.get(tenant, 0.0) < floor_r:
            self._rfc[tenant] = floor_r

    def add_request(self, request: RequestView, now: float) -> str | None:
        """Enqueue; remember when the tenant last arrived and how much KV its request will take."""
        if self._k.kv_fair_share:
            _, tenant, arrival_time, prompt, max_tokens = spec_fields(request)
            pred = self.mope.predict_output(tenant, prompt, max_tokens)
            self._kv_book.note_arrival(tenant, arrival_time, prompt + pred.mean * self._k.kv_headroom)
        self._enqueue(request, front=False)  # CounterPolicy.add_request
        return None

    def _enqueue(self, request: RequestView, *, front: bool) -> None:
        tenant = request.tenant
        was_backlogged = tenant in self._backlogged
        super()._enqueue(request, front=front)
        if not was_backlogged:
            self._sum_ufc += self._counter.get(tenant, 0.0)
            self._sum_rfc += self._rfc.get(tenant, 0.0)

    def pop(self, request: RequestView, now: float) -> None:
        """Admit; if its tenant leaves the backlog, take it out of the normalising sums."""
        tenant = request.tenant
        self._now = now
        u0, r0 = self._counter.get(tenant, 0.0), self._rfc.get(tenant, 0.0)
        super().pop(request, now)  # charges after the tenant may have left the backlog
        if tenant not in self._backlogged:
            self._sum_ufc -= u0
            self._sum_rfc -= r0
            if not len(self._backlogged):
                self._sum_ufc = self._sum_rfc = 0.0  # no float drift across idle periods

    def abort(self, request: RequestView, now: float) -> None:
        """Remove a waiting request (and its tenant from the sums if it leaves the backlog)."""
        tenant = request.tenant
        was = tenant in self._backlogged
        super().abort(request, now)
        if was and tenant not in self._backlogged:
            self._sum_ufc -= self._counter.get(tenant, 0.0)
            self._sum_rfc -= self._rfc.get(tenant, 0.0)

    # UFC charges ------------------------------------------------------------------
    def _ufc_amount(self, tenant: str, num_prompt: int, num_output: float, discount: float) -> float:
        # the request's fields passed in: each read of a RequestView is a generic attribute lookup when compiled
        cfg = self.config
        tokens = cfg.prompt_weight * num_prompt + cfg.output_weight * num_output
        return tokens * discount / cfg.weight(tenant)

    def charge_admission(self, request: RequestView) -> None:
        """Charge predicted UFC once per request (a preempted request re-admitted is not re-charged)."""
        rid, tenant, _, prompt, max_tokens = spec_fields(request)
        num_done = request.num_output_tokens_done
        entry = self._admitted.get(rid)
        if entry is not None:
            entry.is_running = True
            entry.view = request
            self._bound_growth(entry, num_done)
            return
        p = self._k
        pred = self.mope.predict_output(tenant, prompt, max_tokens)
        d = 1.0 if p.f_min >= 1.0 else self.discount(self.predict_ttft(request))
        self._tenant_discount[tenant] = d
        out = pred.mean if p.proactive else 0.0
        amount = self._ufc_amount(tenant, prompt, out, d)
        entry = self._admitted[rid] = _Admitted(request, amount, pred.mean, pred.quantile, d)
        self._bound_growth(entry, num_done)
        self.charge(tenant, amount)

    def _bound_growth(self, entry: _Admitted, num_done: int) -> None:
        """Count a running request in `_growth_bound`: `_peak_reservation` gives it a growth of
        mean * headroom - done, or else max(quantile - done, 1), and done only grows from `num_done`."""
        self._unbound_growth(entry)
        top = max(entry.predicted_mean * self._k.kv_headroom, entry.predicted_q) - num_done
        entry.growth_bound = max(math.ceil(top), 1)
        self._growth_bound += entry.growth_bound

    def _unbound_growth(self, entry: _Admitted) -> None:
        self._growth_bound -= entry.growth_bound
        entry.growth_bound = 0

    def predict_ttft(self, request: RequestView) -> float:
        """MoPE's TTFT for `request` if admitted now: time waited plus its predicted prefill."""
        waited = max(0.0, self._now - request.arrival_time)
        last = self._last_batch
        budget = self._budget or 2048
        return waited + self.mope.ttft.prefill_s(
            request.num_prompt_tokens, budget, last.num_decode_seqs, last.decode_context_tokens
        )

    # Listing ----------------------------------------------------------------------
    def _fork(self) -> Self:
        # Admission adds entries, flips re-admitted ones to running and moves the discount.
        fork = super()._fork()
        fork._held_of = None  # the host's sums leave out the fork's own admissions: the fork walks its entries
        fork._admitted = {rid: dataclasses.replace(e) for rid, e in self._admitted.items()}
        fork._tenant_discount = dict(self._tenant_discount)
        fork._rfc = dict(self._rfc)
        return fork

    def _listing_time(self) -> float:
        """Predicted TTFTs (hence UFC charges) are taken at the latest time the host gave."""
        return self._now

    def requeue(self, request: RequestView, now: float) -> None:
        """A preempted request goes back to the front; it no longer holds KV."""
        entry = self._admitted.get(request.request_id)
        if entry is not None:
            entry.is_running = False
            self._unbound_growth(entry)
        super().requeue(request, now)

    def on_first_token(self, request: RequestView, now: float) -> None:
        """Remember the real TTFT for reconciliation."""
        entry = self._admitted.get(request.request_id)
        if entry is not None:
            entry.first_token_time = now
            entry.view = request

    def on_finish(self, request: RequestView, now: float) -> None:
        """Reconcile UFC with actual output and TTFT; teach MoPE the true length."""
        rid, tenant, arrival_time, prompt, _ = spec_fields(request)
        actual_out = request.num_output_tokens_done
        self.mope.observe_finish(tenant, prompt, actual_out)
        entry = self._admitted.get(rid)  # get and del: dict.pop with a default is a generic method call compiled
        if entry is None:
            return
        del self._admitted[rid]
        self._unbound_growth(entry)
        if not self._k.proactive:
            return
        ttft = (entry.first_token_time if entry.first_token_time is not None else now) - arrival_time
        actual = self._ufc_amount(tenant, prompt, actual_out, self.discount(ttft))
        self.charge(tenant, actual - entry.charged_ufc)

    # Per-iteration accounting -------------------------------------------------------
    def on_step(self, report: StepReport) -> None:
        """Feed MoPE; charge RFC shares; charge UFC per token when not proactive."""
        self._is_synced = False  # running requests advanced
        self._last_batch = mean = mean_batch_of(report)
        self.mope.observe_step(report, mean)
        self._now = report.start_time + report.duration_s
        self._kv_book.kv_blocks = (report.num_kv_blocks_used, report.num_kv_blocks_total)
        cfg = self.config
        if not self._k.proactive:
            for tenant, usage in report.per_tenant.items():
                if usage.num_output_tokens:
                    d = self._tenant_discount.get(tenant, 1.0)
                    self.charge(tenant, cfg.output_weight * usage.num_output_tokens * d / cfg.weight(tenant))
        if self._k.beta > 0.0:
            self._charge_rfc_step(report)

    def _charge_rfc_step(self, report: StepReport) -> None:
        plat = self.platform
        per = report.per_tenant
        num_decode = report.batch.num_decode_seqs or 1
        raw: dict[str, float] = {}
        for tenant, u in per.items():
            decode_seqs = u.num_output_tokens if u.num_prefill_tokens == 0 else 0
            if self._is_proxy:  # token proxies when the host knows nothing of the hardware
                raw[tenant] = u.num_prefill_tokens + u.num_output_tokens + u.num_context_tokens / 64.0
            else:
                raw[tenant] = (
                    u.num_prefill_tokens * plat.s_per_prefill_token
                    + u.num_context_tokens * plat.s_per_context_token
                    + decode_seqs * plat.s_weight_read / num_decode
                )
        total = sum(raw.values()) or 1.0
        c = self._k.compute_share
        rate = plat.tokens_per_s
        dur = report.duration_s
        blocks = report.num_kv_blocks_total or 1
        cfg = self.config
        for tenant, u in per.items():
            amount = rate * dur * (c * raw[tenant] / total + (1.0 - c) * u.num_kv_blocks / blocks)
            self.charge_rfc(tenant, amount / cfg.weight(tenant))

    # Mechanism hints ---------------------------------------------------------------
    def batch_limits(self, now: float, default: BatchLimits) -> BatchLimits:
        """Largest token budget whose predicted iteration stays under the TPOT target."""
        self._now = now
        p = self._k
        if not p.adaptive_batching or (
            self.platform.iteration_time is None and self.mope.iteration.num_observations < 32
        ):
            self._budget = default.max_num_batched_tokens
            return default
        last = self._last_batch
        d = last.num_decode_seqs
        # Nobody decoding: no TPOT to protect, prefill as fast as possible.
        budget = p.max_batched_tokens if d == 0 else self._adaptive_budget(d, last.decode_context_tokens + d)
        self._budget = budget
        limits = self._limits
        if limits.max_num_batched_tokens != budget or limits.max_num_seqs != default.max_num_seqs:
            limits = self._limits = BatchLimits(budget, default.max_num_seqs)
        return limits

    def batch_limits_floor(self, default: BatchLimits) -> BatchLimits:
        """Adaptive batching never goes below `min_batched_tokens` (nor the engine's budget) and keeps
        the engine's sequence cap."""
        if default is self._floor_of:
            return self._floor
        tokens = default.max_num_batched_tokens
        if self._k.adaptive_batching:
            tokens = min(tokens, self._k.min_batched_tokens)
        self._floor_of = default
        self._floor = BatchLimits(tokens, default.max_num_seqs)
        return self._floor

    def _adaptive_budget(self, d: int, ctx: int) -> int:
        """Bisection for the largest budget whose predicted hybrid iteration (`d` decodes attending
        `ctx` tokens plus a prefill chunk filling the budget) stays under the TPOT target.

        The search is a fixed sequence of comparisons, so when each comparison of the previous
        search still comes out the same, so does its answer: `_replays` checks that with a few
        predictions instead of the whole search (exact; it runs before every iteration).
        """
        p = self._k
        target = p.tpot_target_s
        if self._search_path and self.mope.iteration.is_monotone and self._replays(d, ctx, target):
            return self._search_budget
        return self._search(d, ctx, target)

    def _search(self, d: int, ctx: int, target: float) -> int:
        """`_adaptive_budget`'s bisection, when the previous one does not replay (a method of its own: the
        compiled core allocates a function's closure cells on every call, replayed or not)."""
        p = self._k
        path = []
        predict = self.mope.predict_iteration_s

        def fits(tokens: int) -> bool:
            chunk = max(0, tokens - d)
            ok = predict(batch_shape(chunk, 1 if chunk else 0, chunk * (chunk + 1) // 2, d, ctx)) <= target
            path.append((tokens, ok))
            return ok

        lo, hi = p.min_batched_tokens, p.max_batched_tokens
        if fits(hi):
            budget = hi
        elif not fits(lo):
            budget = lo
        else:
            while hi - lo > 64:
                mid = (lo + hi) // 2
                if fits(mid):
                    lo = mid
                else:
                    hi = mid
            budget = lo
        self._search_path = path
        self._search_budget = budget
        self._replay_by_d = {}
        return budget

    def _replays(self, d: int, ctx: int, target: float) -> bool:
        """True if every comparison of the previous search (`_search_path`: budget, fits) comes out
        the same for the batch of `d` decodes attending `ctx` tokens.

        Needs an iteration-time base that never falls when a batch count grows (the expert says
        so): time(t) = base(t) * ratio(regime of t) with base non-decreasing in the budget t. A
        point that fitted is then implied by a larger fitting point whose ratio is at least its
        own, a point that did not fit by a smaller non-fitting point whose ratio is at most its
        own; only the others are predicted anew. Walking the path backwards visits the fitting
        points largest first and the others smallest first (bisection moves lo up and hi down),
        so each verified point implies as many as it can. With the same decodes as when every
        comparison last held, a non-fitting point whose ratio did not fall needs no prediction
        while the context grows (during decode runs), nor a fitting one while it shrinks.
        """
        expert = self.mope.iteration
        state = self._replay_by_d.get(d)
        if state is None:  # each point's chunk and regime for this many decodes, once per search
            oks: list[bool] = []
            chunks: list[int] = []
            regimes: list[int] = []
            for tokens, fitted in reversed(self._search_path):
                c = tokens - d if tokens > d else 0
                oks.append(fitted)
                chunks.append(c)
                regimes.append(expert.regime_of(c, d))
            state = self._replay_by_d[d] = _Replay(oks, chunks, regimes)
        last = state.ratios
        if last is not None and state.expert is expert and (
                state.version == expert.ratio_version or expert.unchanged_since(state.version, state.regime_mask)
                or self._same_ratios(state, last, expert.ratio_at)):
            # No point's ratio moved since every comparison last held (other regimes' may have): the
            # walk below would predict again exactly the fitting points it could not imply if the
            # context grew, the non-fitting ones if it shrank, and nothing if it stayed.
            state.version = expert.ratio_version
            if ctx == state.ctx:
                return True
            is_growing = ctx > state.ctx
            for i in state.fitting if is_growing else state.failing:
                if (state.time_at(i, d, ctx, last[i], expert) > target) == is_growing:
                    return False
            state.ctx = ctx
            return True
        # Since the last time every comparison held with these decodes, a point's time grew if
        # the context did not shrink and its ratio did not fall, and fell in the opposite case.
        ratio_at = expert.ratio_at
        num_known = len(ratio_at)
        oks, regimes = state.oks, state.regimes
        ratios: list[float] = []  # each point's ratio now (kept when every comparison holds)
        is_later = ctx >= state.ctx
        is_earlier = ctx <= state.ctx
        top = -1.0  # largest ratio among known fitting points (all above the points left)
        bottom = math.inf  # smallest ratio among known non-fitting points (all below the points left)
        fitting: list[int] = []
        failing: list[int] = []
        for i in range(len(oks)):
            key = regimes[i]
            r = ratio_at[key] if key < num_known else 1.0  # expert.ratio.get(key, 1.0)
            ratios.append(r)
            if oks[i]:
                if r <= top:
                    continue
                if last is None or not is_earlier or r > last[i]:
                    if state.time_at(i, d, ctx, r, expert) > target:
                        return False
                top = r
                fitting.append(i)
            else:
                if r >= bottom:
                    continue
                if last is None or not is_later or r < last[i]:
                    if state.time_at(i, d, ctx, r, expert) <= target:
                        return False
                bottom = r
                failing.append(i)
        state.ratios = ratios
        state.ctx = ctx
        state.expert = expert
        state.version = expert.ratio_version
        state.fitting = fitting
        state.failing = failing
        return True

    @staticmethod
    def _same_ratios(state: _Replay, last: list[float], ratio_at: list[float]) -> bool:
        """True if every point of `state` has the ratio it had when every comparison last held."""
        num_known = len(ratio_at)
        regimes = state.regimes
        for i in range(len(regimes)):
            key = regimes[i]
            if (ratio_at[key] if key < num_known else 1.0) != last[i]:
                return False
        return True

    @property
    def reads_running_progress(self) -> bool:
        """Predicted-KV admission reads every running request's progress (it brings it up to date
        itself, only when it reads it, where the host gave a way to: `bind_progress_sync`)."""
        return bool(self._k.kv_admission) and self._sync is None

    def bind_progress_sync(self, sync: Callable[[], None]) -> None:
        """Keep the host's `sync`: called before reading running requests' progress, once per step."""
        self._sync = sync
        self._is_synced = False

    def bind_kv_held(self, held: Callable[[], Mapping[str, int]]) -> None:
        """Keep the host's per-tenant KV sums: `_kv_held` reads them instead of every running request."""
        self._held_of = held

    def _sync_progress(self) -> None:
        if not self._is_synced and self._sync is not None:
            self._sync()
            self._is_synced = True

    def kv_reservation_tokens(self, request: RequestView, num_free_tokens: int | None = None) -> int:
        """Free KV needed now so the predicted peak of future usage fits (LightLLM-style).

        Running request s holds c_s tokens and is predicted to grow g_s more before it
        finishes and frees everything. With the newcomer added (c = prompt, g = its
        predicted output), future usage peaks just before some request finishes:
        peak = max_i (sum_{j: g_j >= g_i} c_j + |{j: g_j >= g_i}| * g_i). The newcomer is
        admitted when free KV >= peak - sum_s c_s. Growth uses MoPE's point estimate
        times `kv_headroom`; a request past its estimate is assumed to run to its quantile.
        """
        p = self._k
        if not p.kv_admission:
            return super().kv_reservation_tokens(request)  # as every policy (VTC's reduction holds)
        if num_free_tokens is not None:
            bound = self._reservation_bound(request)
            if bound <= num_free_tokens:
                return bound  # fits either way: no pass over the running requests needed
        if not p.kv_fair_share:
            return self._peak_reservation(request, None)
        held_by: dict[str, float] = {}
        peak = self._peak_reservation(request, held_by)
        shares = self._kv_shares(request.tenant, held_by)
        return peak if shares is None else self._kv_book.reservation(
            shares, request.tenant, request.num_prompt_tokens, peak)

    def _reservation_bound(self, request: RequestView) -> int:
        """An upper bound on `kv_reservation_tokens` from running sums, in O(1).

        The peak is max_k (sum of the k largest-growth contexts + k * the k-th growth) <= all
        contexts + all growths, so peak - held <= prompt + the newcomer's growth + the running
        requests' growths; the fair share adds at most every tenant's typical size. A few tokens
        more cover the float rounding of the exact computation.
        """
        prompt = request.num_prompt_tokens
        pred = self.mope.predict_output(request.tenant, prompt, request.max_tokens)
        bound = prompt + math.ceil(pred.mean * self._k.kv_headroom) + self._growth_bound + 3
        return bound + self._kv_book.typical_bound if self._k.kv_fair_share else bound

    def _peak_reservation(self, request: RequestView, held_by: dict[str, float] | None) -> int:
        """The predicted-peak rule; with `held_by`, also fills in the KV tokens each tenant holds
        (`_kv_held`, in the same pass over the running requests: this runs at every admission)."""
        self._sync_progress()
        headroom = self._k.kv_headroom
        pred = self.mope.predict_output(request.tenant, request.num_prompt_tokens, request.max_tokens)
        items = [(pred.mean * headroom, float(request.num_prompt_tokens))]
        append = items.append
        held = 0.0
        for entry in self._admitted.values():
            view = entry.view
            if not entry.is_running or view is None:  # None: restored, not yet mentioned by the host
                continue
            done = view.num_output_tokens_done
            growth = entry.predicted_mean * headroom - done
            if growth <= 0:
                growth = max(entry.predicted_q - done, 1.0)
            computed = view.num_computed_tokens
            context = float(computed)
            held += context
            append((growth, context))
            if held_by is not None:
                tenant = view.tenant
                held_by[tenant] = held_by.get(tenant, 0.0) + computed
        items.sort(key=_growth, reverse=True)
        peak = 0.0
        suffix_context = 0.0
        count = 0
        for growth, context in items:
            count += 1
            suffix_context += context
            value = suffix_context + count * growth
            if value > peak:
                peak = value
        return int(peak - held) + 1

    def _kv_held(self) -> dict[str, float]:
        """KV tokens each tenant's running requests hold (float sums of integers: exact in any order)."""
        if self._held_of is not None:  # the host's per-tenant sums: the same integers, no pass, no sync
            return {tenant: float(tokens) for tenant, tokens in self._held_of().items()}
        self._sync_progress()
        held: dict[str, float] = {}
        for entry in self._admitted.values():
            view = entry.view
            if entry.is_running and view is not None:
                tenant = view.tenant
                held[tenant] = held.get(tenant, 0.0) + view.num_computed_tokens
        return held

    def _kv_shares(self, tenant: str, held: dict[str, float] | None = None) -> KvShares | None:
        """KV held (`held`, else `_kv_held()`) and weighted shares of the active tenants (kv_share.py);
        None while nothing is held."""
        return self._kv_book.shares(self._kv_held() if held is None else held, tenant, self._backlogged.members(),
                                    self._now, self._weight_of)

    # State that survives the host ---------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        """UFC (as `counters`), RFC, lift and normalisation state, the last latency discount per
        tenant, the running requests' predicted charges (reconciled on completion), what
        MoPE learned and the KV-fair-share inputs (latest arrivals, typical sizes, KV blocks).
        Not kept: the requests themselves (hosts own them)."""
        return {
            **super().export_state(),
            "rfc": dict(self._rfc),
            "tenant_discount": dict(self._tenant_discount),
            "coefficients": list(self._coeffs),
            "backlog_sums": [self._sum_ufc, self._sum_rfc],
            "now": self._now,
            "token_budget": self._budget,
            "last_batch": list(self._last_batch),
            "admitted": {
                rid: {"charged_ufc": e.charged_ufc, "predicted_mean": e.predicted_mean,
                      "predicted_quantile": e.predicted_q, "discount": e.discount,
                      "first_token_time": e.first_token_time, "is_running": e.is_running}
                for rid, e in self._admitted.items()
            },
            "platform": self.platform.name,
            "mope": self.mope.export_state(),
            "kv_share": self._kv_book.export(),
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Resume from `export_state()` (call `set_platform` first: iteration-time corrections
        learned on another platform are dropped, everything else is kept)."""
        super().restore_state(state)
        r = StateReader(self.name, state)
        self._rfc = r.number_map("rfc")
        self._tenant_discount = r.number_map("tenant_discount")
        coeffs = r.numbers("coefficients") or [1.0, 0.0]
        sums = r.numbers("backlog_sums") or [0.0, 0.0]
        last = r.numbers("last_batch")
        if len(coeffs) != 2 or len(sums) != 2 or len(last) not in (0, len(BatchShape._fields)):
            raise r.error("coefficients", "two numbers (backlog_sums two, last_batch five)", [coeffs, sums, last])
        self._coeffs = (coeffs[0], coeffs[1])
        self._sum_ufc, self._sum_rfc = sums
        self._last_batch = BatchShape(*(int(v) for v in last))
        self._now = r.number("now", 0.0)
        self._budget = r.integer("token_budget", 0)
        self._admitted = {}
        self._growth_bound = 0
        for rid, e in r.mappings("admitted").items():
            entry = self._admitted[rid] = _Admitted(
                None, e.number("charged_ufc"), e.number("predicted_mean"), e.number("predicted_quantile"),
                e.number("discount"), e.optional_number("first_token_time"), e.flag("is_running", True),
            )
            if entry.is_running:
                self._bound_growth(entry, 0)
        self._kv_book.restore(r.sub("kv_share"))
        platform = r.optional_string("platform")
        self.mope.restore_state(r.sub("mope"), has_same_base=platform in (None, self.platform.name))

    def resume_running(self, requests: Iterable[RequestView]) -> None:
        """Bind restored running entries to the host's requests again (their progress: KV held, growth)."""
        for request in requests:
            entry = self._admitted.get(request.request_id)
            if entry is not None and entry.view is None:
                entry.view = request

    def ufc(self) -> dict[str, float]:
        """User Fairness Counter per tenant."""
        return dict(self._counter)

    def rfc(self) -> dict[str, float]:
        """Resource Fairness Counter per tenant."""
        return dict(self._rfc)

    def counters(self) -> Mapping[str, float]:
        """Holistic Fairness scores per tenant."""
        return self.holistic_scores()

    def counter_breakdown(self) -> Mapping[str, Mapping[str, float]]:
        """UFC, RFC and HF per tenant (for plots)."""
        return {"ufc": dict(self._counter), "rfc": dict(self._rfc), "hf": self.holistic_scores()}


POLICIES.register("equinox", EquinoxPolicy, "Equinox: UFC + RFC holistic fairness, MoPE, adaptive batching")
