// SPDX-License-Identifier: Apache-2.0
// A caller's driver (rolayer_driver_ops of include/rolayer/driver.h) as a rolayer::Driver.
#pragma once

#include <memory>

#include "drivers/driver.h"
#include "rolayer.h"

namespace rolayer {

// The ops and user_data as a rolayer::Driver: every call goes to the ops' callbacks;
// a callback's failure is Error(Code::User) with its return value and message.
std::unique_ptr<Driver> make_user_driver(const rolayer_driver_ops* ops, void* user_data);

}  // namespace rolayer
