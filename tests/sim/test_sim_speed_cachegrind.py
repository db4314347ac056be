"""benchmarks/sim_speed.py --cachegrind: reading valgrind's summary and the cycle estimate (issue 13)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The summary valgrind 3.19 printed for a 100k-request Equinox run (cache and branch simulation).
SUMMARY = """\
==2036== Cachegrind, a cache and branch-prediction profiler
--2036-- warning: L3 cache found, using its data for the LL simulation.
policy equinox | workload sharegpt-like-100000, 100000 requests | llama-2-7b@a100-80gb, cost model vidur | engine vllm
==2036== I   refs:      41,788,224,164
==2036== I1  misses:       770,635,415
==2036== LLi misses:            36,863
==2036== I1  miss rate:           1.84%
==2036== LLi miss rate:           0.00%
==2036==
==2036== D   refs:      19,230,048,075  (13,068,639,243 rd   + 6,161,408,832 wr)
==2036== D1  misses:       399,936,200  (   352,374,482 rd   +    47,561,718 wr)
==2036== LLd misses:         1,128,325  (       179,182 rd   +       949,143 wr)
==2036== D1  miss rate:            2.1% (           2.7%     +           0.8%  )
==2036== LLd miss rate:            0.0% (           0.0%     +           0.0%  )
==2036==
==2036== LL refs:        1,170,571,615  ( 1,123,009,897 rd   +    47,561,718 wr)
==2036== LL misses:          1,165,188  (       216,045 rd   +       949,143 wr)
==2036== LL miss rate:             0.0% (           0.0%     +           0.0%  )
==2036==
==2036== Branches:       7,535,045,007  ( 6,184,882,721 cond + 1,350,162,286 ind)
==2036== Mispredicts:      947,890,200  (   506,233,521 cond +   441,656,679 ind)
==2036== Mispred rate:            12.6% (           8.2%     +          32.7%   )
"""


@pytest.fixture(scope="module")
def sim_speed():
    spec = importlib.util.spec_from_file_location("sim_speed", ROOT / "benchmarks" / "sim_speed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_summary_totals_are_read_not_the_rates_or_the_split(sim_speed):
    counts = sim_speed.parse_cachegrind(SUMMARY)
    assert counts == {
        "ir": 41_788_224_164, "i1_miss": 770_635_415, "lli_miss": 36_863, "d_refs": 19_230_048_075,
        "d1_miss": 399_936_200, "lld_miss": 1_128_325, "branches": 7_535_045_007, "mispredicts": 947_890_200,
    }


def test_a_summary_without_the_cache_simulation_is_refused_by_name(sim_speed):
    only_instructions = "\n".join(line for line in SUMMARY.splitlines() if "I   refs" in line)
    with pytest.raises(ValueError, match="d1_miss"):
        sim_speed.parse_cachegrind(only_instructions)


def test_estimated_cycles_weigh_l1_hits_once_ll_hits_five_times_misses_thirty_five(sim_speed):
    c = {"ir": 1000, "d_refs": 500, "i1_miss": 40, "d1_miss": 60, "lli_miss": 3, "lld_miss": 7,
         "branches": 0, "mispredicts": 10**6}
    # 1,500 accesses: 1,400 L1 hits, 90 LL hits, 10 LL misses; mispredictions are not counted
    assert sim_speed.estimated_cycles(c) == 1400 + 5 * 90 + 35 * 10


def test_a_slower_miss_weighs_only_the_misses(sim_speed):
    c = {"ir": 1000, "d_refs": 500, "i1_miss": 40, "d1_miss": 60, "lli_miss": 3, "lld_miss": 7,
         "branches": 0, "mispredicts": 0}
    assert sim_speed.estimated_cycles(c, 100) == 1400 + 5 * 90 + 100 * 10
    assert sim_speed.estimated_cycles(c, 100) - sim_speed.estimated_cycles(c) == 65 * 10


def test_the_last_level_size_goes_to_valgrind_and_must_be_a_power_of_two(sim_speed):
    assert sim_speed.cachegrind_caches()[-1] == "--LL=1048576,8,64"
    assert sim_speed.cachegrind_caches(256)[-1] == "--LL=262144,8,64"
    assert sim_speed.ll_size("256") == 256
    for bad in ("768", "32", "abc", "-256"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"power of two|whole number"):
            sim_speed.ll_size(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="at least"):
        sim_speed.miss_cost("3")
