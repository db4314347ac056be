"""Gateway overhead: latency the gateway adds per request and requests/s it sustains, against a fast fake engine.

Starts the fake OpenAI backend (zero think time) and the gateway as subprocesses on
127.0.0.1, then measures the same requests sent directly to the backend and through
the gateway:

1. added latency: sequential requests (one at a time), median and p99 end-to-end,
   streamed and not, and the difference;
2. throughput: closed loop with `--concurrency` clients for `--seconds`, requests/s.

The client, the gateway and the backend share this machine's cores, so figures are
for this machine only. Run: `python benchmarks/gateway_overhead.py [--policy vtc]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"
KEY = "bench-key-0123456789"


def free_port() -> int:
    """A free port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str], url: str) -> subprocess.Popen[bytes]:
    """Start a server subprocess and wait until `url` answers (bounded)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start: {' '.join(argv)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server subprocess (bounded)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def body(stream: bool, max_tokens: int) -> dict[str, object]:
    """A small completion request."""
    return {"model": "fake-model", "prompt": "the quick brown fox " * 8, "max_tokens": max_tokens, "stream": stream}


async def one(client: httpx.AsyncClient, url: str, stream: bool, max_tokens: int) -> float:
    """End-to-end seconds of one request (whole body read)."""
    t = time.perf_counter()
    async with client.stream("POST", url + "/v1/completions", json=body(stream, max_tokens),
                             headers={"authorization": f"Bearer {KEY}"}) as r:
        await r.aread()
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}")
    return time.perf_counter() - t


async def sequential(url: str, n: int, stream: bool, max_tokens: int) -> list[float]:
    """`n` requests one after another."""
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(20):  # warm-up: connections, caches
            await one(client, url, stream, max_tokens)
        return [await one(client, url, stream, max_tokens) for _ in range(n)]


async def closed_loop(url: str, concurrency: int, seconds: float, stream: bool, max_tokens: int) -> float:
    """Requests/s sustained by `concurrency` clients that send back to back for `seconds`."""
    done = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(one(client, url, stream, max_tokens) for _ in range(concurrency)))  # warm-up
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                await one(client, url, stream, max_tokens)
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - t0)


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[max(0, round(q / 100 * len(s)) - 1)]


def main() -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="vtc")
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per case")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    from equinox.integrations.gateway.config import hash_key

    bport, gport = free_port(), free_port()
    backend_url, gateway_url = f"http://127.0.0.1:{bport}", f"http://127.0.0.1:{gport}"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "gw.toml"
        cfg.write_text(
            f'[gateway]\nhost = "127.0.0.1"\nport = {gport}\npolicy = "{args.policy}"\n'
            f'[concurrency]\ninitial_window = 1024\n'
            f'[[backends]]\nurl = "{backend_url}"\nmax_concurrency = 1024\n'
            f'[[tenants]]\nname = "bench"\nkey_sha256 = "{hash_key(KEY)}"\nmax_queue = 4096\n'
        )
        backend = start([sys.executable, "-m", "equinox.integrations.gateway.fake_backend", "--port", str(bport)],
                        backend_url + "/health")
        gateway = start([sys.executable, "-m", "equinox", "gateway", "--config", str(cfg)], gateway_url + "/health")
        try:
            print(f"gateway overhead · policy {args.policy} · fake backend (no think time) · "
                  f"{args.max_tokens} output tokens · {os.cpu_count()} CPU cores shared by client, gateway, backend")
            print(f"\n{'case':<22}{'direct p50 ms':>15}{'gateway p50 ms':>16}{'added p50 ms':>14}"
                  f"{'direct p99 ms':>15}{'gateway p99 ms':>16}")
            for stream in (False, True):
                d = asyncio.run(sequential(backend_url, args.requests, stream, args.max_tokens))
                g = asyncio.run(sequential(gateway_url, args.requests, stream, args.max_tokens))
                name = "sequential, " + ("streamed" if stream else "not streamed")
                print(f"{name:<22}{statistics.median(d) * 1e3:>15.2f}{statistics.median(g) * 1e3:>16.2f}"
                      f"{(statistics.median(g) - statistics.median(d)) * 1e3:>14.2f}"
                      f"{pct(d, 99) * 1e3:>15.2f}{pct(g, 99) * 1e3:>16.2f}")
            print(f"\n{'case':<34}{'direct req/s':>14}{'gateway req/s':>15}")
            for stream in (False, True):
                d_rps = asyncio.run(closed_loop(backend_url, args.concurrency, args.seconds, stream, args.max_tokens))
                g_rps = asyncio.run(closed_loop(gateway_url, args.concurrency, args.seconds, stream, args.max_tokens))
                name = f"{args.concurrency} clients, " + ("streamed" if stream else "not streamed")
                print(f"{name:<34}{d_rps:>14.1f}{g_rps:>15.1f}")
        finally:
            stop(gateway)
            stop(backend)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
