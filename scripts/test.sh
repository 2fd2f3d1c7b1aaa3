#!/usr/bin/env bash
# The whole check, as CI runs it: set up .venv, then ruff, mypy (strict) and pytest.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k digest -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv test
echo "==> Triton server (.venv-triton)"
scripts/triton_env.sh >/dev/null
echo "==> OCI registry (Debian's docker-registry)"
scripts/registry_env.sh >/dev/null

echo "==> ruff"
.venv/bin/ruff check src tests benchmarks examples scripts
.venv/bin/ruff format --check src tests benchmarks examples scripts
echo "==> mypy (strict)"
.venv/bin/mypy
echo "==> generated files"
.venv/bin/python -m dp_models._docgen
echo "==> pytest"
.venv/bin/python -m pytest "$@"
