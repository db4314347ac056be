"""Every format on small hand-written files in its documented layout, and the bad-input rules."""

from __future__ import annotations

import json
import logging

import pytest

from equinox.errors import ConfigError, EquinoxError, UnknownNameError, WorkloadError
from equinox.workload import load_workload
from equinox.workload.build import LoadOptions
from equinox.workload.formats import detect_format, load_trace
from equinox.workload.io import write_workload

AZURE_2024 = """TIMESTAMP,ContextTokens,GeneratedTokens
2024-05-10 00:00:00.009930+00:00,2162,5
2024-05-10 00:00:00+00:00,76,15
2024-05-10 00:00:01.5+00:00,2376,1
"""
BURSTGPT = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,0,1087,Conversation log
118,GPT-4,417,276,693,API log
"""
VTC = """req_id,req_time,adapter_dir,prompt_len,output_len
0,0.5,lora-a,120,30
1,1.0,lora-b,80,20
2,1.5,lora-a,60,10
"""


def test_azure_2024_timezone_timestamps_and_unsorted_rows(write, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        w = load_trace(write("a.csv", AZURE_2024))
    assert [r.num_prompt_tokens for r in w.requests] == [76, 2162, 2376]
    assert [r.arrival_time for r in w.requests] == pytest.approx([0.0, 0.00993, 1.5])
    assert any("not sorted" in m for m in w.warnings)
    assert "not sorted" in caplog.text


def test_burstgpt_drops_failed_requests_and_can_use_model_as_tenant(write) -> None:
    path = write("b.csv", BURSTGPT)
    assert detect_format(path).name == "burstgpt"
    w = load_trace(path, LoadOptions(tenants="column:Model"))
    assert len(w.requests) == 2
    assert any("failed request" in m for m in w.warnings)
    assert sorted(w.tenants) == ["ChatGPT", "GPT-4"] and not w.is_synthetic_tenants


def test_vtc_trace_uses_adapter_as_tenant(write) -> None:
    w = load_trace(write("v.csv", VTC))
    assert w.trace_format == "vtc"
    assert [r.tenant for r in w.requests] == ["lora-a", "lora-b", "lora-a"]
    assert w.requests[0].arrival_time == 0.0 and w.requests[2].arrival_time == 1.0


def test_sharegpt_conversations_stream_with_estimated_tokens(write) -> None:
    convs = [
        {"id": "a", "conversations": [{"from": "human", "value": "x" * 40}, {"from": "gpt", "value": "y" * 9}]},
        {"id": "b", "conversations": [{"from": "human", "value": "only a question"}]},
        {"id": "c", "conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q" * 8},
                                      {"from": "gpt", "value": "a" * 400}]},
    ]
    path = write("s.json", json.dumps(convs, indent=2))
    w = load_trace(path, LoadOptions(rate=2.0))
    assert w.trace_format == "sharegpt"
    assert sorted((r.request_id, r.num_prompt_tokens, r.num_output_tokens) for r in w.requests) == [
        ("a", 10, 3), ("c", 2, 100)]
    assert any("chars / 4" in m for m in w.warnings)
    assert any("dropped 1 conversation" in m for m in w.warnings)


def test_chatbot_arena_style_with_timestamps_and_model_tenants(write) -> None:
    convs = [{"conversation": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi!"}],
              "model": m, "tstamp": t} for m, t in (("vicuna", 100.0), ("koala", 101.5))]
    w = load_trace(write("arena.json", json.dumps(convs)), LoadOptions(tenants="column:model"))
    assert [r.tenant for r in w.requests] == ["vicuna", "koala"]
    assert [r.arrival_time for r in w.requests] == [0.0, 1.5]


def test_vllm_bench_jsonl(write) -> None:
    text = "\n".join(json.dumps(o) for o in (
        {"prompt": "abcdefgh", "output_tokens": 12}, {"prompt": "z" * 100}, {"prompt_len": 7, "output_tokens": 3}))
    w = load_trace(write("v.jsonl", text), LoadOptions(seed=1))
    assert w.trace_format == "vllm-bench"
    assert sorted((r.num_prompt_tokens, r.num_output_tokens) for r in w.requests) == [(2, 12), (7, 3), (25, 256)]
    assert all(r.max_tokens == r.num_output_tokens for r in w.requests)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_canonical_round_trip_keeps_everything(tmp_path, suffix: str) -> None:
    w = load_workload("overload_weighted", seed=3, duration_s=30)
    path = write_workload(w, tmp_path / f"w.{suffix}")
    back = load_trace(path)
    assert back.requests == w.requests
    assert dict(back.tenant_weights) == dict(w.tenant_weights)
    assert back.name == w.name


def test_canonical_round_trip_labels_synthetic_tenants(tmp_path) -> None:
    w = load_workload("azure-conv", seed=1, duration_s=20, num_tenants=3)
    assert w.is_synthetic_tenants
    for suffix in ("csv", "jsonl"):
        path = write_workload(w, tmp_path / f"w.{suffix}")
        assert "SYNTHETIC" in path.read_text().splitlines()[0]
        back = load_trace(path)
        assert back.is_synthetic_tenants and back.tenant_assignment == w.tenant_assignment


def test_canonical_prompt_text_and_prefix_hashes(tmp_path, write) -> None:
    text = ("request_id,tenant,arrival_time,num_prompt_tokens,num_output_tokens,max_tokens,prompt_text,"
            "prefix_hashes,tenant_weight\n"
            'x,t1,0.5,10,4,8,"hello, ""world""",1 2 3,2\n')
    w = load_trace(write("c.csv", text))
    r = w.requests[0]
    assert (r.prompt_text, r.prefix_hashes, r.max_tokens, w.weight("t1")) == ('hello, "world"', (1, 2, 3), 8, 2.0)


