// SPDX-License-Identifier: Apache-2.0
// lib/dockerdb on a small data root written by dockerd 20.10 (vfs) and committed to the repo
// (tests/docker/fixture-vfs, made by tests/docker/make_fixture.sh), and on damaged or hostile
// copies of it. No daemon needed.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <atomic>
#include <cstring>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "digest/digest.h"
#include "dockerdb/dockerdb.h"
#include "test_util.h"

namespace fs = std::filesystem;
using rolayer::Code;
using rolayer::Error;
using rolayer::dockerdb::DataRoot;

namespace {

const std::string kBase = "sha256:b1162fda67a9705057b015ca3aa2c7321b0ffcf47ae8742153cd3f2272a975f7";
const std::string kTopDiff = "sha256:1e92951b88c83031f52e5273ebb8041940c79517180d3116b12e88fcec515236";
const std::string kTop = "sha256:3a073f3d534f5cf51952ef675d12f55dd4c9846525dc296bc30177bd8c03631c";
const std::string kImage = "sha256:0cdbefabc28cdeb828f3d705c17eb03cdba4626d8ec6026ee09e1d1f3aeffb89";

std::string fixture() { return std::string(ROLAYER_SOURCE_DIR) + "/tests/docker/fixture-vfs"; }

std::string read_stream(rolayer::ByteSource& s) { return rolayer::test::read_all(s); }

// A writable copy of the fixture.
struct Copy {
  rolayer::test::TempDir tmp;
  std::string root;
  Copy() {
    root = tmp.path() + "/root";
    fs::copy(fixture(), root, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  }
  std::string top_dir() const { return dir_of(kTop); }
  std::string dir_of(const std::string& chain) const {
    return root + "/vfs/dir/" + DataRoot::open(root)->layer(chain).cache_id;
  }
  std::string meta(const std::string& chain, const std::string& f) const {
    return root + "/image/vfs/layerdb/sha256/" + chain.substr(7) + "/" + f;
  }
};

void write_file(const std::string& p, const std::string& data) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << data;
}
std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string gzip(const std::string& data) {
  struct archive* a = archive_write_new();
  archive_write_add_filter_gzip(a);
  archive_write_set_format_raw(a);
  archive_write_set_bytes_in_last_block(a, 1);
  std::vector<char> buf(data.size() + 4096);
  size_t used = 0;
  archive_write_open_memory(a, buf.data(), buf.size(), &used);
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_filetype(e, AE_IFREG);
  archive_write_header(a, e);
  archive_write_data(a, data.data(), data.size());
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  return std::string(buf.data(), used);
}

// Verify and return the error (code and message); Code::Ok when it passed.
Error verify_error(const std::string& root, const std::string& chain) {
  try {
    DataRoot::open(root)->verify(chain);
  } catch (const Error& e) {
    return e;
  }
  return Error(Code::Ok, "");
}

// A listing of the tree with sizes and mtimes: nothing may change under the data root.
std::map<std::string, std::string> snapshot(const std::string& root) {
  std::map<std::string, std::string> m;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    struct stat st;
    lstat(it->path().c_str(), &st);
    m[it->path().string()] = std::to_string(st.st_size) + "/" + std::to_string(st.st_mtim.tv_sec) + "." +
                             std::to_string(st.st_mtim.tv_nsec) + "/" + std::to_string(st.st_mode);
  }
  return m;
}

}  // namespace

TEST(DockerDb, Crc64IsoMatchesGo) {
  // Go: crc64.Checksum([]byte("123456789"), crc64.MakeTable(crc64.ISO)) = 0xb90956c775a41001
  const std::string s = "123456789";
  EXPECT_EQ(rolayer::dockerdb::crc64_iso(0, reinterpret_cast<const uint8_t*>(s.data()), s.size()),
            0xb90956c775a41001ULL);
  // Incremental over an odd split equals one pass (the 8-byte path and the byte path agree).
  std::string big(1000, '\0');
  for (size_t i = 0; i < big.size(); i++) big[i] = static_cast<char>(i * 7 + 3);
  auto p = reinterpret_cast<const uint8_t*>(big.data());
  uint64_t whole = rolayer::dockerdb::crc64_iso(0, p, big.size());
  EXPECT_EQ(rolayer::dockerdb::crc64_iso(rolayer::dockerdb::crc64_iso(0, p, 13), p + 13, big.size() - 13), whole);
}

