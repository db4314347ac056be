"""Calibrate the simulator on a real vLLM engine: a per-step log, a measurement sweep, a fitted cost model.

`EQUINOX_VLLM_STEP_LOG=PATH` makes the Equinox scheduler append one JSON line per engine
iteration (batch shape, tokens per tenant, timestamps), one per request arrival, first token
and end, and a header with the scheduler limits vLLM actually runs with. `calibrate()` drives a running
server through a sweep of batch shapes plus a few sequential probes, reads the log back
and fits `equinox.sim.cost_models.calibrated` (iteration time as a linear function of the
batch shape) plus the API server's per-request latency outside the engine.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from equinox.integrations.vllm.loadgen import WORDS, PlannedRequest, RequestResult, run_plan, send_completion
from equinox.request import RequestSpec
from equinox.scheduling.interface import PolicyConfig
from equinox.sim.cost_models.calibrated import CalibratedCostModel, Calibration, fit_calibration
from equinox.sim.engine import EngineConfig
from equinox.sim.frontend import FrontendModel
from equinox.types import BatchShape, StepReport

logger = logging.getLogger(__name__)

ENV_STEP_LOG = "EQUINOX_VLLM_STEP_LOG"
PROBE_PREFIX = "probe-"
_BATCH_FIELDS = (
    "num_prefill_tokens", "num_prefill_seqs", "prefill_attention_pairs", "num_decode_seqs", "decode_context_tokens",
)


class StepLog:
    """Appends JSON lines about the engine's iterations and requests to a file (line-buffered)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = open(self.path, "a", buffering=1)  # closed in close()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StepLog | None:
        """The log named by EQUINOX_VLLM_STEP_LOG, or None when unset."""
        path = (os.environ if environ is None else environ).get(ENV_STEP_LOG)
        return cls(path) if path else None

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        except OSError as exc:  # the log must never take the engine down
            logger.warning("cannot write the Equinox step log %s (%s); logging stopped", self.path, exc)
            self.close()

    def config(self, **fields: Any) -> None:
        """The scheduler limits in force (written once, at start-up)."""
        self._write({"event": "config", **fields})

    def step(self, report: StepReport, schedule_time: float, end_time: float, prev_end_time: float,
             was_idle: bool) -> None:
        """One iteration: shape, model time, and the times needed to recover the full engine cycle."""
        b = report.batch
        self._write({
            "event": "step", "step_id": report.step_id, "schedule_time": schedule_time,
            "start_time": report.start_time, "duration_s": report.duration_s, "end_time": end_time,
            "prev_end_time": prev_end_time, "was_idle": was_idle,
            **{f: getattr(b, f) for f in _BATCH_FIELDS}, "num_kv_blocks_used": report.num_kv_blocks_used,
            "tenants": {t: [u.num_prefill_tokens, u.num_output_tokens] for t, u in report.per_tenant.items()},
        })

    def request(self, event: str, request_id: str, tenant: str, time: float) -> None:
        """A request event ("arrival", "first_token", "finish", "abort") at engine time `time` (time.monotonic)."""
        self._write({"event": event, "request_id": request_id, "tenant": tenant, "time": time})

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


