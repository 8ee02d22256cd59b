/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file rolayer/store.h
 * Opening a layer store, registering, opening and releasing layers.
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

/** Maximum chain depth (a base layer has depth 1), as in the Docker engine. */
#define ROLAYER_MAX_DEPTH 125

/**
 * Store options. Initialise with ROLAYER_STORE_OPTIONS_INIT; the struct only grows at the end.
 * A version larger than this header's ROLAYER_STORE_OPTIONS_VERSION (a newer header against an
 * older library) is refused with ROLAYER_EUNSUPPORTED rather than half-read.
 */
typedef struct rolayer_store_options {
  unsigned int version;          /**< ROLAYER_STORE_OPTIONS_VERSION */
  const char *driver;            /**< built-in driver: "dir" or "exact"; NULL = the store's own, or "dir" when new */
  const struct rolayer_driver_ops *driver_ops; /**< a caller's driver instead of a built-in one, or NULL */
  void *driver_user_data;        /**< passed last to every driver_ops callback */
  int busy_timeout_ms;           /**< how long a call waits for another writer's short lock (a database
                                      transaction, another open's clean-up at open); 0 = default (5000), <0 = fail at once */
  /* Version 2: */
  int read_only;                 /**< non-zero: list, open, export, verify only; every write fails with ROLAYER_EIO
                                      and errno EROFS. A store on a read-only file system is opened this way anyway. */
  /* Version 3: */
  int64_t payload_pack_max;      /**< the "dir" driver's payload pack (docs/store.md): > 0 = layers registered from
                                      now on also keep the payloads of their regular files of 1 to this many bytes
                                      (at most 16 MiB) in one pack file, which exports read instead of one file per
                                      payload; < 0 = no pack for new layers; 0 = the store's setting as it is. A
                                      change is kept in the store (later opens, other processes use it); layers
                                      keep what they were registered with. Other drivers ignore it. Above 16 MiB:
                                      ROLAYER_EINVAL; a change on a read-only open: ROLAYER_EIO (errno EROFS). */
} rolayer_store_options;
/** The rolayer_store_options version this header describes. */
#define ROLAYER_STORE_OPTIONS_VERSION 3
/** Initialiser for rolayer_store_options: current version, defaults everywhere. */
#define ROLAYER_STORE_OPTIONS_INIT {ROLAYER_STORE_OPTIONS_VERSION, NULL, NULL, NULL, 0, 0, 0}

/**
 * Open (creating it if needed) the store rooted at directory root with the built-in driver
 * named driver: "dir" or "exact"; NULL = the driver the store was created with, or "dir" for a
 * new store. A store created with one driver can only be reopened with the same driver. On open,
 * half-registered or half-removed layers left by a crash are cleaned up.
 * Any number of processes, and any number of opens in one process, may use one root at once
 * (docs/store.md, "Several processes"). The store's own files must be what it made: a symbolic
 * link, FIFO or other unexpected entry in their place is ROLAYER_ECORRUPT naming the path. An
 * existing root that other users can reach is made private (0700) when it is the caller's,
 * refused (ROLAYER_EIO, errno EACCES) when it is another user's.
 *
 * Errors: ROLAYER_EINVAL (NULL out or root, unknown driver, a store created with another
 * driver), ROLAYER_EBUSY (another writer kept the database locked past the timeout),
 * ROLAYER_ECORRUPT (a damaged database, or store files that are not what the store made),
 * ROLAYER_EIO, ROLAYER_ENOMEM.
 * Ownership: *out is a new store the caller frees with rolayer_store_free(); NULL on failure.
 * Threads: any thread; any number of opens of one root, in one process or many.
 */
ROLAYER_API int rolayer_store_open(rolayer_store **out, const char *root, const char *driver,
                                   rolayer_error **err);
/**
 * As rolayer_store_open(), with options (NULL = defaults).
 *
 * Errors: as rolayer_store_open(); ROLAYER_EINVAL for opts->version 0, ROLAYER_EUNSUPPORTED for
 * an opts->version (or driver_ops->version) newer than this library's; a caller's driver's
 * failures as ROLAYER_EUSER. Ownership: as rolayer_store_open(); opts is only read during the
 * call, but driver_ops and driver_user_data must stay valid until the driver's destroy runs
 * (called exactly once: when the last handle of the store goes, or at once if the open fails).
 * Threads: any thread.
 */
