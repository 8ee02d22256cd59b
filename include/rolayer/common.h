/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file rolayer/common.h
 * Export macros, status codes and the error object.
 *
 * Conventions (see docs/conventions.md):
 *  - Every fallible call returns int: ROLAYER_OK (0) or a negative ROLAYER_E* code.
 *  - Detail travels in the optional last parameter `rolayer_error **err`. When err is not NULL
 *    and the call fails, *err receives a new error object the caller frees with
 *    rolayer_error_free(). On success *err is left untouched. Pass NULL to ignore detail.
 *  - Handles are opaque; output parameters come first and are named out. On failure *out is NULL.
 *  - Freeing NULL is a no-op. Getters return borrowed pointers that live as long as the handle.
 *  - No global state, no init call, no thread-local "last error".
 */
#ifndef ROLAYER_COMMON_H
#define ROLAYER_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Marks an exported function of librolayer. */
#if defined(_WIN32)
#  define ROLAYER_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#  define ROLAYER_API __attribute__((visibility("default")))
#else
#  define ROLAYER_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @defgroup status Status codes
 * What every fallible call returns: ROLAYER_OK (0) or one of these negative codes. Values are
 * pinned: they never change once released (docs/abi.md). rolayer_strerror() names them.
 * @{
 */
#define ROLAYER_OK             0    /**< success */
#define ROLAYER_EINVAL       (-1)   /**< invalid argument, malformed digest, misused handle */
#define ROLAYER_ENOTFOUND    (-2)   /**< layer does not exist */
#define ROLAYER_EEXISTS      (-3)   /**< already exists */
#define ROLAYER_ENOTRETAINED (-4)   /**< layer not retained: the reference was already released */
#define ROLAYER_EMAXDEPTH    (-5)   /**< max depth exceeded (parent depth >= 125) */
#define ROLAYER_ENOTANCESTOR (-6)   /**< the given layer is not an ancestor of this layer */
#define ROLAYER_EDIGEST      (-7)   /**< stream does not match its DiffID */
#define ROLAYER_ECORRUPT     (-8)   /**< a stored payload or record is damaged */
#define ROLAYER_EARCHIVE     (-9)   /**< malformed or unsupported tar archive */
#define ROLAYER_EUNSAFE      (-10)  /**< an archive path or link escapes the layer */
#define ROLAYER_EIO          (-11)  /**< operating system I/O error (see rolayer_error_errno) */
#define ROLAYER_ENOMEM       (-12)  /**< out of memory */
#define ROLAYER_EUSER        (-13)  /**< a caller's callback returned non-zero */
#define ROLAYER_EBUSY        (-14)  /**< the store is busy (locked by another process) */
#define ROLAYER_EUNSUPPORTED (-15)  /**< not supported (by this driver, or a newer options version) */
/** @} */

/** A layer store (rolayer/store.h). Safe to share between threads. */
typedef struct rolayer_store rolayer_store;
/** A reference to a registered layer (rolayer/store.h, rolayer/layer.h). */
typedef struct rolayer_layer rolayer_layer;
/** A layer's tar stream being read (rolayer/stream.h). One thread at a time. */
typedef struct rolayer_tar_stream rolayer_tar_stream;
/** The detail of a failure: code, message, errno, path, DiffID. Owned by the caller. */
typedef struct rolayer_error rolayer_error;
/** A list of strings (ChainIDs, metadata key/value pairs). Owned by the caller. */
typedef struct rolayer_string_list rolayer_string_list;
/** The layers a release deleted, child first. Owned by the caller. */
typedef struct rolayer_removed rolayer_removed;
/** Every layer of a store with what a handle tells of it (rolayer_store_layers()). */
typedef struct rolayer_layer_list rolayer_layer_list;

/**
 * Read callback used for every input stream.
 * Fill up to cap bytes into buf and set *n_read. Return 0 with *n_read > 0 for data,
 * 0 with *n_read == 0 for end of input, non-zero to abort: the operation then fails with
 * ROLAYER_EUSER and rolayer_error_user_code() returns the callback's value.
 * Called on the calling thread, during the call only; it must not unwind (no C++ exception,
 * no longjmp across the library).
 */
typedef int (*rolayer_read_fn)(void *buf, size_t cap, size_t *n_read, void *user_data);

/**
 * @defgroup errors Error objects
 * An error object is created by a failing call when its `rolayer_error **err` is not NULL, and
 * belongs to the caller, who frees it with rolayer_error_free(). Its getters cannot fail, take
 * NULL, and return strings borrowed from the object. An error object is a plain value: any
 * thread may read it; free it once.
 * @{
 */

/** The status code of e (ROLAYER_E*). e may be NULL: returns ROLAYER_OK. */
ROLAYER_API int rolayer_error_code(const rolayer_error *e);
/** A one-line, human-readable message: never NULL for a non-NULL e (NULL for NULL); borrowed from e. */
ROLAYER_API const char *rolayer_error_message(const rolayer_error *e);
/** The operating-system errno behind an ROLAYER_EIO, or 0 (also for NULL). */
ROLAYER_API int rolayer_error_errno(const rolayer_error *e);
/** For ROLAYER_EUSER: the non-zero value the callback returned, else 0 (also for NULL). */
ROLAYER_API int rolayer_error_user_code(const rolayer_error *e);
/** For verification failures (ROLAYER_EDIGEST, ROLAYER_ECORRUPT): the DiffID of the layer (borrowed), else NULL. */
ROLAYER_API const char *rolayer_error_diff_id(const rolayer_error *e);
/** For ROLAYER_ECORRUPT, ROLAYER_EUNSAFE, ROLAYER_EARCHIVE: the entry path concerned (borrowed), when known, else NULL. */
ROLAYER_API const char *rolayer_error_path(const rolayer_error *e);
/** Free an error object and the strings borrowed from it. NULL is a no-op. */
ROLAYER_API void rolayer_error_free(rolayer_error *e);
/** Static text for a status code ("unknown error" for an unknown one). Never NULL; any thread. */
ROLAYER_API const char *rolayer_strerror(int code);
/** @} */

/**
 * @defgroup lists String lists
 * ChainID lists and metadata key/value pairs. A list belongs to the caller, who frees it with
 * rolayer_string_list_free(); strings are borrowed from the list. A plain value: any thread
 * may read it; free it once. The getters cannot fail.
 * @{
 */

/** Number of strings. NULL gives 0. */
ROLAYER_API size_t rolayer_string_list_count(const rolayer_string_list *l);
/** The i-th string (borrowed from l), or NULL when i is out of range or l is NULL. */
ROLAYER_API const char *rolayer_string_list_get(const rolayer_string_list *l, size_t i);
/** Free a list and its strings. NULL is a no-op. */
ROLAYER_API void rolayer_string_list_free(rolayer_string_list *l);
/** @} */

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_COMMON_H */
