"""A deterministic event queue: a heap keyed on (time, event-kind rank, sequence)."""

from __future__ import annotations

import enum
from heapq import heappop, heappush  # names, not module attributes: no lookup per call
from typing import Any


class EventKind(enum.IntEnum):
    """Event kinds; the value is the rank that orders simultaneous events."""

    STEP_DONE = 0  # an engine iteration finished (results fold in before new arrivals)
    ARRIVAL = 1  # a request arrives
    STOP = 2  # the run's time limit


class EventQueue:
    """Pops events in (time, rank, insertion sequence) order: fully deterministic."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, EventKind, Any]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, time: float, kind: EventKind, payload: Any = None) -> None:
        """Schedule an event."""
        heappush(self._heap, (time, int(kind), self._seq, kind, payload))
        self._seq += 1

    def pop(self) -> tuple[float, EventKind, Any]:
        """The earliest event."""
        time, _, _, kind, payload = heappop(self._heap)
        return time, kind, payload

    def peek_time(self) -> float | None:
        """Time of the earliest event, or None when empty."""
        return self._heap[0][0] if self._heap else None
