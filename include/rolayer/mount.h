/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rolayer/mount.h: a layer's flattened chain as a read-only root file system (overlayfs).
 *
 * Only stores of the "dir" driver can be mounted: each layer's directory is an overlayfs lower
 * layer (whiteouts and opaque directories in overlay's form). Everything else gives
 * ROLAYER_EUNSUPPORTED. See docs/mount.md for what works unprivileged.
 *
 * A mount is held: rolayer_mount records the mount (target, chain) in the store, so that every
 * process sees it, and pins the chain: while the mount is recorded no release, unretain or gc
 * of any process deletes the chain. The pin is not a persistent reference (the count of
 * rolayer_store_retained does not include it); a layer unretained while mounted goes when it
 * is unmounted. rolayer_umount drops the record and the pin. A mount outlives the process that
 * made it; a recorded mount whose target is no longer that overlay mount is found by
 * rolayer_mount_reconcile, which drops its hold. Mounts are checked in the caller's mount namespace (/proc/self/mountinfo).
 *
 * Threads: every function may be called from any thread; calls on one store are serialized
 * by the store as for its other operations.
 */
#ifndef ROLAYER_MOUNT_H
#define ROLAYER_MOUNT_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Mount flags (rolayer_mount). The mount is always read-only. */
#define ROLAYER_MOUNT_NOSUID 1u
#define ROLAYER_MOUNT_NODEV 2u
#define ROLAYER_MOUNT_NOEXEC 4u

/*
 * The overlay lower directories of chain_id's flattened chain, topmost first (absolute paths),
 * for a caller that mounts itself: "lowerdir+" once per entry, in order. A single layer comes
 * with an empty directory after it (overlayfs needs two lower layers without an upper one).
 * *out_userxattr (may be NULL) is set to 1 when the mount must use the "userxattr" option
 * (layers written unprivileged), else 0.
 * Caller frees *out with rolayer_string_list_free().
 * Errors: ROLAYER_ENOTFOUND (no such layer), ROLAYER_EINVAL (malformed ChainID),
 * ROLAYER_EUNSUPPORTED (driver is not "dir"; a chain mixing root-written and unprivileged
 * layers), ROLAYER_ECORRUPT (damaged storage).
 */
ROLAYER_API int rolayer_mount_lower_dirs(rolayer_string_list **out, rolayer_store *store,
                                         const char *chain_id, int *out_userxattr,
                                         rolayer_error **err);

/*
 * Mount chain_id's flattened chain read-only at target (an existing directory) and hold it.
 * Uses fsopen/fsconfig("lowerdir+")/fsmount/move_mount where the kernel has them (any depth up
 * to the 125-layer cap), else mount(2) with short /proc/self/fd paths.
 * Errors: those of rolayer_mount_lower_dirs; ROLAYER_EBUSY (target already holds a mount of
 * this store); ROLAYER_EIO with rolayer_error_errno (EPERM without CAP_SYS_ADMIN in the mount
 * namespace's user namespace, ENOENT/ENOTDIR target); ROLAYER_EUNSUPPORTED (no overlayfs).
 */
ROLAYER_API int rolayer_mount(rolayer_store *store, const char *chain_id, const char *target,
                              unsigned flags, rolayer_error **err);

/*
 * Unmount a mount made by rolayer_mount at target and drop its hold (the layer is deleted when
 * that was its last reference). When the mount is already gone (unmounted by other means), only
 * the record and the hold are dropped. Errors: ROLAYER_ENOTFOUND (no mount of this store at
 * target), ROLAYER_EBUSY (the mount is in use), ROLAYER_EIO.
 */
ROLAYER_API int rolayer_umount(rolayer_store *store, const char *target, rolayer_error **err);

/*
 * The recorded mounts of the store: out_targets[i] is mounted from out_chain_ids[i]. With
 * chain_id non-NULL, only that chain's. Either output may be NULL; the caller frees each with
 * rolayer_string_list_free().
 */
ROLAYER_API int rolayer_mount_list(rolayer_string_list **out_targets, rolayer_string_list **out_chain_ids,
                                   rolayer_store *store, const char *chain_id, rolayer_error **err);

/*
 * Finds recorded mounts that are gone (the target is no longer that overlay mount: unmounted
 * by other means, or after a reboot) and drops their records and holds. A mount left by a
 * process that was killed is still mounted, so it stays recorded and held until rolayer_umount.
 * *out_dropped (may be NULL): the targets whose hold was dropped.
 */
ROLAYER_API int rolayer_mount_reconcile(rolayer_string_list **out_dropped, rolayer_store *store,
                                        rolayer_error **err);

#ifdef __cplusplus
}
#endif
#endif /* ROLAYER_MOUNT_H */
