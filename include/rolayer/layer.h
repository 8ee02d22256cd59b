/*
 * rolayer/layer.h: what a layer handle tells. All getters are read-only and thread-safe;
 * strings are borrowed and live as long as the handle.
 */
#ifndef ROLAYER_LAYER_H
#define ROLAYER_LAYER_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "sha256:<hex>". NULL for a NULL layer. */
ROLAYER_API const char *rolayer_layer_chain_id(const rolayer_layer *layer);
ROLAYER_API const char *rolayer_layer_diff_id(const rolayer_layer *layer);
/* The parent's ChainID, or NULL for a base layer. */
ROLAYER_API const char *rolayer_layer_parent(const rolayer_layer *layer);
/* Depth in the chain: 1 for a base layer. */
ROLAYER_API int rolayer_layer_depth(const rolayer_layer *layer);
/* Size: DiffSize summed over the chain. DiffSize: this layer's regular-file payload bytes. */
ROLAYER_API int rolayer_layer_size(int64_t *out, const rolayer_layer *layer, rolayer_error **err);
ROLAYER_API int rolayer_layer_diff_size(int64_t *out, const rolayer_layer *layer, rolayer_error **err);
/* Length in bytes of the registered (uncompressed) tar stream. */
ROLAYER_API int rolayer_layer_stream_size(int64_t *out, const rolayer_layer *layer, rolayer_error **err);
/*
 * The distribution descriptor given at register: media type and digest (borrowed, NULL when
 * none was given) and size (-1 when none).
 */
ROLAYER_API const char *rolayer_layer_descriptor_media_type(const rolayer_layer *layer);
ROLAYER_API const char *rolayer_layer_descriptor_digest(const rolayer_layer *layer);
ROLAYER_API int64_t rolayer_layer_descriptor_size(const rolayer_layer *layer);
/* The driver's metadata as key, value, key, value, … (an even count). Caller frees *out. */
ROLAYER_API int rolayer_layer_metadata(rolayer_string_list **out, const rolayer_layer *layer,
                                       rolayer_error **err);
/*
 * Read the whole verified stream and discard it: ROLAYER_OK when it matches its DiffID,
 * ROLAYER_EDIGEST or ROLAYER_ECORRUPT (naming the path) otherwise.
 */
ROLAYER_API int rolayer_layer_verify(rolayer_layer *layer, rolayer_error **err);

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_LAYER_H */
