#!/usr/bin/env bash
# Makes sure a real OCI registry is installed for the tests of dp_models._oci
# (tests/test_oci.py starts its own on loopback ports): Debian's `docker-registry`
# package (CNCF distribution), and `htpasswd` (apache2-utils) for the tests' password
# file. Installs what is missing with apt-get (through sudo unless run as root); quiet
# and fast when both are there. Prints the registry binary's path. Usage:
#   scripts/registry_env.sh            # prints e.g. /usr/bin/docker-registry
# Note: on a machine with systemd, Debian's package also enables a registry service on
# port 5000; the tests never use it (`systemctl disable --now docker-registry` stops it).
set -euo pipefail

missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)

if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "registry_env.sh: ${missing[*]} missing and no apt-get here: install CNCF" \
      "distribution's registry (as docker-registry on PATH) and htpasswd yourself" >&2
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
  fi
  echo "==> installing ${missing[*]} (apt-get)" >&2
  ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v docker-registry