def read_step_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a step log (a torn last line, from a killed engine, is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@dataclass(frozen=True)
class Contention:
    """What the engine did while one tenant had requests inside it (from a step log)."""

    tenant: str
    start: float  # engine time of the tenant's first arrival
    end: float  # engine time its last request ended
    ttfts_s: list[float]  # engine arrival to first token, per request
    served: dict[str, float]  # prompt + output tokens per tenant computed in [start, end]
    queued_ahead: list[int]  # per request: other tenants' requests waiting (arrived, no first token) at its arrival
    overtaken_by: list[int]  # per request: other tenants' requests that started while it waited

    @property
    def overtaken_fraction(self) -> float:
        """Of the other tenants' requests queued ahead, the fraction that started first (FCFS: 1)."""
        ahead = sum(self.queued_ahead)
        return sum(self.overtaken_by) / ahead if ahead else math.nan

    @property
    def mean_ttft_s(self) -> float:
        """Mean engine-side TTFT of the tenant's requests."""
        return statistics.fmean(self.ttfts_s) if self.ttfts_s else math.nan

    @property
    def max_ttft_s(self) -> float:
        """Worst engine-side TTFT of the tenant's requests."""
        return max(self.ttfts_s, default=math.nan)

    def shares(self) -> dict[str, float]:
        """Each tenant's share of the tokens computed in the window."""
        total = sum(self.served.values()) or 1.0
        return {t: v / total for t, v in self.served.items()}


def contention(records: Sequence[Mapping[str, Any]], tenant: str) -> Contention:
    """Engine-side TTFT of `tenant`, every tenant's service while `tenant` had requests in the
    engine, and how many other tenants' queued requests started before each of its own.

    A request counts as started at its first token (a prompt that fits one iteration's budget
    gets it at the end of its admission step); one that started in the same iteration counts
    as having gone first. Measured entirely on the engine's clock, so a client or API server
    starved of CPU (they share the machine with the engine) cannot distort it. Needs a step log written with
    per-tenant tokens and request ends (this version of the plug-in).
    """
    arrivals: dict[str, float] = {}
    firsts: dict[str, float] = {}
    ends: dict[str, float] = {}
    other_arrivals: dict[str, float] = {}
    other_firsts: dict[str, float] = {}
    for r in records:
        event = r.get("event")
        if event not in ("arrival", "first_token", "finish", "abort"):
            continue
        rid, time = r["request_id"], float(r["time"])
        if r.get("tenant") != tenant:
            if event == "arrival":
                other_arrivals[rid] = time
            elif event == "first_token":
                other_firsts[rid] = time
        elif event == "arrival":
            arrivals[rid] = time
        elif event == "first_token":
            firsts[rid] = time
        else:
            ends[rid] = time
    if not arrivals:
        raise ValueError(f"tenant {tenant!r} sent no request in this step log")
    if set(ends) != set(arrivals):
        raise ValueError(f"{len(set(arrivals) - set(ends))} request(s) of tenant {tenant!r} never ended in the log")
    start, end = min(arrivals.values()), max(ends.values())
    served: dict[str, float] = {}
    for r in records:
        if r.get("event") != "step" or not start < float(r["end_time"]) <= end:
            continue
        if "tenants" not in r:
            raise ValueError("the step log has no per-tenant tokens: it was written by an older plug-in")
        for t, (prefill, output) in r["tenants"].items():
            served[t] = served.get(t, 0.0) + prefill + output
    ttfts = [firsts[rid] - arrivals[rid] for rid in arrivals if rid in firsts]
    queued_ahead, overtaken_by = [], []
    for rid, arrived in arrivals.items():
        first = firsts.get(rid, end)
        queued_ahead.append(sum(1 for o, a in other_arrivals.items()
                                if a <= arrived and other_firsts.get(o, math.inf) > arrived))
        overtaken_by.append(sum(1 for t in other_firsts.values() if arrived < t <= first))
    return Contention(tenant, start, end, ttfts, served, queued_ahead, overtaken_by)


def engine_config(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The last config header of a step log (the engine that wrote the records after it)."""
    headers = [r for r in records if r.get("event") == "config"]
    if not headers:
        raise ValueError("the step log has no config header: was the server started with the Equinox scheduler?")
    return {k: v for k, v in headers[-1].items() if k != "event"}


def step_samples(records: Sequence[Mapping[str, Any]]) -> tuple[list[BatchShape], list[float]]:
    """(batch, seconds) per iteration: update end to update end while busy, else schedule to update end.

    Back-to-back iterations are timed over the whole engine cycle (scheduling, the model,
    output processing, queued input handling), which is what one simulator iteration stands for.
    """
    batches, durations = [], []
    for r in records:
        if r.get("event") != "step":
            continue
        start = r["schedule_time"] if r["was_idle"] else r["prev_end_time"]
        batches.append(BatchShape(**{f: int(r[f]) for f in _BATCH_FIELDS}))
        durations.append(float(r["end_time"]) - float(start))
    return batches, durations


@dataclass(frozen=True)
class ApiLatency:
    """Per-request latency outside the engine: client send to engine arrival, engine first token to client."""

    in_s: float
    out_s: float
    num_probes: int


def api_latency(records: Sequence[Mapping[str, Any]], probes: Sequence[RequestResult]) -> ApiLatency:
    """Median API-path latencies of probe requests (tenant `probe-<i>`, one at a time on an idle engine)."""
    times: dict[tuple[str, str], float] = {}
    for r in records:
        if r.get("event") in ("arrival", "first_token") and str(r["tenant"]).startswith(PROBE_PREFIX):
            times.setdefault((r["event"], r["tenant"]), float(r["time"]))
    ins, outs = [], []
    for p in probes:
        arrival, first = times.get(("arrival", str(p.tenant))), times.get(("first_token", str(p.tenant)))
        if p.is_ok and p.token_times and arrival is not None and first is not None:
            ins.append(arrival - p.send_time)
            outs.append(p.token_times[0] - first)
    if not ins:
        raise ValueError("no probe request was matched in the step log (same machine and clock needed)")
    return ApiLatency(statistics.median(ins), statistics.median(outs), len(ins))


def words_prompt(num_words: int, seed: int = 0) -> str:
    """A prompt of `num_words` common words (about one token each with the tiny tokenizer)."""
    return " ".join(WORDS[(seed * 7 + 5 * j + j // len(WORDS)) % len(WORDS)] for j in range(num_words))


def sweep_plan(
    prompt_words: Sequence[int] = (32, 256, 640), batch_sizes: Sequence[int] = (1, 2, 4, 8, 24),
    max_tokens: int = 48, stagger_s: float = 0.005, group_gap_s: float = 0.6,
) -> list[PlannedRequest]:
    """Groups of streamed requests (every prompt length x group size), a few ms apart to mix prefill and decode.

    Streamed like a real workload, so the API server's share of the CPU is part of what is measured.
    """
    plan, start, i = [], 0.0, 0
    for words in prompt_words:
        for n in batch_sizes:
            for k in range(n):
                plan.append(PlannedRequest("calibrate", start + k * stagger_s, words_prompt(words, i), max_tokens))
                i += 1
            start += group_gap_s + n * stagger_s
    return plan


def run_probes(base_url: str, model: str, num_probes: int = 6, prompt_words: int = 48) -> list[RequestResult]:
    """Sequential streamed requests on an idle engine, each as its own tenant `probe-<i>`."""
    plan = [PlannedRequest(f"{PROBE_PREFIX}{i}", 0.0, words_prompt(prompt_words, i), 4) for i in range(num_probes)]
    return [send_completion(base_url, model, p) for p in plan]


def calibrate(base_url: str, model: str, step_log: str | Path, *, plan: Sequence[PlannedRequest] | None = None,
              num_probes: int = 6, name: str = "vllm-cpu") -> Calibration:
    """Drive a server started with EQUINOX_VLLM_STEP_LOG=`step_log` and fit its cost model and API latency."""
    results = run_plan(base_url, model, sweep_plan() if plan is None else plan, timeout_s=300)
    failed = [r for r in results if not r.is_ok]
    if failed:
        raise RuntimeError(f"{len(failed)} calibration requests failed, e.g. {failed[0].error}")
    probes = run_probes(base_url, model, num_probes)
    records = read_step_log(step_log)
    first_sweep = min(r.send_time for r in results)
    batches, durations = step_samples([r for r in records if r.get("event") != "step"
                                       or r["schedule_time"] >= first_sweep])
    api = api_latency(records, probes)
    meta = {"engine": engine_config(records), "api_in_s": api.in_s, "api_out_s": api.out_s,
            "num_api_probes": api.num_probes, "source": "vLLM step log (EQUINOX_VLLM_STEP_LOG)"}
    calib = fit_calibration(batches, durations, name=name, metadata=meta)
    idle = idle_step_extra_s([r for r in records if r.get("event") != "step" or r["schedule_time"] >= first_sweep],
                             calib)
    return Calibration(calib.overhead_s, calib.coefficients, name, {**calib.metadata, "idle_step_extra_s": idle})


def engine_ttfts(records: Sequence[Mapping[str, Any]], since: float = -math.inf) -> dict[str, list[float]]:
    """Per tenant, each request's TTFT as the scheduler saw it (arrival at the engine to first token)."""
    arrivals = {r["request_id"]: r for r in records if r.get("event") == "arrival" and float(r["time"]) >= since}
    out: dict[str, list[float]] = {}
    for r in records:
        a = arrivals.get(r.get("request_id")) if r.get("event") == "first_token" else None
        if a is not None:
            out.setdefault(str(a["tenant"]), []).append(float(r["time"]) - float(a["time"]))
    return out


def idle_step_extra_s(records: Sequence[Mapping[str, Any]], calibration: Calibration) -> float:
    """How much longer than predicted the first iteration after an idle engine takes (median, >= 0)."""
    extra = [float(r["end_time"]) - float(r["schedule_time"]) - calibration.predict(b)
             for r, b in zip((r for r in records if r.get("event") == "step"), step_samples(records)[0], strict=True)
             if r["was_idle"]]
    return max(statistics.median(extra), 0.0) if extra else 0.0


def engine_from_config(config: Mapping[str, Any]) -> EngineConfig:
    """The simulator's engine settings matching a step log's config header."""
    return EngineConfig(
        mode="vllm", max_num_batched_tokens=int(config["max_num_batched_tokens"]),
        max_num_seqs=int(config["max_num_seqs"]), block_size=int(config["block_size"]),
        num_kv_blocks=int(config["num_kv_blocks"]), enable_chunked_prefill=bool(config["enable_chunked_prefill"]),
    )


@dataclass(frozen=True)
class ReplayRequest:
    """One request as the client sent it: tenant, send time (s from the start), token counts."""

    tenant: str
    send_time: float
    num_prompt_tokens: int
    num_output_tokens: int


@dataclass(frozen=True)
class ReplayOutcome:
    """What the simulator predicts the client would see for one request."""

    tenant: str
    send_time: float
    num_output_tokens: int
    ttft_s: float
    e2e_s: float
    engine_ttft_s: float  # engine arrival to first token, as the scheduler sees it

    @property
    def finish_time(self) -> float:
        """When the client received the last token (s from the start)."""
        return self.send_time + self.e2e_s


def replay_requests(results: Sequence[RequestResult]) -> list[ReplayRequest]:
    """The completed requests of a real run, as the simulator should replay them."""
    ok = [r for r in results if r.is_ok]
    t0 = min((r.send_time for r in ok), default=0.0)
    return [ReplayRequest(str(r.tenant), r.send_time - t0, r.num_prompt_tokens, r.num_output_tokens) for r in ok]


def simulate_replay(
    requests: Sequence[ReplayRequest], calibration: Calibration, policy: str, policy_config: PolicyConfig,
    engine: EngineConfig, frontend: FrontendModel | None = None,
) -> list[ReplayOutcome]:
    """Run `requests` through the simulator with the calibrated cost model and front-end.

    The front-end is `frontend`, else the calibration's (`frontend_of`); it delays each
    request's arrival at the engine and each token's delivery to the client
    (`equinox.sim.frontend`). A request that finds the engine idle also pays the measured
    first-iteration-after-idle extra.
    """
    from equinox.metrics.collector import Collector
    from equinox.scheduling.policy import make_policy
    from equinox.sim.backend import CostModelBackend
    from equinox.sim.engine import make_engine
    from equinox.sim.loop import Simulator

    front = frontend_of(calibration) if frontend is None else frontend
    idle_s = float(calibration.metadata.get("idle_step_extra_s", 0.0))
    order = sorted(range(len(requests)), key=lambda i: requests[i].send_time)
    sent = [RequestSpec(f"r{i:06d}", requests[i].tenant, requests[i].send_time, requests[i].num_prompt_tokens,
                        requests[i].num_output_tokens) for i in order]
    specs = list(front.engine_arrivals(sent)) if front.is_active else sent
    scheduler = make_engine(engine, make_policy(policy, policy_config))
    collector = Collector(1.0)
    Simulator(specs, scheduler, CostModelBackend(CalibratedCostModel(calibration)), collector,
              num_requests_hint=len(specs)).run()
    engine_side = {rec.request_id: rec for rec in collector.records}
    client_side = {rec.request_id: rec for rec in front.client_records(
        collector.records, {s.request_id: s.arrival_time for s in sent})}
    out = []
    for spec in specs:
        rec, client = engine_side[spec.request_id], client_side[spec.request_id]
        if client.first_token_time is None or client.finish_time is None or rec.first_token_time is None:
            raise RuntimeError(f"simulated request {spec.request_id} did not finish")
        extra = idle_s if rec.first_scheduled_time == rec.arrival_time else 0.0
        send = client.arrival_time
        out.append(ReplayOutcome(spec.tenant, send, rec.num_output_tokens, client.first_token_time + extra - send,
                                 client.finish_time + extra - send, rec.first_token_time + extra - rec.arrival_time))
    return out


def frontend_of(calibration: Calibration) -> FrontendModel:
    """The calibration's front-end (`frontend` in its metadata; older files: their `api_in_s`/`api_out_s`)."""
    meta = calibration.metadata
    if "frontend" in meta:
        return FrontendModel.from_dict(meta["frontend"], f"calibration {calibration.name!r}: frontend")
    return FrontendModel(ingress_s=float(meta.get("api_in_s", 0.0)), egress_s=float(meta.get("api_out_s", 0.0)))


@dataclass(frozen=True)
class FrontendSample:
    """One tenant's measured API path in a real run (means over its requests, seconds)."""

    tenant: str
    num_requests: int
    ingress_s: float  # client send to engine arrival
    first_egress_s: float  # engine first token to client first token
    first_streams: float  # mean (streams + 1) / 2 at the engine's first tokens
    finish_egress_s: float  # engine finish to the end of the client's stream
    finish_streams: float  # mean (streams + 1) / 2 at the engine's finishes
    first_times: tuple[float, ...] = ()  # the engine's first-token times (same clock as the client's sends)
    finish_times: tuple[float, ...] = ()  # the engine's finish times


def frontend_samples(records: Sequence[Mapping[str, Any]], results: Sequence[RequestResult]) -> list[FrontendSample]:
    """Per tenant, the measured front-end delays of a run (client results and the engine's step log, one clock).

    Client and engine requests are matched per tenant in order (the engine's request ids are
    not the client's); means do not depend on the matching. Engine events before the
    run's first send (a calibration sweep, probes) are ignored.
    """
    ok = [r for r in results if r.is_ok]
    since = min(r.send_time for r in ok) - 1e-3
    events: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("event") in ("arrival", "first_token", "finish"):
            events.setdefault(str(r["request_id"]), {"tenant": r["tenant"]})[str(r["event"])] = float(r["time"])
    runs = [e for e in events.values() if e.get("arrival", -math.inf) >= since and "finish" in e
            and "first_token" in e]
    starts = sorted(e["first_token"] for e in runs)
    ends = sorted(e["finish"] for e in runs)

    def half_streams(time: float) -> float:
        return (max(bisect.bisect_right(starts, time) - bisect.bisect_left(ends, time), 1) + 1) / 2

    out = []
    for tenant in dict.fromkeys(str(r.tenant) for r in ok):
        client = [r for r in ok if r.tenant == tenant]
        mine = [e for e in runs if e["tenant"] == tenant]
        if len(mine) != len(client):
            raise ValueError(f"tenant {tenant!r}: {len(client)} client requests but {len(mine)} in the step log")
        out.append(FrontendSample(
            tenant, len(client),
            statistics.fmean(e["arrival"] for e in mine) - statistics.fmean(r.send_time for r in client),
            statistics.fmean(r.token_times[0] for r in client) - statistics.fmean(e["first_token"] for e in mine),
            statistics.fmean(half_streams(e["first_token"]) for e in mine),
            statistics.fmean(r.finish_time for r in client) - statistics.fmean(e["finish"] for e in mine),
            statistics.fmean(half_streams(e["finish"]) for e in mine),
            tuple(e["first_token"] for e in mine), tuple(e["finish"] for e in mine),
        ))
    return out


def fit_frontend(records: Sequence[Mapping[str, Any]], results: Sequence[RequestResult]) -> FrontendModel:
    """The `FrontendModel` that best reproduces each tenant's mean front-end delays in one real run.

    Relative least squares over tenants: ingress (the per-token cost by a grid search over the
    first-come-first-served queue replayed on the run's own sends, the fixed latency in closed
    form) and egress (fixed latency and per-token cost, non-negative, over each tenant's
    first-token and end-of-stream delays).
    """
    samples = frontend_samples(records, results)
    ok = sorted((r for r in results if r.is_ok), key=lambda r: r.send_time)
    sent = [RequestSpec(f"c{i}", str(r.tenant), r.send_time, max(r.num_prompt_tokens, 1), 1)
            for i, r in enumerate(ok)]
    best: tuple[float, float, float] | None = None
    for per_token in (0.0, *(1e-7 * 10 ** (k / 8) for k in range(33))):  # 0.1 us .. 1 ms per token
        queued: dict[str, list[float]] = {}
        for spec in FrontendModel(ingress_per_token_s=per_token).engine_arrivals(sent):
            queued.setdefault(spec.tenant, []).append(spec.arrival_time)
        model = {t: statistics.fmean(v) - statistics.fmean(s.arrival_time for s in sent if s.tenant == t)
                 for t, v in queued.items()}
        weights = [(1 / max(s.ingress_s, 1e-4) ** 2, s.ingress_s - model[s.tenant]) for s in samples]
        fixed = max(sum(w * d for w, d in weights) / sum(w for w, _ in weights), 0.0)
        cost = sum(w * (d - fixed) ** 2 for w, d in weights)
        if best is None or cost < best[0]:
            best = (cost, per_token, fixed)
    assert best is not None
    # Egress net of the ingress work the front-end still had queued when each token left the engine.
    sends = [s.arrival_time for s in sent]
    dones = [s.arrival_time for s in FrontendModel(ingress_per_token_s=best[1]).engine_arrivals(sent)]

    def backlog(times: Sequence[float]) -> float:
        return statistics.fmean(max(dones[k] - t, 0.0) if (k := bisect.bisect_right(sends, t) - 1) >= 0 else 0.0
                                for t in times)

    points = [(s.first_streams, s.first_egress_s - backlog(s.first_times)) for s in samples]
    points += [(s.finish_streams, s.finish_egress_s - backlog(s.finish_times)) for s in samples]
    egress_s, per_token_s = _fit_line_non_negative(points)
    return FrontendModel(ingress_s=best[2], ingress_per_token_s=best[1], egress_s=egress_s,
                         egress_per_token_s=per_token_s)


def _fit_line_non_negative(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(a, b) >= 0 minimising sum(((a + b x - y) / y)^2) over the points with y > 0."""
    pts = [(1 / y**2, x, y) for x, y in points if y > 0]
    if not pts:
        return 0.0, 0.0
    sw, sx, sy = sum(w for w, _, _ in pts), sum(w * x for w, x, _ in pts), sum(w * y for w, _, y in pts)
    sxx, sxy = sum(w * x * x for w, x, _ in pts), sum(w * x * y for w, x, y in pts)
    candidates = [(sy / sw, 0.0), (0.0, sxy / sxx if sxx > 0 else 0.0)]
    det = sw * sxx - sx * sx
    if det > 1e-12 * sw * sxx:
        slope = (sw * sxy - sx * sy) / det
        candidates.append(((sy - slope * sx) / sw, slope))
    feasible = [(a, b) for a, b in candidates if a >= 0 and b >= 0] or [(0.0, 0.0)]
    return min(feasible, key=lambda ab: sum(w * (ab[0] + ab[1] * x - y) ** 2 for w, x, y in pts))


def calibrate_on_run(records: Sequence[Mapping[str, Any]], results: Sequence[RequestResult],
                     name: str = "vllm-cpu-run") -> Calibration:
    """Cost model and front-end fitted on one real run of a workload (its step log and client results).

    The cost model is fitted on the run's own iterations (the batch shapes the workload
    produces, under the machine's load at the time), the front-end by `fit_frontend`.
    """
    since = min(r.send_time for r in results if r.is_ok) - 1e-3
    recent = [r for r in records if r.get("event") != "step" or float(r["schedule_time"]) >= since]
    batches, durations = step_samples(recent)
    front = fit_frontend(records, results)
    meta = {"engine": engine_config(records), "frontend": front.to_dict(),
            "source": "one real run: vLLM step log (EQUINOX_VLLM_STEP_LOG) and client results"}
    calib = fit_calibration(batches, durations, name=name, metadata=meta)
    idle = idle_step_extra_s(recent, calib)
    return Calibration(calib.overhead_s, calib.coefficients, name, {**calib.metadata, "idle_step_extra_s": idle})


def machine_speed(records: Sequence[Mapping[str, Any]], calibration: Calibration) -> float:
    """Measured / predicted total time of the iterations in `records`: how much slower (> 1) the machine ran them.

    On a shared machine the engine's speed drifts with the other jobs' load (iteration times
    of the same batches differed 1.8x between two runs five minutes apart here); this one
    figure, read from the engine's own log, lets a replay run at the speed of the run it
    replays (`time_scaled`).
    """
    batches, durations = step_samples([r for r in records if r.get("event") == "step"])
    predicted = sum(calibration.predict(b) for b in batches)
    if not predicted or not durations:
        raise ValueError("no iteration in these step-log records to measure the machine's speed on")
    return sum(durations) / predicted


def time_scaled(calibration: Calibration, factor: float) -> Calibration:
    """The calibration with its cost model `factor` times slower (the front-end and metadata unchanged).

    The front-end is left alone on purpose: its measured delays did not follow the engine's
    speed between runs (issue 10 item 4, docs/results.md).
    """
    return Calibration(calibration.overhead_s * factor, {k: v * factor for k, v in calibration.coefficients.items()},
                       calibration.name, {**calibration.metadata, "time_scale": factor})
