"""What docs/gateway.md promises on SIGTERM and restart, checked on a real `equinox gateway` process:
new connections are refused, queued requests get 503, streams that finish within drain_timeout_s
finish, the rest end with an SSE error event and [DONE], and the fairness counters survive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_helpers import ADMIN_KEY, KEYS, MODEL, admin, auth, settled
from servers import SRC, FakeProcess, free_port

from equinox.integrations.gateway.config import hash_key
from equinox.scheduling.policy import make_policy
from equinox.scheduling.state import read_snapshot, restore


def _config(path: Path, backend: str, port: int, state_file: Path) -> Path:
    tenants = "".join(
        f'[[tenants]]\nname = "{name}"\nkey_sha256 = "{hash_key(key)}"\nmax_tokens = 4096\n\n'
        for name, key in KEYS.items())
    path.write_text(
        f'[gateway]\nport = {port}\npolicy = "vtc"\ndrain_timeout_s = 1.5\nstate_file = "{state_file}"\n'
        f'state_interval_s = 0.2\nadmin_key_sha256 = "{hash_key(ADMIN_KEY)}"\n'
        f'[concurrency]\ninitial_window = 2\nmin_window = 2\n\n'
        f'[[backends]]\nurl = "{backend}"\nmax_concurrency = 2\n\n{tenants}')
    return path


class GatewayProcess:
    """`equinox gateway --config FILE` in a subprocess."""

    def __init__(self, config: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        self.proc = subprocess.Popen([sys.executable, "-m", "equinox.cli.main", "gateway", "--config", str(config)],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.proc.kill()
                raise RuntimeError(f"gateway did not start: {self.proc.communicate()[0]}")
            time.sleep(0.1)

    def stop(self) -> str:
        """SIGTERM, wait for the exit, return its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return out


def _stream(url: str, tenant: str, max_tokens: int, started: threading.Event, out: dict[str, Any]) -> None:
    body = {"model": MODEL, "prompt": "one two three", "max_tokens": max_tokens, "stream": True}
    try:
        with httpx.stream("POST", url + "/v1/completions", headers=auth(tenant), json=body, timeout=60) as r:
            out["status"] = r.status_code
            lines = []
            for line in r.iter_lines():
                lines.append(line)
                started.set()
            out["events"] = [ln[6:] for ln in lines if ln.startswith("data: ")]
    except httpx.HTTPError as exc:
        out["error"] = repr(exc)
    finally:
        started.set()


def _sample(metrics: str, prefix: str) -> float:
    """The value of the first Prometheus sample starting with `prefix` (name and labels), 0 if none."""
    lines = [ln for ln in metrics.splitlines() if ln.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def _counter(metrics: str, tenant: str) -> float:
    return _sample(metrics, f'equinox_gateway_fairness_counter{{kind="vtc",tenant="{tenant}"}}')


def _num_queued(url: str, tenant: str) -> float:
    metrics = httpx.get(url + "/metrics", headers=admin()).text
    return _sample(metrics, f'equinox_gateway_queue_length{{tenant="{tenant}"}}')


def _refuses(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=2)
    except httpx.ConnectError:
        return True  # no longer accepting
    except httpx.TransportError:
        return False  # accepted just before the listener closed, then reset: ask again
    return False


def test_sigterm_drains_streams_and_the_counters_survive_a_restart(tmp_path: Path) -> None:
    backend = FakeProcess("--itl-s", "0.05")
    state_file = tmp_path / "counters.json"
    port = free_port()
    cfg = _config(tmp_path / "gw.toml", backend.url, port, state_file)
    gw = GatewayProcess(cfg, port)
    try:
        results: dict[str, dict[str, Any]] = {"short": {}, "long": {}, "queued": {}}
        started = {k: threading.Event() for k in results}
        threads = {
            "short": threading.Thread(target=_stream, args=(gw.url, "alice", 20, started["short"], results["short"])),
            "long": threading.Thread(target=_stream, args=(gw.url, "alice", 2000, started["long"], results["long"])),
        }
        for name in ("short", "long"):
            threads[name].start()
            assert started[name].wait(20)
        # the window holds 2: a third request waits in the fair queue
        threads["queued"] = threading.Thread(target=_stream, args=(gw.url, "bob", 5, started["queued"],
                                                                   results["queued"]))
        threads["queued"].start()
        # waits, not fixed sleeps: those were too short on a loaded machine
        assert settled(lambda: _num_queued(gw.url, "bob"), 1, timeout_s=20) == 1, "the third request never queued"
        before = _counter(httpx.get(gw.url + "/metrics", headers=admin()).text, "alice")
        gw.proc.send_signal(signal.SIGTERM)
        assert settled(lambda: _refuses(gw.url), True, timeout_s=20), "still accepting after SIGTERM"
        for t in threads.values():
            t.join(30)
        output = gw.stop()
        assert gw.proc.returncode in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal it caught
        short, long_, queued = results["short"], results["long"], results["queued"]
        assert short["status"] == 200 and short["events"][-1] == "[DONE]"
        assert not any('"error"' in e for e in short["events"])
        assert long_["status"] == 200 and long_["events"][-1] == "[DONE]"
        error = json.loads(long_["events"][-2])["error"]
        assert error["type"] == "shutting_down" and "drain" in error["message"]
        assert queued["status"] == 503
        saved = read_snapshot(state_file)
        policy = make_policy("vtc", gw_policy_config(cfg))
        restore(policy, saved)
        assert policy.counters()["alice"] >= before > 0  # the heavy tenant's debt was written at shutdown

        gw = GatewayProcess(cfg, port)  # restart: the counters come back
        assert _counter(httpx.get(gw.url + "/metrics", headers=admin()).text, "alice") == pytest.approx(
            policy.counters()["alice"])
    finally:
        gw.stop()
        backend.kill()


def gw_policy_config(cfg: Path) -> Any:
    """The PolicyConfig of a gateway config file."""
    from equinox.integrations.gateway.config import load_config

    return load_config(cfg).policy_config()
