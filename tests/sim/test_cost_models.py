"""Cost models: monotone, positive, deterministic, TP-aware, clear errors, and close to measured data."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equinox.errors import ConfigError
from equinox.sim.cost_model import COST_MODELS
from equinox.sim.cost_models import build_cost_model, covered_deployments, default_cost_model
from equinox.sim.hardware import GPUS, MODELS, Deployment, make_deployment
from equinox.types import BatchShape

NAMES = ("roofline", "vidur", "splitwise", "distserve", "vtc-a10g")
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _data_dir() -> Path | None:
    from equinox.sim.cost_models.sources import shared_data_dir

    return shared_data_dir(SHARED)


def _claimed() -> list[tuple[str, tuple[str, str, int]]]:
    return [(name, dep) for name in NAMES[1:] for dep in covered_deployments(name)]


def _all_roofline_deployments() -> list[Deployment]:
    deps = []
    for gpu in GPUS.names():
        for model in MODELS.names():
            for tp in (1, 2, 4, 8):
                try:
                    deps.append(make_deployment(gpu, model, tp))
                    break  # smallest TP that fits
                except ConfigError:
                    continue
    return deps


def _models() -> list[tuple[str, Deployment]]:
    out = [(name, make_deployment(gpu, model, tp)) for name, (gpu, model, tp) in _claimed()]
    return out + [("roofline", d) for d in _all_roofline_deployments()]


MODEL_CASES = _models()
IDS = [f"{n}:{d.name}" for n, d in MODEL_CASES]

batches = st.builds(
    lambda pt, ps, extra, ds, ctx: BatchShape(pt, min(ps, pt), pt * (pt + 1) // 2 + extra * pt, ds, ds * ctx),
    st.integers(0, 4096),
    st.integers(1, 16),
    st.integers(0, 4096),
    st.integers(0, 256),
    st.integers(1, 4096),
)


def test_registry_names() -> None:
    importlib.import_module("equinox.sim.cost_models")
    assert set(NAMES) <= set(COST_MODELS.names())


@pytest.mark.parametrize(("name", "dep"), MODEL_CASES, ids=IDS)
def test_builds_and_positive(name: str, dep: Deployment) -> None:
    model = build_cost_model(name, dep)
    assert model.name == name
    assert model.iteration_time(BatchShape()) == 0.0
    assert model.iteration_time(BatchShape(num_decode_seqs=1, decode_context_tokens=100)) > 0
    assert model.iteration_time(BatchShape(512, 1, 512 * 513 // 2)) > 0


@pytest.mark.parametrize(("name", "dep"), MODEL_CASES, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(batch=batches, more=st.integers(1, 512))
def test_monotone(name: str, dep: Deployment, batch: BatchShape, more: int) -> None:
    model = build_cost_model(name, dep)
    t = model.iteration_time(batch)
    assert t >= 0
    assert t == model.iteration_time(batch)  # deterministic
    b = batch
    pt, ps, pairs = b.num_prefill_tokens, b.num_prefill_seqs, b.prefill_attention_pairs
    ds, ctx = b.num_decode_seqs, b.decode_context_tokens
    bigger = [
        BatchShape(pt + more, max(ps, 1), pairs + more * (more + 1) // 2, ds, ctx),  # more prefill tokens
        BatchShape(pt, ps, pairs, ds + 1, ctx + more),  # one more decode sequence
        BatchShape(pt, ps, pairs, ds, ctx + (more if ds else 0)),  # longer decode context
        BatchShape(pt, ps, pairs + (more if pt else 0), ds, ctx),  # prefill chunk after more cached tokens
    ]
    for other in bigger:
        assert model.iteration_time(other) >= t


@pytest.mark.parametrize("name", ["roofline", "vidur"])
def test_tensor_parallel_reduces_time_for_big_models(name: str) -> None:
    batch = BatchShape(2048, 4, 4 * 512 * 513 // 2, 32, 32 * 1024)
    times = [
        build_cost_model(name, make_deployment("a100-80gb", "llama-2-70b", tp)).iteration_time(batch)
        for tp in (2, 4, 8)
    ]
    assert times[0] > times[1] > times[2]


def test_unknown_deployment_is_a_clear_config_error() -> None:
    dep = make_deployment("l4", "llama-2-7b")
    for name in NAMES[1:]:
        with pytest.raises(ConfigError, match=r"no measured data for llama-2-7b@l4.*roofline"):
            build_cost_model(name, dep)


def test_default_prefers_fitted_then_roofline() -> None:
    assert default_cost_model(make_deployment("a100-80gb", "llama-2-70b", 4)).name == "vidur"
    assert default_cost_model(make_deployment("a100-80gb", "opt-13b", 1)).name == "distserve"
    assert default_cost_model(make_deployment("a10g", "llama-7b")).name == "vtc-a10g"
    assert default_cost_model(make_deployment("h200", "llama-3-8b")).name == "roofline"


def test_roofline_order_of_magnitude() -> None:
    """7B decode step on an A100 is memory bound: weights / bandwidth plus overhead, ~10-20 ms."""
    model = build_cost_model("roofline", make_deployment("a100-80gb", "llama-2-7b"))
    t = model.iteration_time(BatchShape(num_decode_seqs=1, decode_context_tokens=512))
    assert 0.008 < t < 0.02


def test_shipped_coefficients_load_without_shared_data(tmp_path: Path) -> None:
    """A fresh interpreter with no ../shared (and a bogus data path) still builds every model."""
    import subprocess

    code = (
        "from equinox.sim.cost_models import build_cost_model; from equinox.sim.hardware import make_deployment as m;"
        "from equinox.types import BatchShape as B;"
        "ds=[('roofline',m('h200','llama-3-8b')),('vidur',m('h100-80gb','llama-2-7b')),"
        "('splitwise',m('a100-80gb','llama-2-70b',4)),('distserve',m('a100-80gb','opt-66b',4)),('vtc-a10g',m('a10g','llama-7b'))];"
        "print(all(build_cost_model(n,d).iteration_time(B(100,1,5050,4,400))>0 for n,d in ds))"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src, "EQUINOX_SHARED_DATA": str(tmp_path / "absent")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize(
    ("name", "loader", "threshold"),
    [("splitwise", "load_splitwise", 15.0), ("vtc-a10g", "load_vtc_a10g", 10.0)],
)
def test_fitted_in_sample_mape(name: str, loader: str, threshold: float) -> None:
    data = _data_dir()
    if data is None:
        pytest.skip(f"measured data not found at {SHARED} (set EQUINOX_SHARED_DATA)")
    from equinox.sim.cost_models import fitting, sources
    from equinox.sim.cost_models.fitted import profile_entry

    for dep, obs in getattr(sources, loader)(data).items():
        d = make_deployment(*dep)
        kept = fitting.without_artefacts(obs, profile_entry(name, d))
        assert len(kept) >= len(obs) - 2
        mape, _ = fitting.model_errors(build_cost_model(name, d).iteration_time, kept)
        assert mape < threshold, (dep, mape)


def test_vidur_table_matches_profiles() -> None:
    data = _data_dir()
    if data is None:
        pytest.skip(f"measured data not found at {SHARED} (set EQUINOX_SHARED_DATA)")
    from equinox.sim.cost_models import fitting, sources

    vidur = sources.load_vidur_linear(data)
    assert vidur
    for dep, points in vidur.items():
        model = build_cost_model("vidur", make_deployment(*dep))
        # The table adds all-reduce time, so it never undercuts the linear ops themselves by much.
        mape, _ = fitting.ape_stats([(model.linear_time_s(n), t) for n, t in points if dep[2] == 1])  # type: ignore[attr-defined]
        if dep[2] == 1:
            assert mape < 5.0, (dep, mape)


def test_distserve_encodes_published_coefficients() -> None:
    model = build_cost_model("distserve", make_deployment("a100-80gb", "opt-13b", 1))
    # Published: prefill_ms = 18.1025 + 0.101912 * 512 + 7.12226e-06 * 512^2 for one 512-token prompt.
    expected = (18.10254647486372 + 0.1019122572698738 * 512 + 7.122264314252114e-06 * 512**2) / 1e3
    assert model.iteration_time(BatchShape(512, 1, 512 * 513 // 2)) == pytest.approx(expected)


def test_decode_time_shortcut_equals_iteration_time_bit_for_bit() -> None:
    checked = 0
    for name, (gpu, model, tp) in _claimed():
        cost = build_cost_model(name, make_deployment(gpu, model, tp))
        decode_time = getattr(cost, "decode_time", None)
        if decode_time is None:
            continue  # the simulator then times decode batches through iteration_time
        checked += 1
        for seqs in (1, 2, 7, 64, 255, 256, 1000):
            for ctx in (seqs, 1000 * seqs + 17, 4096 * seqs):
                assert decode_time(seqs, ctx) == cost.iteration_time(BatchShape(0, 0, 0, seqs, ctx)), (name, gpu)
        assert decode_time(0, 0) == cost.iteration_time(BatchShape()) == 0.0
    assert checked >= 10


@pytest.mark.parametrize(("name", "dep"), MODEL_CASES, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(batch=batches, contexts=st.lists(st.integers(0, 1 << 20), min_size=1, max_size=4))
def test_context_terms_give_iteration_time_bit_for_bit(name: str, dep: Deployment, batch: BatchShape,
                                                        contexts: list[int]) -> None:
    """Where a model offers `context_terms`, head + per_context_token * c + tail is its iteration time, exactly,
    at any decode context c (adaptive batching predicts its search's points that way)."""
    model = build_cost_model(name, dep)
    terms = getattr(model, "context_terms", None)
    if terms is None:
        return
    b = batch
    head, per_token, tail = terms(b.num_prefill_tokens, b.num_prefill_seqs, b.prefill_attention_pairs,
                                  b.num_decode_seqs)
    for ctx in [b.decode_context_tokens, *contexts]:
        shape = b._replace(decode_context_tokens=ctx)
        assert head + per_token * ctx + tail == model.iteration_time(shape), (shape, head, per_token, tail)


def test_both_built_in_forms_offer_context_terms() -> None:
    dep = make_deployment("a100-80gb", "llama-2-7b")
    for name in ("roofline", "vidur"):
        assert callable(getattr(build_cost_model(name, dep), "context_terms", None)), name


def test_the_token_table_remembered_by_count_is_the_table_itself() -> None:
    """TableCostModel reads L(n) from a memo below LINEAR_MEMO_SIZE: the first and every later read give the
    table's own value, above the memo too."""
    from equinox.sim.cost_models.fitted import LINEAR_MEMO_SIZE, TableCostModel

    model = build_cost_model("vidur", make_deployment("a100-80gb", "llama-2-7b"))
    assert isinstance(model, TableCostModel)
    table = model._linear
    for n in (1, 2, 3, 17, 4095, 4096, 4097, 1000, 3, LINEAR_MEMO_SIZE - 1, LINEAR_MEMO_SIZE, 3 * LINEAR_MEMO_SIZE,
              17, LINEAR_MEMO_SIZE - 1):
        for _ in range(2):
            assert model._linear_of(n) == table(n), n
            batch = BatchShape(n, 1, n * (n + 1) // 2, 0, 0)
            expected = (model._overhead_s + table(n) + model._pair_s * batch.prefill_attention_pairs
                        + model._ctx_s * 0 + model._seq_s * 1)
            assert model.iteration_time(batch) == expected, n
    assert len(model._linear_memo) <= LINEAR_MEMO_SIZE
