#!/usr/bin/env bash
# Installs the Debian 12 packages revkv builds, tests and benchmarks with.
# Idempotent: when every package is already installed it changes nothing.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config python3 python3-matplotlib
  librocksdb-dev
  libnats-dev
  libcapnp-dev capnproto
  libgtest-dev libgmock-dev libbenchmark-dev
  nats-server
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "bootstrap: all packages present"
  exit 0
fi

echo "bootstrap: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
