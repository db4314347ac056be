"""One streaming call to a backend, with the failure taxonomy the retry logic needs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from equinox.integrations.gateway.backends import Backend
from equinox.streaming import EventReader, StreamError, error_message

logger = logging.getLogger(__name__)


class UpstreamFailure(Exception):
    """The backend failed (refused, reset, 5xx, stalled, garbled): another backend may succeed."""


class UpstreamRejected(Exception):
    """The backend refused the request itself (4xx): the same on every backend, passed to the client."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"backend answered HTTP {status}")
        self.status = status
        self.body = body


class Upstream:
    """A streamed POST to one backend; `next_chunk` yields (raw data line, parsed chunk) until [DONE]."""

    def __init__(self, client: Any, backend: Backend, path: str, body: dict[str, Any], request_id: str) -> None:
        self.client = client
        self.backend = backend
        self.path = path
        self.body = body
        self.request_id = request_id
        self._cm: Any = None
        self._events: EventReader | None = None

    async def open(self, timeout_s: float) -> None:
        """Send the request and wait (at most `timeout_s`) for the response headers."""
        import httpx

        headers = {"content-type": "application/json", "x-request-id": self.request_id}
        if self.backend.config.api_key:
            headers["authorization"] = f"Bearer {self.backend.config.api_key}"
        self._cm = self.client.stream("POST", self.backend.url + self.path, content=json.dumps(self.body),
                                      headers=headers)
        try:
            response = await asyncio.wait_for(self._cm.__aenter__(), timeout_s)
        except TimeoutError:
            self._cm = None  # the cancelled __aenter__ cleaned up after itself
            raise UpstreamFailure(f"no response headers within {timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            self._cm = None
            raise UpstreamFailure(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # nothing of the response was read: another backend may take the request
            # The transport can fail in ways httpx does not wrap when a backend dies while the connection
            # is being set up (a clean-clone CI run: anyio's `getpeername` on a socket already closed raised
            # AttributeError, and the request ended as an internal error instead of moving to a live backend).
            self._cm = None
            raise UpstreamFailure(f"connection failed ({type(exc).__name__}: {exc})") from None
        if response.status_code != 200:
            try:
                content = await asyncio.wait_for(response.aread(), timeout_s)
            except (TimeoutError, httpx.HTTPError):
                content = b""
            status = response.status_code
            if status >= 500 or status in (408, 429):
                raise UpstreamFailure(f"HTTP {status}: {content[:200].decode(errors='replace')}")
            raise UpstreamRejected(status, content)
        self._events = EventReader(response.aiter_lines())

    async def next_chunk(self, timeout_s: float | None = None) -> tuple[str, dict[str, Any]] | None:
        """The next data event as (raw JSON text, parsed dict); None at [DONE] or end of stream."""
        import httpx

        assert self._events is not None, "open() first"
        try:
            event = await self._events.next(timeout_s)
        except TimeoutError:
            raise UpstreamFailure(f"no token within {timeout_s:g} s (backend stalled)") from None
        except httpx.HTTPError as exc:  # includes read timeouts (stall after the first token)
            raise UpstreamFailure(f"{type(exc).__name__}: {exc or 'stream broken'}") from None
        except StreamError as exc:
            raise UpstreamFailure(f"backend {exc}") from None
        if event is None:
            return None
        raw, chunk = event
        message = error_message(chunk)
        if message is not None:
            raise UpstreamFailure(f"backend error event: {message[:200]}")
        if "\n" in raw:  # a multi-line data field: relay it as one line
            raw = json.dumps(chunk)
        return raw, chunk

    async def close(self) -> None:
        """Close the connection (an unfinished stream is aborted: the engine sees the client leave)."""
        cm, self._cm = self._cm, None
        if cm is not None:
            with contextlib.suppress(Exception):
                await cm.__aexit__(None, None, None)
