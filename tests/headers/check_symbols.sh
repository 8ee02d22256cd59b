#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Checks that librolayer exports exactly the functions its public headers declare: every
# defined dynamic symbol, whatever its kind (weak W/V, GNU unique u, ifunc i, data D/B/R, …),
# is a rolayer_* function (T) declared in include/ and carried by the version node; nothing of
# a statically linked dependency (SQLite, zstd, xxHash) or of the C++ runtime leaks out.
set -eu
lib=$1
inc=$2
all=$(nm -D --defined-only "$lib")
exported=$(echo "$all" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | sort -u)
declared=$(cat "$inc"/rolayer.h "$inc"/rolayer/*.h | grep -v '^#' | grep -o 'ROLAYER_API[^(]*(' | sed -E 's/.*[ *]([a-z_0-9]+)\($/\1/' | sort -u)
bad=0
# Kinds: only plain global functions. Absolute symbols (A) are the version nodes: ROLAYER_* only.
kinds=$(echo "$all" | awk '$2 != "T" && $2 != "A" {print $2 " " $3}')
if [ -n "$kinds" ]; then
  echo "$kinds" | sed 's/^/exported symbol that is not a plain function (nm kind first): /'
  bad=1
fi
nodes=$(echo "$all" | awk '$2 == "A" {print $3}' | sed 's/@.*//' | sort -u)
for n in $nodes; do
  case "$n" in ROLAYER_[0-9]*) ;; *) echo "unexpected version node / absolute symbol: $n"; bad=1;; esac
done
# readelf's view too (nm may fold kinds): no WEAK, UNIQUE or IFUNC among the defined symbols.
odd=$(readelf --dyn-syms -W "$lib" | awk '$7 != "UND" && NR > 3 && ($4 == "IFUNC" || $5 == "WEAK" || $5 == "UNIQUE") {print $4 " " $5 " " $8}')
if [ -n "$odd" ]; then
  echo "$odd" | sed 's/^/readelf: weak, unique or ifunc symbol exported: /'
  bad=1
fi
# Every rolayer_ symbol carries a version (name@@ROLAYER_x.y).
unversioned=$(nm -D --defined-only --with-symbol-versions "$lib" 2>/dev/null | awk '$2 == "T" && $3 !~ /@@?ROLAYER_/ {print $3}')
if [ -n "$unversioned" ]; then
  echo "$unversioned" | sed 's/^/exported without the ROLAYER_ version node: /'
  bad=1
fi
for s in $exported; do
  case "$s" in rolayer_*) ;; *) echo "exported symbol outside the rolayer_ prefix: $s"; bad=1;; esac
  echo "$declared" | grep -qx "$s" || { echo "exported but not declared in a header: $s"; bad=1; }
done
for s in $declared; do
  echo "$exported" | grep -qx "$s" || { echo "declared but not exported: $s"; bad=1; }
done
n=$(echo "$exported" | wc -l)
[ "$bad" -eq 0 ] && echo "exported symbols OK ($n functions, all declared in include/, versioned $nodes)"
exit $bad
