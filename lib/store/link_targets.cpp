// SPDX-License-Identifier: Apache-2.0
// Hard-link targets outside the layer being registered (lib/store/link_targets.h).
//
// While the layer streams through the register tee, every entry's cleaned path is kept as a
// 128-bit key in constant memory (the first ones exactly, then in a Bloom filter); a hard link whose target is no
// earlier entry is kept aside (rare: a link to a file of a lower layer, or a broken archive).
// Before the commit the parents' verified streams are read, newest first, until each kept target
// is settled: a layer that has an entry at the target settles it (a directory is an error, as on
// the dir driver); a layer that hides it (a whiteout of it or of one of its folders, an opaque
// marker in one of its folders, a non-directory in place of one of its folders) settles it as
// missing; below the base layer it is missing.
#include "store/link_targets.h"

#include <functional>
#include <mutex>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "record/xxh3.h"
#include "store/state.h"
#include "store/store.h"
#include "tar/path.h"

namespace rolayer {
namespace {

// Memory for the kept targets is bounded: a layer with more bytes of hard-link targets outside
// itself than this is refused (real layers have a handful).
constexpr uint64_t kMaxPendingBytes = 16u << 20;
// The layer's paths: the first 65,536 kept exactly (about 4 MiB; directories up to twice that),
// then a Bloom filter of 16 MiB with 7 probes (a false "seen" for 1 in ~10^9 links at a million
// entries, ~0.3% at ten million).
constexpr size_t kExact = 65536;
constexpr size_t kBloomWords = (16u << 20) / 8;
constexpr int kProbes = 7;

bool strict_ancestor(std::string_view anc, std::string_view p) {
  if (anc.empty()) return !p.empty();
  return p.size() > anc.size() && p.compare(0, anc.size(), anc) == 0 && p[anc.size()] == '/';
}

std::string not_found(const std::string& path, const std::string& target) {
  return "hard link '" + path + "': target '" + target + "' not found";
}

}  // namespace

LinkTargets::Key LinkTargets::key_of(const std::string& path) {
  // Two unrelated 64-bit functions: a collision of both (which would at worst accept a link as
  // the dir driver would not) needs a name crafted against both at once.
  return Key{record::Xxh3::hash(reinterpret_cast<const uint8_t*>(path.data()), path.size()),
             static_cast<uint64_t>(std::hash<std::string_view>{}(path)) ^ (path.size() * 0x9e3779b97f4a7c15ull)};
}

void LinkTargets::see(const std::string& path, const std::string& link_target, tar::EntryKind kind) {
  if (kind == tar::EntryKind::Hardlink) {
    if (strict_ancestor(path, link_target) || strict_ancestor(link_target, path))
      throw Error(Code::Archive, "hard link '" + path + "' to its own ancestor or descendant '" + link_target + "'")
          .with_path(path);
    Key k = key_of(link_target);
    auto it = seen_.find(k);
    if (it != seen_.end()) {
      if (it->second)
        throw Error(Code::Archive, "hard link '" + path + "' to a directory '" + link_target + "'").with_path(path);
    } else if (maybe_seen(k)) {
      // An earlier entry of the layer, as far as the Bloom filter knows.
    } else if (pending_keys_.emplace(k, true).second) {
      pending_bytes_ += path.size() + link_target.size() + 64;
      if (pending_bytes_ > kMaxPendingBytes)
        throw Error(Code::Archive, "the layer has more hard links to files outside it than the store accepts")
            .with_path(path);
      pending_.emplace_back(path, link_target);
    }
  }
  remember(key_of(path), kind == tar::EntryKind::Directory);
}

bool LinkTargets::maybe_seen(const Key& k) const {
  if (bloom_.empty()) return false;
  for (int i = 0; i < kProbes; ++i) {
    uint64_t bit = (k.a + static_cast<uint64_t>(i) * k.b) % (bloom_.size() * 64);
    if (!(bloom_[bit / 64] & (uint64_t{1} << (bit % 64)))) return false;
  }
  return true;
}

void LinkTargets::remember(const Key& k, bool dir) {
  auto it = seen_.find(k);
  if (it != seen_.end()) {
    it->second = dir;
    return;
  }
  if (seen_.size() < (dir ? 2 * kExact : kExact)) {
    seen_.emplace(k, dir);
    return;
  }
  if (bloom_.empty()) bloom_.assign(kBloomWords, 0);
  for (int i = 0; i < kProbes; ++i) {
    uint64_t bit = (k.a + static_cast<uint64_t>(i) * k.b) % (bloom_.size() * 64);
    bloom_[bit / 64] |= uint64_t{1} << (bit % 64);
  }
}

namespace {

enum class State { Open, File, Dir, Gone };

// A rolling 128-bit key of a path, so that all the folders of a target are keyed in time and
// memory linear in its length. Every hit is confirmed on the strings: a collision costs time only.
struct PKey {
  uint64_t a = 0, b = 0;
  void add(unsigned char c) {
    a = a * 0x100000001b3ull + c + 1;
    b = (b ^ (c + 1)) * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
  }
  bool operator==(const PKey& o) const { return a == o.a && b == o.b; }
};
struct PKeyHash {
  size_t operator()(const PKey& k) const { return static_cast<size_t>(k.a ^ (k.b >> 7) ^ (k.b << 29)); }
};
PKey pkey(std::string_view p) {
  PKey k;
  for (unsigned char c : p) k.add(c);
  return k;
}

// Where each kept target is looked up: by its own path, and by each of its folders' paths.
struct Index {
  const std::vector<std::pair<std::string, std::string>>* pending = nullptr;
  std::unordered_map<PKey, std::vector<size_t>, PKeyHash> exact, under;
};

// One parent layer's verdicts on the open targets (hashed look-ups: linear in the layer's
// entries plus the targets, whatever their number).
class LayerPass : public tar::ScanHandler {
 public:
  LayerPass(const Index& idx, std::vector<State>& state)
      : idx_(idx), state_(state), entry_(state.size(), State::Open), hidden_(state.size(), false) {}

