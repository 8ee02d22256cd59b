#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The ABI check (docs/abi.md): compares the built librolayer with the committed baseline
# abi/librolayer.abi (libabigail's abidw, types from the public headers only). Any difference,
# an addition included, fails until it is announced: regenerate the baseline in the same commit
#   cmake --build <build> --target rolayer_abi_update
# with a CHANGELOG entry (and for a break, a new 0.x minor and SONAME, docs/abi.md).
#   abi_check.sh LIB INCLUDE_DIR BASELINE [update]
set -eu
lib=$1
inc=$2
baseline=$3
mode=${4:-check}
if ! command -v abidw >/dev/null 2>&1; then
  echo "SKIP: abidw/abidiff not installed (Debian: abigail-tools)"
  exit 77
fi
if ! readelf -S "$lib" | grep -q '\.debug_info'; then
  echo "SKIP: $lib has no debug information (build with -g, e.g. RelWithDebInfo)"
  exit 77
fi
if [ "$mode" = update ]; then
  # No paths or line numbers in the baseline: it depends only on the ABI.
  abidw --headers-dir "$inc" --no-corpus-path --no-comp-dir-path --no-show-locs --drop-private-types \
    --exported-interfaces-only --no-elf-needed --type-id-style hash \
    --out-file "$baseline" "$lib"
  echo "wrote $baseline"
  exit 0
fi
rc=0
abidiff --no-show-locs --headers-dir2 "$inc" --drop-private-types --exported-interfaces-only \
  "$baseline" "$lib" || rc=$?
if [ "$rc" -ne 0 ]; then
  echo
  echo "FAIL: the ABI of $lib differs from $baseline (abidiff exit $rc: 4 = changed, 8 = incompatible)."
  echo "If the change is intended, announce it: cmake --build <build> --target rolayer_abi_update,"
  echo "commit abi/librolayer.abi with a CHANGELOG entry (docs/abi.md says when a change breaks)."
  exit 1
fi
echo "ABI matches $baseline"
