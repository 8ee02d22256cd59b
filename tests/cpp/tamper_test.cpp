// SPDX-License-Identifier: Apache-2.0
// Damaged stores and tampering (docs/reliability.md).
//
// DamagedStoreTest: a damaged database (truncated, garbage pages, a malformed digest in a row,
// a missing parent row, a missing record) or layer data removed by hand must give a clear error
// for the layer concerned — the store opens, the damaged layer's export fails with
// Code::Corrupt naming it (or the layer is reported missing) — not a refusal to open the whole
// store; a database file that cannot be read at all may refuse the open with Code::Corrupt
// naming the file. Nothing that the database no longer names may be destroyed by the open.
//
// TamperTest: a campaign of random changes to a copy of a store, each followed by a verified
// export of the changed layer. Every change that alters what the layer's stream is rebuilt from
// must be detected with the right code; changes that do not (modes, owners, times) must still
// export byte for byte. ROLAYER_TAMPER_TRIALS (per driver, default 200), ROLAYER_TAMPER_SEED;
// tests/campaigns/tamper.sh runs thousands.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/time.h>
#include <zstd.h>

#include <random>

#include "reliability_util.h"
#include "test_sql.h"

using namespace rolayer;
using namespace rolayer::reltest;

namespace {

[[maybe_unused]] const bool kJobs = install_child_jobs();

// ---- helpers ---------------------------------------------------------------------------------

void copy_tree(const std::string& from, const std::string& to) {
  std::string cmd = "cp -a '" + from + "' '" + to + "'";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
}


std::string q(const std::string& s) { return "'" + s + "'"; }

// The decompressed body of a fidelity record (docs/record-format.md: an 8-byte header, then one
// zstd frame), or "" with ok = false when zstd refuses it.
std::string record_body(const std::string& rec, bool& ok) {
  ok = false;
  if (rec.size() < 8) return "";
  ZSTD_DCtx* d = ZSTD_createDCtx();
  std::string out;
  std::vector<char> buf(1 << 16);
  ZSTD_inBuffer in{rec.data() + 8, rec.size() - 8, 0};
  size_t r = 1;
  while (in.pos < in.size) {
    ZSTD_outBuffer o{buf.data(), buf.size(), 0};
    r = ZSTD_decompressStream(d, &o, &in);
    if (ZSTD_isError(r)) break;
    out.append(buf.data(), o.pos);
    if (r == 0) break;
  }
  ok = !ZSTD_isError(r) && r == 0 && in.pos == in.size;
  ZSTD_freeDCtx(d);
  return out;
}

// Regular-file entries of a tar (hard links excluded): the paths whose payloads the store keeps.
std::set<std::string> payload_paths(const std::string& tar) {
  std::set<std::string> out;
  struct archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_open_memory(a, tar.data(), tar.size());
  struct archive_entry* e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e)) continue;
    std::string n = archive_entry_pathname(e);
    while (n.rfind("./", 0) == 0) n = n.substr(2);
    auto slash = n.rfind('/');
    std::string base = slash == std::string::npos ? n : n.substr(slash + 1);
    if (base.rfind(".wh.", 0) == 0) continue;
    out.insert(n);
  }
  archive_read_free(a);
  return out;
}

void walk(const std::string& dir, const std::string& rel, std::vector<std::string>& out, bool dirs_too = false) {
  for (const auto& n : dir_entries(dir)) {
    std::string p = dir + "/" + n, r = rel.empty() ? n : rel + "/" + n;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (dirs_too) out.push_back(r + "/");
      walk(p, r, out, dirs_too);
    } else {
      out.push_back(r);
    }
  }
}

