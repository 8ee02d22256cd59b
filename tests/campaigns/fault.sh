#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The long I/O-fault campaign (docs/reliability.md), for SEEDS different random stores:
# ENOSPC/EIO injected at every store fault point and at every hit N = 1, 2, ... (up to DEPTH) of
# each file-system fault point (fs.write, fs.read, fs.fsync, fs.mkdir, fs.rename, fs.remove)
# in register, release and export; a store another user cannot write; a read-only mount; a
# full tmpfs at LEVELS fill levels.
#   tests/campaigns/fault.sh [SEEDS, default 10] [LEVELS, default 300] [DEPTH, default 200]
. "$(dirname "$0")/common.sh"
seeds=${1:-10}
levels=${2:-300}
depth=${3:-200}
echo "fault campaign: $seeds seeds, N up to $depth at each fs point, $levels fill levels"
status=0
seed=1
while [ "$seed" -le "$seeds" ]; do
  echo "seed $seed"
  ROLAYER_FAULT_SEED=$seed ROLAYER_FAULT_DEPTH=$depth ROLAYER_ENOSPC_LEVELS=$levels \
    run "${TMPDIR:-/tmp}/rolayer-fault-seed$seed.log" --gtest_filter='Drivers/FaultTest.*' || status=1
  seed=$((seed + 1))
done
exit $status
