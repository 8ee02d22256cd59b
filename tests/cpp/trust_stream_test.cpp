// SPDX-License-Identifier: Apache-2.0
// Trust at the edges of the export stream (issue 12; docs/security.md, "The export stream"):
// - the exact driver's layer.tar replaced by a FIFO, a device or a symlink fails at once with
//   Code::Corrupt naming the path (no hang in open(2), no endless stream);
// - an exact-diff stream that runs past the registered stream size fails at once;
// - large payloads are checked block by block before any of their bytes go out;
// - a fidelity record swapped for another self-consistent one fails before its first byte;
// - diffs against any ancestor are verified, on every driver.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "core/error.h"
#include "store/store.h"
#include "tar/path.h"
#include "test_sql.h"
#include "tar/scanner.h"
#include "test_util.h"

using namespace rolayer;
using namespace rolayer::test;

namespace {

// Reads src to its end, an error, or max bytes (then ok = false, code Ok: "did not end").
Read read_bounded(ByteSource& src, size_t max) {
  Read r;
  std::vector<uint8_t> buf(1 << 16);
  try {
    for (;;) {
      size_t n = src.read(buf.data(), buf.size());
      if (n == 0) {
        r.ok = true;
        break;
      }
      r.data.append(reinterpret_cast<char*>(buf.data()), n);
      if (r.data.size() > max) break;
    }
  } catch (const Error& e) {
    r.code = e.code();
    r.message = e.what();
    r.path = e.path();
  }
  return r;
}

Read export_bounded(const LayerRef& ref, size_t max) {
  try {
    auto s = Store::tar_stream(ref);
    return read_bounded(*s, max);
  } catch (const Error& e) {
    Read r;
    r.code = e.code();
    r.message = e.what();
    r.path = e.path();
    return r;
  }
}

std::string small_tar() {
  return make_tar({{TarItem::Dir, "etc", "", 0755}, {TarItem::File, "etc/passwd", "root:x:0:0::/root:/bin/sh\n"}});
}

std::unique_ptr<Store> open_store(const std::string& root, const std::string& driver) {
  StoreOptions o;
  o.driver_name = driver;
  return Store::open(root, std::move(o));
}


// Bounds a test that opens a FIFO on the old code: after 10 s it opens the FIFO's write side
// (which lets a reader blocked in open(2) go on, to an empty stream), so the test fails instead
// of hanging. Destroying it before then stops it.
class FifoWatchdog {
 public:
  explicit FifoWatchdog(std::string path)
      : path_(std::move(path)), thread_([this] {
          for (int i = 0; i < 1000 && !done_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
          if (done_) return;
          int fd = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
          if (fd >= 0) ::close(fd);
        }) {}
  ~FifoWatchdog() {
    done_ = true;
    thread_.join();
  }

 private:
  std::string path_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// ---- item 7: the exact driver's layer.tar is not a regular file ----------------------------

TEST(ExactStoredStream, FifoInPlaceOfLayerTarFailsAtOnce) {
  TempDir d;
  auto store = open_store(d.path(), "exact");
  MemSource src(small_tar());
  auto ref = store->register_layer("", src);
  std::string file = d.path() + "/exact/" + ref->node().cache_id + "/layer.tar";
  ASSERT_EQ(::unlink(file.c_str()), 0);
  ASSERT_EQ(::mkfifo(file.c_str(), 0600), 0);
  auto t0 = std::chrono::steady_clock::now();
  Read r;
  {
    FifoWatchdog watchdog(file);
    r = export_bounded(*ref, 1 << 20);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Corrupt) << r.message;
  EXPECT_NE(r.message.find(file), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("not a regular file"), std::string::npos) << r.message;
  EXPECT_LT(secs, 5.0);
}

TEST(ExactStoredStream, CharacterDeviceInPlaceOfLayerTarFailsAtOnce) {
  TempDir d;
  auto store = open_store(d.path(), "exact");
  std::string tar = small_tar();
  MemSource src(tar);
  auto ref = store->register_layer("", src);
  std::string file = d.path() + "/exact/" + ref->node().cache_id + "/layer.tar";
  ASSERT_EQ(::unlink(file.c_str()), 0);
  if (::mknod(file.c_str(), S_IFCHR | 0600, makedev(1, 5)) != 0)  // /dev/zero's numbers
    GTEST_SKIP() << "cannot make a character device here (" << std::strerror(errno)
                 << "): needs CAP_MKNOD; the FIFO case covers the open";
  Read r = export_bounded(*ref, tar.size() + (64u << 20));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Corrupt) << (r.message.empty() ? "no error after " + std::to_string(r.data.size()) + " bytes"
                                                         : r.message);
  EXPECT_NE(r.message.find("not a regular file"), std::string::npos) << r.message;
  EXPECT_EQ(r.data.size(), 0u);
}

TEST(ExactStoredStream, SymlinkInPlaceOfLayerTarIsCorrupt) {
  TempDir d;
  auto store = open_store(d.path(), "exact");
  std::string tar = small_tar();
  MemSource src(tar);
  auto ref = store->register_layer("", src);
  std::string file = d.path() + "/exact/" + ref->node().cache_id + "/layer.tar";
  std::string elsewhere = d.path() + "/elsewhere.tar";
  ASSERT_EQ(::rename(file.c_str(), elsewhere.c_str()), 0);
  ASSERT_EQ(::symlink(elsewhere.c_str(), file.c_str()), 0);
  Read r = export_bounded(*ref, 1 << 20);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Corrupt) << r.message;
  EXPECT_NE(r.message.find(file), std::string::npos) << r.message;
}

TEST(ExactStoredStream, FifoInPlaceOfParentRecordFailsAtOnce) {
  TempDir d;
  auto store = open_store(d.path(), "exact");
  MemSource src(small_tar());
  auto ref = store->register_layer("", src);
  std::string file = d.path() + "/exact/" + ref->node().cache_id + "/parent";
  ASSERT_EQ(::unlink(file.c_str()), 0);
  ASSERT_EQ(::mkfifo(file.c_str(), 0600), 0);
  auto t0 = std::chrono::steady_clock::now();
  Read r;
  {
    FifoWatchdog watchdog(file);
    r = export_bounded(*ref, 1 << 20);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Corrupt) << r.message;
  EXPECT_LT(secs, 5.0);
}

// ---- the exact driver's layer folders, opened beneath its folder's descriptor ---------------

// Counts the opens inside a directory (inotify IN_OPEN), to prove nothing there is read.
struct OpenWatch {
  int fd = -1;
  explicit OpenWatch(const std::string& dir) {
    fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd >= 0 && ::inotify_add_watch(fd, dir.c_str(), IN_OPEN | IN_ACCESS | IN_MODIFY | IN_CREATE) < 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~OpenWatch() {
    if (fd >= 0) ::close(fd);
  }
  int events() const {
    int n = 0;
    alignas(struct inotify_event) char buf[8192];
    for (;;) {
      ssize_t got = ::read(fd, buf, sizeof buf);
      if (got <= 0) break;
      for (char* p = buf; p < buf + got;) {
        auto* ev = reinterpret_cast<struct inotify_event*>(p);
        ++n;
        p += sizeof(struct inotify_event) + ev->len;
      }
    }
    return n;
  }
};

TEST(ExactLayerFolder, SymlinkInPlaceOfLayerFolderIsCorruptAndNothingOutsideIsTouched) {
  // issue 12: a symlink planted for <root>/exact/<id> (pointing to a copy of the folder outside
  // the store) is refused with Code::Corrupt naming the path, and no file of the copy is opened.
  TempDir d;
  auto store = open_store(d.path(), "exact");
  std::string tar = small_tar();
  MemSource src(tar);
  auto ref = store->register_layer("", src);
  const std::string folder = d.path() + "/exact/" + ref->node().cache_id;
  const std::string outside = d.path() + "/outside";
  ASSERT_EQ(::rename(folder.c_str(), outside.c_str()), 0);
  ASSERT_EQ(::symlink(outside.c_str(), folder.c_str()), 0);
  OpenWatch watch(outside);
  if (watch.fd < 0) GTEST_SKIP() << "inotify is not available here: " << std::strerror(errno);
  Read r = export_bounded(*ref, 1 << 20);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Corrupt) << r.message;
  EXPECT_NE(r.message.find(folder), std::string::npos) << r.message;
  EXPECT_EQ(r.data.size(), 0u);
  // A child registered on it (its parent's folder is not read; the child's own is new).
  MemSource child_src(make_tar({{TarItem::File, "etc/hosts", "127.0.0.1 localhost\n"}}));
  std::unique_ptr<LayerRef> child;
  try {
    child = store->register_layer(ref->node().chain_id.str(), child_src);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::Corrupt) << e.what();
  }
  if (child) store->release(*child);
  EXPECT_EQ(watch.events(), 0) << "a file outside the store was opened through the planted link";
  // Removing the layer unlinks the link, never what it points to.
  store->release(*ref);
  ref.reset();
  store.reset();
  struct stat st {};
  EXPECT_EQ(::lstat((outside + "/layer.tar").c_str(), &st), 0);
  EXPECT_EQ(::lstat((outside + "/parent").c_str(), &st), 0);
  EXPECT_EQ(watch.events(), 0) << "a file outside the store was opened through the planted link";
}

