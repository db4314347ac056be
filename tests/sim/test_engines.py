"""The iteration scheduler driven by hand-built step results: no simulator, no cost model."""

from __future__ import annotations

import pytest

from equinox.errors import ConfigError
from equinox.request import Request, RequestSpec, RequestStatus
from equinox.scheduling.policy import make_policy
from equinox.sim.engine import Engine, EngineConfig, SchedulerOutput, make_engine
from equinox.types import StepResult

STEP_S = 0.1


def req(rid: str, prompt: int, output: int, tenant: str = "a", max_tokens: int | None = None) -> Request:
    return Request(RequestSpec(rid, tenant, 0.0, prompt, output, max_tokens=max_tokens))


def sched(policy: str = "fcfs", **engine: object) -> Engine:
    base: dict[str, object] = dict(max_num_batched_tokens=32, max_num_seqs=8, block_size=4, num_kv_blocks=64)
    base.update(engine)
    return make_engine(EngineConfig(**base), make_policy(policy))  # type: ignore[arg-type]


class Driver:
    """Runs schedule/update with a fixed step time and checks KV bookkeeping every step."""

    def __init__(self, s: Engine) -> None:
        self.s = s
        self.now = 0.0
        self.outputs: list[SchedulerOutput] = []

    def step(self) -> SchedulerOutput:
        s = self.s
        out = s.schedule(self.now)
        assert sum(n for _, n in out.scheduled) <= out.limits.max_num_batched_tokens
        assert len(out.scheduled) <= out.limits.max_num_seqs
        outcome = s.update_from_result(out, StepResult(STEP_S))
        self.now += STEP_S
        assert s.kv.num_used == sum(r.num_blocks for r in s.running)
        assert 0 <= s.kv.num_free <= s.kv.num_blocks
        for r in outcome.finished:
            assert r.num_blocks == 0 and r.status is RequestStatus.FINISHED
        self.outputs.append(out)
        return out

    def run(self, max_steps: int = 10_000) -> None:
        for _ in range(max_steps):
            if not self.s.has_work:
                return
            self.step()
        raise AssertionError("did not drain")


def plan(out: SchedulerOutput) -> list[tuple[str, int]]:
    return [(r.request_id, n) for r, n in out.scheduled]


class TestEngineConfig:
    def test_contradictions(self) -> None:
        with pytest.raises(ConfigError, match="slora"):
            EngineConfig(mode="slora", enable_chunked_prefill=True)
        with pytest.raises(ConfigError, match="unknown engine"):
            EngineConfig(mode="tgi")
        with pytest.raises(ConfigError, match="num_kv_blocks"):
            EngineConfig(num_kv_blocks=0)

    def test_defaults(self) -> None:
        assert EngineConfig().is_chunked and not EngineConfig(mode="slora").is_chunked


