"""One Platform for every host (issue 11 item 4): the simulator and the vLLM plug-in give a policy
the same platform for the same hardware, so the same workload is admitted in the same order.

No vLLM needed: the plug-in side is `PolicyWaitingQueue` driven with vLLM-like request
objects and a vLLM-like config, as vLLM's scheduler drives it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from equinox.errors import ConfigError
from equinox.integrations.vllm.platform import (
    check_gpu_setting,
    gpu_for_device,
    model_spec_from_hf,
    platform_from_vllm,
)
from equinox.integrations.vllm.queue import PolicyWaitingQueue
from equinox.integrations.vllm.settings import PluginSettings, settings_from_dict
from equinox.request import Request, RequestSpec
from equinox.scheduling.interface import Platform, Policy
from equinox.scheduling.policy import make_policy
from equinox.sim.cost_models import build_cost_model
from equinox.sim.hardware import MODELS, make_deployment
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage

GPU, MODEL = "a100-80gb", "llama-2-7b"
PARAMS = {"alpha": 0.5, "beta": 0.5, "shortest_prompt_first": False}  # RFC decides part of the order


def hf_config_of(model: str) -> SimpleNamespace:
    """What vLLM's `model_config.hf_config` holds for a registry model."""
    m = MODELS.get(model)
    return SimpleNamespace(
        model_type="llama", hidden_size=m.hidden_size, num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_heads, num_key_value_heads=m.num_kv_heads, head_dim=m.head_dim,
        intermediate_size=m.intermediate_size, vocab_size=m.vocab_size,
    )


def vllm_config(device: str = "cuda", tp: int = 1) -> SimpleNamespace:
    """The parts of vLLM's VllmConfig the plug-in reads for its platform."""
    return SimpleNamespace(
        device_config=SimpleNamespace(device_type=device),
        model_config=SimpleNamespace(model=MODEL, hf_config=hf_config_of(MODEL), hf_text_config=None,
                                     dtype="torch.bfloat16"),
        parallel_config=SimpleNamespace(tensor_parallel_size=tp),
    )


def simulator_policy() -> Policy:
    """The policy as `sim/run.py` builds it: registry, then the deployment's platform."""
    deployment = make_deployment(GPU, MODEL)
    policy = make_policy("equinox", PluginSettings(policy="equinox", policy_params=PARAMS).policy_config())
    policy.set_platform(deployment.platform(build_cost_model("roofline", deployment)))
    return policy


def plugin_queue(gpu_setting: str = GPU, device: str = "cuda") -> tuple[PolicyWaitingQueue, Callable[[float], None]]:
    """The plug-in's queue as `EquinoxSchedulerMixin.__init__` builds it, with a settable clock."""
    settings = settings_from_dict({"policy": "equinox", "policy_params": PARAMS, "platform": {"gpu": gpu_setting}})
    policy = make_policy(settings.policy, settings.policy_config())
    policy.set_platform(platform_from_vllm(vllm_config(device), settings.platform_gpu))
    now = [0.0]

    def set_now(t: float) -> None:
        now[0] = t

    return PolicyWaitingQueue(policy, settings, clock=lambda: now[0]), set_now


# Tenants whose token counts misstate their GPU cost: long prompts and short answers against
# short prompts and long answers (each decode step reads all the weights).
WORKLOAD = [
    *(("prefill", 1500, 4, 0.01 * i) for i in range(12)),
    *(("decode", 30, 120, 0.01 * i + 0.005) for i in range(12)),
    *(("mixed", 400, 40, 0.2 + 0.02 * i) for i in range(6)),
]


@dataclass
class Run:
    """Drives the simulator-side policy and the plug-in's queue with one workload, in lockstep."""

    policy: Policy
    queue: PolicyWaitingQueue
    set_now: Callable[[float], None]
    now: float = 0.0
    arrived: dict[str, tuple[Request, Any]] = field(default_factory=dict)  # waiting, both hosts' objects
    running: list[tuple[Request, Any]] = field(default_factory=list)
    order: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))

    def run(self, max_seqs: int = 4) -> tuple[list[str], list[str]]:
        """Both hosts' admission orders, up to the first admission where they differ."""
        pending = sorted(enumerate(WORKLOAD), key=lambda x: x[1][3])
        step_id = 0
        while pending or self.running or self.policy.num_waiting:
            while pending and pending[0][1][3] <= self.now:
                i, (tenant, prompt, output, _) = pending.pop(0)
                self.arrive(f"r{i}", tenant, prompt, output)
            while len(self.running) < max_seqs and self.policy.peek(self.now) is not None:
                self.admit()
                if self.order[0][-1] != self.order[1][-1]:
                    return self.order  # the hosts disagree: lockstep ends here
            step_id += 1
            self.step(step_id)
            if not self.running and not self.policy.num_waiting and pending:
                self.now = max(self.now, pending[0][1][3])
        return self.order

    def arrive(self, rid: str, tenant: str, prompt: int, output: int) -> None:
        sim = Request(RequestSpec(rid, tenant, self.now, prompt, output))
        fake = SimpleNamespace(
            request_id=rid, num_prompt_tokens=prompt, max_tokens=None, num_computed_tokens=0, num_output_tokens=0,
            num_preemptions=0, sampling_params=SimpleNamespace(extra_args={"tenant": tenant}), target=output,
        )
        self.set_now(self.now)
        assert self.policy.add_request(sim, self.now) is None
        self.queue.add_request(fake)
        self.arrived[rid] = (sim, fake)

    def admit(self) -> None:
        head = self.policy.peek(self.now)
        assert head is not None
        self.policy.pop(head, self.now)
        self.set_now(self.now)
        fake = self.queue.pop_request()
        self.order[0].append(head.request_id)
        self.order[1].append(fake.request_id)
        self.running.append(self.arrived.pop(head.request_id))

    def step(self, step_id: int) -> None:
        if not self.running:
            return
        usage: dict[str, list[int]] = {}
        prefill = seqs = pairs = decode = context = 0
        for sim, _ in self.running:
            u = usage.setdefault(sim.tenant, [0, 0, 0, 0])
            if sim.num_computed_tokens == 0:
                n = sim.num_prompt_tokens
                prefill, seqs, pairs = prefill + n, seqs + 1, pairs + n * (n + 1) // 2
                u[0] += n
            else:
                decode, context = decode + 1, context + sim.num_computed_tokens
                u[2] += sim.num_computed_tokens
            sim.num_computed_tokens += n if sim.num_computed_tokens == 0 else 1
            sim.num_output_tokens_done += 1
            u[1] += 1
            u[3] += math.ceil(sim.num_computed_tokens / 16)
        batch = BatchShape(prefill, seqs, pairs, decode, context)
        duration = 0.005 + 2e-5 * prefill + 2e-4 * decode
        per = {t: TenantUsage(*usage[t]) for t in sorted(usage)}
        report = StepReport(step_id, self.now, duration, batch, BatchLimits(2048, 4), per,
                            sum(u.num_kv_blocks for u in per.values()), 2000)
        self.now += duration
        self.set_now(self.now)
        plugin = self.queue.policy
        self.policy.on_step(report)
        plugin.on_step(report)
        for sim, fake in list(self.running):
            fake.num_computed_tokens, fake.num_output_tokens = sim.num_computed_tokens, sim.num_output_tokens_done
            if sim.num_output_tokens_done >= sim.spec.num_output_tokens:
                self.running.remove((sim, fake))
                self.policy.on_finish(sim, self.now)
                plugin.on_finish(self.queue.forget(fake.request_id), self.now)  # type: ignore[arg-type]