std::string slurp(const std::string& path) {
  std::string s;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

// A store built once per test, closed, with its layers' tars.
struct Pristine {
  StoreModel m;
  std::vector<std::string> order;  // registration order
};

Pristine build_pristine(const std::string& root, const std::string& driver, uint64_t seed) {
  Pristine p;
  p.m.root = root;
  p.m.driver = driver;
  std::mt19937_64 rng(seed);
  auto s = p.m.open();
  using test::TarItem;
  // A fixed layer with every interesting shape: a payload above 1 MiB (streamed), a duplicate
  // path (relocated payload), a hard link, a symlink, an empty file.
  std::string big((1 << 20) + 4321, 'B');
  for (size_t i = 0; i < big.size(); i += 97) big[i] = static_cast<char>(rng());
  std::string fixed = test::make_tar({{TarItem::Dir, "etc", ""},
                                      {TarItem::File, "etc/conf", "first version of the file"},
                                      {TarItem::File, "etc/big", big},
                                      {TarItem::File, "etc/empty", ""},
                                      {TarItem::Symlink, "etc/link", "conf"},
                                      {TarItem::File, "etc/conf", "second version, longer than the first"},
                                      {TarItem::File, "etc/other", std::string(3000, 'o')},
                                      {TarItem::Hardlink, "etc/hard", "etc/other"}});
  std::string a = p.m.add(*s, fixed, "");
  std::string b = p.m.add(*s, random_layer(rng, false, true), a);
  std::string c = p.m.add(*s, random_layer(rng, false), b);
  std::string d = p.m.add(*s, random_layer(rng, true), "");
  std::string e = p.m.add(*s, random_layer(rng, false), d);
  p.order = {a, b, c, d, e};
  return p;
}

bool prefix_of(const std::string& a, const std::string& b) { return a.size() <= b.size() && b.compare(0, a.size(), a) == 0; }

// ---- damaged stores --------------------------------------------------------------------------

class DamagedStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    p_ = build_pristine(scratch_.path() + "/pristine", GetParam(), 11);
    base_ = p_.order[0];   // has children
    child_ = p_.order[1];  // child of base_, has a child
    other_ = p_.order[3];  // an unrelated chain
  }
  std::string fresh() {
    std::string root = scratch_.path() + "/t" + std::to_string(n_++);
    copy_tree(p_.m.root, root);
    return root;
  }
  std::unique_ptr<Store> open(const std::string& root) {
    StoreOptions o;
    o.driver_name = GetParam();
    return Store::open(root, std::move(o));
  }
  std::string cache_of(const std::string& root, const std::string& chain) {
    Sql db(root + "/metadata.db");
    return db.text("SELECT cache_id FROM layers WHERE chain_id = " + q(chain));
  }
  // Every layer but `damaged` exports verified; each damaged one is missing (NotFound) or
  // fails with Corrupt naming it (its DiffID on the error, or its ChainID in the message).
  void expect_per_layer(Store& s, const std::string& root, const std::set<std::string>& damaged,
                        const std::string& what) {
    auto listed = s.list();
    std::set<std::string> present(listed.begin(), listed.end());
    for (const auto& c : p_.order) {
      if (!present.count(c)) {
        EXPECT_TRUE(damaged.count(c)) << what << ": intact layer " << short_id(c) << " is no longer listed";
        Code code = Code::Ok;
        try {
          s.get(c);
        } catch (const Error& e) {
          code = e.code();
        }
        EXPECT_EQ(code, Code::NotFound) << what << ": an unlisted layer must be reported missing";
        continue;
      }
      auto ref = s.get(c);
      ExportResult r = export_layer(*ref);
      if (!damaged.count(c)) {
        EXPECT_TRUE(r.ok && r.data == p_.m.tars.at(c)) << what << ": intact layer " << short_id(c) << ": " << describe(r);
      } else {
        EXPECT_FALSE(r.ok) << what << ": damaged layer " << short_id(c) << " exported";
        EXPECT_EQ(r.code, Code::Corrupt) << what << ": damaged layer " << short_id(c) << ": " << describe(r);
        bool named = r.diff_id == ref->node().diff_id.str() || r.message.find(c) != std::string::npos;
        EXPECT_TRUE(named) << what << ": the error does not name the layer: " << describe(r);
      }
    }
    (void)root;
  }
  // The driver data of `chains` (by their cache ids in the pristine store) still exists.
  void expect_data_kept(const std::string& root, const std::vector<std::string>& chains, const std::string& what) {
    for (const auto& c : chains) {
      std::string id = cache_of(p_.m.root, c);
      EXPECT_TRUE(fs::exists(root + "/" + GetParam() + "/" + id))
          << what << ": the open removed the data of layer " << short_id(c) << " (" << id
          << ") although it cannot tell that the layer is gone";
    }
  }

  Scratch scratch_;
  Pristine p_;
  std::string base_, child_, other_;
  int n_ = 0;
};

// The database cut short: the open refuses with Corrupt naming metadata.db, or opens with
// per-layer errors — but never takes an empty or half database for a new store and deletes
// every layer's data.
TEST_P(DamagedStoreTest, TruncatedDatabase) {
  struct stat st;
  ASSERT_EQ(::stat((p_.m.root + "/metadata.db").c_str(), &st), 0);
  for (off_t size : {off_t(0), off_t(50), off_t(100), off_t(4096), off_t(st.st_size / 2), off_t(st.st_size - 4096)}) {
    std::string root = fresh();
    ASSERT_EQ(::truncate((root + "/metadata.db").c_str(), size), 0);
    std::string what = "metadata.db truncated to " + std::to_string(size) + " of " + std::to_string(st.st_size);
    try {
      auto s = open(root);
      auto listed = s->list();
      std::set<std::string> damaged;
      for (const auto& c : p_.order)
        if (std::find(listed.begin(), listed.end(), c) == listed.end()) damaged.insert(c);
      EXPECT_LT(damaged.size(), p_.order.size()) << what << ": opened as an empty store";
      expect_per_layer(*s, root, damaged, what);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Code::Corrupt) << what << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("metadata.db"), std::string::npos)
          << what << ": the error does not name the database file: " << e.what();
    }
    expect_data_kept(root, p_.order, what);
  }
}

