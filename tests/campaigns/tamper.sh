#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The long tampering campaign (docs/reliability.md): per built-in driver, TRIALS random changes
# to a copy of a store (payload bytes, truncation, removal, modes, owners, times, record bytes,
# DiffIDs, the driver's own files), each followed by a verified export of the changed layer;
# every bit of every fidelity record flipped one at a time; the damaged-store tests.
#   tests/campaigns/tamper.sh [TRIALS per driver, default 5000] [SEED, default: the time]
. "$(dirname "$0")/common.sh"
trials=${1:-5000}
seed=${2:-$(date +%s)}
echo "tamper campaign: $trials random changes per driver, seed $seed"
ROLAYER_TAMPER_TRIALS=$trials ROLAYER_TAMPER_SEED=$seed ROLAYER_TAMPER_ALL_RECORDS=1 \
  run "${TMPDIR:-/tmp}/rolayer-tamper-$seed.log" --gtest_filter='Drivers/TamperTest.*:Drivers/DamagedStoreTest.*'
