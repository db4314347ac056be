"""A fair replica's queue and the router's ranking, without Ray: order, slots, accounting, work ahead."""

from __future__ import annotations

import asyncio

import pytest

from equinox.integrations.ray.replica_queue import FairQueue, FakeEngine, QueuedRequest, QueueRejected, serve_one
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policy import make_policy


def _req(rid: str, tenant: str, arrival: float) -> QueuedRequest:
    return QueuedRequest(rid, tenant, arrival, num_prompt_tokens=10, max_tokens=4)


def test_fair_queue_serves_a_light_tenant_before_a_flood_and_charges_what_streamed() -> None:
    async def run() -> tuple[list[str], dict[str, float]]:
        policy = make_policy("vtc", PolicyConfig())
        queue = FairQueue(policy, max_running=1, clock=lambda: 0.0)
        engine = FakeEngine(ttft_s=0.0, itl_s=0.0)
        order: list[str] = []

        async def one(req: QueuedRequest) -> None:
            async for _ in serve_one(queue, engine, req, "/v1/completions", {"max_tokens": 4}):
                pass
            order.append(req.request_id)
            queue.report_usage()

        tasks = [asyncio.create_task(one(_req(f"h{i}", "heavy", 0.0))) for i in range(4)]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(one(_req("l0", "light", 0.0))))
        await asyncio.gather(*tasks)
        return order, dict(policy.counters())

    order, counters = asyncio.run(run())
    assert order.index("l0") <= 2  # behind at most the running head and one more, not behind all four
    assert counters["heavy"] == pytest.approx(4 * (10 + 2 * 4)) and counters["light"] >= 10 + 2 * 4


def test_fair_queue_limits_and_abandoned_requests() -> None:
    async def run() -> None:
        policy = make_policy("fcfs", PolicyConfig())
        queue = FairQueue(policy, max_running=1, clock=lambda: 0.0, max_queue_of={"a": 1})
        first = asyncio.create_task(queue.admit(_req("r1", "a", 0.0)))
        await asyncio.sleep(0)
        assert first.done() and queue.stats()["num_running"] == 1
        waiting = asyncio.create_task(queue.admit(_req("r2", "a", 0.0)))
        await asyncio.sleep(0)
        with pytest.raises(QueueRejected) as rejected:
            await queue.admit(_req("r3", "a", 0.0))
        assert rejected.value.status == 429
        waiting.cancel()  # the caller left while waiting: out of the queue, nothing charged
        await asyncio.sleep(0)
        assert queue.stats()["num_waiting"] == 0 and policy.num_waiting == 0

    asyncio.run(run())


def test_router_ranks_by_work_ahead_of_the_tenant() -> None:
    pytest.importorskip("ray.serve")
    from equinox.integrations.ray.router import rank_replicas, work_ahead

    busy_with_heavy = {"num_running": 2, "num_waiting": 6, "waiting_by_tenant": {"heavy": 6},
                       "counters": {"heavy": 500.0, "light": 10.0}}
    lightly_loaded = {"num_running": 2, "num_waiting": 3, "waiting_by_tenant": {"light": 3},
                      "counters": {"heavy": 500.0, "light": 10.0}}
    assert work_ahead(busy_with_heavy, "light") == 2  # light is served before heavy's queue
    assert work_ahead(busy_with_heavy, "heavy") == 8
    assert rank_replicas([("a", busy_with_heavy, None), ("b", lightly_loaded, None)], "light") == ["a", "b"]
    assert rank_replicas([("a", busy_with_heavy, None), ("b", lightly_loaded, None)], "heavy") == ["b", "a"]
    # requests sent since the stats were taken count as ahead
    assert rank_replicas([("a", busy_with_heavy, 20), ("b", lightly_loaded, None)], "light") == ["b", "a"]
    # with nothing to tell them apart, the replica ranked first fewer times goes first
    idle: dict[str, object] = {}
    assert rank_replicas([("a", idle, None), ("b", idle, None)], "light", {"a": 3, "b": 2}) == ["b", "a"]


