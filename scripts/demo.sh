#!/usr/bin/env bash
# The demo: set up .venv, check the example catalog against MODELS_ROOT.example/, then
# load its model through the ModelManager, run it, write and verify a stamped artifact.
# Without a package index: DP_MODELS_WHEELHOUSE=DIR bash scripts/demo.sh, DIR made by
# scripts/wheelhouse.sh (docs/deploying.md, "Installing without the package index").
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "$0")/_venv.sh" # before the cd: a relative $DP_MODELS_WHEELHOUSE is the caller's
cd "$(dirname "$0")/.."
ensure_venv onnx

catalog=examples/spec_catalog
root=MODELS_ROOT.example

echo "==> dp-models validate --catalog $catalog"
.venv/bin/dp-models validate --catalog "$catalog"
echo "==> dp-models doctor --catalog $catalog --root $root"
.venv/bin/dp-models doctor --catalog "$catalog" --root "$root"
echo "==> dp-models lock --check --catalog $catalog --root $root"
.venv/bin/dp-models lock --check --catalog "$catalog" --root "$root"
echo "==> python examples/demo.py"
.venv/bin/python examples/demo.py
echo "==> dp-models verify-artifact demo_out/predictions.json --catalog $catalog"
.venv/bin/dp-models verify-artifact demo_out/predictions.json --catalog "$catalog"