ROLAYER_API int rolayer_store_open_ext(rolayer_store **out, const char *root,
                                       const rolayer_store_options *opts, rolayer_error **err);
/**
 * Close the store and its lock. Freeing a store with open handles deletes nothing: in-memory
 * references are simply dropped (persistent references stay). Handles and streams still open
 * stay valid as memory: their getters work, rolayer_release() and rolayer_tar_stream_free()
 * work and touch nothing on disk, every other call fails with ROLAYER_EINVAL ("the store was
 * closed"). Cannot fail; NULL is a no-op.
 * Freeing the store from inside one of its callbacks (a rolayer_read_fn given to register, or
 * a callback of the store's rolayer_driver_ops) is undefined behaviour: the call that runs the
 * callback still uses the store when the callback returns.
 * Threads: do not free a store while another thread is inside a call on it.
 */
ROLAYER_API void rolayer_store_free(rolayer_store *store);
/** The root directory (borrowed from the store; NULL for NULL). Cannot fail; any thread. */
ROLAYER_API const char *rolayer_store_root(const rolayer_store *store);
/** The driver's name (borrowed from the store; NULL for NULL). Cannot fail; any thread. */
ROLAYER_API const char *rolayer_store_driver(const rolayer_store *store);
/**
 * The store's payload-pack threshold in bytes as this open applies new layers with it
 * (rolayer_store_options.payload_pack_max; 0 = no pack, and for NULL).
 * Cannot fail; any thread.
 */
ROLAYER_API int64_t rolayer_store_payload_pack_max(const rolayer_store *store);

/**
 * Options for registering. Initialise with ROLAYER_REGISTER_OPTIONS_INIT; the struct only grows
 * at the end. A version newer than this library's is refused with ROLAYER_EUNSUPPORTED.
 */
typedef struct rolayer_register_options {
  unsigned int version;          /**< ROLAYER_REGISTER_OPTIONS_VERSION */
  /** Distribution descriptor of the blob the layer came from: media type (all NULL/0 = none).
   *  The media type may not hold control characters (bytes < 0x20 or 0x7f) and the size must
   *  be >= 0, or -1 for an unknown size: anything else is ROLAYER_EINVAL. */
  const char *descriptor_media_type;
  const char *descriptor_digest; /**< the blob's digest, validated: algorithm:hex */
  int64_t descriptor_size;       /**< the blob's size in bytes */
} rolayer_register_options;
/** The rolayer_register_options version this header describes. */
#define ROLAYER_REGISTER_OPTIONS_VERSION 1
/** Initialiser for rolayer_register_options: current version, no descriptor. */
#define ROLAYER_REGISTER_OPTIONS_INIT {ROLAYER_REGISTER_OPTIONS_VERSION, NULL, NULL, 0}

/**
 * Register a layer from an uncompressed tar stream read through read(…, user_data), on top of
 * parent_chain_id (NULL = a base layer).
 *  - DiffID = sha256 of every byte read up to end of input; ChainID per the OCI image spec.
 *  - An existing ChainID gives a new reference to the existing layer; nothing of the duplicate
 *    stays behind.
 *
 * Errors: ROLAYER_EARCHIVE (malformed archive), ROLAYER_EUNSAFE (a path or link escapes the
 * layer; absolute names are rooted at the layer, as the Docker engine does), ROLAYER_ENOTFOUND
 * (unknown parent), ROLAYER_EMAXDEPTH (parent depth >= ROLAYER_MAX_DEPTH), ROLAYER_EINVAL (NULL
 * out or read, malformed parent ChainID, closed store), ROLAYER_EUSER (read or a caller's
 * driver failed), ROLAYER_EIO, ROLAYER_ENOMEM. A failure at any point leaves nothing behind.
 * Ownership: on success *out is a new reference the caller drops with rolayer_release()
 * (deletes when last) or rolayer_layer_close() (never deletes); NULL on failure.
 * Threads: safe concurrently on one store; read is called on the calling thread only.
 */