  void on_raw(const uint8_t*, size_t) override {}
  void on_payload(const uint8_t*, size_t) override {}
  void on_entry_end() override {}
  void on_entry(const tar::Entry& e) override {
    std::string p = safety_.check(e);
    bool dir = e.kind == tar::EntryKind::Directory;
    if (tar::is_whiteout(p)) {
      std::string gone = tar::whiteout_target(p);
      if (tar::is_opaque_whiteout(p)) {
        // An opaque marker hides all that lower layers have in its folder.
        if (gone.empty()) {
          hidden_.assign(hidden_.size(), true);
        } else {
          hide(true, gone);
        }
      } else {
        hide(false, gone);  // a whiteout hides the lower layers' path and all under it
        hide(true, gone);
      }
      return;
    }
    each(false, p, [&](size_t i) { entry_[i] = dir ? State::Dir : State::File; });
    if (!dir) hide(true, p);  // a non-directory where one of the targets' folders was
  }

  // Settles what this layer decides; true when some target is still open.
  bool settle() {
    bool open = false;
    for (size_t i = 0; i < state_.size(); ++i) {
      if (state_[i] != State::Open) continue;
      if (entry_[i] != State::Open) state_[i] = entry_[i];
      else if (hidden_[i]) state_[i] = State::Gone;
      else open = true;
    }
    return open;
  }

 private:
  // The targets that are p (under == false) or lie under the folder p (under == true).
  template <class F>
  void each(bool under, const std::string& p, F f) const {
    const auto& m = under ? idx_.under : idx_.exact;
    auto it = m.find(pkey(p));
    if (it == m.end()) return;
    for (size_t i : it->second) {
      const std::string& t = (*idx_.pending)[i].second;
      if (under ? strict_ancestor(p, t) : t == p) f(i);
    }
  }
  void hide(bool under, const std::string& p) {
    each(under, p, [&](size_t i) { hidden_[i] = true; });
  }

  const Index& idx_;
  std::vector<State>& state_;
  std::vector<State> entry_;
  std::vector<bool> hidden_;
  tar::SafetyChecker safety_;
};

}  // namespace

void LinkTargets::check_parents(const std::shared_ptr<StoreState>& st,
                                const std::shared_ptr<LayerNode>& parent) const {
  if (pending_.empty()) return;
  std::vector<State> state(pending_.size(), State::Open);
  Index idx;
  idx.pending = &pending_;
  for (size_t i = 0; i < pending_.size(); ++i) {
    const std::string& t = pending_[i].second;
    PKey k;
    for (unsigned char c : t) {
      if (c == '/') idx.under[k].push_back(i);  // the folder t[0, here)
      k.add(c);
    }
    idx.exact[k].push_back(i);
  }
  constexpr size_t kIn = 64 * 1024;
  std::unique_ptr<uint8_t[]> in(new uint8_t[kIn]);  // not zero-filled: read() writes first
  bool open = true;
  for (std::shared_ptr<LayerNode> n = parent; n && open; n = n->parent) {
    std::unique_ptr<LayerRef> ref;
    {
      std::lock_guard<std::mutex> g(st->mu);
      st->check_open();
      ref = st->new_ref(st, n);
    }
    auto src = make_verified_stream(st, std::move(ref));  // each payload and the DiffID checked
    LayerPass pass(idx, state);
    tar::Scanner sc(pass);
    for (size_t got; (got = src->read(in.get(), kIn)) > 0;) sc.feed(in.get(), got);
    sc.finish();
    open = pass.settle();
  }
  for (size_t i = 0; i < pending_.size(); ++i) {
    const auto& [path, target] = pending_[i];
    if (state[i] == State::Dir)
      throw Error(Code::Archive, "hard link '" + path + "' to a directory '" + target + "'").with_path(path);
    if (state[i] != State::File) throw Error(Code::Archive, not_found(path, target)).with_path(path);
  }
}

}  // namespace rolayer
