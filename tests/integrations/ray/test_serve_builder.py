"""Serve's application builder for `serve run` / KubeRay RayService: args checked like the CLI's flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")

from equinox.errors import ConfigError
from equinox.integrations.ray.serve_app import app_builder, settings_from_args

EXAMPLE = str(Path(__file__).resolve().parents[3] / "examples" / "gateway.toml")


def test_args_become_the_same_settings_as_the_cli_flags() -> None:
    s = settings_from_args({"config": EXAMPLE, "replicas": 4, "max_running": 16, "sync_interval_s": 0.5,
                            "counter_snapshot": "/shared/c.json", "policy": "vtc"})
    assert (s.num_replicas, s.max_running, s.sync_interval_s, s.counter_snapshot) == (4, 16, 0.5, "/shared/c.json")
    assert s.gateway.policy == "vtc" and not s.is_fake
    local = settings_from_args({"config": EXAMPLE, "fake_engine": True, "sync_interval_s": None})
    assert local.sync_interval_s is None and local.num_replicas == 2 and local.is_fake


@pytest.mark.parametrize(("args", "needle"), [
    ({}, "config must name the gateway TOML"),
    ({"config": EXAMPLE, "replica": 2}, "unknown key"),
    ({"config": EXAMPLE, "replicas": 0}, "replicas must be an integer >= 1"),
    ({"config": EXAMPLE, "max_running": "8"}, "max_running must be an integer"),
    ({"config": EXAMPLE, "sync_interval_s": -1}, "sync_interval_s must be a positive number"),
    ({"config": "/nonexistent/gateway.toml"}, "gateway.toml"),
])
def test_bad_args_say_what_is_wrong(args: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        settings_from_args(args)


def test_the_builder_binds_ingress_over_the_fair_replicas_without_a_cluster() -> None:
    app = app_builder({"config": EXAMPLE, "fake_engine": True, "replicas": 3, "sync_interval_s": None})
    assert type(app).__name__ == "Application"
