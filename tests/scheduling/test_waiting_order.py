"""`Policy.waiting()` lists the waiting queue in exactly the order peek/pop would admit it.

Random workloads (arrivals, admissions, preemptions, aborts, steps, completions) drive each
policy; then the listing must equal what a deep copy of the policy admits when popped
until empty, and listing must not change what the policy itself admits afterwards.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from equinox.request import Request, RequestSpec
from equinox.scheduling.interface import Policy, PolicyConfig
from equinox.scheduling.policy import make_policy
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage

# (name, params, weights): every policy, Equinox with its ordering-relevant switches.
POLICIES = {
    "fcfs": ("fcfs", {}),
    "rpm": ("rpm", {}),
    "vtc": ("vtc", {}),
    "lcf": ("lcf", {}),
    "vtc-predict": ("vtc-predict", {"prior_output_tokens": 50}),
    "vtc-profile": ("vtc", {"cost_function": "profile"}),
    "vtc-predict-oracle": ("vtc-predict", {"output_predictor": "oracle", "predict_range": 0.3}),
    "equinox": ("equinox", {}),
    "equinox-holistic": ("equinox", {"beta": 0.5, "f_min": 0.3, "latency_scale_s": 0.5}),
    "equinox-fifo-rfc-only": ("equinox", {"alpha": 0.0, "beta": 1.0, "shortest_prompt_first": False}),
    "equinox-reactive": ("equinox", {"proactive": False, "f_min": 0.5, "aging_tokens_per_s": 5.0}),
}
WEIGHTS = {"t1": 2.0, "t2": 0.5}

op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 5), st.integers(1, 400), st.sampled_from([None, 4, 64, 512])),
    st.tuples(st.just("admit"), st.integers(1, 4)),
    st.tuples(st.just("preempt"), st.integers(0, 100)),
    st.tuples(st.just("abort"), st.integers(0, 100)),
    st.tuples(st.just("step"), st.integers(1, 8)),
    st.tuples(st.just("finish"), st.integers(0, 100)),
    st.tuples(st.just("tick"), st.floats(0.0, 3.0)),
)


def make(key: str) -> Policy:
    name, params = POLICIES[key]
    cfg = PolicyConfig(tenant_weights=WEIGHTS, params=params, rpm_limit=1e9 if name == "rpm" else None)
    return make_policy(name, cfg)


def drive(policy: Policy, ops: list[tuple]) -> float:
    """Apply `ops`; return the latest time given to pop/on_step (the listing's `now`)."""
    now = last = 0.0
    waiting: list[Request] = []
    running: list[Request] = []
    step_id = 0
    for n, o in enumerate(ops):
        kind = o[0]
        if kind == "tick":
            now += o[1]
        elif kind == "add":
            r = Request(RequestSpec(f"r{n}", f"t{o[1]}", now, o[2], 10, max_tokens=o[3]))
            if policy.add_request(r, now) is None:
                waiting.append(r)
        elif kind == "admit":
            for _ in range(o[1]):
                head = policy.peek(now)
                if head is None:
                    break
                policy.pop(head, now)
                last = now
                assert isinstance(head, Request)
                waiting.remove(head)
                head.admit_seq = step_id * 100 + len(running)
                running.append(head)
        elif kind == "preempt" and running:
            r = running.pop(o[1] % len(running))
            r.num_computed_tokens = 0
            r.num_preemptions += 1
            policy.requeue(r, now)
            waiting.append(r)
        elif kind == "abort" and waiting:
            r = waiting.pop(o[1] % len(waiting))
            policy.abort(r, now)
        elif kind == "step" and running:
            usage: dict[str, TenantUsage] = {}
            for r in running:
                new = o[1] if r.num_computed_tokens == 0 else 1
                prefill = r.num_tokens_to_compute if r.num_computed_tokens == 0 else 0
                r.num_computed_tokens = r.num_tokens + new - 1
                if r.num_output_tokens_done == 0:
                    policy.on_first_token(r, now + 0.05)
                r.num_output_tokens_done += new
                u = usage.get(r.tenant, TenantUsage())
                usage[r.tenant] = TenantUsage(u.num_prefill_tokens + prefill, u.num_output_tokens + new,
                                              u.num_context_tokens + r.num_computed_tokens, u.num_kv_blocks + 1)
            batch = BatchShape(sum(u.num_prefill_tokens for u in usage.values()), 0, 0, len(running), 100)
            policy.on_step(StepReport(step_id, now, 0.05, batch, BatchLimits(2048, 256),
                                      dict(sorted(usage.items())), len(running), 64))
            step_id += 1
            now += 0.05
            last = now
        elif kind == "finish" and running:
            r = running.pop(o[1] % len(running))
            policy.on_finish(r, now)
    return last


def admitted_until_empty(policy: Policy, now: float) -> list[str]:
    order = []
    while (head := policy.peek(now)) is not None:
        policy.pop(head, now)
        order.append(head.request_id)
    return order


@pytest.mark.parametrize("key", sorted(POLICIES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=60))
def test_listing_is_the_admission_order(key: str, ops: list[tuple]) -> None:
    policy = make(key)
    now = drive(policy, ops)
    reference = copy.deepcopy(policy)
    listed = [r.request_id for r in policy.waiting()]
    assert len(listed) == policy.num_waiting
    assert listed == admitted_until_empty(reference, now)
    # Listing mutated nothing: the policy itself admits the same sequence, charging the same.
    assert listed == admitted_until_empty(policy, now)
    assert policy.counter_breakdown() == reference.counter_breakdown()


def test_listing_follows_counters_not_arrivals() -> None:
    """VTC lists a light tenant's later request before a heavy tenant's earlier ones."""
    policy = make("vtc")
    for i, (tenant, prompt) in enumerate([("heavy", 300), ("heavy", 300), ("heavy", 300), ("light", 10)]):
        policy.add_request(Request(RequestSpec(f"r{i}", tenant, float(i), prompt, 10)), float(i))
    policy.pop(policy.peek(4.0), 4.0)  # type: ignore[arg-type]
    assert [r.request_id for r in policy.waiting()] == ["r3", "r1", "r2"]


def test_listing_with_many_tenants_follows_equinox_renormalisation() -> None:
    """Past the exact-scan limit (64 tenants) Equinox renormalises lazily; the listing replays that too."""
    policy = make("equinox-holistic")
    ops: list[tuple] = [("add", i % 70, 1 + (i * 37) % 300, None) for i in range(140)]
    ops += [("admit", 4), ("step", 8), ("tick", 0.5)] * 8 + [("finish", 3), ("add", 5, 20, None)]
    now = drive(policy, ops)
    listed = [r.request_id for r in policy.waiting()]
    assert len(listed) == policy.num_waiting > 64
    assert listed == admitted_until_empty(copy.deepcopy(policy), now)
    assert listed == admitted_until_empty(policy, now)
