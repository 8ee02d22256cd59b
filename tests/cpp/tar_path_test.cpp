// SPDX-License-Identifier: Apache-2.0
// Tests of entry path cleaning, whiteouts and the per-layer escape checks (lib/tar/path.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "tar/path.h"

using rolayer::Code;
using rolayer::Error;
using namespace rolayer::tar;

namespace {

Code code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return Code::Ok;
}

Entry make(const std::string& name, EntryKind kind = EntryKind::Regular,
           const std::string& link = "") {
  Entry e;
  e.name = name;
  e.kind = kind;
  e.linkname = link;
  e.typeflag = kind == EntryKind::Symlink    ? '2'
               : kind == EntryKind::Hardlink ? '1'
               : kind == EntryKind::Directory ? '5'
                                               : '0';
  return e;
}

TEST(CleanPath, Normalises) {
  EXPECT_EQ(clean_path("a"), "a");
  EXPECT_EQ(clean_path("a/b/c"), "a/b/c");
  EXPECT_EQ(clean_path("./a/b/"), "a/b");
  EXPECT_EQ(clean_path("/a//b/./c/"), "a/b/c");
  EXPECT_EQ(clean_path("///abs"), "abs");
  EXPECT_EQ(clean_path("a/b/../c"), "a/c");
  EXPECT_EQ(clean_path("a/.."), "");
  EXPECT_EQ(clean_path("a/b/../../c/.."), "");
  EXPECT_EQ(clean_path("."), "");
  EXPECT_EQ(clean_path("./"), "");
  EXPECT_EQ(clean_path("/"), "");
  EXPECT_EQ(clean_path("..."), "...");
  EXPECT_EQ(clean_path("a/..b"), "a/..b");
  EXPECT_EQ(clean_path("c:\\..\\x"), "c:\\..\\x");  // backslashes are ordinary bytes
  EXPECT_EQ(clean_path(std::string("hi\x80\xff", 4)), std::string("hi\x80\xff", 4));
}

// Absolute names are rooted at the layer as the Docker engine's filepath.Clean does: ".." at the
// root of a rooted name stays there (the corpus's test_patterns_4.tar has "/../file02").
TEST(CleanPath, RootsAbsoluteNamesLikeTheDockerEngine) {
  EXPECT_EQ(clean_path("/../x"), "x");
  EXPECT_EQ(clean_path("/../../etc/passwd"), "etc/passwd");
  EXPECT_EQ(clean_path("//./c:/../file10"), "file10");
  EXPECT_EQ(clean_path("/a/../../b"), "b");
}

TEST(CleanPath, RefusesEscapesAndEmptyNames) {
  for (const char* p : {"..", "../x", "a/../../x", "./../x", "a:/../../file08", "a/b/../../../c", "x/../.."}) {
    try {
      clean_path(p);
      ADD_FAILURE() << p;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Code::Unsafe) << p;
      EXPECT_EQ(e.path(), p);
    }
  }
  EXPECT_EQ(code_of([] { clean_path(""); }), Code::Archive);
  EXPECT_EQ(code_of([] { clean_path(std::string("a\0b", 3)); }), Code::Archive);
}

