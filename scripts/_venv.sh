# Sourced by the scripts here: makes .venv (once) with the given extras installed.
# Usage: ensure_venv EXTRAS   e.g. ensure_venv test
ensure_venv() {
  local extras=$1
  local py=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $($py --version)"
    "$py" -m venv .venv
  fi
  echo "==> installing dp-models[$extras] (pins: constraints/ci.txt)"
  # This machine's pip config lists extra local indexes; their "is ignored" notes are noise.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -e ".[$extras]" -c constraints/ci.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
  if [[ ",$extras," == *",test,"* || ",$extras," == *",clap,"* || ",$extras," == *",all,"* ]]; then
    # laion-clap pins numpy<2; its real needs come with the clap extra (pyproject.toml)
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
      -c constraints/ci.txt laion-clap 2>&1 | { grep -v "is ignored: it is neither" || true; }
  fi
}