# -- bad input ----------------------------------------------------------------------------


def test_malformed_row_names_file_line_field_and_expectation(write) -> None:
    path = write("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.1,10,5\n"
                          "2023-11-16 18:17:04.1,ten,5\n")
    with pytest.raises(WorkloadError) as exc:
        load_trace(path)
    msg = str(exc.value)
    assert f"{path}:3" in msg and "ContextTokens" in msg and "expected an integer >= 1" in msg and "'ten'" in msg
    assert exc.value.line == 3 and exc.value.field == "ContextTokens"


def test_skip_bad_rows_reports_count(write) -> None:
    path = write("m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 2}\n{not json}\n'
                            '{"timestamp": 5, "input_length": -3, "output_length": 2}\n'
                            '{"timestamp": 9, "input_length": 5, "output_length": 2}\n')
    with pytest.raises(WorkloadError, match=r"m\.jsonl:2"):
        load_trace(path, LoadOptions(format="mooncake"))
    w = load_trace(path, LoadOptions(format="mooncake", skip_bad=True))
    assert len(w.requests) == 2 and w.num_skipped_rows == 2
    assert any("skipped 2 bad row" in m for m in w.warnings)


def test_negative_length_is_an_explicit_error(write) -> None:
    path = write("v.csv", "req_time,adapter_dir,prompt_len,output_len\n0,a,10,-4\n")
    with pytest.raises(WorkloadError, match=r"output_len.*negative length"):
        load_trace(path)


def test_empty_trace_is_an_explicit_error(write) -> None:
    with pytest.raises(WorkloadError, match="empty"):
        load_trace(write("e.csv", ""))
    with pytest.raises(WorkloadError, match="no requests"):
        load_trace(write("h.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"))
    with pytest.raises(WorkloadError, match="no requests"):
        load_trace(write("s.json", "[]"))


def test_all_rows_bad_with_skip_says_so(write) -> None:
    path = write("v.csv", "req_time,adapter_dir,prompt_len,output_len\nx,a,1,1\n")
    with pytest.raises(WorkloadError, match="1 bad row"):
        load_trace(path, LoadOptions(skip_bad=True))


def test_unknown_columns_are_reported_and_ignored(write) -> None:
    path = write("v.csv", "req_time,adapter_dir,prompt_len,output_len,colour\n0,a,10,4,red\n")
    w = load_trace(path)
    assert any("unknown column(s): colour" in m for m in w.warnings)


def test_missing_column_lists_what_was_found(write) -> None:
    path = write("a.csv", "TIMESTAMP,ContextTokens,Output\n2023-11-16 18:17:03.1,10,5\n")
    with pytest.raises(WorkloadError, match="found: TIMESTAMP, ContextTokens, Output"):
        load_trace(path, LoadOptions(format="azure"))


def test_duplicate_request_ids_rejected(write) -> None:
    text = "request_id,tenant,arrival_time,num_prompt_tokens,num_output_tokens\na,t,0,1,1\na,t,1,1,1\n"
    with pytest.raises(WorkloadError, match="duplicate request_id 'a'"):
        load_trace(write("c.csv", text))


def test_undetectable_file_says_how_to_name_the_format(write) -> None:
    with pytest.raises(WorkloadError, match="format=NAME"):
        load_trace(write("x.csv", "a,b\n1,2\n"))


def test_unknown_names_list_known_workloads() -> None:
    with pytest.raises(UnknownNameError, match="overload"):
        load_workload("no-such-workload")
    with pytest.raises(UnknownNameError):
        load_trace("x", LoadOptions(format="nope"))
    with pytest.raises(WorkloadError, match="no such trace file"):
        load_workload("missing/trace.csv")


def test_option_errors_are_config_errors(write) -> None:
    path = write("v.csv", VTC)
    for spec in (f"{path}?colour=red", f"{path}?tenants=bogus:3", "sharegpt?day_s=x", "overload?tenants=zipf:2"):
        with pytest.raises(ConfigError):
            load_workload(spec)
    with pytest.raises(EquinoxError):
        LoadOptions(rate_scale=0)


def test_non_utf8_file_is_a_clear_error(write) -> None:
    path = write("a.csv", b"TIMESTAMP,ContextTokens,GeneratedTokens\n\xff\xfe,1,1\n")
    with pytest.raises(WorkloadError, match="not UTF-8"):
        load_trace(path, LoadOptions(format="azure"))
