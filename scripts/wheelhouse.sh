#!/usr/bin/env bash
# Builds a wheelhouse: one directory of wheels from which scripts/demo.sh and
# scripts/test.sh set up their virtual environments with no package index at all
# (DP_MODELS_WHEELHOUSE=DIR, scripts/_venv.sh). Run it on a connected machine like the
# target (same OS, CPU architecture and Python X.Y: wheels are built for this one), then
# copy DIR across. Usage:
#   scripts/wheelhouse.sh [-o DIR] [--check] [EXTRAS]
#     EXTRAS   the extras of dp-models to cover, comma separated: onnx (the default: what
#              the demo installs), test (all scripts/test.sh installs, .venv-triton's
#              server included: about 3.7 GB), or any others of pyproject.toml
#     -o DIR   where (default: wheelhouse); a directory this script did not make is refused
#     --check  only say whether DIR is up to date (exit status 1 when not); never uses pip
#   PYTHON=python3.X scripts/wheelhouse.sh ...   for another Python than python3
# What it holds: every dependency of .[EXTRAS] as a wheel, at the pins of
# constraints/ci.txt (sdists are built into wheels here), the build backend of
# pyproject.toml and what it needs for an editable install, laion-clap (--no-deps) when the
# extras include it, and for `test` the wheels of scripts/triton_env.sh. Before it is
# declared done, pip resolves every install of the scripts against DIR alone (--no-index,
# no pip configuration): a wheelhouse that would fail on the air-gapped side fails here.
# Idempotent: a stamp (DIR/.dp_models_wheelhouse) keyed on the dependencies, the pins, the
# extras, this script and the Python makes a rerun that has nothing to do instant.
# With DP_MODELS_WHEELHOUSE set, it builds DIR from that wheelhouse instead of the index.
# Progress goes to stderr; the wheels of DIR, one a line, to stdout.
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "$0")/_venv.sh"

out=wheelhouse
check=0
extras=onnx
while [ "$#" -gt 0 ]; do
  case $1 in
    -o)
      [ "$#" -ge 2 ] || { echo "wheelhouse.sh: -o needs a directory" >&2; exit 2; }
      out=$2
      shift 2
      ;;
    --check) check=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "wheelhouse.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) extras=$1; shift ;;
  esac
done
out=$(realpath -m -- "$out")
cd "$(dirname "$0")/.."

py=${PYTHON:-python3}
# pyproject.toml is read with tomllib; Python 3.10 has none, pip carries one
TOML='try:
    import tomllib
except ImportError:
    from pip._vendor import tomli as tomllib'
STAMP_NAME=.dp_models_wheelhouse
triton_requirements=""
if [[ ",$extras," == *",test,"* ]]; then
  triton_requirements=$(scripts/triton_env.sh --requirements)
fi

# The key: what decides the wheelhouse's contents. Line 2 of the stamp says it in words.
key=$(EXTRAS=$extras TRITON=$triton_requirements "$py" -c "$TOML"'
import hashlib, json, os, sys, sysconfig
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)
deps = {
    "build-system": project["build-system"],
    "dependencies": project["project"].get("dependencies", []),
    "optional-dependencies": project["project"].get("optional-dependencies", {}),
}
h = hashlib.sha256(json.dumps(deps, sort_keys=True).encode())
for name in ("constraints/ci.txt", "scripts/wheelhouse.sh"):
    with open(name, "rb") as f:
        h.update(f.read())
v = sys.version_info
tag = f"{sys.implementation.name}-{v[0]}.{v[1]} {sysconfig.get_platform()}"
extras = os.environ["EXTRAS"]
h.update("\n".join([extras, os.environ["TRITON"], tag]).encode())
print(h.hexdigest())
print(f"extras {extras}, for {tag}")')
what=$(sed -n 2p <<<"$key")
key=$(sed -n 1p <<<"$key")

list_wheels() {
  find "$out" -maxdepth 1 -name '*.whl' -printf '%f\n' | sort
  echo "==> $out: $(find "$out" -maxdepth 1 -name '*.whl' | wc -l) wheels," \
    "$(du -sh "$out" | cut -f1), $what" >&2
}

