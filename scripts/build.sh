#!/usr/bin/env bash
# Bootstraps, configures and builds revkv (Release, warnings as errors) into
# ./build. Extra arguments go to cmake's configure step.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release -DREVKV_WERROR=ON "$@"
cmake --build "$ROOT/build" -j "$(nproc)"
