// SPDX-License-Identifier: Apache-2.0
// Many threads on one store: registering the same and different content, opening, exporting
// and releasing at once. No deadlock, no lost reference, identical registers converge.
// Run under ThreadSanitizer by .ci/run (filter *Concurren*).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "core/error.h"
#include "store/store.h"
#include "test_util.h"

using namespace rolayer;
using namespace rolayer::test;

namespace {

class ConcurrencyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ConcurrencyTest, RegisterOpenExportReleaseFromManyThreads) {
  TempDir dir;
  StoreOptions o;
  o.driver_name = GetParam();
  auto s = Store::open(dir.path(), std::move(o));
  const int kThreads = 8, kRounds = 12;
  std::vector<std::string> tars;
  for (int i = 0; i < 4; i++)
    tars.push_back(make_tar({{TarItem::Dir, "d", ""},
                             {TarItem::File, "d/f" + std::to_string(i), std::string(1000 + 4096 * i, char('a' + i))}}));
  auto base = make_tar({{TarItem::File, "base", "base"}});
  MemSource bsrc(base);
  auto base_ref = s->register_layer("", bsrc);
  const std::string base_id = base_ref->node().chain_id.str();
  std::atomic<int> failures{0}, exports{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; r++) {
        try {
          const std::string& tar = tars[(t + r) % tars.size()];
          MemSource src(tar, 1000 + t);
          auto l = s->register_layer(r % 2 ? base_id : "", src);
          auto again = s->get(l->node().chain_id.str());
          auto st = Store::tar_stream(*again);
          if (read_all(*st) != tar) failures++;
          exports++;
          s->release(*l);
          s->release(*again);
        } catch (const std::exception& e) {
          failures++;
          ADD_FAILURE() << e.what();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(exports.load(), kThreads * kRounds);
  // Every layer but the held base went away with its last reference.
  EXPECT_EQ(s->list().size(), 1u);
  s->release(*base_ref);
  EXPECT_TRUE(s->list().empty());
}

TEST_P(ConcurrencyTest, IdenticalConcurrentRegistersConvergeToOneLayer) {
  TempDir dir;
  StoreOptions o;
  o.driver_name = GetParam();
  auto s = Store::open(dir.path(), std::move(o));
  auto tar = make_tar({{TarItem::File, "same", std::string(100000, 's')}});
  std::vector<std::unique_ptr<LayerRef>> refs(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < refs.size(); i++)
    threads.emplace_back([&, i] {
      MemSource src(tar, 777);
      refs[i] = s->register_layer("", src);
    });
  for (auto& th : threads) th.join();
  ASSERT_EQ(s->list().size(), 1u);
  for (auto& r : refs) EXPECT_EQ(&r->node(), &refs[0]->node());
  for (size_t i = 0; i + 1 < refs.size(); i++) EXPECT_TRUE(s->release(*refs[i]).empty());
  EXPECT_EQ(s->release(*refs.back()).size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Drivers, ConcurrencyTest, ::testing::Values("exact", "dir"),
                         [](const auto& info) { return info.param; });

}  // namespace
