// SPDX-License-Identifier: Apache-2.0
#include "core/error.h"

#include <cstring>

namespace rolayer {

void throw_errno(const std::string& what, int err) {
  char buf[256];
  // GNU strerror_r returns a char* that may or may not point into buf.
  const char* msg = strerror_r(err, buf, sizeof buf);
  Code code = Code::Io;
  if (err == ENOMEM) code = Code::NoMem;
  throw Error(code, what + ": " + msg).with_errno(err);
}

}  // namespace rolayer
