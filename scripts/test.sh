#!/usr/bin/env bash
# Bootstraps, builds and runs every test with ctest. Exits non-zero on any
# failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/build.sh"
cd "$ROOT/build"
ctest --output-on-failure -j "$(nproc)" --timeout 300
