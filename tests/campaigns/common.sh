# SPDX-License-Identifier: Apache-2.0
# Shared by the campaign scripts: builds the C++ test binary with the fault points
# (-DROLAYER_FAULT_HOOKS=ON) unless ROLAYER_BUILD_DIR already holds one and ROLAYER_REBUILD=0.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${ROLAYER_BUILD_DIR:-${TMPDIR:-/tmp}/rolayer-campaign-build}
if [ "${ROLAYER_REBUILD:-1}" = 1 ] || [ ! -x "$build/tests/rolayer_cpp_tests" ]; then
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DROLAYER_FAULT_HOOKS=ON >/dev/null
  cmake --build "$build" --target rolayer_cpp_tests >/dev/null
fi
bin=$build/tests/rolayer_cpp_tests
# Prints the tests' summary lines ("[ crash    ]", "[ tamper   ]", "[ faults   ]") and failures;
# the whole output goes to $log.
run() {
  log=$1; shift
  echo "log: $log"
  status=0
  "$bin" "$@" >"$log" 2>&1 || status=$?
  grep -E '^\[ (crash|tamper|faults) +\]|^\[  (FAILED|PASSED|SKIPPED) |^ *[0-9]+ FAILED' "$log" | sed 's/^/  /' || true
  return $status
}