ROLAYER_API int rolayer_register(rolayer_layer **out, rolayer_store *store,
                                 const char *parent_chain_id, rolayer_read_fn read,
                                 void *user_data, rolayer_error **err);
/**
 * As rolayer_register(), with options (NULL = defaults). Errors: as rolayer_register();
 * ROLAYER_EINVAL for opts->version 0 or a malformed descriptor digest, ROLAYER_EUNSUPPORTED for
 * a newer opts->version. Ownership and threads: as rolayer_register(); opts is only read
 * during the call.
 */
ROLAYER_API int rolayer_register_ext(rolayer_layer **out, rolayer_store *store,
                                     const char *parent_chain_id, rolayer_read_fn read,
                                     void *user_data, const rolayer_register_options *opts,
                                     rolayer_error **err);
/**
 * As rolayer_register_ext(), reading an open file descriptor to its end (the descriptor is not
 * closed; it stays the caller's). ROLAYER_EINVAL for a negative fd; a read error is ROLAYER_EIO.
 */
ROLAYER_API int rolayer_register_fd(rolayer_layer **out, rolayer_store *store,
                                    const char *parent_chain_id, int fd,
                                    const rolayer_register_options *opts, rolayer_error **err);
/**
 * As rolayer_register_ext(), from len bytes at data (only read during the call).
 * ROLAYER_EINVAL for NULL data with a non-zero len.
 */
ROLAYER_API int rolayer_register_memory(rolayer_layer **out, rolayer_store *store,
                                        const char *parent_chain_id, const uint8_t *data,
                                        size_t len, const rolayer_register_options *opts,
                                        rolayer_error **err);

/**
 * Open a new reference to the layer chain_id.
 * Errors: ROLAYER_ENOTFOUND if there is none, ROLAYER_EINVAL for a malformed or NULL ChainID,
 * a NULL out or a closed store, ROLAYER_ENOMEM.
 * Ownership: *out is a new reference (rolayer_release() or rolayer_layer_close()); NULL on failure.
 * Threads: safe concurrently on one store.
 */
ROLAYER_API int rolayer_open(rolayer_layer **out, rolayer_store *store, const char *chain_id,
                             rolayer_error **err);

/**
 * Drop a reference. When the last reference (handles, children, persistent references) goes,
 * the layer's data and metadata are deleted and its parent is released in turn (the cascade).
 * Errors: ROLAYER_EINVAL (NULL or invalid handle), ROLAYER_EIO, ROLAYER_ECORRUPT from the
 * deletion (the reference is gone anyway).
 * Ownership: consumes layer: the handle is gone after this call whatever it returns. Calling it
 * again on the same handle is undefined behaviour in C; bindings that keep their own wrapper
 * report ROLAYER_ENOTRETAINED instead.
 * Threads: once, from one thread, when no other thread uses that handle.
 */
ROLAYER_API int rolayer_release(rolayer_layer *layer, rolayer_error **err);
/**
 * Free a handle without releasing it: the in-memory reference goes, and closing alone never
 * deletes — when it was the last reference, the layer stays as it would after the process
 * ended, until a release in its chain or rolayer_store_unretain() deletes it. The one exception
 * is a release that is already waiting on this handle: when another reference to the layer
 * (or a child's cascade) asked for its release while this handle was open, the layer goes when
 * its last reference does, whether that reference is released, closed, or a stream freed.
 * For readers that look at layers without owning them (listing, inspecting, a garbage-collected
 * wrapper). Cannot fail; NULL is a no-op.
 * Ownership: consumes layer. Threads: as rolayer_release().
 */
ROLAYER_API void rolayer_layer_close(rolayer_layer *layer);

/**
 * As rolayer_release(), and also report the layers that were deleted, child first, in
 * *out_removed (an empty list when nothing was deleted).
 * Errors: as rolayer_release(). Ownership: consumes layer; *out_removed (out_removed may be
 * NULL) is a new report the caller frees with rolayer_removed_free(), NULL on failure.
 * Threads: as rolayer_release().
 */
