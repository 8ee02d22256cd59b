#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The long crash campaign (docs/reliability.md): per built-in driver, TRIALS random trials on one
# store — register or release, killed with SIGKILL at a random fault point (random N), after a
# random number of input bytes, or at a random moment — each followed by a reopen and the full
# consistency check; then the fixed trials of every other CrashTest.
#   tests/campaigns/crash.sh [TRIALS per driver, default 1000] [SEED, default: the time]
. "$(dirname "$0")/common.sh"
trials=${1:-1000}
seed=${2:-$(date +%s)}
echo "crash campaign: $trials random trials per driver, seed $seed"
ROLAYER_CRASH_TRIALS=$trials ROLAYER_CRASH_SEED=$seed \
  run "${TMPDIR:-/tmp}/rolayer-crash-$seed.log" --gtest_filter='Drivers/CrashTest.*:ReliabilityHarness.*'
