/*
 * rolayer/store.h: opening a layer store, registering, opening and releasing layers.
 *
 * Threading: a rolayer_store is safe to use from many threads at once. Layer handles may be
 * used from any thread; their getters are read-only. rolayer_release() consumes the handle.
 * See docs/threading.md.
 */
#ifndef ROLAYER_STORE_H
#define ROLAYER_STORE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rolayer_driver_ops; /* rolayer/driver.h */

/* Maximum chain depth (a base layer has depth 1), as in the Docker engine. */
#define ROLAYER_MAX_DEPTH 125

/* Store options. Initialise with ROLAYER_STORE_OPTIONS_INIT; the struct only grows at the end. */
typedef struct rolayer_store_options {
  unsigned int version;          /* ROLAYER_STORE_OPTIONS_VERSION */
  const char *driver;            /* built-in driver: "dir" or "exact"; NULL = the store's own, or "dir" when new */
  const struct rolayer_driver_ops *driver_ops; /* a caller's driver instead of a built-in one, or NULL */
  void *driver_user_data;        /* passed last to every driver_ops callback */
  int busy_timeout_ms;           /* how long to wait for another process's lock; 0 = default (5000), <0 = fail at once */
} rolayer_store_options;
#define ROLAYER_STORE_OPTIONS_VERSION 1
#define ROLAYER_STORE_OPTIONS_INIT {ROLAYER_STORE_OPTIONS_VERSION, NULL, NULL, NULL, 0}

/*
 * Open (creating it if needed) the store rooted at directory root with the built-in driver
 * named driver: "dir" or "exact"; NULL = the driver the store was created with, or "dir" for a
 * new store. A store created with one driver can only be reopened with the same driver
 * (ROLAYER_EINVAL otherwise). On open, half-registered or half-removed layers left
 * by a crash are cleaned up. *out is NULL on failure.
 */
ROLAYER_API int rolayer_store_open(rolayer_store **out, const char *root, const char *driver,
                                   rolayer_error **err);
/* As rolayer_store_open, with options (NULL = defaults). */
ROLAYER_API int rolayer_store_open_ext(rolayer_store **out, const char *root,
                                       const rolayer_store_options *opts, rolayer_error **err);
/*
 * Close the store and its lock. Freeing a store with open handles deletes nothing: in-memory
 * references are simply dropped (persistent references stay). Handles and streams still open
 * stay valid as memory: their getters work, rolayer_release() and rolayer_tar_stream_free()
 * work and touch nothing on disk, every other call fails with ROLAYER_EINVAL ("the store was
 * closed"). Do not free a store while another thread is inside a call on it. NULL is a no-op.
 * Freeing the store from inside one of its callbacks (a rolayer_read_fn given to register, or
 * a callback of the store's rolayer_driver_ops) is undefined behaviour: the call that runs the
 * callback still uses the store when the callback returns.
 */
ROLAYER_API void rolayer_store_free(rolayer_store *store);
/* The root directory (borrowed) and the driver name (borrowed). */
ROLAYER_API const char *rolayer_store_root(const rolayer_store *store);
ROLAYER_API const char *rolayer_store_driver(const rolayer_store *store);

/* Options for registering. Initialise with ROLAYER_REGISTER_OPTIONS_INIT. */
typedef struct rolayer_register_options {
  unsigned int version;          /* ROLAYER_REGISTER_OPTIONS_VERSION */
  /* Distribution descriptor of the blob the layer came from (all NULL/0 = none). The media
   * type may not hold control characters (bytes < 0x20 or 0x7f) and the size must be >= 0, or
   * -1 for an unknown size: anything else is ROLAYER_EINVAL. */
  const char *descriptor_media_type;
  const char *descriptor_digest; /* validated: algorithm:hex */
  int64_t descriptor_size;
} rolayer_register_options;
#define ROLAYER_REGISTER_OPTIONS_VERSION 1
#define ROLAYER_REGISTER_OPTIONS_INIT {ROLAYER_REGISTER_OPTIONS_VERSION, NULL, NULL, 0}

/*
 * Register a layer from an uncompressed tar stream read through read(…, user_data), on top of
 * parent_chain_id (NULL = a base layer).
 *  - DiffID = sha256 of every byte read up to end of input; ChainID per the OCI image spec.
 *  - The archive is validated: ROLAYER_EARCHIVE (malformed), ROLAYER_EUNSAFE (escapes the
 *    layer; absolute names are rooted at the layer, as the Docker engine does).
 *  - Unknown parent: ROLAYER_ENOTFOUND; parent depth >= ROLAYER_MAX_DEPTH: ROLAYER_EMAXDEPTH.
 *  - An existing ChainID gives a new reference to the existing layer; nothing of the duplicate
 *    stays behind.
 * On success *out is a new reference the caller releases with rolayer_release().
 * A failure at any point leaves nothing behind.
 */
