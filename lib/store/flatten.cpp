// SPDX-License-Identifier: Apache-2.0
// A flattened diff from the verified registered streams of a range of layers, applying
// whiteouts and overrides in tar order as the Docker engine's layer application does
// (docs/store.md, "Diffs against older ancestors"):
// - pass 1 reads every layer's verified stream and works out which entries survive: a later
//   entry at the same path replaces an earlier one (a directory over a directory keeps both, so
//   that parents still come before their children); a whiteout `.wh.<name>` removes <name> and
//   everything under it from lower layers; an opaque marker `.wh..wh..opq` removes everything
//   under its directory from lower layers; whiteout and opaque markers themselves are kept when
//   the diff is against an ancestor (they hide what the ancestor holds) and dropped against the
//   empty chain;
// - pass 2 reads the verified streams again and copies the surviving entries' bytes (their
//   extension headers, header, data and padding) as registered, then two zero blocks.
// Every byte comes out of a verified stream: payloads are checked against their own layer's
// record (or block sums) before they go out, and each layer's stream against its DiffID.
#include "store/flatten.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.h"
#include "store/state.h"
#include "tar/path.h"
#include "tar/scanner.h"

namespace rolayer {
namespace {

constexpr size_t kIn = 64 * 1024;

uint64_t round512(uint64_t n) { return (n + 511) / 512 * 512; }

bool zero_block(const uint8_t* p) {
  for (int i = 0; i < 512; ++i)
    if (p[i]) return false;
  return true;
}

// A ustar header block: its checksum field matches (unsigned sum, checksum field as spaces).
bool header_block(const uint8_t* p) {
  uint64_t sum = 0;
  for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : p[i];
  uint64_t want = 0;
  bool any = false;
  for (int i = 148; i < 156; ++i) {
    char c = static_cast<char>(p[i]);
    if (c >= '0' && c <= '7') {
      want = want * 8 + static_cast<uint64_t>(c - '0');
      any = true;
    } else if (any) {
      break;
    }
  }
  return any && want == sum;
}

struct Rec {
  int layer = 0;
  uint64_t idx = 0;
  bool dir = false;
  std::vector<std::pair<int, uint64_t>> earlier_dirs;  // directory entries this one updates
};

class Flattened : public ByteSource {
 public:
  Flattened(std::shared_ptr<StoreState> st, std::vector<std::shared_ptr<LayerNode>> layers, bool keep_whiteouts)
      : st_(std::move(st)), layers_(std::move(layers)), keep_whiteouts_(keep_whiteouts), in_(new uint8_t[kIn]) {}

  size_t read(uint8_t* buf, size_t cap) override {
    if (failure_) std::rethrow_exception(failure_);
    try {
      if (!planned_) plan();
      while (out_pos_ == out_.size()) {
        out_.clear();
        out_pos_ = 0;
        if (finished_) return 0;
        step();
      }
      size_t n = std::min(cap, out_.size() - out_pos_);
      std::memcpy(buf, out_.data() + out_pos_, n);
      out_pos_ += n;
      return n;
    } catch (...) {
      failure_ = std::current_exception();
      throw;
    }
  }

 private:
  std::unique_ptr<ByteSource> open_layer(size_t i) {
    std::unique_ptr<LayerRef> ref;
    {
      std::lock_guard<std::mutex> g(st_->mu);
      st_->check_open();
      ref = st_->new_ref(st_, layers_[i]);
    }
    return make_verified_stream(st_, std::move(ref));
  }

  // ---- pass 1 ----

  struct Pass1 : tar::ScanHandler {
    Flattened& f;
    int layer;
    uint64_t idx = 0;
    tar::SafetyChecker safety;
    Pass1(Flattened& fl, int l) : f(fl), layer(l) {}
    void on_raw(const uint8_t*, size_t) override {}
    void on_payload(const uint8_t*, size_t) override {}
    void on_entry_end() override {}
    void on_entry(const tar::Entry& e) override {
      f.apply(layer, idx++, safety.check(e), e.kind == tar::EntryKind::Directory);
    }
  };

  // Removes path's descendants (not path) that come from layers below `below`.
  void remove_under(const std::string& dir, int below) {
    auto it = dir.empty() ? tree_.begin() : tree_.lower_bound(dir + "/");
    const std::string end = dir.empty() ? std::string() : dir + "0";  // '0' follows '/'
    while (it != tree_.end() && (dir.empty() || it->first < end)) {
      if (it->first.empty() || it->second.layer >= below) {
        ++it;
        continue;
      }
      it = tree_.erase(it);
    }
  }

  void apply(int layer, uint64_t idx, const std::string& path, bool is_dir) {
    size_t slash = path.rfind('/');
    std::string parent = slash == std::string::npos ? std::string() : path.substr(0, slash);
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    if (base.rfind(".wh.", 0) == 0) {
      if (base == ".wh..wh..opq") {
        remove_under(parent, layer);
      } else {
        std::string target = (parent.empty() ? std::string() : parent + "/") + base.substr(4);
        auto t = tree_.find(target);
        if (t != tree_.end() && t->second.layer < layer) tree_.erase(t);
        remove_under(target, layer);
      }
      if (keep_whiteouts_) tree_[path] = Rec{layer, idx, false, {}};
      return;
    }
    auto it = tree_.find(path);
    Rec r{layer, idx, is_dir, {}};
    if (it != tree_.end()) {
      if (it->second.dir && is_dir) {
        r.earlier_dirs = std::move(it->second.earlier_dirs);
        r.earlier_dirs.emplace_back(it->second.layer, it->second.idx);
      } else if (it->second.dir) {
        remove_under(path, INT_MAX);  // a directory replaced by a non-directory
      }
    }
    tree_[path] = std::move(r);
  }

