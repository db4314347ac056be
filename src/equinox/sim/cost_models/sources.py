"""Readers of the measured profiles in ../shared/data (used by the fit tool, benchmark and tests only).

Nothing here runs in the simulator: the package ships only fitted coefficients (profiles/*.json).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from equinox.errors import ConfigError
from equinox.sim.hardware import make_deployment
from equinox.types import BatchShape

ENV_SHARED_DATA = "EQUINOX_SHARED_DATA"
MS = 1e-3

VIDUR_GPUS = {"a100": "a100-80gb", "h100": "h100-80gb", "a40": "a40"}
VIDUR_MODELS = {
    "meta-llama/Llama-2-7b-hf": "llama-2-7b",
    "meta-llama/Llama-2-70b-hf": "llama-2-70b",
    "meta-llama/Meta-Llama-3-8B": "llama-3-8b",
    "meta-llama/Meta-Llama-3-70B": "llama-3-70b",
}
# Vidur's per-layer operators; `emb` runs once per iteration, the rest once per layer.
VIDUR_LAYER_OPS = (
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)
VIDUR_ALLREDUCE_TOPOLOGY = {"a100-80gb": "a100_dgx", "h100-80gb": "h100_dgx"}
SPLITWISE_GPUS = {"a100-80gb": "a100-80gb", "h100-80gb": "h100-80gb"}
SPLITWISE_MODELS = {"llama2-70b": "llama-2-70b"}
DISTSERVE_MODELS = {"facebook/opt-13b": "opt-13b", "facebook/opt-66b": "opt-66b"}

DeploymentId = tuple[str, str, int]  # (gpu, model, tensor_parallel)


@dataclass(frozen=True, slots=True)
class Observation:
    """One measured iteration: its batch shape and the time it took (seconds)."""

    phase: str  # "prefill" or "decode"
    batch: BatchShape
    measured_s: float


def shared_data_dir(default: Path | None = None) -> Path | None:
    """$EQUINOX_SHARED_DATA, else `default`; None when that folder does not exist."""
    env = os.environ.get(ENV_SHARED_DATA)
    path = Path(env) if env else default
    if path is None or not path.is_dir():
        return None
    return path


def fits(deployment: DeploymentId) -> bool:
    """True when the model's weights fit the deployment (make_deployment would accept it)."""
    try:
        make_deployment(*deployment)
    except ConfigError:
        return False
    return True


def prefill_batch(prompt_len: int, batch_size: int) -> BatchShape:
    """Shape of a batch of `batch_size` whole prompts of `prompt_len` tokens."""
    pairs = batch_size * prompt_len * (prompt_len + 1) // 2
    return BatchShape(prompt_len * batch_size, batch_size, pairs, 0, 0)


def decode_batch(batch_size: int, context_per_seq: float) -> BatchShape:
    """Shape of a decode step of `batch_size` sequences each attending to `context_per_seq` tokens."""
    return BatchShape(0, 0, 0, batch_size, round(batch_size * context_per_seq))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_vidur_linear(data_dir: Path) -> dict[DeploymentId, list[tuple[int, float]]]:
    """Per deployment, (num_tokens, seconds) of all layers' linear and elementwise ops plus `emb`.

    Medians over Vidur's repeated rows; deployments whose weights do not fit are dropped.
    """
    from equinox.sim.hardware import MODELS

    out: dict[DeploymentId, list[tuple[int, float]]] = {}
    for vgpu, gpu in VIDUR_GPUS.items():
        for vmodel, model in VIDUR_MODELS.items():
            path = data_dir / "vidur_profiling" / "compute" / vgpu / vmodel / "mlp.csv"
            if not path.is_file():
                continue
            num_layers = MODELS.get(model).num_layers
            samples: dict[tuple[int, int], list[float]] = defaultdict(list)
            for row in _read_csv(path):
                layer = sum(float(row[f"time_stats.{op}.median"]) for op in VIDUR_LAYER_OPS)
                total = (num_layers * layer + float(row["time_stats.emb.median"])) * MS
                samples[(int(row["num_tensor_parallel_workers"]), int(row["num_tokens"]))].append(total)
            by_tp: dict[int, list[tuple[int, float]]] = defaultdict(list)
            for (tp, n), values in samples.items():
                by_tp[tp].append((n, statistics.median(values)))
            for tp, points in by_tp.items():
                if fits((gpu, model, tp)):
                    out[(gpu, model, tp)] = sorted(points)
    return out


