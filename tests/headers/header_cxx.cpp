// SPDX-License-Identifier: Apache-2.0
// The umbrella header alone, as C++.
#include <rolayer.h>
int rolayer_header_cxx_probe() {
  rolayer_store_options o = ROLAYER_STORE_OPTIONS_INIT;
  rolayer_register_options r = ROLAYER_REGISTER_OPTIONS_INIT;
  return static_cast<int>(o.version + r.version);
}
