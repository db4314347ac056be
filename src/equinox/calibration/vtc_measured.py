"""The VTC artifact's measured runs (`shared/data/vtc_artifact_measured/`): requests, setting, outcome.

Each file is one run of VTC's synthetic suites on a real GPU (Sheng et al., OSDI'24;
Ying1123/VTC-artifact, Apache-2.0): a header line `{scheduler_dir, suite, config,
summary}` then one request a line `{client, arrival_s, prompt_tokens, output_tokens,
ttft_s, e2e_s}`, times from the client's start. The client sent `max_new_tokens =
output_tokens` with `ignore_eos`, so every request generated exactly its output length
and the runtime knew that length (`max_output_len`) at admission.

Three files (`ablation_80GB_*`) repeat `sec6.4_35000_VTC-*` request for request and
measurement for measurement; `load_measured_runs` finds such repeats by content and
keeps one run, naming the others in `duplicates`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equinox.errors import WorkloadError
from equinox.request import RequestSpec
from equinox.workload.schema import Workload

SOURCE = "Ying1123/VTC-artifact fair_bench (Apache-2.0); Sheng et al., Fairness in Serving LLMs, OSDI 2024"
ROW_FIELDS = ("client", "arrival_s", "prompt_tokens", "output_tokens", "ttft_s", "e2e_s")
MAX_REQ_TOTAL_LEN = 3072  # S-LoRA's default max_req_total_len (lower bound of batch_max_tokens)
RUNNING_MAX_REQ_SIZE = 1000  # S-LoRA's default running_max_req_size


@dataclass(frozen=True, slots=True)
class MeasuredRequest:
    """One request as the artifact's client saw it (seconds since the client started)."""

    client: str
    arrival_time: float
    num_prompt_tokens: int
    num_output_tokens: int
    ttft_s: float
    e2e_s: float

    @property
    def first_token_time(self) -> float:
        """When the client received the first token."""
        return self.arrival_time + self.ttft_s

    @property
    def finish_time(self) -> float:
        """When the client received the last token."""
        return self.arrival_time + self.e2e_s


