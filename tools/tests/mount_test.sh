#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Tests of overlay-ready layers and `rolayer mount` (issue 15), one scenario per ctest test.
#
# usage: mount_test.sh ROLAYER TEST
# Exit 0: passed; 77: skipped with the reason (not root, no overlayfs, no dockerd); else failed.
set -euo pipefail

ROLAYER=$1
TEST=$2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TREE="python3 $HERE/mount_tree.py"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rolayer-mount-$TEST.XXXXXX")
MOUNTS=()
cleanup() {
  local rc=$?
  for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
STORE=$WORK/store
export HOME=$WORK/home
unset ROLAYER_ROOT XDG_DATA_HOME ROLAYER_DRIVER
mkdir -p "$HOME"

fail() { echo "FAIL [$TEST]: $*" >&2; exit 1; }
skip() { echo "SKIP [$TEST]: $*" >&2; exit 77; }
note() { echo "--- $*" >&2; }
R() { "$ROLAYER" --store "$STORE" -q "$@"; }

need_overlay() {
  [ "$(id -u)" = 0 ] || skip "mounting overlayfs needs root (CI runs as root)"
  grep -qw overlay /proc/filesystems 2>/dev/null || modprobe overlay 2>/dev/null || true
  grep -qw overlay /proc/filesystems || skip "the kernel has no overlay file system"
  mkdir -p "$WORK/probe/l1" "$WORK/probe/l2" "$WORK/probe/m"
  mount -t overlay overlay -o "lowerdir=$WORK/probe/l1:$WORK/probe/l2" "$WORK/probe/m" 2>"$WORK/probe.err" ||
    skip "cannot mount overlayfs here: $(cat "$WORK/probe.err")"
  umount "$WORK/probe/m"
}

register_fixtures() {
  $TREE fixtures "$WORK/fx" "${1:-}"
  C1=$(R register "$WORK/fx/l1.tar")
  C2=$(R register --parent "$C1" "$WORK/fx/l2.tar")
  C3=$(R register --parent "$C2" "$WORK/fx/l3.tar")
}

# Registers the 125-layer chain of mount_tree.py (one tiny file and one deletion per layer) in
# $WORK/ch and prints its top ChainID.
register_deep_chain() {
  $TREE chain "$WORK/ch" 125
  local p="" c i
  for i in $(seq -f %03g 1 125); do
    if [ -z "$p" ]; then c=$(R register "$WORK/ch/c$i.tar"); else c=$(R register --parent "$p" "$WORK/ch/c$i.tar"); fi
    p=$c
  done
  echo "$c"
}

# Export of every layer is still byte-exact, and the diffs never show a whiteout object.
t_export_exact() {
  register_fixtures
  local i=1
  for c in "$C1" "$C2" "$C3"; do
    R export "$c" -o "$WORK/e$i.tar"
    cmp "$WORK/fx/l$i.tar" "$WORK/e$i.tar" || fail "export of layer $i differs from its tar"
    i=$((i + 1))
  done
  R verify >/dev/null || fail "verify failed"
  # The layer directories are overlay-ready: a whiteout object and an opaque attribute exist.
  local d2
  d2=$(R mount --lower-dirs "$C2" | head -1)
  [ -e "$d2/a/f1" ] || [ -L "$d2/a/f1" ] || fail "no whiteout object for a/f1 in $d2"
  if [ "$(id -u)" = 0 ]; then
    [ -c "$d2/a/f1" ] || fail "a/f1 is not a 0/0 character device as root"
    [ "$(getfattr --only-values -n trusted.overlay.opaque "$d2/d2" 2>/dev/null || python3 -c "import os;print(os.getxattr('$d2/d2','trusted.overlay.opaque').decode(),end='')")" = y ] ||
      fail "d2 is not marked opaque"
  fi
  # The flattened chain (diff with no ancestor) shows no whiteout object, and the escaped
  # attributes and the 0/0 device come back as they were.
  R diff "$C3" -o "$WORK/flat.tar"
  python3 - "$WORK/flat.tar" "$HERE" <<'PY' || fail "flattened diff is wrong"
import sys, tarfile
t = tarfile.open(sys.argv[1])
names = {m.name.rstrip('/'): m for m in t}
assert 'a/f1' not in names and 'gone/g1' not in names and 'keep/k1' not in names, sorted(names)
assert 'a/new' not in names and 'a/h3' not in names, "l3 deleted a/ and re-created it"
assert names['a/g'].isfile() and names['keep/k2'].isfile() and names['gone/back'].isfile()
sys.path.insert(0, sys.argv[2])
import mount_tree
mount_tree.skip_xattr = lambda k: False
assert mount_tree.pax_xattrs(names['x']) == {'user.foo': b'bar'}
z = names['dev/zero00']
assert z.ischr() and z.devmajor == 0 and z.devminor == 0, "0/0 device not given back"
x = mount_tree.pax_xattrs(names['esc'])
assert x == {'user.rolayer-esc-chr00': b'mine', 'user.rolayer-esc.x': b'y'}, x
print("flattened diff ok:", len(names), "entries")
PY
  # An ancestor diff gives the deletions back as whiteout entries (records, not objects).
  R diff "$C2" --from "$C1" -o "$WORK/d21.tar"
  tar -tf "$WORK/d21.tar" >"$WORK/d21.list" 2>/dev/null
  grep -qx 'a/.wh.f1' "$WORK/d21.list" || fail "the diff against the parent lost a whiteout"
  grep -qx 'keep/.wh.k1' "$WORK/d21.list" || fail "the diff against the parent lost a whiteout"
  grep -qx '.wh.gone' "$WORK/d21.list" || fail "the diff against the parent lost a whiteout"
  grep -qx 'd2/.wh..wh..opq' "$WORK/d21.list" || fail "the diff against the parent lost an opaque marker"
  grep -qx 'a/new' "$WORK/d21.list" || fail "the diff against the parent lost a/new"
  python3 - "$WORK/d21.tar" "$HERE" <<'PY' || fail "an overlay-named attribute of the layer was not reproduced"
import sys, tarfile
sys.path.insert(0, sys.argv[2])
import mount_tree
mount_tree.skip_xattr = lambda k: False
t = tarfile.open(sys.argv[1])
xs = mount_tree.pax_xattrs(t.getmember('a/new'))  # the registered stream: a/h3 links to it
assert xs == {'trusted.overlay.opaque': b'y', 'user.overlay.whiteout': b'y'}, xs
xs = mount_tree.pax_xattrs(t.getmember('esc'))
assert xs == {'user.rolayer-esc-chr00': b'mine', 'user.rolayer-esc.x': b'y'}, xs
PY
}

# The mounted tree equals the tree that extracting the flattened chain gives.
t_tree_equal() {
  need_overlay
  register_fixtures
  R diff "$C3" -o "$WORK/flat.tar"
  mkdir -p "$WORK/mnt"
  R mount "$C3" "$WORK/mnt"
  MOUNTS+=("$WORK/mnt")
  $TREE compare "$WORK/flat.tar" "$WORK/mnt" --layers "$WORK/fx/l1.tar" "$WORK/fx/l2.tar" "$WORK/fx/l3.tar" ||
    fail "mounted tree differs from the flattened chain"
  local layers=("$WORK/fx/l1.tar") i=0
  for c in "$C1" "$C2"; do
    i=$((i + 1))
    mkdir -p "$WORK/m$i"
    R diff "$c" -o "$WORK/flat$i.tar"
    R mount "$c" "$WORK/m$i"
    MOUNTS+=("$WORK/m$i")
    $TREE compare "$WORK/flat$i.tar" "$WORK/m$i" --layers "${layers[@]}" || fail "mounted tree of $c differs"
    R umount "$WORK/m$i"
    layers+=("$WORK/fx/l$((i + 1)).tar")
  done
  touch "$WORK/mnt/new" 2>/dev/null && fail "the mount is writable"
  R umount "$WORK/mnt"
  grep -q " $WORK/mnt " /proc/self/mountinfo && fail "still mounted after umount"
  R rm "$C3" >/dev/null
}

# A mounted layer cannot be removed from another process; a mount that is gone is reported
# and its hold dropped at the next open.
t_hold() {
  need_overlay
  register_fixtures
  mkdir -p "$WORK/mnt"
  R mount "$C3" "$WORK/mnt"
  MOUNTS+=("$WORK/mnt")
  local rc=0
  R rm "$C3" >"$WORK/out" 2>"$WORK/err" || rc=$?
  [ "$rc" = 5 ] || fail "rm of a mounted layer exited $rc: $(cat "$WORK/err")"
  grep -q "mounted at $WORK/mnt" "$WORK/err" || fail "rm did not name the mount: $(cat "$WORK/err")"
  R ls | grep -q "${C3#sha256:}" || R ls --json | grep -q "${C3#sha256:}" || fail "the layer went"
  rc=0
  R mount "$C2" "$WORK/mnt" 2>"$WORK/err" || rc=$?
  [ "$rc" = 5 ] || fail "a second mount on the same target exited $rc"
  # The mount outlives its process (each `rolayer` above has exited): it stays held. Now it
  # disappears behind the store's back (as after a reboot): the next open reports it.
  umount "$WORK/mnt"
  R rm "$C3" >"$WORK/out" 2>"$WORK/err" || fail "rm after the mount went failed: $(cat "$WORK/err")"
  grep -q "recorded mount at $WORK/mnt is gone" "$WORK/err" || fail "the gone mount was not reported: $(cat "$WORK/err")"
  grep -q "removed" "$WORK/out" || fail "the layer was not removed once its mount was gone"
}

# The mounting process killed before or after the mount itself: the next open reports a record
# whose mount never happened (and drops its hold), and keeps one whose mount exists.
t_killed() {
  need_overlay
  register_fixtures
  mkdir -p "$WORK/mnt"
  local rc=0
  ROLAYER_FAULT_KILL=mount.recorded R mount "$C3" "$WORK/mnt" 2>/dev/null || rc=$?
  [ "$rc" = 137 ] || { [ "$rc" = 0 ] && umount "$WORK/mnt"; skip "the library was built without -DROLAYER_FAULT_HOOKS=ON (exit $rc)"; }
  grep -q " $WORK/mnt " /proc/self/mountinfo && fail "mounted although killed before the mount"
  R rm "$C3" >"$WORK/out" 2>"$WORK/err" || fail "rm after a killed mount failed: $(cat "$WORK/err")"
  grep -q "recorded mount at $WORK/mnt is gone" "$WORK/err" || fail "not reported: $(cat "$WORK/err")"
  grep -q removed "$WORK/out" || fail "the hold of the killed mount was not dropped"
  register_fixtures
  rc=0
  ROLAYER_FAULT_KILL=mount.mounted R mount "$C3" "$WORK/mnt" 2>/dev/null || rc=$?
  [ "$rc" = 137 ] || fail "not killed after the mount (exit $rc)"
  MOUNTS+=("$WORK/mnt")
  grep -q " $WORK/mnt " /proc/self/mountinfo || fail "the mount did not survive its process"
  rc=0
  R rm "$C3" >"$WORK/out" 2>"$WORK/err" || rc=$?
  [ "$rc" = 5 ] || fail "rm of a layer mounted by a killed process exited $rc: $(cat "$WORK/err")"
  R umount "$WORK/mnt" || fail "umount of a mount left by a killed process failed"
  R rm "$C3" | grep -q removed || fail "not removed after the umount"
}

# A 125-layer chain mounts (lowerdir+ has no option-length limit); mount + umount timing.
t_deep_chain() {
  need_overlay
  local c
  c=$(register_deep_chain)
  [ "$(R mount --lower-dirs "$c" | wc -l)" = 125 ] || fail "not 125 lower dirs"
  R mount --lower-dirs --json "$c" | python3 -c "import json,sys; j=json.load(sys.stdin); assert len(j['lower_dirs'])==125"
  mkdir -p "$WORK/mnt"
  local t0 t1
  t0=$(date +%s%N)
  R mount "$c" "$WORK/mnt"
  MOUNTS+=("$WORK/mnt")
  t1=$(date +%s%N)
  [ -f "$WORK/mnt/f125" ] || fail "top file missing"
  [ ! -e "$WORK/mnt/f124" ] || fail "a deleted file shows"
  [ "$(ls "$WORK/mnt/all" | wc -l)" = 125 ] || fail "merged directory incomplete"
  local t2 t3
  t2=$(date +%s%N)
  R umount "$WORK/mnt"
  t3=$(date +%s%N)
  echo "125-layer chain: rolayer mount $(((t1 - t0) / 1000000)) ms, rolayer umount $(((t3 - t2) / 1000000)) ms (whole CLI runs)"
  R diff "$c" -o "$WORK/flat.tar"
  R mount "$c" "$WORK/mnt"
  MOUNTS+=("$WORK/mnt")
  $TREE compare "$WORK/flat.tar" "$WORK/mnt" --layers "$WORK"/ch/c*.tar || fail "deep chain tree differs"
  R umount "$WORK/mnt"
}

# The mount(2) fallback for kernels without fsopen or lowerdir+ (forced by a fault hook): the
# 125-layer chain fits in one page of options as /proc/self/fd paths, and mounts the same tree.
t_legacy() {
  need_overlay
  local c
  c=$(register_deep_chain)
  mkdir -p "$WORK/mnt"
  ROLAYER_FAULT_ERRNO=mount.fsopen=38 R mount "$c" "$WORK/mnt"
  MOUNTS+=("$WORK/mnt")
  local line
  line=$(grep " $WORK/mnt " /proc/self/mountinfo) || fail "not mounted"
  case "$line" in
    *lowerdir+=*) R umount "$WORK/mnt"; skip "the library was built without -DROLAYER_FAULT_HOOKS=ON (the new mount API was used)" ;;
  esac
  R diff "$c" -o "$WORK/flat.tar"
  $TREE compare "$WORK/flat.tar" "$WORK/mnt" --layers "$WORK"/ch/c*.tar || fail "tree mounted by mount(2) differs"
  R rm "$c" >/dev/null 2>&1 && fail "rm of a layer mounted by mount(2) succeeded"
  R umount "$WORK/mnt" || fail "umount of a mount(2) mount failed"
  grep -q " $WORK/mnt " /proc/self/mountinfo && fail "still mounted after umount"
  R rm "$c" | grep -q removed || fail "not removed after the umount"
}

