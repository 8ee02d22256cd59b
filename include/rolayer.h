/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file rolayer.h
 * librolayer, a read-only container-image layer store with verified, byte-exact tar streams,
 * behind a stable C ABI. Include this umbrella header.
 *
 * Every function documents its errors (the ROLAYER_E* codes it returns, with detail in the
 * optional last `rolayer_error **err`), who owns what it returns, and its thread rules
 * (docs/threading.md). The ABI policy is docs/abi.md.
 */
#ifndef ROLAYER_H
#define ROLAYER_H

#include "rolayer/common.h"
#include "rolayer/version.h"
#include "rolayer/store.h"
#include "rolayer/layer.h"
#include "rolayer/stream.h"
#include "rolayer/image.h"
#include "rolayer/driver.h"
#include "rolayer/docker.h"
#include "rolayer/mount.h"
#include "rolayer/stage.h"

#endif /* ROLAYER_H */
