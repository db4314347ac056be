"""Gateway under slow connections: 1,000 clients that trickle headers without a key, and real clients beside them.

Starts the fake OpenAI backend and `equinox gateway` as subprocesses on 127.0.0.1. Opens
`--slow` connections that each send one header byte every `--trickle-s` seconds and never
finish (a slowloris), then sends `--requests` ordinary requests with a key, one after
another, and prints their latency next to the same requests without the slow
connections. Also prints how many slow connections the gateway still holds (it closes
them after `header_timeout_s`, and keeps at most `max_pending_connections`).

The client, the gateway and the backend share this machine's cores, so figures are for
this machine only. Run: `python benchmarks/gateway_slow_connections.py [--slow 1000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_overhead import KEY, free_port, pct, start, stop  # noqa: E402


async def trickle(port: int, stop_at: float, trickle_s: float, held: list[int]) -> None:
    """One slow connection: a request line, then one header byte every `trickle_s` (never finishing)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    held[0] += 1
    try:
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        while time.monotonic() < stop_at:
            await asyncio.sleep(trickle_s)
            if reader.at_eof():
                break
            writer.write(b"a")
            await writer.drain()
    except OSError:
        pass
    finally:
        held[0] -= 1
        writer.close()


async def latencies(url: str, n: int) -> list[float]:
    """End-to-end seconds of `n` keyed requests sent one after another (each on a new connection)."""
    out = []
    for _ in range(n):
        async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
            t = time.perf_counter()
            r = await client.post(url + "/v1/completions", headers={"authorization": f"Bearer {KEY}"},
                                  json={"model": "fake-model", "prompt": "hello", "max_tokens": 8})
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
            out.append(time.perf_counter() - t)
    return out


async def run(url: str, port: int, args: argparse.Namespace) -> dict[str, object]:
    """Baseline latencies, then the same with the slow connections open."""
    base = await latencies(url, args.requests)
    held = [0]
    stop_at = time.monotonic() + args.hold_s
    slow = [asyncio.create_task(trickle(port, stop_at, args.trickle_s, held)) for _ in range(args.slow)]
    await asyncio.sleep(2.0)  # let them connect
    opened = held[0]
    loaded = await latencies(url, args.requests)
    still = held[0]
    await asyncio.gather(*slow)
    return {"base": base, "loaded": loaded, "opened": opened, "still_open": still}


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=1000, help="slow connections")
    parser.add_argument("--requests", type=int, default=50, help="keyed requests per case")
    parser.add_argument("--trickle-s", type=float, default=1.0)
    parser.add_argument("--hold-s", type=float, default=15.0, help="how long the slow clients keep trying")
    parser.add_argument("--header-timeout-s", type=float, default=10.0)
    parser.add_argument("--max-pending", type=int, default=256)
    args = parser.parse_args()

    from equinox.integrations.gateway.config import hash_key

    backend_port, gw_port = free_port(), free_port()
    backend_url, gw_url = f"http://127.0.0.1:{backend_port}", f"http://127.0.0.1:{gw_port}"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "gw.toml"
        cfg.write_text(
            f'[gateway]\nport = {gw_port}\npolicy = "vtc"\nheader_timeout_s = {args.header_timeout_s}\n'
            f"max_pending_connections = {args.max_pending}\n\n"
            f'[[backends]]\nurl = "{backend_url}"\n\n'
            f'[[tenants]]\nname = "t"\nkey_sha256 = "{hash_key(KEY)}"\n')
        backend = start([sys.executable, "-m", "equinox.integrations.gateway.fake_backend", "--port",
                         str(backend_port)], backend_url + "/health")
        gateway = start([sys.executable, "-m", "equinox.cli.main", "gateway", "--config", str(cfg)],
                        gw_url + "/health")
        try:
            result = asyncio.run(run(gw_url, gw_port, args))
        finally:
            stop(gateway)
            stop(backend)
    base, loaded = result["base"], result["loaded"]
    assert isinstance(base, list) and isinstance(loaded, list)
    print(f"{args.slow} slow connections (one header byte per {args.trickle_s:g} s, no key); gateway "
          f"header_timeout_s={args.header_timeout_s:g}, max_pending_connections={args.max_pending}")
    print(f"  slow connections open 2 s after they started: {result['opened']}; after the keyed requests: "
          f"{result['still_open']}")
    print("| case | keyed requests | p50 | p99 | max |")
    print("|---|---|---|---|---|")
    for name, xs in (("no slow connections", base), (f"{args.slow} slow connections", loaded)):
        print(f"| {name} | {len(xs)} ok | {statistics.median(xs) * 1e3:.1f} ms | {pct(xs, 99) * 1e3:.1f} ms | "
              f"{max(xs) * 1e3:.1f} ms |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(main())