# A store of layout version 1 (deletions recorded only in meta/, layer attributes and 0/0
# devices stored as they are) is migrated when it is opened, and exports stay byte-exact.
t_migrate() {
  [ "$(id -u)" = 0 ] || skip "the fixtures hold a device node and set-uid files: root only"
  register_fixtures
  R diff "$C3" -o "$WORK/before.tar"
  $TREE downgrade "$STORE"
  [ ! -e "$STORE/dir/.format" ] || fail "downgrade left the format file"
  local d2
  d2=$(find "$STORE/dir" -path '*/diff/dev/zero00')
  [ -c "$d2" ] || fail "downgrade did not restore the real 0/0 device"
  R ls >/dev/null  # the open migrates
  [ -f "$STORE/dir/.format" ] || fail "no format file after the migration"
  [ "$(find "$STORE/dir" -path '*/meta/overlay' | wc -l)" = 3 ] || fail "not every layer was migrated"
  [ -f "$d2" ] || fail "the 0/0 device was not escaped"
  local i=1
  for c in "$C1" "$C2" "$C3"; do
    R export "$c" -o "$WORK/e$i.tar"
    cmp "$WORK/fx/l$i.tar" "$WORK/e$i.tar" || fail "export of layer $i differs after the migration"
    i=$((i + 1))
  done
  R diff "$C3" -o "$WORK/after.tar"
  # (the same entries, metadata and contents; attributes may be listed in another order)
  python3 - "$WORK/before.tar" "$WORK/after.tar" "$HERE" <<'PY' || fail "the flattened diff changed with the migration"
import sys
sys.path.insert(0, sys.argv[3])
import mount_tree
mount_tree.skip_xattr = lambda k: False
a, b = mount_tree.tar_tree(sys.argv[1]), mount_tree.tar_tree(sys.argv[2])
for k in sorted(set(a[0]) | set(b[0])):
    if a[0].get(k) != b[0].get(k):
        print("differs:", k, a[0].get(k), b[0].get(k))
assert a == b
PY
  if grep -qw overlay /proc/filesystems; then
    mkdir -p "$WORK/mnt"
    R mount "$C3" "$WORK/mnt"
    MOUNTS+=("$WORK/mnt")
    $TREE compare "$WORK/after.tar" "$WORK/mnt" --layers "$WORK/fx/l1.tar" "$WORK/fx/l2.tar" "$WORK/fx/l3.tar" ||
      fail "the migrated chain mounts differently"
    R umount "$WORK/mnt"
  fi
  # A newer layout is refused, naming the file.
  printf 'rolayer-dir-format\0009\000' >"$STORE/dir/.format"
  local rc=0
  R ls >/dev/null 2>"$WORK/err" || rc=$?
  [ "$rc" != 0 ] || fail "a newer layout was not refused"
  grep -q "format: version 9" "$WORK/err" || fail "the refusal does not name the file: $(cat "$WORK/err")"
}

