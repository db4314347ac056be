"""Faults and load through the gateway: a backend crashing mid-run, and hundreds of concurrent streams."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from gateway_helpers import KEYS, MODEL, admin, auth, settled
from servers import FakeProcess

from equinox.bench.loadgen import BenchRequest, LoadOptions, run_load, synth_prompt
from equinox.integrations.gateway.upstream import Upstream, UpstreamFailure
from equinox.request import RequestSpec


def _stream(url: str, tenant: str, results: list[tuple[int, str]]) -> None:
    try:
        r = httpx.post(url + "/v1/completions", headers=auth(tenant), timeout=30,
                       json={"model": MODEL, "prompt": "one two three four", "max_tokens": 5, "stream": True})
        results.append((r.status_code, r.text))
    except httpx.HTTPError as exc:
        results.append((0, repr(exc)))


def test_backend_killed_mid_run_loses_no_accepted_request(gateway: Any) -> None:
    slow = FakeProcess("--ttft-s", "2.0")
    fast = FakeProcess("--ttft-s", "0.01")
    try:
        gw = gateway([slow.url, fast.url], backend_cooldown_s=30.0)
        on_slow = gw.server.config.app.state.gateway.admission.backends[0]
        results: list[tuple[int, str]] = []
        threads = [threading.Thread(target=_stream, args=(gw.url, ("alice", "bob")[i % 2], results))
                   for i in range(30)]
        for i, t in enumerate(threads):
            t.start()
            if i == 15:
                # A fixed sleep here left b0 idle at the kill in 1 run of 9 (all sent to b1, or not yet sent).
                assert settled(lambda: on_slow.num_in_flight > 0, True, timeout_s=10), "no request reached b0"
                slow.kill()  # a crash: requests waiting for their first token there (2 s: a wide margin) must move
        for t in threads:
            t.join(30)
        assert len(results) == 30, "a request hung"
        for status, text in results:
            assert status == 200, text
            assert '"error"' not in text and text.rstrip().endswith("data: [DONE]")
        metrics = httpx.get(gw.url + "/metrics", headers=admin()).text
        prefix = 'equinox_gateway_retries_total{backend="b0"}'
        retried = [line for line in metrics.splitlines() if line.startswith(prefix)]
        assert retried and float(retried[0].split()[-1]) >= 1, "no request was in flight on the killed backend"
        health = httpx.get(gw.url + "/health", headers=admin()).json()
        assert [b["healthy"] for b in health["backends"]] == [False, True]
    finally:
        slow.kill()
        fast.kill()


def test_hundreds_of_concurrent_streams_complete_without_errors(gateway: Any) -> None:
    # Streams last about 6 s (24 tokens, 0.25 s apart) and all 400 are sent within 1 s, so hundreds overlap
    # even where the client and the gateway (one process here) send slower than planned on a loaded machine.
    # The client shares this process (and its GIL) with the gateway, and its loop is busy with hundreds of streams,
    # so it sends some requests' headers seconds after their connections opened (measured on an idle 2-vCPU VM: up
    # to 400 connections waiting for headers at once, the oldest 1.6 s old, with no unread byte in any socket: the
    # client's lag, not the gateway's). The slow-header cap (default 256, eviction from 1 s) would rightly close
    # those as slow clients (a clean-clone CI run: 46 closed, ReadError); that cap has its own tests in
    # test_gateway_hardening.py, so here it is set above the number of connections.
    backend = FakeProcess("--ttft-s", "0.05", "--itl-s", "0.25")
    try:
        num = 400
        gw = gateway([backend.url], concurrency={"initial_window": 512}, backends_extra={"max_concurrency": 512},
                     max_pending_connections=num + 1)
        plan = [
            BenchRequest(RequestSpec(f"r{i}", ("alice", "bob")[i % 2], i * 0.0025, 16, 24, 24),
                         ("alice", "bob")[i % 2], KEYS[("alice", "bob")[i % 2]], synth_prompt(16, i))
            for i in range(num)
        ]
        peak = 0
        st = gw.server.config.app.state.gateway

        async def main() -> Any:
            nonlocal peak

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, len(st.admission.running))
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch())
            try:
                return await run_load(plan, LoadOptions(gw.url, MODEL, duration_s=5.0, drain_timeout_s=50.0))
            finally:
                watcher.cancel()

        outcomes, _ = asyncio.run(main())
        errors = [o.error for o in outcomes if o.error]
        closed = gw.server.config.http_protocol_class.num_closed_slow
        assert not errors, (errors[:5], f"{closed} connection(s) closed for slow headers")
        assert len(outcomes) == num and all(o.num_output_tokens == 24 for o in outcomes)
        assert peak >= 200, f"only {peak} streams were in flight at once"
        deadline = time.monotonic() + 5.0  # the gateway settles its books just after the client's [DONE]
        while st.admission.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not st.admission.running and st.policy.num_waiting == 0
    finally:
        backend.kill()


class _DyingConnection:
    """`client.stream(...)` whose entry fails as httpcore/anyio did when a backend died during connection set-up
    (a clean-clone CI run of the test above: AttributeError from `getpeername` on a socket already closed)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.num_exits = 0

    def stream(self, *args: Any, **kwargs: Any) -> _DyingConnection:
        return self

    async def __aenter__(self) -> None:
        raise self.exc

    async def __aexit__(self, *exc: object) -> None:
        self.num_exits += 1


@pytest.mark.parametrize("exc", [AttributeError("'NoneType' object has no attribute 'getpeername'"),
                                 ConnectionResetError(104, "Connection reset by peer")])
def test_a_transport_error_httpx_does_not_wrap_is_a_backend_failure(exc: Exception) -> None:
    """Such an error before any response byte is the backend's failure (the proxy retries the request on
    another backend), not an internal error that ends an accepted request."""
    conn = _DyingConnection(exc)
    backend = SimpleNamespace(url="http://127.0.0.1:9", config=SimpleNamespace(api_key=None))
    upstream = Upstream(conn, backend, "/v1/completions", {"prompt": "x"}, "eqx-1")
    with pytest.raises(UpstreamFailure, match=rf"connection failed \({type(exc).__name__}"):
        asyncio.run(upstream.open(1.0))
    asyncio.run(upstream.close())  # nothing left open to close
    assert conn.num_exits == 0
