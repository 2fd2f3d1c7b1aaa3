#!/usr/bin/env bash
# The demo: set up .venv, then check the example catalog against MODELS_ROOT.example/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv onnx

catalog=examples/spec_catalog
root=MODELS_ROOT.example

echo "==> dp-models validate --catalog $catalog"
.venv/bin/dp-models validate --catalog "$catalog"
echo "==> dp-models list --catalog $catalog"
.venv/bin/dp-models list --catalog "$catalog"
echo "==> dp-models doctor --catalog $catalog --root $root"
.venv/bin/dp-models doctor --catalog "$catalog" --root "$root"
echo "==> dp-models lock --check --catalog $catalog --root $root"
.venv/bin/dp-models lock --check --catalog "$catalog" --root "$root"
echo "==> dp-models digest $root/demo/tiny_color_classifier"
.venv/bin/dp-models digest "$root/demo/tiny_color_classifier" "$root/demo/tiny_color_classifier/model.onnx"
echo "==> the packaged catalog: $(.venv/bin/dp-models validate)"
