/* SPDX-License-Identifier: Apache-2.0 */
// The `exact` driver: keeps each layer's registered stream as it came and declares that it
// reproduces exact diffs, so the store keeps no fidelity record (moby aa96c3176b). Exports are
// still verified against the DiffID.
#pragma once

#include <memory>

#include "drivers/driver.h"

namespace rolayer {
std::unique_ptr<Driver> make_exact_driver();
}
