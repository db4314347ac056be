"""GatewayState: what the handlers share (config, auth, policy, admission with its backends, metrics, HTTP client).

It also owns the gateway's life cycle: start (restore the fairness counters, probe the
backends, start the accounting, health and snapshot tasks), drain (on SIGTERM: refuse
new work, let running streams finish for `drain_timeout_s`, end the rest with an SSE
error event) and stop (a last snapshot of the counters). Kept out of `app.py` so the
request handlers (`proxy.py`) depend on this module only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

from equinox.integrations.gateway.admission import Admission, GatewayError
from equinox.integrations.gateway.backends import Backend, make_backends
from equinox.integrations.gateway.config import Authenticator, GatewayConfig
from equinox.integrations.gateway.metrics import GatewayMetrics
from equinox.scheduling.policy import make_policy

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
DRAIN_CANCEL_WAIT_S = 5.0  # after the drain time: how long the interrupted streams get to send their error event


class GatewayState:
    """Everything the handlers share, and the gateway's start / drain / stop."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.start_time = time.monotonic()
        self.auth = Authenticator(config.tenants)
        self.policy = make_policy(config.policy, config.policy_config())
        self.policy.set_platform(config.platform.platform())  # before restoring counters learned on it
        self.admission = Admission(self.policy, make_backends(config.backends, config.concurrency), config,
                                   self.clock)
        self.metrics = GatewayMetrics(lambda: self.admission, self.clock)
        self.request_ids = itertools.count()
        self.client: Any = None
        self.is_draining = False
        self.active: dict[asyncio.Task[Any], Any] = {}  # accepted requests being served -> their request
        self.drained: set[str] = set()  # request ids interrupted by the drain
        self._tasks: list[asyncio.Task[None]] = []
        self._restore_counters()

    def clock(self) -> float:
        """Seconds since the gateway started (the `now` every policy call gets)."""
        return time.monotonic() - self.start_time

    async def start(self) -> None:
        """Open the upstream client, probe every backend once, start accounting, health and snapshot tasks."""
        import httpx

        cfg = self.config
        read_s = max(cfg.first_token_timeout_s, cfg.stall_timeout_s)
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=cfg.connect_timeout_s, read=read_s, write=read_s, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=1024, keepalive_expiry=30.0),
            trust_env=False,
        )
        await asyncio.gather(*(self.probe(b) for b in self.admission.backends))
        self._tasks = [asyncio.create_task(self.admission.report_loop()), asyncio.create_task(self._health_loop())]
        if cfg.state_file:
            self._tasks.append(asyncio.create_task(self._snapshot_loop()))

    async def stop(self) -> None:
        """Cancel background tasks, write the last snapshot of the counters, close the client."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.config.state_file:
            self.save_counters()
        if self.client is not None:
            await self.client.aclose()

    # Drain --------------------------------------------------------------------------------
    async def drain(self) -> None:
        """Refuse new requests, fail queued ones (503), let running ones finish, then interrupt the rest."""
        if self.is_draining:
            return
        self.is_draining = True
        num_failed = self.admission.fail_waiting(GatewayError(
            503, "the gateway is shutting down; retry the request", kind="shutting_down",
            retry_after_s=self.config.retry_after_s))
        logger.warning("draining: %d request(s) running, %d queued request(s) answered 503; waiting at most %g s",
                       len(self.admission.running), num_failed, self.config.drain_timeout_s)
        deadline = time.monotonic() + self.config.drain_timeout_s
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not self.active:
            return
        logger.warning("drain time over: ending %d stream(s) with an error event", len(self.active))
        tasks = list(self.active)
        for task, req in list(self.active.items()):
            self.drained.add(req.request_id)
            task.cancel()
        await asyncio.wait(tasks, timeout=DRAIN_CANCEL_WAIT_S)

    # Fairness counters across restarts ------------------------------------------------------
    def _restore_counters(self) -> None:
        """Resume the policy's counters from `state_file`, when it holds a snapshot."""
        if not self.config.state_file:
            return
        from pathlib import Path

        from equinox.scheduling.state import read_snapshot, restore

        path = self.config.state_file
        if not Path(path).exists():
            logger.info("no fairness counters in %s yet: starting from zero", path)
            return
        snap = read_snapshot(path)
        restore(self.policy, snap, where=path)
        # the policy's clock resumes where the snapshot left it, so times inside its state stay in the past
        self.start_time = time.monotonic() - float(snap["taken_at"])
        logger.info("fairness counters restored from %s", path)

    def save_counters(self) -> None:
        """Write the policy's counters to `state_file` (atomically)."""
        from equinox.scheduling.state import snapshot, write_snapshot

        write_snapshot(self.config.state_file, snapshot(self.policy, self.clock()))

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.state_interval_s)
            try:
                self.admission.report_usage()  # charge what streamed since the last report first
                self.save_counters()
            except Exception:  # a full disk must not stop serving; the next interval tries again
                logger.exception("writing the fairness counters to %s failed", self.config.state_file)

    # Backends ---------------------------------------------------------------------------------
    async def probe(self, backend: Backend) -> None:
        """GET /v1/models on a backend: health, and its model list when the config names none."""
        headers = {"authorization": f"Bearer {backend.config.api_key}"} if backend.config.api_key else {}
        was_ok = backend.is_probe_ok
        try:
            resp = await self.client.get(backend.url + "/v1/models", headers=headers, timeout=PROBE_TIMEOUT_S)
            resp.raise_for_status()
            data = resp.json().get("data", [])
            if not backend.config.models:
                backend.models = {str(m["id"]) for m in data if isinstance(m, dict) and "id" in m}
            backend.is_probe_ok = True
        except Exception as exc:  # any failure means "not healthy"; the reason is logged
            backend.is_probe_ok = False
            if was_ok:
                logger.warning("backend %s failed its health probe: %s", backend.name, exc)
            return
        if not was_ok:
            logger.info("backend %s is healthy again", backend.name)
            self.admission.pump()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            await asyncio.gather(*(self.probe(b) for b in self.admission.backends))
            self.admission.pump()