class TestHybrid:
    def test_chunked_prefill_respects_budget(self) -> None:
        s = sched()
        r = req("p", 100, 2)
        s.add_request(r, 0.0)
        d = Driver(s)
        chunks = [plan(d.step()) for _ in range(4)]
        assert chunks == [[("p", 32)], [("p", 32)], [("p", 32)], [("p", 4)]]
        second = d.outputs[1].batch
        assert second.num_prefill_tokens == 32 and second.num_prefill_seqs == 1
        assert second.prefill_attention_pairs == 32 * 32 + 32 * 33 // 2
        assert r.first_token_time == pytest.approx(4 * STEP_S)  # sampled only after the last chunk
        out = d.step()
        assert out.batch.num_decode_seqs == 1 and out.batch.decode_context_tokens == 101
        assert r.status is RequestStatus.FINISHED and r.num_output_tokens_done == 2

    def test_decode_first(self) -> None:
        s = sched(max_num_batched_tokens=6)
        rs = [req(f"d{i}", 2, 10) for i in range(3)]
        for r in rs:
            s.add_request(r, 0.0)
        d = Driver(s)
        assert plan(d.step()) == [("d0", 2), ("d1", 2), ("d2", 2)]
        s.add_request(req("big", 50, 3), d.now)
        out = d.step()
        # running decodes first, one token each; the new prompt gets only what is left
        assert plan(out) == [("d0", 1), ("d1", 1), ("d2", 1), ("big", 3)]
        assert out.batch.num_decode_seqs == 3 and out.batch.num_prefill_tokens == 3
        out = d.step()
        assert plan(out) == [("d0", 1), ("d1", 1), ("d2", 1), ("big", 3)]  # a running prefill continues after decodes

    def test_sequence_cap(self) -> None:
        s = sched(max_num_seqs=2)
        for i in range(3):
            s.add_request(req(f"r{i}", 4, 2), 0.0)
        out = Driver(s).step()
        assert plan(out) == [("r0", 4), ("r1", 4)]

    def test_no_skipping_when_head_does_not_fit(self) -> None:
        s = sched("lcf", num_kv_blocks=10)  # 40 tokens of KV; LCF: b's counter stays 0, below a's
        s.add_request(req("a-run", 20, 16), 0.0)
        d = Driver(s)
        d.step()  # a-run holds 5 blocks
        s.add_request(req("b-big", 30, 1, tenant="b"), d.now)  # b has the smallest counter: offered first
        s.add_request(req("a-small", 1, 1), d.now)
        assert s.policy.peek(d.now).request_id == "b-big"
        out = d.step()
        assert plan(out) == [("a-run", 1)]  # a-small would fit, but it is not the policy's head

    def test_preemption_by_recompute(self) -> None:
        s = sched(num_kv_blocks=6)  # 24 tokens
        a, b, c = req("a", 8, 8), req("b", 8, 8), req("c", 8, 8)
        s.add_request(a, 0.0)
        s.add_request(b, 0.0)
        d = Driver(s)
        assert plan(d.step()) == [("a", 8), ("b", 8)]
        s.add_request(c, d.now)
        preempting = None
        for _ in range(10):
            out = d.step()
            if out.preempted:
                preempting = out
                break
        assert preempting is not None
        assert preempting.preempted == (b,)  # the last admitted (vLLM's victim)
        assert b.status is RequestStatus.PREEMPTED and b.num_blocks == 0 and b.num_computed_tokens == 0
        assert b.num_preemptions == 1 and s.num_preemptions == 1
        assert b.num_output_tokens_done > 0  # generated tokens are kept and recomputed
        assert s.policy.peek(d.now) is b  # back at the front, ahead of c
        assert plan(preempting) == [("a", 1)]  # nothing admitted in a preempting iteration
        d.run()
        for r in (a, b, c):
            assert r.status is RequestStatus.FINISHED and r.num_output_tokens_done == 8
        assert s.kv.num_free == s.kv.num_blocks
        # b's recompute covered prompt plus the tokens it had generated
        recompute = [n for o in d.outputs for r, n in o.scheduled if r is b and n > 1]
        assert recompute[0] == 8 and recompute[1] > 8

    def test_never_fits_rejected_with_reason_and_run_goes_on(self) -> None:
        s = sched(num_kv_blocks=8)  # 32 tokens
        too_big = req("huge", 30, 10)
        ok = req("ok", 4, 4)
        reason = s.add_request(too_big, 0.0)
        assert reason is not None and "KV" in reason and "40" in reason
        assert too_big.status is RequestStatus.REJECTED and too_big.reject_reason == reason
        assert s.add_request(ok, 0.0) is None
        Driver(s).run()
        assert ok.status is RequestStatus.FINISHED

    def test_non_chunked_prompt_over_budget_rejected(self) -> None:
        s = sched(enable_chunked_prefill=False, max_num_batched_tokens=16)
        reason = s.add_request(req("long", 20, 2), 0.0)
        assert reason is not None and "max_num_batched_tokens" in reason

    def test_non_chunked_recompute_over_budget_cannot_strand_a_request(self) -> None:
        # Without chunking, a preempted request must recompute prompt + generated tokens in one
        # iteration; a request that could need more than the budget would wait forever.
        s = sched(enable_chunked_prefill=False, max_num_batched_tokens=16, num_kv_blocks=8)
        a, b = req("a", 8, 20), req("b", 8, 20)
        results = [s.add_request(a, 0.0), s.add_request(b, 0.0)]
        Driver(s).run(max_steps=2000)
        for r, reason in zip((a, b), results, strict=True):
            assert r.status is (RequestStatus.REJECTED if reason else RequestStatus.FINISHED)
        assert results[0] is not None and "recomputed" in results[0]
        # requests whose recompute fits the budget are preempted and still finish
        s = sched(enable_chunked_prefill=False, max_num_batched_tokens=16, num_kv_blocks=5)
        a, b = req("a", 8, 9), req("b", 8, 9)
        assert s.add_request(a, 0.0) is None and s.add_request(b, 0.0) is None
        Driver(s).run(max_steps=2000)
        assert s.num_preemptions > 0
        assert a.status is b.status is RequestStatus.FINISHED


