#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Times rolayer_mount + rolayer_umount through the C API (ctypes), as root.

usage: mount_bench.py LIBROLAYER.so STORE CHAINID [ROUNDS]
Prints the median and the range of mount and of umount in milliseconds (store already open:
what an engine pays per container start/stop), and of rolayer_mount_lower_dirs.
"""
import ctypes
import os
import statistics
import sys
import tempfile
import time

lib = ctypes.CDLL(sys.argv[1])
store_path, chain = sys.argv[2].encode(), sys.argv[3].encode()
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 20
store = ctypes.c_void_p()
err = ctypes.c_void_p()
lib.rolayer_error_message.restype = ctypes.c_char_p


def check(rc):
    if rc != 0:
        sys.exit("error %d: %s" % (rc, lib.rolayer_error_message(err)))


check(lib.rolayer_store_open(ctypes.byref(store), store_path, None, ctypes.byref(err)))
target = tempfile.mkdtemp(prefix="rolayer-mount-bench-").encode()
mounts, umounts, lowers = [], [], []
try:
    for _ in range(rounds):
        lst = ctypes.c_void_p()
        ux = ctypes.c_int()
        t0 = time.perf_counter()
        check(lib.rolayer_mount_lower_dirs(ctypes.byref(lst), store, chain, ctypes.byref(ux), ctypes.byref(err)))
        t1 = time.perf_counter()
        n = lib.rolayer_string_list_count(lst)
        lib.rolayer_string_list_free(lst)
        check(lib.rolayer_mount(store, chain, target, 0, ctypes.byref(err)))
        t2 = time.perf_counter()
        check(lib.rolayer_umount(store, target, ctypes.byref(err)))
        t3 = time.perf_counter()
        lowers.append((t1 - t0) * 1e3)
        mounts.append((t2 - t1) * 1e3)
        umounts.append((t3 - t2) * 1e3)
finally:
    os.rmdir(target)
    lib.rolayer_store_free(store)
for name, v in (("lower_dirs", lowers), ("mount", mounts), ("umount", umounts)):
    print("%-10s %d layers: median %.2f ms (min %.2f, max %.2f) over %d rounds"
          % (name, n, statistics.median(v), min(v), max(v), len(v)))
