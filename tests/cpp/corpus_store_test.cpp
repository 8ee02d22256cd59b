// SPDX-License-Identifier: Apache-2.0
// Every archive of the shared corpus through the store, on each built-in driver: well-formed
// ones register with DiffID = sha256 of the input and export byte for byte; malformed ones fail
// at register with a code and leave nothing behind; a changed stored byte fails the export.
#include <dirent.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <random>

#include "core/error.h"
#include "store/store.h"
#include "test_util.h"

using namespace rolayer;
using namespace rolayer::test;

namespace {

int count_dir(const std::string& d) {
  DIR* dir = opendir(d.c_str());
  if (!dir) return -1;
  int n = 0;
  while (auto* de = readdir(dir))
    if (de->d_name[0] != '.') n++;
  closedir(dir);
  return n;
}

// Well-formed archives refused on purpose (see tests/c/test_conformance.c and docs/store.md):
// the relative name "a:/../../file08" climbs above the root; the Docker engine refuses it too.
const std::map<std::string, Code> kRefusedOnPurpose = {{"libarchive/test_patterns_4.tar", Code::Unsafe}};

class CorpusStoreTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CorpusStoreTest, RoundTripsOrRefuses) {
  auto corpus = load_corpus();
  if (corpus.empty()) GTEST_SKIP() << "corpus not found (../shared/corpus or ROLAYER_CORPUS)";
  TempDir dir;
  StoreOptions o;
  o.driver_name = GetParam();
  auto s = Store::open(dir.path(), std::move(o));
  int well = 0, refused = 0;
  for (const auto& f : corpus) {
    SCOPED_TRACE(f.file);
    ASSERT_EQ(sha256_hex(f.data), f.sha256) << "corpus file damaged";
    MemSource src(f.data, 65536 + 3);
    std::unique_ptr<LayerRef> l;
    Code code = Code::Ok;
    std::string msg;
    try {
      l = s->register_layer("", src);
    } catch (const Error& e) {
      code = e.code();
      msg = e.what();
    }
    if (auto it = kRefusedOnPurpose.find(f.file); it != kRefusedOnPurpose.end()) {
      EXPECT_EQ(code, it->second) << msg;
      if (l) s->release(*l);
      refused++;
    } else if (f.expect == "expected-fail") {
      EXPECT_TRUE(code == Code::Archive || code == Code::Unsafe) << "code " << static_cast<int>(code) << " " << msg;
      EXPECT_FALSE(msg.empty());
      refused++;
    } else if (f.expect == "well-formed" || code == Code::Ok) {
      ASSERT_EQ(code, Code::Ok) << msg;
      EXPECT_EQ(l->node().diff_id.str(), "sha256:" + f.sha256);
      EXPECT_EQ(l->node().stream_size, static_cast<int64_t>(f.data.size()));
      auto out = Store::tar_stream(*l);
      std::string got;
      try {
        got = read_all(*out);
      } catch (const Error& e) {
        ADD_FAILURE() << "export failed: " << e.what();
      }
      EXPECT_TRUE(got == f.data) << "export is not byte-exact (" << got.size() << " vs " << f.data.size() << ")";
      if (f.expect == "well-formed") well++;
      s->release(*l);
    }
    EXPECT_TRUE(s->list().empty());
    EXPECT_EQ(count_dir(dir.path() + "/" + GetParam()), 0) << "driver data left behind";
    EXPECT_EQ(count_dir(dir.path() + "/tmp"), 0);
  }
  EXPECT_EQ(well, 82 - static_cast<int>(kRefusedOnPurpose.size()));
  EXPECT_EQ(refused, 13 + static_cast<int>(kRefusedOnPurpose.size()));
}

// Flipping any one byte of a stored exact stream fails the export with the DiffID error.
TEST(CorpusTamper, ExactDriverEveryChangedByteIsCaught) {
  auto corpus = load_corpus();
  if (corpus.empty()) GTEST_SKIP() << "corpus not found";
  TempDir dir;
  StoreOptions o;
  o.driver_name = "exact";
  auto s = Store::open(dir.path(), std::move(o));
  std::mt19937_64 rng(42);
  int trials = 0;
  for (const auto& f : corpus) {
    if (f.expect != "well-formed" || f.data.size() > (4 << 20) || kRefusedOnPurpose.count(f.file)) continue;
    MemSource src(f.data);
    auto l = s->register_layer("", src);
    std::string file = dir.path() + "/exact/" + l->node().cache_id + "/layer.tar";
    for (int k = 0; k < 3; k++) {
      size_t pos = rng() % f.data.size();
      {
        std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
        io.seekp(static_cast<std::streamoff>(pos));
        io.put(static_cast<char>(f.data[pos] ^ (1 + rng() % 255)));
      }
      auto st = Store::tar_stream(*l);
      try {
        read_all(*st);
        ADD_FAILURE() << f.file << ": byte " << pos << " changed and the export verified";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::Digest) << f.file;
        EXPECT_EQ(e.diff_id(), l->node().diff_id.str());
      }
      {
        std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
        io.seekp(static_cast<std::streamoff>(pos));
        io.put(f.data[pos]);
      }
      trials++;
    }
    s->release(*l);
  }
  EXPECT_GT(trials, 150);
}

INSTANTIATE_TEST_SUITE_P(Drivers, CorpusStoreTest, ::testing::Values("exact", "dir"),
                         [](const auto& info) { return info.param; });

}  // namespace