TEST(ExactLayerFolder, FolderSwappedForASymlinkDuringUseIsNeverFollowed) {
  // The race the lstat-then-open-by-name check left open: the folder is swapped for a symlink to
  // an exact copy of it outside the store (RENAME_EXCHANGE) over and over while the layer is
  // exported. Every export either reads the store's own folder or fails with Code::Corrupt; no
  // file of the copy is ever opened.
  TempDir d;
  auto store = open_store(d.path(), "exact");
  std::string tar = small_tar();
  MemSource src(tar);
  auto ref = store->register_layer("", src);
  const std::string folder = d.path() + "/exact/" + ref->node().cache_id;
  const std::string outside = d.path() + "/outside";
  const std::string swap = d.path() + "/exact/.swap";
  ASSERT_EQ(::mkdir(outside.c_str(), 0700), 0);
  for (const char* f : {"parent", "layer.tar"}) {
    std::ifstream in(folder + "/" + f, std::ios::binary);
    std::ofstream out(outside + "/" + f, std::ios::binary);
    out << in.rdbuf();
  }
  ASSERT_EQ(::symlink(outside.c_str(), swap.c_str()), 0);
  if (::renameat2(AT_FDCWD, swap.c_str(), AT_FDCWD, folder.c_str(), RENAME_EXCHANGE) != 0)
    GTEST_SKIP() << "renameat2(RENAME_EXCHANGE) is not supported here: " << std::strerror(errno);
  ASSERT_EQ(::renameat2(AT_FDCWD, swap.c_str(), AT_FDCWD, folder.c_str(), RENAME_EXCHANGE), 0);
  OpenWatch watch(outside);
  if (watch.fd < 0) GTEST_SKIP() << "inotify is not available here: " << std::strerror(errno);

  std::atomic<bool> stop{false};
  std::atomic<long> swaps{0};
  std::thread flipper([&] {
    while (!stop) {
      if (::renameat2(AT_FDCWD, swap.c_str(), AT_FDCWD, folder.c_str(), RENAME_EXCHANGE) == 0) ++swaps;
    }
  });
  int ok = 0, corrupt = 0, other = 0;
  std::string other_msg;
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1500)) {
    Read r = export_bounded(*ref, 1 << 20);
    if (r.ok && r.data == tar) {
      ++ok;
    } else if (r.code == Code::Corrupt) {
      ++corrupt;
    } else {
      ++other;
      other_msg = r.message;
    }
  }
  stop = true;
  flipper.join();
  // Back in place (an even number of swaps), for the release below.
  if (swaps % 2) {
    ASSERT_EQ(::renameat2(AT_FDCWD, swap.c_str(), AT_FDCWD, folder.c_str(), RENAME_EXCHANGE), 0);
  }
  std::printf("exports: %d whole, %d refused as corrupt, %d other; %ld swaps\n", ok, corrupt, other,
              swaps.load());
  EXPECT_EQ(other, 0) << other_msg;
  EXPECT_GT(corrupt, 0) << "the planted link was never seen";
  EXPECT_EQ(watch.events(), 0) << "a file outside the store was opened through the swapped-in link";
  store->release(*ref);
}

