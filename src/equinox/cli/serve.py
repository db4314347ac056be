"""`equinox serve --ray`: the fair OpenAI-compatible front door as a Ray Serve application (issue 14)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from equinox.errors import ConfigError


def run_serve(args: argparse.Namespace) -> int:
    """Validate the gateway config, start the Serve application, serve until interrupted."""
    from equinox.integrations.gateway.config import load_config

    if not args.ray:
        raise ConfigError("equinox serve needs --ray (the Ray Serve application; `equinox gateway` serves "
                          "without Ray)")
    if not args.config:
        raise ConfigError("equinox serve needs --config FILE (the gateway's TOML format: see docs/ray.md)")
    config = load_config(args.config)
    if args.policy:
        config = dataclasses.replace(config, policy=args.policy)
    num_replicas = args.replicas or (2 if args.fake_engine else len(config.backends))
    for name, value in (("--replicas", num_replicas), ("--max-running", args.max_running)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if args.sync_interval is not None and not args.sync_interval > 0:
        raise ConfigError(f"--sync-interval must be a positive number of seconds, got {args.sync_interval}")
    from equinox.integrations.ray.compat import ensure_ray

    ensure_ray(args.ray)
    from equinox.integrations.ray.serve_app import ServeSettings, shutdown, start

    settings = ServeSettings(
        config, num_replicas=num_replicas, is_fake=args.fake_engine, max_running=args.max_running,
        sync_interval_s=None if args.no_global_counters else args.sync_interval,
        counter_snapshot=args.counter_snapshot,
    )
    start(settings, host=args.host, port=args.port)
    host, port = args.host or config.host, args.port or config.port
    print(f"equinox serve: {num_replicas} replica(s) ({'fake engines' if args.fake_engine else 'backends'}), "
          f"policy {config.policy}, at http://{host}:{port}/v1 (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        shutdown(settings)


def add_serve_parser(sub: Any) -> None:
    """Register `serve`."""
    p = sub.add_parser("serve", help="serve tenants fairly across replicas as a Ray Serve application",
                       description="An OpenAI-compatible ingress (tenants from API keys, as for `equinox gateway`) "
                                   "over N replicas, each an Equinox fair queue in front of one engine; global "
                                   "fairness counters through a Ray actor. Needs the ray extra.")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run on Ray: a local instance (no ADDRESS), the running cluster (auto) or ray://head:10001")
    p.add_argument("--config", help="gateway TOML file (tenants, keys, policy; [[backends]]: one vLLM URL per replica)")
    p.add_argument("--replicas", type=int, help="replicas (default: one per [[backends]] table; 2 with --fake-engine)")
    p.add_argument("--fake-engine", action="store_true", help="in-process fake engines instead of the backends")
    p.add_argument("--max-running", type=int, default=8, help="requests each replica runs at once (default 8)")
    p.add_argument("--sync-interval", type=float, default=0.2, metavar="SECONDS",
                   help="global-counter merge interval Δ (default 0.2)")
    p.add_argument("--no-global-counters", action="store_true", help="per-replica counters only")
    p.add_argument("--counter-snapshot", metavar="FILE", help="the counter actor's snapshot (survives restarts)")
    p.add_argument("--host", help="override [gateway] host")
    p.add_argument("--port", type=int, help="override [gateway] port")
    p.add_argument("--policy", help="override [gateway] policy")
    p.set_defaults(func=run_serve)