ROLAYER_API int rolayer_release_ext(rolayer_removed **out_removed, rolayer_layer *layer,
                                    rolayer_error **err);

/**
 * @defgroup removed Deleted-layer reports
 * What rolayer_release_ext() and rolayer_store_unretain() deleted, child first. Index i in
 * [0, count). The getters cannot fail: NULL or out-of-range gives 0 / NULL / -1. Strings are
 * borrowed from the report. A plain value: any thread may read it; free it once.
 * @{
 */
/** Number of deleted layers (0 for NULL). */
ROLAYER_API size_t rolayer_removed_count(const rolayer_removed *r);
/** The i-th deleted layer's ChainID (borrowed). */
ROLAYER_API const char *rolayer_removed_chain_id(const rolayer_removed *r, size_t i);
/** The i-th deleted layer's DiffID (borrowed). */
ROLAYER_API const char *rolayer_removed_diff_id(const rolayer_removed *r, size_t i);
/** The i-th deleted layer's size (its chain's DiffSize sum). */
ROLAYER_API int64_t rolayer_removed_size(const rolayer_removed *r, size_t i);
/** The i-th deleted layer's DiffSize. */
ROLAYER_API int64_t rolayer_removed_diff_size(const rolayer_removed *r, size_t i);
/** Free a report. NULL is a no-op. */
ROLAYER_API void rolayer_removed_free(rolayer_removed *r);
/** @} */

/**
 * Every ChainID in the store, in no particular order.
 * Errors: ROLAYER_EINVAL (NULL out, closed store), ROLAYER_ENOMEM.
 * Ownership: *out is a new list the caller frees with rolayer_string_list_free(); NULL on failure.
 * Threads: safe concurrently on one store.
 */
ROLAYER_API int rolayer_store_list(rolayer_string_list **out, rolayer_store *store,
                                   rolayer_error **err);

/**
 * Every layer that rolayer_store_list() names, with what rolayer_open() and the layer getters
 * would tell of each, read in one query of the store's database: no handle is made, nothing is
 * held or written (listing a store of 100,000 layers takes a fraction of a second, where a
 * rolayer_open() per layer takes minutes). The list is a snapshot: a layer may be removed by
 * another process right after. In no particular order.
 * Errors: ROLAYER_EINVAL (NULL out, closed store), ROLAYER_EIO, ROLAYER_ENOMEM.
 * Ownership: *out is a new list the caller frees with rolayer_layer_list_free(); NULL on failure.
 * Threads: safe concurrently on one store; the list is a plain value (any thread may read it).
 */
ROLAYER_API int rolayer_store_layers(rolayer_layer_list **out, rolayer_store *store, rolayer_error **err);

/**
 * @defgroup layer_list Layer lists
 * What rolayer_store_layers() found. Index i in [0, count). The getters cannot fail: NULL or
 * out-of-range gives 0 / NULL / -1. Strings are borrowed from the list.
 * @{
 */
