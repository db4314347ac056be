"""The lmsys-chat preset: LMSYS-Chat-1M lengths as derived statistics, its output tail checked, Poisson arrivals."""

from __future__ import annotations

import numpy as np
import pytest

from equinox.workload import load_workload
from equinox.workload.presets import preset_stats


def test_lmsys_chat_statistics_match_the_published_sample() -> None:
    st = preset_stats("lmsys-chat")
    lens = st["lengths"]
    # ../shared/data/SOURCES.md: prompt mean/median/p90 62/17/177, output 162/117/389 (1,024 requests).
    assert lens["prompt_summary"]["n"] == 1024
    assert lens["prompt_summary"]["mean"] == pytest.approx(62, abs=1)
    assert lens["prompt_summary"]["p50"] == pytest.approx(17, abs=1)
    assert lens["output_summary"]["mean"] == pytest.approx(162, abs=1)
    assert lens["output_summary"]["p90"] == pytest.approx(389, abs=2)
    assert "citation" in st["source"] and "Zheng" in st["source"]["citation"]


def test_lmsys_chat_output_tail_is_checked_against_the_85k_outputs() -> None:
    check = preset_stats("lmsys-chat")["output_tail_check"]
    assert check["reference_n"] == 85482 and check["pairs_n"] == 1024
    for pairs, reference in check["exceedance_pairs_vs_reference"].values():
        assert abs(pairs - reference) < 0.07  # the tail agrees within a few points at 200..500 tokens


def test_lmsys_chat_is_poisson_at_its_stated_rate_and_needs_no_shared_data() -> None:
    st = preset_stats("lmsys-chat")
    assert st["arrivals"]["cv"] == 1.0 and "Poisson" in st["arrivals"]["note"]
    w = load_workload("lmsys-chat", seed=2, duration_s=1000.0, num_tenants=1)
    assert len(w.requests) / w.duration_s == pytest.approx(st["arrivals"]["rate_req_per_s"], rel=0.1)
    out = np.array([r.num_output_tokens for r in w.requests])
    assert np.quantile(out, 0.9) == pytest.approx(389, rel=0.1)
    assert (out > 512).mean() < 0.05
