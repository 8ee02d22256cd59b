// SPDX-License-Identifier: Apache-2.0
#include "args.h"

#include "blob.h"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>

namespace cli {

bool is_global(const std::string& name, char short_name, bool* takes_value, std::string* long_name) {
  struct G {
    const char* name;
    char s;
    bool v;
  };
  static const G globals[] = {{"store", 0, true}, {"driver", 0, true}, {"wait", 0, true}, {"quiet", 'q', false},
                                {"max-uncompressed", 0, true}, {"max-ratio", 0, true}, {"pack-small", 0, true}};
  for (const auto& x : globals) {
    if ((!name.empty() && name == x.name) || (short_name && short_name == x.s)) {
      *takes_value = x.v;
      *long_name = x.name;
      return true;
    }
  }
  return false;
}

bool apply_global(Globals& g, const std::string& name, const std::string& value) {
  if (name == "store") {
    if (value.empty()) usage_error("--store needs a directory");
    g.store = value;
  } else if (name == "driver") {
    if (value.empty()) usage_error("--driver needs a name (dir or exact)");
    g.driver = value;
  } else if (name == "wait") {
    errno = 0;
    char* end = nullptr;
    double s = std::strtod(value.c_str(), &end);
    if (value.empty() || *end || errno || !std::isfinite(s) || s < 0 || s > INT_MAX / 1000.0)
      usage_error("--wait needs a number of seconds (0 or more), not \"" + value + "\"");
    int ms = static_cast<int>(std::lround(s * 1000.0));
    g.busy_timeout_ms = ms == 0 ? -1 : ms;  // --wait 0: fail at once
    g.wait_given = true;
  } else if (name == "quiet") {
    g.quiet = true;
  } else if (name == "max-uncompressed") {
    decompression_limits().max_bytes = parse_size_limit("--max-uncompressed", value);
  } else if (name == "max-ratio") {
    decompression_limits().max_ratio = parse_size_limit("--max-ratio", value);
  } else if (name == "pack-small") {
    // The store's payload-pack setting (rolayer_store_options.payload_pack_max): kept in the store.
    if (value == "off" || value == "0") {
      g.pack_small = -1;
    } else {
      uint64_t v = parse_size_limit("--pack-small", value);
      if (v > (16ull << 20)) usage_error("--pack-small takes at most 16M, not \"" + value + "\"");
      g.pack_small = static_cast<int64_t>(v);
    }
  } else {
    return false;
  }
  return true;
}

ParsedArgs parse_args(const std::string& command, const std::vector<std::string>& args,
                      const std::vector<OptSpec>& specs, Globals& g) {
  ParsedArgs out;
  auto find_long = [&](const std::string& n) -> const OptSpec* {
    for (const auto& s : specs)
      if (s.name == n) return &s;
    return nullptr;
  };
  auto find_short = [&](char c) -> const OptSpec* {
    for (const auto& s : specs)
      if (s.short_name == c) return &s;
    return nullptr;
  };
  auto bad = [&](const std::string& msg) { usage_error(command + ": " + msg + " (see: rolayer " + command + " --help)"); };

  bool options_done = false;
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    // "-" is standard input; "-:REF" too (import -:REF): ':' is no option letter.
    if (options_done || a == "-" || a.rfind("-:", 0) == 0 || a.size() < 2 || a[0] != '-') {
      out.positionals.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      out.help = true;
      continue;
    }
    std::string name, value;
    bool has_inline = false;
    char short_name = 0;
    if (a.rfind("--", 0) == 0) {
      name = a.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_inline = true;
      }
    } else {
      short_name = a[1];
      if (a.size() > 2) {
        value = a.substr(2);
        has_inline = true;
      }
    }
    bool takes_value = false;
    std::string global_name;
    if (is_global(name, short_name, &takes_value, &global_name)) {
      if (takes_value && !has_inline) {
        if (i + 1 >= args.size()) bad("--" + global_name + " needs a value");
        value = args[++i];
      } else if (!takes_value && has_inline) {
        bad("--" + global_name + " takes no value");
      }
      apply_global(g, global_name, value);
      continue;
    }
    const OptSpec* spec = short_name ? find_short(short_name) : find_long(name);
    if (!spec) bad("unknown option " + (short_name ? std::string("-") + short_name : "--" + name));
    if (spec->takes_value) {
      if (!has_inline) {
        if (i + 1 >= args.size()) bad("--" + spec->name + " needs a value");
        value = args[++i];
      }
    } else if (has_inline) {
      // (appended rather than "-" + std::string(…): GCC 12 warns falsely on that, -Wrestrict, PR105651)
      if (short_name) bad(std::string("-").append(1, short_name).append(" takes no value"));
      bad("--" + spec->name + " takes no value");
    }
    out.values[spec->name] = value;
  }
  return out;
}

}  // namespace cli
