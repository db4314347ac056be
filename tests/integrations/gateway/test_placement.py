"""Placement has one owner (issue #12): the request handler enters `Admission` a fixed number of times per
request, never the backends themselves, and `proxy.py` does not import `app.py`, even for types.

Entries are counted with a wrapper put in place of `GatewayState.admission`: it records every method the
handler calls from outside (calls Admission makes on itself do not pass through the wrapper).
"""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_helpers import MODEL, auth

import equinox.integrations.gateway.proxy as proxy_module


class Counting:
    """Forwards attribute access to `target` and logs the name of every method called through it."""

    def __init__(self, target: Any, log: list[str]) -> None:
        self._target = target
        self._log = log

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value
        log = self._log

        def call(*args: Any, **kwargs: Any) -> Any:
            log.append(name)
            return value(*args, **kwargs)

        return call


def entries_for_one_request(gw: Any, *, max_tokens: int, stream: bool) -> list[str]:
    """The methods the handler entered while serving one request of `max_tokens` one-token chunks."""
    st = gw.server.config.app.state.gateway
    log: list[str] = []
    st.admission = Counting(st.admission, log)
    try:
        r = httpx.post(gw.url + "/v1/completions", headers=auth("alice"),
                       json={"model": MODEL, "prompt": "hello", "max_tokens": max_tokens, "stream": stream})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 10  # the handler settles the request just after its last byte
        while st.admission.running and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        st.admission = st.admission._target
    return log


@pytest.mark.parametrize("stream", [True, False])
def test_handler_enters_admission_a_fixed_number_of_times_per_request(fake: Any, gateway: Any,
                                                                      stream: bool) -> None:
    backend, _ = fake()
    gw = gateway([backend.url], health_interval_s=60.0, usage_report_interval_s=60.0)
    short = entries_for_one_request(gw, max_tokens=5, stream=stream)
    long = entries_for_one_request(gw, max_tokens=40, stream=stream)
    assert short == long == ["models", "submit", "wait_dispatch", "on_first_token", "finish"]


def test_tokens_streamed_are_charged_without_entering_admission_per_chunk(fake: Any, gateway: Any) -> None:
    backend, _ = fake()
    gw = gateway([backend.url], health_interval_s=60.0, usage_report_interval_s=60.0)
    st = gw.server.config.app.state.gateway
    entries_for_one_request(gw, max_tokens=12, stream=True)
    report = st.admission.report_usage()
    assert report is not None and report.per_tenant["alice"].num_output_tokens == 12
    assert all(b.num_in_flight == 0 and b.outstanding_tokens == 0 for b in st.admission.backends)


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any level (including `if TYPE_CHECKING:` blocks and functions)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def test_proxy_does_not_import_the_app_module() -> None:
    assert proxy_module.__file__ is not None
    modules = imported_modules(Path(proxy_module.__file__))
    assert "equinox.integrations.gateway.runtime" in modules  # the check sees the imports it should
    assert not any(m == "equinox.integrations.gateway.app" or m.startswith("equinox.integrations.gateway.app.")
                   for m in modules)
    assert "equinox.integrations.gateway.backends.Router" not in modules
