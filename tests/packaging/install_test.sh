#!/usr/bin/env bash
# Installs this build into a scratch prefix, then builds and runs the
# README's quick start against it twice: as a CMake project declared with
# project(app CXX) and find_package(revkv), and with pkg-config. Also checks
# the installed CLI and that the library reports the headers' version.
#   install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$1"
src="$2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

cmake --install "$build" --prefix "$prefix" >"$work/install.log"
for f in include/revkv/revkv.h include/revkv/version.h lib/cmake/revkv/revkvConfig.cmake \
         lib/pkgconfig/revkv.pc bin/revkv; do
  [[ -e "$prefix/$f" || -e "$prefix/${f/lib\//lib/x86_64-linux-gnu/}" ]] ||
    { echo "not installed: $f"; cat "$work/install.log"; exit 1; }
done
libdir=$(dirname "$(find "$prefix" -name 'librevkv.so' | head -1)")
[[ -n "$libdir" ]] || { echo "librevkv.so is not installed"; exit 1; }
export LD_LIBRARY_PATH="$libdir"

# The installed library names no build-tree path and keeps its
# dependencies private.
if readelf -d "$libdir/librevkv.so" | grep -q "$build"; then
  echo "librevkv.so names the build tree"; exit 1
fi

# 1. CMake: a C++-only project, find_package(revkv).
cmake -S "$src/tests/packaging/consumer" -B "$work/cmake-app" -DCMAKE_PREFIX_PATH="$prefix" \
  -DQUICKSTART="$src/examples/quickstart.cc" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; exit 1; }
cmake --build "$work/cmake-app" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
out=$("$work/cmake-app/app" "$work/store-cmake")
echo "$out"
grep -q "^job.42 -> " <<<"$out" || { echo "the CMake-built quick start printed no write"; exit 1; }
# The library the program runs with is this version.
version=$(sed -n 's/^#define REVKV_VERSION "\(.*\)"$/\1/p' "$src/include/revkv/version.h")
grep -qx "revkv $version" <<<"$out" || { echo "the program did not report revkv $version"; exit 1; }

# 2. pkg-config.
export PKG_CONFIG_PATH="$libdir/pkgconfig"
[[ "$(pkg-config --modversion revkv)" == "$version" ]] || { echo "revkv.pc has another version"; exit 1; }
# shellcheck disable=SC2046
g++ -std=c++20 -o "$work/pc-app" "$src/examples/quickstart.cc" $(pkg-config --cflags --libs revkv)
out=$("$work/pc-app" "$work/store-pc")
echo "$out"
grep -q "^job.42 -> " <<<"$out" || { echo "the pkg-config-built quick start printed no write"; exit 1; }

# 3. The installed CLI reads what the program wrote.
got=$("$prefix/bin/revkv" --db "$work/store-pc" --bucket jobs get job.42)
[[ "$got" == queued ]] || { echo "the installed CLI read '$got', not 'queued'"; exit 1; }
echo "install test: ok"
