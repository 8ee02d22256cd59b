// SPDX-License-Identifier: Apache-2.0
// A mount's hold (docs/mount.md): nothing deletes a mounted chain until it is unmounted, even
// when a program unretains or releases it itself; the hold is a store pin, not a reference.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "core/error.h"
#include "mount/mount.h"
#include "store/store.h"
#include "test_util.h"

using namespace rolayer;
using namespace rolayer::test;

namespace {

struct Fixture {
  TempDir d;
  std::string root = d.path() + "/store", target = d.path() + "/mnt";
  std::unique_ptr<Store> store;
  std::string base, top;

  Fixture() {
    ::mkdir(target.c_str(), 0755);
    StoreOptions o;
    o.driver_name = "dir";
    store = Store::open(root, std::move(o));
    MemSource a(make_tar({{TarItem::Dir, "etc", "", 0755}, {TarItem::File, "etc/a", "1\n"}}));
    auto l1 = store->register_layer("", a);
    base = l1->node().chain_id.str();
    MemSource b(make_tar({{TarItem::File, "etc/b", "2\n"}}));
    auto l2 = store->register_layer(base, b);
    top = l2->node().chain_id.str();
    store->retain(top);
    Store::close_ref(*l1);
    Store::close_ref(*l2);
  }
  // A failed test leaves no mount behind (a no-op when it unmounted).
  ~Fixture() { ::umount2(target.c_str(), MNT_DETACH); }
  bool exists(const std::string& chain) {
    for (const auto& c : store->list())
      if (c == chain) return true;
    return false;
  }
};

// Mounts or skips (not root, no overlayfs): the reason is printed.
#define MOUNT_OR_SKIP(f)                                                                   \
  do {                                                                                     \
    if (::geteuid() != 0) GTEST_SKIP() << "mounting overlayfs needs root (CI runs as root)"; \
    try {                                                                                  \
      mount::mount_chain(*(f).store, (f).top, (f).target, 0);                              \
    } catch (const Error& e) {                                                             \
      if (e.code() == Code::Unsupported || e.sys_errno() == EPERM || e.sys_errno() == ENODEV) \
        GTEST_SKIP() << "cannot mount overlayfs here: " << e.what();                      \
      throw;                                                                               \
    }                                                                                      \
  } while (0)

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(MountHold, UnretainWhileMountedKeepsTheChainUntilTheUnmount) {
  Fixture f;
  MOUNT_OR_SKIP(f);
  // A program drops every persistent reference it finds (the mount is not one: register +
  // retain made the only one).
  EXPECT_EQ(f.store->retained(f.top), 1);
  while (f.store->retained(f.top) > 0) {
    auto removed = f.store->unretain(f.top);
    EXPECT_TRUE(removed.empty()) << "unretain removed " << removed.size() << " layers under a live mount";
    if (!f.exists(f.top)) break;
  }
  EXPECT_TRUE(f.exists(f.top));
  EXPECT_TRUE(f.store->gc().empty());
  EXPECT_TRUE(f.exists(f.top));
  EXPECT_EQ(slurp(f.target + "/etc/a"), "1\n");
  EXPECT_EQ(slurp(f.target + "/etc/b"), "2\n");
  // The unmount ends the pin; nothing else keeps the chain, so it goes (child, then parent).
  mount::umount(*f.store, f.target);
  EXPECT_FALSE(f.exists(f.top));
  EXPECT_FALSE(f.exists(f.base));
}

TEST(MountHold, ReleaseOfAHandleWhileMountedKeepsTheChain) {
  Fixture f;
  MOUNT_OR_SKIP(f);
  while (f.exists(f.top) && f.store->retained(f.top) > 0) f.store->unretain(f.top);
  ASSERT_TRUE(f.exists(f.top));
  auto ref = f.store->get(f.top);
  f.store->release(*ref);  // an explicit release: the cascade asks for the parents too
  EXPECT_TRUE(f.exists(f.top));
  EXPECT_TRUE(f.exists(f.base));
  mount::umount(*f.store, f.target);
  EXPECT_FALSE(f.exists(f.top));
}

TEST(MountHold, ARetainedChainStaysAfterTheUnmount) {
  Fixture f;
  MOUNT_OR_SKIP(f);
  mount::umount(*f.store, f.target);
  EXPECT_TRUE(f.exists(f.top));
  EXPECT_EQ(f.store->retained(f.top), 1);
  EXPECT_TRUE(f.store->pins("mount:").empty());
}

TEST(MountHold, APinWithoutItsRecordIsDroppedByReconcile) {
  Fixture f;
  MOUNT_OR_SKIP(f);
  auto records = mount::list(*f.store);
  ASSERT_EQ(records.size(), 1u);
  // A crash between umount's two steps: unmounted, record removed, pin still there.
  ASSERT_EQ(::umount2(f.target.c_str(), 0), 0) << std::strerror(errno);
  ASSERT_EQ(::unlink((f.root + "/mounts/" + records[0].file).c_str()), 0) << std::strerror(errno);
  ASSERT_EQ(f.store->pins("mount:").size(), 1u);
  f.store->unretain(f.top);
  EXPECT_TRUE(f.exists(f.top)) << "the pin keeps it";
  mount::reconcile(*f.store);
  EXPECT_TRUE(f.store->pins("mount:").empty());
  EXPECT_FALSE(f.exists(f.top)) << "what the pin alone kept goes with it";
}

TEST(MountHold, ABusyUnmountNamesTheProcessThatUsesIt) {
  Fixture f;
  MOUNT_OR_SKIP(f);
  int fd = ::open((f.target + "/etc/a").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  try {
    mount::umount(*f.store, f.target);
    ADD_FAILURE() << "unmounted although a file is open";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::Busy) << e.what();
    EXPECT_NE(std::string(e.what()).find("by pid " + std::to_string(::getpid())), std::string::npos) << e.what();
  }
  ::close(fd);
  mount::umount(*f.store, f.target);
  EXPECT_TRUE(f.exists(f.top));
}

// Pins without a mount: the store's own contract (no root needed).
TEST(StorePins, APinKeepsAnUnretainedLayerAcrossProcessesAndGc) {
  Fixture f;
  f.store->pin("test:a", f.top);
  f.store->unretain(f.top);
  EXPECT_TRUE(f.exists(f.top));
  {
    // Another open of the store (as another process would) sees the pin.
    f.store.reset();
    StoreOptions o;
    f.store = Store::open(f.root, std::move(o));
    EXPECT_TRUE(f.store->gc().empty());
    EXPECT_TRUE(f.exists(f.top));
  }
  EXPECT_EQ(f.store->retained(f.top), 0);
  bool existed = false;
  auto removed = f.store->unpin("test:a", &existed);
  EXPECT_TRUE(existed);
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_FALSE(f.exists(f.top));
  f.store->unpin("test:a", &existed);
  EXPECT_FALSE(existed);
}

TEST(StorePins, UnpinKeepsARetainedLayerAndAnUnknownChainIsNotFound) {
  Fixture f;
  f.store->pin("test:a", f.top);
  EXPECT_TRUE(f.store->unpin("test:a").empty());
  EXPECT_TRUE(f.exists(f.top));
  try {
    f.store->pin("test:b", "sha256:" + std::string(64, 'a'));
    FAIL() << "pinned an unknown chain";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::NotFound) << e.what();
  }
  EXPECT_EQ(f.store->pins("test:").size(), 0u);
}

}  // namespace