/** Number of layers (0 for NULL). */
ROLAYER_API size_t rolayer_layer_list_count(const rolayer_layer_list *l);
/** The i-th layer's ChainID (borrowed). */
ROLAYER_API const char *rolayer_layer_list_chain_id(const rolayer_layer_list *l, size_t i);
/** The i-th layer's DiffID (borrowed). */
ROLAYER_API const char *rolayer_layer_list_diff_id(const rolayer_layer_list *l, size_t i);
/** The i-th layer's cache id (borrowed), as rolayer_layer_cache_id(). */
ROLAYER_API const char *rolayer_layer_list_cache_id(const rolayer_layer_list *l, size_t i);
/** The i-th layer's parent ChainID (borrowed), NULL for a base layer. */
ROLAYER_API const char *rolayer_layer_list_parent(const rolayer_layer_list *l, size_t i);
/** The i-th layer's depth (1 for a base layer), as rolayer_layer_depth(); 0 when out of range. */
ROLAYER_API int rolayer_layer_list_depth(const rolayer_layer_list *l, size_t i);
/** The i-th layer's size (its chain's DiffSize sum), as rolayer_layer_size(). */
ROLAYER_API int64_t rolayer_layer_list_size(const rolayer_layer_list *l, size_t i);
/** The i-th layer's DiffSize, as rolayer_layer_diff_size(). */
ROLAYER_API int64_t rolayer_layer_list_diff_size(const rolayer_layer_list *l, size_t i);
/** The i-th layer's exported stream size, as rolayer_layer_stream_size(). */
ROLAYER_API int64_t rolayer_layer_list_stream_size(const rolayer_layer_list *l, size_t i);
/** The i-th layer's persistent references, as rolayer_store_retained(). */
ROLAYER_API int64_t rolayer_layer_list_retained(const rolayer_layer_list *l, size_t i);
/** The i-th layer's descriptor media type (borrowed), as rolayer_layer_descriptor_media_type(). */
ROLAYER_API const char *rolayer_layer_list_descriptor_media_type(const rolayer_layer_list *l, size_t i);
/** The i-th layer's descriptor digest (borrowed), as rolayer_layer_descriptor_digest(). */
ROLAYER_API const char *rolayer_layer_list_descriptor_digest(const rolayer_layer_list *l, size_t i);
/** The i-th layer's descriptor size, as rolayer_layer_descriptor_size() (-1: none). */
ROLAYER_API int64_t rolayer_layer_list_descriptor_size(const rolayer_layer_list *l, size_t i);
/** Free a list. NULL is a no-op. */
ROLAYER_API void rolayer_layer_list_free(rolayer_layer_list *l);
/** @} */

/**
 * Add a persistent reference to chain_id, kept in the store's database across processes (what
 * a command-line tool uses).
 * Errors: ROLAYER_ENOTFOUND (no such layer), ROLAYER_EINVAL (NULL or malformed ChainID, closed
 * store), ROLAYER_EIO. Threads: safe concurrently on one store.
 */
ROLAYER_API int rolayer_store_retain(rolayer_store *store, const char *chain_id, rolayer_error **err);
/**
 * Drop a persistent reference to chain_id; when it was the last reference of any kind, delete
 * as rolayer_release_ext() does and report the deleted layers, child first, in *out_removed.
 * Errors: ROLAYER_ENOTRETAINED (chain_id has no persistent reference), ROLAYER_ENOTFOUND,
 * ROLAYER_EINVAL, ROLAYER_EIO. Ownership: *out_removed (out_removed may be NULL) is a new report
 * (rolayer_removed_free()), NULL on failure. Threads: safe concurrently on one store.
 */
ROLAYER_API int rolayer_store_unretain(rolayer_removed **out_removed, rolayer_store *store,
                                       const char *chain_id, rolayer_error **err);
/**
 * The number of persistent references on chain_id, in *out.
 * Errors: ROLAYER_EINVAL (NULL out or chain_id, malformed ChainID, closed store),
 * ROLAYER_ENOTFOUND, ROLAYER_EIO. *out is set only on success. Threads: safe concurrently.
 */
ROLAYER_API int rolayer_store_retained(int64_t *out, rolayer_store *store, const char *chain_id,
                                       rolayer_error **err);

/**
 * Collect what nothing keeps: the holds, temporary files and intent marks of processes that
 * died with the store open (their layers that had no persistent reference are released), and
 * every layer without a persistent reference, a child, or a handle or stream open in any live
 * process (for instance a layer registered by a process killed before it retained it). Layers
 * held by live processes are never touched.
 * Errors: ROLAYER_EIO with errno EROFS on a read-only store; ROLAYER_EBUSY when another writer
 * kept the database locked longer than busy_timeout_ms; ROLAYER_EINVAL (NULL store); ROLAYER_EIO.
 * Ownership: *out_removed (out_removed may be NULL) is a new report of what was deleted, child
 * first, empty when nothing was (rolayer_removed_free()); NULL on failure.
 * Threads: as every call on a store. Several processes may run it at once.
 */
ROLAYER_API int rolayer_store_gc(rolayer_removed **out_removed, rolayer_store *store, rolayer_error **err);

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_STORE_H */
