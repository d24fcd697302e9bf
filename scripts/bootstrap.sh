#!/usr/bin/env bash
# Installs the Debian 12 packages revkv builds, tests and benchmarks with.
# Idempotent: when every package is already installed it changes nothing.
# Also places nats-server 2.10+ in .deps/ (see below).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config python3 python3-matplotlib
  librocksdb-dev
  libnats-dev
  libcapnp-dev capnproto
  libgtest-dev libgmock-dev libbenchmark-dev
  nats-server openssl
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
if ((${#missing[@]} == 0)); then
  echo "bootstrap: all packages present"
else
  echo "bootstrap: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# nats-server >= 2.10 for the replication tests (DESIGN §5): Debian 12 ships
# 2.9.10, which lets two CAS writers both win on clustered buckets. Take the
# trixie package without touching the system's apt sources: a private
# sources list and state directories, `apt-get download`, then `dpkg -x` into
# the git-ignored .deps/ folder.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.deps"
NATS_SERVER="$DEPS/nats-server/usr/sbin/nats-server"
if [[ -x "$NATS_SERVER" ]] && "$NATS_SERVER" --version | grep -qE 'v2\.(1[0-9]|[2-9][0-9])\.'; then
  echo "bootstrap: $("$NATS_SERVER" --version) present in .deps/"
  exit 0
fi
echo "bootstrap: fetching nats-server 2.10+ from Debian trixie into .deps/"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
  > "$work/sources.list"
apt_private=(-q -o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
             -o "APT::Sandbox::User=root"
             -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache")
$SUDO apt-get "${apt_private[@]}" update >/dev/null
(cd "$work" && $SUDO apt-get "${apt_private[@]}" download nats-server >/dev/null 2>&1)
rm -rf "$DEPS/nats-server"
mkdir -p "$DEPS/nats-server"
dpkg -x "$work"/nats-server_*.deb "$DEPS/nats-server"
"$NATS_SERVER" --version
