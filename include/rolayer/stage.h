/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rolayer/stage.h: registering in two phases, so that the layers of an image are applied at
 * once and committed in chain order.
 *
 * rolayer_stage() reads, hashes, validates and applies a layer's uncompressed tar stream before
 * its parent is known: it computes the DiffID, the sizes and the fidelity record, and on the
 * "dir" driver (which stores each layer's own changes) applies the layer into private storage.
 * rolayer_stage_commit() then puts the staged layer on a parent: the ChainID is computed, every
 * check that needs the parent chain runs (a hard link into a lower layer, the depth), and the
 * layer is registered with the same outcome as rolayer_register_ext() of the same stream on that
 * parent. rolayer_stage_free() discards a staged layer that was not committed: nothing of it
 * stays behind. A crash in between leaves what a crashed register leaves, removed by the next
 * open of the store (docs/store.md, "Staged registers").
 *
 * Applied at commit instead (still correct, only not in parallel): a staged layer on a driver
 * other than "dir" (the stream is kept in the store's temporary folder and applied on the
 * parent at commit), and a "dir" layer that needs its parent's data (a hard link to a file that
 * is not in the layer): it is applied again on the parent at commit, from its own staged record
 * and payloads, each checked. rolayer_staged_deferred() tells which. A parent directory the
 * layer does not declare (no "usr/" entry before "usr/lib/x") does not defer it: the commit
 * gives such directories the metadata a register on that parent gives them (docs/store.md).
 *
 * Threads: rolayer_stage() is safe concurrently on one store (many layers stage at once); a
 * rolayer_staged is used by one thread at a time and may move between threads.
 */
#ifndef ROLAYER_STAGE_H
#define ROLAYER_STAGE_H

#include "common.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A staged layer: applied, not yet committed (rolayer_stage_commit / rolayer_stage_free). */
typedef struct rolayer_staged rolayer_staged;

/**
 * Stage a layer from an uncompressed tar stream read through read(…, user_data) to its end.
 * opts: as for rolayer_register_ext() (NULL = none); the descriptor is kept for the commit.
 *
 * Errors: ROLAYER_EARCHIVE, ROLAYER_EUNSAFE (as rolayer_register()), ROLAYER_EINVAL (NULL out
 * or read, a malformed descriptor, a closed store), ROLAYER_EUNSUPPORTED (a newer opts->version),
 * ROLAYER_EUSER (read failed), ROLAYER_EIO (also a read-only store), ROLAYER_ENOMEM. A failure
 * leaves nothing behind.
 * Ownership: *out is a new staged layer the caller ends with rolayer_stage_commit() and/or
 * rolayer_stage_free(); NULL on failure. opts is only read during the call.
 * Threads: safe concurrently on one store; read is called on the calling thread only.
 */
ROLAYER_API int rolayer_stage(rolayer_staged **out, rolayer_store *store, rolayer_read_fn read,
                              void *user_data, const rolayer_register_options *opts,
                              rolayer_error **err);
/**
 * As rolayer_stage(), reading an open file descriptor to its end (the descriptor is not closed;
 * it stays the caller's). ROLAYER_EINVAL for a negative fd; a read error is ROLAYER_EIO.
 */
ROLAYER_API int rolayer_stage_fd(rolayer_staged **out, rolayer_store *store, int fd,
                                 const rolayer_register_options *opts, rolayer_error **err);

/**
 * Commit a staged layer on top of parent_chain_id (NULL = a base layer), in store: the store it
 * was staged in (the store is passed again, rather than remembered, so that a staged layer that
 * outlives its store handle is refused, not used). An existing ChainID
 * gives a new reference to the existing layer (the staged data is dropped), as a register does.
 *
 * Errors: ROLAYER_ENOTFOUND (unknown parent), ROLAYER_EMAXDEPTH (parent depth >=
 * ROLAYER_MAX_DEPTH), ROLAYER_EARCHIVE (a hard link whose target is in neither the layer nor
 * its parent chain), ROLAYER_EINVAL (NULL out, store or staged, a malformed parent ChainID, a closed
 * store, a staged layer of another store, or one already committed or freed), ROLAYER_EDIGEST /
 * ROLAYER_ECORRUPT (the staged data was modified before a commit that applies it again),
 * ROLAYER_EIO, ROLAYER_ENOMEM. After a failure the staged layer is unchanged: commit it again
 * (on the same parent, or another when nothing was attached yet) or free it.
 * Ownership: staged stays the caller's (free it with rolayer_stage_free()); on success *out is
 * a new reference (rolayer_release() or rolayer_layer_close()); NULL on failure.
 * Threads: safe concurrently on one store, one call per staged layer at a time.
 */
ROLAYER_API int rolayer_stage_commit(rolayer_layer **out, rolayer_store *store,
                                     rolayer_staged *staged, const char *parent_chain_id,
                                     rolayer_error **err);

/** The staged layer's DiffID ("sha256:…"), borrowed for the handle's life; NULL for NULL. */
ROLAYER_API const char *rolayer_staged_diff_id(const rolayer_staged *staged);
/** The staged stream's size in bytes; -1 for NULL. */
ROLAYER_API int64_t rolayer_staged_stream_size(const rolayer_staged *staged);
/** 1 when the layer is applied at commit (see above), 0 when it was applied while staged, -1
 *  for NULL. */
ROLAYER_API int rolayer_staged_deferred(const rolayer_staged *staged);

/**
 * Free a staged layer. One that was not committed is discarded: its data and temporary files
 * are removed (once its store was freed, they are left to the store's next open). NULL is a
 * no-op. Ownership: consumes staged. Threads: not while another thread uses staged.
 */
ROLAYER_API void rolayer_stage_free(rolayer_staged *staged);

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_STAGE_H */
