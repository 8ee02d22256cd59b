// SPDX-License-Identifier: Apache-2.0
// Opening a dir-driver store (issue 18, a store of 100,000 layers): Driver::open_store does
// not list every layer, yet an open alone still removes the crash leftovers (".tmp-",
// ".removing-"), an open beside another keeps them, and a store of the old layout is still
// migrated on open.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "drivers/dir/dir_overlay.h"
#include "store/store.h"
#include "test_util.h"

using namespace rolayer;
namespace stdfs = std::filesystem;

namespace {

std::unique_ptr<Store> open_dir_store(const std::string& root) {
  StoreOptions o;
  o.driver_name = "dir";
  return Store::open(root, std::move(o));
}

std::string one_layer(const std::string& root) {
  auto s = open_dir_store(root);
  test::MemSource src(test::make_tar({{test::TarItem::File, "etc/hello", "hello\n"}}));
  auto ref = s->register_layer("", src);
  std::string chain = ref->node().chain_id.str();
  s->retain(chain);
  return chain;
}

void leftover(const std::string& path) {
  stdfs::create_directories(path + "/sub");
  std::ofstream(path + "/sub/file") << "half-written";
}

}  // namespace

TEST(DirOpenStore, AloneRemovesLeftoversBesideAnotherKeepsThem) {
  test::TempDir dir;
  std::string chain = one_layer(dir.path());
  std::string d = dir.path() + "/dir";
  leftover(d + "/.tmp-0123");
  leftover(d + "/.removing-4567");
  {
    auto first = open_dir_store(dir.path());  // not alone from here on: leftovers are kept
    ASSERT_FALSE(stdfs::exists(d + "/.tmp-0123"));  // the first open was alone
    ASSERT_FALSE(stdfs::exists(d + "/.removing-4567"));
    leftover(d + "/.tmp-89ab");
    auto second = open_dir_store(dir.path());
    EXPECT_TRUE(stdfs::exists(d + "/.tmp-89ab/sub/file"));
    EXPECT_EQ(second->list(), std::vector<std::string>{chain});
  }
  auto again = open_dir_store(dir.path());
  EXPECT_FALSE(stdfs::exists(d + "/.tmp-89ab"));
  EXPECT_TRUE(stdfs::exists(d + "/" + std::string(dirdrv::kFormatFile)));
  auto ref = again->get(chain);
  EXPECT_EQ(ref->node().chain_id.str(), chain);
}

TEST(DirOpenStore, OldLayoutIsStillMigratedOnOpen) {
  test::TempDir dir;
  std::string chain = one_layer(dir.path());
  std::string fmt = dir.path() + "/dir/" + std::string(dirdrv::kFormatFile);
  ASSERT_TRUE(stdfs::exists(fmt));
  stdfs::remove(fmt);  // a version-1 layout has no format file
  {
    auto s = open_dir_store(dir.path());
    EXPECT_TRUE(stdfs::exists(fmt));
    EXPECT_EQ(s->list(), std::vector<std::string>{chain});
  }
  // A newer layout than this library knows is refused, as before.
  std::ofstream(fmt, std::ios::trunc) << std::string(dirdrv::kFormatMagic) + '\0' + "99" + '\0';
  EXPECT_THROW(open_dir_store(dir.path()), Error);
}
