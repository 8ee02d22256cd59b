/* SPDX-License-Identifier: Apache-2.0 */
// A small command-line parser: long options (--name VALUE, --name=VALUE), short options
// (-o VALUE, -oVALUE, -q), "--" to end options, "-" as a positional. The global options
// (--store, --driver, --wait, --quiet) are accepted before the command and after it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common.h"

namespace cli {

struct OptSpec {
  std::string name;    // long name without "--"
  char short_name;     // 0 for none
  bool takes_value;
};

struct ParsedArgs {
  std::map<std::string, std::string> values;  // option name -> value ("" for flags)
  std::vector<std::string> positionals;
  bool help = false;

  bool has(const std::string& name) const { return values.count(name) != 0; }
  std::string get(const std::string& name, const std::string& def = {}) const {
    auto it = values.find(name);
    return it == values.end() ? def : it->second;
  }
};

// Applies a global option to g if name is one; returns false otherwise.
bool apply_global(Globals& g, const std::string& name, const std::string& value);
// Whether name is a global option and whether it takes a value.
bool is_global(const std::string& name, char short_name, bool* takes_value, std::string* long_name);

// Parses args (the command's arguments, after the command word). Throws usage errors that name
// the command.
ParsedArgs parse_args(const std::string& command, const std::vector<std::string>& args,
                      const std::vector<OptSpec>& specs, Globals& g);

}  // namespace cli