ROLAYER_API int rolayer_register(rolayer_layer **out, rolayer_store *store,
                                 const char *parent_chain_id, rolayer_read_fn read,
                                 void *user_data, rolayer_error **err);
/* As rolayer_register, with options (NULL = defaults). */
ROLAYER_API int rolayer_register_ext(rolayer_layer **out, rolayer_store *store,
                                     const char *parent_chain_id, rolayer_read_fn read,
                                     void *user_data, const rolayer_register_options *opts,
                                     rolayer_error **err);
/* Shortcuts: register from an open file descriptor (read to EOF, not closed) or from memory. */
ROLAYER_API int rolayer_register_fd(rolayer_layer **out, rolayer_store *store,
                                    const char *parent_chain_id, int fd,
                                    const rolayer_register_options *opts, rolayer_error **err);
ROLAYER_API int rolayer_register_memory(rolayer_layer **out, rolayer_store *store,
                                        const char *parent_chain_id, const uint8_t *data,
                                        size_t len, const rolayer_register_options *opts,
                                        rolayer_error **err);

/*
 * Open a new reference to the layer chain_id. ROLAYER_ENOTFOUND if there is none,
 * ROLAYER_EINVAL for a malformed ChainID.
 */
ROLAYER_API int rolayer_open(rolayer_layer **out, rolayer_store *store, const char *chain_id,
                             rolayer_error **err);

/*
 * Drop a reference. The handle is gone after this call whatever it returns: do not use it
 * again. When the last reference (handles, children, persistent references) goes, the layer's
 * data and metadata are deleted and its parent is released in turn (the cascade).
 * Calling it again on the same handle is undefined behaviour in C; bindings that keep their own
 * wrapper report ROLAYER_ENOTRETAINED instead. NULL gives ROLAYER_EINVAL.
 */
ROLAYER_API int rolayer_release(rolayer_layer *layer, rolayer_error **err);
/*
 * Free a handle without releasing it: the in-memory reference goes, and closing alone never
 * deletes — when it was the last reference, the layer stays as it would after the process
 * ended, until a release in its chain or rolayer_store_unretain deletes it. The one exception
 * is a release that is already waiting on this handle: when another reference to the layer
 * (or a child's cascade) asked for its release while this handle was open, the layer goes when
 * its last reference does, whether that reference is released, closed, or a stream freed.
 * For readers that look at layers without owning them (listing, inspecting, a garbage-collected
 * wrapper). The handle is gone after this call. NULL is a no-op.
 */
ROLAYER_API void rolayer_layer_close(rolayer_layer *layer);

/*
 * As rolayer_release, and also report the layers that were deleted, child first, in *out_removed
 * (an empty list when nothing was deleted). out_removed may be NULL.
 */
ROLAYER_API int rolayer_release_ext(rolayer_layer *layer, rolayer_removed **out_removed,
                                    rolayer_error **err);

/* Deleted-layer reports. Index i in [0, count). Out-of-range gives NULL / -1. */
ROLAYER_API size_t rolayer_removed_count(const rolayer_removed *r);
ROLAYER_API const char *rolayer_removed_chain_id(const rolayer_removed *r, size_t i);
ROLAYER_API const char *rolayer_removed_diff_id(const rolayer_removed *r, size_t i);
ROLAYER_API int64_t rolayer_removed_size(const rolayer_removed *r, size_t i);
ROLAYER_API int64_t rolayer_removed_diff_size(const rolayer_removed *r, size_t i);
ROLAYER_API void rolayer_removed_free(rolayer_removed *r);

/* Every ChainID in the store, in no particular order. */
ROLAYER_API int rolayer_store_list(rolayer_string_list **out, rolayer_store *store,
                                   rolayer_error **err);

/*
 * Persistent references, kept in the store's database across processes (what a command-line
 * tool uses): retain adds one to chain_id; unretain drops one and, when it was the last
 * reference of any kind, deletes as rolayer_release_ext does. Unretaining a layer with no
 * persistent reference is ROLAYER_ENOTRETAINED. out_removed may be NULL.
 */
ROLAYER_API int rolayer_store_retain(rolayer_store *store, const char *chain_id, rolayer_error **err);
ROLAYER_API int rolayer_store_unretain(rolayer_store *store, const char *chain_id,
                                       rolayer_removed **out_removed, rolayer_error **err);
/* The number of persistent references on chain_id. */
ROLAYER_API int rolayer_store_retained(rolayer_store *store, const char *chain_id, int64_t *out,
                                       rolayer_error **err);

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_STORE_H */
