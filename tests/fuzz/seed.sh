#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Rebuilds the checked-in corpora (tests/fuzz/corpus/<target>/) from the seeds:
#  - recorder, register: the public tar corpus (../shared/corpus, gzip/bzip2 files
#    decompressed) and the conformance vectors (tests/vectors/data); files over 64 KiB are
#    left out (they replay in corpus_store_test; the fuzzers run with -max_len=65536);
#  - record_reader: the fidelity records of those tars (fuzz_record_seeds);
#  - digest: a few digest strings.
# plus whatever the working corpora of earlier run.sh runs hold (<work>/<target>/corpus).
# Each corpus is then minimised for edge coverage (libFuzzer -merge=1 -use_counters=0; the
# merge takes the smallest inputs first) over the candidates up to a per-target size cap, into
# a fresh directory that replaces the checked-in one. The caps keep each checked-in corpus to a
# few hundred KiB (measured: recorder 16 KiB -> ~375 KB for 99.6% of the edges of all inputs,
# register 8 KiB -> ~350 KB for 98%). Uses the same build as run.sh (ROLAYER_FUZZ_BUILD).
#
#   tests/fuzz/seed.sh [TARGET...]     (default: all four)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${ROLAYER_FUZZ_BUILD:-${TMPDIR:-/tmp}/rolayer-fuzz-build}
work=${ROLAYER_FUZZ_WORK:-$build/work}
shared=${ROLAYER_CORPUS:-$src/../shared/corpus}
targets=("$@")
((${#targets[@]})) || targets=(recorder register record_reader digest)

"$here/run.sh" digest 1 >/dev/null  # configures and builds the fuzz build if needed
cmake --build "$build" --target "${targets[@]/#/fuzz_}" fuzz_record_seeds >"$build/build.log" 2>&1 ||
  { tail -20 "$build/build.log" >&2; exit 1; }

seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
mkdir -p "$seeds/tar" "$seeds/rec" "$seeds/digest"
if [[ -d $shared ]]; then
  for f in "$shared"/*/*; do
    [[ -f $f ]] || continue
    b=$(basename "$(dirname "$f")")_$(basename "$f")
    case $(head -c3 "$f" | od -An -tx1 | tr -d ' \n') in
      1f8b*) gzip -dc "$f" >"$seeds/tar/${b%.gz}" ;;
      425a68) bzip2 -dc "$f" >"$seeds/tar/${b%.bz2}" ;;
      *) cp "$f" "$seeds/tar/$b" ;;
    esac
  done
fi
for f in "$src"/tests/vectors/data/*; do cp "$f" "$seeds/tar/vectors_$(basename "$f")"; done
find "$seeds/tar" -type f -size +64k -delete
"$build/tests/fuzz/fuzz_record_seeds" "$seeds/rec" "$seeds"/tar/* 2>/dev/null
e=sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef
printf '%s' "$e" >"$seeds/digest/sha256"
printf '%s\n%s' "$e" "$e" >"$seeds/digest/pair"
printf 'sha384:%096d' 0 >"$seeds/digest/sha384"
printf 'sha512:%0128d' 0 >"$seeds/digest/sha512"
printf 'SHA256:%064d' 0 >"$seeds/digest/upper"
printf 'sha256:%063dG' 0 >"$seeds/digest/badhex"
printf 'md5:d41d8cd98f00b204e9800998ecf8427e' >"$seeds/digest/md5"

for t in "${targets[@]}"; do
  case $t in
    recorder) in=$seeds/tar cap=16384 ;;
    register) in=$seeds/tar cap=8192 ;;
    record_reader) in=$seeds/rec cap=65536 ;;
    digest) in=$seeds/digest cap=1024 ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  new=$(mktemp -d)
  cand=$(mktemp -d)
  mkdir -p "$work/$t/corpus"
  n=0
  while IFS= read -r -d '' f; do
    cp "$f" "$cand/$n-$(basename "$f")"
    n=$((n + 1))
  done < <(find "$here/corpus/$t" "$in" "$work/$t/corpus" -type f -size -$((cap + 1))c -print0)
  tmp=$(mktemp -d)
  (cd "$work/$t" && TMPDIR=$tmp ASAN_OPTIONS=detect_leaks=0 \
    "$build/tests/fuzz/fuzz_$t" -merge=1 -use_counters=0 -max_len=$cap "$new" "$cand" \
    >"$work/$t/merge.log" 2>&1) || true
  rm -rf "${tmp:?}" "${cand:?}"
  rm -rf "${here:?}/corpus/$t"
  mkdir -p "$here/corpus/$t"
  cp "$new"/* "$here/corpus/$t/" 2>/dev/null || true
  rm -rf "$new"
  echo "$t: $(find "$here/corpus/$t" -type f | wc -l) files, $(cat "$here/corpus/$t"/* | wc -c) bytes ($(grep -E 'MERGE-OUTER: [0-9]+ new files' "$work/$t/merge.log" | tail -1))"
done
