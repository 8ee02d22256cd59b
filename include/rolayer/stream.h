/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file rolayer/stream.h
 * Reading a layer's tar stream.
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

/**
 * The registered tar, byte for byte, hashed as it is read and checked against the DiffID.
 * Errors: ROLAYER_EINVAL (NULL out, invalid handle, closed store), ROLAYER_ECORRUPT (the
 * layer's record is damaged), ROLAYER_EUSER (a caller's driver failed), ROLAYER_EIO,
 * ROLAYER_ENOMEM.
 * Ownership: *out is a new stream the caller frees with rolayer_tar_stream_free(); NULL on
 * failure. Threads: the layer handle may be shared; the stream is one thread's at a time.
 */
ROLAYER_API int rolayer_tar_stream_open(rolayer_tar_stream **out, rolayer_layer *layer,
                                        rolayer_error **err);
/**
 * The diff between layer and ancestor_chain_id (NULL = the whole flattened chain), verified on
 * every driver: against the layer's parent (or NULL for a base layer) it is the registered
 * stream, exactly as rolayer_tar_stream_open() gives it; against an older ancestor or the whole
 * chain it is built from the verified registered streams of the layers above the ancestor,
 * whiteouts, opaque directories and overrides applied in tar order (whiteout entries are kept
 * against an ancestor and dropped for the whole chain), each surviving entry copied byte for
 * byte. A damaged layer fails a later read with ROLAYER_ECORRUPT or ROLAYER_EDIGEST as for
 * rolayer_tar_stream_open().
 * Errors: ROLAYER_ENOTANCESTOR (ancestor_chain_id is not in the layer's chain), ROLAYER_EINVAL
 * (NULL out, malformed ChainID, invalid handle, closed store), ROLAYER_EUSER, ROLAYER_EIO,
 * ROLAYER_ENOMEM.
 * Ownership and threads: as rolayer_tar_stream_open().
 */
ROLAYER_API int rolayer_tar_stream_open_from(rolayer_tar_stream **out, rolayer_layer *layer,
                                             const char *ancestor_chain_id, rolayer_error **err);
/**
 * Read up to cap bytes into buf. Returns 0 with *n_read > 0 for data; 0 with *n_read == 0 at
 * the end of the stream, and for a verified stream that means it matched its DiffID.
 * (Shaped like read(2) and rolayer_read_fn, the buffer and its outputs follow the handle.)
 * cap must be > 0: a read with cap == 0 returns ROLAYER_EINVAL (and *n_read == 0), so that
 * "0 with *n_read == 0" always means the end of the stream; the stream stays usable.
 *
 * Errors: a mismatch makes the read that would have ended the stream return ROLAYER_EDIGEST
 * with the message "could not verify layer data for: <diffID>. This may be because internal
 * files in the layer store were modified"; a payload whose size or checksum differs from the
 * record fails at that entry with ROLAYER_ECORRUPT naming the path (large payloads are checked
 * block by block, so no damaged byte is returned); ROLAYER_EINVAL (invalid stream, NULL buf or
 * n_read, cap == 0), ROLAYER_EUSER, ROLAYER_EIO. After an error other than cap == 0, every later
 * read returns the same code. *n_read is 0 on failure.
 * Ownership: buf stays the caller's. Threads: one thread at a time per stream.
 */
ROLAYER_API int rolayer_tar_stream_read(rolayer_tar_stream *s, void *buf, size_t cap,
                                        size_t *n_read, rolayer_error **err);
/**
 * Free a stream (closing it early is fine; it never deletes). Cannot fail; NULL is a no-op.
 * Threads: not while another thread reads the stream.
 */
ROLAYER_API void rolayer_tar_stream_free(rolayer_tar_stream *s);

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_STREAM_H */
