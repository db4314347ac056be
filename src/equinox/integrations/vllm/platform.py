"""The Platform the vLLM plug-in gives its policy: the served model's shape and the GPU's datasheet.

The Resource Fairness Counter charges prefill compute, decode memory traffic and KV
occupancy in platform-capacity units (issue 11 item 4), so inside vLLM it needs the same
cost constants the simulator derives from its deployment:

- the model from vLLM's model config (hidden size, layers, attention and KV heads, head
  dimension, MLP width, vocabulary, dtype) -> matmul parameters, weight bytes, KV bytes
  per token (`sim.hardware.ModelSpec`, the formulas the simulator uses);
- the GPU from the plug-in settings (`[platform] gpu = "h100-80gb"`, a name of the
  hardware registry) or, with `gpu = "auto"` (the default), from the CUDA device name
  when it is one we know; times the tensor-parallel size.

On CPU, on an unknown GPU, or with `gpu = "proxy"`, the policy keeps `Platform.proxy()`:
token proxies for the RFC. Either way no iteration-time model is supplied: MoPE learns
iteration times online from the engine's measured steps (`on_step` durations).
This module never imports vLLM or torch at import time.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from equinox.errors import ConfigError
from equinox.scheduling.interface import Platform
from equinox.sim.hardware import GPUS, Deployment, ModelSpec

logger = logging.getLogger("equinox.integrations.vllm")

AUTO, PROXY = "auto", "proxy"
# CUDA device-name tokens -> hardware-registry GPU, most specific first.
_DEVICE_GPUS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"H200"}), "h200"),
    (frozenset({"H100"}), "h100-80gb"),
    (frozenset({"A100", "40GB"}), "a100-40gb"),
    (frozenset({"A100"}), "a100-80gb"),
    (frozenset({"A10G"}), "a10g"),
    (frozenset({"A40"}), "a40"),
    (frozenset({"L4"}), "l4"),
)
_NOT_GATED = {"opt", "gpt2", "gpt_neox", "gptj", "bloom", "falcon", "phi"}
_DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "float8": 1, "fp8": 1}


def check_gpu_setting(value: object, where: str) -> str:
    """The `[platform] gpu` setting, checked: "auto", "proxy" or a GPU of the hardware registry."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: platform.gpu must be a string, got {value!r}")
    if value.lower() in (AUTO, PROXY) or value in GPUS:
        return value.lower()
    raise ConfigError(
        f"{where}: platform.gpu {value!r} is not known; use {AUTO!r}, {PROXY!r} or one of {', '.join(GPUS.names())}"
    )


def gpu_for_device(device_name: str) -> str | None:
    """The registry GPU for a CUDA device name such as 'NVIDIA A100-SXM4-80GB', or None."""
    tokens = {t.upper() for t in re.split(r"[\s_-]+", device_name) if t}
    for needed, gpu in _DEVICE_GPUS:
        if needed <= tokens:
            return gpu
    return None


def model_spec_from_hf(hf_config: Any, *, dtype_bytes: int, name: str = "served-model") -> ModelSpec:
    """A `ModelSpec` from a Hugging Face model config (the attributes vLLM's model config exposes)."""
    def get(attr: str, default: Any = None) -> Any:
        value = getattr(hf_config, attr, None)
        return default if value is None else value

    hidden = int(get("hidden_size"))
    heads = int(get("num_attention_heads"))
    return ModelSpec(
        name, num_layers=int(get("num_hidden_layers")), hidden_size=hidden, num_heads=heads,
        num_kv_heads=int(get("num_key_value_heads", heads)), head_dim=int(get("head_dim", hidden // heads)),
        intermediate_size=int(get("intermediate_size", get("ffn_dim", 4 * hidden))),
        vocab_size=int(get("vocab_size")), is_gated_mlp=str(get("model_type", "llama")) not in _NOT_GATED,
        dtype_bytes=dtype_bytes,
    )


def platform_for_model(
    hf_config: Any, *, dtype_bytes: int, gpu: str, tensor_parallel: int = 1, name: str = "served-model",
    source: str = "vLLM model config",
) -> Platform:
    """Cost constants of `hf_config` served on `tensor_parallel` GPUs `gpu` (a registry name)."""
    model = model_spec_from_hf(hf_config, dtype_bytes=dtype_bytes, name=name)
    platform = Deployment(GPUS.get(gpu), model, tensor_parallel).platform()
    return dataclasses.replace(platform, source=f"{source} on the {gpu} datasheet")


def platform_from_vllm(vllm_config: Any, gpu_setting: str) -> Platform:
    """The platform of the engine `vllm_config` describes (see the module docstring); never raises."""
    if gpu_setting == PROXY:
        return Platform.proxy()
    device = str(getattr(getattr(vllm_config, "device_config", None), "device_type", "") or "")
    gpu = None if gpu_setting == AUTO else gpu_setting
    if gpu is None and device == "cuda":
        gpu = _detect_cuda_gpu()
    if gpu is None:
        logger.info("Equinox platform: token proxies (device %r; set [platform] gpu to name the GPU)", device or "?")
        return Platform.proxy()
    model_config = vllm_config.model_config
    hf = getattr(model_config, "hf_text_config", None) or model_config.hf_config
    dtype = str(getattr(model_config, "dtype", "bfloat16")).removeprefix("torch.")
    tp = int(getattr(getattr(vllm_config, "parallel_config", None), "tensor_parallel_size", 1) or 1)
    try:
        platform = platform_for_model(hf, dtype_bytes=_DTYPE_BYTES.get(dtype, 2), gpu=gpu, tensor_parallel=tp,
                                      name=str(getattr(model_config, "model", "served-model")))
    except (TypeError, ValueError, ConfigError) as exc:
        logger.warning("Equinox platform: token proxies (cannot read the model config: %s)", exc)
        return Platform.proxy()
    logger.info("Equinox platform: %s (%s), %.3g tokens/s at peak", platform.name, platform.source,
                platform.tokens_per_s)
    return platform


def _detect_cuda_gpu() -> str | None:
    try:
        import torch

        name = torch.cuda.get_device_name(0)
    except Exception:  # no torch, no CUDA, no device: keep the proxies
        return None
    gpu = gpu_for_device(name)
    if gpu is None:
        logger.info("Equinox platform: GPU %r is not in the hardware registry", name)
    return gpu
