// SPDX-License-Identifier: Apache-2.0
// rolayer import (OCI image layouts and `docker save` archives, as directories or tar files)
// and rolayer export-image (an OCI image layout of a chain, with uncompressed layers).
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <tuple>

#include "args.h"
#include "blob.h"
#include "commands.h"
#include "fsat.h"
#include "image_plan.h"
#include "progress.h"
#include "staged_chain.h"
#include "kept_images.h"
#include "text.h"

namespace cli {

using nlohmann::json;

namespace {

// --- image sources ----------------------------------------------------------------------------

// An image directory: everything is opened beneath the directory's descriptor, one component
// at a time, without following links (fsat.h); a link, device or FIFO is refused by name.
class DirSource : public ImageSource {
 public:
  explicit DirSource(std::string root) : root_(std::move(root)), fd_(open_user_dir(root_)) {}
  bool exists(const std::string& rel) override {
    Found f = lookup_beneath(fd_.get(), rel);
    return f == Found::Regular || f == Found::Other;
  }
  std::string read_small(const std::string& rel, size_t max) override {
    return read_file_beneath(fd_.get(), rel, max, root_);
  }
  std::unique_ptr<ByteSource> open(const std::string& rel) override {
    Fd f = open_file_beneath(fd_.get(), rel, root_);
    ::posix_fadvise(f.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    return std::make_unique<FdSource>(f.release(), true, root_ + "/" + rel);
  }
  std::string describe() const override { return root_; }

 private:
  std::string root_;
  Fd fd_;
};

struct ArchiveDeleter {
  void operator()(struct archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<struct archive, ArchiveDeleter>;

// One entry's data, read straight out of the image archive.
class ArchiveEntrySource : public ByteSource {
 public:
  ArchiveEntrySource(ArchivePtr a, std::string name) : a_(std::move(a)), name_(std::move(name)) {}
  size_t read(void* buf, size_t cap) override {
    check_interrupted();
    la_ssize_t n = archive_read_data(a_.get(), buf, cap);
    if (n < 0) {
      check_interrupted();
      const char* m = archive_error_string(a_.get());
      throw CliError(kBadInput, name_ + ": " + (m ? m : "cannot read"));
    }
    return static_cast<size_t>(n);
  }

 private:
  ArchivePtr a_;
  std::string name_;
};

// A tar (plain or compressed) holding an image layout or a docker save archive. A compressed
// tar is decompressed once, into an unnamed temporary file (in $TMPDIR), under the
// decompression limits; then the first pass indexes the entries and keeps the small ones
// (manifests, configs); a blob is read by a pass that skips to its entry (a seek in the plain
// tar). The index is bounded: at most kMaxEntries entries, kMaxNameBytes of names and link
// targets, kMaxCached bytes of small files, whatever the archive's size.
class TarSource : public ImageSource {
 public:
  static constexpr size_t kMaxEntries = 100000;
  static constexpr size_t kMaxNameBytes = 16u << 20;
  static constexpr size_t kMaxCached = 64u << 20;

  // PLAIN, when given, is the archive as a plain tar already (standard input, see
  // stdin_plain_tar): FILE only names it in messages.
  explicit TarSource(std::string file, Fd plain = Fd()) : file_(std::move(file)) {
    if (plain) {
      tmp_ = std::move(plain);
      plain_ = "/proc/self/fd/" + std::to_string(tmp_.get());
    } else {
      decompress_once();
    }
    ArchivePtr a = open_archive();
    size_t name_bytes = 0;
    struct archive_entry* e = nullptr;
    size_t ordinal = 0;
    size_t cached = 0;
    for (;;) {
      check_interrupted();
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) fail_archive(a.get());
      Entry en;
      en.ordinal = ordinal++;
      if (ordinal > kMaxEntries)
        throw CliError(kBadInput, file_ + ": more than " + std::to_string(kMaxEntries) +
                                      " entries: not an image archive this tool reads");
      std::string name = clean_path(archive_entry_pathname(e) ? archive_entry_pathname(e) : "");
      if (name.empty()) continue;
      name_bytes += name.size();
      if (const char* hl = archive_entry_hardlink(e)) {
        en.type = Entry::Hard;
        en.target = clean_path(hl);
      } else if (archive_entry_filetype(e) == AE_IFLNK) {
        en.type = Entry::Sym;
        const char* t = archive_entry_symlink(e);
        std::string target = t ? t : "";
        en.target = clean_path(target.size() && target[0] == '/' ? target : dirname_of("/" + name).substr(1) + "/" + target);
      } else if (archive_entry_filetype(e) == AE_IFREG) {
        en.type = Entry::File;
        en.size = archive_entry_size(e);
        if (en.size >= 0 && en.size <= (1 << 20) && cached + static_cast<size_t>(en.size) <= kMaxCached) {
          std::string data;
          data.resize(static_cast<size_t>(en.size));
          size_t got = 0;
          while (got < data.size()) {
            la_ssize_t n = archive_read_data(a.get(), data.data() + got, data.size() - got);
            if (n < 0) fail_archive(a.get());
            if (n == 0) break;
            got += static_cast<size_t>(n);
          }
          data.resize(got);
          cached += got;
          en.cached = true;
          en.data = std::move(data);
        }
      } else {
        continue;
      }
      name_bytes += en.target.size();
      if (name_bytes > kMaxNameBytes)
        throw CliError(kBadInput, file_ + ": more than " + human_bytes(static_cast<int64_t>(kMaxNameBytes)) +
                                      " of entry names: not an image archive this tool reads");
      entries_[name] = std::move(en);
    }
    // The layout may sit in one top-level directory of the archive.
    if (!entries_.count("index.json") && !entries_.count("manifest.json")) {
      std::set<std::string> tops;
      for (const auto& [n, en] : entries_) {
        auto s = n.find('/');
        if (s != std::string::npos && n.find('/', s + 1) == std::string::npos &&
            (n.substr(s + 1) == "index.json" || n.substr(s + 1) == "manifest.json"))
          tops.insert(n.substr(0, s + 1));
      }
      if (tops.size() == 1) prefix_ = *tops.begin();
    }
  }

  bool exists(const std::string& rel) override { return find(rel) != nullptr; }

  std::string read_small(const std::string& rel, size_t max) override {
    const Entry* en = find(rel);
    if (!en) throw CliError(kNotFound, file_ + ": no " + rel + " in the archive");
    if (en->size > static_cast<int64_t>(max))
      throw CliError(kBadInput, file_ + ": " + rel + " is larger than " + human_bytes(static_cast<int64_t>(max)));
    if (en->cached) return en->data;
    auto src = open(rel);
    std::string out;
    std::vector<char> buf(1 << 16);
    for (;;) {
      size_t n = src->read(buf.data(), buf.size());
      if (n == 0) break;
      out.append(buf.data(), n);
      if (out.size() > max) throw CliError(kBadInput, file_ + ": " + rel + " is too large");
    }
    return out;
  }

  std::unique_ptr<ByteSource> open(const std::string& rel) override {
    const Entry* en = find(rel);
    if (!en) throw CliError(kNotFound, file_ + ": no " + rel + " in the archive");
    ArchivePtr a = open_archive();
    struct archive_entry* e = nullptr;
    for (size_t ordinal = 0;; ordinal++) {
      check_interrupted();
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) fail_archive(a.get());
      if (ordinal == en->ordinal) return std::make_unique<ArchiveEntrySource>(std::move(a), file_ + ": " + rel);
    }
    throw CliError(kBadInput, file_ + ": " + rel + " vanished from the archive while reading it");
  }

