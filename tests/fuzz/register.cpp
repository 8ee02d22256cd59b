// SPDX-License-Identifier: Apache-2.0
// Fuzz target "register": the whole register path through the public C API.
//
// Each input is registered as a base layer with rolayer_register_memory into two stores, one
// on the "dir" driver and one on the "exact" driver, in a temporary directory that lives as
// long as the process (below $TMPDIR, else /dev/shm, else /tmp; removed at exit). Checked:
//  - success: the DiffID is sha256 of the input, the verified export is the input byte for
//    byte, and release deletes the layer;
//  - failure: *out is NULL, the code is ROLAYER_EARCHIVE or ROLAYER_EUNSAFE, or ROLAYER_EIO
//    for a file-system limit of the dir driver (ENAMETOOLONG, ELOOP, EMLINK, EFBIG, ENOSPC,
//    EOVERFLOW, EINVAL from libarchive), never an "internal error"; the message is not empty;
//  - the dir driver accepts nothing the exact driver refuses (both run the same validation);
//  - either way nothing is left behind (no layer listed, the driver and tmp directories
//    empty) and nothing appears outside the stores (the temporary directory holds only the
//    two stores and an empty sentinel directory).
// With ROLAYER_FUZZ_VERBOSE set, each refusal is printed.
#include <algorithm>
#include <dirent.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "rolayer.h"

namespace {

std::vector<std::string> list_dir(const std::string& d) {
  std::vector<std::string> out;
  if (DIR* dir = opendir(d.c_str())) {
    while (struct dirent* de = readdir(dir))
      if (std::strcmp(de->d_name, ".") != 0 && std::strcmp(de->d_name, "..") != 0) out.emplace_back(de->d_name);
    closedir(dir);
  } else {
    out.push_back("<cannot open " + d + ">");
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

void remove_tree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    chmod(path.c_str(), 0700);  // layers may hold read-only directories
    for (const auto& n : list_dir(path))
      if (n[0] != '<') remove_tree(path + "/" + n);
    rmdir(path.c_str());
  } else {
    unlink(path.c_str());
  }
}

std::string sha256_digest(const uint8_t* data, size_t size) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data, size, md, &n, EVP_sha256(), nullptr);
  static const char hex[] = "0123456789abcdef";
  std::string s = "sha256:";
  for (unsigned i = 0; i < n; ++i) {
    s += hex[md[i] >> 4];
    s += hex[md[i] & 15];
  }
  return s;
}

struct Env {
  std::string base;
  rolayer_store* stores[2] = {nullptr, nullptr};
  const char* names[2] = {"dir", "exact"};
  bool verbose = false;

  Env() {
    const char* t = getenv("TMPDIR");
    std::string parent = t && *t ? t : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    std::string tmpl = parent + "/rolayer-fuzz-register-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back(0);
    if (!mkdtemp(buf.data())) rolayer::fuzz::fail(__FILE__, __LINE__, "mkdtemp " + tmpl + ": " + strerror(errno));
    base = buf.data();
    if (mkdir((base + "/sentinel").c_str(), 0755) != 0) rolayer::fuzz::fail(__FILE__, __LINE__, "mkdir sentinel");
    for (int i = 0; i < 2; ++i) {
      rolayer_error* err = nullptr;
      if (rolayer_store_open(&stores[i], (base + "/" + names[i]).c_str(), names[i], &err) != 0)
        rolayer::fuzz::fail(__FILE__, __LINE__, std::string("store open: ") + rolayer_error_message(err));
    }
    verbose = getenv("ROLAYER_FUZZ_VERBOSE") != nullptr;
  }
  ~Env() {
    for (auto* s : stores) rolayer_store_free(s);
    remove_tree(base);
  }
};

Env& env() {
  static Env e;
  return e;
}

bool acceptable_io_errno(int e) {
  return e == ENAMETOOLONG || e == ELOOP || e == EMLINK || e == EFBIG || e == ENOSPC || e == EOVERFLOW ||
         e == EINVAL;
}

