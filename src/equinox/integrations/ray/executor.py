"""An `Executor` whose jobs are Ray tasks: `equinox experiment ... --ray [ADDRESS]` (issue 14 item 5).

The experiment runner submits the same picklable functions it gives a process pool, so
results are identical either way. Run directories are written by the task, on whichever
node runs it: on a multi-node cluster the output folder must be on storage every node
shares (docs/ray.md).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from equinox.integrations.ray.compat import ensure_ray

T = TypeVar("T")


class RayExecutor(Executor):
    """Submits each call as a Ray task (one CPU each) and hands back a concurrent Future."""

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None) -> None:
        self._ray = ensure_ray(address, num_cpus=num_cpus)
        self._remote: dict[Callable[..., Any], Any] = {}
        self._refs: list[Any] = []

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run `fn(*args, **kwargs)` as a Ray task."""
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        ref = remote.remote(*args, **kwargs)
        self._refs.append(ref)
        future: Future[T] = ref.future()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancel unfinished tasks when asked (the Ray instance itself stays up for the caller)."""
        if cancel_futures:
            for ref in self._refs:
                try:
                    self._ray.cancel(ref)
                except Exception:  # a finished task cannot be cancelled; nothing to do
                    pass
        self._refs.clear()
