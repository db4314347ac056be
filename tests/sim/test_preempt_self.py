"""A step whose only effect is a preemption is planned again at once (nothing is left running idle)."""

from __future__ import annotations

from collections.abc import Sequence

from equinox.metrics.collector import Collector
from equinox.request import RequestSpec, RequestView
from equinox.scheduling.policies.fcfs import FcfsPolicy
from equinox.sim.backend import FunctionBackend
from equinox.sim.engine import EngineConfig, make_engine
from equinox.sim.loop import Simulator


class FirstVictim(FcfsPolicy):
    """Preempts the earliest running candidate: the request the engine is growing first."""

    def choose_victim(self, candidates: Sequence[RequestView], now: float) -> RequestView:
        return min(candidates, key=lambda r: r.admit_seq)


def test_every_request_finishes_when_the_victim_is_the_request_being_grown() -> None:
    specs = [RequestSpec(f"r{i}", "t", 0.01 * i, 6, 20) for i in range(6)]
    engine = make_engine(EngineConfig(num_kv_blocks=12, block_size=4, max_num_batched_tokens=64), FirstVictim())
    collector = Collector(1.0)
    stats = Simulator(specs, engine, FunctionBackend(lambda out: 0.01), collector).run()
    assert engine.num_preemptions > 0  # the scenario really preempts the request being grown
    assert stats.num_finished == len(specs) and not stats.is_truncated  # a stall would flag is_truncated
