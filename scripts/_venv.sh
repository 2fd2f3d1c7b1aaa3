# shellcheck shell=bash
# Sourced by the scripts here: makes .venv (once) with the given extras installed, and
# runs every pip install of the scripts (pip_install).
# Usage: ensure_venv EXTRAS   e.g. ensure_venv test
#
# DP_MODELS_WHEELHOUSE=DIR: every pip install takes its wheels from DIR alone
# (`--no-index --find-links DIR`), for a machine that no package index reaches;
# scripts/wheelhouse.sh builds DIR on a connected machine (docs/deploying.md). The scripts
# source this file before they change directory, so a relative DIR is the caller's.
if [ -n "${DP_MODELS_WHEELHOUSE:-}" ]; then
  DP_MODELS_WHEELHOUSE=$(realpath -m -- "$DP_MODELS_WHEELHOUSE")
  export DP_MODELS_WHEELHOUSE
fi

# laion-clap pins numpy<2: the extras that include clap install it apart, --no-deps.
# Usage: needs_laion_clap EXTRAS
needs_laion_clap() {
  [[ ",$1," == *",test,"* || ",$1," == *",clap,"* || ",$1," == *",all,"* ]]
}

# pip install, from $DP_MODELS_WHEELHOUSE only when it is set; pip's output on stdout.
# Usage: pip_install PYTHON WHAT EXTRAS PIP_ARGS...   (WHAT and EXTRAS: for the messages)
pip_install() {
  local py=$1 what=$2 extras=$3
  shift 3
  local from=() wheelhouse=${DP_MODELS_WHEELHOUSE:-}
  if [ -n "$wheelhouse" ]; then
    if [ ! -d "$wheelhouse" ]; then
      echo "DP_MODELS_WHEELHOUSE=$wheelhouse: no such directory" \
        "(build one with: scripts/wheelhouse.sh -o $wheelhouse $extras)" >&2
      return 1
    fi
    echo "==> installing $what from wheelhouse $wheelhouse (no index)" >&2
    from=(--no-index --find-links "$wheelhouse")
  else
    echo "==> installing $what" >&2
  fi
  # pip's full log: --quiet keeps the console short but drops the lines that say which
  # requirement could not be met; on failure they are shown from here. ($PIP_LOG, when
  # set, is kept: pip appends to it.)
  local log=${PIP_LOG:-} rc=0 seen=0
  if [ -z "$log" ]; then
    log=$(mktemp)
  elif [ -f "$log" ]; then
    seen=$(wc -l <"$log")
  fi
  # This machine's pip config lists extra local indexes; their "is ignored" notes are noise.
  "$py" -m pip install --quiet --disable-pip-version-check --log "$log" \
    ${from[@]+"${from[@]}"} "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; } || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -n "+$((seen + 1))" "$log" | sed -E 's/^[0-9T:,.-]+ //' \
      | sed -n '/^The conflict is caused by:/,/^$/p' >&2
    if [ -n "$wheelhouse" ]; then
      local built="an unknown set: no stamp" stamp=$wheelhouse/.dp_models_wheelhouse
      [ -f "$stamp" ] && built=$(sed -n 2p "$stamp")
      echo "hint: the wheelhouse lacks a wheel pip needs (it was made for $built);" \
        "rebuild it on a connected machine with the same OS, CPU and Python:" \
        "scripts/wheelhouse.sh -o $wheelhouse $extras" >&2
    fi
  fi
  [ -n "${PIP_LOG:-}" ] || rm -f "$log"
  return "$rc"
}

ensure_venv() {
  local extras=$1
  local py=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $($py --version)"
    "$py" -m venv .venv
  fi
  pip_install .venv/bin/python "dp-models[$extras] (pins: constraints/ci.txt)" "$extras" \
    -e ".[$extras]" -c constraints/ci.txt
  if needs_laion_clap "$extras"; then
    # its real needs come with the clap extra (pyproject.toml)
    pip_install .venv/bin/python "laion-clap --no-deps" "$extras" \
      --no-deps -c constraints/ci.txt laion-clap
  fi
}
