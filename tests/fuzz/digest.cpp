// SPDX-License-Identifier: Apache-2.0
// Fuzz target "digest": the digest parser and ChainIDs (lib/digest) on arbitrary text.
//
// The input is split at its first newline (or in the middle) into two strings, each parsed.
// Checked: Digest::valid agrees with Digest::parse; a refusal is Error(Code::Inval) with a
// bounded message; an accepted digest is exactly "<sha256|sha384|sha512>:<lowercase hex of
// the right length>" and keeps the text as given; chain_id of two digests is the sha256 of
// "<parent> <diff>" (and the diff itself for an empty parent); the streaming hasher gives the
// same digest whatever the chunking.
#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "core/error.h"
#include "digest/digest.h"
#include "fuzz_util.h"

using namespace rolayer;

namespace {

bool shape_ok(std::string_view t) {
  size_t colon = t.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view a = t.substr(0, colon), h = t.substr(colon + 1);
  size_t want = a == "sha256" ? 64 : a == "sha384" ? 96 : a == "sha512" ? 128 : 0;
  if (want == 0 || h.size() != want) return false;
  for (char c : h)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool try_parse(std::string_view t, Digest& out) {
  bool valid = Digest::valid(t);
  try {
    out = Digest::parse(t);
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() == Code::Inval, "parse refused with a code other than Inval");
    FUZZ_CHECK(!valid, "valid() accepts what parse() refuses");
    FUZZ_CHECK(std::strlen(e.what()) < 400, "error message not bounded");
    FUZZ_CHECK(!shape_ok(t), std::string("a well-formed digest was refused: ") + e.what());
    return false;
  }
  FUZZ_CHECK(valid, "parse() accepts what valid() refuses");
  FUZZ_CHECK(shape_ok(t), "a malformed digest was accepted");
  FUZZ_CHECK(out.str() == t, "the parsed digest is not the text given");
  FUZZ_CHECK(out.hex() == t.substr(t.find(':') + 1), "hex() is not the text after ':'");
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view all(reinterpret_cast<const char*>(data), size);
  size_t nl = all.find('\n');
  std::string_view a = nl == std::string_view::npos ? all.substr(0, size / 2) : all.substr(0, nl);
  std::string_view b = nl == std::string_view::npos ? all.substr(size / 2) : all.substr(nl + 1);

  Digest da, db;
  bool oka = try_parse(a, da), okb = try_parse(b, db);
  try_parse(all, da.empty() ? da : db);  // the whole input too (rarely valid)
  if (oka && okb) {
    Digest c = chain_id(da, db);
    std::string joined = da.str() + " " + db.str();
    FUZZ_CHECK(c == sha256_of(joined.data(), joined.size()), "chain_id is not sha256(parent + ' ' + diff)");
    FUZZ_CHECK(Digest::valid(c.str()) && c.algorithm() == DigestAlgorithm::Sha256, "chain_id is not a sha256 digest");
    FUZZ_CHECK(chain_id(Digest(), db) == db, "chain_id of a base layer is not its DiffID");
  }

  // Streaming hash over a pseudo-random chunking equals the one-shot hash.
  static const DigestAlgorithm algos[] = {DigestAlgorithm::Sha256, DigestAlgorithm::Sha384, DigestAlgorithm::Sha512};
  const DigestAlgorithm algo = algos[size % 3];
  Hasher one(algo), many(algo);
  one.update(data, size);
  fuzz::Rng rng(fuzz::seed_of(data, size));
  for (size_t pos = 0; pos < size;) {
    size_t n = std::min(rng.chunk(), size - pos);
    many.update(data + pos, n);
    pos += n;
  }
  Digest d1 = one.finish(), d2 = many.finish();
  FUZZ_CHECK(d1 == d2, "the streaming hash depends on the chunking");
  FUZZ_CHECK(Digest::valid(d1.str()) && d1.algorithm() == algo, "a computed digest does not parse");
  return 0;
}
