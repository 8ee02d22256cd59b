// SPDX-License-Identifier: Apache-2.0
#include "core/error.h"
#include "drivers/dir/dir_driver.h"
#include "drivers/exact/exact_driver.h"
#include "store/store.h"

namespace rolayer {

std::unique_ptr<Driver> make_builtin_driver(const std::string& name) {
  if (name == "dir") return make_dir_driver();
  if (name == "exact") return make_exact_driver();
  throw Error(Code::Inval, "unknown driver \"" + name + "\" (built-in drivers: dir, exact)");
}

int64_t Driver::apply_staged(const std::string&, ByteSource&, bool*) {
  throw Error(Code::Unsupported, "the \"" + name() + "\" driver cannot apply a layer before its parent is known");
}

void Driver::set_parent(const std::string&, const std::string&) {
  throw Error(Code::Unsupported, "the \"" + name() + "\" driver cannot attach a staged layer to a parent");
}

}  // namespace rolayer
