"""Policy state: export/restore gives the same decisions as never stopping; the snapshot format's checks."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from equinox.errors import ConfigError
from equinox.request import Request, RequestSpec, RequestStatus
from equinox.scheduling.interface import Platform, Policy, PolicyConfig
from equinox.scheduling.policies.equinox import EquinoxPolicy
from equinox.scheduling.policy import make_policy
from equinox.scheduling.state import (
    FORMAT,
    VERSION,
    StateReader,
    check_snapshot,
    read_snapshot,
    restore,
    snapshot,
    write_snapshot,
)
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage

TENANTS = ("a", "b", "c", "d")
BLOCK = 16
NUM_BLOCKS = 4096
LIMITS = BatchLimits(2048, 256)

# (policy, config): every registered policy, Equinox with each component switched on.
CASES: dict[str, tuple[str, PolicyConfig]] = {
    "fcfs": ("fcfs", PolicyConfig()),
    "rpm": ("rpm", PolicyConfig(rpm_limit=6, tenant_weights={"a": 2.0})),
    "vtc": ("vtc", PolicyConfig(tenant_weights={"a": 2.0, "c": 0.5})),
    "lcf": ("lcf", PolicyConfig()),
    "vtc-predict": ("vtc-predict", PolicyConfig(tenant_weights={"b": 3.0})),
    "vtc-profile": ("vtc", PolicyConfig(params={"cost_function": "profile"})),
    "vtc-oracle": ("vtc-predict", PolicyConfig(params={"output_predictor": "oracle", "predict_range": 0.3,
                                                       "predict_seed": 7})),
    "equinox": ("equinox", PolicyConfig(tenant_weights={"a": 2.0})),
    "equinox-holistic": ("equinox", PolicyConfig(params={"alpha": 0.5, "beta": 0.5, "f_min": 0.5})),
    "equinox-reactive": ("equinox", PolicyConfig(params={"proactive": False, "beta": 1.0, "f_min": 0.7})),
    "equinox-rfc-only": ("equinox", PolicyConfig(params={"alpha": 0.0, "beta": 1.0})),
}

# Charges that follow running requests through their views (VTC's artifact options) are
# settled at completion for requests running across a restore: these export when idle.
SETTLED_AT_FINISH = {"vtc-profile", "vtc-oracle"}


@dataclass
class World:
    """A tiny host: requests, a running set and a clock, driving every policy in lockstep."""

    policies: list[Policy]
    now: float = 0.0
    step_id: int = 0
    num_arrived: int = 0
    waiting: list[Request] = field(default_factory=list)
    running: list[Request] = field(default_factory=list)
    log: list[Any] = field(default_factory=list)  # every decision the policies made

    def same(self, values: list[Any]) -> Any:
        assert all(v == values[0] for v in values), values
        return values[0]

    def arrive(self, tenant: str, prompt: int, output: int, max_tokens: int | None, dt: float) -> None:
        self.now += dt
        self.num_arrived += 1
        r = Request(RequestSpec(f"r{self.num_arrived}", tenant, self.now, prompt, output, max_tokens))
        r.num_target_tokens = r.spec.num_generated_tokens
        reason = self.same([p.add_request(r, self.now) for p in self.policies])
        self.log.append(("add", r.request_id, reason))
        if reason is None:
            self.waiting.append(r)

    def admit(self, count: int) -> None:
        for _ in range(count):
            head = self.same([p.peek(self.now) for p in self.policies])
            self.log.append(("peek", None if head is None else head.request_id))
            if head is None:
                return
            for p in self.policies:
                p.pop(head, self.now)
            self.waiting.remove(head)
            head.status = RequestStatus.RUNNING
            head.admit_seq = self.step_id * 1000 + len(self.running)
            self.running.append(head)

    def step(self, duration_s: float) -> None:
        if not self.running:
            return
        limits = self.same([p.batch_limits(self.now, LIMITS) for p in self.policies])
        self.log.append(("limits", limits))
        usage: dict[str, list[int]] = {}
        prefill = prefill_seqs = pairs = decode = context = 0
        first: list[Request] = []
        for r in self.running:
            u = usage.setdefault(r.tenant, [0, 0, 0, 0])  # prefill, output, context, KV blocks
            todo = r.num_prompt_tokens + r.num_output_tokens_done - r.num_computed_tokens
            if todo > 0:  # (re)prefill in one chunk; the first prefill samples the first token
                prefill, prefill_seqs, pairs = prefill + todo, prefill_seqs + 1, pairs + todo * (todo + 1) // 2
                u[0] += todo
                r.num_computed_tokens += todo
                if r.num_output_tokens_done == 0:
                    r.num_output_tokens_done = 1
                    u[1] += 1
                    first.append(r)
            else:
                decode, context = decode + 1, context + r.num_computed_tokens
                u[2] += r.num_computed_tokens
                r.num_computed_tokens += 1
                r.num_output_tokens_done += 1
                u[1] += 1
            u[3] += math.ceil(r.num_computed_tokens / BLOCK)
        start = self.now
        self.now += duration_s
        self.step_id += 1
        per = {t: TenantUsage(*usage[t]) for t in sorted(usage)}
        report = StepReport(
            self.step_id, start, duration_s, BatchShape(prefill, prefill_seqs, pairs, decode, context), limits,
            per, sum(u.num_kv_blocks for u in per.values()), NUM_BLOCKS,
        )
        for p in self.policies:
            p.on_step(report)
        for r in first:
            for p in self.policies:
                p.on_first_token(r, self.now)
        for r in [r for r in self.running if r.num_output_tokens_done >= r.num_target_tokens]:
            self.running.remove(r)
            r.status = RequestStatus.FINISHED
            for p in self.policies:
                p.on_finish(r, self.now)

    def preempt(self, index: int) -> None:
        if not self.running:
            return
        victim = self.same([p.choose_victim(self.running, self.now) for p in self.policies])
        if index % 2:
            victim = self.running[index % len(self.running)]
        self.running.remove(victim)
        victim.num_computed_tokens = 0
        victim.num_preemptions += 1
        victim.status = RequestStatus.PREEMPTED
        for p in self.policies:
            p.requeue(victim, self.now)
        self.waiting.insert(0, victim)

    def abort(self, index: int) -> None:
        if not self.waiting:
            return
        r = self.waiting.pop(index % len(self.waiting))
        for p in self.policies:
            p.abort(r, self.now)

    def apply(self, op: tuple[Any, ...]) -> None:
        getattr(self, op[0])(*op[1:])
        self.same([json.dumps(p.export_state()) for p in self.policies])
        self.same([p.num_waiting for p in self.policies])


OPS = st.one_of(
    st.tuples(st.just("arrive"), st.sampled_from(TENANTS), st.integers(1, 400), st.integers(1, 40),
              st.none() | st.integers(1, 30), st.floats(0.0, 3.0)),
    st.tuples(st.just("admit"), st.integers(1, 4)),
    st.tuples(st.just("step"), st.floats(0.001, 0.5)),
    st.tuples(st.just("preempt"), st.integers(0, 7)),
    st.tuples(st.just("abort"), st.integers(0, 7)),
)


def fresh(case: str) -> Policy:
    name, config = CASES[case]
    return make_policy(name, config)


def run_with_restart(case: str, before: list[tuple[Any, ...]], after: list[tuple[Any, ...]], *,
                     resume: bool = True) -> None:
    """Drive `before`, admit what waits, snapshot through JSON into a fresh policy, drive both on."""
    original = fresh(case)
    world = World([original])
    for op in before:
        world.apply(op)
    world.admit(len(world.waiting))
    while case in SETTLED_AT_FINISH and world.running:
        world.step(0.05)
    assert original.num_waiting == 0
    snap = json.loads(json.dumps(snapshot(original, world.now), allow_nan=False))
    restored = fresh(case)
    restore(restored, snap)
    if resume:
        restored.resume_running(world.running)  # this host's running requests outlive the restart
    assert json.dumps(restored.export_state()) == json.dumps(original.export_state())
    world.policies.append(restored)
    for op in after:
        world.apply(op)
    while world.running or world.waiting:  # finish everything: completions reconcile restored charges
        world.admit(len(world.waiting))
        world.step(0.05)


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.lists(OPS, max_size=60), after=st.lists(OPS, max_size=60))
def test_restore_then_continue_decides_as_never_stopping(case: str, before: list[Any], after: list[Any]) -> None:
    run_with_restart(case, before, after)


def test_equinox_sees_the_running_requests_handed_back_after_a_restore() -> None:
    """Found by the test above: tenants tied on UFC, and KV fair share lets the one holding less KV
    go first. Restored entries know their requests only once the host hands them back
    (`resume_running`); without that the restored policy counts no KV for them and admits the
    other tenant."""
    before = [("arrive", "b", 1, 1, None, 0.0), ("arrive", "b", 128, 2, None, 0.0), ("admit", 1),
              ("arrive", "a", 1, 1, None, 0.0), ("admit", 1), ("step", 0.5), ("arrive", "a", 2, 2, None, 0.0)]
    after = [("arrive", "a", 1, 1, None, 0.0), ("step", 0.5), ("arrive", "b", 1, 1, None, 0.0)]
    run_with_restart("equinox", before, after)
    with pytest.raises(AssertionError):
        run_with_restart("equinox", before, after, resume=False)


def test_a_restored_policy_differs_from_a_fresh_one() -> None:
    """The check above can fail: a fresh policy (no restore) makes other decisions."""
    busy = [("arrive", "a", 100, 20, None, 0.1), ("admit", 1), *[("step", 0.1)] * 25,
            ("arrive", "b", 100, 20, None, 0.1), ("admit", 1), ("step", 0.1)]
    original = fresh("vtc")
    world = World([original])
    for op in busy:
        world.apply(op)
    unrestored = fresh("vtc")
    world.policies.append(unrestored)
    with pytest.raises(AssertionError):
        world.apply(("arrive", "a", 10, 5, None, 0.1))


def test_restored_running_requests_are_reconciled_and_not_recharged() -> None:
    p = fresh("vtc-predict")
    world = World([p])
    for op in [("arrive", "a", 50, 10, None, 0.0), ("admit", 1), ("step", 0.1)]:
        world.apply(op)
    state = p.export_state()
    assert state["charged"] == ["r1"] and set(state["predicted"]) == {"r1"}
    q = fresh("vtc-predict")
    q.restore_state(json.loads(json.dumps(state)))
    running = world.running[0]
    q.requeue(running, 1.0)  # preempted after the restart: the prompt is not charged again
    q.pop(running, 1.0)
    assert q.counters() == p.counters()


def test_profile_charges_of_requests_running_across_a_restore_are_settled_at_completion() -> None:
    """Per-request charges resume without their views: the output is charged when the request
    finishes, so once everything finished every tenant has paid what it would have paid."""
    ops = [("arrive", t, 30 + 7 * i, 12, None, 0.01) for i, t in enumerate("abcab")]
    original = fresh("vtc-profile")
    world = World([original])
    for op in [*ops, ("admit", 5), ("step", 0.1), ("step", 0.1)]:
        world.apply(op)
    state = json.loads(json.dumps(original.export_state()))
    assert set(state["request_charges"]["charged_output"]) == {"r1", "r2", "r3", "r4", "r5"}
    restored = fresh("vtc-profile")
    restored.restore_state(state)
    world.policies.append(restored)
    while world.running:
        world.step(0.1)
    for tenant, value in original.counters().items():
        assert restored.counters()[tenant] == pytest.approx(value, rel=1e-12)


def test_oracle_draws_continue_after_a_restore() -> None:
    p = fresh("vtc-oracle")
    world = World([p])
    for op in [("arrive", "a", 10, 5, 20, 0.0), ("admit", 1), ("step", 0.1)]:
        world.apply(op)
    while world.running:
        world.step(0.1)
    q = fresh("vtc-oracle")
    q.restore_state(json.loads(json.dumps(p.export_state())))
    world.policies.append(q)
    world.apply(("arrive", "b", 10, 5, 20, 0.0))
    world.apply(("admit", 1))  # the same draw charged on both: export_state compared in `apply`


def test_equinox_state_holds_what_mope_learned() -> None:
    p = fresh("equinox")
    assert isinstance(p, EquinoxPolicy)
    world = World([p])
    for i in range(12):
        world.apply(("arrive", "a", 40 + i, 7, None, 0.1))
    while world.waiting or world.running:
        world.admit(4)
        world.step(0.02)
    state = json.loads(json.dumps(p.export_state()))
    assert state["mope"]["output_length"]["tenants"]["a"] == {"values": [7.0] * 12, "count": 12}
    assert state["mope"]["online_model"]["num_observations"] > 0
    q = fresh("equinox")
    assert isinstance(q, EquinoxPolicy)
    q.restore_state(state)
    assert q.mope.predict_output("a", 40, None) == p.mope.predict_output("a", 40, None)
    shape = BatchShape(512, 1, 512 * 513 // 2, 8, 4000)
    assert q.mope.predict_iteration_s(shape) == p.mope.predict_iteration_s(shape)


def test_equinox_drops_iteration_corrections_learned_on_another_platform() -> None:
    p = fresh("equinox")
    assert isinstance(p, EquinoxPolicy)
    world = World([p])
    for op in [("arrive", "a", 40, 3, None, 0.1), ("admit", 1), ("step", 0.5), ("step", 0.5), ("step", 0.5)]:
        world.apply(op)
    q = fresh("equinox")
    assert isinstance(q, EquinoxPolicy)
    q.set_platform(Platform.from_model("other", num_matmul_params=7e9, kv_bytes_per_token=5e5, weight_bytes=1.4e10,
                                       peak_flops=3e14, hbm_bandwidth=2e12, source="test"))
    q.restore_state(p.export_state())
    assert q.mope.iteration.ratio == {} and q.mope.iteration.online is not None
    assert q.mope.iteration.online.num_observations == 0
    assert q.ufc() == p.ufc()  # counters are in platform-independent units: kept


# The snapshot format ---------------------------------------------------------------------


def snap_of(name: str = "vtc", **config: Any) -> tuple[Policy, dict[str, Any]]:
    p = make_policy(name, PolicyConfig(**config))
    world = World([p])
    for op in [("arrive", "a", 50, 5, None, 0.0), ("arrive", "b", 20, 5, None, 0.0), ("admit", 2), ("step", 0.1)]:
        world.apply(op)
    return p, snapshot(p, 12.5)


def test_snapshot_envelope() -> None:
    p, snap = snap_of("equinox", params={"beta": 0.5})
    assert snap["format"] == FORMAT == "equinox.policy-state" and snap["version"] == VERSION == 1
    assert snap["policy"] == "equinox" and snap["taken_at"] == 12.5
    assert snap["params"]["beta"] == 0.5 and snap["params"]["alpha"] == 1.0
    assert snap["state"] == p.export_state()
    json.dumps(snap, allow_nan=False)  # JSON-safe


def test_restore_rejects_another_policys_snapshot() -> None:
    _, snap = snap_of("vtc")
    with pytest.raises(ConfigError, match="policy 'vtc', not 'lcf'"):
        restore(make_policy("lcf"), snap)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version 2 is not supported"),
        ({"version": True}, "version True is not supported"),
        ({"format": "other"}, "field 'format' must be 'equinox.policy-state'"),
        ({"policy": 3}, "field 'policy' must be a policy name"),
        ({"taken_at": "noon"}, "field 'taken_at' must be a finite number"),
        ({"params": []}, "field 'params' must be an object"),
        ({"state": None}, "field 'state' must be an object"),
    ],
)
def test_restore_rejects_a_malformed_envelope(change: dict[str, Any], message: str) -> None:
    _, snap = snap_of("vtc")
    with pytest.raises(ConfigError, match=message):
        restore(make_policy("vtc"), {**snap, **change})


@pytest.mark.parametrize(
    ("policy", "state", "message"),
    [
        ("vtc", {"counters": {"a": "lots"}}, "field 'counters' must be an object of name -> finite number"),
        ("vtc", {"counters": {"a": float("nan")}}, "field 'counters'"),
        ("vtc", {"tenant_order": "ab"}, "field 'tenant_order' must be a list of strings"),
        ("vtc", {"charged": [1]}, "field 'charged' must be a list of strings"),
        ("vtc", {"last_left": 3}, "field 'last_left' must be a string or null"),
        ("vtc-predict", {"averages": [1]}, "field 'averages'"),
        ("rpm", {"windows": {"a": ["x"]}}, "at windows: field 'a' must be a list of finite numbers"),
        ("fcfs", {"counters": {}}, "policy 'fcfs' keeps no state"),
        ("equinox", {"admitted": {"r1": {"charged_ufc": 1}}}, "at admitted.r1: field 'predicted_mean'"),
        ("equinox", {"coefficients": [1.0]}, "field 'coefficients' must be two numbers"),
        ("equinox", {"mope": {"iteration": {"ratios": [["both", 1, 1.0]]}}}, "at mope.iteration: field 'ratios'"),
        ("equinox", {"mope": {"output_length": {"buckets": {"x": {}}}}}, "keyed by bucket numbers"),
        ("equinox", {"mope": {"online_model": {"xtx": [[1.0]]}}}, "at mope.online_model: field 'xtx'"),
    ],
)
def test_restore_names_the_malformed_field(policy: str, state: dict[str, Any], message: str) -> None:
    config = PolicyConfig(rpm_limit=5) if policy == "rpm" else PolicyConfig()
    p = make_policy(policy, config)
    snap = {"format": FORMAT, "version": VERSION, "policy": policy, "params": {}, "taken_at": 0.0, "state": state}
    with pytest.raises(ConfigError, match=message):
        restore(p, snap)


def test_restore_needs_an_idle_policy() -> None:
    _, snap = snap_of("vtc")
    p = make_policy("vtc")
    p.add_request(Request(RequestSpec("x", "a", 0.0, 5, 5)), 0.0)
    with pytest.raises(ConfigError, match="restore before any request arrives"):
        restore(p, snap)


def test_restore_under_other_params_warns_and_keeps_counters(caplog: pytest.LogCaptureFixture) -> None:
    p, snap = snap_of("equinox", params={"beta": 0.5})
    q = make_policy("equinox", PolicyConfig(params={"beta": 0.25}))
    assert isinstance(p, EquinoxPolicy) and isinstance(q, EquinoxPolicy)
    with caplog.at_level(logging.WARNING):
        restore(q, snap)
    assert "other equinox parameters (beta)" in caplog.text
    assert q.ufc() == p.ufc() and q.rfc() == p.rfc()


def test_write_and_read_snapshot_atomically(tmp_path: Path) -> None:
    p, snap = snap_of("vtc-predict")
    path = tmp_path / "state.json"
    path.write_text("old")
    write_snapshot(path, snap)
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary file left behind
    back = read_snapshot(path)
    assert back == json.loads(json.dumps(snap))
    q = make_policy("vtc-predict")
    restore(q, back)
    assert q.export_state() == p.export_state()


def test_write_snapshot_refuses_a_bad_one_and_leaves_the_old_file(tmp_path: Path) -> None:
    _, snap = snap_of("vtc")
    path = tmp_path / "state.json"
    write_snapshot(path, snap)
    before = path.read_text()
    with pytest.raises(ValueError, match="JSON compliant"):
        write_snapshot(path, {**snap, "state": {"counters": {"a": float("inf")}}})
    with pytest.raises(ConfigError, match="version 9 is not supported"):
        write_snapshot(path, {**snap, "version": 9})
    assert path.read_text() == before and os.listdir(tmp_path) == ["state.json"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not a JSON policy snapshot"),
        ('{"format": "equinox.policy-state", "version": 1, "policy": "vtc", "taken_at": NaN, "state": {}}',
         "not a JSON policy snapshot"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"format": "equinox.policy-state", "version": 0}', "version 0 is not supported"),
    ],
)
def test_read_snapshot_errors_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        read_snapshot(path)
    assert str(path) in str(info.value)


def test_read_snapshot_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the policy snapshot"):
        read_snapshot(tmp_path / "nope.json")


def test_check_snapshot_accepts_a_minimal_document() -> None:
    doc = {"format": FORMAT, "version": 1, "policy": "fcfs", "taken_at": 0, "state": {}}
    assert check_snapshot(doc) is doc
    restore(make_policy("fcfs"), doc)


def test_state_reader_messages_say_where() -> None:
    reader = StateReader("equinox", {"mope": {"iteration": {"num_observations": -1}}})
    with pytest.raises(ConfigError, match=r"state of policy 'equinox' at mope\.iteration: field 'num_observations'"):
        reader.sub("mope").sub("iteration").integer("num_observations")
