"""OpenAI wire format: error bodies, request rewriting, streamed-chunk token counting, and aggregation.

The gateway always streams from the backend (so it can meter tokens, measure TTFT and
detect stalls); a client that asked for a single JSON response gets the chunks
folded back into one `text_completion` or `chat.completion` object here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SPOOFABLE_FIELDS = ("tenant", "tenant_id", "x_tenant", "equinox_tenant")


def parse_body(body: bytes, max_depth: int) -> dict[str, Any]:
    """The request body as a JSON object nested at most `max_depth` deep; GatewayError 400 otherwise."""
    from equinox.integrations.gateway.admission import GatewayError

    try:
        payload = json.loads(body)
    except RecursionError:  # nesting deeper than the interpreter's recursion limit (issue #12)
        raise GatewayError(400, f"request body is nested deeper than max_json_depth={max_depth}",
                           kind="invalid_request_error") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"request body is not valid JSON: {exc}", kind="invalid_request_error") from None
    if not isinstance(payload, dict):
        raise GatewayError(400, "request body must be a JSON object", kind="invalid_request_error")
    if json_depth(payload) > max_depth:
        raise GatewayError(400, f"request body is nested deeper than max_json_depth={max_depth}",
                           kind="invalid_request_error")
    return payload


def json_depth(doc: Any) -> int:
    """Nesting depth of a parsed JSON document (a scalar is 0, `[]` and `{}` are 1); iterative."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list)))
    return deepest


OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens")


def output_limit(payload: dict[str, Any], limit: int, *, is_chat: bool) -> int:
    """The output-token bound the backend will use; rewrites `payload` so every backend uses that one bound.

    Both output-limit fields, when present, must be positive integers within `limit`
    (ValueError otherwise), on both endpoints. vLLM reads `max_completion_tokens` first
    for chat and ignores it for text completions; other OpenAI-compatible servers may read
    either, so every field present is set to the bound vLLM uses, and the policy is
    charged what any backend generates (issue #12). Without a bound, `max_tokens` is set
    to `limit`.
    """
    values: dict[str, int] = {}
    for name in OUTPUT_FIELDS:
        value = payload.get(name)
        if value is None:
            payload.pop(name, None)
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"field {name!r} must be a positive integer, got {value!r}")
        if value > limit:
            raise ValueError(f"{name}={value} exceeds this API key's limit of {limit}")
        values[name] = value
    read_by_vllm = OUTPUT_FIELDS if is_chat else ("max_tokens",)
    bound = next((values[name] for name in read_by_vllm if name in values), limit)
    payload["max_tokens"] = bound
    for name in values:
        payload[name] = bound
    return bound


def error_body(status: int, message: str, kind: str, param: str | None = None) -> bytes:
    """An OpenAI-style error document."""
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": status}}).encode()


def sse(data: bytes | str) -> bytes:
    """One server-sent event carrying `data`."""
    if isinstance(data, str):
        data = data.encode()
    return b"data: " + data + b"\n\n"


def upstream_body(payload: Mapping[str, Any], tenant: str, tenant_key: str, *, is_vllm: bool) -> dict[str, Any]:
    """The body sent to a backend: tenant fields replaced by the authenticated tenant, always streamed."""
    body = {k: v for k, v in payload.items() if k not in SPOOFABLE_FIELDS}
    xargs = body.get("vllm_xargs")
    xargs = dict(xargs) if isinstance(xargs, dict) else {}
    xargs.pop(tenant_key, None)
    if is_vllm:
        xargs[tenant_key] = tenant
    if xargs:
        body["vllm_xargs"] = xargs
    else:
        body.pop("vllm_xargs", None)
    body["stream"] = True
    opts = body.get("stream_options")
    opts = dict(opts) if isinstance(opts, dict) else {}
    opts["include_usage"] = True
    body["stream_options"] = opts
    return body


def wants_usage_chunk(payload: Mapping[str, Any]) -> bool:
    """True when a streaming client asked for the final usage chunk itself."""
    opts = payload.get("stream_options")
    return isinstance(opts, dict) and bool(opts.get("include_usage"))


def is_usage_only(chunk: Mapping[str, Any]) -> bool:
    """The final `include_usage` chunk: usage and no choices."""
    return not chunk.get("choices") and bool(chunk.get("usage"))


class Aggregator:
    """Folds streamed chunks into one non-streaming response (completions or chat)."""

    def __init__(self, is_chat: bool) -> None:
        self.is_chat = is_chat
        self.head: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None

    def add(self, chunk: Mapping[str, Any]) -> None:
        """Fold one chunk in."""
        if not self.head:
            self.head = {k: chunk.get(k) for k in ("id", "created", "model", "system_fingerprint") if k in chunk}
        if chunk.get("usage"):
            self.usage = dict(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = int(choice.get("index", 0))
            acc = self.choices.setdefault(index, {"index": index, "text": [], "role": "assistant", "tool_calls": {},
                                                  "finish_reason": None, "logprobs": None, "stop_reason": None})
            if choice.get("finish_reason"):
                acc["finish_reason"] = choice["finish_reason"]
            if choice.get("stop_reason") is not None:
                acc["stop_reason"] = choice["stop_reason"]
            if self.is_chat:
                self._add_delta(acc, choice.get("delta") or {})
            else:
                acc["text"].append(choice.get("text") or "")
            self._add_logprobs(acc, choice.get("logprobs"))

    @staticmethod
    def _add_delta(acc: dict[str, Any], delta: Mapping[str, Any]) -> None:
        if delta.get("role"):
            acc["role"] = delta["role"]
        if delta.get("content"):
            acc["text"].append(delta["content"])
        for call in delta.get("tool_calls") or ():
            slot = acc["tool_calls"].setdefault(int(call.get("index", 0)), {
                "id": None, "type": "function", "function": {"name": "", "arguments": ""}})
            if call.get("id"):
                slot["id"] = call["id"]
            fn = call.get("function") or {}
            slot["function"]["name"] += fn.get("name") or ""
            slot["function"]["arguments"] += fn.get("arguments") or ""

    @staticmethod
    def _add_logprobs(acc: dict[str, Any], logprobs: Any) -> None:
        if not isinstance(logprobs, dict):
            return
        if acc["logprobs"] is None:
            acc["logprobs"] = {}
        for key, value in logprobs.items():
            if isinstance(value, list):
                acc["logprobs"].setdefault(key, []).extend(value)
            else:
                acc["logprobs"][key] = value

    def response(self) -> dict[str, Any]:
        """The aggregated response document."""
        choices = []
        for index in sorted(self.choices):
            acc = self.choices[index]
            text = "".join(acc["text"])
            if self.is_chat:
                message: dict[str, Any] = {"role": acc["role"], "content": text}
                if acc["tool_calls"]:
                    message["tool_calls"] = [acc["tool_calls"][i] for i in sorted(acc["tool_calls"])]
                choices.append({"index": index, "message": message, "logprobs": acc["logprobs"],
                                "finish_reason": acc["finish_reason"], "stop_reason": acc["stop_reason"]})
            else:
                choices.append({"index": index, "text": text, "logprobs": acc["logprobs"],
                                "finish_reason": acc["finish_reason"], "stop_reason": acc["stop_reason"]})
        doc = {**self.head, "object": "chat.completion" if self.is_chat else "text_completion", "choices": choices}
        doc["usage"] = self.usage
        return doc
