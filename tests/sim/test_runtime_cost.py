"""The serving runtime's overhead on top of a GPU cost model."""

from __future__ import annotations

import pytest

from equinox.config import RunConfig
from equinox.errors import ConfigError
from equinox.sim.cost_models import build_cost_model
from equinox.sim.cost_models.runtime import RuntimeCostModel, with_runtime
from equinox.sim.hardware import make_deployment
from equinox.sim.run import build_cost_model as build_for_run
from equinox.types import BatchShape


def test_overhead_per_step_and_per_sequence() -> None:
    base = build_cost_model("vtc-a10g", make_deployment("a10g", "llama-2-7b"))
    model = RuntimeCostModel(base, scale=0.5, step_s=0.004, seq_s=0.0001)
    batch = BatchShape(0, 0, 0, 20, 20 * 300)
    assert model.iteration_time(batch) == pytest.approx(0.5 * base.iteration_time(batch) + 0.004 + 20 * 0.0001)
    prefill = BatchShape(512, 2, 2 * 256 * 257 // 2, 0, 0)
    assert model.iteration_time(prefill) == pytest.approx(0.5 * base.iteration_time(prefill) + 0.004 + 2 * 0.0001)
    assert model.iteration_time(BatchShape()) == 0.0  # nothing runs, nothing is added
    # The decode shortcut the simulator's fast path uses agrees with the full model.
    assert model.decode_time(20, 20 * 300) == pytest.approx(model.iteration_time(batch), rel=1e-12)


def test_no_overhead_is_the_base_model_itself() -> None:
    base = build_cost_model("roofline", make_deployment("a100-80gb", "llama-2-7b"))
    assert with_runtime(base) is base
    assert build_for_run(RunConfig(gpu="a100-80gb", cost_model="roofline"), base.deployment).name == base.name


def test_bad_values_are_named() -> None:
    base = build_cost_model("roofline", make_deployment("a100-80gb", "llama-2-7b"))
    with pytest.raises(ConfigError, match="step overhead"):
        RuntimeCostModel(base, step_s=-1.0)
    with pytest.raises(ConfigError, match="runtime scale"):
        RuntimeCostModel(base, scale=0.0)
