"""A fast fake OpenAI-compatible engine for tests, benchmarks and trying a gateway config (loopback only).

It streams `max_tokens` one-token chunks after `ttft_s`, `itl_s` apart, records what
it received (tenant in `vllm_xargs`, headers) and when clients left, and can be told
to fail (HTTP 500) or stall (accept and never answer) through `POST /_fake/mode`.

    python -m equinox.integrations.gateway.fake_backend --port 8001 --ttft-s 0.01 --itl-s 0.005
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODES = ("ok", "fail", "stall", "stall_after_first")


@dataclass
class FakeState:
    """Behaviour knobs and what the fake saw."""

    models: tuple[str, ...] = ("fake-model",)
    ttft_s: float = 0.0
    itl_s: float = 0.0
    mode: str = "ok"
    num_requests: int = 0
    num_active: int = 0
    num_finished: int = 0
    abort_times: list[float] = field(default_factory=list)  # time.monotonic() when a client left mid-stream
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))

    def stats(self) -> dict[str, Any]:
        """What `GET /_fake/stats` returns."""
        return {"num_requests": self.num_requests, "num_active": self.num_active, "num_finished": self.num_finished,
                "num_aborted": len(self.abort_times), "abort_times": list(self.abort_times),
                "mode": self.mode, "recent": list(self.recent)}


async def _json(send: Send, status: int, doc: Any) -> None:
    body = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _body(receive: Receive) -> bytes:
    parts = []
    while True:
        m = await receive()
        if m["type"] == "http.disconnect":
            return b""
        parts.append(m.get("body", b""))
        if not m.get("more_body"):
            return b"".join(parts)


class FakeBackend:
    """The ASGI app (see the module docstring)."""

    def __init__(self, state: FakeState | None = None) -> None:
        self.state = state or FakeState()

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                await send({"type": m["type"] + ".complete"})
                if m["type"] == "lifespan.shutdown":
                    return
        path, method = scope["path"], scope["method"]
        st = self.state
        if method == "GET" and path == "/v1/models":
            await _json(send, 200, {"object": "list", "data": [{"id": m, "object": "model"} for m in st.models]})
        elif method == "GET" and path == "/health":
            await _json(send, 200, {"status": "ok"})
        elif method == "GET" and path == "/_fake/stats":
            await _json(send, 200, st.stats())
        elif method == "POST" and path == "/_fake/mode":
            doc = json.loads(await _body(receive) or b"{}")
            for key in ("mode", "ttft_s", "itl_s"):
                if key in doc:
                    setattr(st, key, doc[key])
            await _json(send, 200, {"mode": st.mode})
        elif method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            await self._generate(scope, receive, send, is_chat=path.endswith("chat/completions"))
        else:
            await _json(send, 404, {"error": {"message": f"no route {path}"}})

    async def _generate(self, scope: Message, receive: Receive, send: Send, *, is_chat: bool) -> None:
        st = self.state
        st.num_requests += 1
        raw = await _body(receive)
        try:
            doc = json.loads(raw)
        except ValueError:
            await _json(send, 400, {"error": {"message": "bad json"}})
            return
        headers = {k.decode(): v.decode() for k, v in scope.get("headers", [])}
        st.recent.append({"vllm_xargs": doc.get("vllm_xargs"), "headers": headers, "model": doc.get("model"),
                          "keys": sorted(doc), "max_tokens": doc.get("max_tokens"),
                          "max_completion_tokens": doc.get("max_completion_tokens")})
        if doc.get("model") not in st.models:
            await _json(send, 404, {"error": {"message": f"model {doc.get('model')!r} not found"}})
            return
        if st.mode == "fail":
            await _json(send, 500, {"error": {"message": "fake failure"}})
            return
        st.num_active += 1
        gone = asyncio.ensure_future(self._wait_gone(receive))
        work = asyncio.ensure_future(self._stream(doc, send, is_chat))
        try:
            await asyncio.wait({gone, work}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                st.abort_times.append(time.monotonic())
                work.cancel()
            else:
                st.num_finished += 1
        finally:
            gone.cancel()
            work.cancel()
            st.num_active -= 1

    @staticmethod
    async def _wait_gone(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def _stream(self, doc: dict[str, Any], send: Send, is_chat: bool) -> None:
        st = self.state
        if st.mode == "stall":
            await asyncio.sleep(3600)
        # as vLLM: chat reads max_completion_tokens first, then max_tokens; completions only max_tokens
        n = int((doc.get("max_completion_tokens") if is_chat else None) or doc.get("max_tokens") or 16)
        prompt_tokens = len(str(doc.get("prompt") or doc.get("messages") or "").split())
        rid = f"fake-{st.num_requests}"
        is_stream = bool(doc.get("stream"))
        if st.ttft_s:
            await asyncio.sleep(st.ttft_s)
        if not is_stream:
            await asyncio.sleep(st.itl_s * (n - 1))
            text = "tok " * n
            choice: dict[str, Any] = ({"index": 0, "message": {"role": "assistant", "content": text}}
                                      if is_chat else {"index": 0, "text": text})
            choice["finish_reason"] = "length"
            await _json(send, 200, {"id": rid, "object": "chat.completion" if is_chat else "text_completion",
                                    "model": doc["model"], "choices": [choice],
                                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n}})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        obj = "chat.completion.chunk" if is_chat else "text_completion"
        for i in range(n):
            if i and st.itl_s:
                await asyncio.sleep(st.itl_s)
            if i == 1 and st.mode == "stall_after_first":
                await asyncio.sleep(3600)
            last = i == n - 1
            if is_chat:
                delta: dict[str, Any] = {"content": "tok "}
                if i == 0:
                    delta["role"] = "assistant"
                choice = {"index": 0, "delta": delta, "finish_reason": "length" if last else None}
            else:
                choice = {"index": 0, "text": "tok ", "finish_reason": "length" if last else None}
            chunk = {"id": rid, "object": obj, "model": doc["model"], "choices": [choice]}
            await send({"type": "http.response.body", "body": b"data: " + json.dumps(chunk).encode() + b"\n\n",
                        "more_body": True})
        if (doc.get("stream_options") or {}).get("include_usage"):
            usage = {"id": rid, "object": obj, "model": doc["model"], "choices": [],
                     "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                               "total_tokens": prompt_tokens + n}}
            await send({"type": "http.response.body", "body": b"data: " + json.dumps(usage).encode() + b"\n\n",
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def main(argv: list[str] | None = None) -> int:
    """Run the fake backend on uvicorn."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", action="append", dest="models", help="served model name (repeatable)")
    parser.add_argument("--ttft-s", type=float, default=0.0)
    parser.add_argument("--itl-s", type=float, default=0.0)
    parser.add_argument("--mode", choices=MODES, default="ok")
    args = parser.parse_args(argv)
    state = FakeState(models=tuple(args.models or ["fake-model"]), ttft_s=args.ttft_s, itl_s=args.itl_s,
                      mode=args.mode)
    uvicorn.run(FakeBackend(state), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
