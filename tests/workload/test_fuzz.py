"""Hypothesis-generated malformed input to every parser: a Workload or an EquinoxError, nothing else."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from equinox.errors import EquinoxError
from equinox.workload.build import LoadOptions
from equinox.workload.formats import TRACE_FORMATS, load_trace
from equinox.workload.schema import Workload

HEADERS = {
    "azure": "TIMESTAMP,ContextTokens,GeneratedTokens",
    "burstgpt": "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type",
    "vtc": "req_time,adapter_dir,prompt_len,output_len",
    "lengths-csv": "num_prefill_tokens,num_decode_tokens",
    "equinox-csv": "request_id,tenant,arrival_time,num_prompt_tokens,num_output_tokens,max_tokens,prompt_text,"
                   "prefix_hashes,tenant_weight",
    "servegen": "",
}
JSON_KEYS = ["timestamp", "input_length", "output_length", "hash_ids", "prompt", "output_tokens", "prompt_len",
             "arrival_time", "tenant", "num_prompt_tokens", "num_output_tokens", "request_id", "tenant_weight",
             "max_tokens", "conversations", "from", "value", "tstamp"]
# EQX_FUZZ_EXAMPLES=2000 for a deeper local run.
NUM_EXAMPLES = int(os.environ.get("EQX_FUZZ_EXAMPLES", "60"))
SETTINGS = settings(
    max_examples=NUM_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

cells = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "inf", "-1", "0", "1e400", "2023-11-16 18:17:03.9799600", "Gamma", "Weibull",
                     "2024-05-10 00:00:00+00:00", "9" * 30, '"', "a,b", "\x00"]),
    st.text(max_size=12),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**12) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(JSON_KEYS), children,
                                                                        max_size=5),
    max_leaves=12,
)


def _check(fmt: str, name: str, data: bytes, skip_bad: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(data)
        try:
            w = load_trace(path, LoadOptions(format=fmt, skip_bad=skip_bad, rate_scale=0.001, duration_s=5000))
        except EquinoxError:
            return
        assert isinstance(w, Workload) and w.requests
        keys = [(r.arrival_time, r.request_id) for r in w.requests]
        assert keys == sorted(keys)


@pytest.mark.parametrize("fmt", sorted(TRACE_FORMATS.names()))
@SETTINGS
@given(data=st.binary(max_size=300), skip_bad=st.booleans())
def test_random_bytes(fmt: str, data: bytes, skip_bad: bool) -> None:
    _check(fmt, "chunk-1-trace.csv" if fmt == "servegen" else "trace.dat", data, skip_bad)


@pytest.mark.parametrize("fmt", sorted(HEADERS))
@SETTINGS
@given(rows=st.lists(st.lists(cells, min_size=0, max_size=7), max_size=6), skip_bad=st.booleans())
def test_csv_rows_with_valid_header(fmt: str, rows: list[list[str]], skip_bad: bool) -> None:
    import csv
    import io

    buf = io.StringIO()
    if HEADERS[fmt]:
        buf.write(HEADERS[fmt] + "\n")
    csv.writer(buf).writerows(rows)
    _check(fmt, "chunk-2-trace.csv", buf.getvalue().encode("utf-8", errors="surrogatepass"), skip_bad)


@pytest.mark.parametrize("fmt", ["mooncake", "vllm-bench", "equinox-jsonl"])
@SETTINGS
@given(objs=st.lists(json_values, max_size=6), skip_bad=st.booleans())
def test_jsonl_objects(fmt: str, objs: list[object], skip_bad: bool) -> None:
    text = "\n".join(json.dumps(o) for o in objs)
    _check(fmt, "t.jsonl", text.encode(), skip_bad)


@SETTINGS
@given(value=json_values, skip_bad=st.booleans())
def test_sharegpt_json(value: object, skip_bad: bool) -> None:
    convs = value if isinstance(value, list) else [value]
    _check("sharegpt", "s.json", json.dumps(convs).encode(), skip_bad)


@SETTINGS
@given(text=st.text(max_size=200))
def test_sharegpt_truncated_and_garbled_json(text: str) -> None:
    base = json.dumps([{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "ok"}]}])
    _check("sharegpt", "s.json", (base[: len(text) % len(base)] + text).encode(), False)


@SETTINGS
@given(pmf=st.text(max_size=60), windows=st.lists(cells, max_size=3))
def test_servegen_dataset_json(pmf: str, windows: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        trace = Path(d) / "chunk-3-trace.csv"
        trace.write_text("0,1.0,1.0,Gamma,1.0,1.0\n600,2.0,1.0,,0,0\n")
        ds = {w: {"input_tokens": pmf, "output_tokens": "{1: 1.0}"} for w in (windows or ["0"])}
        (Path(d) / "chunk-3-dataset.json").write_text(json.dumps(ds))
        try:
            w = load_trace(trace, LoadOptions(duration_s=1200))
        except EquinoxError:
            return
        assert w.requests