// Registers, exports, releases; returns the register status.
int one(Env& E, int i, const uint8_t* data, size_t size) {
  rolayer_store* s = E.stores[i];
  const std::string root = E.base + "/" + E.names[i];
  rolayer_layer* layer = reinterpret_cast<rolayer_layer*>(1);
  rolayer_error* err = nullptr;
  int rc = rolayer_register_memory(&layer, s, nullptr, data, size, nullptr, &err);
  if (rc != 0) {
    FUZZ_CHECK(layer == nullptr, "*out is not NULL after a failure");
    FUZZ_CHECK(err != nullptr && rolayer_error_code(err) == rc, "error object missing or with another code");
    std::string msg = rolayer_error_message(err);
    if (E.verbose) std::fprintf(stderr, "[%s] %d %s\n", E.names[i], rc, msg.c_str());
    FUZZ_CHECK(!msg.empty(), "empty error message");
    FUZZ_CHECK(msg.find("internal error") == std::string::npos, std::string(E.names[i]) + ": " + msg);
    if (rc == ROLAYER_EIO) {
      FUZZ_CHECK(i == 0 && acceptable_io_errno(rolayer_error_errno(err)),
                 std::string(E.names[i]) + ": unexpected I/O error (errno " +
                     std::to_string(rolayer_error_errno(err)) + "): " + msg);
    } else {
      FUZZ_CHECK(rc == ROLAYER_EARCHIVE || rc == ROLAYER_EUNSAFE,
                 std::string(E.names[i]) + ": unexpected code " + std::to_string(rc) + ": " + msg);
    }
    rolayer_error_free(err);
  } else {
    FUZZ_CHECK(layer != nullptr, "success without a layer");
    FUZZ_CHECK(rolayer_layer_diff_id(layer) == sha256_digest(data, size), "DiffID is not sha256 of the input");
    rolayer_tar_stream* ts = nullptr;
    if (rolayer_tar_stream_open(&ts, layer, &err) != 0)
      rolayer::fuzz::fail(__FILE__, __LINE__, std::string(E.names[i]) + ": export open: " + rolayer_error_message(err));
    std::string out;
    std::vector<char> buf(65536 + 3);
    for (;;) {
      size_t n = 0;
      if (rolayer_tar_stream_read(ts, buf.data(), buf.size(), &n, &err) != 0)
        rolayer::fuzz::fail(__FILE__, __LINE__,
                            std::string(E.names[i]) + ": export read: " + rolayer_error_message(err));
      if (n == 0) break;
      out.append(buf.data(), n);
      FUZZ_CHECK(out.size() <= size, std::string(E.names[i]) + ": export longer than the input");
    }
    rolayer_tar_stream_free(ts);
    FUZZ_CHECK(out.size() == size && std::memcmp(out.data(), data, size) == 0,
               std::string(E.names[i]) + ": export differs from the input");
    rolayer_removed* removed = nullptr;
    if (rolayer_release_ext(&removed, layer, &err) != 0)
      rolayer::fuzz::fail(__FILE__, __LINE__, std::string("release: ") + rolayer_error_message(err));
    FUZZ_CHECK(rolayer_removed_count(removed) == 1, "release did not delete the layer");
    rolayer_removed_free(removed);
  }
  // Nothing left behind.
  rolayer_string_list* l = nullptr;
  if (rolayer_store_list(&l, s, &err) != 0) rolayer::fuzz::fail(__FILE__, __LINE__, "list failed");
  FUZZ_CHECK(rolayer_string_list_count(l) == 0, std::string(E.names[i]) + ": a layer is left in the store");
  rolayer_string_list_free(l);
  auto left = list_dir(root + "/" + E.names[i]);
  // The dir driver's own files (its layout version, the empty lower directory of a mount) are
  // not layer data.
  left.erase(std::remove_if(left.begin(), left.end(),
                            [](const std::string& n) { return n == ".format" || n == ".empty"; }),
             left.end());
  FUZZ_CHECK(left.empty(), std::string(E.names[i]) + ": driver data left behind: " + join(left));
  left = list_dir(root + "/tmp");
  FUZZ_CHECK(left.empty(), std::string(E.names[i]) + ": temporary files left behind: " + join(left));
  left = list_dir(root + "/pending");
  FUZZ_CHECK(left.empty(), std::string(E.names[i]) + ": pending marks left behind: " + join(left));
  for (const auto& n : list_dir(root))
    FUZZ_CHECK(n == "lock" || n == "tmp" || n == "pending" || n == E.names[i] || n.rfind("metadata.db", 0) == 0,
               std::string(E.names[i]) + ": unexpected file in the store root: " + n);
  return rc;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Env& E = env();
  int rc_dir = one(E, 0, data, size);
  int rc_exact = one(E, 1, data, size);
  FUZZ_CHECK(!(rc_dir == 0 && rc_exact != 0), "the dir driver accepted what the exact driver refused");
  // Nothing outside the stores.
  auto top = list_dir(E.base);
  FUZZ_CHECK(top.size() == 3, "something appeared next to the stores: " + join(top));
  auto sentinel = list_dir(E.base + "/sentinel");
  FUZZ_CHECK(sentinel.empty(), "something was written into the sentinel directory: " + join(sentinel));
  return 0;
}
