// SPDX-License-Identifier: Apache-2.0
// Entry path normalisation, OCI whiteouts and the per-layer escape checks.
#include "tar/path.h"

#include <atomic>
#include <chrono>
#include <random>
#include <vector>

#include "core/error.h"

namespace rolayer::tar {

namespace {

constexpr uint64_t kMod = (uint64_t{1} << 61) - 1;

std::string_view base_name(std::string_view p) {
  size_t slash = p.rfind('/');
  return slash == std::string_view::npos ? p : p.substr(slash + 1);
}

std::string_view dir_name(std::string_view p) {
  size_t slash = p.rfind('/');
  return slash == std::string_view::npos ? std::string_view() : p.substr(0, slash);
}

}  // namespace

std::string clean_path(std::string_view raw) {
  if (raw.empty()) throw Error(Code::Archive, "tar entry with an empty name").with_path("");
  if (raw.find('\0') != std::string_view::npos)
    throw Error(Code::Archive, "tar entry name contains a NUL byte").with_path(std::string(raw));
  // Components of the result, as views into raw. Linear in the name's length.
  std::vector<std::string_view> parts;
  // Absolute names are rooted at the layer, as the Docker engine's filepath.Clean does: ".." at
  // the root of a rooted name stays at the root ("/../x" is "x"). A relative name that climbs
  // above the root ("../x", "a/../../x") is refused.
  const bool rooted = raw.front() == '/';
  size_t i = 0;
  const size_t n = raw.size();
  while (i < n) {
    size_t j = raw.find('/', i);
    if (j == std::string_view::npos) j = n;
    std::string_view c = raw.substr(i, j - i);
    if (c.empty() || c == ".") {
      // skip (this also drops leading slashes: absolute names are rooted at the layer)
    } else if (c == "..") {
      if (parts.empty()) {
        if (rooted) {
          i = j + 1;
          continue;
        }
        throw Error(Code::Unsafe, "tar entry name climbs above the layer root: " + std::string(raw))
            .with_path(std::string(raw));
      }
      parts.pop_back();
    } else {
      parts.push_back(c);
    }
    i = j + 1;
  }
  std::string out;
  size_t total = 0;
  for (auto c : parts) total += c.size() + 1;
  out.reserve(total);
  for (size_t k = 0; k < parts.size(); ++k) {
    if (k) out += '/';
    out.append(parts[k].data(), parts[k].size());
  }
  return out;
}

bool is_whiteout(std::string_view cleaned) {
  return base_name(cleaned).substr(0, kWhiteoutPrefix.size()) == kWhiteoutPrefix;
}

bool is_opaque_whiteout(std::string_view cleaned) { return base_name(cleaned) == kOpaqueWhiteout; }

std::string whiteout_target(std::string_view cleaned) {
  if (!is_whiteout(cleaned))
    throw Error(Code::Inval, "not a whiteout: " + std::string(cleaned)).with_path(std::string(cleaned));
  std::string_view dir = dir_name(cleaned);
  if (is_opaque_whiteout(cleaned)) return std::string(dir);
  std::string_view target = base_name(cleaned).substr(kWhiteoutPrefix.size());
  if (target.empty() || target == "." || target == "..")
    throw Error(Code::Unsafe, "whiteout with an invalid target: " + std::string(cleaned))
        .with_path(std::string(cleaned));
  std::string out(dir);
  if (!out.empty()) out += '/';
  out.append(target.data(), target.size());
  return out;
}

namespace {

// A process-wide random seed, taken once (std::random_device opens and reads the kernel's
// source: too slow to do per register), mixed per checker with a counter, the clock and the
// checker's address.
uint64_t process_seed() {
  static const uint64_t seed = [] {
    uint64_t r = 0;
    try {
      std::random_device rd;
      r = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    } catch (...) {
    }
    return r;
  }();
  return seed;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

SafetyChecker::SafetyChecker() {
  // A random base keeps crafted names from colliding on purpose (a collision would only
  // cost an extra string lookup anyway: every hash hit is confirmed on the string).
  static std::atomic<uint64_t> counter{0};
  uint64_t r = process_seed();
  r ^= splitmix64(counter.fetch_add(1, std::memory_order_relaxed));
  r ^= static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) *
       0x9e3779b97f4a7c15ull;
  r ^= reinterpret_cast<uintptr_t>(this);
  r = splitmix64(r);
  hash_base_ = (r % (kMod - (uint64_t{1} << 20))) + (uint64_t{1} << 20);
  r = splitmix64(r ^ 0x6a09e667f3bcc909ull);
  hash_base2_ = (r % (kMod - (uint64_t{1} << 20))) + (uint64_t{1} << 20);
}

namespace {

// a * b mod 2^61-1 for a, b < 2^61: the 122-bit product folded at bit 61 (2^61 = 1 mod p).
uint64_t mul_mod61(uint64_t a, uint64_t b) {
  const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
  uint64_t r = (static_cast<uint64_t>(p) & kMod) + static_cast<uint64_t>(p >> 61);  // < 2^62
  r = (r & kMod) + (r >> 61);                                                       // <= 2^61
  return r >= kMod ? r - kMod : r;
}

}  // namespace

SafetyChecker::Key SafetyChecker::step(Key h, unsigned char c) const {
  uint64_t a = mul_mod61(h.a, hash_base_) + c + 1;
  uint64_t b = mul_mod61(h.b, hash_base2_) + c + 1;
  return Key{a >= kMod ? a - kMod : a, b >= kMod ? b - kMod : b};
}

SafetyChecker::Key SafetyChecker::key_of(const std::string& cleaned) const {
  Key h;
  for (unsigned char c : cleaned) h = step(h, c);
  return h;
}

// Whether a proper ancestor of cleaned is a symlink created earlier in this layer, and
// (in *self) whether cleaned itself is one; *whole is the key of cleaned. One pass.
bool SafetyChecker::through_symlink(const std::string& cleaned, bool* self, Key* whole) const {
  Key h;
  bool through = false;
  for (size_t i = 0; i < cleaned.size(); ++i) {
    if (cleaned[i] == '/' && i > 0 && !through && symlinks_.count(h)) through = true;
    h = step(h, static_cast<unsigned char>(cleaned[i]));
  }
  if (self) *self = symlinks_.count(h) != 0;
  if (whole) *whole = h;
  return through;
}

SafetyChecker::Checked SafetyChecker::check_entry(const Entry& e) {
  Checked r;
  try {
    r.path = clean_path(e.name);
  } catch (Error& err) {
    err.with_path(e.name);
    throw;
  }
  // With no symlink in the layer so far nothing can go through one (and no key is needed
  // unless this entry makes the first); otherwise one pass gives both the verdict and the key.
  const bool any = !symlinks_.empty();
  Key key;
  if (any && through_symlink(r.path, nullptr, &key))
    throw Error(Code::Unsafe,
                "tar entry goes through a symlink created earlier in the layer: " + e.name)
        .with_path(e.name);
  if (r.path.empty() && e.kind != EntryKind::Directory)
    throw Error(Code::Unsafe, "tar entry replaces the layer root with a non-directory: " + e.name)
        .with_path(e.name);

  bool becomes_symlink = e.kind == EntryKind::Symlink;
  if (e.kind == EntryKind::Hardlink) {
    try {
      r.link_target = clean_path(e.linkname);
    } catch (Error& err) {
      throw Error(err.code(), "hard link target of " + e.name + " is unsafe: " + err.what())
          .with_path(e.name);
    }
    if (r.link_target.empty())
      throw Error(Code::Unsafe, "hard link to the layer root: " + e.name).with_path(e.name);
    bool target_is_symlink = false;
    if (any && through_symlink(r.link_target, &target_is_symlink, nullptr))
      throw Error(Code::Unsafe, "hard link target goes through a symlink created earlier in the layer: " +
                                    e.name)
          .with_path(e.name);
    // link(2) does not follow a symlink target: the new name is then a symlink too.
    if (target_is_symlink) becomes_symlink = true;
  }

  if (becomes_symlink) {
    symlinks_.insert(any ? key : key_of(r.path));
  } else if (any) {
    // A later entry at a symlink's path replaces it.
    symlinks_.erase(key);
  }
  return r;
}

std::string SafetyChecker::check(const Entry& e) { return check_entry(e).path; }

}  // namespace rolayer::tar
