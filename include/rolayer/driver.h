/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file rolayer/driver.h
 * Graph drivers written by the caller, in any language, as C callbacks.
 *
 * Pass a filled rolayer_driver_ops (and its user data) in rolayer_store_options to use it
 * instead of a built-in driver. The built-in "dir" and "exact" drivers implement the same
 * contract internally. docs/drivers.md explains threading, lifetimes and what each callback
 * must and must not do.
 *
 * Every callback returns 0 on success or non-zero on failure; it may attach a message with
 * rolayer_driver_error_set() on the derr it was given. A failure stops the operation with
 * ROLAYER_EUSER, keeps the callback's value (rolayer_error_user_code) and message, and leaves
 * the store consistent. user_data is always the last parameter.
 */
#ifndef ROLAYER_DRIVER_H
#define ROLAYER_DRIVER_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Where a failing driver callback puts its message (rolayer_driver_error_set()). Owned by the library. */
typedef struct rolayer_driver_error rolayer_driver_error;

/**
 * Attach a message (copied) to a failing callback's result. derr may be NULL (no-op). Cannot
 * fail (an allocation failure drops the message). Threads: only from within the callback that
 * was given derr, during that call.
 */
ROLAYER_API void rolayer_driver_error_set(rolayer_driver_error *derr, const char *message);

/**
 * Capability: the driver's diff of a layer against its parent reproduces the registered stream
 * byte for byte: the store keeps no fidelity record and exports that diff, still verified.
 */
#define ROLAYER_DRIVER_CAP_EXACT_DIFFS 0x1u

/** Called with each metadata pair (both copied); returns non-zero to stop. */
typedef int (*rolayer_metadata_emit_fn)(const char *key, const char *value, void *emit_data);

/** The rolayer_driver_ops version this header describes; a larger one is refused (ROLAYER_EUNSUPPORTED). */
#define ROLAYER_DRIVER_OPS_VERSION 1

/**
 * A caller's driver: its name, capabilities and callbacks. docs/drivers.md gives each
 * callback's threading and lifetime rules. The struct and user data must stay valid until
 * destroy is called.
 */
typedef struct rolayer_driver_ops {
  unsigned int version;   /**< ROLAYER_DRIVER_OPS_VERSION */
  const char *name;       /**< recorded in the store; reopening needs the same name */
  uint32_t capabilities;  /**< ROLAYER_DRIVER_CAP_* */

  /** Create empty storage for layer id on top of parent (NULL for a base layer). */
  int (*create)(const char *id, const char *parent, rolayer_driver_error *derr, void *user_data);
  /** Remove layer id's storage. Removing an id that does not exist succeeds. */
  int (*remove)(const char *id, rolayer_driver_error *derr, void *user_data);
  /**
   * Apply an uncompressed tar (read through read/read_data until it reports end of input; it
   * need not be read to the end) to layer id; set *size to the bytes the layer stores.
   * Data must be durable (fsynced) when this returns 0.
   */
  int (*apply_diff)(const char *id, const char *parent, rolayer_read_fn read, void *read_data,
                    int64_t *size, rolayer_driver_error *derr, void *user_data);
  /**
   * Open the diff of id against ancestor (NULL = the whole flattened chain) as a pull stream.
   * With ROLAYER_DRIVER_CAP_EXACT_DIFFS, the diff against the parent must be the registered
   * stream byte for byte (it is verified against the DiffID).
   */
  int (*diff_open)(void **stream, const char *id, const char *ancestor,
                   rolayer_driver_error *derr, void *user_data);
  /** Read up to cap bytes of an open diff; *n_read == 0 at its end. */
  int (*diff_read)(void *stream, void *buf, size_t cap, size_t *n_read,
                   rolayer_driver_error *derr, void *user_data);
  /** Close a diff opened by diff_open. */
  void (*diff_close)(void *stream, void *user_data);
  /**
   * Payload access, for drivers without ROLAYER_DRIVER_CAP_EXACT_DIFFS. During an export the
   * store opens the payload of each regular-file entry in stream order, by its cleaned relative
   * path (as applied), and reads it at byte offsets of the file's content (holes read as zeros).
   */
  int (*payload_open)(void **payload, const char *id, const char *path,
                      rolayer_driver_error *derr, void *user_data);
  /** Read up to cap bytes of an open payload at offset; *n_read == 0 at its end. */
  int (*payload_read)(void *payload, uint64_t offset, void *buf, size_t cap, size_t *n_read,
                      rolayer_driver_error *derr, void *user_data);
  /** Close a payload opened by payload_open. */
  void (*payload_close)(void *payload, void *user_data);
  /** Optional (NULL): report key/value metadata for layer id through emit. */
  int (*metadata)(const char *id, rolayer_metadata_emit_fn emit, void *emit_data,
                  rolayer_driver_error *derr, void *user_data);
  /** Optional (NULL): called once when the store is freed (or fails to open). */
  void (*destroy)(void *user_data);
} rolayer_driver_ops;

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_DRIVER_H */
