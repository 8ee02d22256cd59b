/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file rolayer/image.h
 * Images kept in a store. An image is a name (e.g. the normalised reference
 * it was pulled as, "docker.io/library/alpine:3.19"), its manifest and config (stored byte for
 * byte, content-addressed by sha256 and shared between images) and its top layer, on which the
 * image holds one persistent reference (as rolayer_store_retain). Removing the image drops that
 * reference — deleting the chain when nothing else holds it — and the manifest and config when
 * no other image uses them.
 *
 * Threading: as the store (safe from many threads). Image handles are read-only snapshots owned
 * by the caller; their getters are thread-safe and their strings live as long as the handle.
 */
#ifndef ROLAYER_IMAGE_H
#define ROLAYER_IMAGE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A snapshot of one image kept in a store (read-only; free with rolayer_image_free()). */
typedef struct rolayer_image rolayer_image;

/**
 * Add the image called name, or replace the one of that name (its reference moves from the old
 * top layer to the new one; the old chain goes when nothing else holds it). manifest and config
 * are stored as given and their sha256 digests computed here; the library does not parse them.
 * Errors: ROLAYER_ENOTFOUND when top_chain_id does not exist; ROLAYER_EINVAL for a NULL store,
 * name, top_chain_id or manifest_media_type, a malformed top_chain_id, a name that is not 1 to
 * 1024 bytes without control characters, a media type that is not 1 to 255 bytes, a manifest
 * or config that is empty, larger than 4 MiB or NULL with a non-zero length, a closed store;
 * ROLAYER_EIO, ROLAYER_ECORRUPT, ROLAYER_EBUSY, ROLAYER_ENOMEM. A failure leaves the store as
 * it was.
 * Ownership: every argument is only read during the call (the bytes are copied into the store).
 * Threads: safe concurrently on one store; two puts of one name end with one of them.
 */
ROLAYER_API int rolayer_image_put(rolayer_store *store, const char *name, const char *top_chain_id,
                                  const char *manifest_media_type, const uint8_t *manifest,
                                  size_t manifest_len, const uint8_t *config, size_t config_len,
                                  rolayer_error **err);

/**
 * A snapshot of the image called name.
 * Errors: ROLAYER_ENOTFOUND when there is none; ROLAYER_ECORRUPT when the stored manifest or
 * config no longer matches its digest; ROLAYER_EINVAL for a NULL out, store or name or a closed
 * store; ROLAYER_EIO, ROLAYER_ENOMEM.
 * Ownership: *out is a new snapshot the caller frees with rolayer_image_free(), NULL on failure.
 * It holds no reference on the image's layers and stays valid after the store is freed.
 * Threads: safe concurrently on one store.
 */
ROLAYER_API int rolayer_image_open(rolayer_image **out, rolayer_store *store, const char *name,
                                   rolayer_error **err);

/**
 * @defgroup image_getters Image snapshot getters
 * Read a snapshot from rolayer_image_open(). They cannot fail: a NULL or freed image gives
 * NULL / 0. Strings and bytes are borrowed and live as long as the snapshot. Digests are
 * "sha256:<hex>". A snapshot is a plain value: any thread may read it at once; free it once.
 * @{
 */
/** The image's name (borrowed). */
ROLAYER_API const char *rolayer_image_name(const rolayer_image *image);
/** The ChainID of the image's top layer (borrowed). */
ROLAYER_API const char *rolayer_image_top_chain_id(const rolayer_image *image);
/** The manifest's media type as given to rolayer_image_put() (borrowed). */
ROLAYER_API const char *rolayer_image_manifest_media_type(const rolayer_image *image);
/** The sha256 digest of the stored manifest bytes (borrowed). */
ROLAYER_API const char *rolayer_image_manifest_digest(const rolayer_image *image);
/** The sha256 digest of the stored config bytes (borrowed). */
ROLAYER_API const char *rolayer_image_config_digest(const rolayer_image *image);
/** The stored manifest bytes (borrowed, not NUL-terminated) and their length in *len (len may be NULL). */
ROLAYER_API const uint8_t *rolayer_image_manifest(const rolayer_image *image, size_t *len);
/** The stored config bytes (borrowed, not NUL-terminated) and their length in *len (len may be NULL). */
ROLAYER_API const uint8_t *rolayer_image_config(const rolayer_image *image, size_t *len);
/** Seconds since the epoch when the image was last put. */
ROLAYER_API int64_t rolayer_image_created(const rolayer_image *image);
/** @} */

/**
 * Free a snapshot. Cannot fail; NULL is a no-op. Deletes nothing in the store.
 * Ownership: consumes image. Threads: once, when no other thread uses that snapshot.
 */
ROLAYER_API void rolayer_image_free(rolayer_image *image);

/**
 * Every image name in the store, sorted.
 * Errors: ROLAYER_EINVAL for a NULL out or store or a closed store; ROLAYER_EIO,
 * ROLAYER_ECORRUPT, ROLAYER_ENOMEM.
 * Ownership: *out is a new list the caller frees with rolayer_string_list_free(), NULL on failure.
 * Threads: safe concurrently on one store.
 */
ROLAYER_API int rolayer_image_list(rolayer_string_list **out, rolayer_store *store, rolayer_error **err);

/**
 * Remove the image called name and drop its reference on its top layer (deleting the chain when
 * nothing else holds it), and its manifest and config when no other image uses them.
 * Errors: ROLAYER_ENOTFOUND when there is no such image; ROLAYER_EINVAL for a NULL store or
 * name or a closed store; ROLAYER_EIO, ROLAYER_ECORRUPT, ROLAYER_EBUSY, ROLAYER_ENOMEM.
 * Ownership: *out_removed (out_removed may be NULL) is a new report of the layers that were
 * deleted, child first, that the caller frees with rolayer_removed_free(); NULL on failure.
 * Threads: safe concurrently on one store.
 */
ROLAYER_API int rolayer_image_remove(rolayer_removed **out_removed, rolayer_store *store, const char *name,
                                     rolayer_error **err);

#ifdef __cplusplus
}
#endif

#endif /* ROLAYER_IMAGE_H */
