"""Global counters for a policy inside an engine's scheduler loop (issue 14 item 2: vLLM's plug-in).

The vLLM plug-in (`integrations/vllm/scheduler.py`) runs its policy on vLLM's engine-core
thread, where a blocking call would stall every request. `EngineCounterSync` keeps the
counter protocol (`CounterClient`, the counter actor's `merge`) off that path:

- the engine calls `tick(now)` once per scheduling step; it never waits. Every Δ it sends
  the policy's counter growth with a non-blocking `actor.merge.remote(...)` and, at a later
  tick, applies the merged view once the reply has arrived (charges made meanwhile stay on
  top: `CounterClient.apply`). At most one report is in flight.
- connecting to Ray (`ray.init`, finding or creating the named actor) takes seconds and
  may fail, so it runs on a daemon thread, retried every `retry_s`; until it succeeds the
  engine orders by its local counters.
- a failed or unanswered merge (actor restarting, cluster gone) is a logged warning, never
  an exception in the engine: the engine keeps serving on its local counters and
  reconnects. One warning when the sync breaks, one info line when it is back.
- until the first merged view and after a failure the policy is the plain local one,
  counter lift included; while views arrive the actor lifts for the cluster (a local lift
  would be summed once per replica). Lifts made locally during an outage reach the actor
  as growth at reconnection, like charges.

The transport (`submit`: report dict -> `concurrent.futures.Future` of the merged view) is
injectable, so tests drive the protocol without a Ray instance.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from equinox.errors import ConfigError
from equinox.scheduling.global_counters import CounterClient
from equinox.scheduling.interface import Policy

logger = logging.getLogger("equinox.integrations.ray.engine_sync")

Submit = Callable[[dict[str, Any]], "Future[Any]"]


class SyncSettings(Protocol):
    """What the sync reads from the plug-in's `[global_counters]` settings (vllm/settings.py)."""

    @property
    def sync_interval_s(self) -> float: ...
    @property
    def address(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def replica(self) -> str: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def snapshot(self) -> str | None: ...


def default_replica_name() -> str:
    """host:pid of this engine process (unique per engine; a restarted engine is a new replica)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class EngineCounterSync:
    """The counter protocol for an engine's policy, never blocking the caller (see the module docstring)."""

    def __init__(self, policy: Policy, replica: str, sync_interval_s: float, *, timeout_s: float = 10.0,
                 submit: Submit | None = None) -> None:
        if not sync_interval_s > 0:
            raise ConfigError(f"global counters: sync_interval_s must be > 0, got {sync_interval_s!r}")
        # The policy's own lift (VTC lifts, LCF does not) serves while no merged view does: the actor
        # lifts for the cluster once connected (CounterClient turns the local lift off).
        self._own_lift = bool(getattr(policy, "is_lifting", False))
        self.client = CounterClient(replica, policy)  # ConfigError for a policy without counters
        self.policy = policy
        policy.is_lifting = self._own_lift  # type: ignore[attr-defined]  # not synced yet: plain local policy
        self.replica = replica
        self.sync_interval_s = float(sync_interval_s)
        self.timeout_s = float(timeout_s)
        self.submit = submit
        self.num_syncs = 0
        self.num_failures = 0
        self.last_view: dict[str, dict[str, float]] | None = None
        self._future: Future[Any] | None = None
        self._sent_time = 0.0
        self._next_time = -float("inf")
        self._is_broken = False
        self.on_disconnect: Callable[[], None] | None = None  # the Ray connector reconnects

    def tick(self, now: float) -> None:
        """Apply a merged view that has arrived; send the next report when Δ has passed. Never waits."""
        future = self._future
        if future is not None:
            if future.done():
                self._future = None
                self._receive(future)
            elif now - self._sent_time > self.timeout_s:
                self._future = None
                self._fail(f"the counter actor did not answer within {self.timeout_s:g} s")
            else:
                return
        if self.submit is None or now < self._next_time:
            return
        self._next_time = now + self.sync_interval_s
        try:
            self._future = self.submit(self.client.report().as_dict())
        except Exception as exc:  # the actor handle is dead, Ray is shutting down, ...
            self._fail(f"cannot send to the counter actor: {exc}")
            return
        self._sent_time = now

    def is_in_flight(self) -> bool:
        """A report was sent and its merged view has not been applied yet."""
        return self._future is not None

    def _receive(self, future: Future[Any]) -> None:
        try:
            view = future.result(timeout=0)
        except Exception as exc:
            self._fail(f"the counter actor failed the merge: {exc}")
            return
        self.client.apply(view)
        self.policy.is_lifting = False  # type: ignore[attr-defined]  # the actor lifts
        self.last_view = view
        self.num_syncs += 1
        if self._is_broken:
            logger.info("global counters of %s: sync with the counter actor restored", self.replica)
            self._is_broken = False

    def _fail(self, why: str) -> None:
        self.num_failures += 1
        self.policy.is_lifting = self._own_lift  # type: ignore[attr-defined]  # local policy until it is back
        if not self._is_broken:
            logger.warning("global counters of %s: %s; ordering by this engine's counters until it is back",
                           self.replica, why)
            self._is_broken = True
        else:
            logger.debug("global counters of %s: %s", self.replica, why)
        if self.on_disconnect is not None:
            self.on_disconnect()


class RayConnector:
    """Connects an `EngineCounterSync` to the counter actor on a daemon thread, and again after a failure."""

    def __init__(self, sync: EngineCounterSync, settings: SyncSettings, *, retry_s: float = 5.0) -> None:
        self.sync = sync
        self.settings = settings
        self.retry_s = retry_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        sync.on_disconnect = self._disconnected
        self._thread = threading.Thread(target=self._run, name="equinox-counter-connect", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop reconnecting (the Ray connection itself ends with the process)."""
        self._stop.set()
        self._wake.set()

    def _disconnected(self) -> None:
        self.sync.submit = None
        self._wake.set()

    def _run(self) -> None:
        is_first = True
        while not self._stop.is_set():
            if self.sync.submit is None:
                try:
                    self.sync.submit = self._connect()
                    logger.info("global counters of %s: connected to the counter actor %r (Ray %s, Δ %g s)",
                                self.sync.replica, self.settings.actor, self.settings.address,
                                self.sync.sync_interval_s)
                except Exception as exc:  # no cluster, no Ray, actor unreachable: retry later
                    level = logging.WARNING if is_first else logging.DEBUG
                    logger.log(level, "global counters of %s: cannot reach the counter actor %r at Ray address "
                               "%r: %s; retrying every %g s, ordering by this engine's counters meanwhile",
                               self.sync.replica, self.settings.actor, self.settings.address, exc, self.retry_s)
                    is_first = False
                    self._stop.wait(self.retry_s)
                    continue
            self._wake.wait()
            self._wake.clear()
            if not self._stop.is_set():
                self._stop.wait(self.retry_s)  # back off before reconnecting

    def _connect(self) -> Submit:
        from equinox.integrations.ray.compat import import_ray
        from equinox.integrations.ray.counters import counter_actor

        ray = import_ray()
        settings = self.settings
        if not ray.is_initialized():
            # From this thread Ray leaves the engine's SIGTERM handler alone (it only installs its own
            # on the main thread).
            ray.init(address=settings.address, namespace=settings.namespace, log_to_driver=False,
                     logging_level=logging.WARNING)
        try:
            actor = ray.get_actor(settings.actor, namespace=settings.namespace)
        except ValueError:  # not there yet: create it, detached, as `equinox serve --ray` does
            actor = counter_actor(settings.snapshot, name=settings.actor, namespace=settings.namespace,
                                  is_detached=True, forget_after_s=max(5.0, 20 * self.sync.sync_interval_s))
        ray.get(actor.replicas.remote(), timeout=settings.timeout_s)  # fail here when the actor cannot start

        def submit(report: dict[str, Any]) -> Future[Any]:
            return actor.merge.remote(report).future()  # type: ignore[no-any-return]

        return submit


def start_engine_sync(policy: Policy, settings: SyncSettings, *,
                      retry_s: float = 5.0) -> tuple[EngineCounterSync, RayConnector]:
    """The sync for an engine's policy, connecting to the counter actor in the background."""
    replica = settings.replica or default_replica_name()
    sync = EngineCounterSync(policy, replica, settings.sync_interval_s, timeout_s=settings.timeout_s)
    return sync, RayConnector(sync, settings, retry_s=retry_s)
