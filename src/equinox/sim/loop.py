"""The discrete-event serving simulator: arrivals, iterations, completions; deterministic."""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from equinox.compiled import mypyc_attr, picklable_when_compiled
from equinox.metrics.collector import Collector
from equinox.request import Request, RequestSpec
from equinox.sim.backend import EngineBackend
from equinox.sim.engine import Engine, SchedulerOutput, StepOutcome
from equinox.sim.engine.planner import DecodeRun
from equinox.sim.events import EventKind, EventQueue
from equinox.types import StepResult

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@mypyc_attr(native_class=False)  # a plain class even when compiled: run directories read its __dict__
@dataclass(frozen=True)
class SimStats:
    """Counts of what the loop did."""

    num_arrivals: int
    num_finished: int
    num_rejected: int
    num_steps: int
    end_time: float
    is_truncated: bool


class Simulator:
    """Replays requests through an iteration scheduler and an engine backend.

    Events live in a heap keyed on (time, kind rank, sequence). Only the next arrival
    is in the heap at any time (arrivals are streamed in order), so the heap stays tiny
    and a million-request trace costs no more memory than its records.

    Two exact fast paths apply when the backend can time a batch shape (`time_of`):
    `fast_forward` folds runs of decode-only iterations into one event (decode_run.py),
    and `lazy_decode` keeps decoding requests in a cohort advanced in O(tenants) per
    iteration (cohort.py). Either off gives the same results, only slower.
    """

    def __init__(
        self,
        requests: Iterable[RequestSpec],
        scheduler: Engine,
        backend: EngineBackend,
        collector: Collector,
        *,
        until: float | None = None,
        progress: ProgressFn | None = None,
        num_requests_hint: int = 0,
        fast_forward: bool = True,
        lazy_decode: bool = True,
    ) -> None:
        self.scheduler = scheduler
        self.backend = backend
        self.collector = collector
        self.until = until
        self._progress = progress
        self._num_hint = num_requests_hint
        self._arrivals = iter(requests)
        self.events = EventQueue()
        self.now = 0.0
        self.live: dict[str, Request] = {}
        self._in_flight: SchedulerOutput | DecodeRun | None = None
        # Folding identical decode iterations needs a backend that can time a batch without running it.
        self._time_of = getattr(backend, "time_of", None) if fast_forward else None
        self._decode_time = None
        if self._time_of is not None and lazy_decode:
            scheduler.use_cohort()  # a backend that times batch shapes needs no per-request list
            decode_time_of = getattr(backend, "decode_time_of", None)
            self._decode_time = decode_time_of() if decode_time_of is not None else None
        self._num_arrivals = self._num_finished = self._num_rejected = self._num_steps = 0
        self._last_arrival_time = 0.0
        self._next_arrival_time = math.inf

    def run(self) -> SimStats:
        """Run until every request finished (or `until`).

        Python's cyclic garbage collector is paused meanwhile (and restored after): the loop
        makes no reference cycles, but every collection would walk the growing list of
        finished-request records (about 5 % of a million-request run).
        """
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if was_enabled:
                gc.enable()

    def _run(self) -> SimStats:
        events = self.events
        self._push_next_arrival()
        if self.until is not None:
            events.push(self.until, EventKind.STOP)
        truncated = False
        while events:
            time, kind, payload = events.pop()
            self.now = time
            if kind is EventKind.ARRIVAL:
                run = self._in_flight
                if isinstance(run, DecodeRun) and not run.is_folded:
                    # A run that ends with an iteration crossing this arrival: its own
                    # iterations ended before it, so they fold in first.
                    self._fold(self.scheduler.apply_decode_run(run), 0, run.end_time)
                self._on_arrival(payload)
                self._push_next_arrival()
            elif kind is EventKind.STEP_DONE:
                self._on_step_done(payload)
            else:
                truncated = bool(self.live) or self._num_arrivals < self._num_hint
                break
            if self._in_flight is None:
                # Fold in every event of this instant (e.g. a burst of arrivals) before planning.
                next_time = events.peek_time()
                if next_time is None or next_time > time:
                    self._start_step()
        self.scheduler.sync()
        if self.live and not truncated:
            # Requests left with no event to wake the engine: a stall, never a silent loss.
            logger.warning("simulation ended with %d requests unfinished and nothing left to run them",
                           len(self.live))
            truncated = True
        self._flush_unfinished()
        return SimStats(
            self._num_arrivals, self._num_finished, self._num_rejected, self._num_steps, self.now, truncated
        )

    def _push_next_arrival(self) -> None:
        spec = next(self._arrivals, None)
        if spec is not None:
            if spec.arrival_time < self._last_arrival_time:
                raise ValueError(
                    f"requests must be sorted by arrival time: {spec.request_id} arrives at "
                    f"{spec.arrival_time} after one at {self._last_arrival_time}"
                )
            self._last_arrival_time = self._next_arrival_time = spec.arrival_time
            self.events.push(spec.arrival_time, EventKind.ARRIVAL, spec)
        else:
            self._next_arrival_time = math.inf

    def _on_arrival(self, spec: RequestSpec) -> None:
        self._num_arrivals += 1
        req = Request(spec)
        if self.scheduler.add_request(req, self.now) is not None:
            self._num_rejected += 1
            self.collector.on_done(req)
        else:
            self.live[spec.request_id] = req
        if self._progress is not None and self._num_arrivals % 1000 == 0:
            self._progress(self._num_arrivals, self._num_hint)

    def _start_step(self) -> None:
        scheduler = self.scheduler
        if not scheduler.has_work:
            return
        if self._time_of is not None:
            stop = math.inf if self.until is None else self.until
            run = scheduler.plan_decode_run(
                self.now, self._time_of, stop, self.collector.interval_s,
                visible_time=self._next_arrival_time, decode_time=self._decode_time,
            )
            if run is not None:
                self._in_flight = run
                self.events.push(run.event_time, EventKind.STEP_DONE, (run, None))
                return
        output = scheduler.schedule(self.now)
        if output.is_empty and output.preempted:
            # The pass only preempted (vLLM stops it when the request it grows is the victim):
            # the freed KV changes what fits, so plan again now, as vLLM's next step would.
            output = scheduler.schedule(self.now)
        if output.is_empty:
            return  # nothing fits until something arrives or finishes
        result = self.backend.execute(output)
        self._in_flight = output
        self.events.push(self.now + result.duration_s, EventKind.STEP_DONE, (output, result))

    def _on_step_done(self, payload: tuple[SchedulerOutput | DecodeRun, StepResult | None]) -> None:
        output, result = payload
        self._in_flight = None
        scheduler = self.scheduler
        if isinstance(output, DecodeRun):
            if not output.is_folded:
                self._fold(scheduler.apply_decode_run(output), 0, output.end_time)
            if output.cross_end is None:
                return
            outcome = scheduler.apply_crossing_step(output)
            num_preempted = 0
        else:
            assert result is not None
            outcome = scheduler.update_from_result(output, result)
            num_preempted = len(output.preempted)
        self._fold(outcome, num_preempted, self.now)

    def _fold(self, outcome: StepOutcome, num_preempted: int, now: float) -> None:
        """Record what an iteration (or a run) that ended at `now` changed."""
        scheduler = self.scheduler
        self._num_steps += outcome.report.num_steps
        collector = self.collector
        collector.on_step(outcome.report, scheduler.policy.num_waiting, len(scheduler.running), num_preempted)
        collector.sample_counters(now, scheduler.policy.counter_breakdown)
        for req in outcome.finished:
            self._num_finished += 1
            del self.live[req.request_id]
            collector.on_done(req)

    def _flush_unfinished(self) -> None:
        """Record requests still waiting or running when the run stopped (never lost silently)."""
        for req in self.live.values():
            self.collector.on_done(req)


picklable_when_compiled(SimStats)  # frozen: see equinox.compiled
