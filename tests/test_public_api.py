"""The public export list and the promise that `import equinox` needs only the core."""

from __future__ import annotations

import subprocess
import sys

import equinox


def test_public_exports_are_stable() -> None:
    assert sorted(equinox.__all__) == [
        "ConfigError", "EquinoxError", "RequestSpec", "UnknownNameError", "WorkloadError", "__version__",
    ]
    for name in equinox.__all__:
        assert hasattr(equinox, name)


def test_import_equinox_loads_no_optional_dependency() -> None:
    code = (
        "import sys, equinox, equinox.workload, equinox.scheduling.policy, equinox.integrations.vllm; "
        "heavy = [m for m in ('vllm', 'torch', 'matplotlib', 'starlette', 'uvicorn', 'httpx', 'numpy') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_registered_policy_builds_with_defaults() -> None:
    from equinox.scheduling.interface import PolicyConfig
    from equinox.scheduling.policy import make_policy, policy_names

    assert {"fcfs", "rpm", "lcf", "vtc", "vtc-predict", "equinox"} <= set(policy_names())
    for name in policy_names():
        policy = make_policy(name, PolicyConfig(rpm_limit=60.0))
        assert policy.num_waiting == 0
