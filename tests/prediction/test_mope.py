"""MoPE experts: gate by evidence, max_tokens cap, online correction, determinism."""

from __future__ import annotations

import bisect
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equinox.prediction.experts.iteration_time import IterationTimeExpert, OnlineLinearModel
from equinox.prediction.experts.output_length import OutputLengthConfig, OutputLengthExpert
from equinox.prediction.experts.ttft import TtftExpert
from equinox.prediction.experts.utilisation import UtilisationExpert
from equinox.prediction.interface import RecentStats, is_whole, native_bisect_left, native_bisect_right
from equinox.prediction.mope import MoPE
from equinox.types import BatchShape, batch_shape


def test_gate_moves_from_prior_to_global_bucket_and_tenant_with_evidence() -> None:
    cfg = OutputLengthConfig(min_tenant_evidence=4, min_bucket_evidence=6, min_global_evidence=8)
    e = OutputLengthExpert(cfg)
    assert e.predict("a", 100, None).source == "prior"
    for i in range(8):
        e.observe("b", 1000 + i, 50)  # other tenant, other bucket
    p = e.predict("a", 100, None)
    assert (p.source, p.mean) == ("global", 50.0)
    for _ in range(6):
        e.observe("c", 100, 20)  # same prompt bucket as the query
    assert e.predict("a", 100, None).source == "bucket"
    for _ in range(4):
        e.observe("a", 5000, 300)
    p = e.predict("a", 100, None)
    assert (p.source, p.mean, p.quantile) == ("tenant", 300.0, 300.0)


def test_prediction_is_capped_by_max_tokens() -> None:
    e = OutputLengthExpert()
    p = e.predict("a", 10, 32)
    assert p.mean <= 32 and p.quantile == 32 and p.source == "max_tokens"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "b", "c"]), st.integers(1, 3000),
                          st.integers(1, 400), st.none() | st.integers(1, 400)), max_size=120))
def test_remembered_answers_are_those_of_an_expert_that_remembers_nothing(
        ops: list[tuple[bool, str, int, int, int | None]]) -> None:
    """An answer kept across other tenants' observations (a tenant on its own history) or across nothing
    (the others) is what an expert restored from the same histories, with nothing remembered, answers."""
    config = OutputLengthConfig(history=6, min_tenant_evidence=3, min_bucket_evidence=4, min_global_evidence=5)
    expert = OutputLengthExpert(config)
    for is_observation, tenant, prompt, output, max_tokens in ops:
        if is_observation:
            expert.observe(tenant, prompt, output)
            continue
        fresh = OutputLengthExpert(config)
        state = expert.export_state()
        fresh.restore_state({t: (h["values"], h["count"]) for t, h in state["tenants"].items()},
                            {int(b): (h["values"], h["count"]) for b, h in state["buckets"].items()},
                            (state["global"]["values"], state["global"]["count"]))
        assert expert.predict(tenant, prompt, max_tokens) == fresh.predict(tenant, prompt, max_tokens)
        assert expert.predict(tenant, prompt, max_tokens) == fresh.predict(tenant, prompt, max_tokens)


def test_quantile_is_conservative() -> None:
    e = OutputLengthExpert(OutputLengthConfig(quantile=0.9, min_tenant_evidence=1))
    for v in range(1, 101):
        e.observe("a", 10, v)
    p = e.predict("a", 10, None)
    assert p.mean == pytest.approx(50.5)
    assert p.quantile == 90.0


def test_iteration_expert_corrects_a_biased_base_model_per_regime() -> None:
    expert = IterationTimeExpert(lambda b: 0.01 + 1e-4 * b.num_prefill_tokens)
    prefill = BatchShape(1000, 1, 0, 0, 0)
    decode = BatchShape(0, 0, 0, 32, 3200)
    for _ in range(200):
        expert.observe(prefill, 2 * (0.01 + 0.1))  # the real engine is twice as slow on prefill
        expert.observe(decode, 0.01)  # and exact on decode
    assert expert.predict(prefill) == pytest.approx(0.22, rel=0.01)
    assert expert.predict(decode) == pytest.approx(0.01, rel=0.01)


