#!/usr/bin/env bash
# Builds the C examples against an installed librolayer (PREFIX), both with pkg-config and with
# find_package(rolayer), and runs them: register, list, export byte for byte.
set -euo pipefail
prefix=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
pass=0; fail=0
check() { if "$@"; then pass=$((pass+1)); else echo "FAILED: $*"; fail=$((fail+1)); fi; }

make -s -C "$here/examples" -f "$here/examples/Makefile" OUT="$work" >/dev/null
mkdir -p "$work/pc" && mv "$here"/examples/rolayer-{register,export,list} "$work/pc/"
cmake -S "$here/examples" -B "$work/cm" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cm" >/dev/null

tar_in="$here/../../tests/vectors/data/base.tar"
child_in="$here/../../tests/vectors/data/child.tar"
for kind in pc cm; do
  bin="$work/$kind"
  store="$work/store-$kind"
  id=$("$bin/rolayer-register" "$store" "$tar_in")
  check test "$id" = "sha256:333bdc78b487fb5c4604b365c0fb2e45ce0ec82cba106e87afe88a1fe889b234"
  child=$("$bin/rolayer-register" "$store" "$child_in" "$id")
  check test "$child" = "sha256:9d85e3c58ded2988dece667df08fa20670125c65a9cf1ca08f7388f9b77174b9"
  "$bin/rolayer-export" "$store" "$child" > "$work/out.tar"
  check cmp -s "$work/out.tar" "$child_in"
  check test "$("$bin/rolayer-list" "$store" | wc -l)" -eq 2
  if "$bin/rolayer-export" "$store" "sha256:$(printf '0%.0s' $(seq 64))" >/dev/null 2>"$work/err"; then
    check false
  else
    check grep -q "layer does not exist" "$work/err"
  fi
done
echo "c examples: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