class TestSlora:
    def test_admission_every_n_decode_steps_prefill_only(self) -> None:
        s = sched(mode="slora", admission_interval_steps=3, max_num_batched_tokens=64)
        a = req("a", 8, 20)
        s.add_request(a, 0.0)
        d = Driver(s)
        assert plan(d.step()) == [("a", 8)]
        s.add_request(req("b", 8, 5), d.now)
        plans = [plan(d.step()) for _ in range(4)]
        # b waits 3 decode steps; its prefill runs alone
        assert plans == [[("a", 1)], [("a", 1)], [("a", 1)], [("b", 8)]]
        assert plan(d.step()) == [("a", 1), ("b", 1)]

    def test_reserve_all_reserves_whole_output_and_never_preempts(self) -> None:
        s = sched(mode="slora", num_kv_blocks=12, max_num_batched_tokens=64, admission_interval_steps=1,
                  kv_admission="reserve-all")
        rs = [req(f"r{i}", 8, 12) for i in range(4)]  # each reserves 20 tokens = 5 blocks
        for r in rs:
            s.add_request(r, 0.0)
        d = Driver(s)
        out = d.step()
        assert plan(out) == [("r0", 8), ("r1", 8)]
        assert s.kv.num_used == 10 and rs[0].num_blocks == 5
        d.run()
        assert all(not o.preempted for o in d.outputs) and s.num_preemptions == 0
        assert all(r.status is RequestStatus.FINISHED and r.num_output_tokens_done == 12 for r in rs)

    def test_peak_rule_admits_what_reserve_all_would_not(self) -> None:
        # Pool of 48 tokens. r0 (prompt 8, output 30) alone peaks at 8 + 1 + 29 = 38 < 48. With r1
        # (prompt 8, output 2), sorted by remaining output: max(29 * 1 + 9, 1 * 2 + 18) = 38 < 48,
        # so S-LoRA admits both, where reserving 38 + 10 tokens up front would not fit.
        for rule, expected in (("peak", ["r0", "r1"]), ("reserve-all", ["r0"])):
            s = sched(mode="slora", num_kv_blocks=12, max_num_batched_tokens=64, kv_admission=rule)
            s.add_request(req("r0", 8, 30), 0.0)
            s.add_request(req("r1", 8, 2), 0.0)
            assert [r for r, _ in plan(s.schedule(0.0))] == expected, rule

    def test_peak_rule_runs_to_the_end_without_running_out(self) -> None:
        # Requests of mixed lengths keep the token pool busy; the rule never lets it overflow.
        s = sched(mode="slora", num_kv_blocks=16, max_num_batched_tokens=64, admission_interval_steps=2)
        rs = [req(f"r{i}", 3 + i % 5, 2 + (7 * i) % 13) for i in range(30)]
        for r in rs:
            s.add_request(r, 0.0)
        d = Driver(s)
        d.run()
        assert s.kv.block_size == 1 and s.kv.capacity_tokens == 64
        assert all(r.status is RequestStatus.FINISHED for r in rs) and s.num_preemptions == 0
        assert max(len([r for r, _ in plan(o)]) for o in d.outputs) > 2  # batches really share the pool

    def test_peak_kv_need_is_s_loras_formula(self) -> None:
        from equinox.sim.engine.slora import peak_kv_need

        # sorted by remaining: (10, 5), (4, 3), (7, 0): max(5*1+10, 3*2+14, 0*3+21) = 21
        assert peak_kv_need([(7, 0), (10, 5), (4, 3)]) == 21
        assert peak_kv_need([]) == 0

    def test_defaults_follow_s_lora(self) -> None:
        cfg = EngineConfig(mode="slora", block_size=1, num_kv_blocks=35000)
        assert cfg.max_num_batched_tokens == 35000 // 6 and cfg.max_num_seqs == 1000
        assert EngineConfig(mode="slora", block_size=1, num_kv_blocks=10000).max_num_batched_tokens == 3072
        longer = EngineConfig(mode="slora", block_size=1, num_kv_blocks=10000, max_req_total_len=8192)
        assert longer.max_num_batched_tokens == 8192  # S-LoRA: max(pool / 6, max_req_total_len)
        assert EngineConfig().max_num_batched_tokens == 2048 and EngineConfig().max_num_seqs == 256
        with pytest.raises(ConfigError, match="kv_admission"):
            EngineConfig(mode="slora", kv_admission="greedy")
        with pytest.raises(ConfigError, match="slora"):
            EngineConfig(mode="vllm", lora_rank=8)

    def test_lora_rank_sets_kv_aside_per_adapter(self) -> None:
        # 64 tokens; rank 4 sets 16 tokens aside per tenant in the batch. r0 alone: 9 + 7 = 16 < 48.
        # r1 of another tenant: need 32 >= 64 - 32, refused; of the same tenant, admitted.
        for tenant, expected in (("b", ["r0"]), ("a", ["r0", "r1"])):
            s = sched(mode="slora", num_kv_blocks=16, max_num_batched_tokens=64, lora_rank=4)
            s.add_request(req("r0", 8, 8), 0.0)
            s.add_request(req("r1", 8, 8, tenant=tenant), 0.0)
            assert [r for r, _ in plan(s.schedule(0.0))] == expected, tenant

    def test_max_tokens_reservation_and_rejection(self) -> None:
        s = sched(mode="slora", num_kv_blocks=8, max_num_batched_tokens=64)
        r = req("r", 8, 4, max_tokens=40)  # reserves 8 + 40 > 32 tokens of KV
        reason = s.add_request(r, 0.0)
        assert reason is not None and "48" in reason


