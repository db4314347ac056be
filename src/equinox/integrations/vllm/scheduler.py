"""The Equinox scheduler logic for vLLM, as a mixin over vLLM's `Scheduler` or `AsyncScheduler`.

`compat.py` mixes this class into the supported vLLM base classes; this module itself
never imports vLLM. It uses four seams of vLLM's V1 scheduler:

- `self.waiting` is replaced by `PolicyWaitingQueue`: the policy picks who is admitted
  next and where a preempted request goes back (policy.peek/pop/requeue/abort);
- before `schedule()`, `self.running` is reordered so that vLLM's `running.pop()` takes
  the policy's preemption victim (policy.choose_victim), and the per-step token budget
  and sequence cap are set from `policy.batch_limits` within configured bounds
  (adaptive batching; the seam MoPE uses);
- `update_from_output()` reports every iteration to the policy (`on_step` with
  per-tenant usage and the measured iteration time, `on_first_token`, `on_finish`);
- `_free_request()` is the one funnel every finished or aborted request passes.

With `[global_counters]` (settings.py) the policy's counters are merged with the other
engines' through the Ray counter actor every Δ (`integrations/ray/engine_sync.py`: Ray
is imported only then, and the sync never blocks `schedule()`).

`EQUINOX_VLLM_STEP_LOG=PATH` also writes every step's shape and timestamps to PATH (JSON
lines, see `calibration.py`), which calibrates the simulator's cost model on this engine.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

from equinox.errors import ConfigError
from equinox.integrations.vllm.accounting import PendingStep, build_report, record_step
from equinox.integrations.vllm.metrics import (
    MetricsBook,
    SidePortServer,
    ensure_log_handler,
    write_snapshot,
)
from equinox.integrations.vllm.platform import platform_from_vllm
from equinox.integrations.vllm.queue import PolicyWaitingQueue, VllmRequestView
from equinox.integrations.vllm.settings import PluginSettings, load_settings
from equinox.request import RequestView
from equinox.scheduling.policy import make_policy
from equinox.types import BatchLimits, StepReport

logger = logging.getLogger("equinox.integrations.vllm")

MAX_VICTIMS_ORDERED = 8  # victims pre-ordered per step; more than a few preemptions per step is rare
_ABORT_STATUSES = ("FINISHED_ABORTED", "FINISHED_ERROR")


class EquinoxSchedulerMixin:
    """Runs a registered Equinox policy inside vLLM's scheduler (see the module docstring)."""

    eqx_base_name = "sync"
    # Attributes provided by vLLM's Scheduler (declared for readers and type checkers).
    waiting: Any
    running: list[Any]
    requests: dict[str, Any]
    kv_cache_manager: Any
    block_size: int
    max_num_scheduled_tokens: int
    max_num_active_reqs: int
    max_num_running_reqs: int
    vllm_config: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        ensure_log_handler("EngineCore")
        settings = load_settings()
        self.eqx_settings: PluginSettings = settings
        self.eqx_clock = time.monotonic
        self.eqx_policy = make_policy(settings.policy, settings.policy_config())
        self.eqx_policy.set_platform(platform_from_vllm(self.vllm_config, settings.platform_gpu))
        self._eqx_check_engine_mode()
        self.eqx_sync: Any = None
        self._eqx_sync_connector: Any = None
        if settings.global_counters is not None:
            from equinox.integrations.ray.engine_sync import start_engine_sync

            self.eqx_sync, self._eqx_sync_connector = start_engine_sync(self.eqx_policy, settings.global_counters)
        if len(self.waiting):
            raise RuntimeError("Equinox must replace vLLM's waiting queue before any request arrives")
        self.waiting = PolicyWaitingQueue(self.eqx_policy, settings, self.eqx_clock, on_admit=self._eqx_on_admit)
        configured = int(self.max_num_scheduled_tokens)
        hi = min(settings.max_num_batched_tokens or configured, configured)
        lo = min(settings.min_num_batched_tokens or hi, hi)
        self.eqx_budget_bounds = (lo, hi)
        self.eqx_default_limits = BatchLimits(max_num_batched_tokens=hi, max_num_seqs=int(self.max_num_active_reqs))
        self.eqx_limits = self.eqx_default_limits
        self.eqx_metrics = MetricsBook()
        self.eqx_metrics.engine.policy = self.eqx_policy.name
        self.eqx_metrics.engine.scheduler_base = self.eqx_base_name
        self._eqx_step_id = 0
        self._eqx_pending: dict[int, PendingStep] = {}
        self._eqx_last_update_time = self.eqx_clock()
        self._eqx_in_update = False
        self._eqx_finished: list[Any] = []
        self._eqx_rejected_outputs: list[Any] = []
        self._eqx_last_write = -math.inf
        self._eqx_last_log = self.eqx_clock()
        self._eqx_snapshot: dict[str, Any] | None = None
        self._eqx_was_idle = True
        self._eqx_schedule_times: dict[int, float] = {}
        self._eqx_step_log = self._eqx_open_step_log()
        self._eqx_side_port = (
            SidePortServer(settings.metrics_port, lambda: self._eqx_snapshot)
            if settings.metrics_port else None
        )
        logger.info(
            "Equinox scheduler (%s base): policy=%s tenant_key=%r default_tenant=%r token budget %d..%d (config %s)",
            self.eqx_base_name, self.eqx_policy.name, settings.tenant_key, settings.default_tenant,
            lo, hi, settings.source,
        )

    def _eqx_open_step_log(self) -> Any:
        if not os.environ.get("EQUINOX_VLLM_STEP_LOG"):
            return None
        from equinox.integrations.vllm.calibration import StepLog

        log = StepLog.from_env()
        sched = self.vllm_config.scheduler_config
        assert log is not None
        log.config(
            max_num_batched_tokens=int(self.max_num_scheduled_tokens), max_num_seqs=int(self.max_num_running_reqs),
            block_size=int(self.block_size), num_kv_blocks=int(self.kv_cache_manager.block_pool.num_gpu_blocks) - 1,
            enable_chunked_prefill=bool(getattr(sched, "enable_chunked_prefill", True)),
            long_prefill_token_threshold=int(getattr(sched, "long_prefill_token_threshold", 0) or 0),
            policy=self.eqx_policy.name, scheduler_base=self.eqx_base_name,
        )
        logger.info("Equinox step log: %s", log.path)
        return log

    def _eqx_check_engine_mode(self) -> None:
        sched = self.vllm_config.scheduler_config
        vllm_policy = str(getattr(sched, "policy", "fcfs"))  # SchedulerConfig.policy: "fcfs" | "priority"
        if vllm_policy != "fcfs":
            # vLLM's priority mode would reorder its block-holding queue and pick preemption
            # victims by request priority across tenants, overriding the policy's choices.
            raise ConfigError(
                f"vLLM's --scheduling-policy {vllm_policy} cannot run under the Equinox scheduler, which "
                f"orders waiting requests by its own policy ({self.eqx_policy.name!r}) and would silently "
                "ignore request priorities: start vLLM with --scheduling-policy fcfs (the default), or drop "
                "--scheduler-cls to use vLLM's own priority scheduling"
            )
        is_async_engine = bool(getattr(sched, "async_scheduling", False))
        if is_async_engine and self.eqx_base_name != "async":
            raise ConfigError(
                "vLLM runs with async scheduling but the Equinox scheduler class has the synchronous "
                "base: use equinox.integrations.vllm.EquinoxScheduler (picks the base) or "
                "EquinoxAsyncScheduler, or start vLLM with --no-async-scheduling"
            )

    # Requests in ---------------------------------------------------------------------
    def add_request(self, request: Any) -> None:
        """Resolve the tenant, count the arrival, let vLLM enqueue (into the policy's queue)."""
        queue: PolicyWaitingQueue = self.waiting
        is_new = request.request_id not in self.requests
        view = queue.view_of(request)
        if is_new:
            stats = self.eqx_metrics.tenant(view.tenant)
            stats.num_requests_received += 1
            if view.problem is not None:
                stats.num_requests_malformed += 1
            if self._eqx_step_log is not None:
                self._eqx_step_log.request("arrival", view.request_id, view.tenant, view.arrival_time)
        super().add_request(request)  # type: ignore[misc]
        if queue.rejected:
            self._eqx_reject_pending()

    def _eqx_reject_pending(self) -> None:
        from equinox.integrations.vllm import compat

        queue: PolicyWaitingQueue = self.waiting
        rejected, queue.rejected = queue.rejected, []
        for request, reason in rejected:
            view = queue.views.get(str(request.request_id))
            tenant = view.tenant if view is not None else "?"
            logger.warning("request %s of tenant %r rejected by policy %s: %s",
                           request.request_id, tenant, self.eqx_policy.name, reason)
            self.eqx_metrics.tenant(tenant).num_requests_rejected += 1
            finished = self.finish_requests(request.request_id, compat.finished_error_status())  # type: ignore[attr-defined]
            self._eqx_rejected_outputs.extend(finished)

    def _eqx_on_admit(self, view: VllmRequestView) -> None:
        self.eqx_metrics.tenant(view.tenant).num_requests_admitted += 1

    # Scheduling ------------------------------------------------------------------------
    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        """Apply the policy's batch limits and victim order, then let vLLM schedule."""
        t0 = time.perf_counter()
        now = self.eqx_clock()
        if self.eqx_sync is not None:
            self.eqx_sync.tick(now)  # never waits: a merged view is applied once it has arrived
        self._eqx_apply_limits(now)
        self._eqx_order_victims(now)
        t1 = time.perf_counter()
        output = super().schedule(*args, **kwargs)  # type: ignore[misc]
        t2 = time.perf_counter()
        self._eqx_step_id += 1
        queue: PolicyWaitingQueue = self.waiting
        for rid in output.preempted_req_ids or ():
            view = queue.views.get(rid)
            if view is not None:
                self.eqx_metrics.tenant(view.tenant).num_preemptions += 1
        if output.total_num_scheduled_tokens > 0:
            self._eqx_pending[id(output)] = record_step(
                self._eqx_step_id, self.eqx_clock(), self.eqx_limits, output.num_scheduled_tokens,
                self.requests, queue.views,
            )
            if self._eqx_step_log is not None:
                self._eqx_schedule_times[id(output)] = now
        self.eqx_metrics.engine.overhead_s += (t1 - t0) + (time.perf_counter() - t2)
        return output

    def _eqx_apply_limits(self, now: float) -> None:
        limits = self.eqx_policy.batch_limits(now, self.eqx_default_limits)
        lo, hi = self.eqx_budget_bounds
        budget = min(max(int(limits.max_num_batched_tokens), lo), hi)
        seqs = min(max(int(limits.max_num_seqs), 1), int(self.max_num_running_reqs))
        if (budget, seqs) != (self.eqx_limits.max_num_batched_tokens, self.eqx_limits.max_num_seqs):
            self.eqx_limits = BatchLimits(max_num_batched_tokens=budget, max_num_seqs=seqs)
            logger.debug("equinox batch limits: %d tokens, %d sequences", budget, seqs)
        self.max_num_scheduled_tokens = budget
        self.max_num_active_reqs = seqs

    def _eqx_order_victims(self, now: float) -> None:
        """Move the policy's preemption victims to the end of `running` (vLLM preempts `running[-1]`)."""
        running = self.running
        if len(running) < 2:
            return
        pool = self.kv_cache_manager.block_pool
        budget_blocks = -(-self.eqx_limits.max_num_batched_tokens // self.block_size)
        if pool.get_num_free_blocks() > len(running) + budget_blocks:
            return  # this step cannot run out of KV blocks: no preemption possible
        views = self.waiting.views
        candidates: list[RequestView] = [views[r.request_id] for r in running if r.request_id in views]
        victims: list[str] = []
        for _ in range(min(MAX_VICTIMS_ORDERED, len(candidates) - 1)):
            victim = self.eqx_policy.choose_victim(candidates, now)
            candidates.remove(victim)
            victims.append(victim.request_id)
        if not victims:
            return
        chosen = set(victims)
        kept = [r for r in running if r.request_id not in chosen]
        self.running = kept + [views[rid].request for rid in reversed(victims)]

    # Results ---------------------------------------------------------------------------
    def update_from_output(self, scheduler_output: Any, model_runner_output: Any) -> Any:
        """Let vLLM fold the results back, then report the step to the policy."""
        t0 = time.perf_counter()
        start = self.eqx_clock()
        pending = self._eqx_pending.pop(id(scheduler_output), None)
        outputs_before = {
            rid: (req, int(req.num_output_tokens))
            for rid in scheduler_output.num_scheduled_tokens
            if (req := self.requests.get(rid)) is not None
        }
        self._eqx_in_update = True
        t1 = time.perf_counter()
        try:
            engine_outputs = super().update_from_output(scheduler_output, model_runner_output)  # type: ignore[misc]
        finally:
            self._eqx_in_update = False
        t2 = time.perf_counter()
        now = self.eqx_clock()
        deltas = {rid: int(req.num_output_tokens) - n for rid, (req, n) in outputs_before.items()}
        self._eqx_first_tokens(outputs_before, now)
        if pending is not None:
            report = self._eqx_report_step(pending, start, deltas, outputs_before)
            if self._eqx_step_log is not None:
                schedule_time = self._eqx_schedule_times.pop(id(scheduler_output), pending.scheduled_time)
                self._eqx_step_log.step(report, schedule_time, now, self._eqx_last_update_time, self._eqx_was_idle)
        self._eqx_last_update_time = now
        self._eqx_flush_finished(now)
        if self._eqx_rejected_outputs:
            from equinox.integrations.vllm import compat

            compat.append_finished_outputs(engine_outputs, self._eqx_rejected_outputs)
            self._eqx_rejected_outputs = []
        idle = not self.has_unfinished_requests()  # type: ignore[attr-defined]
        self._eqx_was_idle = idle
        self._eqx_publish(now, force=idle)
        self.eqx_metrics.engine.overhead_s += (t1 - t0) + (time.perf_counter() - t2)
        return engine_outputs

    def _eqx_first_tokens(self, outputs_before: dict[str, tuple[Any, int]], now: float) -> None:
        views = self.waiting.views
        for rid, (req, n_before) in outputs_before.items():
            if n_before == 0 and req.num_output_tokens > 0:
                view = views.get(rid)
                if view is None or view.first_token_time is not None:
                    continue
                view.first_token_time = now
                if self._eqx_step_log is not None:
                    self._eqx_step_log.request("first_token", rid, view.tenant, now)
                stats = self.eqx_metrics.tenant(view.tenant)
                stats.ttft_sum_s += now - view.arrival_time
                stats.num_ttft += 1
                self.eqx_policy.on_first_token(view, now)

    def _eqx_report_step(
        self, pending: PendingStep, start: float, deltas: dict[str, int], reqs: dict[str, tuple[Any, int]],
    ) -> StepReport:
        # Under async scheduling the step overlapped with the previous one: count from whichever is later.
        step_start = max(pending.scheduled_time, self._eqx_last_update_time)
        prompt_lengths = {rid: int(req.num_prompt_tokens) for rid, (req, _) in reqs.items()}
        pool = self.kv_cache_manager.block_pool
        total = int(pool.num_gpu_blocks) - 1  # vLLM reserves one null block
        report = build_report(
            pending, step_start, start, deltas, prompt_lengths, int(self.block_size),
            total - int(pool.get_num_free_blocks()), total,
        )
        self.eqx_policy.on_step(report)
        for tenant, usage in report.per_tenant.items():
            stats = self.eqx_metrics.tenant(tenant)
            stats.num_prompt_tokens += usage.num_prefill_tokens
            stats.num_output_tokens += usage.num_output_tokens
        engine = self.eqx_metrics.engine
        engine.num_steps += 1
        engine.last_step_duration_s = report.duration_s
        engine.num_kv_blocks_used = report.num_kv_blocks_used
        engine.num_kv_blocks_total = report.num_kv_blocks_total
        return report

    # Requests out ----------------------------------------------------------------------
    def _free_request(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        """vLLM frees a finished or aborted request: tell the policy (after the step report)."""
        result = super()._free_request(request, *args, **kwargs)  # type: ignore[misc]
        self._eqx_finished.append(request)
        if not self._eqx_in_update:
            self._eqx_flush_finished(self.eqx_clock())
        return result

    def _eqx_flush_finished(self, now: float) -> None:
        if not self._eqx_finished:
            return
        finished, self._eqx_finished = self._eqx_finished, []
        queue: PolicyWaitingQueue = self.waiting
        for request in finished:
            view = queue.forget(str(request.request_id))
            if view is None:
                continue
            stats = self.eqx_metrics.tenant(view.tenant)
            is_abort = getattr(request.status, "name", "") in _ABORT_STATUSES
            if is_abort:
                stats.num_requests_aborted += 1
            else:
                stats.num_requests_finished += 1
            if self._eqx_step_log is not None:
                self._eqx_step_log.request("abort" if is_abort else "finish", view.request_id, view.tenant, now)
            if view.admit_seq >= 0:  # never-admitted requests were handled by policy.abort
                self.eqx_policy.on_finish(view, now)

    # Observability -------------------------------------------------------------------
    def _eqx_publish(self, now: float, force: bool = False) -> None:
        settings = self.eqx_settings
        is_write_due = now - self._eqx_last_write >= settings.write_interval_s
        is_log_due = now - self._eqx_last_log >= settings.log_interval_s
        if not (force or is_write_due or is_log_due):
            return
        book = self.eqx_metrics
        counters = self.eqx_policy.counters()
        running: dict[str, int] = {}
        views = self.waiting.views
        for r in self.running:
            view = views.get(r.request_id)
            if view is not None:
                running[view.tenant] = running.get(view.tenant, 0) + 1
        for tenant, stats in book.tenants.items():
            stats.num_waiting = self.eqx_policy.num_waiting_of(tenant)
            stats.num_running = running.get(tenant, 0)
            stats.counter = float(counters.get(tenant, 0.0))
        if self.eqx_sync is not None:
            book.engine.num_counter_syncs = self.eqx_sync.num_syncs
            book.engine.num_counter_sync_failures = self.eqx_sync.num_failures
        book.engine.token_budget = self.eqx_limits.max_num_batched_tokens
        book.engine.max_num_seqs = self.eqx_limits.max_num_seqs
        self._eqx_snapshot = book.snapshot()
        if settings.metrics_file and (force or is_write_due):
            try:
                write_snapshot(settings.metrics_file, self._eqx_snapshot)
            except OSError as exc:  # metrics must never take the engine down
                logger.warning("cannot write Equinox metrics to %s: %s", settings.metrics_file, exc)
            self._eqx_last_write = now
        if is_log_due or (force and now - self._eqx_last_log > 1.0):
            book.log_summary()
            self._eqx_last_log = now

    def shutdown(self) -> None:
        """Publish a last snapshot, stop the side port, then shut vLLM's scheduler down."""
        try:
            self._eqx_publish(self.eqx_clock(), force=True)
            if self._eqx_side_port is not None:
                self._eqx_side_port.close()
            if self._eqx_step_log is not None:
                self._eqx_step_log.close()
            if self._eqx_sync_connector is not None:
                self._eqx_sync_connector.close()
        finally:
            super().shutdown()  # type: ignore[misc]
