// SPDX-License-Identifier: Apache-2.0
// Unit tests of the rolayer CLI's image readers and edge helpers (tools/src/image_plan.cpp,
// fsat.cpp, text.cpp): issue 12's CLI items at the function level. The end-to-end scenarios are
// in cli_test.sh; the fuzz target is tests/fuzz/image_reader.cpp.
#include <fcntl.h>
#include <sched.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "common.h"
#include "fsat.h"
#include "image_plan.h"
#include "text.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int code_of(const std::function<void()>& f, std::string* msg = nullptr) {
  try {
    f();
  } catch (const cli::CliError& e) {
    if (msg) *msg = e.what();
    return e.code();
  }
  return 0;
}

std::string put(cli::MemSource& src, const std::string& data) {
  std::string d = cli::Hasher::digest_of(data);
  src.files["blobs/sha256/" + d.substr(7)] = data;
  return d;
}

// A valid two-layer OCI image in memory; PLATFORM_EXTRA goes into a nested index's entries.
cli::MemSource oci_image(const json& index_annotations = json::object()) {
  cli::MemSource src("mem");
  std::string l1 = put(src, "layer one"), l2 = put(src, "layer two");
  json cfg = {{"architecture", "amd64"}, {"os", "linux"},
              {"rootfs", {{"type", "layers"}, {"diff_ids", {"sha256:" + std::string(64, 'a'), "sha256:" + std::string(64, 'b')}}}}};
  std::string c = cfg.dump();
  std::string cd = put(src, c);
  json m = {{"schemaVersion", 2},
            {"mediaType", cli::kMtOciManifest},
            {"config", {{"mediaType", cli::kMtOciConfig}, {"digest", cd}, {"size", c.size()}}},
            {"layers", {{{"mediaType", cli::kMtOciLayerTar}, {"digest", l1}, {"size", 9}},
                        {{"mediaType", cli::kMtOciLayerTar}, {"digest", l2}, {"size", 9}}}}};
  std::string md = m.dump();
  std::string mdg = put(src, md);
  json ann = index_annotations;
  ann[cli::kRefAnnotation] = "latest";
  json idx = {{"schemaVersion", 2}, {"manifests", {{{"mediaType", cli::kMtOciManifest}, {"digest", mdg}, {"size", md.size()}, {"annotations", ann}}}}};
  src.files["index.json"] = idx.dump();
  return src;
}

class TempDir {
 public:
  TempDir() {
    char t[] = "/tmp/rolayer-cli-unit.XXXXXX";
    path = ::mkdtemp(t);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string path;
};

void write(const std::string& p, const std::string& data) { std::ofstream(p, std::ios::binary) << data; }

}  // namespace

TEST(ImagePlan, ReadsAnOciImage) {
  auto src = oci_image();
  cli::Plan plan = cli::plan_image(src, "");
  ASSERT_EQ(plan.layers.size(), 2u);
  EXPECT_EQ(plan.what, "OCI image layout");
  EXPECT_EQ(plan.layers[0].diff_id, "sha256:" + std::string(64, 'a'));
}

TEST(ImagePlan, DeepAnnotationIsRefusedBeforeParsing) {
  auto src = oci_image();
  std::string idx = src.files["index.json"];
  std::string deep = std::string(400000, '[') + std::string(400000, ']');
  idx.insert(idx.find("\"annotations\":{") + 15, "\"deep\":" + deep + ",");
  src.files["index.json"] = idx;
  std::string msg;
  EXPECT_EQ(code_of([&] { cli::plan_image(src, ""); }, &msg), cli::kBadInput);
  EXPECT_NE(msg.find("nested deeper than 64 levels"), std::string::npos) << msg;
}

