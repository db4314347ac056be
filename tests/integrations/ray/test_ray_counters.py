"""The counter actor on a local Ray instance: replicas order by merged counters; the actor survives
a restart through its snapshot; experiment runs as Ray tasks give the same results as processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from equinox.integrations.ray.counters import counter_actor, sync_with_actor  # noqa: E402
from equinox.request import Request, RequestSpec  # noqa: E402
from equinox.scheduling.global_counters import CounterClient  # noqa: E402
from equinox.scheduling.interface import PolicyConfig  # noqa: E402
from equinox.scheduling.policy import make_policy  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _admit(policy: Any, rid: str, tenant: str, prompt: int) -> None:
    r = Request(RequestSpec(rid, tenant, 0.0, prompt, 10))
    policy.add_request(r, 0.0)
    policy.pop(policy.peek(0.0), 0.0)


def test_replicas_share_counters_and_survive_an_actor_restart(local_ray: Any, tmp_path: Path) -> None:
    snap = tmp_path / "counters.json"
    actor = counter_actor(str(snap), name="test-counters")
    a, b = make_policy("vtc", PolicyConfig()), make_policy("vtc", PolicyConfig())
    ca, cb = CounterClient("a", a), CounterClient("b", b)
    _admit(a, "h1", "heavy", 800)
    sync_with_actor(ca, actor)
    sync_with_actor(cb, actor)
    b.add_request(Request(RequestSpec("h2", "heavy", 1.0, 10, 10)), 1.0)
    b.add_request(Request(RequestSpec("l1", "light", 1.0, 10, 10)), 1.0)
    assert b.peek(1.0).tenant == "light"  # replica b saw heavy's service on replica a

    ray.kill(actor, no_restart=False)  # Ray restarts it; the constructor reads the snapshot
    deadline = time.monotonic() + 60
    while True:
        try:
            view = ray.get(actor.view.remote(), timeout=10)
            break
        except ray.exceptions.RayActorError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert view["counter"]["heavy"] == 800.0

    c = make_policy("vtc", PolicyConfig())  # a replica added while running picks up the counters
    sync_with_actor(CounterClient("c", c), actor)
    assert c.shared_counters()["counter"]["heavy"] == 800.0
    ray.kill(actor, no_restart=True)


def test_experiment_on_ray_matches_local_processes(local_ray: Any, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from equinox.config import RunConfig
    from equinox.experiments import ExperimentSet, RunSpec, run_experiment

    def specs(quick: bool) -> list[RunSpec]:
        base = RunConfig(workload="overload", duration_s=30.0)
        return [RunSpec(f"overload/{p}", base.replace(policy=p), "overload", (("policy", p),), p, rho=1.2)
                for p in ("equinox", "vtc")]

    tiny = ExperimentSet("tiny", "a tiny set", specs)
    local = run_experiment(tiny, tmp_path / "local", quick=True, jobs=1)
    on_ray = run_experiment(tiny, tmp_path / "ray", quick=True, ray_address="local")
    assert not local.failures and not on_ray.failures
    assert len(local.run_dirs) == len(on_ray.run_dirs) == 2
    for d in local.run_dirs:
        mine = tmp_path / "ray" / d.relative_to(tmp_path / "local")
        for name in ("summary.json", "requests.csv"):
            assert (mine / name).read_text() == (d / name).read_text()