TEST(DockerDb, ListsTheFixtureLayersParentsFirst) {
  auto root = DataRoot::open(fixture());
  EXPECT_EQ(root->driver(), "vfs");
  auto ls = root->layers();
  ASSERT_EQ(ls.size(), 2u);
  EXPECT_EQ(ls[0].chain_id, kBase);
  EXPECT_EQ(ls[0].diff_id, kBase);
  EXPECT_EQ(ls[0].parent, "");
  EXPECT_EQ(ls[0].size, 3012);
  EXPECT_EQ(ls[1].chain_id, kTop);
  EXPECT_EQ(ls[1].diff_id, kTopDiff);
  EXPECT_EQ(ls[1].parent, kBase);
  EXPECT_EQ(ls[1].cache_id.size(), 64u);
  EXPECT_EQ(ls[1].descriptor_digest, "");  // docker load records no descriptor
}

TEST(DockerDb, StreamsReassembleToTheDiffIds) {
  auto root = DataRoot::open(fixture(), "vfs");
  for (const auto& [chain, diff] : {std::pair{kBase, kBase}, std::pair{kTop, kTopDiff}}) {
    auto s = root->open_stream(chain);
    std::string tar = read_stream(*s);
    EXPECT_EQ(tar.size(), 10240u);
    EXPECT_EQ("sha256:" + rolayer::test::sha256_hex(tar), diff);
  }
  // The top layer's payload comes from its own (vfs: full) directory: the changed file.
  std::string top = read_stream(*root->open_stream(kTop));
  EXPECT_NE(top.find("changed\n"), std::string::npos);
  EXPECT_EQ(top.find("hello world"), std::string::npos);
  EXPECT_EQ(root->verify(kTop), 10240);
}

TEST(DockerDb, ResolvesNamesImageIdsAndChainIds) {
  auto root = DataRoot::open(fixture());
  std::vector<std::string> chain = {kBase, kTop};
  EXPECT_EQ(root->resolve("fixture:2layers"), chain);
  EXPECT_EQ(root->resolve("docker.io/library/fixture:2layers"), chain);
  EXPECT_EQ(root->resolve(kImage), chain);
  EXPECT_EQ(root->resolve("0cdbefab"), chain);
  EXPECT_EQ(root->resolve(kTop), chain);
  EXPECT_EQ(root->resolve(kTop.substr(7, 12)), chain);
  EXPECT_EQ(root->resolve(kBase), std::vector<std::string>{kBase});
  try {
    root->resolve("fixture");  // fixture:latest does not exist
    FAIL() << "resolved a missing tag";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::NotFound) << e.what();
  }
  try {
    root->layer("sha256:" + std::string(64, 'a'));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::NotFound);
  }
}

TEST(DockerDb, VerifyWritesNothingUnderTheRoot) {
  Copy c;
  auto before = snapshot(c.root);
  auto root = DataRoot::open(c.root);
  for (const auto& l : root->layers()) root->verify(l.chain_id);
  root->resolve("fixture:2layers");
  EXPECT_EQ(snapshot(c.root), before);
}

TEST(DockerDb, ChangedByteIsContentDifferingAtItsPath) {
  Copy c;
  std::string f = c.top_dir() + "/etc/hello";
  std::string d = slurp(f);
  d[2] ^= 1;
  write_file(f, d);
  Error e = verify_error(c.root, kTop);
  EXPECT_EQ(e.code(), Code::Corrupt);
  EXPECT_EQ(e.path(), "etc/hello");
  EXPECT_EQ(e.diff_id(), kTopDiff);
  EXPECT_NE(std::string(e.what()).find(kTop), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("content differs"), std::string::npos) << e.what();
  // The base layer has its own copy (vfs): still fine.
  EXPECT_EQ(verify_error(c.root, kBase).code(), Code::Ok);
}

TEST(DockerDb, TruncatedAndRemovedFilesAreNamed) {
  Copy c;
  ASSERT_EQ(truncate((c.dir_of(kBase) + "/bin/busybox").c_str(), 100), 0);
  Error e = verify_error(c.root, kBase);
  EXPECT_EQ(e.code(), Code::Corrupt);
  EXPECT_EQ(e.path(), "bin/busybox");
  EXPECT_NE(std::string(e.what()).find("size differs"), std::string::npos) << e.what();
  ASSERT_EQ(unlink((c.dir_of(kBase) + "/bin/busybox").c_str()), 0);
  e = verify_error(c.root, kBase);
  EXPECT_EQ(e.path(), "bin/busybox");
  EXPECT_NE(std::string(e.what()).find("missing file"), std::string::npos) << e.what();
  // A longer file is a size difference too.
  write_file(c.dir_of(kBase) + "/bin/busybox", std::string(3001, 'x'));
  e = verify_error(c.root, kBase);
  EXPECT_NE(std::string(e.what()).find("size differs"), std::string::npos) << e.what();
}

