"""Shared value types: the mean batch of a folded report rounds exactly as the builtin `round` does."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from equinox.types import BatchLimits, StepReport, batch_shape, mean_batch_of, round_half_even


@given(st.floats(min_value=0.0, max_value=2.0**60, allow_nan=False, allow_infinity=False))
@example(0.5)
@example(1.5)
@example(2.5)
@example(0.49999999999999994)
@example(4503599627370495.5)  # the last half below 2**52
@example(2.0**53 + 2)
def test_round_half_even_is_round(x: float) -> None:
    assert round_half_even(x) == round(x)


@given(st.integers(0, 10**6), st.integers(1, 10**4))
def test_round_half_even_of_a_quotient_is_round(n: int, k: int) -> None:
    assert round_half_even(n / k) == round(n / k)


def test_mean_batch_of_a_folded_report_rounds_halves_to_even() -> None:
    batch = batch_shape(0, 0, 0, 10, 6)  # over 4 iterations: 2.5 decodes attending 1.5 tokens
    report = StepReport(7, 0.0, 0.4, batch, BatchLimits(4096, 128), {}, 0, 100, num_steps=4)
    mean = mean_batch_of(report)
    assert (mean.num_decode_seqs, mean.decode_context_tokens) == (2, 2)


def test_spec_fields_reads_the_simulators_requests_and_any_other_view_alike() -> None:
    from dataclasses import dataclass

    from equinox.request import Request, RequestSpec, spec_fields

    req = Request(RequestSpec("r1", "acme", 2.5, 100, 7, max_tokens=64))

    @dataclass
    class View:  # another host's view (the gateway's, the vLLM plug-in's): attributes only
        request_id: str = "r1"
        tenant: str = "acme"
        arrival_time: float = 2.5
        num_prompt_tokens: int = 100
        max_tokens: int | None = 64

    assert spec_fields(req) == spec_fields(View()) == ("r1", "acme", 2.5, 100, 64)  # type: ignore[arg-type]
