#!/usr/bin/env bash
# Installs the Debian 12 packages revkv builds, tests and benchmarks with.
# Idempotent: when every package is already installed it changes nothing.
# Also places the nats-server test matrix in .deps/ (see below).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config python3 python3-matplotlib
  librocksdb-dev
  libnats-dev
  libcapnp-dev capnproto
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev
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

# The nats-server matrix (DESIGN §5), each a static binary that runs on
# Debian 12, in the git-ignored .deps/ folder:
#   .deps/nats-server-newest/  the newest of Debian's newest suite (unstable),
#                              the default server of every NATS test;
#   .deps/nats-server-2.10/    trixie's 2.10.x, for the cluster, CAS, Create,
#                              lock and fault suites;
#   /usr/sbin/nats-server      Debian 12's own 2.9.10 (the package above), for
#                              the version guard only.
# The packages come without touching the system's apt sources: a private
# sources list that names the archive this machine's own apt sources use,
# private state directories, `apt-get download`, then `dpkg -x`.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.deps"

# The lowest version each fetched server may have. The newest suite moves
# on; a package below its floor (or a binary that does not run here) fails
# the bootstrap loudly rather than testing on the wrong server.
NEWEST_FLOOR="2.12.0"   # atomic batches, the newest feature revkv gates
TRIXIE_FLOOR="2.10.0"
TRIXIE_BELOW="2.11.0"   # the 2.10 leg of the matrix must stay a 2.10

version_of() { "$1" --version 2>/dev/null | sed -n 's/^nats-server: v\([0-9][0-9.]*\).*/\1/p'; }
at_least() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }
# Whether .deps/$1 holds a server that runs and is within [$2, $3).
server_ok() {
  local bin="$DEPS/$1/usr/sbin/nats-server" v
  [[ -x "$bin" ]] || return 1
  v="$(version_of "$bin")"
  [[ -n "$v" ]] && at_least "$v" "$2" && { [[ -z "${3:-}" ]] || ! at_least "$v" "$3"; }
}

# The Debian archive this machine's apt uses for its own release (not the
# security archive), as apt itself reads its sources; no index needs to
# have been downloaded for that.
archive_uri() {
  local codename
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  apt-get indextargets --no-release-info --format '$(SITE) $(RELEASE) $(COMPONENT)' 2>/dev/null |
    awk -v c="$codename" '$2 == c && $3 == "main" { print $1; exit }'
}

# fetch DIR SUITE FLOOR [BELOW]
fetch_server() {
  local dir="$1" suite="$2" floor="$3" below="${4:-}"
  if server_ok "$dir" "$floor" "$below"; then
    echo "bootstrap: nats-server $(version_of "$DEPS/$dir/usr/sbin/nats-server") present in .deps/$dir"
    return 0
  fi
  local uri
  uri="$(archive_uri)"
  if [[ -z "$uri" ]]; then
    echo "bootstrap: cannot tell which Debian archive this machine's apt sources use" >&2
    exit 1
  fi
  echo "bootstrap: fetching nats-server from Debian $suite into .deps/$dir"
  local work
  work="$(mktemp -d)"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" \
    > "$work/sources.list"
  local apt_private=(-q -o "Dir::Etc::SourceList=$work/sources.list"
                     -o "Dir::Etc::SourceParts=/dev/null" -o "APT::Sandbox::User=root"
                     -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache")
  $SUDO apt-get "${apt_private[@]}" update >/dev/null
  (cd "$work" && $SUDO apt-get "${apt_private[@]}" download nats-server >/dev/null 2>&1)
  rm -rf "${DEPS:?}/$dir"
  mkdir -p "$DEPS/$dir"
  dpkg -x "$work"/nats-server_*.deb "$DEPS/$dir"
  rm -rf "$work"
  local bin="$DEPS/$dir/usr/sbin/nats-server" v
  v="$(version_of "$bin")"
  if [[ -z "$v" ]]; then
    echo "bootstrap: the nats-server of Debian $suite does not run here" >&2
    exit 1
  fi
  if ! server_ok "$dir" "$floor" "$below"; then
    echo "bootstrap: Debian $suite ships nats-server $v; revkv tests need at least $floor${below:+ and below $below} there" >&2
    exit 1
  fi
  echo "bootstrap: nats-server $v in .deps/$dir"
}

fetch_server nats-server-newest unstable "$NEWEST_FLOOR"
fetch_server nats-server-2.10 trixie "$TRIXIE_FLOOR" "$TRIXIE_BELOW"
# The layout of earlier bootstraps.
rm -rf "${DEPS:?}/nats-server"
