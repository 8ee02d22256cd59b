// SPDX-License-Identifier: Apache-2.0
#include "core/error.h"
#include "drivers/dir/dir_driver.h"
#include "drivers/exact/exact_driver.h"

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

// One file after the other (a driver that batches nothing never gets here: batchable() is false).
void PayloadSession::read_batch(const BatchRead* reads, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    size_t got = 0;
    while (got < reads[i].size) {
      size_t k = reads[i].file->pread(got, reads[i].dst + got, reads[i].size - got);
      if (k == 0) throw Error(Code::Corrupt, "a layer payload is shorter than its driver said");
      if (k > reads[i].size - got) throw Error(Code::Io, "a payload read returned more bytes than asked for");
      got += k;
    }
  }
}

}  // namespace rolayer
