"""Adaptive batching's replay shortcuts answer exactly what a fresh bisection answers (issue 13).

`EquinoxPolicy._adaptive_budget` re-checks the previous search's comparisons instead of searching
again (`_replays`), and skips even those whose ratio and context moved the safe way (including the
fast path while no iteration-time ratio changed at all). Here every answer is compared with the
bisection done from scratch, over random sequences of steps that move the batch, the context and
the learned ratios (measured times off the cost model's).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policies.equinox import EquinoxPolicy
from equinox.scheduling.policy import make_policy
from equinox.sim.cost_model import CostModel
from equinox.sim.cost_models import build_cost_model
from equinox.sim.hardware import make_deployment
from equinox.types import BatchLimits, BatchShape, StepReport

DEFAULT = BatchLimits(4096, 128)


def fresh_search(policy: EquinoxPolicy, d: int, ctx: int) -> int:
    """The policy's own bisection done from scratch (no previous search to replay), leaving its state as it was."""
    saved = policy._search_path, policy._search_budget, policy._replay_by_d
    policy._search_path = []
    try:
        return policy._adaptive_budget(d, ctx)
    finally:
        policy._search_path, policy._search_budget, policy._replay_by_d = saved


class WithoutContextTerms:
    """A monotone cost model that offers no `context_terms`: the replays predict their points through
    BatchShapes and the expert, as the fresh search does."""

    is_monotone = True

    def __init__(self, inner: CostModel) -> None:
        self.name = "without-context-terms"
        self._inner = inner

    def iteration_time(self, batch: BatchShape) -> float:
        return self._inner.iteration_time(batch)


# The replays predict from each point's context terms (vidur, roofline) or, without them, through the expert.
MODELS = ["vidur", "roofline", "without-context-terms"]


def equinox_on_a100(model: str = "vidur") -> EquinoxPolicy:
    # roofline on two GPUs: its context terms' tail (the all-reduces) is not zero
    deployment = make_deployment("a100-80gb", "llama-2-7b", 2 if model == "roofline" else 1)
    policy = make_policy("equinox", PolicyConfig(params={"tpot_target_s": 0.05}))
    assert isinstance(policy, EquinoxPolicy)
    cost: CostModel = (WithoutContextTerms(build_cost_model("vidur", deployment)) if model == "without-context-terms"
                       else build_cost_model(model, deployment))
    policy.set_platform(deployment.platform(cost))
    assert policy.mope.iteration.is_monotone  # the replays are in use
    assert (policy.mope.iteration.context_terms is None) == (model == "without-context-terms")
    return policy


# A step: decodes, the change of context per decode, a prefill chunk, and how far the measured time is off
# the prediction (mostly not at all, as in the simulator, so the ratios often stay while the context moves).
STEPS = st.lists(st.tuples(st.sampled_from([0, 8, 64, 64, 64, 120]), st.integers(-300, 600),
                           st.sampled_from([0, 0, 0, 16, 500, 3000]),
                           st.sampled_from([1.0, 1.0, 1.0, 1.0, 0.95, 1.05, 1.3, 0.7])), min_size=1, max_size=80)


