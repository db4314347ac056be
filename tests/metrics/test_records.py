"""RecordColumns keeps every request's outcome exactly, in order, across its batched moves into arrays (issue 13)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from equinox.metrics.records import RecordColumns
from equinox.request import Request, RequestSpec, RequestStatus


def _request(rng: random.Random, i: int) -> Request:
    arrival = rng.choice([rng.uniform(0, 1e5), 0, 3.0])  # an int arrival time too (pure-Python callers)
    req = Request(RequestSpec(f"r{i}", f"t{rng.randrange(5)}", arrival, rng.randint(1, 4000), rng.randint(1, 900)))
    req.num_output_tokens_done = rng.randint(0, 900)
    req.num_preemptions = rng.choice([0, 0, 1, 7])
    req.max_itl_s = rng.choice([0.0, rng.random(), 2.5])
    kind = rng.randrange(4)
    if kind:  # scheduled; then maybe a first token, then maybe finished
        req.first_scheduled_time = arrival + rng.random()
        if kind > 1:
            req.first_token_time = req.first_scheduled_time + rng.random()
            if kind > 2:
                req.finish_time = req.first_token_time + rng.random()
    elif rng.random() < 0.5:
        req.status, req.reject_reason = RequestStatus.REJECTED, f"too long ({i})"
    return req


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


@pytest.mark.parametrize("n", [0, 1, 4095, 4096, 4097, 10_001])
def test_columns_hold_every_request_in_order(n: int) -> None:
    rng = random.Random(n)
    reqs = [_request(rng, i) for i in range(n)]
    cols = RecordColumns()
    for k, req in enumerate(reqs):
        cols.add_request(req)
        if k % 997 == 0 or k in (4095, 4096):
            assert len(cols) == k + 1
    assert len(cols) == n
    c = cols.columns()
    assert len(c) == n and len(cols) == n
    assert cols.tenants == list(dict.fromkeys(r.spec.tenant for r in reqs))
    assert [cols.tenants[i] for i in c.tenant] == [r.spec.tenant for r in reqs]
    for got, want in (
            (c.arrival, [r.spec.arrival_time for r in reqs]),
            (c.scheduled, [_nan(r.first_scheduled_time) for r in reqs]),
            (c.first_token, [_nan(r.first_token_time) for r in reqs]),
            (c.finish, [_nan(r.finish_time) for r in reqs]),
            (c.max_itl, [r.max_itl_s for r in reqs])):
        assert got.dtype == np.float64 and got.tobytes() == np.array(want, dtype=np.float64).tobytes()
    for got, want in (
            (c.num_prompt, [r.spec.num_prompt_tokens for r in reqs]),
            (c.num_output, [r.num_output_tokens_done for r in reqs]),
            (c.num_requested, [r.num_target_tokens for r in reqs]),
            (c.num_preemptions, [r.num_preemptions for r in reqs])):
        assert got.dtype == np.int64 and got.tolist() == want
    assert c.rejected.tolist() == [r.status is RequestStatus.REJECTED for r in reqs]
    reasons = [r.reject_reason for r in reqs if r.status is RequestStatus.REJECTED]
    assert cols.first_reject_reason == (reasons[0] if reasons else None)
    assert cols.columns() is c
    with pytest.raises(RuntimeError):
        cols.add_request(reqs[0] if reqs else _request(rng, 0))
