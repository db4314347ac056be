"""The collector's time series against a plain model of it: same values to the bit (issue 13).

The collector keeps the sums of the interval a step ends in as native numbers and moves them
into its arrays and cells later; this model adds every step straight into dicts, in order.
Steps come in any interval order, may span intervals, take no time, or fold decode runs.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from equinox.metrics.collector import SERIES_COLUMNS, Collector
from equinox.scheduling.interface import Platform
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage

PLATFORM = Platform.proxy()
TENANTS = ("a", "b", "c")


def _model(reports: list[StepReport], interval: float) -> dict[str, Any]:
    """What `Collector.series` must hold after `reports`, added naively in order."""
    cols: dict[str, dict[int, float]] = {c: {} for c in SERIES_COLUMNS}
    service: dict[str, dict[int, list[int]]] = {}
    resource: dict[str, dict[int, list[float]]] = {}
    n = 0
    c_prefill0, c_context0, c_weights = PLATFORM.s_per_prefill_token, PLATFORM.s_per_context_token, \
        PLATFORM.s_weight_read

    def add(col: str, i: int, x: float) -> None:
        cols[col][i] = cols[col].get(i, 0.0) + x

    for r in reports:
        start, end = r.start_time, r.start_time + r.duration_s
        i_end = int(end / interval)
        n = max(n, i_end + 1)
        used = float(r.num_kv_blocks_used)
        if r.kv_block_seconds is not None and r.duration_s > 0:
            used = r.kv_block_seconds / r.duration_s
        t, i = start, int(start / interval)
        if i == i_end:
            add("busy_s", i, end - t)
            add("kv_block_s", i, (end - t) * used)
        else:
            while t < end:
                edge = min(end, (i + 1) * interval)
                add("busy_s", i, edge - t)
                add("kv_block_s", i, (edge - t) * used)
                t, i = edge, i + 1
        b, k = r.batch, r.num_steps
        add("num_steps", i_end, k)
        add("num_seqs", i_end, b.num_prefill_seqs + b.num_decode_seqs)
        add("num_tokens", i_end, b.num_prefill_tokens + b.num_decode_seqs)
        add("num_prefill_tokens", i_end, b.num_prefill_tokens)
        add("num_decode_seqs", i_end, b.num_decode_seqs)
        add("token_budget", i_end, r.limits.max_num_batched_tokens * k)
        add("max_num_seqs", i_end, r.limits.max_num_seqs * k)
        cols["num_waiting"][i_end] = 7.0
        cols["num_running"][i_end] = 3.0
        add("flops", i_end, float(b.num_prefill_tokens))
        per = r.per_tenant
        for tenant, u in per.items():
            cell = service.setdefault(tenant, {}).setdefault(i_end, [0, 0])
            cell[0] += u[0]
            cell[1] += u[1]
        if r.duration_s > 0 and per:
            num_prefill = sum(u[0] for u in per.values())
            num_out = sum(u[1] for u in per.values())
            num_context = sum(u[2] for u in per.values())
            num_blocks = sum(u[3] for u in per.values())
            per_out = c_weights * k / num_out if num_out else 0.0
            total = c_prefill0 * num_prefill + c_context0 * num_context + per_out * num_out
            scale = r.duration_s / total if total > 0 else 0.0
            c_prefill, c_context, per_out = c_prefill0 * scale, c_context0 * scale, per_out * scale
            kv_scale = r.duration_s
            if r.kv_block_seconds is not None and num_blocks:
                kv_scale = r.kv_block_seconds / num_blocks
            for tenant, u in per.items():
                cell2 = resource.setdefault(tenant, {}).setdefault(i_end, [0.0, 0.0])
                cell2[0] += c_prefill * u[0] + c_context * u[2] + per_out * u[1]
                cell2[1] += u[3] * kv_scale
    return {
        "columns": {c: [cols[c].get(i, 0.0) for i in range(n)] for c in SERIES_COLUMNS},
        "service": {t: {i: tuple(v) for i, v in sorted(cells.items())} for t, cells in service.items()},
        "resource": {t: {i: tuple(v) for i, v in sorted(cells.items())} for t, cells in resource.items()},
    }


@st.composite
def _reports(draw: st.DrawFn) -> list[StepReport]:
    out = []
    t = 0.0
    for step_id in range(draw(st.integers(1, 40))):
        if draw(st.booleans()):
            t += draw(st.floats(0.0, 2.5))  # forward, sometimes into a later interval
        else:
            t = draw(st.floats(0.0, max(t, 0.1)))  # out of order: back into an interval already written
        duration = draw(st.sampled_from([0.0, 0.013, 0.25, 1.7])) * draw(st.floats(0.5, 1.0))
        tenants = draw(st.lists(st.sampled_from(TENANTS), unique=True, max_size=3))
        per = {x: TenantUsage(draw(st.integers(0, 900)), draw(st.integers(0, 40)), draw(st.integers(0, 5000)),
                              draw(st.integers(0, 60))) for x in sorted(tenants)}
        k = draw(st.integers(1, 9))
        folded = k > 1 and draw(st.booleans())
        out.append(StepReport(
            step_id, t, duration,
            BatchShape(draw(st.integers(0, 4096)), draw(st.integers(0, 4)), 0, draw(st.integers(0, 128)), 0),
            BatchLimits(4096, 128), per, draw(st.integers(0, 500)), 1000, k,
            draw(st.floats(0.0, 900.0)) if folded else None,
        ))
    return out


@settings(max_examples=300, deadline=None)
@given(_reports(), st.sampled_from([1.0, 0.5, 0.1]))
def test_series_equals_adding_each_step_in_order(reports: list[StepReport], interval: float) -> None:
    c = Collector(interval, lambda r: float(r.batch.num_prefill_tokens), platform=PLATFORM)
    for r in reports:
        c.on_step(r, 7, 3, 0)
    expect = _model(reports, interval)
    s = c.series
    assert {name: list(col) for name, col in s.columns.items()} == expect["columns"]
    assert {t: dict(cells.items()) for t, cells in s.service.items()} == expect["service"]
    assert {t: dict(cells.items()) for t, cells in s.resource.items()} == expect["resource"]
    assert list(s.service) == list(expect["service"])  # tenants in the order they first used a step
    assert s.num_kv_blocks == 1000


def test_reading_the_series_mid_run_changes_nothing() -> None:
    """`series` folds what is pending; steps after the read still add up to the same values."""
    reports = [
        StepReport(i, 0.3 * i, 0.2, BatchShape(10, 1, 0, 5, 0), BatchLimits(4096, 128),
                   {"a": TenantUsage(10, 1, 100, 4), "b": TenantUsage(0, 5, 50, 2)}, 20, 1000)
        for i in range(12)
    ]
    read, unread = Collector(1.0, platform=PLATFORM), Collector(1.0, platform=PLATFORM)
    for r in reports:
        read.on_step(r, 1, 2, 0)
        unread.on_step(r, 1, 2, 0)
        _ = read.series  # flushes every step
    a, b = read.series, unread.series
    assert {k: list(v) for k, v in a.columns.items()} == {k: list(v) for k, v in b.columns.items()}
    assert {t: dict(c.items()) for t, c in a.service.items()} == {t: dict(c.items()) for t, c in b.service.items()}
    assert {t: dict(c.items()) for t, c in a.resource.items()} == {t: dict(c.items()) for t, c in b.resource.items()}
    assert sum(o for _, o in a.service["b"].values()) == 60
