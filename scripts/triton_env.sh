#!/usr/bin/env bash
# Makes .venv-triton: a small virtual environment holding a real Triton Inference Server
# (the `tritonserver` binary and its Python backend, shipped in the nvidia-pytriton wheel)
# for the Triton tests, and prints the path of the tritonserver binary.
#
# It is separate from .venv because Triton's Python-backend stub runs the `python` first
# on PATH and needs numpy<2 there (with numpy 2 a model loads but returns empty tensors),
# while the project runs on numpy 2. Only the binary is used, never pytriton's Python API,
# so the wheel is installed without its dependencies, next to numpy<2.
#
# Idempotent and fast once done (a stamp file records what was installed). Usage:
#   scripts/triton_env.sh            # prints e.g. /repo/.venv-triton/.../bin/tritonserver
#   PYTHON=python3.11 scripts/triton_env.sh
#   DP_MODELS_WHEELHOUSE=DIR scripts/triton_env.sh   # no index: the wheels of DIR only
#   scripts/triton_env.sh --requirements   # what it installs: pip's arguments, one run a line
# The tests find the server there, or at $DP_MODELS_TRITONSERVER.
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "$0")/_venv.sh"
cd "$(dirname "$0")/.."

PYTRITON_VERSION=0.7.0
NUMPY_SPEC="numpy>=1.21,<2"
# ONNX Runtime for the Python-backend model that serves an exported model.onnx in the tests
# (this server has no onnxruntime backend): the last release built for numpy 1 and 2 alike.
ORT_SPEC="onnxruntime==1.19.2"
VENV=.venv-triton
STAMP="$VENV/.dp_models_triton_env"
WANT="nvidia-pytriton==$PYTRITON_VERSION $NUMPY_SPEC $ORT_SPEC"
# Two pip runs: the server's wheel without its dependencies, then ONNX Runtime with its own
# (scripts/wheelhouse.sh reads them from --requirements for a wheelhouse of `test`)
SERVER_ARGS=(--no-deps "nvidia-pytriton==$PYTRITON_VERSION" "$NUMPY_SPEC")
ORT_ARGS=("$ORT_SPEC" "$NUMPY_SPEC")
if [ "${1:-}" = "--requirements" ]; then
  echo "${SERVER_ARGS[*]}"
  echo "${ORT_ARGS[*]}"
  exit 0
fi

if [ -f "$STAMP" ] && [ "$(head -n 1 "$STAMP")" = "$WANT" ]; then
  server=$(sed -n 2p "$STAMP")
  if [ -x "$server" ]; then
    echo "$server"
    exit 0
  fi
fi

py=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV with $($py --version)" >&2
  "$py" -m venv "$VENV"
fi
pip_install "$VENV/bin/python" \
  "nvidia-pytriton==$PYTRITON_VERSION (tritonserver) and numpy<2 into $VENV" test \
  "${SERVER_ARGS[@]}" >&2
# (pip then notes that pytriton's own dependencies are missing: they are, on purpose)
pip_install "$VENV/bin/python" "$ORT_SPEC into $VENV" test "${ORT_ARGS[@]}" \
  | { grep -v -e "which is not installed" -e "dependency resolver does not currently" || true; } >&2

# The wheel carries one Python-backend stub per Python version; the backend looks for it
# next to libtriton_python.so, and it must match the venv's Python (the one it runs).
# (located without importing pytriton, whose Python API needs the skipped dependencies)
pkg=$("$VENV/bin/python" -c \
  'import importlib.util as u; print(u.find_spec("pytriton").submodule_search_locations[0])')
pyver=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
tritondir="$pkg/tritonserver"
stub="$tritondir/python_backend_stubs/$pyver/triton_python_backend_stub"
if [ ! -f "$stub" ]; then
  echo "triton_env.sh: the wheel has no Python-backend stub for Python $pyver" \
    "(it has: $(ls "$tritondir/python_backend_stubs" | tr '\n' ' ')); rerun with PYTHON=python3.X" >&2
  exit 1
fi
cp "$stub" "$tritondir/backends/python/triton_python_backend_stub"
chmod +x "$tritondir/backends/python/triton_python_backend_stub" "$tritondir/bin/tritonserver"

server="$tritondir/bin/tritonserver"
printf '%s\n%s\n' "$WANT" "$server" > "$STAMP"
echo "$server"
