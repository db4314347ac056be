"""Admission without HTTP: fair order under the simulator's policies, limits, retries, accounting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from gateway_helpers import make_config

from equinox.integrations.gateway.admission import (
    Admission,
    GatewayError,
    GatewayRequest,
    estimate_chat_tokens,
    estimate_prompt_tokens,
)
from equinox.integrations.gateway.backends import AdaptiveWindow, make_backends
from equinox.integrations.gateway.config import ConcurrencyConfig
from equinox.scheduling.policy import make_policy


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def setup(policy: str = "vtc", window: int = 1, backends: int = 1, **gateway: Any) -> tuple[Admission, Clock]:
    cfg = make_config([f"http://127.0.0.1:{9 + i}" for i in range(backends)], policy=policy, **gateway,
                      concurrency={"initial_window": window},
                      backends_extra={"models": ["m"], "max_concurrency": window})
    clock = Clock()
    backends = make_backends(cfg.backends, cfg.concurrency)
    return Admission(make_policy(cfg.policy, cfg.policy_config()), backends, cfg, clock), clock


def req(i: int, tenant: str, prompt: int = 10, max_tokens: int = 10) -> GatewayRequest:
    return GatewayRequest(f"r{i}", tenant, 0.0, prompt, max_tokens, "m")


def test_vtc_interleaves_tenants_through_one_slot() -> None:
    async def run() -> list[str]:
        adm, clock = setup("vtc", window=1)
        reqs = [req(i, "alice") for i in range(4)] + [req(10 + i, "bob") for i in range(4)]
        for r in reqs:
            adm.submit(r)
        order = []
        for _ in range(len(reqs)):
            (running,) = adm.running.values()
            order.append(running.tenant)
            adm.on_first_token(running, 0.01)
            running.add_output(running.max_tokens or 0)
            adm.report_usage()
            clock.now += 1.0
            adm.finish(running)
        return order

    order = asyncio.run(run())
    # bob has weight 2: he is served about twice as often while both are backlogged
    assert order[:3].count("bob") == 2 and order[:6].count("bob") == 4
    assert sorted(order) == ["alice"] * 4 + ["bob"] * 4


def test_fcfs_keeps_arrival_order() -> None:
    async def run() -> list[str]:
        adm, _ = setup("fcfs", window=1)
        for i, tenant in enumerate(["alice", "alice", "bob", "alice"]):
            adm.submit(req(i, tenant))
        out = []
        while adm.running:
            (r,) = adm.running.values()
            out.append(r.request_id)
            adm.finish(r)
        return out

    assert asyncio.run(run()) == ["r0", "r1", "r2", "r3"]


def test_queue_limits_and_rate_limits_raise_429() -> None:
    async def run() -> None:
        adm, _ = setup("vtc", window=1, tenants_extra={"max_queue": 2})
        for i in range(3):  # one dispatched, two waiting
            adm.submit(req(i, "alice"))
        with pytest.raises(GatewayError) as info:
            adm.submit(req(9, "alice"))
        assert info.value.status == 429 and info.value.retry_after_s == 1
        adm.submit(req(10, "bob"))  # another tenant's queue is separate

        adm2, _ = setup("rpm", window=8, tenants_extra={"rpm_limit": 2})
        adm2.submit(req(0, "alice"))
        adm2.submit(req(1, "alice"))
        with pytest.raises(GatewayError) as info:
            adm2.submit(req(2, "alice"))
        assert info.value.status == 429 and info.value.kind == "rate_limit"

    asyncio.run(run())


def test_retry_moves_to_another_backend_and_gives_up_when_none_is_left() -> None:
    async def run() -> None:
        adm, _ = setup("vtc", window=4, backends=2)
        r = req(0, "alice")
        adm.submit(r)
        first = await adm.wait_dispatch(r)
        assert adm.retry(r, "boom")
        second = await adm.wait_dispatch(r)
        assert second is not first and r.num_preemptions == 1
        assert not adm.retry(r, "boom again")  # both tried
        adm.finish(r)
        assert not adm.running and adm.policy.num_waiting == 0
        assert all(b.num_in_flight == 0 for b in adm.backends)

    asyncio.run(run())


def test_no_healthy_backend_fails_waiting_requests_with_503() -> None:
    async def run() -> None:
        adm, _ = setup("vtc", window=1)
        for b in adm.backends:
            b.is_probe_ok = False
        r = req(0, "alice")
        adm.submit(r)
        with pytest.raises(GatewayError) as info:
            await adm.wait_dispatch(r)
        assert info.value.status == 503
        assert adm.policy.num_waiting == 0

    asyncio.run(run())


def test_cancel_while_waiting_removes_from_policy_and_queue_timeout_is_503() -> None:
    async def run() -> None:
        adm, _ = setup("vtc", window=1, queue_timeout_s=0.05)
        a, b = req(0, "alice"), req(1, "alice")
        adm.submit(a)
        adm.submit(b)
        assert adm.policy.num_waiting == 1
        with pytest.raises(GatewayError) as info:
            await adm.wait_dispatch(b)
        assert info.value.status == 503 and info.value.kind == "queue_timeout"
        assert adm.policy.num_waiting == 0
        adm.finish(a)
        assert not adm.running

    asyncio.run(run())


@pytest.mark.parametrize("policy", ["vtc", "equinox", "vtc-predict", "lcf", "fcfs"])
def test_synthesised_usage_reports_charge_streamed_tokens(policy: str) -> None:
    async def run() -> None:
        adm, clock = setup(policy, window=4)
        r = req(0, "alice")
        adm.submit(r)
        clock.now = 0.1
        adm.on_first_token(r, 0.1)
        r.add_output(7)
        report = adm.report_usage()
        assert report is not None and report.per_tenant["alice"].num_output_tokens == 7
        assert report.per_tenant["alice"].num_prefill_tokens == 10
        before = dict(adm.policy.counters())
        clock.now = 0.2
        r.add_output(3)
        adm.report_usage()
        if policy in ("vtc", "lcf"):
            assert adm.policy.counters()["alice"] == before["alice"] + 2.0 * 3
        adm.finish(r)
        r.add_output(5)  # after the end (client gone): never charged
        assert adm.report_usage() is None

    asyncio.run(run())


def test_placement_prefers_the_backend_with_least_outstanding_work() -> None:
    async def run() -> None:
        adm, _ = setup("fcfs", window=4, backends=2)
        big, small, next_ = req(0, "alice", prompt=1000), req(1, "alice"), req(2, "alice")
        for r in (big, small, next_):
            adm.submit(r)
        assert [r.backend.name for r in (big, small, next_) if r.backend] == ["b0", "b1", "b1"]
        assert adm.backends[0].outstanding_tokens == 1010
        adm.on_first_token(big, 0.01)  # its prompt is done: only its output bound is left
        big.add_output(4)
        adm.report_usage()  # streamed tokens come off the backend's work at each usage report
        assert adm.backends[0].outstanding_tokens == 6
        later = req(3, "alice")
        adm.submit(later)
        assert later.backend is adm.backends[0]

    asyncio.run(run())


def test_backend_failure_after_the_first_token_keeps_traffic_away() -> None:
    async def run() -> None:
        adm, clock = setup("fcfs", window=4, backends=2)
        r = req(0, "alice")
        adm.submit(r)
        failed = r.backend
        assert failed is not None
        adm.on_first_token(r, 0.01)
        adm.finish(r, backend_error="connection reset")
        assert failed.num_failures == 1 and not failed.is_healthy(clock.now) and failed.num_in_flight == 0
        again = req(1, "alice")
        adm.submit(again)
        assert again.backend is not None and again.backend is not failed

    asyncio.run(run())


def test_adaptive_window_grows_on_good_samples_and_shrinks_on_slow_ones() -> None:
    w = AdaptiveWindow(ConcurrencyConfig(initial_window=4, target_ttft_s=1.0, decrease_cooldown_s=1.0), 64.0)
    for _ in range(40):
        w.on_sample(0.0, ttft_s=0.1)
    assert w.limit > 8
    grown = w.value
    w.on_sample(10.0, ttft_s=5.0)
    w.on_sample(10.1, ttft_s=5.0)  # within the cooldown: one decrease only
    assert w.value == pytest.approx(grown * 0.8)
    w.on_failure(20.0)
    assert w.value == pytest.approx(grown * 0.4)
    for _ in range(3000):  # +1/window per sample: about +1 per window's worth of good samples
        w.on_sample(30.0, itl_s=0.01)
    assert w.value == 64.0


def test_prompt_estimates() -> None:
    assert estimate_prompt_tokens([1, 2, 3], 4.0) == 3
    assert estimate_prompt_tokens("abcdefgh", 4.0) == 2
    assert estimate_prompt_tokens(["abcd", "abcdefgh"], 4.0) == 3
    assert estimate_chat_tokens([{"role": "user", "content": "abcd"}], 4.0) == 5