// Garbage over one page at a time (the header page, the tables' pages, the records' pages).
TEST_P(DamagedStoreTest, GarbagePages) {
  struct stat st;
  ASSERT_EQ(::stat((p_.m.root + "/metadata.db").c_str(), &st), 0);
  long pages = st.st_size / 4096;
  std::mt19937_64 rng(5);
  for (long page = 0; page < pages; page++) {
    std::string root = fresh();
    std::string garbage(4096, '\0');
    for (auto& c : garbage) c = static_cast<char>(rng());
    {
      FILE* f = std::fopen((root + "/metadata.db").c_str(), "r+b");
      ASSERT_TRUE(f);
      std::fseek(f, page * 4096, SEEK_SET);
      std::fwrite(garbage.data(), 1, garbage.size(), f);
      std::fclose(f);
    }
    std::string what = "garbage over page " + std::to_string(page + 1) + " of " + std::to_string(pages);
    try {
      auto s = open(root);
      auto listed = s->list();
      // Which layers are damaged is not known in advance: every layer either exports verified,
      // or is missing, or fails with Corrupt.
      for (const auto& c : listed) {
        auto it = p_.m.tars.find(c);
        if (it == p_.m.tars.end()) {
          ADD_FAILURE() << what << ": unknown layer listed: " << c;
          continue;
        }
        ExportResult r = export_layer(*s->get(c));
        if (r.ok) EXPECT_EQ(r.data, it->second) << what << ": verified but different bytes";
        else EXPECT_TRUE(r.code == Code::Corrupt || r.code == Code::Digest) << what << ": " << describe(r);
      }
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Code::Corrupt) << what << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("metadata.db"), std::string::npos)
          << what << ": the error does not name the database file: " << e.what();
    }
    expect_data_kept(root, p_.order, what);
  }
}

// A malformed digest in a row: the open succeeds, the other chain is intact; the damaged layer
// and its descendants are reported missing or fail with Corrupt.
TEST_P(DamagedStoreTest, MalformedDigestInARow) {
  for (const char* column : {"diff_id", "chain_id"}) {
    std::string root = fresh();
    {
      Sql db(root + "/metadata.db");
      db.exec(std::string("PRAGMA foreign_keys=OFF; UPDATE layers SET ") + column + " = 'sha256:not-a-digest' " +
              "WHERE chain_id = " + q(child_));
    }
    std::string what = std::string("malformed ") + column + " in the row of " + short_id(child_);
    auto s = open(root);
    std::set<std::string> damaged = {child_, p_.order[2]};  // and its child
    expect_per_layer(*s, root, damaged, what);
    expect_data_kept(root, {child_, p_.order[2]}, what);
  }
}

// After such damage the layers can be registered again (pulled anew): the damaged row does not
// block its own ChainID forever.
TEST_P(DamagedStoreTest, DamagedLayerCanBeRegisteredAgain) {
  std::string root = fresh();
  {
    Sql db(root + "/metadata.db");
    db.exec("UPDATE layers SET diff_id = 'sha256:not-a-digest' WHERE chain_id = " + q(child_));
  }
  {
    auto s = open(root);
    for (const auto& c : {child_, p_.order[2]}) {
      test::MemSource src(p_.m.tars.at(c));
      try {
        auto r = s->register_layer(p_.m.parent.at(c), src);
        EXPECT_EQ(r->node().chain_id.str(), c);
        EXPECT_EQ(export_layer(*r).data, p_.m.tars.at(c));
      } catch (const Error& e) {
        ADD_FAILURE() << "registering " << short_id(c) << " again after its row was damaged: " << e.what();
      }
    }
  }
  // Repaired: every layer verifies, and the replaced rows' old data is not left behind.
  auto r = check_store(root, GetParam(), p_.m.tars);
  EXPECT_TRUE(r.problems.empty()) << join(r.problems, "\n");
}

// A parent row deleted by hand (foreign keys are off in the sqlite3 shell): the open succeeds;
// the orphaned child is reported missing or fails with Corrupt; it can be registered again.
TEST_P(DamagedStoreTest, MissingParentRow) {
  std::string root = fresh();
  {
    Sql db(root + "/metadata.db");
    db.exec("PRAGMA foreign_keys=OFF; DELETE FROM layers WHERE chain_id = " + q(base_));
  }
  std::string what = "row of " + short_id(base_) + " deleted";
  {
    auto s = open(root);
    expect_per_layer(*s, root, {base_, child_, p_.order[2]}, what);
    expect_data_kept(root, {child_, p_.order[2]}, what);
  }
  {
    auto s = open(root);
    for (const auto& c : {base_, child_, p_.order[2]}) {
      test::MemSource src(p_.m.tars.at(c));
      try {
        auto r = s->register_layer(p_.m.parent.at(c), src);
        s->retain(c);
        EXPECT_EQ(export_layer(*r).data, p_.m.tars.at(c));
      } catch (const Error& e) {
        ADD_FAILURE() << what << ": registering " << short_id(c) << " again: " << e.what();
      }
    }
  }
  // The deleted row's data is unknown to the store (no row, no intent mark) and stays; the
  // replaced rows' old data must not.
  auto r = check_store(root, GetParam(), p_.m.tars);
  std::string base_data = "/" + cache_of(p_.m.root, base_);
  std::vector<std::string> problems;
  for (const auto& pr : r.problems)
    if (pr.find("orphaned driver data") == std::string::npos || pr.find(base_data) == std::string::npos)
      problems.push_back(pr);
  EXPECT_TRUE(problems.empty()) << what << ", then registered again:\n" << join(problems, "\n");
}

