/* SPDX-License-Identifier: Apache-2.0 */
// Overlay-ready layer directories of the "dir" driver (issue 15).
//
// A layer's diff/ serves directly as an overlayfs lower directory:
//   - a deletion of a lower path with nothing of this layer at that path is a whiteout object:
//     a 0/0 character device ("trusted" form: the store is real root, in the initial user
//     namespace), else an empty regular file with user.overlay.whiteout=y whose parent
//     directory carries user.overlay.opaque=x ("user" form: mounts with `userxattr`);
//   - an opaque directory (".wh..wh..opq", or a directory that replaced a deleted path) has
//     <ns>.overlay.opaque=y (<ns> = trusted or user by the form).
// The records in meta/whiteouts and meta/opaque stay the source of truth for diffs and
// exports; the objects above are derived from them, and readers skip them:
//   - a whiteout object is only ever at a path listed in meta/whiteouts (is_whiteout_object);
//   - a layer's own extended attributes named like overlay's are stored escaped
//     (dirfs::escape_xattr_name), so no layer attribute is ever read by overlayfs;
//   - a layer's own 0/0 character device is stored as an empty regular file carrying
//     kChr00Xattr (so overlayfs never takes it for a whiteout); diffs give it back as the
//     character device it was. In a mount it shows as that empty file.
// meta/overlay (magic, then "trusted" or "user") says a layer has these objects and their
// form; a layer without it was written by an older version (see migrate_layer).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "drivers/dir/dir_internal.h"

namespace rolayer::dirdrv {

enum class OverlayForm { Trusted, User };

inline constexpr const char* kOverlayFile = "overlay";
inline constexpr std::string_view kOverlayMagic = "rolayer-dir-overlay-1";
// On an empty regular file: it stands for a 0/0 character device of the layer.
inline constexpr const char* kChr00Xattr = "user.rolayer-esc-chr00";
// <root>/dir/.format: the on-disk layout of the whole driver directory.
inline constexpr const char* kFormatFile = ".format";
inline constexpr std::string_view kFormatMagic = "rolayer-dir-format";
inline constexpr int kFormatVersion = 2;  // 1 (no file): deletions only in meta/; 2: overlay-ready

// The form this process writes: Trusted when it is root in the initial user namespace.
OverlayForm current_form();
const char* form_name(OverlayForm f);

// True when `name` below dirfd is a whiteout object written by the driver (a 0/0 character
// device, or an empty regular file with <ns>.overlay.whiteout). Callers only ask about names
// recorded in the layer's whiteouts.
bool is_whiteout_object(int dirfd, const std::string& name);
// True when the regular file `fd` stands for a 0/0 character device of the layer.
bool is_chr00_placeholder(int fd);

// Creates the whiteout objects and opaque attributes of `layer` from its records (cuts) in
// diff/, keeping the parent directories' times. Idempotent. Does not write meta/overlay.
void materialize_overlay(const LayerPaths& layer, const LayerCuts& cuts, OverlayForm form);
// Writes meta/overlay (atomic).
void write_overlay_marker(int meta_fd, const LayerPaths& layer, OverlayForm form);
// The form recorded in meta/overlay; nullopt for a layer of the old layout.
std::optional<OverlayForm> read_overlay_marker(const LayerPaths& layer);

// Brings an applied layer of the old layout to the overlay-ready one: materialize, syncfs,
// then meta/overlay. Crash-safe: repeating it after an interruption is harmless.
void migrate_layer(const LayerPaths& layer);

}  // namespace rolayer::dirdrv
