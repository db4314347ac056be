"""CPU cost of the gateway's admission and placement per request, without HTTP.

Drives `Admission` the way the request handler does (submit, dispatch, first token,
`--tokens` streamed tokens recorded on the request, finish) with `--in-flight` requests
running on two backends and a usage report every 50 requests, and prints the process
CPU time per request (CPU time, so other jobs on the machine disturb it less than wall
time). Run: `PYTHONPATH=src python benchmarks/gateway_admission_cost.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from equinox.integrations.gateway.admission import Admission, GatewayRequest
from equinox.integrations.gateway.backends import make_backends
from equinox.integrations.gateway.config import config_from_dict, hash_key
from equinox.scheduling.policy import make_policy


class Clock:
    """A clock the benchmark advances."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def cost_us(policy: str, num_in_flight: int, num_tokens: int, num_requests: int) -> float:
    """Microseconds of CPU per request."""
    window = num_in_flight // 2 + 1
    doc = {
        "gateway": {"policy": policy, "max_queue_total": 10 * num_requests},
        "concurrency": {"initial_window": window},
        "backends": [{"url": f"http://127.0.0.1:{9 + i}", "name": f"b{i}", "models": ["m"],
                      "max_concurrency": window} for i in range(2)],
        "tenants": [{"name": t, "key_sha256": hash_key(f"key-{t}-0123456789"), "max_queue": 10 * num_requests}
                    for t in ("alice", "bob")],
    }
    cfg = config_from_dict(doc, "(benchmark)")
    clock = Clock()
    adm = Admission(make_policy(cfg.policy, cfg.policy_config()), make_backends(cfg.backends, cfg.concurrency),
                    cfg, clock)
    reqs: list[GatewayRequest] = []

    def arrive() -> None:
        n = len(reqs)
        req = GatewayRequest(f"r{n}", ("alice", "bob")[n % 2], clock.now, 50, num_tokens, "m")
        adm.submit(req)
        reqs.append(req)

    for _ in range(num_in_flight):
        arrive()
    started = time.process_time()
    for i in range(num_requests):
        clock.now += 0.001
        req = reqs[i]
        await adm.wait_dispatch(req)
        adm.on_first_token(req, 0.01)
        for _ in range(num_tokens):
            req.add_output(1)
        adm.finish(req, itl_s=0.01)
        arrive()
        if i % 50 == 0:
            adm.report_usage()
    return (time.process_time() - started) / num_requests * 1e6


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--tokens", type=int, default=16, help="output tokens per request")
    args = parser.parse_args()
    print(f"admission CPU per request · {args.requests:,} requests · {args.tokens} tokens each · two backends")
    print("| policy | in flight | CPU per request |")
    print("|---|---:|---:|")
    for policy in ("vtc", "equinox"):
        for num_in_flight in (16, 256, 1024):
            us = asyncio.run(cost_us(policy, num_in_flight, args.tokens, args.requests))
            print(f"| {policy} | {num_in_flight} | {us:.1f} us |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
