#!/bin/sh
# Checks that librolayer exports exactly the functions its public headers declare.
set -eu
lib=$1
inc=$2
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sed 's/@.*//' | sort -u)
declared=$(cat "$inc"/rolayer.h "$inc"/rolayer/*.h | grep -v '^#' | grep -o 'ROLAYER_API[^(]*(' | sed -E 's/.*[ *]([a-z_0-9]+)\($/\1/' | sort -u)
bad=0
for s in $exported; do
  case "$s" in rolayer_*) ;; *) echo "exported symbol outside the rolayer_ prefix: $s"; bad=1;; esac
  echo "$declared" | grep -qx "$s" || { echo "exported but not declared in a header: $s"; bad=1; }
done
for s in $declared; do
  echo "$exported" | grep -qx "$s" || { echo "declared but not exported: $s"; bad=1; }
done
n=$(echo "$exported" | wc -l)
[ "$bad" -eq 0 ] && echo "exported symbols OK ($n, all declared in include/)"
exit $bad
