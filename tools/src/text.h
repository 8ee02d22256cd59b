/* SPDX-License-Identifier: Apache-2.0 */
// Text from untrusted sources (tar names, media types, paths, driver metadata, messages) on its
// way out of the tool: to a terminal (term_safe) or into JSON output (json_text). See
// docs/cli.md, "Untrusted text in the output".
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace cli {

bool is_valid_utf8(const std::string& s);

// For human output: control characters (C0, DEL, and C1 as UTF-8), bidirectional overrides
// and bytes that are not UTF-8 are written as escapes: \xNN for a byte, \u{XXXX} for a
// character; a backslash is doubled, so the escaping is lossless. Printable UTF-8 is kept.
std::string term_safe(const std::string& s);

// Standard base64 (RFC 4648, with padding).
std::string base64(const std::string& s);

// Sets obj[key] to the text S. Valid UTF-8 goes in as it is. Otherwise obj[key] gets S with each
// byte that is not part of valid UTF-8 replaced by U+FFFD (for display), and obj[key + "_b64"]
// gets the exact bytes in base64: the lossless value.
void json_text(nlohmann::json& obj, const std::string& key, const std::string& s);

// The document as text for output: ASCII only (non-ASCII as \uXXXX escapes), so that no raw
// control character reaches a terminal, and never throws on text that is not UTF-8 (which
// json_text keeps out; a stray one is replaced by U+FFFD).
std::string json_dump(const nlohmann::json& j, int indent = 2);

}  // namespace cli
