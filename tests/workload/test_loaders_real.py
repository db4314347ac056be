"""Each loader against the real files in ../shared/data (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest

from equinox.workload import load_workload
from equinox.workload.build import LoadOptions
from equinox.workload.formats import detect_format, load_trace
from equinox.workload.stats import trace_stats


def _lengths(w):
    return (np.array([r.num_prompt_tokens for r in w.requests]), np.array([r.num_output_tokens for r in w.requests]))


@pytest.mark.parametrize(
    ("rel", "n", "rate", "p50_in", "p50_out"),
    [
        ("azure_llm_2023/AzureLLMInferenceTrace_code.csv", 8819, 2.57, 1469, 13),
        ("azure_llm_2023/AzureLLMInferenceTrace_conv.csv", 19366, 5.53, 1020, 129),
    ],
)
def test_azure_2023(rel: str, n: int, rate: float, p50_in: int, p50_out: int, data_file) -> None:
    w = load_trace(data_file(rel))
    assert w.trace_format == "azure"
    assert len(w.requests) == n
    assert w.requests[0].arrival_time == 0.0
    assert len(w.requests) / w.duration_s == pytest.approx(rate, rel=0.01)
    p, o = _lengths(w)
    assert np.median(p) == p50_in and np.median(o) == p50_out
    assert w.tenants == ["default"] and not w.is_synthetic_tenants
    times = [r.arrival_time for r in w.requests]
    assert times == sorted(times)


def test_azure_timestamps_keep_sub_microsecond_order(data_file) -> None:
    w = load_trace(data_file("azure_llm_2023/AzureLLMInferenceTrace_code.csv"))
    # First two rows: 18:17:03.9799600 and 18:17:04.0319600 -> 52 ms apart.
    assert w.requests[1].arrival_time == pytest.approx(0.052, abs=1e-6)


@pytest.mark.parametrize(("rel", "n"), [("mooncake/conversation_trace.jsonl", 12031),
                                        ("mooncake/synthetic_trace.jsonl", 3993)])
def test_mooncake(rel: str, n: int, data_file) -> None:
    w = load_trace(data_file(rel))
    assert w.trace_format == "mooncake" and len(w.requests) == n
    first = w.requests[0]
    assert first.prefix_hashes[:3] == (0, 1, 2)
    # 512 tokens per block: the blocks cover the prompt.
    assert all((len(r.prefix_hashes) - 1) * 512 < r.num_prompt_tokens <= len(r.prefix_hashes) * 512
               for r in w.requests[:200])


def test_mooncake_timestamps_are_milliseconds(data_file) -> None:
    w = load_trace(data_file("mooncake/conversation_trace.jsonl"))
    assert w.requests[-1].arrival_time == pytest.approx(3536.999, abs=1e-6)


def test_etalon_length_table_gets_poisson_arrivals(data_file) -> None:
    path = data_file("etalon_processed_traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv")
    w = load_trace(path, LoadOptions(rate=5.0, seed=3))
    assert w.trace_format == "lengths-csv" and len(w.requests) == 30731
    assert len(w.requests) / w.duration_s == pytest.approx(5.0, rel=0.03)
    assert any("no timestamps" in m for m in w.warnings)
    p, o = _lengths(w)
    assert np.median(p) == 1730 and np.median(o) == 415


def test_servegen_client_file_follows_window_rates(data_file) -> None:
    path = data_file("servegen/language/m-large/chunk-61-trace.csv")
    w = load_trace(path, LoadOptions(rate_scale=0.01, duration_s=1800, seed=1))
    # Windows 0-2 have 87.2, 93.6, 101.5 req/s -> 0.01 scale: about 0.94 req/s.
    expected = (87.20333 + 93.57667 + 101.52) * 600 * 0.01
    assert len(w.requests) == pytest.approx(expected, rel=0.1)
    assert w.tenants == ["client-61"]
    assert max(r.arrival_time for r in w.requests) < 1800


def test_servegen_directory_loads_busiest_clients_as_tenants(data_file) -> None:
    path = data_file("servegen/language/m-large")
    w = load_trace(path, LoadOptions(rate_scale=0.005, num_tenants=3, duration_s=600))
    assert w.trace_format == "servegen"
    assert 1 <= len(w.tenants) <= 3
    stats = trace_stats(w)
    assert stats.num_requests == len(w.requests)


def test_servegen_without_dataset_uses_pooled_lengths(data_file) -> None:
    path = data_file("servegen/language/m-large/chunk-142-trace.csv")
    w = load_trace(path, LoadOptions(rate_scale=0.01, duration_s=600))
    assert any("pooled" in m for m in w.warnings)


@pytest.mark.parametrize(
    ("rel", "fmt"),
    [
        ("azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "azure"),
        ("mooncake/conversation_trace.jsonl", "mooncake"),
        ("etalon_processed_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv", "lengths-csv"),
        ("servegen/reason/deepseek-r1/chunk-0-trace.csv", "servegen"),
    ],
)
def test_detection_on_real_files(rel: str, fmt: str, data_file) -> None:
    assert detect_format(data_file(rel)).name == fmt


def test_load_workload_resolves_real_file_with_options(data_file) -> None:
    path = data_file("azure_llm_2023/AzureLLMInferenceTrace_conv.csv")
    w = load_workload(f"{path}?tenants=round-robin:3", duration_s=120, rate_scale=2.0)
    assert w.is_synthetic_tenants and "round-robin" in (w.tenant_assignment or "")
    assert sorted(w.tenants) == ["tenant-1", "tenant-2", "tenant-3"]
    assert max(r.arrival_time for r in w.requests) < 120
    # rate_scale 2 compresses time: about 2 x 5.53 req/s.
    assert len(w.requests) / 120 == pytest.approx(11.06, rel=0.25)
