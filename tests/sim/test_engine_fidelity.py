"""Engine fidelity against the VTC artifact's measured GPU runs (issue 10, item 3).

The loader finds the 38 distinct runs, the figures follow their documented definitions,
and a few replays stay inside the band measured by `benchmarks/engine_fidelity.py`
(the simulator is deterministic: the band is not a timing).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from equinox.calibration.fidelity import Row, figures, row_service_matrix
from equinox.calibration.replay import ReplayOptions, replay, replay_config
from equinox.calibration.vtc_measured import load_measured_runs, read_measured_run
from equinox.errors import WorkloadError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _runs_dir() -> Path:
    from equinox.sim.cost_models.sources import shared_data_dir

    data = shared_data_dir(SHARED)
    if data is None or not (data / "vtc_artifact_measured").is_dir():
        pytest.skip(f"measured runs not found under {SHARED} (set EQUINOX_SHARED_DATA)")
    return data / "vtc_artifact_measured"


def test_loader_finds_38_distinct_runs_and_names_the_repeats() -> None:
    runs = load_measured_runs(_runs_dir())
    assert len(runs) == 38
    repeats = {r.name: r.duplicates for r in runs if r.duplicates}
    assert repeats == {
        f"sec6.4_35000_VTC-{n}__overload-s4": (f"ablation_80GB_llama13B_35000__overload_s4_{n}",)
        for n in (256, 512, 768)
    }
    by_name = {r.name: r for r in runs}
    big = by_name["sec6.4_65000_FCFS-256__overload-s4"]
    assert big.platform.label == "llama-2-13b@a100-80gb/65000"
    assert big.platform.batch_max_tokens == 10833 and big.scheduler.policy == "fcfs"
    small = by_name["VTC_pred_50_profile__overload-multi"]
    assert small.platform.label == "llama-2-7b@a10g/10000" and small.platform.batch_max_tokens == 3072
    assert small.scheduler.policy == "vtc-predict"
    expected = {"output_predictor": "oracle", "predict_range": 0.5, "cost_function": "profile"}
    assert dict(small.scheduler.params) == expected
    weighted = by_name["WVTC__overload-weighted"].scheduler.tenant_weights
    assert sorted(weighted.values()) == [1.0, 2.0, 3.0, 4.0] and weighted["dummy-lora-7b-rank-8-3"] == 4.0


def test_workload_is_the_exact_trace() -> None:
    run = read_measured_run(_runs_dir() / "VTC__overload-multi.jsonl")
    wl = run.to_workload()
    assert wl.num_requests == len(run.requests) == 1512 and len(wl.tenants) == 8
    assert [s.arrival_time for s in wl.requests] == sorted(r.arrival_time for r in run.requests)
    assert all(s.max_tokens == s.num_output_tokens for s in wl.requests)  # max_new_tokens = output, ignore_eos
    assert sum(s.num_prompt_tokens for s in wl.requests) == sum(r.num_prompt_tokens for r in run.requests)
    config = replay_config(run)
    assert (config.engine_mode, config.kv_capacity_tokens, config.block_size) == ("slora", 10000, 1)
    assert (config.max_num_batched_tokens, config.max_num_seqs) == (3072, 1000)


def test_malformed_file_names_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "X__y.jsonl"
    header = {"scheduler_dir": "VTC", "suite": "y", "config": {}, "summary": {}}
    row = {"client": "c", "arrival_s": 1.0, "prompt_tokens": 4, "output_tokens": 2, "ttft_s": 0.1, "e2e_s": 0.5}
    bad.write_text(json.dumps(header) + "\n" + json.dumps(row) + "\n" + json.dumps({**row, "ttft_s": "x"}) + "\n")
    with pytest.raises(WorkloadError, match=r"X__y.jsonl:3: field 'ttft_s'"):
        read_measured_run(bad)
    header["scheduler_dir"] = "MDRR"
    bad.write_text(json.dumps(header) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(WorkloadError, match="unknown artifact scheduler 'MDRR'"):
        read_measured_run(bad)


def test_service_curve_from_request_instants() -> None:
    # Prompt counts at the first token, output evenly from first token to finish, demand at arrival.
    rows = [Row("a", 0.5, 2.0, 6.0, 10, 4), Row("b", 0.2, 1.5, 1.5, 3, 1)]
    m = row_service_matrix(rows, {"a": 2.0})
    a, b = m.tenants.index("a"), m.tenants.index("b")
    assert m.service[a, 2] == pytest.approx((10 + 2 * 4 / 4) / 2)
    assert m.service[a, 3:6].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert m.service.sum() == pytest.approx((10 + 8) / 2 + 3 + 2)
    assert m.demand[a, 0] == pytest.approx(9.0) and m.demand[b, 0] == pytest.approx(5.0)
    f = figures(rows, {"a": 2.0}, arrival_end_time=0.5)
    assert f.mean_ttft_s == pytest.approx((1.5 + 1.3) / 2)
    assert f.throughput_tokens_per_s == pytest.approx(18 / 6.0)
    assert math.isnan(f.service_diff_max)  # no 60 s window fits before the last arrival


# Band measured by `benchmarks/engine_fidelity.py` (S-LoRA's peak-KV admission, the fitted runtime
# in equinox.calibration.replay.SLORA_RUNTIME): one fit-half and one held-out A10G run, one A100 run.
BAND = 0.02  # absolute, on each relative error
EXPECTED = {  # run -> (throughput error, mean TTFT error)
    "VTC__overload": (0.002, 0.002),
    "VTC__poisson_short_long_2": (0.049, -0.063),
    "sec6.4_35000_VTC-768__overload-s4": (-0.029, 0.029),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_replay_error_stays_in_measured_band(name: str) -> None:
    run = read_measured_run(_runs_dir() / f"{name}.jsonl")
    result = replay(run, ReplayOptions())
    assert result.num_unfinished == 0
    thr, ttft = EXPECTED[name]
    c = result.comparison
    assert c.throughput_error == pytest.approx(thr, abs=BAND), f"throughput error {c.throughput_error:+.3f}"
    assert c.mean_ttft_error == pytest.approx(ttft, abs=BAND), f"mean TTFT error {c.mean_ttft_error:+.3f}"
