"""HTTP fuzz of the gateway's OpenAI endpoints (issue #12): Hypothesis-generated bodies against a real
gateway and fake backend; no 5xx, no traceback in the log, and nothing left behind in the gateway.

The default run tries a few hundred bodies; `EQUINOX_FUZZ_EXAMPLES=5000` tries thousands
(the figures in docs/gateway.md). The gateway runs in this process here; the memory of a
gateway process of its own under the same bodies is measured by
`benchmarks/gateway_fuzz_memory.py`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import fuzz_bodies
import httpx
import pytest
from gateway_helpers import KEYS, MODEL, auth, make_config
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

NUM_EXAMPLES = int(os.environ.get("EQUINOX_FUZZ_EXAMPLES", "300"))
HANG_S = 30.0
PHASES = (Phase.explicit, Phase.reuse, Phase.generate) if os.environ.get("EQUINOX_FUZZ_NO_SHRINK") else tuple(Phase)

bodies = fuzz_bodies.bodies(MODEL)


@pytest.fixture(scope="module")
def stack() -> Any:
    """A fake backend and a gateway in front of it (tenant limit 8 tokens, so each case is quick)."""
    from servers import ServerThread, free_port

    from equinox.integrations.gateway.app import build_app
    from equinox.integrations.gateway.fake_backend import FakeBackend, FakeState
    from equinox.integrations.gateway.server import make_server

    backend = ServerThread(FakeBackend(FakeState(models=(MODEL,)))).start()
    config = make_config([backend.url], tenants_extra={"max_tokens": 8}, concurrency={"initial_window": 64},
                         health_interval_s=3600.0)  # no probe can time out on a loaded machine mid-fuzz
    app = build_app(config)
    port = free_port()
    gw = ServerThread(app, port=port, server=make_server(app, config, port=port)).start()
    client = httpx.Client(headers={**auth("alice"), "content-type": "application/json"},
                          timeout=float(os.environ.get("EQUINOX_FUZZ_TIMEOUT_S", "30")))
    seen: dict[str, int] = {"cases": 0, "5xx": 0}
    rss_before = _rss_mib()
    yield gw, client, seen
    client.close()
    gw.stop()
    backend.stop()
    print(f"\ngateway fuzz: {seen['cases']} bodies, {seen['5xx']} answered 5xx; resident memory of the test "
          f"process (gateway, fake backend and client) {rss_before:.0f} -> {_rss_mib():.0f} MiB")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _post(client: httpx.Client, url: str, body: bytes) -> httpx.Response:
    """POST and read the answer; an answer still streaming after HANG_S is a hang (fails with its start)."""
    parts: list[bytes] = []
    started = time.monotonic()
    with client.stream("POST", url, content=body) as r:
        for chunk in r.iter_bytes():
            parts.append(chunk)
            assert time.monotonic() - started < HANG_S, (b"".join(parts)[:500], body[:300])
    return httpx.Response(r.status_code, headers=r.headers, content=b"".join(parts))


@settings(max_examples=NUM_EXAMPLES, deadline=None, derandomize=True, print_blob=True, phases=PHASES,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(body=bodies, is_chat=st.booleans())
def test_any_body_gets_a_4xx_or_a_complete_answer(stack: Any, body: bytes, is_chat: bool,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    gw, client, seen = stack
    path = "/v1/chat/completions" if is_chat else "/v1/completions"
    with caplog.at_level(logging.WARNING):
        r = _post(client, gw.url + path, body)
    seen["cases"] += 1
    seen["5xx"] += r.status_code >= 500
    assert r.status_code < 500, (r.status_code, r.text[:300], body[:300])
    if r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"):
        assert r.text.rstrip().endswith("data: [DONE]")
    elif r.status_code == 200:
        assert r.json()["choices"]
    else:
        assert r.json()["error"]["message"]
    problems = [rec for rec in caplog.records if rec.exc_info or rec.levelno >= logging.ERROR
                or "failed" in rec.getMessage()]  # a backend marked failed: some body broke the chain
    assert not problems, [rec.getMessage() for rec in problems]


def test_nothing_is_left_behind_after_the_fuzz(stack: Any) -> None:
    gw, client, _ = stack
    state = gw.server.config.app.state.gateway
    assert not state.admission.running and state.policy.num_waiting == 0
    assert not state.active and not state.drained
    assert client.post(gw.url + "/v1/completions", json={"model": MODEL, "prompt": "ok"}).status_code == 200
    assert set(state.policy.counters()) <= set(KEYS)  # per-tenant state only for configured tenants
