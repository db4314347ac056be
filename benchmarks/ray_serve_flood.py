"""Light-tenant TTFT under a flood through the Ray Serve application: global counters, per-replica counters, FCFS.

A local Ray instance runs the application with two fake-engine replicas (each runs
`--max-running` requests at once, `--itl-s` per token, `--tokens` tokens a request). A heavy
tenant keeps `--heavy-clients` requests in flight (closed loop) for the whole run; a light
tenant sends one streamed request every `--light-every-s` seconds. Printed per setting: the
light tenant's TTFT (time to the first streamed token) p50 / p90 / max, the heavy tenant's, and
requests served. Settings: the policy with global counters (Δ = `--sync-interval`), the policy
with per-replica counters only, and FCFS.

Everything shares this machine's cores, so the figures hold for this machine only. Run:
`python benchmarks/ray_serve_flood.py [--policy vtc] [--seconds 10]`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

import httpx

KEYS = {"heavy": "bench-heavy-0123456789", "light": "bench-light-0123456789"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ttft(client: httpx.AsyncClient, url: str, tenant: str, tokens: int) -> float:
    body = {"model": "fake-model", "prompt": "hello", "max_tokens": tokens, "stream": True}
    start = time.perf_counter()
    first = None
    async with client.stream("POST", url, json=body, headers={"authorization": f"Bearer {KEYS[tenant]}"}) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if first is None and line.startswith("data: {"):
                first = time.perf_counter() - start
    assert first is not None, "no token streamed"
    return first


async def _flood(url: str, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    end = time.monotonic() + args.seconds
    heavy: list[float] = []
    light: list[float] = []

    async def heavy_client(client: httpx.AsyncClient) -> None:
        while time.monotonic() < end:
            heavy.append(await _ttft(client, url, "heavy", args.tokens))

    async def light_client(client: httpx.AsyncClient) -> None:
        await asyncio.sleep(1.0)  # the heavy tenant's queue forms first
        while time.monotonic() < end:
            light.append(await _ttft(client, url, "light", args.tokens))
            await asyncio.sleep(args.light_every_s)

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=args.heavy_clients + 4)) as c:
        await asyncio.gather(*(heavy_client(c) for _ in range(args.heavy_clients)), light_client(c))
    return light, heavy


def _row(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:>6}: none"
    v = sorted(values)
    p90 = v[min(len(v) - 1, int(0.9 * len(v)))]
    return f"{name:>6}: p50 {statistics.median(v) * 1e3:7.0f} ms  p90 {p90 * 1e3:7.0f} ms  max {v[-1] * 1e3:7.0f} ms" \
           f"  ({len(v)} requests)"


def main() -> None:
    """Run the three settings and print the TTFT figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="equinox")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--heavy-clients", type=int, default=24)
    parser.add_argument("--light-every-s", type=float, default=0.5)
    parser.add_argument("--max-running", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--itl-s", type=float, default=0.01)
    parser.add_argument("--sync-interval", type=float, default=0.2)
    args = parser.parse_args()

    import ray
    from ray import serve

    from equinox.integrations.gateway.config import config_from_dict, hash_key
    from equinox.integrations.ray.serve_app import ServeSettings, build_app, shutdown, start

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1/completions"
    settings = None
    print(f"2 fake replicas x {args.max_running} slots, {args.tokens} tokens at {args.itl_s * 1e3:g} ms; heavy: "
          f"{args.heavy_clients} clients in a closed loop; light: one request every {args.light_every_s:g} s")
    try:
        runs = [(f"{args.policy}, global counters (sync {args.sync_interval:g} s)", args.policy, args.sync_interval),
                (f"{args.policy}, per-replica counters", args.policy, None), ("fcfs", "fcfs", None)]
        for i, (label, policy, sync) in enumerate(runs):
            config = config_from_dict({
                "gateway": {"policy": policy, "usage_report_interval_s": 0.02},
                "backends": [{"url": "http://127.0.0.1:9"}],
                "tenants": [{"name": t, "key_sha256": hash_key(k)} for t, k in KEYS.items()]})
            settings = ServeSettings(config, num_replicas=2, is_fake=True, max_running=args.max_running,
                                     fake_ttft_s=0.0, fake_itl_s=args.itl_s, sync_interval_s=sync,
                                     counter_actor=f"flood-counters-{i}")
            if i == 0:
                start(settings, host="127.0.0.1", port=port)
            else:
                serve.run(build_app(settings), name=settings.app_name, route_prefix="/")
            light, heavy = asyncio.run(_flood(url, args))
            print(f"\n{label}\n{_row('light', light)}\n{_row('heavy', heavy)}", flush=True)
    finally:
        if settings is not None:
            shutdown(settings)
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
