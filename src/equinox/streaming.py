"""Server-sent events of OpenAI-compatible streaming responses: the one parser every client here uses.

The gateway's upstream calls, the load generator behind `equinox bench`, the vLLM tests
and the benchmarks all read `/v1/completions` and `/v1/chat/completions` streams
through `EventReader` (issue #12 found three hand-written copies). Parsing follows the
SSE format (`data:` lines joined until a blank line; comments and other fields
ignored), and every event must be a JSON object until the final `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

DONE = "[DONE]"


class StreamError(Exception):
    """The stream broke the protocol: an event that is not a JSON object."""


class EventReader:
    """Reads (raw data, parsed event) pairs from an SSE line stream until `[DONE]` or its end."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self._lines = lines
        self.is_done = False  # True once `[DONE]` was read (a stream that just ends is incomplete)

    async def next(self, timeout_s: float | None = None) -> tuple[str, dict[str, Any]] | None:
        """The next event; None at `[DONE]` or the end of the stream. TimeoutError when none comes within
        `timeout_s`; StreamError for an event that is not a JSON object; transport errors pass through."""
        if self.is_done:
            return None
        if timeout_s is None:
            data = await self._next_data()
        else:
            async with asyncio.timeout(timeout_s):
                data = await self._next_data()
        if data is None:
            return None
        if data == DONE:
            self.is_done = True
            return None
        return data, parse_event(data)

    async def _next_data(self) -> str | None:
        parts: list[str] = []
        async for line in self._lines:
            if not line:  # blank line: dispatch the event
                if parts:
                    return "\n".join(parts)
                continue
            if line.startswith(":"):  # comment (keep-alive)
                continue
            name, _, value = line.partition(":")
            if name == "data":
                parts.append(value[1:] if value.startswith(" ") else value)
        return "\n".join(parts) if parts else None

    def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        while (event := await self.next()) is not None:
            yield event


def parse_event(data: str) -> dict[str, Any]:
    """An event's JSON object (StreamError otherwise)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise StreamError("the server sent an event that is not JSON") from None
    if not isinstance(doc, dict):
        raise StreamError("the server sent an event that is not a JSON object")
    return doc


def error_message(event: Mapping[str, Any]) -> str | None:
    """The message of an error event (`{"error": ...}` without choices), or None for a normal event."""
    if "error" not in event or event.get("choices"):
        return None
    err = event["error"]
    return str(err.get("message") if isinstance(err, dict) else err)[:500]


def count_tokens(event: Mapping[str, Any]) -> int:
    """Output tokens an event carries (one per choice with new text, content, reasoning or tool call)."""
    n = 0
    for choice in event.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if choice.get("text"):
            n += 1
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls")
                                        or delta.get("reasoning_content")):
            n += 1
    return n


def finish_reason(event: Mapping[str, Any]) -> str | None:
    """The finish reason of the first finished choice in an event, or None."""
    for choice in event.get("choices") or ():
        if isinstance(choice, dict) and choice.get("finish_reason"):
            return str(choice["finish_reason"])
    return None