// ---- a caller's driver with exact diffs whose diff never ends -----------------------------

class EndlessSource : public ByteSource {
 public:
  explicit EndlessSource(std::string head) : head_(std::move(head)) {}
  size_t read(uint8_t* buf, size_t cap) override {
    size_t n = 0;
    while (n < cap && pos_ < head_.size()) buf[n++] = static_cast<uint8_t>(head_[pos_++]);
    if (n < cap) std::memset(buf + n, 0, cap - n);
    return cap;  // zeros forever after the stored bytes
  }

 private:
  std::string head_;
  size_t pos_ = 0;
};

// Keeps each layer's stream in memory and claims exact diffs; its diff never ends.
class EndlessDriver : public Driver {
 public:
  std::string name() const override { return "endless"; }
  DriverCaps caps() const override { return DriverCaps{true}; }
  std::vector<std::string> init(const std::string&) override { return {}; }
  void create(const std::string& id, const std::string&) override { data_[id]; }
  void remove(const std::string& id) override { data_.erase(id); }
  int64_t apply_diff(const std::string& id, const std::string&, ByteSource& tar) override {
    data_[id] = read_all(tar);
    return static_cast<int64_t>(data_[id].size());
  }
  std::unique_ptr<ByteSource> diff(const std::string& id, const std::string&) override {
    return std::make_unique<EndlessSource>(data_.at(id));
  }
  std::unique_ptr<PayloadSession> payloads(const std::string&) override {
    throw Error(Code::Unsupported, "no payloads");
  }
  std::vector<std::pair<std::string, std::string>> metadata(const std::string&) override { return {}; }

 private:
  std::map<std::string, std::string> data_;
};

