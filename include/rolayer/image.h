/*
 * rolayer/image.h: images kept in a store. An image is a name (e.g. the normalised reference
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

typedef struct rolayer_image rolayer_image;

/*
 * Add the image called name, or replace the one of that name (its reference moves from the old
 * top layer to the new one; the old chain goes when nothing else holds it). top_chain_id must
 * exist (ROLAYER_ENOTFOUND). manifest and config are stored as given (1 byte to 4 MiB each;
 * ROLAYER_EINVAL otherwise) and their sha256 digests computed here; the library does not parse
 * them. name: 1 to 1024 bytes without control characters. A failure leaves the store as it was.
 */
ROLAYER_API int rolayer_image_put(rolayer_store *store, const char *name, const char *top_chain_id,
                                  const char *manifest_media_type, const uint8_t *manifest,
                                  size_t manifest_len, const uint8_t *config, size_t config_len,
                                  rolayer_error **err);

/*
 * A snapshot of the image called name: ROLAYER_ENOTFOUND when there is none, ROLAYER_ECORRUPT
 * when the stored manifest or config no longer matches its digest. Caller frees *out with
 * rolayer_image_free().
 */
ROLAYER_API int rolayer_image_open(rolayer_image **out, rolayer_store *store, const char *name,
                                   rolayer_error **err);

/* Getters (borrowed, NULL for a NULL image). Digests are "sha256:<hex>". */
ROLAYER_API const char *rolayer_image_name(const rolayer_image *image);
ROLAYER_API const char *rolayer_image_top_chain_id(const rolayer_image *image);
ROLAYER_API const char *rolayer_image_manifest_media_type(const rolayer_image *image);
ROLAYER_API const char *rolayer_image_manifest_digest(const rolayer_image *image);
ROLAYER_API const char *rolayer_image_config_digest(const rolayer_image *image);
/* The stored bytes and their length in *len (len may be NULL). */
ROLAYER_API const uint8_t *rolayer_image_manifest(const rolayer_image *image, size_t *len);
ROLAYER_API const uint8_t *rolayer_image_config(const rolayer_image *image, size_t *len);
/* Seconds since the epoch when the image was last put. */
ROLAYER_API int64_t rolayer_image_created(const rolayer_image *image);
/* Free a snapshot. NULL is a no-op. */
ROLAYER_API void rolayer_image_free(rolayer_image *image);

/* Every image name in the store, sorted. Caller frees *out. */
ROLAYER_API int rolayer_image_list(rolayer_string_list **out, rolayer_store *store, rolayer_error **err);

/*
 * Remove the image called name (ROLAYER_ENOTFOUND when there is none) and drop its reference on
 * its top layer; the layers that went are reported, child first, in *out_removed (may be NULL).
 */
ROLAYER_API int rolayer_image_remove(rolayer_store *store, const char *name, rolayer_removed **out_removed,
                                     rolayer_error **err);

#ifdef __cplusplus
}
#endif

#endif /* ROLAYER_IMAGE_H */
