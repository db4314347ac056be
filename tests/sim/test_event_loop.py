"""Event order and simulator determinism, with a mock backend (no cost model)."""

from __future__ import annotations

import pytest

from equinox.metrics.collector import Collector
from equinox.request import RequestSpec
from equinox.scheduling.policy import make_policy
from equinox.sim.backend import FunctionBackend
from equinox.sim.engine import EngineConfig, make_engine
from equinox.sim.events import EventKind, EventQueue
from equinox.sim.loop import Simulator


def test_events_pop_by_time_then_rank_then_insertion() -> None:
    q = EventQueue()
    q.push(2.0, EventKind.ARRIVAL, "late")
    q.push(1.0, EventKind.STOP, "stop")
    q.push(1.0, EventKind.ARRIVAL, "arr-1")
    q.push(1.0, EventKind.STEP_DONE, "step")
    q.push(1.0, EventKind.ARRIVAL, "arr-2")
    assert q.peek_time() == 1.0 and len(q) == 5
    order = [q.pop()[2] for _ in range(5)]
    # results fold in before new arrivals at the same instant; the stop comes last
    assert order == ["step", "arr-1", "arr-2", "stop", "late"]
    assert q.peek_time() is None


def linear_backend() -> FunctionBackend:
    return FunctionBackend(lambda out: 0.01 + 1e-4 * out.batch.num_tokens)


def simulate(specs: list[RequestSpec], *, policy: str = "vtc", until: float | None = None, **engine: object):
    cfg: dict[str, object] = dict(max_num_batched_tokens=64, max_num_seqs=8, block_size=4, num_kv_blocks=40)
    cfg.update(engine)
    sched = make_engine(EngineConfig(**cfg), make_policy(policy))  # type: ignore[arg-type]
    collector = Collector(1.0)
    sim = Simulator(specs, sched, linear_backend(), collector, until=until, num_requests_hint=len(specs))
    return sim.run(), collector, sched


def specs_two_tenants(n: int = 40) -> list[RequestSpec]:
    return [RequestSpec(f"r{i}", f"t{i % 2}", i * 0.05, 10 + (i * 7) % 30, 5 + (i * 3) % 20) for i in range(n)]


def test_same_inputs_same_records() -> None:
    a = simulate(specs_two_tenants())
    b = simulate(specs_two_tenants())
    assert a[0] == b[0]
    assert a[1].records == b[1].records
    assert a[1].series.columns == b[1].series.columns
    assert a[1].series.counters == b[1].series.counters


def test_step_done_folds_in_before_simultaneous_arrival() -> None:
    # The first step ends at exactly 0.5 s (fixed duration); the arrival at 0.5 s must see its result.
    specs = [RequestSpec("a", "t", 0.0, 4, 2), RequestSpec("b", "t", 0.5, 4, 2)]
    sched = make_engine(EngineConfig(block_size=4, num_kv_blocks=10), make_policy("fcfs"))
    collector = Collector(1.0)
    stats = Simulator(specs, sched, FunctionBackend(lambda out: 0.5), collector).run()
    recs = {r.request_id: r for r in collector.records}
    assert recs["a"].first_token_time == 0.5
    assert recs["b"].first_scheduled_time == 0.5  # admitted by the step that starts right after both events
    assert stats.num_finished == 2 and stats.num_steps == 3


def test_until_truncates_and_records_unfinished() -> None:
    stats, collector, _ = simulate(specs_two_tenants(), until=0.3)
    assert stats.is_truncated and stats.end_time == pytest.approx(0.3)
    assert len(collector.records) == stats.num_arrivals  # nothing lost: waiting/running ones are recorded
    assert any(not r.is_finished and r.reject_reason is None for r in collector.records)


def test_unsorted_arrivals_are_an_error() -> None:
    specs = [RequestSpec("a", "t", 1.0, 4, 2), RequestSpec("b", "t", 0.5, 4, 2)]
    with pytest.raises(ValueError, match="sorted by arrival"):
        simulate(specs)


def test_rejected_requests_are_recorded_and_run_continues() -> None:
    specs = [RequestSpec("huge", "t", 0.0, 500, 10), RequestSpec("ok", "t", 0.1, 4, 2)]
    stats, collector, _ = simulate(specs)
    recs = {r.request_id: r for r in collector.records}
    assert recs["huge"].reject_reason is not None and "KV" in recs["huge"].reject_reason
    assert recs["ok"].is_finished
    assert (stats.num_rejected, stats.num_finished) == (1, 1)