# A real engine as the reference: Debian's dockerd (overlay2) loads an image of the same layers;
# `docker create` + `docker export` gives the flattened root file system, which must equal the
# mounted tree (less the init layer's files). The fixtures leave out what only this store keeps
# (a 0/0 device and overlay-named attributes: overlay2 would turn them into whiteout markers),
# and attributes are not compared (docker export keeps only security.capability).
t_docker() {
  need_overlay
  command -v dockerd >/dev/null && command -v docker >/dev/null || skip "dockerd is not installed (Debian package docker.io)"
  register_fixtures nodev00
  local D=$WORK/docker
  mkdir -p "$D/root" "$D/exec"
  $TREE docker-save "$WORK/image.tar" rolayer-fixture:1 "$WORK/fx/l1.tar" "$WORK/fx/l2.tar" "$WORK/fx/l3.tar"
  dockerd --data-root "$D/root" --exec-root "$D/exec" --host "unix://$D/sock" --pidfile "$D/pid" \
    --iptables=false --ip6tables=false --bridge=none --ip-masq=false --storage-driver overlay2 \
    >"$D/log" 2>&1 &
  local dpid=$!
  stop_dockerd() {
    kill "$dpid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$dpid" 2>/dev/null || true
    umount -l "$D/root/overlay2" 2>/dev/null || true
  }
  local ok=0
  for _ in $(seq 100); do
    if docker -H "unix://$D/sock" version >/dev/null 2>&1; then ok=1; break; fi
    kill -0 "$dpid" 2>/dev/null || break
    sleep 0.2
  done
  if [ "$ok" != 1 ]; then
    stop_dockerd
    skip "dockerd did not start: $(tail -3 "$D/log" | tr '\n' ' ')"
  fi
  local rc=0
  {
    docker -H "unix://$D/sock" load -i "$WORK/image.tar" >/dev/null &&
      docker -H "unix://$D/sock" create --name fx rolayer-fixture:1 >/dev/null &&
      docker -H "unix://$D/sock" export fx -o "$WORK/docker.tar" &&
      docker -H "unix://$D/sock" rm fx >/dev/null
  } 2>"$WORK/docker.err" || rc=$?
  stop_dockerd
  [ "$rc" = 0 ] || fail "docker load/create/export failed: $(cat "$WORK/docker.err")"
  mkdir -p "$WORK/mnt"
  R mount "$C3" "$WORK/mnt"
  MOUNTS+=("$WORK/mnt")
  $TREE compare "$WORK/docker.tar" "$WORK/mnt" .dockerenv etc proc sys dev/console dev/pts dev/shm \
    --exact=dev --no-xattrs --layers "$WORK/fx/l1.tar" "$WORK/fx/l2.tar" "$WORK/fx/l3.tar" ||
    fail "the mounted tree differs from docker's flattened root file system"
  R umount "$WORK/mnt"
}