def test_online_linear_model_learns_an_engine_without_a_cost_model() -> None:
    m = OnlineLinearModel()
    truth = lambda b: 0.004 + 3e-5 * b.num_prefill_tokens + 4e-4 * b.num_decode_seqs  # noqa: E731
    shapes = [BatchShape(p, 1 if p else 0, 0, d, d * 50) for p in (0, 64, 512, 2048) for d in (0, 8, 64)]
    shapes = [s for s in shapes if not s.is_empty]
    for _ in range(50):
        for s in shapes:
            m.observe(s, truth(s))
    for s in shapes:
        assert m.predict(s) == pytest.approx(truth(s), rel=0.05)


def test_ttft_expert_counts_waiting_queue_and_chunks() -> None:
    ttft = TtftExpert(lambda b: 0.01 + 1e-5 * b.num_prefill_tokens)
    one = ttft.prefill_s(1000, 512, 12, 0)  # 500 tokens a chunk next to 12 decodes -> 2 chunks
    assert one == pytest.approx(2 * (0.01 + 500e-5))
    assert ttft.predict(3.0, 1000, 0, 512, 12, 0) == pytest.approx(3.0 + one)
    assert ttft.predict(0.0, 1000, 2000, 512, 12, 0) > one


def test_utilisation_expert_mfu_and_busy_fraction() -> None:
    u = UtilisationExpert(lambda b: 0.1, lambda b: 1e12, peak_flops=1e14)
    assert u.mfu(BatchShape(10, 1, 0, 0, 0)) == pytest.approx(0.1)
    for i in range(200):
        u.observe(start_time=i * 0.2, duration_s=0.1)  # busy half the time
    assert u.busy_fraction == pytest.approx(0.5, abs=0.02)


def test_mope_is_deterministic() -> None:
    def feed(m: MoPE) -> list[float]:
        out = []
        for i in range(300):
            m.observe_finish(f"t{i % 3}", 10 + i, (i * 37) % 200 + 1)
            p = m.predict_output(f"t{i % 5}", 10 + 2 * i, None)
            out += [p.mean, p.quantile]
        return out

    assert feed(MoPE()) == feed(MoPE())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 10**6).map(float), st.floats(0.0, 1e6)), min_size=1, max_size=60),
       st.integers(1, 12))
def test_recent_stats_mean_and_quantile_are_those_of_the_window(values: list[float], capacity: int) -> None:
    """The running integer sum gives math.fsum's mean to the bit; non-integers fall back to fsum."""
    s = RecentStats(capacity, 0.9)
    for i, v in enumerate(values):
        s.add(v)
        window = values[max(0, i + 1 - capacity):i + 1]
        assert s.mean == math.fsum(window) / len(window)
        ordered = sorted(window)
        assert s.quantile == ordered[min(len(ordered) - 1, max(0, math.ceil(0.9 * len(ordered)) - 1))]
    again = RecentStats(capacity, 0.9)
    again.restore_state(**s.export_state())
    assert again.mean == s.mean and again.quantile == s.quantile


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500).map(float) | st.floats(0.0, 1e3), st.integers(0, 40)), min_size=1,
                max_size=300), st.integers(1, 40))
def test_recent_stats_read_now_and_then_are_those_of_the_window(steps: list[tuple[float, int]],
                                                                capacity: int) -> None:
    """A window read only now and then (after more than `UNREAD_LIMIT` unread observations it stops keeping
    its sorted copy and sorts again when read) answers what one read after every observation does."""
    s = RecentStats(capacity, 0.9)
    values = []
    for value, gap in steps:
        s.add(value)
        values.append(value)
        if gap < 3:  # reads now and then: runs of unread observations well past UNREAD_LIMIT
            window = values[-capacity:]
            assert s.mean == math.fsum(window) / len(window)
            ordered = sorted(window)
            assert s.quantile == ordered[min(len(ordered) - 1, max(0, math.ceil(0.9 * len(ordered)) - 1))]
    assert s.export_state() == {"values": values[-capacity:], "count": len(values)}
    again = RecentStats(capacity, 0.9)
    again.restore_state(**s.export_state())
    assert again.mean == s.mean and again.quantile == s.quantile
    assert again.export_state() == s.export_state()


