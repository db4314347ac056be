"""The gateway over HTTP against fake backends: protocol, authentication, tenant isolation, errors."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from gateway_helpers import KEYS, MODEL, admin, auth, settled

COMPLETION = {"model": MODEL, "prompt": "hello there general", "max_tokens": 5}


def state_of(server: Any) -> Any:
    """The GatewayState of a running gateway."""
    return server.server.config.app.state.gateway


def sse_events(text: str) -> list[Any]:
    """The data payloads of an SSE body ([DONE] kept as a string)."""
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_completion_non_streaming_is_aggregated(fake: Any, gateway: Any) -> None:
    backend, _ = fake()
    gw = gateway([backend.url])
    r = httpx.post(gw.url + "/v1/completions", headers=auth("alice"), json=COMPLETION)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["object"] == "text_completion"
    assert doc["choices"][0]["text"] == "tok " * 5
    assert doc["choices"][0]["finish_reason"] == "length"
    assert doc["usage"]["completion_tokens"] == 5
    assert float(r.headers["x-equinox-queue-wait-s"]) >= 0.0


def test_chat_streaming_passes_chunks_and_hides_usage_unless_asked(fake: Any, gateway: Any) -> None:
    backend, _ = fake()
    gw = gateway([backend.url])
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}
    r = httpx.post(gw.url + "/v1/chat/completions", headers=auth("bob"), json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["tok "] * 3
    assert all(c["choices"] for c in chunks)  # the usage-only chunk the gateway asked for is not forwarded
    body["stream_options"] = {"include_usage": True}
    events = sse_events(httpx.post(gw.url + "/v1/chat/completions", headers=auth("bob"), json=body).text)
    assert events[-2]["usage"]["completion_tokens"] == 3


def test_chat_non_streaming_builds_a_message(fake: Any, gateway: Any) -> None:
    backend, _ = fake()
    gw = gateway([backend.url])
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 2}
    doc = httpx.post(gw.url + "/v1/chat/completions", headers=auth("alice"), json=body).json()
    assert doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"] == {"role": "assistant", "content": "tok tok "}


def test_wrong_or_missing_key_is_401(fake: Any, gateway: Any) -> None:
    backend, state = fake()
    gw = gateway([backend.url])
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": KEYS["alice"]}):
        r = httpx.post(gw.url + "/v1/completions", headers=headers, json=COMPLETION)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert "API key" in r.json()["error"]["message"]
    assert httpx.get(gw.url + "/v1/models").status_code == 401
    assert state.num_requests == 0  # nothing reached the engine


def test_spoofed_tenant_header_and_fields_have_no_effect(fake: Any, gateway: Any) -> None:
    backend, state = fake()
    gw = gateway([backend.url])
    spoof = {**COMPLETION, "vllm_xargs": {"tenant": "bob", "other": 1}, "tenant": "bob", "tenant_id": "bob"}
    headers = {**auth("alice"), "x-tenant": "bob", "x-tenant-id": "bob", "x-equinox-tenant": "bob"}
    r = httpx.post(gw.url + "/v1/completions", headers=headers, json=spoof)
    assert r.status_code == 200
    seen = state.recent[-1]
    assert seen["vllm_xargs"] == {"tenant": "alice", "other": 1}
    assert "tenant" not in seen["keys"] and "tenant_id" not in seen["keys"]
    assert not any("tenant" in h for h in seen["headers"])
    metrics = httpx.get(gw.url + "/metrics", headers=admin()).text
    assert 'equinox_gateway_output_tokens_total{tenant="alice"} 5.0' in metrics
    assert 'equinox_gateway_output_tokens_total{tenant="bob"}' not in metrics


def test_bad_requests_get_clear_4xx(fake: Any, gateway: Any) -> None:
    backend, state = fake()
    gw = gateway([backend.url])
    url = gw.url + "/v1/completions"
    h = auth("alice")
    cases = [
        (httpx.post(url, headers=h, content=b"{not json"), 400, "not valid JSON"),
        (httpx.post(url, headers=h, json=[1, 2]), 400, "JSON object"),
        (httpx.post(url, headers=h, json={"prompt": "x"}), 400, "'model' is required"),
        (httpx.post(url, headers=h, json={**COMPLETION, "model": "nope"}), 404, "does not exist"),
        (httpx.post(url, headers=h, json={**COMPLETION, "max_tokens": 10_000}), 400, "exceeds"),
        (httpx.post(url, headers=h, json={**COMPLETION, "max_tokens": -1}), 400, "positive integer"),
        (httpx.post(url, headers=h, json={"model": MODEL}), 400, "'prompt'"),
        (httpx.post(gw.url + "/v1/chat/completions", headers=h, json={"model": MODEL}), 400, "'messages'"),
    ]
    for response, status, text in cases:
        assert response.status_code == status, response.text
        assert text in response.json()["error"]["message"]
    assert state.num_requests == 0


def test_models_health_and_metrics(fake: Any, gateway: Any) -> None:
    backend, _ = fake()
    gw = gateway([backend.url])
    assert [m["id"] for m in httpx.get(gw.url + "/v1/models", headers=auth("bob")).json()["data"]] == [MODEL]
    health = httpx.get(gw.url + "/health", headers=admin()).json()
    assert health["status"] == "ok" and health["backends"][0]["healthy"]
    httpx.post(gw.url + "/v1/completions", headers=auth("bob"), json=COMPLETION)
    text = httpx.get(gw.url + "/metrics", headers=admin()).text
    for name in ("equinox_gateway_queue_length", "equinox_gateway_queue_wait_seconds", "equinox_gateway_ttft_seconds",
                 "equinox_gateway_prompt_tokens_total", "equinox_gateway_output_tokens_total",
                 "equinox_gateway_fairness_counter", "equinox_gateway_backend_window"):
        assert name in text, name
    assert 'equinox_gateway_fairness_counter{kind="vtc",tenant="bob"}' in text


def test_queue_full_is_429_with_retry_after(fake: Any, gateway: Any) -> None:
    backend, _ = fake(ttft_s=0.5)
    gw = gateway([backend.url], tenants_extra={"max_queue": 1},
                 concurrency={"initial_window": 1, "min_window": 1}, backends_extra={"max_concurrency": 1})
    url = gw.url + "/v1/completions"

    async def burst() -> list[httpx.Response]:
        import asyncio

        async with httpx.AsyncClient(timeout=30) as client:
            return list(await asyncio.gather(*(client.post(url, headers=auth("alice"), json=COMPLETION)
                                               for _ in range(4))))

    import asyncio

    statuses = sorted(r.status_code for r in asyncio.run(burst()))
    # one running, one queued (max_queue = 1), the rest refused
    assert statuses == [200, 200, 429, 429]
    refused = next(r for r in asyncio.run(burst()) if r.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert "max_queue" in refused.json()["error"]["message"]


def test_failing_backend_is_retried_on_another(fake: Any, gateway: Any) -> None:
    bad, bad_state = fake(mode="fail")
    good, good_state = fake()
    gw = gateway([bad.url, good.url])
    for _ in range(4):
        r = httpx.post(gw.url + "/v1/completions", headers=auth("alice"), json={**COMPLETION, "stream": True})
        assert r.status_code == 200 and sse_events(r.text)[-1] == "[DONE]"
    assert settled(lambda: good_state.num_finished, 4) == 4
    assert bad_state.num_requests >= 1


def test_all_backends_failing_is_a_clear_502(fake: Any, gateway: Any) -> None:
    bad, _ = fake(mode="fail")
    gw = gateway([bad.url])
    r = httpx.post(gw.url + "/v1/completions", headers=auth("alice"), json=COMPLETION)
    assert r.status_code == 502
    assert "failed before the first token" in r.json()["error"]["message"]
    # the backend now cools down: new requests get a 503 telling the client to retry
    r = httpx.post(gw.url + "/v1/completions", headers=auth("alice"), json=COMPLETION)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"


def test_stalled_backend_before_first_token_is_retried(fake: Any, gateway: Any) -> None:
    stalled, _ = fake(mode="stall")
    good, good_state = fake()
    gw = gateway([stalled.url, good.url], first_token_timeout_s=0.3)
    for _ in range(2):
        r = httpx.post(gw.url + "/v1/completions", headers=auth("bob"), json=COMPLETION, timeout=10)
        assert r.status_code == 200
    assert settled(lambda: good_state.num_finished, 2) == 2


def test_stall_after_first_token_ends_stream_with_error_event(fake: Any, gateway: Any) -> None:
    stalled, _ = fake(mode="stall_after_first")
    gw = gateway([stalled.url], stall_timeout_s=0.3, first_token_timeout_s=0.3)
    r = httpx.post(gw.url + "/v1/completions", headers=auth("bob"), json={**COMPLETION, "stream": True}, timeout=10)
    assert r.status_code == 200
    events = sse_events(r.text)
    assert events[0]["choices"][0]["text"] == "tok "
    assert events[-2]["error"]["code"] == 502 and events[-1] == "[DONE]"
    # a non-streaming client gets a plain 502 instead
    r = httpx.post(gw.url + "/v1/completions", headers=auth("bob"), json=COMPLETION, timeout=10)
    assert r.status_code in (502, 503)


def test_client_disconnect_aborts_upstream_and_stops_charging(fake: Any, gateway: Any) -> None:
    backend, state = fake(itl_s=0.05)
    gw = gateway([backend.url])
    st = state_of(gw)
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", gw.url + "/v1/completions", headers=auth("alice"),
                           json={**COMPLETION, "max_tokens": 400, "stream": True}) as r:
            lines = r.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
            left = time.monotonic()
    # issue #7: the upstream request is aborted within 1 s of the client leaving
    deadline = left + 1.0
    while not state.abort_times and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state.abort_times, "the backend never saw the gateway close the stream"
    assert state.abort_times[0] - left < 1.0
    deadline = time.monotonic() + 2.0
    while st.admission.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not st.admission.running
    # tokens that reached the gateway before the client left are charged in the next usage report
    pending = settled(lambda: bool(st.admission._pending_output or st.admission._pending_prompt), False, 5.0)
    assert not pending, "no usage report charged the disconnected stream's tokens"
    time.sleep(0.1)  # the report that emptied them hands them to the policy right after
    charged = st.policy.counters()["alice"]
    assert charged > 0
    time.sleep(0.3)  # several usage reports later, nothing more is charged
    assert st.policy.counters()["alice"] == charged
    metrics = httpx.get(gw.url + "/metrics", headers=admin()).text
    assert 'equinox_gateway_client_disconnects_total{tenant="alice"} 1.0' in metrics


def test_client_disconnect_while_queued_removes_the_request(fake: Any, gateway: Any) -> None:
    backend, state = fake(ttft_s=1.0)
    gw = gateway([backend.url], concurrency={"initial_window": 1}, backends_extra={"max_concurrency": 1})
    st = state_of(gw)
    import threading

    blocker = threading.Thread(target=lambda: httpx.post(gw.url + "/v1/completions", headers=auth("bob"),
                                                         json=COMPLETION, timeout=10))
    blocker.start()
    holds = settled(lambda: bool(st.admission.running), True, 10.0)  # bob's request holds the one slot
    assert holds, "the blocking request never reached the backend"
    try:
        httpx.post(gw.url + "/v1/completions", headers=auth("alice"), json=COMPLETION, timeout=0.3)
    except httpx.TimeoutException:
        pass
    deadline = time.monotonic() + 2.0
    while st.policy.num_waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    assert st.policy.num_waiting == 0
    blocker.join(10)
    assert state.num_requests == 1  # the abandoned request never reached the backend
