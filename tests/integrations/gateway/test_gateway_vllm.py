"""The gateway in front of a real vLLM (CPU, tiny random model) running the Equinox plug-in, two tenants."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_helpers import KEYS, admin, auth

from equinox.integrations.vllm.launcher import SCHEDULER_CLS, ServeSpec, VllmServer, free_port
from equinox.integrations.vllm.metrics import read_snapshot

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[3]
VLLM_PYTHON = Path(os.environ.get("EQUINOX_VLLM_PYTHON") or REPO / ".venv-vllm" / "bin" / "python")
SERVER_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VllmServer, Path, Path]]:
    """vLLM's OpenAI server with the Equinox scheduler (policy vtc) on a tiny model; skipped without vLLM."""
    if not VLLM_PYTHON.exists():
        pytest.skip(f"no vLLM environment at {VLLM_PYTHON}: run scripts/setup_vllm_env.sh (or set EQUINOX_VLLM_PYTHON)")
    work = tmp_path_factory.mktemp("gw-vllm")
    model = Path(os.environ.get("EQUINOX_TEST_MODEL_DIR") or work / "tiny-llama")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run([str(VLLM_PYTHON), "-m", "equinox.integrations.vllm.tiny_model", str(model)],
                   check=True, env=env, capture_output=True, timeout=300)
    metrics_file = work / "plugin-metrics.json"
    spec = ServeSpec(model=str(model), policy="vtc", metrics_file=str(metrics_file), port=free_port(),
                     scheduler_cls=SCHEDULER_CLS, python=str(VLLM_PYTHON), env=SERVER_ENV,
                     extra_args=("--enforce-eager", "--max-model-len", "512", "--disable-log-stats"))
    server = VllmServer(spec, work / "vllm.log").start()
    try:
        # A first prompt of 1-2 tokens can crash the bf16 CPU worker: warm up with a longer one.
        r = httpx.post(server.base_url + "/v1/completions", timeout=120, json={
            "model": str(model), "prompt": "def warm_up(value): return value * 2 + 1", "max_tokens": 4})
        assert r.status_code == 200, server.log_tail()
        yield server, model, metrics_file
    finally:
        server.stop()


def test_two_tenants_through_the_gateway_into_vllm(vllm_server: tuple[VllmServer, Path, Path], gateway: Any) -> None:
    server, model, metrics_file = vllm_server
    gw = gateway([server.base_url], policy="vtc")
    url = gw.url + "/v1/completions"
    prompt = "def compute(value): result = value * 2 return result"

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            calls = []
            for i in range(6):
                tenant = ("alice", "bob")[i % 2]
                body = {"model": str(model), "prompt": f"{prompt} {i}", "max_tokens": 8, "ignore_eos": True,
                        "stream": i % 4 < 2}
                headers = {**auth(tenant), "x-tenant": "mallory"}  # a spoofed header must change nothing
                calls.append(client.post(url, headers=headers, json={**body, "vllm_xargs": {"tenant": "mallory"}}))
            return list(await asyncio.gather(*calls))

    responses = asyncio.run(send_all())
    for r in responses:
        assert r.status_code == 200, r.text
        if r.headers["content-type"].startswith("text/event-stream"):
            assert r.text.rstrip().endswith("data: [DONE]") and '"error"' not in r.text
        else:
            assert r.json()["usage"]["completion_tokens"] == 8
    assert httpx.post(url, headers={"Authorization": "Bearer wrong"}, json={"model": str(model)}).status_code == 401
    assert KEYS  # both test tenants authenticated above
    # the plug-in inside vLLM saw the authenticated tenants, never the spoofed one
    deadline = time.monotonic() + 10
    tenants: dict[str, Any] = {}
    while time.monotonic() < deadline:
        tenants = (read_snapshot(metrics_file) or {}).get("tenants", {})
        if {"alice", "bob"} <= set(tenants):
            break
        time.sleep(0.2)
    assert {"alice", "bob"} <= set(tenants), tenants
    assert "mallory" not in tenants
    metrics = httpx.get(gw.url + "/metrics", headers=admin()).text
    assert 'equinox_gateway_output_tokens_total{tenant="alice"} 24.0' in metrics
    assert 'equinox_gateway_output_tokens_total{tenant="bob"} 24.0' in metrics
