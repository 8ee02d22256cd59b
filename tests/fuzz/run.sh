#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets with clang, ASan and UBSan, and runs them.
#
#   tests/fuzz/run.sh TARGET SECONDS [libFuzzer flags...]
#   tests/fuzz/run.sh all SECONDS            # each target in turn, SECONDS each
#
# TARGET: recorder | register | record_reader | digest | image_reader. Environment:
#   ROLAYER_FUZZ_BUILD  build directory   (default ${TMPDIR:-/tmp}/rolayer-fuzz-build)
#   ROLAYER_FUZZ_WORK   working corpora, artifacts and logs (default <build>/work)
#   ROLAYER_FUZZ_JOBS   libFuzzer -jobs/-workers for one target (default 1)
#
# Each run starts from the checked-in corpus (tests/fuzz/corpus/TARGET, read only) plus the
# working corpus of earlier runs (<work>/TARGET/corpus, where new inputs go). Crashes, leaks,
# timeouts and out-of-memory inputs land in <work>/TARGET/artifacts/. At the end it prints,
# per target: executions, exec/s, coverage (edges) and features, corpus size, and findings.
# A finding makes the script exit 1: minimise it (fuzz_TARGET -minimize_crash=1 ...), add it
# to tests/fuzz/regressions/TARGET/, and fix the bug.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
targets_all=(recorder register record_reader digest image_reader)

if [[ $# -lt 2 ]]; then
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
what=$1
seconds=$2
shift 2
if [[ $what == all ]]; then
  targets=("${targets_all[@]}")
else
  case " ${targets_all[*]} " in
    *" $what "*) targets=("$what") ;;
    *) echo "unknown target '$what' (one of: ${targets_all[*]} all)" >&2; exit 2 ;;
  esac
fi

build=${ROLAYER_FUZZ_BUILD:-${TMPDIR:-/tmp}/rolayer-fuzz-build}
work=${ROLAYER_FUZZ_WORK:-$build/work}
jobs=${ROLAYER_FUZZ_JOBS:-1}

command -v clang++ >/dev/null || { echo "clang++ is needed (apt-get install -y clang)" >&2; exit 1; }
probe=$(mktemp -d)
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long){return 0;}\n' > "$probe/p.cpp"
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" 2>/dev/null; then
  rm -rf "$probe"
  echo "clang cannot link -fsanitize=fuzzer: apt-get install -y libclang-rt-14-dev (or the runtime of your clang)" >&2
  exit 1
fi
rm -rf "$probe"

# One configure/build at a time (several run.sh may share the build directory).
mkdir -p "$build"
exec 9>"$build/.run-sh.lock"
flock 9
if [[ ! -f $build/build.ninja && ! -f $build/Makefile ]]; then
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S "$src" -B "$build" "${gen[@]}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link" \
    -DROLAYER_SANITIZE=address,undefined \
    -DROLAYER_BUILD_FUZZ=ON -DROLAYER_BUILD_TESTS=ON -DROLAYER_BUILD_TOOLS=ON >/dev/null
fi
if ! cmake --build "$build" --target "${targets[@]/#/fuzz_}" >"$build/build.log" 2>&1; then
  grep -E 'error|FAILED' "$build/build.log" | head -20 >&2
  echo "build failed: $build/build.log" >&2
  exit 1
fi
flock -u 9

# Per-target libFuzzer flags: input sizes that keep each target fast and still reach its code.
flags_for() {
  case $1 in
    recorder) echo "-max_len=65536 -timeout=30" ;;
    register) echo "-max_len=65536 -timeout=60" ;;
    record_reader) echo "-max_len=65536 -timeout=30" ;;
    digest) echo "-max_len=1024 -timeout=10" ;;
    image_reader) echo "-max_len=65536 -timeout=10" ;;
  esac
}

status=0
summary=()
for t in "${targets[@]}"; do
  dir=$work/$t
  mkdir -p "$dir/corpus" "$dir/artifacts"
  # TMPDIR of the target (the register target's stores live there): tmpfs when there is one,
  # so that the stores' fsync/syncfs cost nothing; removed afterwards.
  if [[ -d /dev/shm && -w /dev/shm ]]; then tmp=$(mktemp -d /dev/shm/rolayer-fuzz-XXXXXX); else tmp=$(mktemp -d "$dir/tmp-XXXXXX"); fi
  log=$dir/run-$(date +%Y%m%d-%H%M%S).log
  before=$(find "$dir/artifacts" -type f | wc -l)
  echo "== $t: ${seconds}s, log $log"
  par=()
  ((jobs > 1)) && par=(-jobs="$jobs" -workers="$jobs")  # fuzz-<n>.log files go to $dir
  # shellcheck disable=SC2046
  (cd "$dir" && TMPDIR=$tmp ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$build/tests/fuzz/fuzz_$t" $(flags_for "$t") -max_total_time="$seconds" -print_final_stats=1 \
      "${par[@]}" -artifact_prefix="$dir/artifacts/" "$@" \
      "$dir/corpus" "$here/corpus/$t" >"$log" 2>&1) || true
  ((jobs > 1)) && cat "$dir"/fuzz-*.log >>"$log" && rm -f "$dir"/fuzz-*.log
  rm -rf "${tmp:?}"
  after=$(find "$dir/artifacts" -type f | wc -l)
  found=$((after - before))
  # The last status line ("#N DONE cov: C ft: F corp: K/S ... exec/s: E") and the final stats.
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{s+=$2} END {print s+0}')
  rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{s+=$2} END {print s+0}')
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
  line="$t: execs=$execs exec/s=$rate cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} findings=$found"
  summary+=("$line")
  echo "$line"
  if ((found > 0)); then
    status=1
    grep -E 'ERROR: |SUMMARY: |invariant broken|Test unit written' "$log" | head -20 || true
    find "$dir/artifacts" -type f -newer "$dir/corpus" | head -20 || true
  fi
done
echo
echo "== summary (build $build, work $work)"
printf '%s\n' "${summary[@]}"
exit $status