def test_update_reports_per_tenant_usage() -> None:
    s = sched("vtc")
    s.add_request(req("a", 4, 3), 0.0)
    s.add_request(req("b", 6, 3, tenant="t2"), 0.0)
    out = s.schedule(0.0)
    outcome = s.update_from_result(out, StepResult(0.5))
    rep = outcome.report
    assert rep.per_tenant["a"].num_prefill_tokens == 4 and rep.per_tenant["a"].num_output_tokens == 1
    assert rep.per_tenant["t2"].num_prefill_tokens == 6 and rep.per_tenant["t2"].num_output_tokens == 1
    assert rep.duration_s == 0.5 and rep.num_kv_blocks_used == s.kv.num_used
    assert [r.request_id for r in outcome.first_tokens] == ["a", "b"]
    assert s.policy.counters() == {"a": 4 + 2, "t2": 6 + 2}


class TestVllmOptions:
    def test_only_the_vllm_engine_has_them(self) -> None:
        with pytest.raises(ConfigError, match="async_scheduling"):
            EngineConfig(mode="slora", async_scheduling=True)
        with pytest.raises(ConfigError, match="long_prefill_token_threshold"):
            EngineConfig(mode="slora", long_prefill_token_threshold=64)
        with pytest.raises(ConfigError, match="long_prefill_token_threshold"):
            EngineConfig(long_prefill_token_threshold=-1)

    def test_long_prefill_threshold_caps_chunks_only_with_company(self) -> None:
        s = sched(long_prefill_token_threshold=8)
        s.add_request(req("a", 30, 2), 0.0)
        d = Driver(s)
        assert plan(d.step()) == [("a", 30)]  # alone: nobody to starve, the whole budget
        s.add_request(req("b", 20, 2), d.now)
        s.add_request(req("c", 20, 2), d.now)
        assert plan(d.step()) == [("a", 1), ("b", 8), ("c", 8)]

    def test_running_order_not_decodes_first(self) -> None:
        # vLLM serves running requests in running order: a capped prefill admitted earlier
        # goes before a later request's decode, which then waits when the budget is spent.
        s = sched(max_num_batched_tokens=16, long_prefill_token_threshold=12)
        s.add_request(req("long", 40, 2), 0.0)
        s.add_request(req("short", 4, 5), 0.0)
        d = Driver(s)
        assert plan(d.step()) == [("long", 12), ("short", 4)]
        assert plan(d.step()) == [("long", 12), ("short", 1)]

    def test_admission_needs_the_whole_sequence_free(self) -> None:
        s = sched(num_kv_blocks=10, max_num_batched_tokens=8)  # 40 tokens of KV, chunks of 8
        s.add_request(req("a", 24, 4), 0.0)
        s.add_request(req("b", 20, 4), 0.0)
        d = Driver(s)
        assert plan(d.step()) == [("a", 8)]  # b's 5 blocks are not free beside a's 6
        assert s.policy.num_waiting == 1


