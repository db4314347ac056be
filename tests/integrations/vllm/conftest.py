"""Fixtures for tests against a real vLLM engine on CPU: the vLLM venv, a tiny model, servers.

The project's test runner has no vLLM; servers run as subprocesses of the vLLM
environment's Python (<repo>/.venv-vllm/bin/python, or $EQUINOX_VLLM_PYTHON), which
`scripts/setup_vllm_env.sh` installs. Without it every `vllm` test is skipped, saying why.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from equinox.integrations.vllm.calibration import ENV_STEP_LOG
from equinox.integrations.vllm.launcher import ServeSpec, VllmServer, free_port
from equinox.integrations.vllm.loadgen import PlannedRequest, send_completion

REPO = Path(__file__).resolve().parents[3]
VLLM_PYTHON = Path(os.environ.get("EQUINOX_VLLM_PYTHON") or REPO / ".venv-vllm" / "bin" / "python")
SERVER_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
BASE_ARGS = ("--enforce-eager", "--max-model-len", "512")


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """The vLLM environment's interpreter, or a skip explaining how to get one."""
    if not VLLM_PYTHON.exists():
        pytest.skip(f"no vLLM environment at {VLLM_PYTHON}: run scripts/setup_vllm_env.sh "
                    "(or set EQUINOX_VLLM_PYTHON)")
    return VLLM_PYTHON


@pytest.fixture(scope="session")
def tiny_model(vllm_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a locally trained tokenizer (built once per session)."""
    out = Path(os.environ.get("EQUINOX_TEST_MODEL_DIR") or tmp_path_factory.mktemp("tiny-llama"))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run([str(vllm_python), "-m", "equinox.integrations.vllm.tiny_model", str(out)],
                   check=True, env=env, capture_output=True, timeout=300)
    return out


class ServerPool:
    """Starts servers on demand and keeps at most one alive (two cores, limited memory)."""

    def __init__(self, python: Path, model: Path, workdir: Path) -> None:
        self.python = python
        self.model = model
        self.workdir = workdir
        self.key: tuple[object, ...] | None = None
        self.server: VllmServer | None = None
        self.metrics_file: Path | None = None
        self.step_log: Path | None = None

    def get(self, policy: str, config: str = "", extra_args: tuple[str, ...] = (),
            scheduler_cls: str = "equinox.integrations.vllm.EquinoxScheduler") -> VllmServer:
        """A running server for this configuration (restarting the pool's server if it differs)."""
        key = (policy, config, extra_args, scheduler_cls)
        if self.server is not None and key == self.key:
            return self.server
        self.close()
        name = f"{policy}-{abs(hash(key)) % 10**8}"
        config_file = self.workdir / f"{name}.toml"
        config_file.write_text(config)
        self.metrics_file = self.workdir / f"{name}-metrics.json"
        self.step_log = self.workdir / f"{name}-steps.jsonl"
        self.step_log.unlink(missing_ok=True)  # one log per server start
        spec = ServeSpec(
            model=str(self.model), policy=policy, config_file=str(config_file), metrics_file=str(self.metrics_file),
            port=free_port(), scheduler_cls=scheduler_cls, python=str(self.python),
            extra_args=(*BASE_ARGS, *extra_args), env={**SERVER_ENV, ENV_STEP_LOG: str(self.step_log)},
        )
        server = VllmServer(spec, self.workdir / f"{name}.log").start()
        self.server, self.key = server, key
        # A first prompt of 1-2 tokens can crash the bf16 CPU worker: warm up with a longer one.
        warm = send_completion(server.base_url, str(self.model),
                               PlannedRequest("warmup", 0.0, "def warm_up(value): return value * 2 + 1", 4,
                                              stream=False), timeout_s=120)
        assert warm.is_ok, f"warm-up failed: {warm.error}\n{server.log_tail()}"
        return server

    def close(self) -> None:
        """Stop the running server, if any."""
        if self.server is not None:
            self.server.stop()
        self.server = self.key = None


@pytest.fixture(scope="session")
def servers(vllm_python: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    """The session's server pool."""
    pool = ServerPool(vllm_python, tiny_model, tmp_path_factory.mktemp("vllm-servers"))
    try:
        yield pool
    finally:
        pool.close()