// A layer's fidelity record gone (dir driver): its export fails with Corrupt naming it.
TEST_P(DamagedStoreTest, MissingRecord) {
  if (GetParam() != "dir") GTEST_SKIP() << "the exact driver keeps no fidelity record";
  std::string root = fresh();
  {
    Sql db(root + "/metadata.db");
    db.exec("DELETE FROM records WHERE chain_id = " + q(child_));
  }
  auto s = open(root);
  expect_per_layer(*s, root, {child_}, "record of " + short_id(child_) + " deleted");
}

// A layer's driver directory removed by hand: the store opens, that layer's export fails with
// Corrupt naming it; every other layer (its children included) still exports verified.
TEST_P(DamagedStoreTest, LayerDirectoryRemovedByHand) {
  for (const auto& victim : {base_, child_, other_}) {
    std::string root = fresh();
    fs::remove_all(root + "/" + GetParam() + "/" + cache_of(root, victim));
    auto s = open(root);
    expect_per_layer(*s, root, {victim}, "driver directory of " + short_id(victim) + " removed");
  }
}

// The layer's directory emptied (dir driver: diff/ and meta/ gone, the directory kept).
TEST_P(DamagedStoreTest, LayerDirectoryEmptied) {
  std::string root = fresh();
  std::string dir = root + "/" + GetParam() + "/" + cache_of(root, child_);
  for (const auto& n : dir_entries(dir)) fs::remove_all(dir + "/" + n);
  auto s = open(root);
  expect_per_layer(*s, root, {child_}, "driver directory of " + short_id(child_) + " emptied");
}

// The driver's record of a layer's parent changed (dir: meta/parent, exact: parent). The dir
// driver's export does not read it (the stream comes from the record and the payloads): it
// must still verify. The exact driver reads it to find the diff: the export must fail with
// Corrupt (the stored data is inconsistent), not claim that the driver cannot do it.
TEST_P(DamagedStoreTest, DriverParentRecordChanged) {
  std::string root = fresh();
  std::string file = root + "/" + GetParam() + "/" + cache_of(root, child_) + (GetParam() == "dir" ? "/meta/parent" : "/parent");
  std::string data = slurp(file);
  ASSERT_FALSE(data.empty());
  data[3] = data[3] == 'a' ? 'b' : 'a';
  {
    FILE* f = std::fopen(file.c_str(), "wb");
    std::fwrite(data.data(), 1, data.size(), f);
    std::fclose(f);
  }
  auto s = open(root);
  if (GetParam() == "dir") expect_per_layer(*s, root, {}, "meta/parent of " + short_id(child_) + " changed");
  else expect_per_layer(*s, root, {child_}, "parent file of " + short_id(child_) + " changed");
}

INSTANTIATE_TEST_SUITE_P(Drivers, DamagedStoreTest, ::testing::Values("dir", "exact"),
                         [](const auto& info) { return info.param; });

// ---- the tampering campaign ------------------------------------------------------------------

enum class Verdict { Harmless, Detected, WrongCode, Undetected, Missed };

struct KindTally {
  long trials = 0, harmless = 0, detected = 0, wrong = 0, undetected = 0;
  long corrupt = 0, digest = 0, missing = 0, inval = 0;
  long unnamed = 0;         // detected, but the error does not name the entry
  long leaked = 0;          // detected, but damaged bytes went out first
};

class TamperTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    p_ = build_pristine(scratch_.path() + "/pristine", GetParam(), static_cast<uint64_t>(env_long("ROLAYER_TAMPER_SEED", 3)));
    Sql db(p_.m.root + "/metadata.db");
    for (const auto& c : p_.order) {
      cache_[c] = db.text("SELECT cache_id FROM layers WHERE chain_id = " + q(c));
      payloads_[c] = payload_paths(p_.m.tars.at(c));
    }
  }

  void TearDown() override {
    if (tally_.empty()) return;
    std::printf("[ tamper   ] %s: %ld trials\n", GetParam().c_str(), total_);
    for (const auto& [k, t] : tally_)
      std::printf("[ tamper   ]   %-22s %4ld: harmless+verified %ld, detected %ld (corrupt %ld, digest %ld, "
                  "missing %ld, inval %ld; unnamed %ld, damaged bytes out first %ld), WRONG CODE %ld, UNDETECTED %ld\n",
                  k.c_str(), t.trials, t.harmless, t.detected, t.corrupt, t.digest, t.missing, t.inval, t.unnamed,
                  t.leaked, t.wrong, t.undetected);
  }

  // The files of a layer that hold payloads: diff/<payload path> and meta/reloc/* (dir), or
  // layer.tar (exact). Relative to the layer directory.
  std::vector<std::string> payload_files(const std::string& root, const std::string& chain) {
    std::string dir = root + "/" + GetParam() + "/" + cache_.at(chain);
    std::vector<std::string> out;
    if (GetParam() == "exact") return {"layer.tar"};
    for (const auto& p : payloads_.at(chain))
      if (fs::exists(dir + "/diff/" + p)) out.push_back("diff/" + p);
    std::vector<std::string> reloc;
    walk(dir + "/meta/reloc", "", reloc);
    for (const auto& r : reloc) out.push_back("meta/reloc/" + r);
    return out;
  }

  // The entry paths an error may name for a tampered file: the file's own path below diff/,
  // every other name of the same inode below diff/ (hard links), or the path the payload index
  // gives a relocated file.
  std::set<std::string> names_for(const std::string& layer_dir, const std::string& rel) {
    std::set<std::string> out;
    struct stat st;
    if (rel.rfind("diff/", 0) == 0) out.insert(rel.substr(5));
    if (::lstat((layer_dir + "/" + rel).c_str(), &st) == 0 && st.st_nlink > 1) {
      std::vector<std::string> all;
      walk(layer_dir + "/diff", "", all);
      for (const auto& a : all) {
        struct stat s2;
        if (::lstat((layer_dir + "/diff/" + a).c_str(), &s2) == 0 && s2.st_ino == st.st_ino) out.insert(a);
      }
    }
    if (rel.rfind("meta/reloc/", 0) == 0) {
      std::string idx = slurp(layer_dir + "/meta/payloads");
      std::vector<std::string> recs;
      size_t i = 0;
      while (i < idx.size()) {
        size_t j = idx.find('\0', i);
        if (j == std::string::npos) break;
        recs.push_back(idx.substr(i, j - i));
        i = j + 1;
      }
      for (size_t k = 1; k + 2 < recs.size(); k += 3)  // after the magic: (path, occurrence, file)
        if ("meta/" + recs[k + 2] == rel) out.insert(recs[k]);
    }
    return out;
  }

  void count(const std::string& kind, Verdict v, const ExportResult& r, bool named, bool leaked,
             const std::string& detail) {
    auto& t = tally_[kind];
    t.trials++;
    total_++;
    switch (v) {
      case Verdict::Harmless: t.harmless++; break;
      case Verdict::Detected:
        t.detected++;
        if (r.code == Code::Corrupt) t.corrupt++;
        else if (r.code == Code::Digest) t.digest++;
        else if (r.code == Code::NotFound) t.missing++;
        else if (r.code == Code::Inval) t.inval++;
        if (!named) t.unnamed++;
        if (leaked) t.leaked++;
        break;
      case Verdict::WrongCode: t.wrong++; break;
      case Verdict::Undetected:
      case Verdict::Missed: t.undetected++; break;
    }
    if (v == Verdict::WrongCode || v == Verdict::Undetected || v == Verdict::Missed)
      ADD_FAILURE() << GetParam() << ": " << kind << ": " << detail << " -> " << describe(r);
    else if (std::getenv("ROLAYER_RELIABILITY_LOG"))
      std::printf("[ tamper   ] %s: %s: %s -> %s\n", GetParam().c_str(), kind.c_str(), detail.c_str(),
                  describe(r).c_str());
  }

  void trial(std::mt19937_64& rng) {
    std::string root = scratch_.path() + "/trial";
    if (fs::exists(root)) fs::remove_all(root);
    copy_tree(p_.m.root, root);
    const std::string& chain = p_.order[rng() % p_.order.size()];
    std::string layer_dir = root + "/" + GetParam() + "/" + cache_.at(chain);
    const std::string& tar = p_.m.tars.at(chain);
    bool dir = GetParam() == "dir";

    static const std::vector<std::pair<const char*, int>> kDirKinds = {
        {"payload: byte changed", 25}, {"payload: truncated", 10}, {"payload: extended", 5},
        {"payload: removed", 10},      {"payload: mode", 6},       {"payload: owner", 6},
        {"payload: times", 4},         {"record: byte changed", 20}, {"layers: DiffID changed", 10},
        {"layers: DiffID malformed", 4}, {"driver meta: byte changed", 6}, {"non-payload: removed", 4}};
    static const std::vector<std::pair<const char*, int>> kExactKinds = {
        {"stream: byte changed", 30}, {"stream: truncated", 12}, {"stream: extended", 6}, {"stream: removed", 8},
        {"stream: mode", 6},          {"stream: owner", 6},      {"stream: times", 4},    {"layers: DiffID changed", 12},
        {"layers: DiffID malformed", 4}};  // (its parent file: DamagedStoreTest.DriverParentRecordChanged)
    const auto& kinds = dir ? kDirKinds : kExactKinds;
    int sum = 0;
    for (auto& k : kinds) sum += k.second;
    int pick = static_cast<int>(rng() % static_cast<uint64_t>(sum));
    std::string kind;
    for (auto& k : kinds)
      if ((pick -= k.second) < 0) {
        kind = k.first;
        break;
      }

    std::string detail;
    std::set<std::string> names;  // entry paths the error may name
    bool harmless = false, small_payload = false;
    std::string file;
    if (kind.rfind("payload", 0) == 0 || kind.rfind("stream", 0) == 0) {
      auto files = payload_files(root, chain);
      bool needs_bytes = kind.find("byte") != std::string::npos || kind.find("truncated") != std::string::npos;
      std::vector<std::string> usable;
      for (const auto& f : files) {
        struct stat st;
        if (::lstat((layer_dir + "/" + f).c_str(), &st) == 0 && (!needs_bytes || st.st_size > 0)) usable.push_back(f);
      }
      if (usable.empty()) return;  // (a layer without payloads: draw again)
      file = usable[rng() % usable.size()];
      std::string abs = layer_dir + "/" + file;
      names = names_for(layer_dir, file);
      struct stat st;
      ::lstat(abs.c_str(), &st);
      small_payload = st.st_size <= (1 << 20);
      detail = short_id(chain) + " " + file + " (" + std::to_string(st.st_size) + " bytes)";
      if (kind.find("byte changed") != std::string::npos) {
        off_t at = static_cast<off_t>(rng() % static_cast<uint64_t>(st.st_size));
        int fd = ::open(abs.c_str(), O_RDWR);
        unsigned char b;
        ::pread(fd, &b, 1, at);
        b ^= static_cast<unsigned char>(1u << (rng() % 8));
        ::pwrite(fd, &b, 1, at);
        ::close(fd);
        detail += " at " + std::to_string(at);
      } else if (kind.find("truncated") != std::string::npos) {
        off_t to = static_cast<off_t>(rng() % static_cast<uint64_t>(st.st_size));
        ::truncate(abs.c_str(), to);
        detail += " to " + std::to_string(to);
      } else if (kind.find("extended") != std::string::npos) {
        int fd = ::open(abs.c_str(), O_WRONLY | O_APPEND);
        std::string more(1 + rng() % 100, static_cast<char>(rng()));
        ::write(fd, more.data(), more.size());
        ::close(fd);
      } else if (kind.find("removed") != std::string::npos) {
        ::unlink(abs.c_str());
      } else if (kind.find("mode") != std::string::npos) {
        mode_t m = static_cast<mode_t>(rng() % 010000);
        ::chmod(abs.c_str(), m);
        detail += " mode " + std::to_string(m);
        harmless = true;
      } else if (kind.find("owner") != std::string::npos) {
        ::lchown(abs.c_str(), static_cast<uid_t>(rng() % 70000), static_cast<gid_t>(rng() % 70000));
        harmless = true;
      } else if (kind.find("times") != std::string::npos) {
        struct timespec ts[2] = {{static_cast<time_t>(rng() % 2000000000), 0}, {static_cast<time_t>(rng() % 2000000000), 0}};
        ::utimensat(AT_FDCWD, abs.c_str(), ts, AT_SYMLINK_NOFOLLOW);
        harmless = true;
      }
    } else if (kind == "driver meta: byte changed") {
      // The driver's own small files: meta/{parent,whiteouts,opaque,payloads,applied} (dir),
      // parent (exact).
      std::vector<std::string> metas;
      for (const char* f : {"meta/parent", "meta/whiteouts", "meta/opaque", "meta/payloads", "meta/applied", "parent"}) {
        struct stat st;
        if (::lstat((layer_dir + "/" + f).c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) metas.push_back(f);
      }
      if (metas.empty()) return;  // (a base layer's parent file is empty: draw again)
      file = metas[rng() % metas.size()];
      std::string abs = layer_dir + "/" + file;
      struct stat st;
      ::lstat(abs.c_str(), &st);
      off_t at = static_cast<off_t>(rng() % static_cast<uint64_t>(st.st_size));
      int fd = ::open(abs.c_str(), O_RDWR);
      unsigned char b;
      ::pread(fd, &b, 1, at);
      b ^= static_cast<unsigned char>(1u << (rng() % 8));
      ::pwrite(fd, &b, 1, at);
      ::close(fd);
      kind += std::string(" (") + file + ")";
      detail = short_id(chain) + " " + file + " at " + std::to_string(at);
    } else if (kind == "non-payload: removed") {
      // A symlink or the second name of a hard link below diff/: the stream replays these from
      // the record, so the export stays exact (the driver's own tree does change).
      std::vector<std::string> all, others;
      walk(layer_dir + "/diff", "", all);
      for (const auto& a : all)
        if (!payloads_.at(chain).count(a)) others.push_back(a);
      if (others.empty()) return;
      file = others[rng() % others.size()];
      ::unlink((layer_dir + "/diff/" + file).c_str());
      detail = short_id(chain) + " diff/" + file;
      harmless = true;
    } else if (kind.rfind("record", 0) == 0) {
      Sql db(root + "/metadata.db");
      auto chunks = db.blobs(chain);
      if (chunks.empty()) {
        ADD_FAILURE() << "no record for " << chain;
        return;
      }
      std::string before;
      for (const auto& ch : chunks) before += ch.second;
      size_t which = rng() % chunks.size();
      auto& [seq, data] = chunks[which];
      size_t at = rng() % data.size();
      size_t global = at;
      for (size_t k = 0; k < which; k++) global += chunks[k].second.size();
      data[at] = static_cast<char>(data[at] ^ (1u << (rng() % 8)));
      db.set_blob(chain, seq, data);
      std::string after;
      for (const auto& ch : chunks) after += ch.second;
      detail = short_id(chain) + " record chunk " + std::to_string(seq) + " byte " + std::to_string(at) + " of " +
               std::to_string(data.size());
      // A bit that zstd does not read (the compressed form has a few): the record decodes to
      // the same body, so nothing was changed that matters — the export must verify.
      bool ok1, ok2;
      std::string b1 = record_body(before, ok1), b2 = record_body(after, ok2);
      if (global >= 8 && ok1 && ok2 && b1 == b2) {  // (the 8 header bytes are not zstd's)
        harmless = true;
        kind = "record: byte changed, same body";
      }
    } else if (kind == "layers: DiffID changed") {
      Sql db(root + "/metadata.db");
      std::string d = db.text("SELECT diff_id FROM layers WHERE chain_id = " + q(chain));
      size_t at = 7 + rng() % 64;
      const char* hex = "0123456789abcdef";
      char c;
      do c = hex[rng() % 16];
      while (c == d[at]);
      d[at] = c;
      db.exec("UPDATE layers SET diff_id = " + q(d) + " WHERE chain_id = " + q(chain));
      detail = short_id(chain) + " diff_id hex digit " + std::to_string(at - 7);
    } else {  // DiffID malformed
      Sql db(root + "/metadata.db");
      std::string d = db.text("SELECT diff_id FROM layers WHERE chain_id = " + q(chain));
      static const char* bad[] = {"G", "", "Z", ":", " "};
      size_t at = 7 + rng() % 64;
      std::string b = bad[rng() % 5];
      d = b.empty() ? d.substr(0, at) : d.substr(0, at) + b + d.substr(at + 1);
      db.exec("UPDATE layers SET diff_id = " + q(d) + " WHERE chain_id = " + q(chain));
      detail = short_id(chain) + " diff_id malformed at " + std::to_string(at - 7);
    }

    // Reopen, export the layer.
    ExportResult r;
    bool listed = true;
    try {
      StoreOptions o;
      o.driver_name = GetParam();
      auto s = Store::open(root, std::move(o));
      auto l = s->list();
      listed = std::find(l.begin(), l.end(), chain) != l.end();
      if (listed) {
        r = export_layer(*s->get(chain));
      } else {
        try {
          s->get(chain);
          r.message = "unlisted but found";
        } catch (const Error& e) {
          r.code = e.code();
          r.message = std::string("not listed after the reopen; get: ") + e.what();
        }
      }
    } catch (const Error& e) {
      r.ok = false;
      r.code = e.code();
      r.message = std::string("open: ") + e.what();
    }

    Verdict v;
    bool named = true, leaked = false;
    if (harmless || (kind.rfind("driver meta", 0) == 0 && r.ok && r.data == tar)) {
      // (The dir driver's parent, whiteouts, opaque and applied files are not read by the
      // export: the stream is rebuilt from the record and the payloads alone.)
      v = r.ok && r.data == tar ? Verdict::Harmless : Verdict::WrongCode;
    } else if (r.ok) {
      v = r.data == tar ? Verdict::Missed : Verdict::Undetected;
    } else {
      leaked = !prefix_of(r.data, tar);
      if (kind.rfind("payload", 0) == 0) {
        v = r.code == Code::Corrupt || r.code == Code::Digest ? Verdict::Detected : Verdict::WrongCode;
        named = r.code == Code::Corrupt && names.count(r.path) && r.message.find(r.path) != std::string::npos;
        if (r.code == Code::Corrupt && !named) v = Verdict::WrongCode;  // blames another entry
        if (leaked && small_payload) v = Verdict::WrongCode;  // a payload <= 1 MiB is checked before it goes out
      } else if (kind.rfind("stream", 0) == 0 || kind.rfind("record", 0) == 0) {
        v = r.code == Code::Corrupt || r.code == Code::Digest ? Verdict::Detected : Verdict::WrongCode;
        named = r.diff_id == "sha256:" + test::sha256_hex(tar);  // the error carries the layer's DiffID
      } else if (kind.rfind("driver meta", 0) == 0) {
        v = r.code == Code::Corrupt || r.code == Code::Digest ? Verdict::Detected : Verdict::WrongCode;
      } else if (kind == "layers: DiffID changed") {
        v = r.code == Code::Digest || r.code == Code::Inval ? Verdict::Detected : Verdict::WrongCode;
      } else {  // malformed: refused at reopen, or the layer reported missing
        v = r.code == Code::Inval || r.code == Code::Digest || r.code == Code::NotFound ? Verdict::Detected
                                                                                      : Verdict::WrongCode;
      }
    }
    (void)listed;
    count(kind, v, r, named, leaked, detail);
  }

  Scratch scratch_;
  Pristine p_;
  std::map<std::string, std::string> cache_;
  std::map<std::string, std::set<std::string>> payloads_;
  std::map<std::string, KindTally> tally_;
  long total_ = 0;
};

