// SPDX-License-Identifier: Apache-2.0
#include "digest/digest.h"

#include <openssl/evp.h>
#include <openssl/opensslv.h>

#include <array>
#include <cstdint>

#include "core/error.h"

namespace rolayer {
namespace {

const EVP_MD* legacy_md(DigestAlgorithm a) {
  switch (a) {
    case DigestAlgorithm::Sha256: return EVP_sha256();
    case DigestAlgorithm::Sha384: return EVP_sha384();
    case DigestAlgorithm::Sha512: return EVP_sha512();
  }
  return EVP_sha256();
}

#if OPENSSL_VERSION_MAJOR >= 3
// OpenSSL 3 looks the implementation up (a locked provider query) on every EVP_DigestInit_ex
// given EVP_sha256(); fetching once and keeping it for the process avoids that per hasher.
const EVP_MD* fetched_md(const char* name, DigestAlgorithm a) {
  EVP_MD* md = EVP_MD_fetch(nullptr, name, nullptr);
  return md ? md : legacy_md(a);  // kept for the life of the process
}
#endif

const EVP_MD* evp_md(DigestAlgorithm a) {
#if OPENSSL_VERSION_MAJOR >= 3
  switch (a) {
    case DigestAlgorithm::Sha256: {
      static const EVP_MD* md = fetched_md("SHA2-256", a);
      return md;
    }
    case DigestAlgorithm::Sha384: {
      static const EVP_MD* md = fetched_md("SHA2-384", a);
      return md;
    }
    case DigestAlgorithm::Sha512: {
      static const EVP_MD* md = fetched_md("SHA2-512", a);
      return md;
    }
  }
#endif
  return legacy_md(a);
}

const char* algo_name(DigestAlgorithm a) {
  switch (a) {
    case DigestAlgorithm::Sha256: return "sha256";
    case DigestAlgorithm::Sha384: return "sha384";
    case DigestAlgorithm::Sha512: return "sha512";
  }
  return "sha256";
}

size_t hex_len(DigestAlgorithm a) {
  switch (a) {
    case DigestAlgorithm::Sha256: return 64;
    case DigestAlgorithm::Sha384: return 96;
    case DigestAlgorithm::Sha512: return 128;
  }
  return 64;
}

// Returns an empty string when valid, else what is wrong.
std::string check(std::string_view text, DigestAlgorithm* algo_out) {
  if (text.empty()) return "empty digest";
  auto colon = text.find(':');
  if (colon == std::string_view::npos) return "missing ':' between algorithm and hex";
  std::string_view algo = text.substr(0, colon), hex = text.substr(colon + 1);
  DigestAlgorithm a;
  if (algo == "sha256") a = DigestAlgorithm::Sha256;
  else if (algo == "sha384") a = DigestAlgorithm::Sha384;
  else if (algo == "sha512") a = DigestAlgorithm::Sha512;
  else return "unsupported digest algorithm '" + std::string(algo.substr(0, 32)) + "'";
  if (hex.size() != hex_len(a))
    return "a " + std::string(algo) + " digest needs " + std::to_string(hex_len(a)) +
           " hex characters, got " + std::to_string(hex.size());
  // One table lookup per character, OR-ed: the common (valid) case has no branch per byte.
  static constexpr auto kBad = [] {
    std::array<uint8_t, 256> t{};
    for (int c = 0; c < 256; c++) t[c] = !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    return t;
  }();
  uint8_t bad = 0;
  for (char c : hex) bad |= kBad[static_cast<unsigned char>(c)];
  if (bad) return "digest hex must be lowercase 0-9a-f";
  *algo_out = a;
  return {};
}

std::string to_hex(const unsigned char* p, size_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (size_t i = 0; i < n; i++) {
    s[2 * i] = kHex[p[i] >> 4];
    s[2 * i + 1] = kHex[p[i] & 15];
  }
  return s;
}

}  // namespace

Digest Digest::parse(std::string_view text) {
  DigestAlgorithm a;
  std::string why = check(text, &a);
  if (!why.empty()) {
    std::string shown(text.substr(0, 160));
    throw Error(Code::Inval, "invalid digest \"" + shown + "\": " + why);
  }
  Digest d;
  d.algo_ = a;
  d.text_ = std::string(text);
  return d;
}

bool Digest::valid(std::string_view text) noexcept {
  DigestAlgorithm a;
  return check(text, &a).empty();
}

std::string_view Digest::hex() const {
  auto colon = text_.find(':');
  return colon == std::string::npos ? std::string_view() : std::string_view(text_).substr(colon + 1);
}

Hasher::Hasher(DigestAlgorithm algo) : algo_(algo), ctx_(EVP_MD_CTX_new()) {
  if (!ctx_) throw Error(Code::NoMem, "cannot allocate a digest context");
  if (EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), evp_md(algo), nullptr) != 1) {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
    throw Error(Code::Io, "cannot initialise the digest");
  }
}

Hasher::~Hasher() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Hasher::update(const void* data, size_t len) {
  if (len && EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, len) != 1)
    throw Error(Code::Io, "digest update failed");
}

Digest Hasher::finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), md, &n) != 1)
    throw Error(Code::Io, "digest finalisation failed");
  Digest d;
  d.algo_ = algo_;
  d.text_ = std::string(algo_name(algo_)) + ":" + to_hex(md, n);
  return d;
}

Digest sha256_of(const void* data, size_t len) {
  Hasher h;
  h.update(data, len);
  return h.finish();
}

Digest chain_id(const Digest& parent, const Digest& diff_id) {
  if (parent.empty()) return diff_id;
  std::string s = parent.str() + " " + diff_id.str();
  return sha256_of(s.data(), s.size());
}

}  // namespace rolayer