@dataclass(frozen=True)
class ArtifactPlatform:
    """GPU, model and S-LoRA memory settings a run was measured on."""

    gpu: str
    model: str
    max_total_token_num: int  # S-LoRA's token-granular KV pool

    @property
    def batch_max_tokens(self) -> int:
        """S-LoRA's default prefill-batch cap: max(max_total_token_num / 6, max_req_total_len)."""
        return max(self.max_total_token_num // 6, MAX_REQ_TOTAL_LEN)

    @property
    def running_max_req_size(self) -> int:
        """S-LoRA's default cap on running requests."""
        return RUNNING_MAX_REQ_SIZE

    @property
    def label(self) -> str:
        """Short label, e.g. `llama-2-7b@a10g/10000`."""
        return f"{self.model}@{self.gpu}/{self.max_total_token_num}"


@dataclass(frozen=True)
class ArtifactScheduler:
    """The artifact's scheduler (`launch_server.py --scheduler ...`) as an Equinox policy and params."""

    label: str  # the artifact's name: VTC, FCFS, LCF, WVTC, VTC_oracle, VTC_pred_50_profile, ...
    policy: str
    params: Mapping[str, object] = field(default_factory=dict)
    tenant_weights: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MeasuredRun:
    """One measured run: the exact requests it served, its setting and what the client measured."""

    name: str  # file stem, e.g. `VTC__overload`
    path: Path
    scheduler_dir: str
    suite: str
    config: Mapping[str, Any]
    summary: Mapping[str, Any]
    requests: tuple[MeasuredRequest, ...]
    platform: ArtifactPlatform
    scheduler: ArtifactScheduler
    digest: str  # sha256 of the request rows (measurements included)
    duplicates: tuple[str, ...] = ()  # names of other files with the same rows

    @property
    def clients(self) -> list[str]:
        """Clients (tenants) in order of first appearance."""
        return list(dict.fromkeys(r.client for r in self.requests))

    @property
    def total_time_s(self) -> float:
        """The client's wall time: from its start to the last response."""
        return max(r.finish_time for r in self.requests)

    def to_workload(self) -> Workload:
        """The requests as an Equinox workload (tenant = client, max_tokens = output length)."""
        order = sorted(range(len(self.requests)), key=lambda i: (self.requests[i].arrival_time, i))
        width = len(str(len(order)))
        specs = tuple(
            RequestSpec(
                f"r{rank:0{width}d}", r.client, r.arrival_time, r.num_prompt_tokens, r.num_output_tokens,
                max_tokens=r.num_output_tokens,
            )
            for rank, r in enumerate(self.requests[i] for i in order)
        )
        weights = dict(self.scheduler.tenant_weights)
        return Workload(
            self.name, specs, tenant_weights=weights, source=f"{self.path} ({SOURCE})",
            duration_s=max(s.arrival_time for s in specs), trace_format="vtc-measured",
        )


def read_measured_run(path: str | Path) -> MeasuredRun:
    """Parse one measured-run file; WorkloadError naming file, line and field when malformed."""
    p = Path(path)
    if not p.is_file():
        raise WorkloadError("no such measured-run file", path=str(p))
    raw = p.read_bytes()
    lines = raw.decode("utf-8").splitlines()
    if not lines:
        raise WorkloadError("the file is empty (expected a header line, then one request a line)", path=str(p))
    header = _json_object(lines[0], p, 1)
    for key in ("scheduler_dir", "suite", "config", "summary"):
        if key not in header:
            raise WorkloadError("missing header field", path=str(p), line=1, field=key)
    requests = tuple(
        _request(_json_object(text, p, n), p, n) for n, text in enumerate(lines[1:], start=2) if text.strip()
    )
    if not requests:
        raise WorkloadError("no request rows after the header", path=str(p))
    body = "\n".join(lines[1:]).encode("utf-8")
    scheduler_dir = str(header["scheduler_dir"])
    return MeasuredRun(
        p.stem, p, scheduler_dir, str(header["suite"]), dict(header["config"]), dict(header["summary"]),
        requests, platform_of(scheduler_dir, p), scheduler_of(scheduler_dir, requests, p),
        hashlib.sha256(body).hexdigest(),
    )


def load_measured_runs(directory: str | Path) -> list[MeasuredRun]:
    """Every distinct run in `directory` (`*.jsonl`, by name); a file repeating another's rows is
    folded into it (`duplicates`), preferring the file that is not an `ablation_*` copy."""
    d = Path(directory)
    if not d.is_dir():
        raise WorkloadError("no such directory of measured runs", path=str(d))
    runs = [read_measured_run(p) for p in sorted(d.glob("*.jsonl"))]
    if not runs:
        raise WorkloadError("no *.jsonl measured runs in this directory", path=str(d))
    groups: dict[str, list[MeasuredRun]] = {}
    for run in runs:
        groups.setdefault(run.digest, []).append(run)
    distinct = []
    for group in groups.values():
        group.sort(key=lambda r: (r.name.startswith("ablation"), r.name))
        keep, rest = group[0], group[1:]
        if rest:
            from dataclasses import replace

            keep = replace(keep, duplicates=tuple(r.name for r in rest))
        distinct.append(keep)
    return sorted(distinct, key=lambda r: r.name)


def platform_of(scheduler_dir: str, path: Path | None = None) -> ArtifactPlatform:
    """The setting of a run from its folder (SOURCES.md): `sec6.4/<tokens>/...` and
    `ablation/80GB_llama13B_<tokens>` ran Llama-2-13B on an A100-80GB; all others
    Llama-2-7B on an A10G with 10,000 KV tokens."""
    parts = scheduler_dir.split("/")
    if parts[0] == "sec6.4" and len(parts) >= 2:
        return ArtifactPlatform("a100-80gb", "llama-2-13b", _tokens(parts[1], scheduler_dir, path))
    if parts[0] == "ablation" and len(parts) >= 2 and "13B" in parts[1]:
        return ArtifactPlatform("a100-80gb", "llama-2-13b", _tokens(parts[1].rsplit("_", 1)[-1], scheduler_dir, path))
    return ArtifactPlatform("a10g", "llama-2-7b", 10_000)


# The artifact's scheduler folders (fair_bench/REVISION.md, README.md) as Equinox policies.
_SCHEDULERS: dict[str, tuple[str, dict[str, object]]] = {
    "FCFS": ("fcfs", {}),  # --scheduler slora: one FIFO
    "VTC": ("vtc", {}),  # --scheduler vtc_fair
    "LCF": ("lcf", {}),  # --scheduler lcf_fair
    "WVTC": ("vtc", {}),  # --scheduler vtc_fair --fair-weights 1 2 3 4
    "VTC_profile": ("vtc", {"cost_function": "profile"}),
    "VTC_oracle": ("vtc-predict", {"output_predictor": "oracle"}),
    "VTC_oracle_profile": ("vtc-predict", {"output_predictor": "oracle", "cost_function": "profile"}),
    "VTC_pred_50": ("vtc-predict", {"output_predictor": "oracle", "predict_range": 0.5}),
    "VTC_pred_50_profile": (
        "vtc-predict", {"output_predictor": "oracle", "predict_range": 0.5, "cost_function": "profile"},
    ),
}
WVTC_WEIGHTS = (1.0, 2.0, 3.0, 4.0)  # REVISION.md: --fair-weights 1 2 3 4, by adapter index


def scheduler_of(
    scheduler_dir: str, requests: tuple[MeasuredRequest, ...], path: Path | None = None
) -> ArtifactScheduler:
    """The policy a run used, from its folder name (`sec6.4/<tokens>/VTC-256` -> VTC,
    `ablation/...` -> VTC: its rows equal `sec6.4/35000/VTC-*`)."""
    parts = scheduler_dir.split("/")
    if parts[0] == "sec6.4" and len(parts) == 3:
        label = parts[2].split("-")[0]
    elif parts[0] == "ablation":
        label = "VTC"
    else:
        label = parts[0]
    if label not in _SCHEDULERS:
        raise WorkloadError(
            f"unknown artifact scheduler {scheduler_dir!r}; known: {', '.join(sorted(_SCHEDULERS))}",
            path=None if path is None else str(path), line=1, field="scheduler_dir",
        )
    policy, params = _SCHEDULERS[label]
    weights: dict[str, float] = {}
    if label == "WVTC":
        # The server maps --fair-weights to adapters in index order; clients are `<adapter>-<index>`.
        for client in dict.fromkeys(r.client for r in requests):
            index = _adapter_index(client)
            if index is not None and index < len(WVTC_WEIGHTS):
                weights[client] = WVTC_WEIGHTS[index]
    return ArtifactScheduler(label, policy, dict(params), weights)


def _adapter_index(client: str) -> int | None:
    tail = client.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _tokens(text: str, scheduler_dir: str, path: Path | None) -> int:
    if not text.isdigit():
        raise WorkloadError(
            f"cannot read the KV size in tokens from scheduler_dir {scheduler_dir!r}",
            path=None if path is None else str(path), line=1, field="scheduler_dir",
        )
    return int(text)


def _json_object(text: str, path: Path, line: int) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"not JSON: {exc.msg}", path=str(path), line=line) from None
    if not isinstance(obj, dict):
        raise WorkloadError("expected a JSON object", path=str(path), line=line)
    return obj


def _request(obj: Mapping[str, Any], path: Path, line: int) -> MeasuredRequest:
    for key in ROW_FIELDS:
        if key not in obj:
            raise WorkloadError("missing field", path=str(path), line=line, field=key)
    client = obj["client"]
    if not isinstance(client, str) or not client:
        raise WorkloadError("must be a non-empty string", path=str(path), line=line, field="client")
    values: dict[str, float] = {}
    for key in ROW_FIELDS[1:]:
        v = obj[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise WorkloadError(f"must be a finite number >= 0, got {v!r}", path=str(path), line=line, field=key)
        values[key] = float(v)
    for key in ("prompt_tokens", "output_tokens"):
        if values[key] < 1 or values[key] != int(values[key]):
            raise WorkloadError(f"must be a whole number >= 1, got {obj[key]!r}", path=str(path), line=line, field=key)
    if values["e2e_s"] < values["ttft_s"]:
        raise WorkloadError("e2e_s is smaller than ttft_s", path=str(path), line=line, field="e2e_s")
    return MeasuredRequest(
        client, values["arrival_s"], int(values["prompt_tokens"]), int(values["output_tokens"]),
        values["ttft_s"], values["e2e_s"],
    )
