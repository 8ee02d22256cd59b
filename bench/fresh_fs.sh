# SPDX-License-Identifier: Apache-2.0
# Sourced by bench/engine.sh and bench/image.sh: fresh file systems for measured writes.
# ext4 skips recently deleted inodes when it allocates new ones, so a store made right after
# `rm -rf` of the previous one pays for that removal (bench/RESULTS.md, session 5): every
# measured import gets a file system that has seen no deletion.
#
# fresh_fs MNT IMGDIR LOGDIR: MNT empty on a new ext4 (a sparse 8 GiB file IMGDIR/<name>.img,
# mkfs.ext4 -i 8192, loop-mounted; an earlier one at MNT is unmounted first). Returns 1 with
# the reason on stderr. The caller calls fresh_fs_cleanup IMGDIR on exit.
# With FRESH_FS_MODE=dir: MNT is only made an empty directory again.
FRESH_FS_MODE=${FRESH_FS_MODE:-loop}
fresh_fs_mounted=()
fresh_fs() {
  local mnt=$1 img="$2/$(basename "$1").img" logdir=$3 i
  if [ "$FRESH_FS_MODE" = dir ]; then rm -rf "$mnt"; mkdir -p "$mnt"; return 0; fi
  for i in "${!fresh_fs_mounted[@]}"; do
    if [ "${fresh_fs_mounted[$i]}" = "$mnt" ]; then umount "$mnt" || return 1; unset "fresh_fs_mounted[$i]"; fi
  done
  fresh_fs_mounted=("${fresh_fs_mounted[@]}")
  mkdir -p "$mnt"
  rm -f "$img"
  command -v mkfs.ext4 >/dev/null || { echo "mkfs.ext4 is not installed" >&2; return 1; }
  truncate -s 8G "$img" || return 1
  mkfs.ext4 -q -F -i 8192 -E lazy_itable_init=0,lazy_journal_init=0 "$img" >"$logdir/mkfs.log" 2>&1 ||
    { cat "$logdir/mkfs.log" >&2; rm -f "$img"; return 1; }
  mount -o loop "$img" "$mnt" 2>"$logdir/mount.log" || { cat "$logdir/mount.log" >&2; rm -f "$img"; return 1; }
  fresh_fs_mounted+=("$mnt")
}
# fresh_fs_cleanup IMGDIR: unmounts what fresh_fs mounted and removes its image files.
fresh_fs_cleanup() {
  local m
  for m in "${fresh_fs_mounted[@]}"; do umount "$m" && rm -f "$1/$(basename "$m").img"; done
  fresh_fs_mounted=()
}
