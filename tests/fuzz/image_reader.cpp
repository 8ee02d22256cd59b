// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the image readers of `rolayer import` (tools/src/image_plan.cpp) and the text
// encoders of the tool's output (tools/src/text.cpp).
//
// Input: byte 0 picks the layout (OCI image layout, docker save archive, skopeo dir:), byte 1
// the REF, the rest is up to 8 documents separated by NUL bytes. Document 0 is the layout's
// top file (index.json or manifest.json); every document is also stored as a blob named by its
// digest (blobs/sha256/<hex>, <hex>.json and <hex> for the flat layouts, l<n>/layer.tar), and
// "$D<n>" / "$S<n>" / "$H<n>" in a document are replaced by document n's digest / size / hex
// (n greater than the document's own number), so that the fuzzer can build a chain index → manifest → config that checks out.
//
// Checks: plan_image either returns a plan whose every layer exists in the image and has a
// well-formed DiffID, or throws CliError with a documented exit code (6 bad input, 3 not found,
// 4 verification, 2 usage) -- never another exception, a crash or a stack overflow (the depth
// bound). parse_json on the whole input accepts only documents within the depth bound.
// term_safe never lets a control byte through; json_text + json_dump give ASCII JSON that
// parses back, and the "_b64" value restores the exact bytes.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "image_plan.h"
#include "text.h"

namespace {

std::string b64decode(const std::string& s) {
  static const std::string t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t v = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    auto p = t.find(c);
    if (p == std::string::npos) return "<bad base64>";
    v = (v << 6) | static_cast<uint32_t>(p);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((v >> bits) & 0xff);
    }
  }
  return out;
}

void check_text(const std::string& s) {
  std::string t = cli::term_safe(s);
  for (unsigned char c : t) FUZZ_CHECK(c >= 0x20 && c != 0x7f, "term_safe let a control byte through");
  nlohmann::json j = nlohmann::json::object();
  cli::json_text(j, "v", s);
  std::string out = cli::json_dump(j);
  for (unsigned char c : out) FUZZ_CHECK(c < 0x80, "json_dump wrote a non-ASCII byte");
  nlohmann::json back = nlohmann::json::parse(out);
  std::string restored = back.contains("v_b64") ? b64decode(back["v_b64"].get<std::string>()) : back["v"].get<std::string>();
  FUZZ_CHECK(restored == s, "json_text is not lossless");
  FUZZ_CHECK(back.contains("v_b64") == !cli::is_valid_utf8(s), "_b64 present iff the text is not UTF-8");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  check_text(in.substr(0, 4096));

  // The whole input as one JSON document.
  try {
    nlohmann::json j = cli::parse_json(in, "input");
    FUZZ_CHECK(cli::json_nesting_depth(in, cli::kMaxJsonDepth) <= cli::kMaxJsonDepth, "accepted a document too deep");
    (void)cli::json_dump(j);
    nlohmann::json copy = j;  // copies and destruction recurse at most kMaxJsonDepth levels
    (void)copy;
  } catch (const cli::CliError& e) {
    FUZZ_CHECK(e.code() == cli::kBadInput, std::string("parse_json: unexpected exit code: ") + e.what());
  }

  if (size < 2) return 0;
  int kind = data[0] % 3;
  std::string ref = data[1] % 3 == 0 ? "" : data[1] % 3 == 1 ? "latest" : "demo:v1";
  std::vector<std::string> docs;
  size_t i = 2;
  while (docs.size() < 8) {
    size_t j = in.find('\0', i);
    if (j == std::string::npos) {
      docs.push_back(in.substr(i));
      break;
    }
    docs.push_back(in.substr(i, j - i));
    i = j + 1;
  }
  // Placeholders, from the last document to the first.
  std::vector<std::string> digests(docs.size());
  for (size_t n = docs.size(); n-- > 0;) {
    for (size_t m = n + 1; m < docs.size(); m++) {
      for (const auto& [tok, val] : {std::pair<std::string, std::string>{"$D" + std::to_string(m), digests[m]},
                                     {"$S" + std::to_string(m), std::to_string(docs[m].size())},
                                     {"$H" + std::to_string(m), digests[m].substr(7)}}) {
        for (size_t p = docs[n].find(tok); p != std::string::npos; p = docs[n].find(tok, p + val.size()))
          docs[n].replace(p, tok.size(), val);
      }
    }
    digests[n] = cli::Hasher::digest_of(docs[n]);
  }
  cli::MemSource src("fuzz-image");
  for (size_t n = 0; n < docs.size(); n++) {
    std::string hex = digests[n].substr(7);
    src.files["blobs/sha256/" + hex] = docs[n];
    src.files[hex + ".json"] = docs[n];
    src.files[hex] = docs[n];
    src.files["l" + std::to_string(n) + "/layer.tar"] = docs[n];
  }
  if (kind == 0) {
    src.files["index.json"] = docs[0];
    src.files["oci-layout"] = "{\"imageLayoutVersion\":\"1.0.0\"}";
  } else {
    src.files["manifest.json"] = docs[0];
    if (kind == 2) src.files["version"] = "Directory Transport Version: 1.1\n";
  }
  try {
    cli::Plan plan = cli::plan_image(src, ref);
    if (std::getenv("ROLAYER_FUZZ_VERBOSE")) std::fprintf(stderr, "plan: %s, %zu layers\n", plan.what.c_str(), plan.layers.size());
    FUZZ_CHECK(!plan.layers.empty(), "a plan without layers");
    for (const auto& l : plan.layers) {
      FUZZ_CHECK(src.exists(l.path), "a planned layer that is not in the image: " + l.path);
      FUZZ_CHECK(cli::is_digest(l.diff_id) && l.diff_id.rfind("sha256:", 0) == 0, "a malformed DiffID: " + l.diff_id);
      FUZZ_CHECK(l.expect.digest.empty() || cli::is_digest(l.expect.digest), "a malformed blob digest");
    }
  } catch (const cli::CliError& e) {
    int c = e.code();
    if (std::getenv("ROLAYER_FUZZ_VERBOSE")) std::fprintf(stderr, "refused (%d): %.300s\n", c, e.what());
    FUZZ_CHECK(c == cli::kBadInput || c == cli::kNotFound || c == cli::kVerify || c == cli::kUsage,
               std::string("plan_image: unexpected exit code ") + std::to_string(c) + ": " + e.what());
  }
  return 0;
}