TEST(DockerDb, SymlinkInPlaceOfAFileIsNotFollowed) {
  Copy c;
  std::string f = c.top_dir() + "/etc/hello";
  ASSERT_EQ(unlink(f.c_str()), 0);
  ASSERT_EQ(symlink("/etc/passwd", f.c_str()), 0);
  Error e = verify_error(c.root, kTop);
  EXPECT_EQ(e.code(), Code::Corrupt);
  EXPECT_EQ(e.path(), "etc/hello");
  // A symlinked directory on the way is refused as well.
  Copy c2;
  std::string etc = c2.top_dir() + "/etc";
  fs::rename(etc, c2.top_dir() + "/etc.real");
  ASSERT_EQ(symlink("etc.real", etc.c_str()), 0);
  e = verify_error(c2.root, kTop);
  EXPECT_EQ(e.code(), Code::Corrupt);
  EXPECT_EQ(e.path(), "etc/hello");
}

TEST(DockerDb, ChangedDiffAndCorruptTarSplitAreReported) {
  Copy c;
  write_file(c.meta(kTop, "diff"), "sha256:" + std::string(64, '1'));
  Error e = verify_error(c.root, kTop);
  EXPECT_EQ(e.code(), Code::Corrupt);
  EXPECT_NE(std::string(e.what()).find(kTop), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("diff"), std::string::npos) << e.what();

  Copy c2;  // a byte flipped in the middle of the compressed record
  std::string ts = slurp(c2.meta(kTop, "tar-split.json.gz"));
  ts[ts.size() / 2] ^= 0x55;
  write_file(c2.meta(kTop, "tar-split.json.gz"), ts);
  e = verify_error(c2.root, kTop);
  EXPECT_TRUE(e.code() == Code::Corrupt || e.code() == Code::Digest) << e.what();
  EXPECT_NE(std::string(e.what()).find(kTop), std::string::npos) << e.what();

}

TEST(DockerDb, ChangedSegmentFailsTheDiffId) {
  Copy c;
  // The real record with one base64 character of the first header segment changed: valid
  // gzip and JSON, so only the DiffID check at the end can see it.
  std::string gz = slurp(c.meta(kTop, "tar-split.json.gz"));
  struct archive* a = archive_read_new();
  archive_read_support_filter_gzip(a);
  archive_read_support_format_raw(a);
  ASSERT_EQ(archive_read_open_memory(a, gz.data(), gz.size()), ARCHIVE_OK);
  struct archive_entry* ent;
  ASSERT_EQ(archive_read_next_header(a, &ent), ARCHIVE_OK);
  std::string json;
  char buf[4096];
  la_ssize_t n;
  while ((n = archive_read_data(a, buf, sizeof buf)) > 0) json.append(buf, static_cast<size_t>(n));
  archive_read_free(a);
  size_t p = json.find("\"payload\":\"ZXRj");  // "etc" of the first header
  ASSERT_NE(p, std::string::npos);
  json[p + 12] = json[p + 12] == 'X' ? 'Y' : 'X';
  write_file(c.meta(kTop, "tar-split.json.gz"), gzip(json));
  Error e = verify_error(c.root, kTop);
  EXPECT_EQ(e.code(), Code::Digest) << e.what();
  EXPECT_NE(std::string(e.what()).find(kTopDiff), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find(kTop), std::string::npos) << e.what();
}

