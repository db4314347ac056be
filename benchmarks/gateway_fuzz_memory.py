"""Gateway memory under the HTTP fuzz: resident memory of a gateway process of its own over thousands of bodies.

Starts the fake OpenAI backend and `equinox gateway` as subprocesses on 127.0.0.1, sends
`--warmup` valid requests, then `--bodies` Hypothesis-generated bodies (the strategies of
`tests/integrations/gateway/fuzz_bodies.py`: valid and invalid JSON, wrong types, huge
and negative limits, deep nesting, raw bytes) to the two OpenAI endpoints, one after
another on one kept-alive connection. Reads the gateway's VmRSS and VmHWM from
/proc/PID/status after start, after the warm-up and every `--every` bodies, and prints
them with the answers by status class and the tracebacks in the gateway's log.

The client, the gateway and the backend share this machine's cores; memory figures do
not depend on that, latencies would. Run:
`python benchmarks/gateway_fuzz_memory.py [--bodies 5000] [--every 1000]`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(ROOT / "tests" / "integrations" / "gateway"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_overhead import KEY, free_port, stop  # noqa: E402

MODEL = "fake-model"


def start(argv: list[str], url: str, log: Path) -> subprocess.Popen[bytes]:
    """Start a server subprocess (stderr to `log`) and wait until `url` answers (bounded)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start: {' '.join(argv)}\n{log.read_text()[-2000:]}")


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of process `pid` in MiB: resident memory now, and its peak."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024  # kB
    return fields["VmRSS"], fields["VmHWM"]


def fuzz(client: httpx.Client, url: str, num_bodies: int, on_case: object) -> None:
    """Send `num_bodies` generated bodies; `on_case(status or None)` after each (None: no HTTP answer)."""
    from fuzz_bodies import bodies
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    assert callable(on_case)

    @settings(max_examples=num_bodies, deadline=None, derandomize=True, database=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(body=bodies(MODEL), is_chat=st.booleans())
    def case(body: bytes, is_chat: bool) -> None:
        path = "/v1/chat/completions" if is_chat else "/v1/completions"
        try:
            with client.stream("POST", url + path, content=body) as r:
                r.read()
            on_case(r.status_code)
        except httpx.HTTPError:
            on_case(None)

    case()


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=int, default=5000, help="fuzzed bodies to send")
    parser.add_argument("--every", type=int, default=1000, help="read the gateway's memory every N bodies")
    parser.add_argument("--warmup", type=int, default=200, help="valid requests before the first reading")
    parser.add_argument("--policy", default="vtc")
    args = parser.parse_args()

    from equinox.integrations.gateway.config import hash_key

    backend_port, gw_port = free_port(), free_port()
    backend_url, gw_url = f"http://127.0.0.1:{backend_port}", f"http://127.0.0.1:{gw_port}"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "gw.toml"
        cfg.write_text(
            f'[gateway]\nport = {gw_port}\npolicy = "{args.policy}"\nhealth_interval_s = 3600.0\n\n'
            "[concurrency]\ninitial_window = 64\n\n"
            f'[[backends]]\nurl = "{backend_url}"\n\n'
            f'[[tenants]]\nname = "t"\nkey_sha256 = "{hash_key(KEY)}"\nmax_tokens = 8\n')
        gw_log = Path(tmp) / "gateway.log"
        backend = start([sys.executable, "-m", "equinox.integrations.gateway.fake_backend", "--port",
                         str(backend_port)], backend_url + "/health", Path(tmp) / "backend.log")
        gateway = start([sys.executable, "-m", "equinox.cli.main", "gateway", "--config", str(cfg)],
                        gw_url + "/health", gw_log)
        readings: list[tuple[str, float, float]] = [("after start", *memory_mib(gateway.pid))]
        statuses: Counter[str] = Counter()
        try:
            client = httpx.Client(headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
                                  timeout=30.0, trust_env=False)
            with client:
                for i in range(args.warmup):
                    r = client.post(gw_url + "/v1/completions",
                                    json={"model": MODEL, "prompt": "hello", "stream": bool(i % 2)})
                    if r.status_code != 200:
                        raise SystemExit(f"warm-up request failed: HTTP {r.status_code} {r.text[:200]}")
                readings.append((f"after {args.warmup} valid requests", *memory_mib(gateway.pid)))

                def on_case(status: int | None) -> None:
                    statuses["no answer" if status is None else f"{status // 100}xx"] += 1
                    num = sum(statuses.values())
                    if num % args.every == 0:
                        readings.append((f"after {num:,} fuzzed bodies", *memory_mib(gateway.pid)))

                started = time.monotonic()
                fuzz(client, gw_url, args.bodies, on_case)
                wall_s = time.monotonic() - started
            time.sleep(1.0)  # let the gateway settle the last requests
            readings.append(("at the end", *memory_mib(gateway.pid)))
        finally:
            stop(gateway)
            stop(backend)
        log_text = gw_log.read_text(errors="replace")
    num = sum(statuses.values())
    print(f"gateway fuzz memory · policy {args.policy} · {num:,} fuzzed bodies in {wall_s:.0f} s "
          f"(after {args.warmup} valid requests) · gateway pid of its own, VmRSS/VmHWM from /proc/PID/status")
    print("answers: " + ", ".join(f"{k} {v:,}" for k, v in sorted(statuses.items()))
          + f" · 5xx {statuses.get('5xx', 0)} · tracebacks in the gateway log {log_text.count('Traceback')} "
          f"(of {len(log_text.splitlines())} log lines)")
    print("| reading | VmRSS MiB | VmHWM (peak) MiB |")
    print("|---|---|---|")
    for name, rss, hwm in readings:
        print(f"| {name} | {rss:.1f} | {hwm:.1f} |")
    warm = readings[1][1]
    print(f"growth from the warm-up reading to the end: {readings[-1][1] - warm:+.1f} MiB "
          f"({(readings[-1][1] - warm) / max(1, num) * 1000 * 1024:+.1f} KiB per 1,000 bodies)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(main())
