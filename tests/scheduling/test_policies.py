"""Policies driven directly (no mechanism): FCFS order, RPM windows, VTC counters, lift, weights, LCF, VTC(predict)."""

from __future__ import annotations

import pytest

from equinox.errors import ConfigError, UnknownNameError
from equinox.request import Request, RequestSpec
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policy import make_policy, policy_names
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage


def req(
    rid: str, tenant: str, prompt: int = 10, output: int = 10, t: float = 0.0, max_tokens: int | None = None
) -> Request:
    return Request(RequestSpec(rid, tenant, t, prompt, output, max_tokens=max_tokens))


def step(per_tenant: dict[str, int]) -> StepReport:
    """A step report in which each tenant generated the given number of output tokens."""
    usage = {t: TenantUsage(num_output_tokens=n) for t, n in per_tenant.items()}
    return StepReport(0, 0.0, 0.1, BatchShape(), BatchLimits(2048, 256), usage, 0, 100)


def admit(policy, now: float = 0.0) -> Request:
    head = policy.peek(now)
    assert head is not None
    policy.pop(head, now)
    return head


def test_registry_names_and_unknown() -> None:
    assert {"fcfs", "rpm", "vtc", "lcf", "vtc-predict"} <= set(policy_names())
    with pytest.raises(UnknownNameError, match="unknown policy 'nope'"):
        make_policy("nope")


class TestFcfs:
    def test_arrival_order_across_tenants(self) -> None:
        p = make_policy("fcfs")
        rs = [req("1", "a"), req("2", "b"), req("3", "a"), req("4", "c")]
        for r in rs:
            assert p.add_request(r, 0.0) is None
        assert p.num_waiting == 4 and p.num_waiting_of("a") == 2
        assert [admit(p).request_id for _ in rs] == ["1", "2", "3", "4"]
        assert p.peek(0.0) is None and p.num_waiting == 0

    def test_requeue_goes_first_and_abort(self) -> None:
        p = make_policy("fcfs")
        r1, r2, r3 = req("1", "a"), req("2", "b"), req("3", "a")
        for r in (r1, r2, r3):
            p.add_request(r, 0.0)
        first = admit(p)
        p.abort(r2, 0.0)
        p.requeue(first, 1.0)
        assert [admit(p).request_id for _ in range(2)] == ["1", "3"]
        assert p.counters() == {}


class TestRpm:
    def test_needs_a_limit(self) -> None:
        with pytest.raises(ConfigError, match="rpm-limit"):
            make_policy("rpm")
        with pytest.raises(ConfigError, match="must be > 0"):
            make_policy("rpm", PolicyConfig(rpm_limit=-1.0))

    def test_rejects_over_limit_within_window_accepts_after(self) -> None:
        p = make_policy("rpm", PolicyConfig(rpm_limit=2))
        assert p.add_request(req("1", "a"), 0.0) is None
        assert p.add_request(req("2", "a"), 10.0) is None
        reason = p.add_request(req("3", "a"), 59.9)
        assert reason is not None and "rate limit" in reason and "'a'" in reason
        assert p.add_request(req("4", "b"), 59.9) is None  # other tenants are not affected
        assert p.add_request(req("5", "a"), 60.0) is None  # the request at t=0 left the window
        assert p.add_request(req("6", "a"), 65.0) is not None  # 10.0 and 60.0 are still in the window
        assert p.add_request(req("7", "a"), 70.0) is None  # 10.0 left it
        assert p.num_waiting == 5

    def test_window_is_sixty_seconds(self) -> None:
        p = make_policy("rpm", PolicyConfig(rpm_limit=1))
        assert p.add_request(req("1", "a"), 0.0) is None
        assert p.add_request(req("2", "a"), 59.999) is not None
        assert p.add_request(req("3", "a"), 60.0) is None
        assert p.add_request(req("4", "a"), 119.0) is not None
        assert p.add_request(req("5", "a"), 120.0) is None
        assert [admit(p).request_id for _ in range(3)] == ["1", "3", "5"]  # rejected never enter the queue

    def test_weights_and_per_tenant_limits(self) -> None:
        p = make_policy("rpm", PolicyConfig(rpm_limit=1, tenant_weights={"heavy": 3.0}, rpm_limits={"x": 2}))
        assert p.limit_of("heavy") == 3.0 and p.limit_of("x") == 2.0 and p.limit_of("other") == 1.0
        assert [p.add_request(req(f"h{i}", "heavy"), float(i)) is None for i in range(4)] == [True] * 3 + [False]