TEST(DockerDb, HostileRecordsGetClearErrors) {
  Copy c;
  auto put = [&](const std::string& json) { write_file(c.meta(kTop, "tar-split.json.gz"), gzip(json)); };
  // A path that climbs out of the layer.
  put("{\"type\":1,\"name\":\"../../../../etc/passwd\",\"size\":5,\"payload\":\"AAAAAAAAAAA=\",\"position\":0}\n");
  Error e = verify_error(c.root, kTop);
  EXPECT_EQ(e.code(), Code::Unsafe) << e.what();
  // Not JSON, wrong types, bad base64, an unknown type, no CRC.
  for (const char* bad : {"{not json\n", "[1,2]\n", "{\"type\":\"1\"}\n", "{\"type\":2,\"payload\":\"@@@@\"}\n",
                          "{\"type\":7}\n", "{\"type\":1,\"name\":\"etc/hello\",\"size\":8,\"payload\":null}\n",
                          "{\"type\":1,\"name\":\"etc/hello\",\"size\":-1}\n"}) {
    put(bad);
    e = verify_error(c.root, kTop);
    EXPECT_EQ(e.code(), Code::Corrupt) << bad << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find("line 1"), std::string::npos) << e.what();
  }
  // An endless line is cut at the cap, not read into memory.
  put(std::string(rolayer::dockerdb::kMaxTarSplitLine + 10, 'a'));
  e = verify_error(c.root, kTop);
  EXPECT_EQ(e.code(), Code::Corrupt);
  EXPECT_NE(std::string(e.what()).find("longer than"), std::string::npos) << e.what();
  // Not gzip at all.
  write_file(c.meta(kTop, "tar-split.json.gz"), "{\"type\":2}\n");
  e = verify_error(c.root, kTop);
  EXPECT_EQ(e.code(), Code::Corrupt) << e.what();
  // A tar-split that is a symlink.
  std::string ts = c.meta(kTop, "tar-split.json.gz");
  unlink(ts.c_str());
  ASSERT_EQ(symlink(c.meta(kBase, "tar-split.json.gz").c_str(), ts.c_str()), 0);
  e = verify_error(c.root, kTop);
  EXPECT_EQ(e.code(), Code::Corrupt) << e.what();
  // A cache-id that climbs out.
  write_file(c.meta(kBase, "cache-id"), "../../../etc");
  try {
    DataRoot::open(c.root)->layer(kBase);
    FAIL();
  } catch (const Error& e2) {
    EXPECT_EQ(e2.code(), Code::Corrupt) << e2.what();
  }
  std::vector<std::string> skipped;
  auto ls = DataRoot::open(c.root)->layers(&skipped);
  EXPECT_EQ(ls.size(), 1u);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find(kBase), std::string::npos);
}

TEST(DockerDb, OtherDriversAreUnsupported) {
  rolayer::test::TempDir t;
  fs::create_directories(t.path() + "/image/btrfs/layerdb/sha256");
  try {
    DataRoot::open(t.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::Unsupported);
    EXPECT_NE(std::string(e.what()).find("unsupported driver: btrfs"), std::string::npos) << e.what();
  }
  try {
    DataRoot::open(fixture(), "devicemapper");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::Unsupported);
  }
  try {
    DataRoot::open(t.path() + "/nothing");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::NotFound);
  }
}

