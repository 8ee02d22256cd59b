#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# rolayer docker verify/import on the committed fixture (tests/docker/fixture-vfs, written by
# dockerd 20.10), without a daemon: output formats, exit codes, damaged metadata, the store.
# usage: fixture_cli_test.sh ROLAYER_BINARY
set -u
rolayer=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/rolayer-dfix-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}
base=sha256:b1162fda67a9705057b015ca3aa2c7321b0ffcf47ae8742153cd3f2272a975f7
top=sha256:3a073f3d534f5cf51952ef675d12f55dd4c9846525dc296bc30177bd8c03631c
cp -a "$here/fixture-vfs" "$work/root"
root=$work/root
V() { "$rolayer" --quiet docker verify --data-root "$root" "$@"; }

out=$(V) || fail "verify of the intact fixture: $out"
[ "$(echo "$out" | grep -c '  ok$')" = 2 ] || fail "two ok lines expected: $out"
[ "$(echo "$out" | head -1)" = "$base  ok" ] || fail "parents first: $out"
V --json -j 1 | python3 -c 'import json,sys; r=json.load(sys.stdin); assert [x["ok"] for x in r]==[True,True], r' ||
  fail "--json"
out=$(V 3a073f) || fail "verify by prefix"
[ "$out" = "$top  ok" ] || fail "a ChainID prefix names that layer only: $out"
[ "$(V fixture:2layers | wc -l)" = 2 ] || fail "an image name names its chain"
V nosuch:tag >/dev/null 2>&1
[ $? = 3 ] || fail "an unknown image: exit 3"
"$rolayer" docker verify --data-root "$work/none" >/dev/null 2>&1
[ $? = 3 ] || fail "no data root: exit 3"
mkdir -p "$work/zfs/image/zfs/layerdb/sha256"
msg=$("$rolayer" docker verify --data-root "$work/zfs" 2>&1)
[ $? = 1 ] || fail "another driver: exit 1"
echo "$msg" | grep -q "unsupported driver: zfs" || fail "unsupported driver message: $msg"
"$rolayer" docker verify -j 0 --data-root "$root" >/dev/null 2>&1
[ $? = 2 ] || fail "-j 0 is a usage error"

# Import into a store; again (one reference); export equals the layer the engine keeps.
s=$work/store
t=$("$rolayer" --quiet --store "$s" docker import --data-root "$root" fixture:2layers) || fail "import"
[ "$t" = "$top" ] || fail "import gave $t"
"$rolayer" --quiet --store "$s" docker import --data-root "$root" "$top" >/dev/null || fail "import by ChainID"
"$rolayer" --quiet --store "$s" export "$top" | sha256sum | grep -q '^1e92951b88c83031f52e5273ebb8041940c79517180d3116b12e88fcec515236 ' ||
  fail "export of the imported top layer"
"$rolayer" --quiet --store "$s" ls --json | python3 -c 'import json,sys; r=json.load(sys.stdin); assert sum(x["retained"] for x in r)==1, r' ||
  fail "one reference after two imports"

# Damaged metadata: a missing diff is listed and reported, not skipped.
rm "$root/image/vfs/layerdb/sha256/${base:7}/diff"
out=$(V)
rc=$?
[ $rc = 4 ] || fail "a layer without diff: exit $rc, not 4: $out"
echo "$out" | grep -q "^$base  DAMAGED.*diff is missing" || fail "the layer without diff is not named: $out"
# A changed byte: DAMAGED with the path; import refuses and leaves nothing.
cp -a "$here/fixture-vfs/." "$root/"
cache=$(cat "$root/image/vfs/layerdb/sha256/${top:7}/cache-id")
printf 'chanGed\n' >"$root/vfs/dir/$cache/etc/hello"
out=$(V "$top")
[ $? = 4 ] || fail "a changed byte: exit 4"
echo "$out" | grep -q "^$top  DAMAGED  path etc/hello: .*content differs" || fail "changed byte: $out"
s2=$work/store2
"$rolayer" --quiet --store "$s2" docker import --data-root "$root" fixture:2layers >/dev/null 2>"$work/err"
[ $? = 4 ] || fail "import of a damaged layer: exit 4"
grep -q "etc/hello" "$work/err" || fail "import error does not name the path: $(cat "$work/err")"
[ "$("$rolayer" --quiet --store "$s2" ls --json)" = "[]" ] || fail "a failed import left layers behind"
echo PASS
