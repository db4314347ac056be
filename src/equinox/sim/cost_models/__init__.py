"""Cost models for the simulator; importing this package registers them in `COST_MODELS`.

- `roofline`: datasheet roofline with efficiencies calibrated on measured data; every deployment.
- `vidur`: Vidur (MLSys'24) per-operator linear-op profiles + roofline attention (A100/H100/A40).
- `splitwise`: Splitwise (ISCA'24) measured Llama-2-70B prompt/token times (A100/H100, TP 2/4/8).
- `distserve`: DistServe (OSDI'24) published fitted coefficients (OPT-13B/66B on A100-80GB).
- `vtc-a10g`: VTC artifact (OSDI'24) Llama-7B profile on an A10G in S-LoRA.
"""

from __future__ import annotations

from equinox.errors import ConfigError
from equinox.sim.cost_model import COST_MODELS, CostModel
from equinox.sim.cost_models.distserve import DistServeCostModel, build_distserve
from equinox.sim.cost_models.fitted import (
    TableCostModel,
    build_splitwise,
    build_vidur,
    build_vtc_a10g,
    covered_deployments,
)
from equinox.sim.cost_models.roofline import RooflineCostModel, RooflineParams, build_roofline
from equinox.sim.hardware import Deployment

__all__ = [
    "FITTED_PREFERENCE",
    "DistServeCostModel",
    "RooflineCostModel",
    "RooflineParams",
    "TableCostModel",
    "build_cost_model",
    "covered_deployments",
    "default_cost_model",
]

# Which fitted model `default_cost_model` tries first: operator-level data from a modern engine
# (Vidur) before end-to-end measurements on older runtimes.
FITTED_PREFERENCE = ("vidur", "splitwise", "distserve", "vtc-a10g")

_ENTRIES = (
    ("roofline", build_roofline, "datasheet roofline, calibrated efficiencies; any GPU x model"),
    ("vidur", build_vidur, "Vidur operator profiles + roofline attention (a100-80gb, h100-80gb, a40)"),
    ("splitwise", build_splitwise, "Splitwise measured Llama-2-70B on a100-80gb/h100-80gb, TP 2/4/8"),
    ("distserve", build_distserve, "DistServe published fit, OPT-13B/66B on a100-80gb"),
    ("vtc-a10g", build_vtc_a10g, "VTC artifact Llama-7B on a10g (S-LoRA runtime)"),
)
for _name, _build, _help in _ENTRIES:
    if _name not in COST_MODELS:  # importlib.reload must not register twice
        COST_MODELS.register(_name, _build, _help)


def build_cost_model(name: str, deployment: Deployment) -> CostModel:
    """Build the registered cost model `name` for `deployment` (ConfigError if it has no data)."""
    return COST_MODELS.get(name)(deployment)


def default_cost_model(deployment: Deployment) -> CostModel:
    """The first fitted model with data for `deployment` (see FITTED_PREFERENCE), else the roofline."""
    for name in FITTED_PREFERENCE:
        try:
            return build_cost_model(name, deployment)
        except ConfigError:
            continue
    return build_roofline(deployment)