TEST(ExactStoredStream, CallersExactDiffPastTheRegisteredSizeFailsAtOnce) {
  TempDir d;
  StoreOptions o;
  o.driver = std::make_unique<EndlessDriver>();
  auto store = Store::open(d.path(), std::move(o));
  std::string tar = small_tar();
  MemSource src(tar);
  auto ref = store->register_layer("", src);
  ASSERT_EQ(ref->node().stream_size, static_cast<int64_t>(tar.size()));
  Read r = export_bounded(*ref, tar.size() + (64u << 20));
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.code == Code::Corrupt || r.code == Code::Digest)
      << (r.message.empty() ? "no error after " + std::to_string(r.data.size()) + " bytes" : r.message);
  // Nothing beyond the registered size went out (with block sums: nothing at all, the first
  // block already differs).
  EXPECT_LE(r.data.size(), tar.size());
  // A layer registered before block sums existed: the registered size alone stops it.
  {
    Sql db(d.path() + "/metadata.db");
    db.exec("UPDATE layers SET stream_blocks = NULL");
  }
  r = export_bounded(*ref, tar.size() + (64u << 20));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Corrupt) << (r.message.empty() ? "no error after " + std::to_string(r.data.size()) + " bytes"
                                                         : r.message);
  EXPECT_NE(r.message.find("longer than"), std::string::npos) << r.message;
  EXPECT_LE(r.data.size(), tar.size());
}

// ---- the fidelity record is bound to its layer --------------------------------------------


// Two layers whose streams differ only in a header (the set-uid bit of bin/tool): the records
// are both self-consistent and their payloads are the same, so the dir driver's files of one
// satisfy the other's record.
struct TwinLayers {
  TempDir d;
  std::string a_chain, b_chain, a_tar;
  TwinLayers() {
    std::string content(5000, 'x');
    a_tar = make_tar({{TarItem::Dir, "bin", "", 0755}, {TarItem::File, "bin/tool", content, 0755}});
    std::string b_tar = make_tar({{TarItem::Dir, "bin", "", 0755}, {TarItem::File, "bin/tool", content, 04755}});
    auto store = open_store(d.path(), "dir");
    MemSource sa(a_tar), sb(b_tar);
    auto a = store->register_layer("", sa);
    auto b = store->register_layer("", sb);
    store->retain(a->node().chain_id.str());
    store->retain(b->node().chain_id.str());
    a_chain = a->node().chain_id.str();
    b_chain = b->node().chain_id.str();
  }
  // a's export from a store opened now (the digests are read at each export).
  Read export_a() const {
    auto store = open_store(d.path(), "dir");
    return export_bounded(*store->get(a_chain), 1 << 20);
  }
  void exec(const std::string& statement) const { Sql(d.path() + "/metadata.db").exec(statement); }
  // Replaces a's stored record with b's (self-consistent, and b's files satisfy it).
  void give_a_the_record_of_b() const {
    Sql db(d.path() + "/metadata.db");
    db.exec("DELETE FROM records WHERE chain_id = '" + a_chain + "'");
    db.exec("INSERT INTO records (chain_id, seq, data) SELECT '" + a_chain + "', seq, data FROM records WHERE chain_id = '" +
            b_chain + "'");
  }
};

TEST(RecordBinding, SwappedRecordFailsBeforeTheFirstByte) {
  TwinLayers t;
  ASSERT_NE(t.a_chain, t.b_chain);
  t.give_a_the_record_of_b();
  auto store = open_store(t.d.path(), "dir");
  auto a = store->get(t.a_chain);
  Read r = export_bounded(*a, 1 << 20);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Corrupt) << r.message;
  EXPECT_NE(r.message.find("not the one registered"), std::string::npos) << r.message;
  EXPECT_EQ(r.data.size(), 0u) << "bytes of the swapped record went out before the error";
  // The other layer is untouched.
  auto b = store->get(t.b_chain);
  EXPECT_TRUE(export_bounded(*b, 1 << 20).ok);
}

TEST(RecordBinding, ExtraOrMissingChunkIsRefused) {
  TwinLayers t;
  {
    Sql db(t.d.path() + "/metadata.db");
    db.exec("INSERT INTO records (chain_id, seq, data) SELECT chain_id, seq + 1, data FROM records WHERE chain_id = '" +
            t.a_chain + "'");
  }
  auto store = open_store(t.d.path(), "dir");
  auto a = store->get(t.a_chain);
  Read r = export_bounded(*a, 1 << 20);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Corrupt) << r.message;
}

TEST(RecordBinding, RowsWithoutDigestsReadAsBefore) {
  TwinLayers t;
  {
    Sql db(t.d.path() + "/metadata.db");
    db.exec("UPDATE layers SET record_digests = NULL");
  }
  auto store = open_store(t.d.path(), "dir");
  auto a = store->get(t.a_chain);
  Read r = export_bounded(*a, 1 << 20);
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.data, t.a_tar);
}

