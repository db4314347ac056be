"""The VTC artifact's accounting options: profile cost function, oracle lengths, predict range."""

from __future__ import annotations

import pytest

from equinox.errors import ConfigError
from equinox.request import Request, RequestSpec
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policies.vtc_params import VtcParams, profile_cost
from equinox.scheduling.policy import make_policy
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage


def req(rid: str, tenant: str, prompt: int = 10, output: int = 10, max_tokens: int | None = None) -> Request:
    return Request(RequestSpec(rid, tenant, 0.0, prompt, output, max_tokens=max_tokens))


def step(per_tenant: dict[str, int]) -> StepReport:
    usage = {t: TenantUsage(num_output_tokens=n) for t, n in per_tenant.items()}
    return StepReport(0, 0.0, 0.1, BatchShape(), BatchLimits(2048, 256), usage, 0, 100)


def admit(policy) -> Request:  # type: ignore[no-untyped-def]
    head = policy.peek(0.0)
    assert head is not None
    policy.pop(head, 0.0)
    return head


def test_profile_cost_charges_f_of_prompt_then_output_as_generated() -> None:
    p = make_policy("vtc", PolicyConfig(params={"cost_function": "profile"}))
    r = req("a0", "a", prompt=256, output=256)
    p.add_request(r, 0.0)
    admit(p)
    assert p.counters()["a"] == pytest.approx(profile_cost(256, 0))
    assert p.reads_running_progress
    r.num_output_tokens_done = 100
    p.on_step(step({"a": 100}))
    assert p.counters()["a"] == pytest.approx(profile_cost(256, 100))
    r.num_output_tokens_done = 256
    p.on_finish(r, 1.0)
    assert p.counters()["a"] == pytest.approx(profile_cost(256, 256))


def test_oracle_charges_max_tokens_up_front_and_nothing_more() -> None:
    p = make_policy("vtc-predict", PolicyConfig(params={"output_predictor": "oracle"}))
    r = req("a0", "a", prompt=10, output=30, max_tokens=30)
    p.add_request(r, 0.0)
    admit(p)
    assert p.counters()["a"] == 10 + 2 * 30
    r.num_output_tokens_done = 30
    p.on_step(step({"a": 30}))
    p.on_finish(r, 1.0)
    assert p.counters()["a"] == 10 + 2 * 30


def test_predict_range_draws_within_range_charges_overrun_per_token_and_refunds_shortfall() -> None:
    params = {"output_predictor": "oracle", "predict_range": 0.5, "predict_seed": 3}
    p = make_policy("vtc-predict", PolicyConfig(params=params))
    rs = [req(f"a{i}", "a", prompt=10, output=100, max_tokens=100) for i in range(20)]
    guesses = []
    for r in rs:
        p.add_request(r, 0.0)
        before = p.counters()["a"]
        admit(p)
        guesses.append((p.counters()["a"] - before - 10) / 2)
    assert all(50 <= g <= 150 for g in guesses) and len(set(guesses)) == len(guesses)
    again = make_policy("vtc-predict", PolicyConfig(params=params))
    for r in rs[:3]:
        again.add_request(req(r.request_id, "a", prompt=10, output=100, max_tokens=100), 0.0)
    first = admit(again)
    assert first.request_id == "a0"
    assert again.counters()["a"] == pytest.approx(10 + 2 * guesses[0])  # same seed, same draws
    short, over = min(range(20), key=guesses.__getitem__), max(range(20), key=guesses.__getitem__)
    total = p.counters()["a"]
    rs[short].num_output_tokens_done = 100  # generated beyond its (< 100) prediction: charged as it goes
    p.on_step(step({"a": 100}))
    assert p.counters()["a"] == pytest.approx(total + 2 * (100 - guesses[short]))
    rs[over].num_output_tokens_done = 100  # fell short of its (> 100) prediction: refunded at completion
    total = p.counters()["a"]
    p.on_finish(rs[over], 1.0)
    assert p.counters()["a"] == pytest.approx(total - 2 * (guesses[over] - 100))


def test_waiting_listing_does_not_consume_draws_or_charges() -> None:
    params = {"output_predictor": "oracle", "predict_range": 0.5}
    p = make_policy("vtc-predict", PolicyConfig(params=params))
    q = make_policy("vtc-predict", PolicyConfig(params=params))
    for policy in (p, q):
        for i in range(4):
            tenant = "ab"[i % 2]
            policy.add_request(req(f"{tenant}{i}", tenant, max_tokens=50), 0.0)
    list(p.waiting())
    assert [admit(p).request_id for _ in range(4)] == [admit(q).request_id for _ in range(4)]
    assert p.counters() == q.counters()


@pytest.mark.parametrize(
    ("policy", "params", "message"),
    [
        ("vtc", {"cost_function": "quadratic"}, "cost_function must be one of"),
        ("vtc", {"output_predictor": "oracle"}, "unknown vtc parameter 'output_predictor'"),
        ("lcf", {"nope": 1}, "unknown lcf parameter 'nope'"),
        ("vtc-predict", {"predict_range": 0.5}, "output_predictor = 'oracle' only"),
        ("vtc-predict", {"output_predictor": "oracle", "predict_range": 1.5}, "predict_range must be in"),
        ("vtc-predict", {"predict_seed": 1.5}, "'predict_seed' must be an integer"),
        ("vtc-predict", {"ema_alpha": "fast"}, "'ema_alpha' must be a number"),
    ],
)
def test_bad_params_are_config_errors(policy: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_policy(policy, PolicyConfig(params=params))


def test_params_parse_strings_from_the_command_line() -> None:
    params = VtcParams.from_mapping({"cost_function": "Profile", "predict_seed": "7"}, "vtc-predict")
    assert params.cost_function == "profile" and params.predict_seed == 7
