/*
 * rolayer.h: librolayer, a read-only container-image layer store with verified, byte-exact
 * tar streams, behind a stable C ABI. Include this umbrella header.
 */
#ifndef ROLAYER_H
#define ROLAYER_H

#include "rolayer/common.h"
#include "rolayer/version.h"
#include "rolayer/store.h"
#include "rolayer/layer.h"
#include "rolayer/stream.h"
#include "rolayer/driver.h"
#include "rolayer/mount.h"

#endif /* ROLAYER_H */