# Rootless: a store written by an unprivileged user has user.overlay.* markers; its chain mounts
# with userxattr inside a user namespace, and outside one the mount is refused clearly.
t_rootless() {
  need_overlay
  command -v setpriv >/dev/null && command -v unshare >/dev/null || skip "setpriv/unshare (util-linux) missing"
  local U="setpriv --reuid=65534 --regid=65534 --clear-groups"
  chmod 755 "$WORK"
  mkdir -m 777 "$WORK/u" "$WORK/u/mnt"
  $TREE rootless-fixtures "$WORK/u/fx"
  chmod -R a+rX "$WORK/u/fx"
  $U unshare -Urm true 2>/dev/null || skip "unprivileged user namespaces are not allowed here"
  local UR="$U $ROLAYER --store $WORK/u/store -q"
  local c1 c2
  c1=$($UR register "$WORK/u/fx/u1.tar") || fail "unprivileged register"
  c2=$($UR register --parent "$c1" "$WORK/u/fx/u2.tar") || fail "unprivileged register"
  $UR mount --lower-dirs --json "$c2" | python3 -c "import json,sys; assert json.load(sys.stdin)['userxattr']" ||
    fail "an unprivileged store's chain does not ask for userxattr"
  $UR diff "$c2" -o "$WORK/u/flat.tar"
  $TREE names "$WORK/u/flat.tar" >"$WORK/u/want"
  $U unshare -Urm sh -c "$ROLAYER --store $WORK/u/store -q mount $c2 $WORK/u/mnt &&
      (cd $WORK/u/mnt && find . -mindepth 1 | sed 's|^./||' | sort) >$WORK/u/got &&
      $ROLAYER --store $WORK/u/store -q umount $WORK/u/mnt" || fail "mount in a user namespace failed"
  diff "$WORK/u/want" "$WORK/u/got" || fail "the rootless mount differs from the flattened chain"
  local rc=0
  $UR mount "$c2" "$WORK/u/mnt" 2>"$WORK/err" || rc=$?
  [ "$rc" != 0 ] || fail "mounted without privileges"
  grep -q "CAP_SYS_ADMIN" "$WORK/err" || fail "unclear refusal: $(cat "$WORK/err")"
}

"t_$TEST"
echo "PASS [$TEST]"
