"""Engine models: the mechanism of each serving runtime the simulator stands for.

One module and one `Engine` subclass per runtime behind a registry (adding an engine is
one file): `vllm` (vLLM V1) and `slora` (the S-LoRA router of the VTC artifact). They
share `base.Engine` (requests, KV pool, folding results back), one decode-run planner
(`planner.py`) and the lazy decode cohort (`cohort.py`). Policies never import this
package; engines call the Policy contract.
"""

from equinox.sim.engine.base import Engine, SchedulerOutput, StepOutcome
from equinox.sim.engine.config import EngineConfig
from equinox.sim.engine.registry import ENGINES, engine_class, engine_names, make_engine

__all__ = [
    "ENGINES", "Engine", "EngineConfig", "SchedulerOutput", "StepOutcome", "engine_class", "engine_names",
    "make_engine",
]