def test_router_spreads_a_burst_before_any_stats_arrive() -> None:
    """Serve's queue-length cache is off by default: the router's own in-flight count must spread a burst."""
    pytest.importorskip("ray.serve")
    from types import SimpleNamespace

    from equinox.integrations.ray.router import FairRequestRouter

    class Unstarted(FairRequestRouter):  # the ranking only: no Serve router state, an empty queue-length cache
        replica_queue_len_cache = SimpleNamespace(get=lambda _rid: None)  # type: ignore[assignment]

    router = Unstarted.__new__(Unstarted)
    replicas = [SimpleNamespace(replica_id=SimpleNamespace(unique_id=u), routing_stats={}) for u in ("r0", "r1")]

    def choose(request_id: str) -> str:
        pending = SimpleNamespace(args=[{"tenant": "light"}], kwargs={},
                                  metadata=SimpleNamespace(internal_request_id=request_id))
        ranks = asyncio.run(router.choose_replicas(replicas, pending))  # type: ignore[arg-type]
        return str(ranks[0][0].replica_id.unique_id)

    firsts = [choose(f"q{i}") for i in range(8)]
    assert firsts.count("r0") == 4 and firsts.count("r1") == 4, firsts
    for i in range(8):  # all finished: nothing counts as in flight any more
        router.on_request_completed(replicas[0].replica_id, f"q{i}")
    assert router._ledger()[0] == {"r0": 0, "r1": 0}
    choose("q8")
    choose("q8")  # a retry of the same request moves it, it does not count twice
    assert sum(router._ledger()[0].values()) == 1


def test_serve_command_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    from equinox.cli.main import main

    assert main(["serve", "--config", "x.toml"]) == 2
    assert "needs --ray" in capsys.readouterr().err
    assert main(["serve", "--ray"]) == 2
    assert "needs --config" in capsys.readouterr().err
    assert main(["serve", "--ray", "--config", "/nonexistent/gw.toml"]) == 2
    assert "not found" in capsys.readouterr().err


def test_openai_engine_forwards_the_stamped_tenant_and_reports_failures() -> None:
    httpx = pytest.importorskip("httpx")
    from equinox.integrations.gateway.fake_backend import FakeBackend, FakeState
    from equinox.integrations.gateway.openai_format import upstream_body
    from equinox.integrations.ray.replica_queue import EngineFailure, OpenAIEngine

    state = FakeState()
    engine = OpenAIEngine("http://fake", transport=httpx.ASGITransport(app=FakeBackend(state)))
    body = upstream_body({"model": "fake-model", "prompt": "hi", "max_tokens": 3, "tenant": "mallory"}, "alice",
                         "tenant", is_vllm=True)

    async def run() -> tuple[list[dict[str, object]], dict[str, float]]:
        policy = make_policy("vtc", PolicyConfig())
        queue = FairQueue(policy, max_running=1, clock=lambda: 0.0)
        req = _req("r1", "alice", 0.0)
        chunks = [c async for c in serve_one(queue, engine, req, "/v1/completions", body)]
        queue.report_usage()
        state.mode = "fail"
        with pytest.raises(EngineFailure, match="HTTP 500"):
            async for _ in serve_one(queue, engine, _req("r2", "alice", 0.0), "/v1/completions", body):
                pass
        assert queue.stats()["num_running"] == 0  # the failed request freed its slot
        await engine.close()
        return chunks, dict(policy.counters())

    chunks, counters = asyncio.run(run())
    assert sum(1 for c in chunks if c.get("choices")) == 3 and chunks[-1]["usage"]
    assert state.recent[0]["vllm_xargs"] == {"tenant": "alice"} and "tenant" not in state.recent[0]["keys"]
    assert counters["alice"] > 0
