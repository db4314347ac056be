"""Gateway config parsing, key hashing, authentication, and the OpenAI format helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from equinox.errors import ConfigError
from equinox.integrations.gateway.config import Authenticator, bearer_key, config_from_dict, hash_key, load_config
from equinox.integrations.gateway.openai_format import Aggregator, upstream_body
from equinox.streaming import count_tokens

REPO = Path(__file__).resolve().parents[3]


def doc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "backends": [{"url": "http://127.0.0.1:8000"}],
        "tenants": [{"name": "a", "key_sha256": hash_key("k")}],
    }
    base.update(over)
    return base


def test_example_config_loads() -> None:
    cfg = load_config(REPO / "examples" / "gateway.toml")
    assert cfg.policy == "equinox" and [t.name for t in cfg.tenants] == ["tenant-1", "tenant-2"]
    auth = Authenticator(cfg.tenants)
    tenant = auth.tenant_of("eqx-example-tenant-2-key-change-me")
    assert tenant is not None and tenant.name == "tenant-2" and tenant.weight == 2.0


def test_keys_are_matched_by_digest_only() -> None:
    cfg = config_from_dict(doc(tenants=[{"name": "a", "key_sha256": "sha256:" + hash_key("k").upper()}]))
    auth = Authenticator(cfg.tenants)
    assert auth.tenant_of("k") is not None
    assert auth.tenant_of(hash_key("k")) is None  # the digest itself is not a key
    assert auth.tenant_of("") is None and auth.tenant_of(None) is None
    assert bearer_key({"authorization": "Bearer  k "}) == "k"
    assert bearer_key({"x-api-key": "k"}) == "k"
    assert bearer_key({"authorization": "Basic abc"}) is None


@pytest.mark.parametrize(("over", "message"), [
    ({"gateway": {"prot": 1}}, "unknown key(s) prot"),
    ({"backends": []}, "at least one [[backends]]"),
    ({"backends": [{"url": "localhost:8000"}]}, "http(s) URL"),
    ({"tenants": [{"name": "a", "key_sha256": "abc"}]}, "hash-key"),
    ({"tenants": [{"name": "a"}]}, "needs key_sha256"),
    ({"tenants": [{"name": "bad name", "key_sha256": hash_key("k")}]}, "name"),
    ({"tenants": [{"name": "a", "key_sha256": hash_key("k")}, {"name": "b", "key_sha256": hash_key("k")}]},
     "same key"),
    ({"tenants": [{"name": "a", "key_sha256": hash_key("k"), "weight": 0}]}, "weight must be a positive number"),
    ({"gateway": {"policy": "nope"}}, "unknown policy"),
    ({"gateway": {"policy": "rpm"}}, "rpm"),
    ({"gateway": {"port": 70000}}, "port"),
    ({"concurrency": {"target_ttft_s": -1}}, "target_ttft_s"),
])
def test_config_mistakes_name_the_key(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(doc(**over), "gw.toml")
    assert message in str(info.value) and "gw.toml" in str(info.value)


def test_upstream_body_replaces_tenant_and_forces_streaming() -> None:
    payload = {"model": "m", "prompt": "x", "tenant": "evil", "vllm_xargs": {"tenant": "evil", "k": 1},
               "stream": False}
    body = upstream_body(payload, "alice", "tenant", is_vllm=True)
    assert body["vllm_xargs"] == {"tenant": "alice", "k": 1} and "tenant" not in body
    assert body["stream"] is True and body["stream_options"]["include_usage"] is True
    plain = upstream_body({"model": "m", "vllm_xargs": {"tenant": "evil"}}, "alice", "tenant", is_vllm=False)
    assert "vllm_xargs" not in plain


def test_aggregator_folds_chat_chunks_with_tool_calls() -> None:
    agg = Aggregator(is_chat=True)
    chunks = [
        {"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
        {"id": "x", "choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]},
        {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": ": 1}"}}]}, "finish_reason": "tool_calls"}]},
        {"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
    ]
    for c in chunks:
        agg.add(c)
    out = agg.response()
    msg = out["choices"][0]["message"]
    assert msg["content"] == "Hello" and msg["tool_calls"][0]["function"] == {"name": "f", "arguments": "{\"a\": 1}"}
    assert out["choices"][0]["finish_reason"] == "tool_calls" and out["usage"]["completion_tokens"] == 4
    assert [count_tokens(c) for c in chunks] == [1, 1, 1, 1, 0]


def test_aggregator_keeps_choices_apart() -> None:
    agg = Aggregator(is_chat=False)
    for i in range(4):
        agg.add({"id": "x", "choices": [{"index": i % 2, "text": str(i)}]})
    assert [c["text"] for c in agg.response()["choices"]] == ["02", "13"]
