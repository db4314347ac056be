"""Prometheus metrics of the gateway (one registry per app, so tests can run several gateways).

Per tenant: queue length, requests in flight, queue wait, TTFT, end-to-end latency,
prompt and output tokens, requests by outcome, rejections by reason, and the policy's
fairness counters (every kind `counter_breakdown()` reports). Per backend: window,
in-flight requests, health, failures, and retries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from equinox.integrations.gateway.admission import Admission

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class GatewayMetrics:
    """The gateway's Prometheus series."""

    def __init__(self, admission_of: Callable[[], Admission | None], clock: Callable[[], float]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("equinox_gateway_requests", "Requests that ended, by tenant and outcome",
                                ["tenant", "outcome"], registry=r)
        self.rejections = Counter("equinox_gateway_rejections", "Requests refused, by tenant and reason",
                                  ["tenant", "reason"], registry=r)
        self.queue_wait = Histogram("equinox_gateway_queue_wait_seconds", "Arrival to dispatch to a backend",
                                    ["tenant"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("equinox_gateway_ttft_seconds", "Arrival to first token, as the gateway sees it",
                              ["tenant"], buckets=LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram("equinox_gateway_e2e_seconds", "Arrival to last token", ["tenant"],
                             buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("equinox_gateway_prompt_tokens", "Prompt tokens served (backend usage)",
                                     ["tenant"], registry=r)
        self.output_tokens = Counter("equinox_gateway_output_tokens", "Output tokens streamed to clients",
                                     ["tenant"], registry=r)
        self.retries = Counter("equinox_gateway_retries", "Requests moved to another backend before the first token",
                               ["backend"], registry=r)
        self.disconnects = Counter("equinox_gateway_client_disconnects", "Clients that left before the end",
                                   ["tenant"], registry=r)
        r.register(_LiveCollector(admission_of, clock))  # type: ignore[arg-type]

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of the /metrics page."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _LiveCollector:
    """Gauges read from the admission state at scrape time (queue lengths, counters, backends)."""

    def __init__(self, admission_of: Callable[[], Admission | None], clock: Callable[[], float]) -> None:
        self._admission_of = admission_of
        self._clock = clock

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        adm = self._admission_of()
        if adm is None:
            return
        tenants = sorted(t.name for t in adm.config.tenants)
        queue = GaugeMetricFamily("equinox_gateway_queue_length", "Requests waiting in the fair queue",
                                  labels=["tenant"])
        running = GaugeMetricFamily("equinox_gateway_running", "Requests in flight at a backend", labels=["tenant"])
        in_flight = adm.num_running_of()
        for t in tenants:
            queue.add_metric([t], adm.num_waiting_of(t))
            running.add_metric([t], in_flight.get(t, 0))
        yield queue
        yield running
        fair = GaugeMetricFamily("equinox_gateway_fairness_counter", "Policy fairness counters (vtc, ufc, rfc, hf...)",
                                 labels=["kind", "tenant"])
        for kind, values in sorted(adm.policy.counter_breakdown().items()):
            for tenant, value in sorted(values.items()):
                fair.add_metric([kind, tenant], float(value))
        yield fair
        now = self._clock()
        window = GaugeMetricFamily("equinox_gateway_backend_window", "Adaptive concurrency window", labels=["backend"])
        flying = GaugeMetricFamily("equinox_gateway_backend_in_flight", "Requests in flight", labels=["backend"])
        healthy = GaugeMetricFamily("equinox_gateway_backend_healthy", "1 when the backend gets traffic",
                                    labels=["backend"])
        failures = CounterMetricFamily("equinox_gateway_backend_failures", "Failed upstream requests",
                                       labels=["backend"])
        for b in adm.backends:
            window.add_metric([b.name], b.window.value)
            flying.add_metric([b.name], b.num_in_flight)
            healthy.add_metric([b.name], 1.0 if b.is_healthy(now) else 0.0)
            failures.add_metric([b.name], b.num_failures)
        yield from (window, flying, healthy, failures)