// Since session 8 a row also binds the record's stored chunks, checked as they are read; the
// body is then not hashed again. A row with chunk digests ignores its body digests (kept for
// older libraries): on the old code this export failed at body block 0.
TEST(RecordBinding, RowsWithChunkDigestsDoNotHashTheBodyAgain) {
  TwinLayers t;
  {
    Sql db(t.d.path() + "/metadata.db");
    const std::string q = "SELECT CAST(record_digests AS TEXT) FROM layers WHERE chain_id = '" + t.a_chain + "'";
    ASSERT_FALSE(db.text("SELECT record_chunk_digests FROM layers WHERE chain_id = '" + t.a_chain + "'").empty());
    const std::string before = db.text(q);
    db.exec("UPDATE layers SET record_digests = CAST(replace(replace(CAST(record_digests AS TEXT), 'a', 'b'), '0', '1') AS BLOB)");
    ASSERT_NE(db.text(q), before);
  }
  Read r = t.export_a();
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.data, t.a_tar);
}

TEST(RecordBinding, AChangedChunkIsNamedBeforeTheFirstByte) {
  TwinLayers t;
  {
    Sql db(t.d.path() + "/metadata.db");
    auto chunks = db.blobs(t.a_chain);
    ASSERT_EQ(chunks.size(), 1u);
    std::string c = chunks[0].second;
    c.back() ^= 1;  // the frame's checksum: the decoder would find it only at the end
    db.set_blob(t.a_chain, 0, c);
  }
  Read r = t.export_a();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Corrupt) << r.message;
  EXPECT_NE(r.message.find("not the one registered"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("chunk 0 differs"), std::string::npos) << r.message;
  EXPECT_EQ(r.data.size(), 0u);
}

// A row without chunk digests (registered by an older library) is checked by its body digests,
// as before: a swapped record still fails before its first byte.
TEST(RecordBinding, RowsWithoutChunkDigestsAreCheckedByTheirBody) {
  TwinLayers t;
  t.exec("UPDATE layers SET record_chunk_digests = NULL");
  Read ok = t.export_a();
  EXPECT_TRUE(ok.ok) << ok.message;
  EXPECT_EQ(ok.data, t.a_tar);
  t.give_a_the_record_of_b();
  Read r = t.export_a();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Corrupt) << r.message;
  EXPECT_NE(r.message.find("body block 0 differs"), std::string::npos) << r.message;
  EXPECT_EQ(r.data.size(), 0u);
}

// What binding the stored chunks gives up (docs/record-format.md): a record compressed again
// differently no longer reads while the row binds its chunks; with the chunk digests cleared
// (what a tool that rewrites records must do, or rewrite them) the body binding accepts it.
TEST(RecordBinding, ARecordCompressedAgainReadsOnlyByItsBody) {
  TwinLayers t;
  std::string rec;
  {
    Sql db(t.d.path() + "/metadata.db");
    for (auto& c : db.blobs(t.a_chain)) rec += c.second;
  }
  const size_t header = 8;
  ASSERT_GT(rec.size(), header);
  std::string body;
  {
    ZSTD_DCtx* d = ZSTD_createDCtx();
    ZSTD_inBuffer in{rec.data() + header, rec.size() - header, 0};
    std::string out(1 << 16, '\0');
    for (;;) {
      ZSTD_outBuffer o{out.data(), out.size(), 0};
      size_t rc = ZSTD_decompressStream(d, &o, &in);
      ASSERT_FALSE(ZSTD_isError(rc)) << ZSTD_getErrorName(rc);
      body.append(out.data(), o.pos);
      if (rc == 0) break;
    }
    ZSTD_freeDCtx(d);
  }
  std::string again(ZSTD_compressBound(body.size()), '\0');
  {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 19);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    size_t n = ZSTD_compress2(c, again.data(), again.size(), body.data(), body.size());
    ASSERT_FALSE(ZSTD_isError(n));
    again.resize(n);
    ZSTD_freeCCtx(c);
  }
  ASSERT_NE(again, rec.substr(header));
  {
    Sql db(t.d.path() + "/metadata.db");
    db.exec("DELETE FROM records WHERE chain_id = '" + t.a_chain + "' AND seq > 0");
    db.set_blob(t.a_chain, 0, rec.substr(0, header) + again);
  }
  {
    Read r = t.export_a();
    EXPECT_EQ(r.code, Code::Corrupt) << r.message;
    EXPECT_NE(r.message.find("chunk 0 differs"), std::string::npos) << r.message;
    EXPECT_EQ(r.data.size(), 0u);
  }
  t.exec("UPDATE layers SET record_chunk_digests = NULL WHERE chain_id = '" + t.a_chain + "'");
  Read r = t.export_a();
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.data, t.a_tar);
}

// ---- large payloads: each 1 MiB block is checked before it goes out --------------------------

