/*
 * rolayer/stream.h: reading a layer's tar stream.
 *
 * A stream is used by one thread at a time but may move between threads. It keeps its layer
 * alive: the layer handle may be released while the stream is open.
 */
#ifndef ROLAYER_STREAM_H
#define ROLAYER_STREAM_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The registered tar, byte for byte, hashed as it is read and checked against the DiffID.
 * Caller frees *out with rolayer_tar_stream_free().
 */
ROLAYER_API int rolayer_tar_stream_open(rolayer_tar_stream **out, rolayer_layer *layer,
                                        rolayer_error **err);
/*
 * The diff between layer and ancestor_chain_id (NULL = the whole flattened chain), verified on
 * every driver: against the layer's parent (or NULL for a base layer) it is the registered
 * stream, exactly as rolayer_tar_stream_open gives it; against an older ancestor or the whole
 * chain it is built from the verified registered streams of the layers above the ancestor,
 * whiteouts, opaque directories and overrides applied in tar order (whiteout entries are kept
 * against an ancestor and dropped for the whole chain), each surviving entry copied byte for
 * byte. A damaged layer fails the read with ROLAYER_ECORRUPT or ROLAYER_EDIGEST as for
 * rolayer_tar_stream_open. ROLAYER_ENOTANCESTOR when ancestor_chain_id is not in the layer's
 * chain.
 */
ROLAYER_API int rolayer_tar_stream_open_from(rolayer_tar_stream **out, rolayer_layer *layer,
                                             const char *ancestor_chain_id, rolayer_error **err);
/*
 * Read up to cap bytes. Returns 0 with *n_read > 0 for data; 0 with *n_read == 0 at the end of
 * the stream, and for a verified stream that means it matched its DiffID. A mismatch makes the
 * read that would have ended the stream return ROLAYER_EDIGEST with the message
 * "could not verify layer data for: <diffID>. This may be because internal files in the layer
 * store were modified"; a payload whose size or checksum differs from the record fails at that
 * entry with ROLAYER_ECORRUPT naming the path. After an error, every later read returns the
 * same code.
 * cap must be > 0: a read with cap == 0 returns ROLAYER_EINVAL (and *n_read == 0), so that
 * "0 with *n_read == 0" always means the end of the stream. buf and n_read must not be NULL.
 */
ROLAYER_API int rolayer_tar_stream_read(rolayer_tar_stream *s, void *buf, size_t cap,
                                        size_t *n_read, rolayer_error **err);
/* Free a stream (closing it early is fine). NULL is a no-op. */
ROLAYER_API void rolayer_tar_stream_free(rolayer_tar_stream *s);

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_STREAM_H */