class TestVtc:
    def test_picks_min_counter_and_charges_prompt_at_admission(self) -> None:
        p = make_policy("vtc")
        for i in range(3):
            p.add_request(req(f"a{i}", "a", prompt=100), 0.0)
            p.add_request(req(f"b{i}", "b", prompt=10), 0.0)
        order = [admit(p).request_id for _ in range(6)]
        # a0 (a:100) then b0..b2 (b: 10, 20, 30 stay below 100), then a1 (a:200 > b:30)... b runs out
        assert order == ["a0", "b0", "b1", "b2", "a1", "a2"]
        assert p.counters() == {"a": 300.0, "b": 30.0}

    def test_output_tokens_charged_per_step(self) -> None:
        p = make_policy("vtc")
        p.add_request(req("a0", "a", prompt=10), 0.0)
        admit(p)
        p.on_step(step({"a": 3}))
        assert p.counters()["a"] == 10 + 2 * 3

    def test_lift_to_min_backlogged(self) -> None:
        p = make_policy("vtc")
        p.add_request(req("a0", "a", prompt=50), 0.0)
        p.add_request(req("a1", "a", prompt=50), 0.0)
        admit(p)  # a: 50, still backlogged
        p.add_request(req("b0", "b", prompt=5), 1.0)  # b was idle at 0: lifted to 50
        assert p.counters()["b"] == 50.0
        # no credit banked: b does not get to run ahead of a by its idle time
        assert admit(p).request_id == "a1"  # tie on 50: a was seen first
        assert admit(p).request_id == "b0"

    def test_lift_uses_last_left_when_nobody_waits(self) -> None:
        p = make_policy("vtc")
        p.add_request(req("a0", "a", prompt=70), 0.0)
        admit(p)  # a: 70, leaves the backlog
        p.add_request(req("b0", "b", prompt=5), 1.0)
        assert p.counters()["b"] == 70.0
        # a counter above the floor is never lowered
        p2 = make_policy("vtc")
        p2.add_request(req("x", "a", prompt=5), 0.0)
        admit(p2)
        p2.add_request(req("y", "b", prompt=50), 0.0)
        admit(p2)
        p2.add_request(req("z", "a", prompt=5), 0.0)  # a (5) lifted to last-left b (55)?
        assert p2.counters()["a"] == 55.0

    def test_weights_divide_charges(self) -> None:
        p = make_policy("vtc", PolicyConfig(tenant_weights={"gold": 2.0}))
        for i in range(6):
            p.add_request(req(f"g{i}", "gold", prompt=100), 0.0)
            p.add_request(req(f"s{i}", "silver", prompt=100), 0.0)
        order = [admit(p).tenant for _ in range(9)]
        assert order.count("gold") == 6 and order.count("silver") == 3
        assert p.counters() == {"gold": 300.0, "silver": 300.0}
        p.on_step(step({"gold": 4, "silver": 4}))
        assert p.counters() == {"gold": 304.0, "silver": 308.0}

    def test_no_skipping_head_is_fifo_within_tenant(self) -> None:
        p = make_policy("vtc")
        big, small = req("big", "a", prompt=5000), req("small", "a", prompt=1)
        p.add_request(big, 0.0)
        p.add_request(small, 0.0)
        p.add_request(req("b0", "b", prompt=1), 0.0)
        # the policy offers a's head; it does not look behind it for something smaller
        assert p.peek(0.0) is big
        assert p.peek(0.0) is big  # peek does not consume

    def test_requeue_front_and_no_double_prompt_charge(self) -> None:
        p = make_policy("vtc")
        r0, r1 = req("a0", "a", prompt=10), req("a1", "a", prompt=10)
        p.add_request(r0, 0.0)
        p.add_request(r1, 0.0)
        first = admit(p)
        p.requeue(first, 1.0)  # preempted
        assert p.peek(1.0) is r0
        admit(p)
        assert p.counters()["a"] == 10.0  # the prompt is charged once per request
        p.on_finish(r0, 2.0)

    def test_abort(self) -> None:
        p = make_policy("vtc")
        r = req("a0", "a")
        p.add_request(r, 0.0)
        p.abort(r, 0.0)
        assert p.num_waiting == 0 and p.peek(0.0) is None


class TestLcf:
    def test_no_lift_idle_tenant_banks_credit(self) -> None:
        p = make_policy("lcf")
        for i in range(3):
            p.add_request(req(f"a{i}", "a", prompt=100), 0.0)
        admit(p)
        admit(p)  # a: 200
        p.add_request(req("b0", "b", prompt=100), 1.0)
        p.add_request(req("b1", "b", prompt=100), 1.0)
        assert p.counters()["b"] == 0.0  # VTC would lift b to 200
        assert [admit(p).tenant for _ in range(3)] == ["b", "b", "a"]


class TestVtcPredict:
    def test_charges_prediction_up_front_and_reconciles(self) -> None:
        p = make_policy("vtc-predict", PolicyConfig(params={"prior_output_tokens": 50, "ema_alpha": 0.5}))
        r = req("a0", "a", prompt=10, output=20)
        p.add_request(r, 0.0)
        admit(p)
        assert p.counters()["a"] == 10 + 2 * 50
        p.on_step(step({"a": 20}))  # output is not charged per step
        assert p.counters()["a"] == 110.0
        r.num_output_tokens_done = 20
        p.on_finish(r, 5.0)
        assert p.counters()["a"] == 10 + 2 * 20  # reconciled to the actual output
        # the moving average moved to the observed length
        r2 = req("a1", "a", prompt=10, output=20)
        assert p.predicted_output(r2) == 20.0
        r3 = req("a2", "a", prompt=10, output=20, max_tokens=5)
        assert p.predicted_output(r3) == 5.0  # capped by max_tokens

    def test_ema_and_no_double_charge_on_readmission(self) -> None:
        p = make_policy("vtc-predict", PolicyConfig(params={"prior_output_tokens": 100, "ema_alpha": 0.5}))
        r = req("a0", "a", prompt=10, output=40)
        p.add_request(r, 0.0)
        admit(p)
        p.requeue(r, 1.0)
        admit(p)
        assert p.counters()["a"] == 10 + 200
        r.num_output_tokens_done = 40
        p.on_finish(r, 2.0)
        assert p.counters()["a"] == 90.0
        r2 = req("a1", "a", output=80)
        p.add_request(r2, 3.0)
        admit(p)
        r2.num_output_tokens_done = 80
        p.on_finish(r2, 4.0)
        assert p.predicted_output(req("a2", "a")) == 40 + 0.5 * (80 - 40)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"output_weight": -1.0}, "output_weight must be a number >= 0"),
    ({"prompt_weight": float("nan")}, "prompt_weight must be a number >= 0"),
    ({"tenant_weights": {"a": 0.0}}, "weight of tenant 'a' must be > 0"),
])
def test_policy_config_rejects_impossible_weights(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PolicyConfig(**kwargs)  # type: ignore[arg-type]
