// SPDX-License-Identifier: Apache-2.0
// rolayer-bench-gen: writes a deterministic benchmark layer tar (see workload.h).
//
//   rolayer-bench-gen PROFILE SEED OUT      PROFILE: small | medium | large | bigfiles | tiny; OUT: a path or -
//
// A regular OUT is written as OUT.partial and renamed; a device or FIFO is written in place.
//
// Prints "<bytes> <entries> <files> <payload bytes>" on stderr. The same seed gives the same
// bytes everywhere.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "workload.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s small|medium|large|bigfiles|tiny SEED OUT.tar|-\n", argv[0]);
    return 2;
  }
  std::string profile = argv[1];
  uint64_t seed = std::strtoull(argv[2], nullptr, 0);
  std::string out = argv[3];
  int fd = 1;
  std::string tmp;
  struct stat st;
  if (out != "-" && ::stat(out.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    // A device or FIFO (/dev/null, a pipe): written as it is. The rename below would have
    // replaced it with a regular file (as root, /dev/null itself).
    fd = ::open(out.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      std::fprintf(stderr, "open %s: %s\n", out.c_str(), std::strerror(errno));
      return 1;
    }
    out = "-";
  }
  if (out != "-") {
    tmp = out + ".partial";
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      std::fprintf(stderr, "open %s: %s\n", tmp.c_str(), std::strerror(errno));
      return 1;
    }
  }
  auto entries = rolayer_bench::Builder(seed).build(profile);
  if (entries.empty()) {
    std::fprintf(stderr, "unknown profile %s\n", profile.c_str());
    return 2;
  }
  uint64_t files = 0, payload = 0;
  for (const auto& e : entries)
    if (e.type == '0') files++, payload += e.size;
  bool failed = false;
  uint64_t total;
  {
    rolayer_bench::TarWriter w([&](const uint8_t* p, size_t n) {
      while (n > 0 && !failed) {
        ssize_t k = ::write(fd, p, n);
        if (k < 0) {
          if (errno == EINTR) continue;
          std::fprintf(stderr, "write: %s\n", std::strerror(errno));
          failed = true;
          return;
        }
        p += k;
        n -= static_cast<size_t>(k);
      }
    });
    for (const auto& e : entries) w.add(e);
    w.finish();
    total = w.bytes();
  }
  if (out != "-") {
    if (::close(fd) != 0) failed = true;
    if (!failed && ::rename(tmp.c_str(), out.c_str()) != 0) {
      std::fprintf(stderr, "rename %s: %s\n", out.c_str(), std::strerror(errno));
      failed = true;
    }
    if (failed) ::unlink(tmp.c_str());
  }
  if (failed) return 1;
  std::fprintf(stderr, "%llu %zu %llu %llu\n", static_cast<unsigned long long>(total), entries.size(),
               static_cast<unsigned long long>(files), static_cast<unsigned long long>(payload));
  return 0;
}
