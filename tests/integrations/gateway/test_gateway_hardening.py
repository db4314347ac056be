"""Issue #12 regressions against a real gateway and fake backend: output-limit bypass, deep JSON, slow
connections, and what /metrics and /health reveal without a key."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
from gateway_helpers import ADMIN_KEY, KEYS, MODEL, admin, auth

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def state_of(server: Any) -> Any:
    """The GatewayState of a running gateway."""
    return server.server.config.app.state.gateway


# 1. Output-token limit -------------------------------------------------------------------------

def test_chat_with_both_output_fields_cannot_bypass_the_limit(fake: Any, gateway: Any) -> None:
    backend, fstate = fake()
    gw = gateway([backend.url])
    r = httpx.post(gw.url + "/v1/chat/completions", headers=auth("alice"),
                   json={**CHAT, "max_completion_tokens": 3, "max_tokens": 99999999})
    assert r.status_code == 400 and "max_tokens=99999999" in r.json()["error"]["message"]
    assert fstate.num_requests == 0


def test_chat_forwards_one_bound_in_both_fields_and_charges_it(fake: Any, gateway: Any) -> None:
    backend, fstate = fake()
    gw = gateway([backend.url])
    seen: list[int | None] = []
    admission = state_of(gw).admission
    original = admission.submit

    def spy(req: Any) -> None:
        seen.append(req.max_tokens)
        original(req)

    admission.submit = spy
    r = httpx.post(gw.url + "/v1/chat/completions", headers=auth("alice"),
                   json={**CHAT, "max_completion_tokens": 3, "max_tokens": 500})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 3
    sent = fstate.recent[-1]
    assert (sent["max_completion_tokens"], sent["max_tokens"]) == (3, 3)  # any backend generates 3
    assert seen == [3]  # the policy is told what the backend generates


def test_fake_backend_reads_max_completion_tokens_first_like_vllm(fake: Any) -> None:
    backend, _ = fake()
    r = httpx.post(backend.url + "/v1/chat/completions",
                   json={**CHAT, "max_completion_tokens": 2, "max_tokens": 7})
    assert r.json()["usage"]["completion_tokens"] == 2


# 2. Nesting depth -------------------------------------------------------------------------------

def test_deeply_nested_json_is_400_and_the_connection_keeps_serving(fake: Any, gateway: Any) -> None:
    backend, fstate = fake()
    gw = gateway([backend.url])
    prompt_500 = "[" * 500 + "1" + "]" * 500
    body_100k = "[" * 100_000 + "]" * 100_000
    with httpx.Client(headers={**auth("alice"), "content-type": "application/json"}) as client:
        r = client.post(gw.url + "/v1/completions",
                        content=f'{{"model": "{MODEL}", "prompt": {prompt_500}, "max_tokens": 2}}')
        assert r.status_code == 400 and "max_json_depth" in r.json()["error"]["message"]
        r = client.post(gw.url + "/v1/completions", content=body_100k)
        assert r.status_code == 400 and "max_json_depth" in r.json()["error"]["message"]
        r = client.post(gw.url + "/v1/completions", json={"model": MODEL, "prompt": "ok", "max_tokens": 2})
        assert r.status_code == 200
        assert client.get(gw.url + "/v1/models").status_code == 200
    assert fstate.num_requests == 1


# 4. Slow connections -------------------------------------------------------------------------

def _is_closed_by_server(sock: socket.socket, wait_s: float = 10.0) -> bool:
    """True when the server closes `sock` (reads EOF or a reset) within `wait_s`; False when it stays open."""
    sock.settimeout(wait_s)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)))


def test_trickled_headers_are_closed_after_the_header_timeout(fake: Any, gateway: Any) -> None:
    backend, _ = fake()
    gw = gateway([backend.url], header_timeout_s=0.5)
    sock = _connect(gw.url)
    try:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # headers never end
        assert _is_closed_by_server(sock)
    finally:
        sock.close()


def test_unauthenticated_body_is_not_waited_for(fake: Any, gateway: Any) -> None:
    backend, _ = fake()
    gw = gateway([backend.url])
    sock = _connect(gw.url)
    try:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{\"model\"")
        sock.settimeout(10)
        head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 401")
        assert b"connection: close" in head.lower()
    finally:
        sock.close()


def test_authenticated_body_trickle_gets_408(fake: Any, gateway: Any) -> None:
    backend, _ = fake()
    gw = gateway([backend.url], body_timeout_s=0.5)
    sock = _connect(gw.url)
    try:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + KEYS["alice"].encode() + b"\r\nContent-Length: 100000\r\n\r\n{")
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 408")
    finally:
        sock.close()


def test_slow_connections_beyond_the_cap_evict_the_oldest_and_clients_are_served(fake: Any, gateway: Any) -> None:
    from equinox.integrations.gateway.server import MIN_EVICT_AGE_S

    backend, _ = fake()
    gw = gateway([backend.url], max_pending_connections=8, header_timeout_s=60.0)
    old = [_connect(gw.url) for _ in range(20)]
    for s in old:
        s.sendall(b"GET /v1/models HTTP/1.1\r\n")
    time.sleep(MIN_EVICT_AGE_S + 0.2)  # old enough to be evicted (young ones never are)
    new = [_connect(gw.url) for _ in range(20)]
    try:
        for s in new:
            s.sendall(b"GET /v1/models HTTP/1.1\r\n")
        r = httpx.get(gw.url + "/v1/models", headers=auth("bob"), timeout=30)  # served despite the flood
        assert r.status_code == 200
        assert all(_is_closed_by_server(s) for s in old)  # past the cap: the oldest were closed
        assert not _is_closed_by_server(new[-1], wait_s=0.3)  # the newest is still waiting for its headers
    finally:
        for s in old + new:
            s.close()


# 6. What is visible without a key -----------------------------------------------------------------

def test_metrics_and_health_hide_names_without_the_admin_key(fake: Any, gateway: Any) -> None:
    backend, _ = fake()
    gw = gateway([backend.url])
    httpx.post(gw.url + "/v1/completions", headers=auth("alice"), json={"model": MODEL, "prompt": "x",
                                                                        "max_tokens": 1})
    r = httpx.get(gw.url + "/metrics")
    assert r.status_code == 401 and "alice" not in r.text
    r = httpx.get(gw.url + "/metrics", headers=auth("alice"))  # a tenant key is not an admin key
    assert r.status_code == 401
    r = httpx.get(gw.url + "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "num_healthy_backends": 1}
    assert 'tenant="alice"' in httpx.get(gw.url + "/metrics", headers=admin()).text
    assert httpx.get(gw.url + "/health", headers=admin()).json()["backends"][0]["name"] == "b0"
    assert ADMIN_KEY not in json.dumps(httpx.get(gw.url + "/health", headers=admin()).json())


def test_public_metrics_is_an_explicit_setting(fake: Any, gateway: Any) -> None:
    backend, _ = fake()
    gw = gateway([backend.url], public_metrics=True)
    assert httpx.get(gw.url + "/metrics").status_code == 200
    assert "backends" in httpx.get(gw.url + "/health").json()


def test_bench_through_the_gateway_samples_counters_with_the_admin_key(fake: Any, gateway: Any,
                                                                       tmp_path: Any) -> None:
    from equinox.bench.keys import load_tenant_keys
    from equinox.bench.runner import BenchConfig, run_bench

    backend, _ = fake(ttft_s=0.01, itl_s=0.002)
    gw = gateway([backend.url])
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(f'admin_key = "{ADMIN_KEY}"\n[tenants]\nalice = "{KEYS["alice"]}"\nbob = "{KEYS["bob"]}"\n')
    config = BenchConfig(target=gw.url, workload="overload", duration_s=3.0, interval_s=0.5, model=MODEL)
    result = run_bench(config, load_tenant_keys(tenants), tmp_path / "run")
    assert result.stats["num_errors"] == 0, result.stats
    rows = (tmp_path / "run" / "counters.csv").read_text().splitlines()
    assert len(rows) > 1 and any("alice" in r for r in rows[1:])


def test_completions_cannot_smuggle_max_completion_tokens(fake: Any, gateway: Any) -> None:
    backend, fstate = fake()
    gw = gateway([backend.url])
    r = httpx.post(gw.url + "/v1/completions", headers=auth("alice"),
                   json={"model": MODEL, "prompt": "x", "max_completion_tokens": 10**15})
    assert r.status_code == 400 and "max_completion_tokens" in r.json()["error"]["message"]
    r = httpx.post(gw.url + "/v1/completions", headers=auth("alice"),
                   json={"model": MODEL, "prompt": "x", "max_completion_tokens": 7, "max_tokens": 2})
    assert r.json()["usage"]["completion_tokens"] == 2
    assert (fstate.recent[-1]["max_completion_tokens"], fstate.recent[-1]["max_tokens"]) == (2, 2)
