/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rolayer-bench-nosync: an LD_PRELOAD shim that turns fsync, fdatasync, syncfs and sync into
 * no-ops. Diagnostic only (bench/run.sh --diagnose): it shows how much of a register's time is
 * its durability, by timing the same register without it. Never use it for real data.
 */
#define _GNU_SOURCE
#include <unistd.h>

int fsync(int fd) {
  (void)fd;
  return 0;
}
int fdatasync(int fd) {
  (void)fd;
  return 0;
}
int syncfs(int fd) {
  (void)fd;
  return 0;
}
void sync(void) {}