  void plan() {
    for (size_t i = 0; i < layers_.size(); ++i) {
      auto src = open_layer(i);
      Pass1 h(*this, static_cast<int>(i));
      tar::Scanner sc(h);
      for (size_t n; (n = src->read(in_.get(), kIn)) > 0;) sc.feed(in_.get(), n);
      sc.finish();
    }
    keep_.assign(layers_.size(), {});
    for (const auto& kv : tree_) {
      keep_[kv.second.layer].push_back(kv.second.idx);
      for (const auto& [l, i] : kv.second.earlier_dirs) keep_[l].push_back(i);
    }
    for (auto& v : keep_) std::sort(v.begin(), v.end());
    tree_.clear();
    planned_ = true;
  }

  // ---- pass 2 ----

  struct Pass2 : tar::ScanHandler {
    Flattened& f;
    const std::vector<uint64_t>& keep;
    uint64_t idx = 0;
    bool have_entry = false, emit = false;
    bool payload_kind = false, sparse = false;
    uint64_t payload_left = 0, tail_guess = 0;
    std::string pending;  // bytes after the current entry's payload (its tail, then headers)
    Pass2(Flattened& fl, const std::vector<uint64_t>& k) : f(fl), keep(k) {}

    void on_raw(const uint8_t* p, size_t n) override {
      pending.append(reinterpret_cast<const char*>(p), n);
    }
    void on_payload(const uint8_t* p, size_t n) override {
      // Payload bytes always belong to the current entry (its tail and headers come after).
      if (emit) f.out_.append(reinterpret_cast<const char*>(p), n);
    }
    void on_entry_end() override {}
    void on_entry(const tar::Entry& e) override {
      settle(true);
      emit = std::binary_search(keep.begin(), keep.end(), idx);
      ++idx;
      // The bytes before this entry's header (its extension headers) were the rest of pending.
      if (emit) f.out_.append(pending);
      pending.clear();
      have_entry = true;
      payload_kind = e.has_payload();
      sparse = e.kind == tar::EntryKind::Sparse;
      // What follows the payload within the entry: a regular file's padding, a non-payload
      // entry's data and padding, a sparse file's unused stored bytes and padding.
      if (!payload_kind) tail_guess = round512(e.data_size);
      else tail_guess = round512(e.data_size) - std::min<uint64_t>(round512(e.data_size), e.payload_size);
    }
    // Splits pending into the current entry's tail and what follows (the next entry's headers,
    // or the end of the archive), and emits the tail when the entry is kept.
    void settle(bool next_is_entry) {
      if (!have_entry) return;
      uint64_t t = tail_guess;
      if (payload_kind) {
        // A PAX 1.0 sparse map (and a Solaris holes list) sits in the data area before
        // on_entry: the tail is then shorter by whole blocks. The right split is the smallest
        // one, in steps of 512 bytes, that leaves a header block (or the end of the archive)
        // right after it.
        const auto* p = reinterpret_cast<const uint8_t*>(pending.data());
        auto fits = [&](uint64_t c) {
          if (next_is_entry) return c + 512 <= pending.size() && header_block(p + c);
          return c == pending.size() || (c + 512 <= pending.size() && zero_block(p + c));
        };
        if (sparse || !fits(t)) {
          uint64_t c = t % 512;
          while (c <= pending.size() && !fits(c)) c += 512;
          if (c <= pending.size()) t = c;
        }
      }
      if (t > pending.size())
        throw Error(Code::Corrupt, "flattening: an entry of a layer's stream ends beyond what follows it");
      if (emit) f.out_.append(pending, 0, static_cast<size_t>(t));
      pending.erase(0, static_cast<size_t>(t));
      have_entry = false;
    }
  };

  void step() {
    if (!cur_) {
      if (layer_i_ == layers_.size()) {
        out_.assign(1024, '\0');  // the end-of-archive marker
        finished_ = true;
        return;
      }
      cur_ = open_layer(layer_i_);
      pass2_ = std::make_unique<Pass2>(*this, keep_[layer_i_]);
      scanner_ = std::make_unique<tar::Scanner>(*pass2_);
    }
    size_t n = cur_->read(in_.get(), kIn);
    if (n > 0) {
      scanner_->feed(in_.get(), n);
      return;
    }
    scanner_->finish();
    pass2_->settle(false);  // the rest: end-of-archive blocks and trailing bytes, dropped
    scanner_.reset();
    pass2_.reset();
    cur_.reset();
    ++layer_i_;
  }

  std::shared_ptr<StoreState> st_;
  std::vector<std::shared_ptr<LayerNode>> layers_;
  bool keep_whiteouts_;
  std::unique_ptr<uint8_t[]> in_;
  std::map<std::string, Rec> tree_;
  std::vector<std::vector<uint64_t>> keep_;
  bool planned_ = false, finished_ = false;
  size_t layer_i_ = 0;
  std::unique_ptr<ByteSource> cur_;
  std::unique_ptr<Pass2> pass2_;
  std::unique_ptr<tar::Scanner> scanner_;
  std::string out_;
  size_t out_pos_ = 0;
  std::exception_ptr failure_;
};

}  // namespace

std::unique_ptr<ByteSource> make_flattened_diff(std::shared_ptr<StoreState> st,
                                                std::vector<std::shared_ptr<LayerNode>> layers,
                                                bool keep_whiteouts) {
  return std::make_unique<Flattened>(std::move(st), std::move(layers), keep_whiteouts);
}

}  // namespace rolayer
