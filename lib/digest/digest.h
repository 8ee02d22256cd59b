/* SPDX-License-Identifier: Apache-2.0 */
// OCI content digests: parsing, validation, streaming hashing (OpenSSL EVP) and ChainIDs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rolayer {

enum class DigestAlgorithm { Sha256, Sha384, Sha512 };

// A validated digest "<algorithm>:<lowercase hex>" (sha256: 64 hex, sha384: 96, sha512: 128).
class Digest {
 public:
  Digest() = default;
  // Throws Error(Code::Inval) naming what is wrong for a malformed or unsupported digest.
  static Digest parse(std::string_view text);
  // True when text is a valid digest (no exception).
  static bool valid(std::string_view text) noexcept;

  DigestAlgorithm algorithm() const { return algo_; }
  const std::string& str() const { return text_; }
  std::string_view hex() const;
  bool empty() const { return text_.empty(); }
  bool operator==(const Digest& o) const { return text_ == o.text_; }
  bool operator!=(const Digest& o) const { return text_ != o.text_; }

 private:
  friend class Hasher;
  DigestAlgorithm algo_ = DigestAlgorithm::Sha256;
  std::string text_;
};

// Streaming hasher over OpenSSL EVP.
class Hasher {
 public:
  explicit Hasher(DigestAlgorithm algo = DigestAlgorithm::Sha256);
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void update(const void* data, size_t len);
  // The digest of everything given so far; the hasher may not be updated afterwards.
  Digest finish();

 private:
  DigestAlgorithm algo_;
  void* ctx_;  // EVP_MD_CTX*
};

// sha256 of a buffer, as a Digest.
Digest sha256_of(const void* data, size_t len);

// OCI ChainID: the DiffID for a base layer (parent empty), else
// "sha256:" + hex(sha256(parent + " " + diff_id)) over the full digest strings.
Digest chain_id(const Digest& parent, const Digest& diff_id);

}  // namespace rolayer
