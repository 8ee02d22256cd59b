// SPDX-License-Identifier: Apache-2.0
// A tar writer for the C++ tests (libarchive, PAX restricted, unblocked): directories, files,
// symbolic and hard links, FIFOs, sparse files, extended attributes, each with its own metadata.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rolayer::test {

// An entry's metadata (extended attributes: of this entry, in this order).
struct TarMeta {
  unsigned mode = 0644;
  int64_t uid = 0, gid = 0;
  int64_t mtime = 1500000000;  // far in the past: told apart from the times an apply gives
  long mtime_nsec = 0;
  std::vector<std::pair<std::string, std::string>> xattrs = {};
};

class TarBuilder {
 public:
  TarBuilder() {
    a_ = archive_write_new();
    archive_write_set_format_pax_restricted(a_);
    archive_write_set_bytes_per_block(a_, 0);
    archive_write_open(a_, this, nullptr, &TarBuilder::cb, nullptr);
  }
  ~TarBuilder() {
    if (a_) archive_write_free(a_);
  }
  TarBuilder& dir(const std::string& n, TarMeta m = {0755}) { return add(n, AE_IFDIR, "", "", "", m); }
  TarBuilder& file(const std::string& n, const std::string& data, TarMeta m = {}) {
    return add(n, AE_IFREG, data, "", "", m);
  }
  TarBuilder& symlink(const std::string& n, const std::string& target, TarMeta m = {0777}) {
    return add(n, AE_IFLNK, "", target, "", m);
  }
  TarBuilder& hardlink(const std::string& n, const std::string& target, TarMeta m = {}) {
    return add(n, AE_IFREG, "", "", target, m);
  }
  TarBuilder& fifo(const std::string& n, TarMeta m = {}) { return add(n, AE_IFIFO, "", "", "", m); }
  // An extended attribute of the next entry added.
  TarBuilder& next_xattr(const std::string& key, const std::string& value) {
    xattrs_.emplace_back(key, value);
    return *this;
  }
  TarBuilder& xattr_file(const std::string& n, const std::string& data, const std::string& key,
                         const std::string& value, TarMeta m = {}) {
    xattrs_.emplace_back(key, value);
    add(n, AE_IFREG, data, "", "", m);
    xattrs_.clear();
    return *this;
  }
  // A sparse file: `size` bytes, data only at the given (offset, bytes) pieces.
  TarBuilder& sparse(const std::string& n, uint64_t size,
                     const std::vector<std::pair<uint64_t, std::string>>& pieces, TarMeta m = {}) {
    archive_entry* e = new_entry(n, AE_IFREG, size, m);
    for (auto& [o, d] : pieces) archive_entry_sparse_add_entry(e, static_cast<la_int64_t>(o), d.size());
    EXPECT_EQ(archive_write_header(a_, e), ARCHIVE_OK) << archive_error_string(a_);
    std::string logical(size, '\0');
    for (auto& [o, d] : pieces) logical.replace(o, d.size(), d);
    archive_write_data(a_, logical.data(), logical.size());
    archive_write_finish_entry(a_);
    archive_entry_free(e);
    return *this;
  }
  std::string finish() {
    archive_write_close(a_);
    archive_write_free(a_);
    a_ = nullptr;
    return out_;
  }

 private:
  static la_ssize_t cb(archive*, void* ctx, const void* b, size_t n) {
    static_cast<TarBuilder*>(ctx)->out_.append(static_cast<const char*>(b), n);
    return static_cast<la_ssize_t>(n);
  }
  // An entry with m's metadata and extended attributes, then those of next_xattr().
  archive_entry* new_entry(const std::string& n, unsigned type, uint64_t size, const TarMeta& m) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, n.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, m.mode);
    archive_entry_set_uid(e, m.uid);
    archive_entry_set_gid(e, m.gid);
    archive_entry_set_mtime(e, m.mtime, m.mtime_nsec);
    archive_entry_set_size(e, static_cast<la_int64_t>(size));
    for (auto& [k, v] : m.xattrs) archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    for (auto& [k, v] : xattrs_) archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    xattrs_.clear();
    return e;
  }
  TarBuilder& add(const std::string& n, unsigned type, const std::string& data, const std::string& sym,
                  const std::string& hard, TarMeta m) {
    archive_entry* e = new_entry(n, type, data.size(), m);
    if (!sym.empty()) archive_entry_set_symlink(e, sym.c_str());
    if (!hard.empty()) archive_entry_set_hardlink(e, hard.c_str());
    EXPECT_GE(archive_write_header(a_, e), ARCHIVE_WARN) << archive_error_string(a_);
    if (!data.empty()) archive_write_data(a_, data.data(), data.size());
    archive_write_finish_entry(a_);
    archive_entry_free(e);
    return *this;
  }
  archive* a_;
  std::string out_;
  std::vector<std::pair<std::string, std::string>> xattrs_;
};

}  // namespace rolayer::test
