/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rolayer/docker.h: reading a Docker engine's graphdriver layers offline (no daemon), for
 * verifying them and migrating them (into a rolayer store with rolayer_register_ext, or
 * anywhere else).
 *
 * A Docker data root (/var/lib/docker) keeps each layer's metadata under
 * <root>/image/<driver>/layerdb/sha256/<chainID hex>/ and its files under the driver's
 * directory: <root>/overlay2/<cache-id>/diff or <root>/vfs/dir/<cache-id>. A layer's tar stream
 * is reassembled from its tar-split record (docs/tar-split-format.md) and those files, exactly
 * as the engine's `docker save` would produce it, and verified while it is read: every file's
 * size and CRC-64/ISO against the record, and the SHA-256 of the whole stream against the
 * DiffID. Drivers: overlay2 and vfs; any other gives ROLAYER_EUNSUPPORTED.
 *
 * Nothing under the data root is ever written; every path below it is opened relative to a
 * directory descriptor without following symlinks; reading is safe while dockerd runs (a layer
 * that dockerd deletes meanwhile fails with an error, never a crash). Memory is bounded (tar-split
 * lines are capped at 16 MiB).
 *
 * Threading: a rolayer_docker_root may be used from many threads at once (each stream has its
 * own descriptors); a stream is used by one thread at a time and may move between threads; it
 * keeps what it needs of the root alive, so the root may be freed while streams are open.
 */
#ifndef ROLAYER_DOCKER_H
#define ROLAYER_DOCKER_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rolayer_docker_root rolayer_docker_root;
typedef struct rolayer_docker_layers rolayer_docker_layers;

/*
 * Open the Docker data root data_root (the directory itself may be reached through symlinks,
 * nothing below it is) with the driver named driver: "overlay2", "vfs", or NULL for the one
 * driver that has a layer database under <data_root>/image/. Errors: ROLAYER_ENOTFOUND (no
 * such directory, no layer database), ROLAYER_EUNSUPPORTED (another driver: btrfs, zfs,
 * devicemapper, aufs, fuse-overlayfs, …; the message names it), ROLAYER_EINVAL (data_root NULL,
 * or several drivers and driver NULL), ROLAYER_EIO. *out is NULL on failure; free it with
 * rolayer_docker_root_free().
 */
ROLAYER_API int rolayer_docker_root_open(rolayer_docker_root **out, const char *data_root,
                                         const char *driver, rolayer_error **err);
/* Free a root handle (open streams stay valid). NULL is a no-op. */
ROLAYER_API void rolayer_docker_root_free(rolayer_docker_root *root);
/* The driver in use ("overlay2" or "vfs"), borrowed; NULL for a NULL or invalid handle. */
ROLAYER_API const char *rolayer_docker_root_driver(const rolayer_docker_root *root);

/*
 * Every layer of the layer database, parents before children (then by ChainID). A layer whose
 * metadata cannot be read (a missing or malformed `diff`, `cache-id`, …) is listed last with
 * its ChainID and rolayer_docker_layers_error() saying why (its other fields are empty).
 * Caller frees *out with rolayer_docker_layers_free().
 */
ROLAYER_API int rolayer_docker_layers_list(rolayer_docker_layers **out, rolayer_docker_root *root,
                                           rolayer_error **err);
/*
 * One layer, as a list of one: ROLAYER_ENOTFOUND when the layer database has no such ChainID
 * ("sha256:<hex>" or the 64-digit hex), ROLAYER_ECORRUPT when its metadata is damaged,
 * ROLAYER_EINVAL for a malformed ChainID.
 */
ROLAYER_API int rolayer_docker_layers_get(rolayer_docker_layers **out, rolayer_docker_root *root,
                                          const char *chain_id, rolayer_error **err);