def test_recent_stats_needs_room_for_one_observation() -> None:
    with pytest.raises(ValueError, match="capacity of at least 1"):
        RecentStats(0, 0.9)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(0, 40).map(float) | st.floats(-1e3, 1e3), max_size=40), st.floats(-1e3, 1e3)
       | st.integers(-1, 41).map(float))
def test_recent_stats_native_bisects_are_bisects(values: list[float], x: float) -> None:
    """The compiled core's window search (`IS_NATIVE`) finds what `bisect` finds, duplicates included."""
    xs = sorted(values)
    assert native_bisect_left(xs, x) == bisect.bisect_left(xs, x)
    assert native_bisect_right(xs, x) == bisect.bisect_right(xs, x)
    for v in xs:
        assert native_bisect_left(xs, v) == bisect.bisect_left(xs, v)
        assert native_bisect_right(xs, v) == bisect.bisect_right(xs, v)


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-2**60, 2**60).map(float)
       | st.integers(-2**53, 2**53).map(lambda n: n + 0.5))
def test_is_whole_is_remainder_zero(x: float) -> None:
    """The windows' whole-number test answers `x % 1.0 == 0.0` for every double (inf, nan, -0.0 and
    beyond 2**52 included), compiled as interpreted."""
    assert is_whole(x) == (x % 1.0 == 0.0)


@pytest.mark.parametrize("x", [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0**52, 2.0**52 + 1, 2.0**52 - 0.5, -(2.0**52) - 1,
                               2.0**53, 1e300, -1e300, math.inf, -math.inf, math.nan, 5e-324, 4095.0, 4096.0])
def test_is_whole_edges(x: float) -> None:
    assert is_whole(x) == (x % 1.0 == 0.0)


@given(st.lists(st.integers(0, 10**6), min_size=5, max_size=5))
def test_batch_shape_is_the_named_tuple(counts: list[int]) -> None:
    shape = batch_shape(*counts)
    assert type(shape) is BatchShape and shape == BatchShape(*counts) and shape.num_tokens == counts[0] + counts[3]


def _toy_base(b: BatchShape) -> float:
    return 0.01 + b.num_prefill_tokens * 1e-5 + b.num_decode_seqs * 1e-4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 100), st.floats(0.001, 1.0)), max_size=40),
       st.data())
def test_unchanged_since_never_claims_a_moved_ratio(steps: list[tuple[int, int, float]], data: st.DataObject) -> None:
    """Adaptive batching skips re-checking its search's ratios when the expert says none of their regimes
    changed: whenever it says so, each of those ratios is what it was at that version, to the bit."""
    expert = IterationTimeExpert(_toy_base)
    snapshots = []
    for prefill, decode, duration in steps:
        snapshots.append((expert.ratio_version, list(expert.ratio_at)))
        expert.observe(batch_shape(prefill, 1 if prefill else 0, prefill, decode, decode * 100), duration)
    if data.draw(st.booleans()):  # a restore (every ratio set again) between the snapshots and the questions
        ratios = {(phase, size): r for phase, size, r in expert.export_state()["ratios"]}
        expert.restore_state(ratios, expert.num_observations)
    keys = list(range(len(expert.ratio_at) + 2))
    for version, then_ratios in snapshots:
        regimes = data.draw(st.lists(st.sampled_from(keys), max_size=5))
        if expert.unchanged_since(version, sum({1 << k for k in regimes})):
            now = [expert.ratio_at[k] if k < len(expert.ratio_at) else 1.0 for k in regimes]
            then = [then_ratios[k] if k < len(then_ratios) else 1.0 for k in regimes]
            assert now == then


def test_unchanged_since_says_so_for_the_regimes_a_step_left_alone() -> None:
    expert = IterationTimeExpert(_toy_base)
    decode = batch_shape(0, 0, 0, 32, 3200)
    expert.observe(decode, 0.02)
    version = expert.ratio_version
    moved = expert.regime_of(0, 32)
    other = expert.regime_of(2048, 32)
    assert moved != other
    expert.observe(decode, 0.03)  # the decode regime's ratio moves again
    assert expert.unchanged_since(version, 1 << other) and not expert.unchanged_since(version, 1 << other | 1 << moved)
    for _ in range(9):  # more changes than it remembers: not known, so not claimed
        expert.observe(decode, 0.04)
    assert not expert.unchanged_since(version, 1 << other)
