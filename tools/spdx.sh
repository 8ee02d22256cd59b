#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every source file of the project carries `SPDX-License-Identifier: Apache-2.0` in its first
# lines. `tools/spdx.sh` lists the tracked sources that lack it (exit 1 if any; ctest runs
# this); `tools/spdx.sh --fix` adds the line in the comment style of the file's language:
#   C and public headers  /* SPDX-License-Identifier: Apache-2.0 */   (C89-clean)
#   C++, Go, Rust         // SPDX-License-Identifier: Apache-2.0      (Go: then a blank line,
#                                                                      so it is no package doc)
#   shell, Python, CMake  # SPDX-License-Identifier: Apache-2.0       (after a #! line)
# Generated files (rolayer-sys's bindgen output), test data and fuzz corpora are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
fix=0
[ "${1:-}" = "--fix" ] && fix=1
tag='SPDX-License-Identifier: Apache-2.0'
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "SKIP: not a git checkout (the list of sources comes from git ls-files)"; exit 77
fi

style_of() {
  case "$1" in
    bindings/rust/rolayer-sys/src/bindings.rs) echo skip ;;
    */testdata/*|tests/fuzz/corpus/*|tests/fuzz/regressions/*|tests/vectors/data/*) echo skip ;;
    *.c|*.h) echo c ;;
    *.cpp|*.cc|*.hpp|*.inc) echo cpp ;;
    *.go) echo go ;;
    *.rs) echo cpp ;;
    *.sh|*.py|*.cmake|*/CMakeLists.txt|CMakeLists.txt|*.cmake.in|*/Makefile|Makefile|.ci/run) echo hash ;;
    *) echo skip ;;
  esac
}

missing=0
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue
  s=$(style_of "$f")
  [ "$s" = skip ] && continue
  head -n 5 "$f" | grep -q "$tag" && continue
  if [ $fix -eq 0 ]; then
    echo "missing SPDX line: $f"
    missing=$((missing + 1))
    continue
  fi
  tmp=$(mktemp)
  case "$s" in
    c) { echo "/* $tag */"; cat "$f"; } > "$tmp" ;;
    cpp) { echo "// $tag"; cat "$f"; } > "$tmp" ;;
    go) { echo "// $tag"; echo; cat "$f"; } > "$tmp" ;;
    hash)
      if head -n 1 "$f" | grep -q '^#!'; then
        { head -n 1 "$f"; echo "# $tag"; tail -n +2 "$f"; } > "$tmp"
      else
        { echo "# $tag"; cat "$f"; } > "$tmp"
      fi ;;
  esac
  chmod --reference="$f" "$tmp"
  mv "$tmp" "$f"
  echo "added: $f"
done < <(git ls-files -z)
if [ $fix -eq 0 ] && [ $missing -gt 0 ]; then
  echo "$missing source file(s) without an SPDX line; run tools/spdx.sh --fix" >&2
  exit 1
fi
exit 0