TEST(CleanPath, LinearOnHugeNames) {
  std::string p;
  for (int i = 0; i < 200000; ++i) p += "a/";
  for (int i = 0; i < 200000; ++i) p += "../";
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(clean_path(p), "");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

TEST(Whiteouts, Helpers) {
  EXPECT_TRUE(is_whiteout(".wh.foo"));
  EXPECT_TRUE(is_whiteout("a/b/.wh.foo"));
  EXPECT_TRUE(is_whiteout("a/.wh..wh..opq"));
  EXPECT_FALSE(is_whiteout("a/foo.wh.x"));
  EXPECT_FALSE(is_whiteout(".wh/x"));
  EXPECT_FALSE(is_whiteout(""));
  EXPECT_TRUE(is_opaque_whiteout(".wh..wh..opq"));
  EXPECT_TRUE(is_opaque_whiteout("a/b/.wh..wh..opq"));
  EXPECT_FALSE(is_opaque_whiteout("a/.wh.foo"));
  EXPECT_EQ(whiteout_target("a/.wh.b"), "a/b");
  EXPECT_EQ(whiteout_target(".wh.b"), "b");
  EXPECT_EQ(whiteout_target("x/y/.wh..hidden"), "x/y/.hidden");
  EXPECT_EQ(whiteout_target("a/b/.wh..wh..opq"), "a/b");
  EXPECT_EQ(whiteout_target(".wh..wh..opq"), "");
  EXPECT_EQ(code_of([] { whiteout_target("a/.wh.."); }), Code::Unsafe);
  EXPECT_EQ(code_of([] { whiteout_target("a/.wh..."); }), Code::Unsafe);
  EXPECT_EQ(code_of([] { whiteout_target("a/.wh."); }), Code::Unsafe);
  EXPECT_EQ(code_of([] { whiteout_target("a/b"); }), Code::Inval);
}

TEST(SafetyChecker, ReturnsCleanedPaths) {
  SafetyChecker c;
  EXPECT_EQ(c.check(make("./dir/", EntryKind::Directory)), "dir");
  EXPECT_EQ(c.check(make("/abs/file")), "abs/file");
  EXPECT_EQ(c.check(make("./", EntryKind::Directory)), "");
  EXPECT_EQ(code_of([&] { c.check(make("../evil")); }), Code::Unsafe);
  EXPECT_EQ(code_of([&] { c.check(make("")); }), Code::Archive);
  // The root can only be a directory.
  EXPECT_EQ(code_of([&] { c.check(make(".", EntryKind::Symlink, "/etc")); }), Code::Unsafe);
  EXPECT_EQ(code_of([&] { c.check(make("/")); }), Code::Unsafe);
}

TEST(SafetyChecker, RefusesWritesThroughSymlinks) {
  SafetyChecker c;
  EXPECT_EQ(c.check(make("etc", EntryKind::Symlink, "/etc")), "etc");
  try {
    c.check(make("etc/passwd"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::Unsafe);
    EXPECT_EQ(e.path(), "etc/passwd");
  }
  EXPECT_EQ(code_of([&] { c.check(make("./etc/x/y", EntryKind::Directory)); }), Code::Unsafe);
  EXPECT_EQ(code_of([&] { c.check(make("/etc/.wh.passwd")); }), Code::Unsafe);
  // Names that only share a prefix are fine.
  EXPECT_EQ(c.check(make("etcetera/x")), "etcetera/x");
  EXPECT_EQ(c.check(make("et/c")), "et/c");
  // Symlink targets may point anywhere; the symlink itself may be replaced.
  EXPECT_EQ(c.check(make("etc", EntryKind::Symlink, "../../..")), "etc");
  EXPECT_EQ(code_of([&] { c.check(make("etc/x")); }), Code::Unsafe);
  EXPECT_EQ(c.check(make("etc/", EntryKind::Directory)), "etc");
  EXPECT_EQ(c.check(make("etc/passwd")), "etc/passwd");
  // Nested symlinks.
  EXPECT_EQ(c.check(make("a/b/link", EntryKind::Symlink, "/")), "a/b/link");
  EXPECT_EQ(code_of([&] { c.check(make("a/b/link/c/d")); }), Code::Unsafe);
  EXPECT_EQ(code_of([&] { c.check(make("a/b/x/../link/c")); }), Code::Unsafe);
  EXPECT_EQ(c.check(make("a/b/linkx/c")), "a/b/linkx/c");
  // A regular file replaces the symlink too.
  EXPECT_EQ(c.check(make("a/b/link")), "a/b/link");
  EXPECT_EQ(c.check(make("a/b/link2", EntryKind::Symlink, "x")), "a/b/link2");
}

TEST(SafetyChecker, HardLinks) {
  SafetyChecker c;
  auto r = c.check_entry(make("hl", EntryKind::Hardlink, "/usr/bin/../bin/sh"));
  EXPECT_EQ(r.path, "hl");
  EXPECT_EQ(r.link_target, "usr/bin/sh");
  EXPECT_EQ(c.check_entry(make("f")).link_target, "");
  EXPECT_EQ(code_of([&] { c.check(make("hl", EntryKind::Hardlink, "../../etc/shadow")); }), Code::Unsafe);
  EXPECT_EQ(code_of([&] { c.check(make("hl", EntryKind::Hardlink, "a/../../x")); }), Code::Unsafe);
  EXPECT_EQ(code_of([&] { c.check(make("hl", EntryKind::Hardlink, "/")); }), Code::Unsafe);
  EXPECT_EQ(code_of([&] { c.check(make("hl", EntryKind::Hardlink, "")); }), Code::Archive);
  // Through a symlink of this layer: refused.
  c.check(make("lnk", EntryKind::Symlink, "/etc"));
  try {
    c.check(make("hl", EntryKind::Hardlink, "lnk/shadow"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::Unsafe);
    EXPECT_EQ(e.path(), "hl");
  }
  // A hard link *to* the symlink is a second symlink: writes through it are refused.
  EXPECT_EQ(c.check(make("alias", EntryKind::Hardlink, "lnk")), "alias");
  EXPECT_EQ(code_of([&] { c.check(make("alias/passwd")); }), Code::Unsafe);
}

// The symlink set is keyed by a polynomial hash of the path: distinct names (long, non-ASCII,
// differing in one byte) must not be taken for one another, and one pass over a name gives
// both the verdict on its ancestors and its own key (replacing a symlink removes exactly it).
TEST(SafetyChecker, ManySymlinksNoFalseHits) {
  SafetyChecker c;
  std::vector<std::string> links;
  for (int i = 0; i < 3000; ++i) {
    std::string n = "d" + std::to_string(i % 37) + "/\xc3\xa9" + std::string(static_cast<size_t>(i % 200), 'x') + "/l" +
                    std::to_string(i);
    links.push_back(n);
    EXPECT_EQ(c.check(make(n, EntryKind::Symlink, "/")), n);
  }
  for (int i = 0; i < 3000; ++i) {
    EXPECT_EQ(code_of([&] { c.check(make(links[i] + "/f")); }), Code::Unsafe) << links[i];
    std::string other = links[i];
    other.back() = other.back() == '9' ? '8' : static_cast<char>(other.back() + 1);
    if (std::find(links.begin(), links.end(), other) == links.end()) {
      EXPECT_EQ(c.check(make(other + "/f")), other + "/f");
    }
    EXPECT_EQ(c.check(make(links[i] + "x/f")), links[i] + "x/f");
  }
  // Replacing one symlink by a directory frees exactly that name.
  EXPECT_EQ(c.check(make(links[5], EntryKind::Directory)), links[5]);
  EXPECT_EQ(c.check(make(links[5] + "/f")), links[5] + "/f");
  EXPECT_EQ(code_of([&] { c.check(make(links[6] + "/f")); }), Code::Unsafe);
  // A hard link to a symlink, checked in the same pass as its ancestors, is a symlink too.
  EXPECT_EQ(c.check(make("alias", EntryKind::Hardlink, links[7])), "alias");
  EXPECT_EQ(code_of([&] { c.check(make("alias/f")); }), Code::Unsafe);
  EXPECT_EQ(code_of([&] { c.check(make("h2", EntryKind::Hardlink, links[7] + "/x")); }), Code::Unsafe);
  EXPECT_EQ(c.check(make("h3", EntryKind::Hardlink, links[5])), "h3");
  EXPECT_EQ(c.check(make("h3/f")), "h3/f");
}

TEST(SafetyChecker, LinearOnHugeNamesWithSymlinks) {
  SafetyChecker c;
  for (int i = 0; i < 1000; ++i) c.check(make("s" + std::to_string(i), EntryKind::Symlink, "/"));
  std::string deep;
  for (int i = 0; i < 300000; ++i) deep += "d/";
  deep += "f";
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(c.check(make(deep)), deep);
  EXPECT_EQ(code_of([&] { c.check(make("s7/" + deep)); }), Code::Unsafe);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

}  // namespace