TEST(LargePayloadBlocks, DamagedBlockFailsBeforeItsBytesGoOut) {
  TempDir d;
  auto store = open_store(d.path(), "dir");
  const size_t kMiB = 1 << 20;
  std::string content = pseudo_random(3 * kMiB + 100, 1);
  std::string tar = make_tar({{TarItem::Dir, "data", "", 0755}, {TarItem::File, "data/big.bin", content, 0644}});
  size_t start = tar.find(content.substr(0, 256));
  ASSERT_NE(start, std::string::npos);
  MemSource src(tar);
  auto ref = store->register_layer("", src);
  ASSERT_EQ(export_bounded(*ref, tar.size()).data, tar);
  for (size_t at : {kMiB + kMiB / 2, 3 * kMiB + 50, size_t{10}}) {
    std::string file = d.path() + "/dir/" + ref->node().cache_id + "/diff/data/big.bin";
    int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    char c;
    ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(at)), 1);
    char flipped = static_cast<char>(c ^ 0x40);
    ASSERT_EQ(::pwrite(fd, &flipped, 1, static_cast<off_t>(at)), 1);
    Read r = export_bounded(*ref, tar.size() + kMiB);
    ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(at)), 1);
    ::close(fd);
    EXPECT_FALSE(r.ok) << "damage at " << at;
    EXPECT_EQ(r.code, Code::Corrupt) << r.message;
    EXPECT_EQ(r.path, "data/big.bin");
    // No byte of the damaged block (and nothing after it) went out.
    size_t block_start = start + (at / kMiB) * kMiB;
    EXPECT_LE(r.data.size(), block_start) << "damage at " << at << ": " << r.data.size()
                                          << " bytes out, the damaged block starts at " << block_start;
    EXPECT_EQ(r.data, tar.substr(0, r.data.size()));
  }
  // Restored: verified again, with reads of every size.
  for (size_t cap : {size_t{1} << 20, size_t{4096}, size_t{(1 << 20) + 1}, size_t{8} << 20}) {
    auto s = Store::tar_stream(*ref);
    std::string out;
    std::vector<uint8_t> buf(cap);
    for (size_t n; (n = s->read(buf.data(), cap)) > 0;) out.append(reinterpret_cast<char*>(buf.data()), n);
    EXPECT_EQ(out, tar) << cap;
  }
}

TEST(LargePayloadBlocks, ExactStreamDamagedBlockFailsBeforeItsBytesGoOut) {
  TempDir d;
  auto store = open_store(d.path(), "exact");
  const size_t kMiB = 1 << 20;
  std::string content = pseudo_random(3 * kMiB + 100, 2);
  std::string tar = make_tar({{TarItem::File, "big.bin", content, 0644}});
  MemSource src(tar);
  auto ref = store->register_layer("", src);
  ASSERT_EQ(export_bounded(*ref, tar.size()).data, tar);
  std::string file = d.path() + "/exact/" + ref->node().cache_id + "/layer.tar";
  for (size_t at : {kMiB + kMiB / 2, 3 * kMiB + 50, size_t{600}}) {
    int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    char c;
    ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(at)), 1);
    char flipped = static_cast<char>(c ^ 0x40);
    ASSERT_EQ(::pwrite(fd, &flipped, 1, static_cast<off_t>(at)), 1);
    Read r = export_bounded(*ref, tar.size() + kMiB);
    ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(at)), 1);
    ::close(fd);
    EXPECT_FALSE(r.ok) << "damage at " << at;
    // The DiffID's error (as the Docker engine reports a modified stream), at the damaged block.
    EXPECT_EQ(r.code, Code::Digest) << r.message;
    EXPECT_EQ(r.message.rfind("could not verify layer data for: " + ref->node().diff_id.str(), 0), 0u) << r.message;
    size_t block_start = (at / kMiB) * kMiB;
    EXPECT_LE(r.data.size(), block_start) << "damage at " << at << ": " << r.data.size()
                                          << " bytes out, the damaged block starts at " << block_start;
    EXPECT_EQ(r.data, tar.substr(0, r.data.size()));
  }
  // A truncated or extended layer.tar fails too.
  ASSERT_EQ(::truncate(file.c_str(), static_cast<off_t>(2 * kMiB)), 0);
  Read r = export_bounded(*ref, tar.size() + kMiB);
  EXPECT_EQ(r.code, Code::Digest) << r.message;
  EXPECT_EQ(r.data.size(), 2 * kMiB);
  for (size_t cap : {size_t{1} << 20, size_t{4096}, size_t{(1 << 20) + 1}}) {
    std::ofstream(file, std::ios::binary | std::ios::trunc) << tar;
    auto s = Store::tar_stream(*ref);
    std::string out;
    std::vector<uint8_t> buf(cap);
    for (size_t n; (n = s->read(buf.data(), cap)) > 0;) out.append(reinterpret_cast<char*>(buf.data()), n);
    EXPECT_EQ(out, tar) << cap;
  }
}

