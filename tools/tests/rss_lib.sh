# SPDX-License-Identifier: Apache-2.0
# Sourced by cli_test.sh and registry_test.sh: peak-RSS checks of the rolayer binary. The caller
# defines skip MESSAGE (exit 77) and fail MESSAGE.

# need_rss_measure BINARY: skips unless /usr/bin/time can measure BINARY's peak RSS meaningfully.
# As tests/cpp/hostile_test.cpp's bounded-memory tests: AddressSanitizer keeps freed memory in its
# quarantine (256 MiB by default), so peak RSS then says nothing about the program.
# (No pipe into grep -q here: under pipefail, nm's SIGPIPE when grep stops early fails it.)
need_rss_measure() {
  [ -x /usr/bin/time ] || skip "/usr/bin/time is not installed (Debian package: time); this test measures peak RSS with it"
  local syms libs
  syms=$(nm -D "$1" 2>/dev/null || true)
  libs=$(ldd "$1" 2>/dev/null || true)
  case "$syms$libs" in
    *" __asan_init"* | *libasan*) skip "$1 is built with AddressSanitizer: peak RSS is not meaningful there" ;;
  esac
}

# peak_rss_kib FILE: the peak RSS in KiB that `/usr/bin/time -f 'RSS %M' -o FILE` wrote.
peak_rss_kib() { awk '/^RSS/ {print $2}' "$1"; }