def test_simulator_and_plugin_hosts_admit_in_the_same_order() -> None:
    policy = simulator_policy()
    queue, set_now = plugin_queue()
    plugin = queue.policy.platform
    # the same cost constants; names and sources say where they came from
    assert plugin == dataclasses.replace(policy.platform, name=plugin.name, source=plugin.source)
    sim_order, plugin_order = Run(policy, queue, set_now).run()
    assert len(sim_order) == len(WORKLOAD)
    assert sim_order == plugin_order


def test_the_order_depends_on_the_platform() -> None:
    """The plug-in without a platform (token proxies) orders the same workload differently."""
    policy = simulator_policy()
    queue, set_now = plugin_queue(gpu_setting="proxy")
    assert queue.policy.platform == Platform.proxy()
    sim_order, plugin_order = Run(policy, queue, set_now).run()
    assert sim_order != plugin_order


def test_plugin_platform_matches_the_simulators_constants() -> None:
    sim = make_deployment(GPU, MODEL, 2).platform()
    plugin = platform_from_vllm(vllm_config(tp=2), GPU)
    for name in ("s_per_prefill_token", "s_per_context_token", "s_weight_read", "tokens_per_s", "peak_flops"):
        assert getattr(plugin, name) == getattr(sim, name)
    assert plugin.iteration_time is None  # MoPE learns iteration times from measured steps
    assert "vLLM model config" in plugin.source


def test_plugin_on_cpu_or_unknown_gpu_keeps_token_proxies() -> None:
    assert platform_from_vllm(vllm_config(device="cpu"), "auto") == Platform.proxy()
    assert platform_from_vllm(vllm_config(device="cuda"), "proxy") == Platform.proxy()
    broken = vllm_config()
    broken.model_config.hf_config = SimpleNamespace(hidden_size=None)
    assert platform_from_vllm(broken, GPU) == Platform.proxy()  # unreadable model config: logged, proxies


def test_model_spec_from_hf_config_equals_the_registry_model() -> None:
    spec = model_spec_from_hf(hf_config_of("llama-3-8b"), dtype_bytes=2, name="llama-3-8b")
    assert spec == MODELS.get("llama-3-8b")
    opt = MODELS.get("opt-13b")
    hf = SimpleNamespace(model_type="opt", hidden_size=opt.hidden_size, num_hidden_layers=opt.num_layers,
                         num_attention_heads=opt.num_heads, ffn_dim=opt.intermediate_size, vocab_size=opt.vocab_size)
    assert model_spec_from_hf(hf, dtype_bytes=2, name="opt-13b") == opt


@pytest.mark.parametrize(
    ("device", "gpu"),
    [("NVIDIA H100 80GB HBM3", "h100-80gb"), ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
     ("NVIDIA A100-SXM4-80GB", "a100-80gb"), ("NVIDIA A10G", "a10g"), ("NVIDIA L4", "l4"),
     ("NVIDIA L40S", None), ("NVIDIA H200", "h200"), ("Tesla T4", None)],
)
def test_gpu_for_device_name(device: str, gpu: str | None) -> None:
    assert gpu_for_device(device) == gpu


def test_platform_setting_is_checked() -> None:
    assert check_gpu_setting("AUTO", "x") == "auto"
    with pytest.raises(ConfigError, match=r"platform\.gpu 'b200' is not known; use 'auto', 'proxy' or one of"):
        settings_from_dict({"platform": {"gpu": "b200"}}, "cfg.toml")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in \[platform\]: model"):
        settings_from_dict({"platform": {"model": "x"}}, "cfg.toml")
    assert PluginSettings().platform_gpu == "auto"