def load_vidur_allreduce(data_dir: Path) -> dict[tuple[str, int], list[tuple[int, float]]]:
    """Per (gpu, workers) inside one node, (bytes, seconds) of Vidur's measured all-reduce."""
    out: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for gpu, topology in VIDUR_ALLREDUCE_TOPOLOGY.items():
        path = data_dir / "vidur_profiling" / "network" / topology / "all_reduce.csv"
        if not path.is_file():
            continue
        samples: dict[tuple[int, int], list[float]] = defaultdict(list)
        for row in _read_csv(path):
            workers = int(row["num_workers"])
            if int(row["devices_per_node"]) != workers:
                continue
            samples[(workers, int(row["size"]))].append(float(row["time_stats.all_reduce.median"]) * MS)
        by_workers: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for (workers, size), values in samples.items():
            by_workers[workers].append((size, statistics.median(values)))
        for workers, points in by_workers.items():
            out[(gpu, workers)] = sorted(points)
    return out


def _grouped(items: Iterable[tuple[DeploymentId, str, BatchShape, float]]) -> dict[DeploymentId, list[Observation]]:
    samples: dict[tuple[DeploymentId, str, BatchShape], list[float]] = defaultdict(list)
    for dep, phase, batch, seconds in items:
        samples[(dep, phase, batch)].append(seconds)
    out: dict[DeploymentId, list[Observation]] = defaultdict(list)
    for (dep, phase, batch), values in sorted(samples.items(), key=lambda kv: repr(kv[0])):
        out[dep].append(Observation(phase, batch, statistics.median(values)))
    return dict(out)


def load_splitwise(data_dir: Path) -> dict[DeploymentId, list[Observation]]:
    """Splitwise prompt (prefill) and token (decode) times, medians over repeated runs.

    A decode step of a request with prompt p and t output tokens attends to p + t/2 tokens on average.
    """
    path = data_dir / "splitwise_sim" / "perf_model.csv"
    if not path.is_file():
        return {}
    items = []
    for row in _read_csv(path):
        gpu, model = SPLITWISE_GPUS.get(row["hardware"]), SPLITWISE_MODELS.get(row["model"])
        if gpu is None or model is None:
            continue
        dep = (gpu, model, int(row["tensor_parallel"]))
        p, bs, t = int(row["prompt_size"]), int(row["batch_size"]), int(row["token_size"])
        items.append((dep, "prefill", prefill_batch(p, bs), float(row["prompt_time"]) * MS))
        items.append((dep, "decode", decode_batch(bs, p + t / 2), float(row["token_time"]) * MS))
    return _grouped(items)


def load_vtc_a10g(data_dir: Path) -> dict[DeploymentId, list[Observation]]:
    """VTC's A10G profile: per-request times times batch size; decode split over `output_len` steps."""
    path = data_dir / "vtc_chatbot_arena" / "cost_profile.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    dep = ("a10g", "llama-7b", 1)
    items = []
    for input_len, by_output in data.items():
        p = int(input_len)
        for output_len, (bs, prefill_per_req, decode_per_req) in by_output.items():
            n, bs = int(output_len), int(bs)
            items.append((dep, "prefill", prefill_batch(p, bs), prefill_per_req * bs))
            items.append((dep, "decode", decode_batch(bs, p + (n + 1) / 2), decode_per_req * bs / n))
    return _grouped(items)


def load_distserve(data_dir: Path, engine: str = "distserve") -> dict[DeploymentId, dict[str, object]]:
    """DistServe's published coefficient tables for `engine` ("distserve" or "vllm"), in ms."""
    path = data_dir / "distserve_profile" / f"profiler-a100-80g.{engine}.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    out: dict[DeploymentId, dict[str, object]] = {}
    for hf_name, by_tp in data.items():
        model = DISTSERVE_MODELS.get(hf_name)
        if model is None:
            continue
        for tp, coefs in by_tp.items():
            out[("a100-80gb", model, int(tp))] = coefs
    return out
