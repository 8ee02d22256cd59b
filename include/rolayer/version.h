/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file rolayer/version.h
 * Compile-time and run-time version of librolayer.
 */
#ifndef ROLAYER_VERSION_H
#define ROLAYER_VERSION_H

#include "common.h"

/** Major version: 0 while the ABI may change with each minor (docs/abi.md). */
#define ROLAYER_VERSION_MAJOR 0
/** Minor version: in 0.x, part of the SONAME (librolayer.so.0.MINOR). */
#define ROLAYER_VERSION_MINOR 1
/** Patch version: fixes only, same ABI. */
#define ROLAYER_VERSION_PATCH 0
/** MAJOR * 10000 + MINOR * 100 + PATCH, as rolayer_version() returns it. */
#define ROLAYER_VERSION_NUMBER (ROLAYER_VERSION_MAJOR * 10000 + ROLAYER_VERSION_MINOR * 100 + ROLAYER_VERSION_PATCH)
/** "MAJOR.MINOR.PATCH". */
#define ROLAYER_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The ROLAYER_VERSION_NUMBER the loaded library was built with: compare it with the header's.
 * Cannot fail; any thread.
 */
ROLAYER_API int rolayer_version(void);
/** The loaded library's version as "MAJOR.MINOR.PATCH" (static storage; do not free). Cannot fail; any thread. */
ROLAYER_API const char *rolayer_version_string(void);

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_VERSION_H */
