#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The interposition test (docs/abi.md, "Dependencies"): runs tests/abi/interpose.c, whose
# executable exports its own sqlite3_open_v2 & co., and checks with the dynamic linker's own
# report (LD_DEBUG=bindings) that librolayer binds none of SQLite's, zstd's or xxHash's symbols
# dynamically: they are linked into it and private.
set -eu
prog=$1
lib=$2
out=$(mktemp)
trap 'rm -f "$out" "$out.dbg"' EXIT
if ! LD_DEBUG=bindings LD_DEBUG_OUTPUT="$out.dbg" "$prog" >"$out" 2>&1; then
  cat "$out"
  echo "FAIL: the program failed or librolayer called the host's copy"
  exit 1
fi
cat "$out"
soname=$(basename "$lib")
# ld.so writes <file>.<pid>.
bindings=$(cat "$out.dbg".* 2>/dev/null; rm -f "$out.dbg".*)
bad=$(printf '%s\n' "$bindings" | grep "binding file [^ ]*librolayer" | grep -E "symbol \`(sqlite3_|ZSTD_|XXH)" || true)
if [ -n "$bad" ]; then
  printf '%s\n' "$bad" | head -5
  echo "FAIL: librolayer binds a dependency's symbol dynamically (interposable)"
  exit 1
fi
n=$(printf '%s\n' "$bindings" | grep -c "binding file [^ ]*librolayer" || true)
if [ "$n" -eq 0 ]; then
  echo "FAIL: LD_DEBUG=bindings reported nothing for librolayer (is ld.so's debug output off?)"
  exit 1
fi
if readelf -d "$lib" | grep NEEDED | grep -E "libsqlite3|libzstd|libxxhash"; then
  echo "FAIL: $soname still needs a shared SQLite/zstd/xxHash"
  exit 1
fi
echo "interposition OK: librolayer made $n dynamic bindings, none to SQLite, zstd or xxHash"