// ---- verified diffs from any ancestor, on every driver --------------------------------------

// path -> content ("<dir>" for a directory), in archive order; libarchive reads the diff.
std::vector<std::pair<std::string, std::string>> entries_of(const std::string& tar, bool data = true) {
  std::vector<std::pair<std::string, std::string>> out;
  struct archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_open_memory(a, tar.data(), tar.size());
  struct archive_entry* e;
  int rc;
  while ((rc = archive_read_next_header(a, &e)) == ARCHIVE_OK || rc == ARCHIVE_WARN) {
    std::string name = archive_entry_pathname(e);
    while (!name.empty() && name.back() == '/') name.pop_back();
    if (archive_entry_filetype(e) == AE_IFDIR) {
      out.emplace_back(name, "<dir>");
      continue;
    }
    std::string content;
    if (data) {
      char buf[4096];
      for (la_ssize_t n; (n = archive_read_data(a, buf, sizeof buf)) > 0;) content.append(buf, static_cast<size_t>(n));
    } else {
      archive_read_data_skip(a);  // names only (a sparse file may be terabytes of holes)
    }
    out.emplace_back(name, content);
  }
  EXPECT_EQ(rc, ARCHIVE_EOF) << archive_error_string(a);
  archive_read_free(a);
  return out;
}

std::map<std::string, std::string> as_map(const std::vector<std::pair<std::string, std::string>>& v) {
  std::map<std::string, std::string> m;
  for (const auto& [k, d] : v) m[k] = d;  // later entries win (a directory may come twice)
  return m;
}

struct Chain {
  TempDir d;
  std::unique_ptr<Store> store;
  std::unique_ptr<LayerRef> l1, l2, l3;
  explicit Chain(const std::string& driver) {
    store = open_store(d.path(), driver);
    MemSource s1(make_tar({{TarItem::Dir, "a", "", 0755},
                           {TarItem::File, "a/f1", "one"},
                           {TarItem::File, "a/f2", "two"},
                           {TarItem::File, "b", "bee"},
                           {TarItem::Dir, "c", "", 0755},
                           {TarItem::File, "c/x", "ex"}}));
    l1 = store->register_layer("", s1);
    MemSource s2(make_tar({{TarItem::File, "a/f1", "ONE, longer"},
                           {TarItem::File, ".wh.b", ""},
                           {TarItem::Dir, "c", "", 0700},
                           {TarItem::File, "c/.wh..wh..opq", ""},
                           {TarItem::File, "c/y", "why"}}));
    l2 = store->register_layer(l1->node().chain_id.str(), s2);
    MemSource s3(make_tar({{TarItem::File, "d", "dee"}, {TarItem::File, "a/.wh.f2", ""}}));
    l3 = store->register_layer(l2->node().chain_id.str(), s3);
  }
};

class VerifiedDiffTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VerifiedDiffTest, WholeChainIsFlattened) {
  Chain c(GetParam());
  Read r = read_bounded(*Store::tar_stream_from(*c.l3, ""), 1 << 20);
  ASSERT_TRUE(r.ok) << r.message;
  auto m = as_map(entries_of(r.data));
  std::map<std::string, std::string> want = {
      {"a", "<dir>"}, {"a/f1", "ONE, longer"}, {"c", "<dir>"}, {"c/y", "why"}, {"d", "dee"}};
  EXPECT_EQ(m, want);
  // Parents come before their children.
  auto v = entries_of(r.data);
  std::map<std::string, size_t> first;
  for (size_t i = 0; i < v.size(); ++i) first.emplace(v[i].first, i);
  EXPECT_LT(first["a"], first["a/f1"]);
  EXPECT_LT(first["c"], first["c/y"]);
}

TEST_P(VerifiedDiffTest, FromAnOlderAncestorKeepsWhiteouts) {
  Chain c(GetParam());
  Read r = read_bounded(*Store::tar_stream_from(*c.l3, c.l1->node().chain_id.str()), 1 << 20);
  ASSERT_TRUE(r.ok) << r.message;
  auto m = as_map(entries_of(r.data));
  std::map<std::string, std::string> want = {{"a/f1", "ONE, longer"}, {".wh.b", ""},   {"c", "<dir>"},
                                             {"c/.wh..wh..opq", ""},   {"c/y", "why"}, {"d", "dee"},
                                             {"a/.wh.f2", ""}};
  EXPECT_EQ(m, want);
}

TEST_P(VerifiedDiffTest, DiffAgainstTheParentIsTheVerifiedRegisteredStream) {
  Chain c(GetParam());
  Read r = read_bounded(*Store::tar_stream_from(*c.l3, c.l2->node().chain_id.str()), 1 << 20);
  ASSERT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.data, read_bounded(*Store::tar_stream(*c.l3), 1 << 20).data);
}

