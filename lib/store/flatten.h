/* SPDX-License-Identifier: Apache-2.0 */
// Private to lib/store: a diff of a layer against an older ancestor (or the whole chain),
// built from the verified registered streams of the layers in between, for drivers that
// cannot make it themselves (the exact driver, or any driver that answers Unsupported).
#pragma once

#include <memory>
#include <vector>

#include "core/io.h"
#include "store/store.h"

namespace rolayer {

struct StoreState;

// layers: the layers above the ancestor, oldest first (each kept alive by the stream).
// keep_whiteouts: false when the diff is against the empty chain (nothing below to hide).
std::unique_ptr<ByteSource> make_flattened_diff(std::shared_ptr<StoreState> st,
                                                std::vector<std::shared_ptr<LayerNode>> layers,
                                                bool keep_whiteouts);

}  // namespace rolayer