@pytest.mark.parametrize("model", MODELS)
@settings(max_examples=100, deadline=None)
@given(steps=STEPS)
def test_every_budget_is_the_fresh_bisections(model: str, steps: list[tuple[int, int, int, float]]) -> None:
    policy = equinox_on_a100(model)
    now = 0.0
    per_seq = 1500
    for i, (d, change, chunk, off) in enumerate(steps):
        per_seq = max(1, per_seq + change)
        batch = BatchShape(chunk, 1 if chunk else 0, chunk * (chunk + 1) // 2, d, d * per_seq)
        duration = policy.mope.iteration.base(batch) * off if not batch.is_empty else 0.01
        policy.on_step(StepReport(i, now, duration, batch, DEFAULT, {}, 0, 1000))
        now += duration
        limits = policy.batch_limits(now, DEFAULT)
        last = policy._last_batch
        expected = policy.params.max_batched_tokens if last.num_decode_seqs == 0 else fresh_search(
            policy, last.num_decode_seqs, last.decode_context_tokens + last.num_decode_seqs)
        assert limits.max_num_batched_tokens == expected, (i, d, per_seq, chunk, off)


@pytest.mark.parametrize("model", MODELS)
def test_runs_of_growing_context_take_the_fast_path_and_stay_exact(model: str) -> None:
    """Decode runs: the same decodes, the context growing by one token each, ratios unchanged."""
    policy = equinox_on_a100(model)
    now = 0.0
    for i in range(200):
        d = 64 if i < 120 else 48
        batch = BatchShape(0, 0, 0, d, d * (900 + 40 * i))
        duration = policy.mope.iteration.base(batch)  # measured as predicted: no ratio moves
        policy.on_step(StepReport(i, now, duration, batch, DEFAULT, {}, 0, 1000))
        now += duration
        budget = policy.batch_limits(now, DEFAULT).max_num_batched_tokens
        assert budget == fresh_search(policy, d, batch.decode_context_tokens + d), i
    state = policy._replay_by_d.get(48)
    assert state is not None and state.expert is policy.mope.iteration and state.ratios is not None


@pytest.mark.parametrize("model", MODELS)
def test_runs_of_growing_context_while_another_regime_learns_stay_exact(model: str) -> None:
    """As above, but a small prefill measured 10 % slow before every decode step moves a ratio the search
    never reads: the replay walks every point each time, and only the growing context may change them."""
    policy = equinox_on_a100(model)
    now = 0.0
    for i in range(200):
        d = 64
        tiny = BatchShape(8, 1, 36, 0, 0)
        policy.on_step(StepReport(2 * i, now, policy.mope.iteration.base(tiny) * 1.1, tiny, DEFAULT, {}, 0, 1000))
        batch = BatchShape(0, 0, 0, d, d * (900 + 40 * i))
        duration = policy.mope.iteration.base(batch)
        policy.on_step(StepReport(2 * i + 1, now, duration, batch, DEFAULT, {}, 0, 1000))
        now += duration
        budget = policy.batch_limits(now, DEFAULT).max_num_batched_tokens
        assert budget == fresh_search(policy, d, batch.decode_context_tokens + d), i


@pytest.mark.parametrize("model", MODELS)
def test_a_ratio_on_the_search_path_that_rises_lowers_the_budget_exactly(model: str) -> None:
    """The same decodes and context every step, while prefills of the size the budget allows are measured
    twice as slow as predicted: their regime's ratio climbs, and the budget must follow the fresh bisection
    as soon as a point of the previous search stops fitting (the replay may not take its no-change path)."""
    policy = equinox_on_a100(model)
    d, ctx = 64, 64 * 100
    decode = BatchShape(0, 0, 0, d, ctx)
    now = 0.0
    budgets = []
    for i in range(120):
        budget = policy.batch_limits(now, DEFAULT).max_num_batched_tokens if i else DEFAULT.max_num_batched_tokens
        chunk = max(1, budget - d)
        slow = BatchShape(chunk, 1, chunk * (chunk + 1) // 2, d, ctx)
        policy.on_step(StepReport(2 * i, now, 2.0 * policy.mope.iteration.base(slow), slow, DEFAULT, {}, 0, 1000))
        policy.on_step(StepReport(2 * i + 1, now, policy.mope.iteration.base(decode), decode, DEFAULT, {}, 0, 1000))
        now += 0.1
        budget = policy.batch_limits(now, DEFAULT).max_num_batched_tokens
        assert budget == fresh_search(policy, d, ctx + d), i
        budgets.append(budget)
    assert len(set(budgets)) > 3  # the budget moved several times


@pytest.mark.parametrize("model", MODELS)
def test_growing_context_while_a_ratio_on_the_path_falls_stays_exact(model: str) -> None:
    """A ratio on the search path falls a little each step (prefills of the budget's size measured 1 % fast)
    while the context grows: a fitting point's time may still rise, so it is predicted again though its
    ratio fell (the walk may skip it only when the context did not grow)."""
    policy = equinox_on_a100(model)
    d = 64
    now = 0.0
    budget = DEFAULT.max_num_batched_tokens
    for i in range(200):
        ctx = d * (50 + 10 * i)
        chunk = max(1, budget - d)
        fast = BatchShape(chunk, 1, chunk * (chunk + 1) // 2, d, ctx)
        policy.on_step(StepReport(2 * i, now, 0.99 * policy.mope.iteration.base(fast), fast, DEFAULT, {}, 0, 1000))
        decode = BatchShape(0, 0, 0, d, ctx)
        policy.on_step(StepReport(2 * i + 1, now, policy.mope.iteration.base(decode), decode, DEFAULT, {}, 0, 1000))
        now += 0.1
        budget = policy.batch_limits(now, DEFAULT).max_num_batched_tokens
        assert budget == fresh_search(policy, d, ctx + d), i
