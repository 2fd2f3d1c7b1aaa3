#!/usr/bin/env bash
# The whole check, as CI runs it: set up .venv, then ruff, mypy (strict) and pytest.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k digest -x`.
# Without a package index: DP_MODELS_WHEELHOUSE=DIR, DIR made by `scripts/wheelhouse.sh -o DIR
# test` (docs/deploying.md, "Installing without the package index").
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "$0")/_venv.sh" # before the cd: a relative $DP_MODELS_WHEELHOUSE is the caller's
cd "$(dirname "$0")/.."
ensure_venv test
echo "==> Triton server (.venv-triton)"
scripts/triton_env.sh >/dev/null
echo "==> OCI registry (Debian's docker-registry)"
scripts/registry_env.sh >/dev/null
echo "==> the demo's wheelhouse (.wheelhouse-demo, for tests/test_wheelhouse.py)"
scripts/wheelhouse.sh -o .wheelhouse-demo onnx >/dev/null

echo "==> ruff"
.venv/bin/ruff check src tests benchmarks examples scripts
.venv/bin/ruff format --check src tests benchmarks examples scripts
echo "==> mypy (strict)"
.venv/bin/mypy
echo "==> generated files"
.venv/bin/python -m dp_models._docgen
echo "==> pytest"
.venv/bin/python -m pytest "$@"
