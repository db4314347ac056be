"""`equinox gateway` (the fair OpenAI-compatible front door) and `equinox bench` (live multi-tenant load)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from equinox.cli.argtypes import seed
from equinox.errors import ConfigError


def _need_gateway_deps() -> None:
    missing = []
    for module in ("starlette", "uvicorn", "httpx", "prometheus_client"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ConfigError(f"the gateway needs {', '.join(missing)}: pip install 'equinox-sched[gateway]'")


def run_gateway(args: argparse.Namespace) -> int:
    """Serve, validate a config, or hash/make an API key."""
    from equinox.integrations.gateway.config import hash_key, load_config, new_key

    if args.new_key:
        key = new_key()
        print(f"key:        {key}\nkey_sha256: {hash_key(key)}")
        return 0
    if args.hash_key is not None:
        key = sys.stdin.readline().strip() if args.hash_key == "-" else args.hash_key
        if not key:
            raise ConfigError("--hash-key needs a non-empty key (or '-' to read one line from stdin)")
        print(hash_key(key))
        return 0
    if not args.config:
        raise ConfigError("equinox gateway needs --config FILE (see examples/gateway.toml and docs/gateway.md)")
    config = load_config(args.config)
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.policy:
        overrides["policy"] = args.policy
    if overrides:
        import dataclasses

        config = dataclasses.replace(config, **overrides)
    if args.check:
        print(f"{args.config}: ok ({len(config.tenants)} tenant(s), {len(config.backends)} backend(s), "
              f"policy {config.policy})")
        return 0
    _need_gateway_deps()
    from equinox.integrations.gateway.app import serve

    serve(config, log_level="info" if args.verbose else "warning")
    return 0


def run_bench_cmd(args: argparse.Namespace) -> int:
    """Run a live load and write a run directory."""
    _need_gateway_deps()
    from equinox.bench.keys import load_tenant_keys
    from equinox.bench.runner import BenchConfig, run_bench
    from equinox.cli.table import render

    keys = load_tenant_keys(args.tenants_file)
    config = BenchConfig(
        target=args.target.rstrip("/"), workload=args.workload, duration_s=args.duration, seed=args.seed,
        rate_scale=args.rate_scale, num_tenants=args.num_tenants, model=args.model, interval_s=args.interval,
        window_s=args.window, warmup_s=args.warmup, drain_timeout_s=args.drain_timeout,
        max_connections=args.max_connections, ignore_eos=not args.no_ignore_eos, tenant_xargs=args.tenant_xargs,
        label=args.label,
    )

    def progress(done: int, total: int) -> None:
        if args.verbose and (done == total or done % 50 == 0):
            print(f"  {done}/{total} requests done", file=sys.stderr)

    result = run_bench(config, keys, args.out, progress)
    s = result.summary
    rows = [[t.tenant, t.weight, t.num_requests, t.num_finished, t.num_rejected, t.service,
             t.latency.ttft.p50, t.latency.ttft.p99, t.latency.e2e.p50] for t in s.tenants]
    print(render(["tenant", "weight", "requests", "finished", "errors", "service", "ttft_p50_s", "ttft_p99_s",
                  "e2e_p50_s"], rows, title=f"{config.target} · {config.workload} · {config.duration_s:g} s"))
    f = s.fairness
    print(f"\nservice difference max {f.service_diff_max:.1f} mean {f.service_diff_mean:.1f} tokens/s over "
          f"{f.num_windows} window(s); Jain's index mean {f.jain_mean:.3f} min {f.jain_min:.3f}")
    print(f"throughput {s.throughput.tokens_per_s:.1f} tokens/s, {s.throughput.requests_per_s:.2f} requests/s; "
          f"sent {result.stats['num_sent']}, ok {result.stats['num_ok']}, errors {result.stats['num_errors']}"
          + (f" {result.stats['errors']}" if result.stats["errors"] else ""))
    if result.run_dir is not None:
        print(f"run directory: {result.run_dir}")
    return 0


def add_gateway_parser(sub: Any) -> None:
    """Register `gateway` and `bench`."""
    p = sub.add_parser("gateway", help="run the fair OpenAI-compatible gateway in front of one or more engines",
                       description="Serve /v1/completions, /v1/chat/completions, /v1/models, /health and "
                                   "/metrics; tenants come from API keys (stored hashed in the config).")
    p.add_argument("--config", help="gateway TOML file (see examples/gateway.toml)")
    p.add_argument("--host", help="override [gateway] host")
    p.add_argument("--port", type=int, help="override [gateway] port")
    p.add_argument("--policy", help="override [gateway] policy (equinox, vtc, fcfs, rpm, ...)")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.add_argument("--hash-key", metavar="KEY", help="print the key_sha256 of KEY ('-': read it from stdin) and exit")
    p.add_argument("--new-key", action="store_true", help="print a fresh random API key and its key_sha256, and exit")
    p.set_defaults(func=run_gateway)

    b = sub.add_parser("bench", help="open-loop multi-tenant load against an OpenAI-compatible endpoint",
                       description="Send a workload live (one API key per tenant), measure TTFT/ITL/E2E from "
                                   "the stream, and write a run directory like `equinox simulate`.")
    b.add_argument("--target", required=True, help="base URL, e.g. http://127.0.0.1:8080 (gateway or vLLM)")
    b.add_argument("--workload", required=True, help="preset, VTC suite, or trace file (as for simulate)")
    b.add_argument("--tenants-file", help="TOML with [tenants] name = \"api-key\" (omit for engines without keys)")
    b.add_argument("--duration", type=float, required=True, help="seconds of arrivals to send")
    b.add_argument("-o", "--out", help="write a run directory here")
    b.add_argument("--model", help="model name (default: the first one the target lists)")
    b.add_argument("--seed", type=seed, default=0)
    b.add_argument("--rate-scale", type=float, default=1.0, help="multiply every tenant's arrival rate")
    b.add_argument("--num-tenants", type=int, help="tenants for presets that assign them")
    b.add_argument("--interval", type=float, default=1.0, help="metrics interval in seconds")
    b.add_argument("--window", type=float, help="fairness window in seconds (default 60, shrunk for short runs)")
    b.add_argument("--warmup", type=float, help="warm-up before the first window (default 30, shrunk)")
    b.add_argument("--drain-timeout", type=float, default=60.0,
                   help="seconds after the last arrival to wait for running requests")
    b.add_argument("--max-connections", type=int, default=2048)
    b.add_argument("--no-ignore-eos", action="store_true", help="do not send ignore_eos (for non-vLLM servers)")
    b.add_argument("--tenant-xargs", action="store_true",
                   help="send the tenant in vllm_xargs (vLLM with the Equinox plug-in, no gateway)")
    b.add_argument("--label", default="live", help="policy label recorded in config.json (e.g. the gateway's policy)")
    b.set_defaults(func=run_bench_cmd)