if [ -f "$out/$STAMP_NAME" ] && [ "$(sed -n 1p "$out/$STAMP_NAME")" = "$key" ]; then
  echo "==> wheelhouse $out is up to date" >&2
  list_wheels
  exit 0
fi
if [ "$check" = 1 ]; then
  echo "wheelhouse.sh: $out is missing or out of date for $what; build it with:" \
    "scripts/wheelhouse.sh -o $out $extras" >&2
  exit 1
fi
if [ -e "$out" ] && [ ! -f "$out/$STAMP_NAME" ] && [ -n "$(ls -A "$out")" ]; then
  echo "wheelhouse.sh: $out is not a wheelhouse this script made; choose another -o" >&2
  exit 1
fi

# Built beside DIR and renamed into place when complete: an interrupted build leaves DIR as
# it was. A throwaway venv runs pip: the one of the Python the wheels are for.
stage="$out.partial"
work=$(mktemp -d)
trap 'rm -rf "$work" "$stage"' EXIT
rm -rf "$stage"
mkdir -p "$stage"
echo "==> building wheelhouse $out ($what)" >&2
"$py" -m venv "$work/venv"
vpy=$work/venv/bin/python

from=()
if [ -n "${DP_MODELS_WHEELHOUSE:-}" ]; then
  echo "==> from wheelhouse $DP_MODELS_WHEELHOUSE (no index)" >&2
  from=(--no-index --find-links "$DP_MODELS_WHEELHOUSE")
fi
wheel() {
  echo "==> pip wheel $*" >&2
  "$vpy" -m pip wheel --quiet --disable-pip-version-check ${from[@]+"${from[@]}"} \
    --wheel-dir "$stage" "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; } >&2
}

wheel -c constraints/ci.txt ".[$extras]"
rm -f "$stage"/dp_models-*.whl # the scripts install this checkout itself (-e .)
if needs_laion_clap "$extras"; then
  wheel --no-deps -c constraints/ci.txt laion-clap
fi
# The build backend, then what it asks for to build an editable install (PEP 660), asked of
# the backend itself
mapfile -t build_requires < <("$vpy" -c "$TOML"'
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))')
wheel -c constraints/ci.txt "${build_requires[@]}"
"$vpy" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$stage" \
  "${build_requires[@]}" 2>&1 | { grep -v "is ignored: it is neither" || true; } >&2
mapfile -t editable_requires < <("$vpy" -c "$TOML"'
import importlib
with open("pyproject.toml", "rb") as f:
    name = tomllib.load(f)["build-system"]["build-backend"]
module, _, attr = name.partition(":")
backend = importlib.import_module(module)
for part in filter(None, attr.split(".")):
    backend = getattr(backend, part)
hook = getattr(backend, "get_requires_for_build_editable", None)
print("\n".join(hook() if hook else []))')
if [ "${#editable_requires[@]}" -gt 0 ]; then
  wheel -c constraints/ci.txt "${editable_requires[@]}"
fi
while read -ra reqs; do
  [ "${#reqs[@]}" -eq 0 ] || wheel "${reqs[@]}"
done <<<"$triton_requirements"

# The proof: each install of the scripts resolves from DIR alone (no index, and none of
# this machine's pip configuration: its find-links and indexes would hide a missing wheel).
offline() {
  (
    while read -r var; do unset "$var"; done < <(compgen -e | grep '^PIP_' || true)
    export PIP_CONFIG_FILE=/dev/null
    "$vpy" -m pip install --quiet --disable-pip-version-check --dry-run --no-index \
      --find-links "$stage" "$@"
  ) >&2
}
echo "==> checking that every install resolves from the wheelhouse alone" >&2
offline -e ".[$extras]" -c constraints/ci.txt
if needs_laion_clap "$extras"; then
  offline --no-deps -c constraints/ci.txt laion-clap
fi
while read -ra reqs; do
  [ "${#reqs[@]}" -eq 0 ] || offline "${reqs[@]}"
done <<<"$triton_requirements"

printf '%s\n%s\n' "$key" "$what" >"$stage/$STAMP_NAME"
rm -rf "$out"
mv "$stage" "$out"
list_wheels