// A payload damaged in a middle layer: every diff that includes it fails with Corrupt
// (Digest at the latest) instead of handing out the damaged bytes unverified.
TEST_P(VerifiedDiffTest, DamagedPayloadInAMiddleLayerIsDetected) {
  Chain c(GetParam());
  std::string dir = c.d.path() + "/" + GetParam() + "/" + c.l2->node().cache_id;
  if (GetParam() == "exact") {
    std::string file = dir + "/layer.tar";
    std::string t = read_all(*Store::tar_stream(*c.l2));
    size_t at = t.find("ONE, longer");
    ASSERT_NE(at, std::string::npos);
    int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "onE", 3, static_cast<off_t>(at)), 3);
    ::close(fd);
  } else {
    std::string file = dir + "/diff/a/f1";
    int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "onE", 3, 0), 3);
    ::close(fd);
  }
  for (const std::string& anc : {std::string(), c.l1->node().chain_id.str()}) {
    Read r;
    try {
      r = read_bounded(*Store::tar_stream_from(*c.l3, anc), 1 << 20);
    } catch (const Error& e) {
      r.code = e.code();
      r.message = e.what();
    }
    EXPECT_FALSE(r.ok) << "ancestor '" << anc << "'";
    EXPECT_TRUE(r.code == Code::Corrupt || r.code == Code::Digest) << r.message;
    EXPECT_EQ(r.data.find("onE, longer"), std::string::npos) << "the damaged payload went out";
  }
}

INSTANTIATE_TEST_SUITE_P(Drivers, VerifiedDiffTest, ::testing::Values("dir", "exact"),
                         [](const auto& info) { return info.param; });

// The cleaned paths of a tar's entries, as the store's scanner reads them ("" = the root aside).
std::set<std::string> scanned_paths(const std::string& tar) {
  struct H : tar::ScanHandler {
    tar::SafetyChecker safety;
    std::set<std::string> paths;
    void on_raw(const uint8_t*, size_t) override {}
    void on_payload(const uint8_t*, size_t) override {}
    void on_entry_end() override {}
    void on_entry(const tar::Entry& e) override {
      std::string p = safety.check(e);
      if (!p.empty()) paths.insert(p);
    }
  } h;
  tar::Scanner sc(h);
  sc.feed(reinterpret_cast<const uint8_t*>(tar.data()), tar.size());
  sc.finish();
  return h.paths;
}

// Every well-formed corpus archive (sparse files of every format, long names, pax and GNU
// headers, trailing bytes) as the base of a two-layer chain: the flattened chain copies each
// surviving entry whole, so libarchive reads in it the base's entries and the top layer's.
TEST_P(VerifiedDiffTest, CorpusArchivesFlatten) {
  auto corpus = load_corpus();
  if (corpus.empty()) GTEST_SKIP() << "corpus not found (../shared/corpus or ROLAYER_CORPUS)";
  int tried = 0;
  for (const auto& cf : corpus) {
    if (cf.expect != "well-formed" || cf.data.size() > (4u << 20)) continue;
    TempDir d;
    auto store = open_store(d.path(), GetParam());
    std::unique_ptr<LayerRef> base;
    try {
      MemSource src(cf.data);
      base = store->register_layer("", src);
    } catch (const Error&) {
      continue;  // refused on purpose (see corpus_store_test.cpp)
    }
    std::string top_tar = make_tar({{TarItem::File, "zz-top-layer-file", "top"}});
    MemSource src2(top_tar);
    auto top = store->register_layer(base->node().chain_id.str(), src2);
    Read r = read_bounded(*Store::tar_stream_from(*top, ""), cf.data.size() + (1 << 20));
    ASSERT_TRUE(r.ok) << cf.file << ": " << r.message;
    // The store's own reader is the oracle (libarchive reads some of these archives
    // differently, e.g. Solaris SUN.holesdata): the flattened chain must scan as a well-formed
    // archive holding the base's paths (whiteouts aside) and the top layer's.
    std::set<std::string> want_names = scanned_paths(cf.data), got_names;
    for (auto it = want_names.begin(); it != want_names.end();)
      it = it->find(".wh.") != std::string::npos ? want_names.erase(it) : std::next(it);
    want_names.insert("zz-top-layer-file");
    try {
      got_names = scanned_paths(r.data);
    } catch (const Error& e) {
      ADD_FAILURE() << cf.file << ": the flattened chain does not scan: " << e.what();
      continue;
    }
    EXPECT_EQ(got_names, want_names) << cf.file;
    ++tried;
  }
  std::printf("[ flatten ] %d corpus archives flattened on %s\n", tried, GetParam().c_str());
}

}  // namespace