namespace {
std::string b64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {t[n >> 18], t[(n >> 12) & 63], t[(n >> 6) & 63], t[n & 63]};
  }
  if (i + 1 == in.size()) {
    uint32_t n = uint8_t(in[i]) << 16;
    out += {t[n >> 18], t[(n >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {t[n >> 18], t[(n >> 12) & 63], t[(n >> 6) & 63], '='};
  }
  return out;
}
}  // namespace

// A GNU sparse entry is recorded with its expanded size: reassembly cannot give the archive
// back, and the engine would read every hole before failing. Refused at that entry, at once,
// before the file is even opened.
TEST(DockerDb, SparseEntryIsRefusedAtOnce) {
  Copy c;
  std::string hdr(512, '\0');
  std::memcpy(hdr.data(), "etc/hello", 9);
  std::memcpy(hdr.data() + 124, "00000000012", 11);  // 10 data bytes in the archive
  hdr[156] = 'S';
  std::string json = "{\"type\":2,\"payload\":\"" + b64(hdr) + "\",\"position\":0}\n" +
                     "{\"type\":1,\"name\":\"etc/hello\",\"size\":60000000000,\"payload\":\"AAAAAAAAAAA=\",\"position\":1}\n";
  write_file(c.meta(kTop, "tar-split.json.gz"), gzip(json));
  Error e = verify_error(c.root, kTop);
  EXPECT_EQ(e.code(), Code::Unsupported) << e.what();
  EXPECT_EQ(e.path(), "etc/hello");
  EXPECT_NE(std::string(e.what()).find("sparse"), std::string::npos) << e.what();
  // The same header as a plain file ('0') is not a sparse entry: it fails on the size instead.
  hdr[156] = '0';
  json = "{\"type\":2,\"payload\":\"" + b64(hdr) + "\",\"position\":0}\n" +
         "{\"type\":1,\"name\":\"etc/hello\",\"size\":60000000000,\"payload\":\"AAAAAAAAAAA=\",\"position\":1}\n";
  write_file(c.meta(kTop, "tar-split.json.gz"), gzip(json));
  e = verify_error(c.root, kTop);
  EXPECT_EQ(e.code(), Code::Corrupt) << e.what();
  EXPECT_NE(std::string(e.what()).find("size differs"), std::string::npos) << e.what();
}

// A DataRoot is shared by threads, each with its own streams.
TEST(DockerDb, ParallelStreamsOnOneRoot) {
  auto root = DataRoot::open(fixture());
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; i++)
    ts.emplace_back([&, i] {
      try {
        root->verify(i % 2 ? kTop : kBase);
        ok++;
      } catch (...) {
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 8);
}

// The overlay2 layout, made from the fixture: image/overlay2/…, overlay2/<cache-id>/diff holding
// only each layer's own files (the top layer: etc/hello, empty, and its whiteout as a 0/0
// character device where mknod is allowed). Payloads are read from the layer's own diff only.
TEST(DockerDb, Overlay2LayoutReadsEachLayersOwnDiff) {
  Copy c;
  std::string o = c.tmp.path() + "/o2";
  fs::create_directories(o + "/image");
  fs::create_directories(o + "/overlay2/l");
  fs::copy(c.root + "/image/vfs", o + "/image/overlay2", fs::copy_options::recursive);
  auto root = DataRoot::open(c.root);
  for (const auto& li : root->layers()) {
    std::string diff = o + "/overlay2/" + li.cache_id + "/diff";
    fs::create_directories(fs::path(diff).parent_path());
    fs::copy(c.root + "/vfs/dir/" + li.cache_id, diff, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    if (li.chain_id == kTop) {
      fs::remove_all(diff + "/bin");  // not part of the top layer
      mknod((diff + "/etc/gone").c_str(), S_IFCHR | 0, makedev(0, 0));  // a whiteout (root only)
    }
  }
  auto o2 = DataRoot::open(o);
  EXPECT_EQ(o2->driver(), "overlay2");
  EXPECT_EQ("sha256:" + rolayer::test::sha256_hex(read_stream(*o2->open_stream(kTop))), kTopDiff);
  EXPECT_EQ(o2->verify(kBase), 10240);
  // A file missing from the top layer's own diff is missing, even though the base has it.
  std::string top_diff = o + "/overlay2/" + o2->layer(kTop).cache_id + "/diff";
  fs::remove(top_diff + "/etc/hello");
  Error e = verify_error(o, kTop);
  EXPECT_EQ(e.code(), Code::Corrupt);
  EXPECT_EQ(e.path(), "etc/hello");
  // Both drivers present: the caller must name one.
  fs::create_directories(o + "/image/vfs/layerdb/sha256");
  try {
    DataRoot::open(o);
    FAIL();
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), Code::Inval) << err.what();
  }
  EXPECT_EQ(DataRoot::open(o, "overlay2")->driver(), "overlay2");
}

// A small file (up to 1 MiB) is checked whole before any of its bytes go out, however small the
// reads: a damaged last byte keeps the whole file back.
TEST(DockerDb, SmallDamagedFileSendsNoByte) {
  Copy c;
  std::string f = c.dir_of(kBase) + "/bin/busybox";
  std::string d = slurp(f);
  ASSERT_EQ(d.size(), 3000u);
  d[2999] = 'y';
  write_file(f, d);
  auto s = DataRoot::open(c.root)->open_stream(kBase);
  std::string out;
  uint8_t buf[100];
  bool failed = false;
  try {
    for (;;) {
      size_t n = s->read(buf, sizeof buf);
      if (n == 0) break;
      out.append(reinterpret_cast<char*>(buf), n);
    }
  } catch (const Error& e) {
    failed = true;
    EXPECT_EQ(e.path(), "bin/busybox");
  }
  EXPECT_TRUE(failed);
  EXPECT_EQ(out.find(std::string(100, 'x')), std::string::npos) << "bytes of the damaged file went out";
}
