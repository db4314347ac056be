"""Ray Serve application overhead: latency per request through ingress, router and fair replica, with 1, 2, 4 replicas.

Starts a local Ray instance and `equinox serve --ray`'s application with in-process fake
engines that answer at once (ttft 0, itl 0, one output token), then for each replica count:

1. sequential requests (one at a time): median and p99 end-to-end latency, i.e. the
   HTTP proxy, ingress (auth, body checks), `FairRequestRouter`, the replica's fair queue
   and the response path;
2. closed loop with `--concurrency` clients for `--seconds`: requests/s.

Everything shares this machine's cores (the client, Ray's proxy, controller and replicas),
so the figures hold for this machine only. Run:
`python benchmarks/ray_serve_overhead.py [--replicas 1 2 4] [--requests 200] [--seconds 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

import httpx

KEY = "bench-key-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sequential(url: str, num: int) -> list[float]:
    body = {"model": "fake-model", "prompt": "hello", "max_tokens": 1}
    out = []
    with httpx.Client(timeout=30) as client:
        for _ in range(num):
            start = time.perf_counter()
            r = client.post(url, json=body, headers={"authorization": f"Bearer {KEY}"})
            r.raise_for_status()
            out.append(time.perf_counter() - start)
    return out


async def _closed_loop(url: str, concurrency: int, seconds: float) -> int:
    body = {"model": "fake-model", "prompt": "hello", "max_tokens": 1}
    end = time.monotonic() + seconds
    done = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < end:
            r = await client.post(url, json=body, headers={"authorization": f"Bearer {KEY}"})
            r.raise_for_status()
            done += 1

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return done


def main() -> None:
    """Measure and print one row per replica count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per replica count")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--policy", default="equinox")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()

    import ray
    from ray import serve

    from equinox.integrations.gateway.config import config_from_dict, hash_key
    from equinox.integrations.ray.serve_app import ServeSettings, build_app, shutdown, start

    config = config_from_dict({"gateway": {"policy": args.policy}, "backends": [{"url": "http://127.0.0.1:9"}],
                               "tenants": [{"name": "bench", "key_sha256": hash_key(KEY)}]})
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1/completions"
    print(f"policy {args.policy}, fake engines (ttft 0, itl 0, 1 token), {args.num_cpus} Ray CPUs")
    print(f"{'replicas':>8} {'p50_ms':>8} {'p99_ms':>8} {'req/s@' + str(args.concurrency):>10}")
    settings = None
    try:
        for i, n in enumerate(args.replicas):
            settings = ServeSettings(config, num_replicas=n, is_fake=True, max_running=64, fake_ttft_s=0.0,
                                     fake_itl_s=0.0, sync_interval_s=0.2, counter_actor="bench-counters")
            if i == 0:
                start(settings, host="127.0.0.1", port=port)
            else:
                serve.run(build_app(settings), name=settings.app_name, route_prefix="/")
            _sequential(url, 20)  # warm-up: connections, routing stats
            lat = sorted(_sequential(url, args.requests))
            p50 = statistics.median(lat) * 1e3
            p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3
            rate = asyncio.run(_closed_loop(url, args.concurrency, args.seconds)) / args.seconds
            print(f"{n:>8} {p50:>8.2f} {p99:>8.2f} {rate:>10.1f}", flush=True)
    finally:
        if settings is not None:
            shutdown(settings)
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
