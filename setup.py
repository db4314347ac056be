"""Optional compiled simulator core (issue 13): `EQUINOX_COMPILE=1 pip install --no-build-isolation .` (with
mypy, setuptools and wheel installed) compiles the modules below with mypyc; without that variable this file
changes nothing and the install stays pure Python.

The package metadata lives in pyproject.toml. `scripts/build_compiled DIR` builds the same modules into a
directory of its own (for benchmarks and tests) without installing anything.
"""

from __future__ import annotations

import os

# The simulation loop and everything it calls per step (profiled in docs/results.md, issue 13). Each module
# must stay valid for both interpreters: the pure-Python file is the fallback and gives identical results
# (tests/sim/test_compiled.py). Paths are relative to src/.
COMPILED_MODULES = (
    "equinox/request.py",
    "equinox/types.py",
    "equinox/metrics/collector.py",
    "equinox/metrics/records.py",
    "equinox/metrics/rows.py",
    "equinox/prediction/interface.py",
    "equinox/prediction/mope.py",
    "equinox/prediction/experts/iteration_time.py",
    "equinox/prediction/experts/output_length.py",
    "equinox/prediction/experts/ttft.py",
    "equinox/prediction/experts/utilisation.py",
    "equinox/scheduling/interface.py",
    "equinox/scheduling/queues.py",
    "equinox/scheduling/state.py",
    "equinox/scheduling/policies/equinox.py",
    "equinox/scheduling/policies/fcfs.py",
    "equinox/scheduling/policies/kv_share.py",
    "equinox/scheduling/policies/rpm.py",
    "equinox/scheduling/policies/vtc.py",
    "equinox/sim/backend.py",
    "equinox/sim/cost_model.py",
    "equinox/sim/cost_models/fitted.py",
    "equinox/sim/cost_models/piecewise.py",
    "equinox/sim/cost_models/roofline.py",
    "equinox/sim/engine/base.py",
    "equinox/sim/engine/cohort.py",
    "equinox/sim/engine/kv_pool.py",
    "equinox/sim/engine/planner.py",
    "equinox/sim/engine/slora.py",
    "equinox/sim/engine/vllm.py",
    "equinox/sim/events.py",
    "equinox/sim/hardware.py",
    "equinox/sim/loop.py",
    "equinox/workload/stream.py",
)
# One shared C library for all of them (mypyc's runtime and the modules' code), named after the package.
GROUP_NAME = "equinox_compiled"


def compiled_extensions(src_dir: str, target_dir: str) -> list[object]:
    """mypyc's extension modules for COMPILED_MODULES under `src_dir` (generated C goes to `target_dir`)."""
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit("EQUINOX_COMPILE=1 needs mypy (mypyc) where the package is built: pip install mypy "
                         "setuptools wheel, then EQUINOX_COMPILE=1 pip install --no-build-isolation .") from None

    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join(src_dir, m) for m in COMPILED_MODULES]
    return list(mypycify(["--config-file", os.path.join(here, "pyproject.toml"), *paths],
                         group_name=GROUP_NAME, target_dir=target_dir, multi_file=True))


if __name__ == "__main__":
    from setuptools import setup

    if os.environ.get("EQUINOX_COMPILE") == "1":
        setup(ext_modules=compiled_extensions("src", os.path.join("build", "mypyc")))
    else:
        setup()
