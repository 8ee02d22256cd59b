/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file rolayer/layer.h
 * What a layer handle tells. All getters are read-only and safe from several threads at once on
 * one handle; strings are borrowed and live as long as the handle. Getters that return a
 * pointer or a plain value cannot fail: NULL (or an invalid handle) gives NULL / 0 / -1.
 */
#ifndef ROLAYER_LAYER_H
#define ROLAYER_LAYER_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The layer's ChainID, "sha256:<hex>" (borrowed). NULL for a NULL layer. */
ROLAYER_API const char *rolayer_layer_chain_id(const rolayer_layer *layer);
/** The layer's DiffID, "sha256:<hex>" (borrowed). NULL for a NULL layer. */
ROLAYER_API const char *rolayer_layer_diff_id(const rolayer_layer *layer);
/** The parent's ChainID (borrowed), or NULL for a base layer. */
ROLAYER_API const char *rolayer_layer_parent(const rolayer_layer *layer);
/** Depth in the chain: 1 for a base layer (0 for NULL). */
ROLAYER_API int rolayer_layer_depth(const rolayer_layer *layer);
/**
 * Size: DiffSize summed over the chain, in *out.
 * Errors: ROLAYER_EINVAL (NULL out, invalid handle, closed store). Threads: any.
 */
ROLAYER_API int rolayer_layer_size(int64_t *out, const rolayer_layer *layer, rolayer_error **err);
/**
 * DiffSize: this layer's regular-file payload bytes, in *out.
 * Errors: ROLAYER_EINVAL (NULL out, invalid handle). Threads: any.
 */
ROLAYER_API int rolayer_layer_diff_size(int64_t *out, const rolayer_layer *layer, rolayer_error **err);
/**
 * Length in bytes of the registered (uncompressed) tar stream, in *out.
 * Errors: ROLAYER_EINVAL (NULL out, invalid handle). Threads: any.
 */
ROLAYER_API int rolayer_layer_stream_size(int64_t *out, const rolayer_layer *layer, rolayer_error **err);
/** The distribution descriptor's media type given at register (borrowed), NULL when none. */
ROLAYER_API const char *rolayer_layer_descriptor_media_type(const rolayer_layer *layer);
/** The distribution descriptor's digest given at register (borrowed), NULL when none. */
ROLAYER_API const char *rolayer_layer_descriptor_digest(const rolayer_layer *layer);
/** The distribution descriptor's size given at register, -1 when none. */
ROLAYER_API int64_t rolayer_layer_descriptor_size(const rolayer_layer *layer);
/**
 * The driver's metadata as key, value, key, value, … (an even count).
 * Errors: ROLAYER_EINVAL (NULL out, invalid handle, closed store), ROLAYER_EUSER (a caller's
 * driver failed), ROLAYER_EIO, ROLAYER_ENOMEM.
 * Ownership: *out is a new list the caller frees with rolayer_string_list_free(); NULL on failure.
 * Threads: any.
 */
ROLAYER_API int rolayer_layer_metadata(rolayer_string_list **out, const rolayer_layer *layer,
                                       rolayer_error **err);
/**
 * Read the whole verified stream and discard it.
 * Errors: ROLAYER_EDIGEST (the stream does not match its DiffID) or ROLAYER_ECORRUPT (a payload
 * or record is damaged; rolayer_error_path() names it), ROLAYER_EINVAL (invalid handle, closed
 * store), ROLAYER_EUSER (a caller's driver failed), ROLAYER_EIO, ROLAYER_ENOMEM.
 * Threads: any; several verifications of one handle may run at once.
 */
ROLAYER_API int rolayer_layer_verify(rolayer_layer *layer, rolayer_error **err);
/**
 * The layer's cache id (borrowed): the id under which the store's driver keeps this layer's
 * files, the one passed as `id` to a caller's driver (rolayer_driver callbacks), like the
 * Docker engine's cache-id. It is fixed when the layer is registered and is not the ChainID.
 * Errors: none; NULL for a NULL or invalid handle.
 * Ownership: the string lives as long as the handle (until rolayer_release(),
 * rolayer_release_ext() or rolayer_layer_close()); copy it to keep it.
 * Threads: any; the string never changes.
 */
ROLAYER_API const char *rolayer_layer_cache_id(const rolayer_layer *layer);

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_LAYER_H */