TEST(ImagePlan, DepthCountSkipsStrings) {
  EXPECT_EQ(cli::json_nesting_depth(R"({"a": "[[[[{{{{\"[["})", 64), 1);
  EXPECT_EQ(cli::json_nesting_depth("[[[]]]", 64), 3);
  EXPECT_EQ(cli::json_nesting_depth(std::string(100, '['), 64), 65);  // stops counting past the limit
  EXPECT_NO_THROW(cli::parse_json(std::string(64, '[') + std::string(64, ']'), "x"));
  EXPECT_EQ(code_of([] { cli::parse_json(std::string(65, '[') + std::string(65, ']'), "x"); }), cli::kBadInput);
}

TEST(ImagePlan, WrongJsonTypeIsBadInputNotInternalError) {
  // A multi-platform index whose platform.os is a number: nlohmann's value() throws type_error.
  cli::MemSource src("mem");
  json inner = {{"mediaType", cli::kMtOciIndex},
                {"manifests", {{{"digest", "sha256:" + std::string(64, '1')}, {"size", 1}, {"platform", {{"os", 5}}}},
                               {{"digest", "sha256:" + std::string(64, '2')}, {"size", 1}, {"platform", {{"os", 6}}}}}}};
  std::string in = inner.dump();
  std::string d = put(src, in);
  src.files["index.json"] = json{{"manifests", {{{"mediaType", cli::kMtOciIndex}, {"digest", d}, {"size", in.size()}}}}}.dump();
  std::string msg;
  EXPECT_EQ(code_of([&] { cli::plan_image(src, ""); }, &msg), cli::kBadInput);
  EXPECT_NE(msg.find("malformed image JSON"), std::string::npos) << msg;
}

TEST(ImagePlan, SkopeoDirLayout) {
  auto oci = oci_image();
  cli::MemSource src("mem");
  for (const auto& [k, v] : oci.files)
    if (k.rfind("blobs/sha256/", 0) == 0) src.files[k.substr(13)] = v;
  json idx = json::parse(oci.files["index.json"]);
  std::string mhex = idx["manifests"][0]["digest"].get<std::string>().substr(7);
  src.files["manifest.json"] = src.files[mhex];
  src.files["version"] = "Directory Transport Version: 1.1\n";
  cli::Plan plan = cli::plan_image(src, "");
  EXPECT_EQ(plan.what, "skopeo dir: layout");
  ASSERT_EQ(plan.layers.size(), 2u);
  EXPECT_EQ(plan.layers[0].path.size(), 64u);  // "<hex>", flat
  // A multi-platform dir: copy is unsupported, not damaged.
  src.files["manifest.json"] = json{{"mediaType", cli::kMtOciIndex}, {"manifests", json::array()}}.dump();
  std::string msg;
  EXPECT_EQ(code_of([&] { cli::plan_image(src, ""); }, &msg), cli::kBadInput);
  EXPECT_NE(msg.find("not supported"), std::string::npos) << msg;
}

TEST(Text, TermSafeEscapesControlsLosslessly) {
  EXPECT_EQ(cli::term_safe("plain caf\xc3\xa9"), "plain caf\xc3\xa9");
  EXPECT_EQ(cli::term_safe("\x1b[31mred\x07"), "\\x1b[31mred\\x07");
  EXPECT_EQ(cli::term_safe("a\\b"), "a\\\\b");
  EXPECT_EQ(cli::term_safe("caf\xe9"), "caf\\xe9");
  EXPECT_EQ(cli::term_safe("\xc2\x9b" "2J"), "\\u{009b}2J");        // C1 CSI as UTF-8
  EXPECT_EQ(cli::term_safe("\xe2\x80\xae" "txt"), "\\u{202e}txt");  // right-to-left override
  EXPECT_EQ(cli::term_safe("\x7f\n\t"), "\\x7f\\x0a\\x09");
}

TEST(Text, JsonTextIsLossless) {
  json j = json::object();
  cli::json_text(j, "path", "etc/caf\xe9.txt");
  cli::json_text(j, "ok", "etc/caf\xc3\xa9.txt");
  EXPECT_EQ(j["path_b64"], "ZXRjL2NhZukudHh0");
  EXPECT_EQ(j["path"], "etc/caf\xef\xbf\xbd.txt");
  EXPECT_FALSE(j.contains("ok_b64"));
  std::string out = cli::json_dump(j);
  for (unsigned char c : out) EXPECT_LT(c, 0x80);
  EXPECT_NO_THROW(json::parse(out));
}

TEST(Fsat, LinksFifosAndDevicesAreRefused) {
  TempDir t;
  write(t.path + "/secret", "root-only secret");
  fs::create_directories(t.path + "/img/blobs/sha256");
  write(t.path + "/img/blobs/sha256/plain", "plain");
  fs::create_symlink(t.path + "/secret", t.path + "/img/blobs/sha256/link");
  fs::create_directory_symlink(t.path + "/img/blobs", t.path + "/img/blobs2");
  ASSERT_EQ(::mkfifo((t.path + "/img/fifo").c_str(), 0600), 0);
  fs::create_symlink("/dev/zero", t.path + "/img/dev");
  cli::Fd root = cli::open_user_dir(t.path + "/img");
  EXPECT_EQ(cli::read_file_beneath(root.get(), "blobs/sha256/plain", 100, "img"), "plain");
  std::string msg;
  EXPECT_EQ(code_of([&] { cli::read_file_beneath(root.get(), "blobs/sha256/link", 100, "img"); }, &msg), cli::kBadInput);
  EXPECT_NE(msg.find("symbolic link"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("secret"), std::string::npos) << msg;  // nothing of the target
  EXPECT_EQ(code_of([&] { cli::read_file_beneath(root.get(), "blobs2/sha256/plain", 100, "img"); }, &msg), cli::kBadInput);
  EXPECT_EQ(code_of([&] { cli::read_file_beneath(root.get(), "fifo", 100, "img"); }, &msg), cli::kBadInput);  // no hang
  EXPECT_NE(msg.find("FIFO"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { cli::read_file_beneath(root.get(), "dev", 100, "img"); }), cli::kBadInput);
  EXPECT_EQ(code_of([&] { cli::read_file_beneath(root.get(), "../secret", 100, "img"); }), cli::kBadInput);
  EXPECT_EQ(cli::lookup_beneath(root.get(), "blobs/sha256/plain"), cli::Found::Regular);
  EXPECT_EQ(cli::lookup_beneath(root.get(), "blobs/sha256/link"), cli::Found::Other);
  EXPECT_EQ(cli::lookup_beneath(root.get(), "blobs/sha256/none"), cli::Found::Missing);
}

TEST(Fsat, WritesNeverGoThroughLinks) {
  TempDir t;
  write(t.path + "/victim", "victim");
  fs::create_directories(t.path + "/out");
  fs::create_directories(t.path + "/other");
  fs::create_symlink(t.path + "/victim", t.path + "/out/index.json");
  fs::create_directory_symlink(t.path + "/other", t.path + "/out/blobs");
  cli::Fd out = cli::open_user_dir(t.path + "/out");
  bool created = false;
  EXPECT_EQ(code_of([&] { cli::make_dir_at(out.get(), "blobs", "out/blobs", &created); }), cli::kBadInput);
  EXPECT_EQ(code_of([&] { cli::write_file_at(out.get(), "index.json", "{}", "out/index.json"); }), cli::kBadInput);
  std::ifstream v(t.path + "/victim");
  std::string content((std::istreambuf_iterator<char>(v)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "victim");
  EXPECT_TRUE(fs::is_empty(t.path + "/other"));
  // An ordinary file is replaced atomically; no temporary file stays.
  cli::write_file_at(out.get(), "oci-layout", "x", "out/oci-layout");
  bool replaced = false;
  cli::write_file_at(out.get(), "oci-layout", "y", "out/oci-layout", &replaced);
  EXPECT_TRUE(replaced);
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(t.path + "/out")) n += e.path().filename().string().rfind(".oci-layout", 0) == 0;
  EXPECT_EQ(n, 0u);
}

// The default --jobs of verify, import and pull count the CPUs in the affinity mask (taskset, a
// cgroup cpuset), as the library does. Before, they counted the machine's: under `taskset -c 0`
// verify ran two layers at once on one CPU, and each hashed on a worker of its own.
TEST(UsableCpus, CountsTheAffinityMaskNotTheMachine) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(cli::usable_cpus(), CPU_COUNT(&set));
  if (CPU_COUNT(&set) < 2) GTEST_SKIP() << "this process may run on one CPU only: nothing to restrict";
  int first = 0;
  while (!CPU_ISSET(first, &set)) ++first;
  int inside = 0;
  bool restricted = false;
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    restricted = sched_setaffinity(0, sizeof one, &one) == 0;
    inside = cli::usable_cpus();
  });
  t.join();
  ASSERT_TRUE(restricted) << "sched_setaffinity failed";
  EXPECT_EQ(inside, 1);
}

// verify's default -j was every CPU, uncapped: about 5 MiB a layer under way, so 64 MiB of peak
// RSS at 8 jobs and more on a bigger machine. All four commands now share one default.
TEST(UsableCpus, TheDefaultJobsAreTheMaskAtMostFour) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(cli::default_jobs(), std::min(CPU_COUNT(&set), cli::kDefaultJobsMax));
  EXPECT_LE(cli::kDefaultJobsMax, 4);
  int first = 0;
  while (!CPU_ISSET(first, &set)) ++first;
  int inside = 0;
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    if (sched_setaffinity(0, sizeof one, &one) == 0) inside = cli::default_jobs();
  });
  t.join();
  EXPECT_EQ(inside, 1);
}
