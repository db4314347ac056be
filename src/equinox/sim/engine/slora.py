"""The S-LoRA / LightLLM router the VTC artifact runs on, as an engine model.

Prefill and decode are separate iterations, new requests are admitted only every N
decode steps (or when nothing runs), prompts are never chunked, and admission reserves
KV for the whole output up front so nothing is ever preempted.
"""

from __future__ import annotations

from equinox.errors import ConfigError
from equinox.request import Request
from equinox.sim.engine.base import Engine
from equinox.sim.engine.config import EngineConfig
from equinox.sim.engine.registry import ENGINES
from equinox.types import BatchLimits, BatchShape


@ENGINES.decorator("slora", help="S-LoRA/LightLLM router (VTC artifact): separate prefill and decode, batch refresh")
class SloraEngine(Engine):
    """The VTC artifact's runtime: prefill-only admission iterations every N decode steps."""

    name = "slora"

    @classmethod
    def check_config(cls, config: EngineConfig) -> None:
        """S-LoRA never chunks a prompt."""
        if config.enable_chunked_prefill:
            raise ConfigError("engine 'slora' never chunks prefills; drop --chunked-prefill or use engine 'vllm'")

    def _plan(
        self, now: float, limits: BatchLimits
    ) -> tuple[list[tuple[Request, int]], list[Request], BatchShape, int]:
        scheduled, preempted = self._schedule_slora(now, limits)
        return scheduled, preempted, self._shape(scheduled), 0

    def _reserved_output(self, req: Request) -> int:
        """Output tokens slora mode reserves: max_tokens when given, else the true length."""
        return req.max_tokens if req.max_tokens is not None else req.num_target_tokens

    def _schedule_slora(self, now: float, limits: BatchLimits) -> tuple[list[tuple[Request, int]], list[Request]]:
        scheduled: list[tuple[Request, int]] = []
        due = not self.running or self._steps_since_admission >= self.config.admission_interval_steps
        if due and self.policy.num_waiting:
            self._admit(now, limits, limits.max_num_batched_tokens, scheduled, reserve_all=True)
            if scheduled:  # a prefill-only iteration for the new batch
                self._steps_since_admission = 0
                return scheduled, []
        self._steps_since_admission += 1
        return [(r, 1) for r in self.running], []