def async_engine(**engine: object) -> Engine:
    return sched(async_scheduling=True, **engine)


class TestAsyncScheduling:
    def test_finished_requests_hold_kv_and_seat_through_the_next_plan(self) -> None:
        s = async_engine(max_num_seqs=2)
        a, c, b = req("a", 4, 1, max_tokens=1), req("c", 4, 5, max_tokens=5), req("b", 4, 1, max_tokens=1)
        for r in (a, c, b):
            s.add_request(r, 0.0)
        out = s.schedule(0.0)
        assert plan(out) == [("a", 4), ("c", 4)]
        s.update_from_result(out, StepResult(STEP_S))
        assert a.status is RequestStatus.FINISHED and a.num_blocks == 1  # its output is out, KV not yet freed
        out = s.schedule(STEP_S)
        assert plan(out) == [("c", 1)]  # b waits: a still holds a seat while this plan is made
        assert a.num_blocks == 0 and s.running == [c]  # released right after it
        s.update_from_result(out, StepResult(STEP_S))
        assert plan(s.schedule(2 * STEP_S)) == [("c", 1), ("b", 4)]

    def test_eos_stop_costs_one_wasted_decode(self) -> None:
        s = async_engine()
        eos, capped = req("eos", 4, 2, max_tokens=10), req("capped", 4, 2, max_tokens=2)
        s.add_request(eos, 0.0)
        s.add_request(capped, 0.0)
        now = 0.0
        outs = []
        while s.has_work:
            out = s.schedule(now)
            s.update_from_result(out, StepResult(STEP_S))
            outs.append(plan(out))
            now += STEP_S
        assert outs[:3] == [[("eos", 4), ("capped", 4)], [("eos", 1), ("capped", 1)], [("eos", 1)]]
        assert eos.num_output_tokens_done == 2 and eos.finish_time == pytest.approx(2 * STEP_S)
        assert s.kv.num_free == s.kv.num_blocks

    def test_an_arrival_during_a_step_waits_for_the_plan_after(self) -> None:
        def first_token_of_late_arrival(is_async: bool) -> float | None:
            s = sched(async_scheduling=is_async)
            s.add_request(req("a", 4, 6), 0.0)
            late = Request(RequestSpec("late", "a", 0.15, 4, 2))  # arrives while the step from 0.1 runs
            for i in range(8):
                if i == 2:
                    s.add_request(late, i * STEP_S)
                out = s.schedule(i * STEP_S)
                s.update_from_result(out, StepResult(STEP_S))
            return late.first_token_time

        # Async, the plan made at 0.2 was made while the step from 0.1 ran: the next one admits it.
        assert first_token_of_late_arrival(False) == pytest.approx(0.3)
        assert first_token_of_late_arrival(True) == pytest.approx(0.4)