  std::string describe() const override { return file_; }

 private:
  struct Entry {
    enum Type { File, Sym, Hard } type = File;
    size_t ordinal = 0;
    int64_t size = 0;
    std::string target;
    bool cached = false;
    std::string data;
  };

  const Entry* find(const std::string& rel) const {
    std::string name = clean_path(prefix_ + rel);
    for (int hops = 0; hops < 16; hops++) {
      auto it = entries_.find(name);
      if (it == entries_.end()) return nullptr;
      if (it->second.type == Entry::File) return &it->second;
      name = it->second.target;
    }
    return nullptr;
  }

  ArchivePtr open_archive() const {
    ArchivePtr a(archive_read_new());
    if (!a) throw CliError(kFailure, "out of memory");
    archive_read_support_format_tar(a.get());
    archive_read_support_format_gnutar(a.get());
    if (plain_.empty()) throw CliError(kFailure, file_ + ": no archive to read");
    // 1 MiB reads: a layer blob streams through here (64 KiB reads made 16 × the system calls).
    if (archive_read_open_filename(a.get(), plain_.c_str(), 1 << 20) != ARCHIVE_OK) fail_archive(a.get());
    return a;
  }

  // Looks at the first bytes: a plain tar is read where it is; a compressed one (gzip, zstd, …,
  // in-process only) is decompressed once into an unnamed temporary file read through
  // /proc/self/fd; a compression only an external program could decode is refused.
  void decompress_once() {
    Fd in(::open(file_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!in) {
      if (errno == ENOENT) throw CliError(kNotFound, file_ + ": no such file");
      sys_fail("open " + file_);
    }
    struct stat st;
    if (::fstat(in.get(), &st) != 0) sys_fail("stat " + file_);
    if (!S_ISREG(st.st_mode)) throw CliError(kBadInput, file_ + " is " + file_kind(st.st_mode) + ", not an image archive file");
    unsigned char head[16];
    ssize_t hn = ::pread(in.get(), head, sizeof head, 0);
    std::string kind = unsupported_compression(head, hn > 0 ? static_cast<size_t>(hn) : 0);
    if (!kind.empty()) throw CliError(kBadInput, unsupported_compression_message(file_, kind));
    ArchivePtr a(archive_read_new());
    if (!a) throw CliError(kFailure, "out of memory");
    add_safe_filters(a.get());
    archive_read_support_format_raw(a.get());
    if (archive_read_open_fd(a.get(), in.get(), 1 << 16) != ARCHIVE_OK) fail_archive(a.get());
    struct archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN && r != ARCHIVE_EOF) fail_archive(a.get());
    if (r == ARCHIVE_EOF || archive_filter_code(a.get(), 0) == ARCHIVE_FILTER_NONE) {
      plain_ = file_;
      return;
    }
    const char* tmpdir = std::getenv("TMPDIR");
    std::string dir = tmpdir && *tmpdir ? tmpdir : "/tmp";
    Fd tmp(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
    if (!tmp && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
      // No O_TMPFILE on this file system: a named file, unlinked at once.
      std::string t = dir + "/.rolayer-archive-XXXXXX";
      std::vector<char> name(t.begin(), t.end());
      name.push_back('\0');
      tmp = Fd(::mkostemp(name.data(), O_CLOEXEC));
      if (tmp) ::unlink(name.data());
    }
    if (!tmp) sys_fail("create a temporary file in " + dir + " (for the decompressed " + file_ + ")");
    std::vector<char> buf(1 << 20);
    uint64_t total = 0;
    for (;;) {
      check_interrupted();
      la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
      if (n < 0) fail_archive(a.get());
      if (n == 0) break;
      total += static_cast<uint64_t>(n);
      check_decompression(file_, total, static_cast<uint64_t>(std::max<la_int64_t>(0, archive_filter_bytes(a.get(), -1))));
      write_all(tmp.get(), buf.data(), static_cast<size_t>(n), "the decompressed " + file_);
    }
    tmp_ = std::move(tmp);
    plain_ = "/proc/self/fd/" + std::to_string(tmp_.get());
  }

  [[noreturn]] void fail_archive(struct archive* a) const {
    check_interrupted();
    const char* m = archive_error_string(a);
    int e = archive_errno(a);
    if (e == ENOENT) throw CliError(kNotFound, file_ + ": no such file");
    throw CliError(kBadInput, file_ + ": not a readable image archive: " + (m ? m : "unknown error"));
  }

  std::string file_;
  std::string plain_;  // the plain tar read by every pass: file_, or the decompressed copy
  Fd tmp_;             // the decompressed copy (unnamed: it goes with the process)
  std::string prefix_;
  std::map<std::string, Entry> entries_;
};

// `import -`: the archive on standard input, as a plain tar the passes of TarSource can read.
// A regular file at its start is read where it is (when it is a plain tar); anything else (a
// pipe, a compressed archive) is copied once, decompressed under the decompression limits, into
// an unnamed file (O_TMPFILE, mode 0600) in the store's own tmp folder, opened beneath the
// store's directory without following links: it is nowhere in the file system's names and goes
// with the process. A docker save archive lists manifest.json last, so no single pass could
// read it straight from the pipe.
class StdinReader {
 public:
  explicit StdinReader(int fd, bool positional) : fd_(fd), positional_(positional), buf_(1 << 20) {}
  static la_ssize_t read_cb(struct archive*, void* self, const void** out) {
    auto* r = static_cast<StdinReader*>(self);
    *out = r->buf_.data();
    for (;;) {
      if (interrupted()) return -1;
      ssize_t n = r->positional_ ? ::pread(r->fd_, r->buf_.data(), r->buf_.size(), r->off_)
                                 : ::read(r->fd_, r->buf_.data(), r->buf_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        r->errno_ = errno;
        return -1;
      }
      r->off_ += n;
      r->total_ += static_cast<uint64_t>(n);
      if (r->head_n_ < sizeof r->head_) {
        size_t k = std::min(sizeof r->head_ - r->head_n_, static_cast<size_t>(n));
        std::memcpy(r->head_ + r->head_n_, r->buf_.data(), k);
        r->head_n_ += k;
      }
      return n;
    }
  }
  int fd_;
  bool positional_;
  off_t off_ = 0;
  uint64_t total_ = 0;
  int errno_ = 0;
  unsigned char head_[16] = {};
  size_t head_n_ = 0;
  std::vector<char> buf_;
};

Fd stdin_plain_tar(const Globals& g) {
  const std::string name = "standard input";
  if (::isatty(STDIN_FILENO))
    usage_error("import -: standard input is a terminal: pipe an image archive into it "
                "(docker save IMAGE | rolayer import -, or rolayer import - < image.tar)");
  struct stat st;
  if (::fstat(STDIN_FILENO, &st) != 0) sys_fail("import -: stat " + name);
  if (S_ISDIR(st.st_mode)) throw CliError(kBadInput, "import -: " + name + " is a directory, not an image archive");
  // A regular file at its start: read through a descriptor of its own (its offset is not ours
  // to move), and used in place when it is a plain tar.
  Fd direct;
  if (S_ISREG(st.st_mode) && ::lseek(STDIN_FILENO, 0, SEEK_CUR) == 0)
    direct = Fd(::open(("/proc/self/fd/" + std::to_string(STDIN_FILENO)).c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  StdinReader reader(direct ? direct.get() : STDIN_FILENO, static_cast<bool>(direct));
  ArchivePtr a(archive_read_new());
  if (!a) throw CliError(kFailure, "out of memory");
  add_safe_filters(a.get());
  archive_read_support_format_raw(a.get());
  auto fail = [&]() {
    check_interrupted();
    if (reader.errno_) {
      errno = reader.errno_;
      sys_fail("import -: read " + name);
    }
    const char* m = archive_error_string(a.get());
    throw CliError(kBadInput, "import -: " + name + ": not a readable image archive: " + (m ? m : "unknown error"));
  };
  auto empty = [&]() {
    if (reader.total_ == 0 && reader.errno_ == 0 && !interrupted())
      throw CliError(kBadInput, "import -: " + name + " is empty: no image archive came in");
  };
  if (archive_read_open(a.get(), &reader, nullptr, StdinReader::read_cb, nullptr) != ARCHIVE_OK) empty(), fail();
  struct archive_entry* e = nullptr;
  int r = archive_read_next_header(a.get(), &e);
  empty();
  if (r != ARCHIVE_OK && r != ARCHIVE_WARN && r != ARCHIVE_EOF) fail();
  bool plain = r == ARCHIVE_EOF || archive_filter_code(a.get(), 0) == ARCHIVE_FILTER_NONE;
  if (plain) {
    std::string kind = unsupported_compression(reader.head_, reader.head_n_);
    if (!kind.empty()) throw CliError(kBadInput, "import -: " + unsupported_compression_message(name, kind));
    if (direct) return direct;
  }
  // The store's tmp folder (made by open_store), beneath the store's directory, not a link,
  // and private to its owner.
  std::string root = default_store_root(g);
  Fd rootfd = open_user_dir(root);
  Fd tmpdir(::openat(rootfd.get(), "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!tmpdir) sys_fail("import -: open " + root + "/tmp");
  struct stat ts;
  if (::fstat(tmpdir.get(), &ts) != 0) sys_fail("import -: stat " + root + "/tmp");
  if (ts.st_uid != ::geteuid() || (ts.st_mode & 077) != 0)
    throw CliError(kFailure, "import -: " + root + "/tmp is not private to this user (owner or mode changed): "
                                 "standard input is not copied there");
  Fd tmp(::openat(tmpdir.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!tmp && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    // No O_TMPFILE on this file system: a fresh name (O_EXCL, never through a link), unlinked at once.
    for (int attempt = 0; attempt < 100 && !tmp; attempt++) {
      unsigned char rnd[8];
      if (::getentropy(rnd, sizeof rnd) != 0) sys_fail("import -: getentropy");
      char t[64];
      std::snprintf(t, sizeof t, ".stdin-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5],
                    rnd[6], rnd[7]);
      tmp = Fd(::openat(tmpdir.get(), t, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (tmp)
        ::unlinkat(tmpdir.get(), t, 0);
      else if (errno != EEXIST)
        break;
    }
  }
  if (!tmp) sys_fail("import -: create a temporary file in " + root + "/tmp (for the copy of " + name + ")");
  if (r == ARCHIVE_EOF) return tmp;
  std::vector<char> buf(1 << 20);
  uint64_t total = 0;
  for (;;) {
    check_interrupted();
    la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
    if (n < 0) fail();
    if (n == 0) break;
    total += static_cast<uint64_t>(n);
    if (!plain) check_decompression(name, total, reader.total_);
    write_all(tmp.get(), buf.data(), static_cast<size_t>(n), "the copy of " + name + " in " + root + "/tmp");
  }
  return tmp;
}

// "PATH:REF" → PATH and REF: the whole argument when it exists, else the shortest prefix before
// a colon that exists (as skopeo's oci:PATH:REF does).
void split_image_arg(const std::string& arg, std::string* path, std::string* ref) {
  if (path_exists(arg)) {
    *path = arg;
    ref->clear();
    return;
  }
  for (size_t c = arg.find(':'); c != std::string::npos; c = arg.find(':', c + 1)) {
    std::string p = arg.substr(0, c);
    if (!p.empty() && path_exists(p)) {
      *path = p;
      *ref = arg.substr(c + 1);
      return;
    }
  }
  throw CliError(kNotFound, arg + ": no such file or directory");
}

// The names an imported image is kept under: each name it carries, normalised the way Docker
// normalises references ("alpine:3" = "docker.io/library/alpine:3"). A bare tag (an OCI
// ref.name such as "latest", as skopeo and umoci write it: no "/" and no ":") and a name that
// is no reference are kept as written. An image without a name is kept under its manifest digest.
std::vector<std::string> image_names_of(const Plan& plan, const std::string& manifest_digest) {
  std::vector<std::string> out;
  for (const auto& n : plan.names) {
    std::string norm = n;
    if (n.find_first_of("/:") != std::string::npos) try {
        norm = normalise_reference(n);
      } catch (const CliError&) {
      }
    if (std::find(out.begin(), out.end(), norm) == out.end()) out.push_back(norm);
  }
  if (out.empty()) out.push_back(manifest_digest);
  return out;
}

// An uncompressed layer blob is not hashed by its LayerReader (BlobExpectation::diff_id_verifies):
// its digest is the DiffID the library computes anyway, checked here once the layer is in, with
// the message a hashing reader gives. Saves one SHA-256 pass over every uncompressed layer.
void check_unhashed_blob(const LayerReader& reader, const BlobExpectation& expect, const std::string& diff_id) {
  if (reader.unhashed() && diff_id != expect.digest)
    throw CliError(kVerify, expect.name + ": digest mismatch: the descriptor gives " + expect.digest +
                                ", the blob's content is " + diff_id);
}

// After the library refused an unhashed blob: when the blob does not match its descriptor,
// that is the root cause to report (as LayerReader::blob_mismatch() says for a hashed one). The
// blob is read once more, only on this failure path. Never throws.
std::optional<CliError> unhashed_blob_mismatch(const LayerReader& reader, ImageSource& src, const LayerPlan& lp,
                                               const BlobExpectation& expect) {
  if (!reader.unhashed() || interrupted()) return std::nullopt;
  try {
    auto in = src.open(lp.path);
    Hasher h("sha256");
    std::vector<char> buf(1 << 20);
    for (;;) {
      size_t n = in->read(buf.data(), buf.size());
      if (n == 0) break;
      h.update(buf.data(), n);
    }
    std::string got = h.finish();
    if (got != expect.digest)
      return CliError(kVerify, expect.name + ": digest mismatch: the descriptor gives " + expect.digest +
                                   ", the blob's content is " + got);
  } catch (...) {
  }
  return std::nullopt;
}

// One layer of the plan opened for import: its blob, what the blob is checked against, the
// reader that checks and decompresses it, and the descriptor to record. `add` registers or stages
// it (given the call) and reports a refused blob that does not match its descriptor as the root
// cause; `check` then checks an unhashed blob's digest against the DiffID the library computed.
class LayerInput {
 public:
  LayerInput(ImageSource& src, const LayerPlan& lp, Progress& prog)
      : src_(src), lp_(lp), in_(src.open(lp.path)), expect_(expectation(src, lp)),
        reader_(*in_, expect_.name, &prog, &expect_) {
    if (lp.record) {
      opts_.descriptor_media_type = lp.media_type.c_str();
      opts_.descriptor_digest = lp.expect.digest.c_str();
      opts_.descriptor_size = lp.expect.size;
    }
  }
  template <class F>
  auto add(F&& f) {
    try {
      return f(reader_, &opts_, src_.describe() + ": " + lp_.display);
    } catch (const CliError& e) {
      if (e.code() == kVerify) throw;
      if (auto mismatch = unhashed_blob_mismatch(reader_, src_, lp_, expect_)) throw *mismatch;
      throw;
    }
  }
  void check(const std::string& diff_id) const { check_unhashed_blob(reader_, expect_, diff_id); }

 private:
  static BlobExpectation expectation(ImageSource& src, const LayerPlan& lp) {
    BlobExpectation e = lp.expect;
    e.name = src.describe() + ": " + lp.display;
    e.diff_id_verifies = true;
    return e;
  }
  ImageSource& src_;
  const LayerPlan& lp_;
  std::unique_ptr<ByteSource> in_;
  BlobExpectation expect_;
  LayerReader reader_;
  rolayer_register_options opts_ = ROLAYER_REGISTER_OPTIONS_INIT;
};

// The layers of the plan, applied at once and committed in chain order (staged_chain.h). What is
// committed goes to `held` (the caller releases it on failure). Errors are reported as the serial
// loop reports them: the first layer in chain order that fails.
void import_layers_parallel(rolayer_store* store, ImageSource& src, const Plan& plan, int jobs, Progress& prog,
                            std::vector<Layer>& held, std::string& parent) {
  const size_t n = plan.layers.size();
  ChainSteps steps;
  steps.stage = [&](size_t i) {
    LayerInput input(src, plan.layers[i], prog);
    StagedPtr staged = input.add([&](LayerReader& reader, const rolayer_register_options* opts, const std::string& what) {
      return stage_layer(store, reader, opts, what);
    });
    input.check(rolayer_staged_diff_id(staged.get()));
    return staged;
  };
  steps.check = [&](size_t i, const rolayer_staged* staged) {
    const LayerPlan& lp = plan.layers[i];
    std::string diff_id = rolayer_staged_diff_id(staged);
    if (diff_id != lp.diff_id)
      throw CliError(kVerify, src.describe() + ": " + lp.display + ": DiffID mismatch: the config lists " + lp.diff_id +
                                  " for layer " + std::to_string(i + 1) + ", the uncompressed blob is " + diff_id);
  };
  steps.context = [&](size_t i) { return src.describe() + ": " + plan.layers[i].display; };
  steps.committed = [&](size_t i, const std::string& chain_id) {
    prog.note("layer " + std::to_string(i + 1) + "/" + std::to_string(n) + "  " + chain_id);
  };
  stage_and_commit_chain(store, n, jobs, steps, held, parent);
}

}  // namespace

// --- import -----------------------------------------------------------------------------------

int cmd_import(Globals& g, const Args& args) {
  auto p = parse_args("import", args, {{"jobs", 'j', true}}, g);
  if (p.help) return print_command_help(*find_command("import")), 0;
  const int jobs = parse_stage_jobs(p, "import");
  if (p.positionals.size() != 1) usage_error("import: needs exactly one DIR or ARCHIVE (with an optional :REF)");
  std::string path, ref;
  StorePtr store;
  std::unique_ptr<ImageSource> src;
  const std::string& arg = p.positionals[0];
  if (arg == "-" || arg.rfind("-:", 0) == 0) {  // the archive on standard input (-[:REF])
    ref = arg.size() > 2 ? arg.substr(2) : "";
    store = open_store(g);  // its tmp folder takes the copy of standard input
    src = std::make_unique<TarSource>("standard input", stdin_plain_tar(g));
  } else {
    split_image_arg(arg, &path, &ref);
    if (is_directory(path))
      src = std::make_unique<DirSource>(path);
    else
      src = std::make_unique<TarSource>(path);
  }

  Plan plan = plan_image(*src, ref);

  if (!store) store = open_store(g);
  int64_t total = 0;
  for (const auto& l : plan.layers) total += std::max<int64_t>(0, l.expect.size);
  Progress prog(progress_enabled(g), "import", total > 0 ? total : -1);

  // Every handle this import holds; on failure they are released (newest first) and what this
  // import registered goes with them; layers that existed before keep their own references.
  std::vector<Layer> held;
  std::string parent;
  try {
    if (jobs > 1 && plan.layers.size() > 1) {
      prog.set_label("import " + std::to_string(plan.layers.size()) + " layers");
      import_layers_parallel(store.get(), *src, plan, jobs, prog, held, parent);
    } else {
      for (size_t i = 0; i < plan.layers.size(); i++) {
        const LayerPlan& lp = plan.layers[i];
        prog.set_label("import " + std::to_string(i + 1) + "/" + std::to_string(plan.layers.size()));
        LayerInput input(*src, lp, prog);
        held.push_back(input.add([&](LayerReader& reader, const rolayer_register_options* opts, const std::string& what) {
          return register_layer(store.get(), parent, reader, opts, what);
        }));
        const Layer& layer = held.back();
        std::string diff_id = rolayer_layer_diff_id(layer.get());
        input.check(diff_id);
        if (diff_id != lp.diff_id)
          throw CliError(kVerify, src->describe() + ": " + lp.display + ": DiffID mismatch: the config lists " + lp.diff_id +
                                      " for layer " + std::to_string(i + 1) + ", the uncompressed blob is " + diff_id);
        parent = rolayer_layer_chain_id(layer.get());
        prog.note("layer " + std::to_string(i + 1) + "/" + std::to_string(plan.layers.size()) + "  " + parent);
      }
    }
    // Keep the image (its manifest and config as found) as pull does. A docker save archive has
    // no manifest: the one kept names the config as found and the layers as registered
    // (uncompressed, digest = DiffID), as export-image writes them.
    std::string manifest = plan.manifest, manifest_mt = plan.manifest_media_type;
    if (manifest.empty()) {
      json layers = json::array();
      for (const auto& l : held) {
        int64_t sz = 0;
        Err err;
        int rc = rolayer_layer_stream_size(&sz, l.get(), err.out());
        if (rc != ROLAYER_OK) lib_fail(rc, err, "import: size of " + std::string(rolayer_layer_chain_id(l.get())));
        layers.push_back(json{{"mediaType", kMtOciLayerTar}, {"digest", rolayer_layer_diff_id(l.get())}, {"size", sz}});
      }
      manifest = json{{"schemaVersion", 2},
                      {"mediaType", kMtOciManifest},
                      {"config", {{"mediaType", kMtOciConfig}, {"digest", Hasher::digest_of(plan.config)}, {"size", plan.config.size()}}},
                      {"layers", layers}}
                     .dump();
      manifest_mt = kMtOciManifest;
    }
    for (const auto& name : image_names_of(plan, Hasher::digest_of(manifest)))
      store_image(store.get(), name, parent, manifest_mt, manifest, plan.config);
    retain_once(store.get(), parent);
  } catch (...) {
    prog.clear();
    // Release (not just close) what this import holds, newest first: what it registered goes.
    while (!held.empty()) {
      Err ignored;
      held.back().release(ignored);
      held.pop_back();
    }
    throw;
  }
  while (!held.empty()) held.pop_back();
  prog.clear();
  std::printf("%s\n", parent.c_str());
  if (std::fflush(stdout) != 0) sys_fail("write standard output");
  return kOk;
}

// --- export-image -----------------------------------------------------------------------------

namespace {

// What export-image made, undone (newest first) unless the layout was completed: no command
// leaves a half-written layout behind (blobs without an index.json).
class LayoutRollback {
 public:
  ~LayoutRollback() {
    if (done_) return;
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) ::unlinkat(it->dirfd, it->name.c_str(), it->flags);
    if (!made_dir_.empty()) ::rmdir(made_dir_.c_str());
  }
  void file(int dirfd, const std::string& name) { steps_.push_back({dirfd, name, 0}); }
  void dir(int dirfd, const std::string& name) { steps_.push_back({dirfd, name, AT_REMOVEDIR}); }
  void made_dir(const std::string& path) { made_dir_ = path; }
  void done() { done_ = true; }

 private:
  struct Step {
    int dirfd;
    std::string name;
    int flags;
  };
  std::vector<Step> steps_;
  std::string made_dir_;
  bool done_ = false;
};

// --ref, --arch and --os go into the layout's JSON: UTF-8 text without control characters.
void check_text_option(const std::string& opt, const std::string& v) {
  if (!is_valid_utf8(v))
    usage_error("export-image: --" + opt + " is not UTF-8 text (\"" + term_safe(v) +
                "\"): image JSON holds UTF-8 only");
  for (unsigned char c : v)
    if (c < 0x20 || c == 0x7f)
      usage_error("export-image: --" + opt + " holds a control character (\"" + term_safe(v) + "\")");
}

}  // namespace

int cmd_export_image(Globals& g, const Args& args) {
  auto p = parse_args("export-image", args, {{"ref", 0, true}, {"arch", 0, true}, {"os", 0, true}, {"image", 0, true},
                                             {"format", 0, true}, {"tag", 0, true}}, g);
  if (p.help) return print_command_help(*find_command("export-image")), 0;
  // --format docker-archive: one tar file (tools/src/image_archive.cpp).
  std::string format = p.get("format", "oci");
  if (format == "docker-archive") return export_image_archive(g, p);
  if (format != "oci") usage_error("export-image: --format is oci (a layout directory, the default) or docker-archive");
  if (p.has("tag")) usage_error("export-image: --tag goes with --format docker-archive");
  bool by_image = p.has("image");
  if (by_image && p.positionals.size() != 1) usage_error("export-image: with --image NAME, needs only DIR");
  if (!by_image && p.positionals.size() != 2) usage_error("export-image: needs CHAINID and DIR");
  std::string dir = p.positionals.back();
  std::string ref = p.get("ref", "latest");
  if (ref.empty()) usage_error("export-image: --ref must not be empty");
  std::string arch = p.get("arch", host_arch());
  std::string os = p.get("os", "linux");
  check_text_option("ref", ref);
  check_text_option("arch", arch);
  check_text_option("os", os);

  // DIR itself is the user's choice (a link to a directory is fine); everything in it is
  // opened beneath its descriptor without following links.
  bool existing_layout = false, existing_dir = path_exists(dir);
  Fd dfd;
  json index;
  if (existing_dir) {
    if (!is_directory(dir)) usage_error("export-image: " + dir + " exists and is not a directory");
    dfd = open_user_dir(dir);
    std::string kind;
    Found layout_f = lookup_beneath(dfd.get(), "oci-layout", &kind);
    if (layout_f != Found::Missing) {
      existing_layout = true;
      json layout = parse_json(read_file_beneath(dfd.get(), "oci-layout", 65536, dir), dir + "/oci-layout");
      std::string v = str_field(layout, "imageLayoutVersion", dir + "/oci-layout");
      if (v.rfind("1.", 0) != 0) throw CliError(kBadInput, dir + ": unsupported image layout version " + v);
    } else {
      bool empty = true;
      int dup = ::fcntl(dfd.get(), F_DUPFD_CLOEXEC, 0);
      if (DIR* d = dup >= 0 ? ::fdopendir(dup) : nullptr) {
        while (struct dirent* de = ::readdir(d))
          if (std::string(de->d_name) != "." && std::string(de->d_name) != "..") empty = false;
        ::closedir(d);
      } else if (dup >= 0) {
        ::close(dup);
      }
      if (!empty) usage_error("export-image: " + dir + " is neither empty nor an OCI image layout");
    }
    if (existing_layout && lookup_beneath(dfd.get(), "index.json") != Found::Missing) {
      index = parse_json(read_file_beneath(dfd.get(), "index.json", kMaxJson, dir), dir + "/index.json");
      if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array())
        throw CliError(kBadInput, dir + "/index.json has no manifests");
    }
  }
  if (index.is_null()) index = json{{"schemaVersion", 2}, {"mediaType", kMtOciIndex}, {"manifests", json::array()}};

  StorePtr store = open_store(g);
  // The image kept in the store that names the chain (or --image NAME): its config, as it came.
  std::string top, image_name, image_config;
  if (by_image) {
    image_name = find_image_name(store.get(), p.get("image"));
    if (image_name.empty()) throw CliError(kNotFound, "export-image: no such image: " + p.get("image") + " (see: rolayer images)");
  } else {
    top = resolve_chain_id(store.get(), p.positionals[0]);
    auto names = images_with_top(store.get(), top);
    if (!names.empty()) image_name = names[0];
  }
  if (!image_name.empty()) kept_image_config(store.get(), image_name, &top, &image_config);
  int64_t total = 0;
  std::vector<Layer> chain = open_chain(store.get(), top, &total);

  Fd blobs_fd, sha_fd;  // before the rollback, which uses them: closed after it ran
  LayoutRollback rollback;
  if (!existing_dir) {
    mkdirs(dirname_of(dir), 0755);
    if (::mkdir(dir.c_str(), 0755) != 0) sys_fail("mkdir " + dir);
    rollback.made_dir(dir);
    dfd = open_user_dir(dir);
  }
  bool created = false;
  blobs_fd = make_dir_at(dfd.get(), "blobs", dir + "/blobs", &created);
  if (created) rollback.dir(dfd.get(), "blobs");
  sha_fd = make_dir_at(blobs_fd.get(), "sha256", dir + "/blobs/sha256", &created);
  if (created) rollback.dir(blobs_fd.get(), "sha256");
  std::string blobs = dir + "/blobs/sha256";

  Progress prog(progress_enabled(g), "export-image", total);
  json layers = json::array(), diff_ids = json::array();
  for (size_t i = 0; i < chain.size(); i++) {
    prog.set_label("export-image " + std::to_string(i + 1) + "/" + std::to_string(chain.size()));
    rolayer_layer* l = chain[i].get();
    std::string diff_id = rolayer_layer_diff_id(l);
    std::string chain_id = rolayer_layer_chain_id(l);
    rolayer_tar_stream* s = nullptr;
    Err err;
    int rc = rolayer_tar_stream_open(&s, l, err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, "export-image " + chain_id);
    std::unique_ptr<rolayer_tar_stream, void (*)(rolayer_tar_stream*)> stream(s, rolayer_tar_stream_free);
    AtomicFileAt out(sha_fd.get(), diff_id.substr(7), blobs + "/" + diff_id.substr(7));
    Hasher h;
    std::vector<unsigned char> buf(1 << 20);
    int64_t size = 0;
    for (;;) {
      check_interrupted();
      size_t n = 0;
      rc = rolayer_tar_stream_read(s, buf.data(), buf.size(), &n, err.out());
      if (rc != ROLAYER_OK) {
        prog.clear();
        lib_fail(rc, err, "export-image " + chain_id);
      }
      if (n == 0) break;
      h.update(buf.data(), n);
      out.write(buf.data(), n);
      size += static_cast<int64_t>(n);
      prog.add(n);
    }
    std::string got = h.finish();
    if (got != diff_id)  // cannot happen with a verified stream; checked all the same
      throw CliError(kVerify, "export-image " + chain_id + ": the stream hashes to " + got + ", not " + diff_id);
    bool replaced = false;
    out.commit(&replaced);
    if (!replaced) rollback.file(sha_fd.get(), diff_id.substr(7));
    layers.push_back(json{{"mediaType", kMtOciLayerTar}, {"digest", diff_id}, {"size", size}});
    diff_ids.push_back(diff_id);
  }
  prog.clear();

  auto write_blob = [&](const std::string& data) {
    std::string d = Hasher::digest_of(data);
    bool replaced = false;
    write_file_at(sha_fd.get(), d.substr(7), data, blobs + "/" + d.substr(7), &replaced);
    if (!replaced) rollback.file(sha_fd.get(), d.substr(7));
    return d;
  };
  std::string config_data = export_config(image_name, image_config, diff_ids, p.has("arch") ? p.get("arch") : "",
                                          p.has("os") ? p.get("os") : "", &arch, &os);
  std::string config_digest = write_blob(config_data);
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", kMtOciManifest},
                   {"config", {{"mediaType", kMtOciConfig}, {"digest", config_digest}, {"size", config_data.size()}}},
                   {"layers", layers}};
  std::string manifest_data = manifest.dump();
  std::string manifest_digest = write_blob(manifest_data);

  json kept = json::array();
  for (const auto& m : index["manifests"]) {
    bool same_ref = m.is_object() && m.contains("annotations") && m["annotations"].is_object() &&
                    m["annotations"].contains(kRefAnnotation) && m["annotations"][kRefAnnotation] == ref;
    if (!same_ref) kept.push_back(m);
  }
  kept.push_back(json{{"mediaType", kMtOciManifest},
                      {"digest", manifest_digest},
                      {"size", manifest_data.size()},
                      {"platform", {{"architecture", arch}, {"os", os}}},
                      {"annotations", {{kRefAnnotation, ref}}}});
  index["manifests"] = kept;
  std::string index_text = index.dump();
  if (!existing_layout) {
    write_file_at(dfd.get(), "oci-layout", json{{"imageLayoutVersion", "1.0.0"}}.dump(), dir + "/oci-layout");
    rollback.file(dfd.get(), "oci-layout");
  }
  check_interrupted();
  // The last step: the layout is complete once index.json names the new manifest.
  write_file_at(dfd.get(), "index.json", index_text, dir + "/index.json");
  rollback.done();
  std::printf("%s\n", manifest_digest.c_str());
  if (std::fflush(stdout) != 0) sys_fail("write standard output");
  return kOk;
}

}  // namespace cli