TEST_P(TamperTest, RandomChangesAreDetected) {
  long trials = env_long("ROLAYER_TAMPER_TRIALS", 200);
  std::mt19937_64 rng(static_cast<uint64_t>(env_long("ROLAYER_TAMPER_SEED", 3)) * 1000003 + (GetParam() == "dir"));
  for (long i = 0; total_ < trials && i < trials * 3; i++) trial(rng);
  EXPECT_EQ(total_, trials);
}

// Every single-bit change of a fidelity record, one at a time (the fixed layer's record; every
// layer's with ROLAYER_TAMPER_ALL_RECORDS=1). Bound by its stored chunks (rows registered since
// session 8): every change is Corrupt, before the record is decoded. Bound by its body only
// (chunk digests cleared, as in a row of an older library): detected (Corrupt or Digest), or the
// record decodes to the same body and the export verifies.
TEST_P(TamperTest, EveryBitOfARecord) {
  if (GetParam() != "dir") GTEST_SKIP() << "the exact driver keeps no fidelity record";
  std::string root = scratch_.path() + "/bits";
  copy_tree(p_.m.root, root);
  StoreOptions o;
  o.driver_name = GetParam();
  auto s = Store::open(root, std::move(o));
  Sql db(root + "/metadata.db");
  std::vector<std::string> layers = {p_.order[0]};
  if (env_long("ROLAYER_TAMPER_ALL_RECORDS", 0)) layers = p_.order;
  for (bool chunks_bound : {true, false}) {
    if (!chunks_bound) db.exec("UPDATE layers SET record_chunk_digests = NULL");  // (read at each export)
    long flips = 0, detected = 0, same_body = 0, corrupt = 0, digest = 0;
    for (const auto& chain : layers) {
      auto ref = s->get(chain);
      auto chunks = db.blobs(chain);
      ASSERT_EQ(chunks.size(), 1u) << "a record of one chunk expected";
      const std::string orig = chunks[0].second;
      bool ok0;
      std::string body0 = record_body(orig, ok0);
      ASSERT_TRUE(ok0);
      for (size_t at = 0; at < orig.size(); at++)
        for (int bit = 0; bit < 8; bit++) {
          std::string d = orig;
          d[at] = static_cast<char>(d[at] ^ (1 << bit));
          db.set_blob(chain, chunks[0].first, d);
          ExportResult r = export_layer(*ref);
          flips++;
          bool okb;
          bool same = !chunks_bound && at >= 8 && record_body(d, okb) == body0 && okb;
          if (same) {
            same_body++;
            EXPECT_TRUE(r.ok && r.data == p_.m.tars.at(chain)) << "byte " << at << " bit " << bit << ": " << describe(r);
          } else if (!r.ok && (r.code == Code::Corrupt || r.code == Code::Digest)) {
            detected++;
            (r.code == Code::Corrupt ? corrupt : digest)++;
            EXPECT_EQ(r.diff_id, ref->node().diff_id.str()) << "the error does not carry the layer's DiffID";
            if (chunks_bound) {
              EXPECT_NE(r.message.find("chunk 0 differs"), std::string::npos) << "byte " << at << " bit " << bit << ": " << r.message;
            }
          } else {
            ADD_FAILURE() << short_id(chain) << " record byte " << at << " bit " << bit << ": " << describe(r);
          }
        }
      db.set_blob(chain, chunks[0].first, orig);
      EXPECT_TRUE(export_layer(*ref).ok);
    }
    std::printf("[ tamper   ] every bit of %zu record(s), bound by %s: %ld flips, %ld detected (corrupt %ld, digest %ld), "
                "%ld decode to the same body and verified\n",
                layers.size(), chunks_bound ? "chunks" : "body", flips, detected, corrupt, digest, same_body);
  }
}

INSTANTIATE_TEST_SUITE_P(Drivers, TamperTest, ::testing::Values("dir", "exact"),
                         [](const auto& info) { return info.param; });

}  // namespace
