#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The folders of lib/ are layers: each may include its own headers and those of the folders
# before it in this order, never one after it (README.md, "What is where"):
#   core < digest < tar < record < drivers < store < dockerdb < mount < capi
# `tools/layering.sh` lists every #include "folder/..." in lib/ that reaches up (exit 1 if any;
# ctest runs this as lib_layering).
set -euo pipefail
cd "$(dirname "$0")/.."
order=(core digest tar record drivers store dockerdb mount capi)
declare -A rank
for i in "${!order[@]}"; do rank[${order[$i]}]=$i; done
bad=0
for d in lib/*/; do
  d=${d#lib/}
  d=${d%/}
  if [ -z "${rank[$d]+x}" ]; then
    echo "lib/$d: a folder without a place in the layer order of tools/layering.sh"
    bad=1
    continue
  fi
  while IFS=: read -r file line inc; do
    to=$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$inc")
    [ -n "${rank[$to]+x}" ] || continue
    if [ "${rank[$to]}" -gt "${rank[$d]}" ]; then
      echo "$file:$line: lib/$d includes lib/$to, a folder above it"
      bad=1
    fi
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include "[a-z_]+/' "lib/$d" || true)
done
exit $bad
