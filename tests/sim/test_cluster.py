"""Cluster mode of the simulator: one replica is the single-replica simulator; the CLI flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from equinox.cli.main import main
from equinox.config import RunConfig
from equinox.sim.cluster import ClusterConfig, run_cluster
from equinox.sim.run import run_simulation


def test_one_replica_matches_the_simulator() -> None:
    config = RunConfig(policy="vtc", duration_s=40.0, seed=3)
    single = run_simulation(config)
    cluster = run_cluster(config, ClusterConfig(1))
    key = lambda r: r.request_id  # noqa: E731
    assert sorted(single.records, key=key) == sorted(cluster.records, key=key)


@pytest.mark.parametrize("router", ["round-robin", "least-work", "equinox-global"])
def test_every_request_finishes_and_runs_repeat(router: str) -> None:
    config = RunConfig(policy="equinox", duration_s=30.0, seed=1)
    runs = [run_cluster(config, ClusterConfig(3, router, 0.5)) for _ in range(2)]
    assert runs[0].records == runs[1].records
    assert runs[0].stats.num_finished == len(runs[0].workload.requests)
    assert sum(r["num_routed"] for r in runs[0].replica_stats) == len(runs[0].workload.requests)
    assert all(r["num_routed"] > 0 for r in runs[0].replica_stats)


def test_cli_cluster_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc = main(["simulate", "-p", "vtc", "--duration", "20", "--replicas", "2", "--router", "least-work",
               "--sync-interval", "1", "-o", str(out), "--no-progress"])
    assert rc == 0
    doc = json.loads((out / "cluster.json").read_text())
    assert doc["num_replicas"] == 2 and doc["router"] == "least-work"
    assert "2 replicas, router least-work, global counters every 1 s" in capsys.readouterr().out


def test_cli_cluster_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--router", "equinox-global", "--duration", "5"]) != 0
    assert "--sync-interval" in capsys.readouterr().err
