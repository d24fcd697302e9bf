#!/usr/bin/env bash
# Builds this build's Debian packages with CPack, lists what each holds,
# installs them with dpkg into a scratch root (never the machine's own) and
# runs the CLI from there.
#   deb_test.sh BUILD_DIR
set -euo pipefail
build="$1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out") \
  >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; exit 1; }
shopt -s nullglob
debs=("$work"/out/*.deb)
((${#debs[@]} == 3)) || { echo "expected 3 packages, got: ${debs[*]}"; cat "$work/cpack.log"; exit 1; }

# What each package must hold (a path in its file list).
declare -A want=(
  [librevkv]="/usr/lib/librevkv.so.0."
  [librevkv-dev]="/usr/include/revkv/revkv.h /usr/lib/librevkv.so /usr/lib/cmake/revkv/revkvConfig.cmake /usr/lib/pkgconfig/revkv.pc"
  [revkv]="/usr/bin/revkv"
)
for deb in "${debs[@]}"; do
  name=$(dpkg-deb -f "$deb" Package)
  echo "== $name $(dpkg-deb -f "$deb" Version): depends: $(dpkg-deb -f "$deb" Depends)"
  dpkg-deb -c "$deb" | awk '{print "   " $6}'
  key=$name
  [[ $name == librevkv[0-9]* ]] && key=librevkv
  [[ -n "${want[$key]:-}" ]] || { echo "unexpected package $name"; exit 1; }
  for path in ${want[$key]}; do
    dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\.||' | grep -q "^$path" ||
      { echo "$name lacks $path"; exit 1; }
  done
done

# Install into a scratch root with its own dpkg database.
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
dpkg --root="$root" --force-not-root --force-depends --force-script-chrootless \
  --log=/dev/null -i "${debs[@]}" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; exit 1; }
dpkg --root="$root" -l | grep -E '^ii +(librevkv|revkv)' || { echo "dpkg lists nothing"; exit 1; }
dpkg --root="$root" -L librevkv-dev | grep -q "/usr/include/revkv/version.h"
# The installed CLI runs, with the installed library beside it.
LD_LIBRARY_PATH="$root/usr/lib" "$root/usr/bin/revkv" --db "$work/store" put k v >/dev/null
[[ "$(LD_LIBRARY_PATH="$root/usr/lib" "$root/usr/bin/revkv" --db "$work/store" get k)" == v ]]
echo "deb test: ok"