/* Number of layers; NULL gives 0. */
ROLAYER_API size_t rolayer_docker_layers_count(const rolayer_docker_layers *l);
/*
 * Fields of layer i (borrowed strings that live as long as the list; NULL when i is out of
 * range): ChainID and DiffID ("sha256:<hex>"), parent ChainID (NULL for a base layer), the
 * driver's cache-id, and the distribution descriptor from descriptor.json (media type and
 * digest NULL, size -1, when the layer has none; dockerd 20.10 writes one for foreign layers only).
 */
ROLAYER_API const char *rolayer_docker_layers_chain_id(const rolayer_docker_layers *l, size_t i);
ROLAYER_API const char *rolayer_docker_layers_diff_id(const rolayer_docker_layers *l, size_t i);
ROLAYER_API const char *rolayer_docker_layers_parent(const rolayer_docker_layers *l, size_t i);
ROLAYER_API const char *rolayer_docker_layers_cache_id(const rolayer_docker_layers *l, size_t i);
ROLAYER_API const char *rolayer_docker_layers_descriptor_media_type(const rolayer_docker_layers *l, size_t i);
ROLAYER_API const char *rolayer_docker_layers_descriptor_digest(const rolayer_docker_layers *l, size_t i);
ROLAYER_API int64_t rolayer_docker_layers_descriptor_size(const rolayer_docker_layers *l, size_t i);
/* The `size` the engine recorded (its size of the layer's files), or -1 (absent, or i out of range). */
ROLAYER_API int64_t rolayer_docker_layers_size(const rolayer_docker_layers *l, size_t i);
/* Why layer i's metadata could not be read (borrowed), or NULL when it was read. */
ROLAYER_API const char *rolayer_docker_layers_error(const rolayer_docker_layers *l, size_t i);
ROLAYER_API void rolayer_docker_layers_free(rolayer_docker_layers *l);

/*
 * The chain of ChainIDs, base first, that ref names: a layer's ChainID (full, hex, or a unique
 * hex prefix: the layer and its parents), an image ID from imagedb (same forms; its config is
 * checked against the ID), or an image name from repositories.json ("name:tag", "name" for
 * name:latest, "name@sha256:…", with or without "docker.io/library/"). ROLAYER_ENOTFOUND when
 * nothing matches, ROLAYER_EINVAL for an ambiguous prefix. Caller frees *out.
 */
ROLAYER_API int rolayer_docker_resolve(rolayer_string_list **out, rolayer_docker_root *root,
                                       const char *ref, rolayer_error **err);

/*
 * Open the layer's tar stream, reassembled and verified as it is read: read it with
 * rolayer_tar_stream_read(), free it with rolayer_tar_stream_free(). A read fails with
 *  - ROLAYER_ECORRUPT naming the layer and, in rolayer_error_path(), the entry path, when a file
 *    is missing ("missing file"), has another size ("size differs") or other content ("content
 *    differs", the CRC-64); no byte of a bad file up to 1 MiB is returned, of a longer one
 *    the last chunk is held back;
 *  - ROLAYER_ECORRUPT naming the layer when the tar-split record is damaged;
 *  - ROLAYER_EDIGEST at the end when the stream does not match the DiffID ("could not verify
 *    layer data for: <diffID>"); rolayer_error_diff_id() gives the DiffID.
 * Opening checks that parent + diff give the ChainID (ROLAYER_ECORRUPT: `diff` or `parent` was
 * changed) and that the driver's directory and the record exist.
 */
ROLAYER_API int rolayer_docker_stream_open(rolayer_tar_stream **out, rolayer_docker_root *root,
                                           const char *chain_id, rolayer_error **err);

/*
 * Read the layer's whole verified stream and discard it: ROLAYER_OK when it is intact, else the
 * first damage as rolayer_docker_stream_open()'s reads report it (the path in
 * rolayer_error_path(), what differs in the message). out_stream_size (may be NULL) gets the
 * stream's length on success.
 */
ROLAYER_API int rolayer_docker_verify(int64_t *out_stream_size, rolayer_docker_root *root,
                                      const char *chain_id, rolayer_error **err);

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_DOCKER_H */
