// SPDX-License-Identifier: Apache-2.0
// How many CPUs this thread may run on.
#pragma once

namespace rolayer {

// The CPUs in the calling thread's affinity mask (taskset, a cgroup cpuset, a container's
// --cpuset-cpus), not the machine's: what decides whether a hashing worker can overlap the
// caller. Falls back to std::thread::hardware_concurrency() (at least 1) where the mask
// cannot be read. Asked each time (one system call): the mask can change.
int usable_cpus() noexcept;

}  // namespace rolayer
