#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Tests of the rolayer command-line tool, one scenario per ctest test.
#
# usage: cli_test.sh ROLAYER HOLD_STORE DRIVER TEST
#   ROLAYER     the rolayer binary
#   HOLD_STORE  the hold_store helper (tools/tests/hold_store.c)
#   DRIVER      dir or exact: the store driver these tests use
#   TEST        the scenario (a function below, without the t_ prefix)
# Exit 0: passed; 77: skipped (a needed outside tool is missing; the message says which);
# anything else: failed.
#
# Outside tools: python3 (JSON, hand-made archives) is required; umoci and skopeo (Debian
# packages) are used where present and their tests skip without them.
set -euo pipefail

ROLAYER=$1
HOLD=$2
DRIVER=$3
TEST=$4
TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO_IMAGE=$TOOLS_DIR/testdata/demo-image
# shellcheck source=tools/tests/rss_lib.sh
. "$TOOLS_DIR/tests/rss_lib.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rolayer-cli-$TEST.XXXXXX")
cleanup() {
  local rc=$?
  # Background helpers started by a test.
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  chmod -R u+w "$WORK" 2>/dev/null || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
STORE=$WORK/store
# Keep the tests away from the real default store.
export HOME=$WORK/home
unset ROLAYER_ROOT XDG_DATA_HOME ROLAYER_DRIVER
mkdir -p "$HOME"

fail() { echo "FAIL [$TEST/$DRIVER]: $*" >&2; exit 1; }
skip() { echo "SKIP [$TEST/$DRIVER]: $*" >&2; exit 77; }
note() { echo "--- $*" >&2; }

# R ARGS...: rolayer on the test store, quiet.
R() { "$ROLAYER" --store "$STORE" --driver "$DRIVER" "$@"; }

# expect_code N CMD...: runs CMD, which must exit with N; its stdout goes to $WORK/out, stderr to $WORK/err.
expect_code() {
  local want=$1
  shift
  local got=0
  "$@" >"$WORK/out" 2>"$WORK/err" || got=$?
  if [ "$got" != "$want" ]; then
    echo "stdout:" >&2; cat "$WORK/out" >&2 || true
    echo "stderr:" >&2; cat "$WORK/err" >&2 || true
    fail "expected exit $want, got $got: $*"
  fi
}

need() { command -v "$1" >/dev/null 2>&1 || skip "$1 is not installed (Debian package: $2); this test needs it"; }

sha256() { sha256sum "$1" | awk '{print "sha256:" $1}'; }

# chain_id PARENT DIFFID: the OCI ChainID.
chain_id() { python3 -c 'import hashlib,sys; print("sha256:"+hashlib.sha256((sys.argv[1]+" "+sys.argv[2]).encode()).hexdigest())' "$1" "$2"; }

# chain_of DIFFID...: the ChainID of a chain of DiffIDs (base first).
chain_of() {
  local c=$1
  shift
  for d in "$@"; do c=$(chain_id "$c" "$d"); done
  echo "$c"
}

# json EXPR FILE: evaluates a python expression on the JSON document j in FILE.
json() { python3 -c 'import json,sys; j=json.load(open(sys.argv[2])); r=eval(sys.argv[1]); print(r if not isinstance(r,bool) else ("true" if r else "false"))' "$1" "$2"; }

# A directory tree, deterministic, with a marker file whose content is unique to this run.
make_tree() {
  local d=$1 tag=$2
  mkdir -p "$d/etc" "$d/usr/bin" "$d/var/empty"
  printf 'hello %s\n' "$tag" >"$d/etc/hello.txt"
  printf 'MARKER-%s-%s\n' "$tag" "$RANDOM$RANDOM" >"$d/etc/marker.txt"
  head -c 300000 /dev/urandom >"$d/usr/bin/blob.bin"
  ln -s ../etc/hello.txt "$d/usr/bin/hello-link"
}

# mk_small_tar N: a small tar with one file saying N; prints its path.
mk_small_tar() {
  mkdir -p "$WORK/small$1" && echo "layer $1" >"$WORK/small$1/f$1" && make_tar "$WORK/small$1" "$WORK/small$1.tar"
  echo "$WORK/small$1.tar"
}

# make_tar DIR OUT: a tar of DIR's contents (GNU tar, sorted, fixed owner and mtime).
make_tar() { tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C "$1" -cf "$2" .; }

# The demo image's layers: DiffIDs from its config.
demo_diff_ids() {
  python3 - "$DEMO_IMAGE" <<'EOF'
import json, os, sys
d = sys.argv[1]
b = lambda dg: os.path.join(d, "blobs", "sha256", dg.split(":")[1])
idx = json.load(open(os.path.join(d, "index.json")))
m = json.load(open(b(idx["manifests"][0]["digest"])))
c = json.load(open(b(m["config"]["digest"])))
print(" ".join(c["rootfs"]["diff_ids"]))
EOF
}

# layer_count: the number of layers in the store.
layer_count() { R ls --json >"$WORK/ls.json" && json 'len(j)' "$WORK/ls.json"; }
# rmi_all: removes every kept image (import and pull keep the image, which holds its top layer:
# rm refuses that layer; its layers go with the image).
image_names() { R images --json | python3 -c 'import json,sys; print("\n".join(o["name"] for o in json.load(sys.stdin)))'; }
rmi_all() { local n; for n in $(image_names); do R rmi "$n" >/dev/null || fail "rmi $n"; done; }

# ---------------------------------------------------------------------------------------------

t_help() {
  expect_code 0 "$ROLAYER" --help
  grep -q "Exit codes" "$WORK/out" || fail "--help lacks the exit codes"
  grep -q "store is busy" "$WORK/out" || fail "--help lacks the busy exit code"
  for c in register export diff ls inspect rm verify import export-image; do
    expect_code 0 "$ROLAYER" "$c" --help
    grep -q "usage: rolayer $c" "$WORK/out" || fail "$c --help has no usage line"
    expect_code 0 "$ROLAYER" help "$c"
  done
  expect_code 2 "$ROLAYER"
  expect_code 2 "$ROLAYER" no-such-command
  grep -q "no such command" "$WORK/err" || fail "unknown command message"
  expect_code 2 "$ROLAYER" ls --bogus
  expect_code 2 "$ROLAYER" --wait abc ls
  expect_code 0 "$ROLAYER" --version
  grep -q "librolayer" "$WORK/out" || fail "--version"
}

t_register_roundtrip() {
  make_tree "$WORK/tree" roundtrip
  make_tar "$WORK/tree" "$WORK/layer.tar"
  local diff; diff=$(sha256 "$WORK/layer.tar")
  gzip -9 -c "$WORK/layer.tar" >"$WORK/layer.tar.gz"
  zstd -q -c "$WORK/layer.tar" >"$WORK/layer.tar.zst"
  xz -c "$WORK/layer.tar" >"$WORK/layer.tar.xz"
  for f in layer.tar layer.tar.gz layer.tar.zst layer.tar.xz; do
    note "register $f"
    expect_code 0 R register "$WORK/$f"
    local id; id=$(cat "$WORK/out")
    [ "$(wc -l <"$WORK/out")" = 1 ] || fail "register prints more than one line"
    # A base layer's ChainID is its DiffID: the sha256 of the uncompressed stream.
    [ "$id" = "$diff" ] || fail "$f: ChainID $id, expected $diff"
    [ ! -s "$WORK/err" ] || fail "register wrote to stderr without a terminal: $(cat "$WORK/err")"
    expect_code 0 R export "$id" -o "$WORK/out.tar"
    cmp "$WORK/layer.tar" "$WORK/out.tar" || fail "$f: export -o is not byte-exact"
    R export "$id" >"$WORK/out2.tar" || fail "export to stdout"
    cmp "$WORK/layer.tar" "$WORK/out2.tar" || fail "$f: export to stdout is not byte-exact"
  done
  # Standard input, with "-" and with no FILE; compressed input through a pipe.
  [ "$(R register - <"$WORK/layer.tar.gz")" = "$diff" ] || fail "register - (gzip on stdin)"
  [ "$(cat "$WORK/layer.tar.xz" | R register)" = "$diff" ] || fail "register (xz piped)"
  # Registering the same layer again keeps one reference: one rm removes it.
  [ "$(layer_count)" = 1 ] || fail "the same layer registered twice is one layer"
  R ls --json >"$WORK/ls.json"
  [ "$(json 'j[0]["retained"]' "$WORK/ls.json")" = 1 ] || fail "retained count after re-registering"
  # Persisted across processes: a new process sees it, rm removes it.
  expect_code 0 R rm "$diff"
  grep -q "removed $diff" "$WORK/out" || fail "rm output: $(cat "$WORK/out")"
  [ "$(layer_count)" = 0 ] || fail "rm left the layer"
  # Bad input: not a tar (after decompression), a truncated gzip, a missing file.
  head -c 5000 /dev/urandom >"$WORK/junk"
  expect_code 6 R register "$WORK/junk"
  head -c 2000 "$WORK/layer.tar.gz" >"$WORK/trunc.gz"
  expect_code 6 R register "$WORK/trunc.gz"
  expect_code 3 R register "$WORK/missing.tar"
  [ "$(layer_count)" = 0 ] || fail "a failed register left a layer"
  # Unknown parent.
  expect_code 3 R register --parent "sha256:$(printf '%064d' 1)" "$WORK/layer.tar"
}

t_register_parent() {
  make_tree "$WORK/a" base
  mkdir -p "$WORK/b/etc" && echo child >"$WORK/b/etc/child.txt"
  make_tar "$WORK/a" "$WORK/a.tar"
  make_tar "$WORK/b" "$WORK/b.tar"
  local a b want
  a=$(R register "$WORK/a.tar")
  # --parent takes a unique prefix of the hex too.
  b=$(R register --parent "${a:7:12}" "$WORK/b.tar")
  want=$(chain_id "$a" "$(sha256 "$WORK/b.tar")")
  [ "$b" = "$want" ] || fail "child ChainID $b, expected $want"
  R export "$b" | cmp - "$WORK/b.tar" || fail "child export not byte-exact"
  expect_code 0 R inspect "$b" --json
  [ "$(json 'j["parent"]' "$WORK/out")" = "$a" ] || fail "inspect parent"
  [ "$(json 'j["depth"]' "$WORK/out")" = 2 ] || fail "inspect depth"
  # diff against the parent: the registered stream of the child, verified, on every driver.
  expect_code 0 R diff "$b" --from "$a" -o "$WORK/d.tar"
  cmp "$WORK/d.tar" "$WORK/b.tar" || fail "diff --from parent is not the child's registered stream"
  # The flattened chain holds both layers' files, on every driver (built from the verified
  # streams where the driver has no flattened diff of its own).
  expect_code 0 R diff "$b" -o "$WORK/flat.tar"
  grep -q 'etc/child.txt' <(tar -tf "$WORK/flat.tar") || fail "flattened diff lacks the child's file"
  grep -q 'etc/marker.txt' <(tar -tf "$WORK/flat.tar") || fail "flattened diff lacks the parent's file"
  # --from a layer that is not an ancestor: refused, and no output file is left.
  expect_code 2 R diff "$a" --from "$b" -o "$WORK/x.tar"
  [ ! -e "$WORK/x.tar" ] || fail "a failed diff left its output file"
}

t_ls_inspect_json() {
  make_tree "$WORK/a" ls
  make_tar "$WORK/a" "$WORK/a.tar"
  local a; a=$(R register "$WORK/a.tar")
  expect_code 0 R import "$DEMO_IMAGE"
  local top; top=$(cat "$WORK/out")
  expect_code 0 R ls --json
  python3 - "$WORK/out" "$a" "$top" <<'EOF' || fail "ls --json"
import json, sys
j = json.load(open(sys.argv[1]))
a, top = sys.argv[2], sys.argv[3]
assert isinstance(j, list) and len(j) == 4, j
for o in j:
    for k in ("chain_id", "diff_id", "parent", "size", "diff_size", "descriptor", "depth", "retained", "stream_size"):
        assert k in o, (k, o)
by = {o["chain_id"]: o for o in j}
assert by[a]["parent"] is None and by[a]["descriptor"] is None and by[a]["retained"] == 1
t = by[top]
assert t["depth"] == 3 and t["retained"] == 1
assert t["descriptor"]["media_type"] == "application/vnd.oci.image.layer.v1.tar+gzip", t
assert t["descriptor"]["digest"].startswith("sha256:") and t["descriptor"]["size"] > 0
mid = by[t["parent"]]
assert mid["retained"] == 0 and mid["descriptor"]["media_type"] == "application/vnd.oci.image.layer.v1.tar"
# size is the chain's payload bytes: the sum of diff sizes down the chain
s, c = 0, t
while c:
    s += c["diff_size"]
    c = by.get(c["parent"]) if c["parent"] else None
assert t["size"] == s, (t["size"], s)
# parents before children
pos = {o["chain_id"]: i for i, o in enumerate(j)}
for o in j:
    if o["parent"]:
        assert pos[o["parent"]] < pos[o["chain_id"]]
EOF
  expect_code 0 R ls
  head -1 "$WORK/out" | grep -q "CHAIN ID" || fail "ls table header"
  [ "$(wc -l <"$WORK/out")" = 5 ] || fail "ls table rows"
  grep -q "${top:7:12}" "$WORK/out" || fail "ls shows short IDs"
  expect_code 0 R ls --no-trunc
  grep -q "$top" "$WORK/out" || fail "ls --no-trunc shows full IDs"
  expect_code 0 R inspect --json "$top"
  python3 - "$WORK/out" "$top" <<'EOF' || fail "inspect --json"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["chain_id"] == sys.argv[2] and len(j["chain"]) == 3 and j["chain"][-1] == sys.argv[2]
assert j["children"] == [] and isinstance(j["metadata"], dict) and j["driver"]
for k in ("diff_id", "parent", "size", "diff_size", "descriptor", "stream_size", "retained"):
    assert k in j, k
EOF
  expect_code 0 R inspect "${top:7:10}"
  grep -q "^ChainID: *$top" "$WORK/out" || fail "inspect by prefix"
  expect_code 3 R inspect "sha256:$(printf '%064d' 7)"
  expect_code 3 R inspect ffffffffffff0000
  expect_code 2 R inspect not-a-digest
  expect_code 2 R inspect
}

t_rm_cascade() {
  mkdir -p "$WORK/a" "$WORK/b" "$WORK/c"
  echo a >"$WORK/a/a"; echo b >"$WORK/b/b"; echo c >"$WORK/c/c"
  for x in a b c; do make_tar "$WORK/$x" "$WORK/$x.tar"; done
  local a b c
  a=$(R register "$WORK/a.tar")
  b=$(R register --parent "$a" "$WORK/b.tar")
  c=$(R register --parent "$b" "$WORK/c.tar")
  # A layer with children stays until its children go.
  expect_code 0 R rm "$a"
  [ ! -s "$WORK/out" ] || fail "rm of a layer with children removed: $(cat "$WORK/out")"
  grep -q "kept" "$WORK/err" || fail "rm of a parent does not say it was kept"
  [ "$(layer_count)" = 3 ] || fail "rm of a parent removed layers"
  expect_code 1 R rm "$a"
  grep -q "not retained" "$WORK/err" || fail "second rm of a parent: $(cat "$WORK/err")"
  expect_code 0 R rm "$b"
  [ "$(layer_count)" = 3 ] || fail "rm of a middle layer removed layers"
  # The top goes, and the cascade takes the parents that nothing else holds: child first.
  expect_code 0 R rm "$c"
  printf 'removed %s\nremoved %s\nremoved %s\n' "$c" "$b" "$a" | diff - "$WORK/out" || fail "rm cascade output"
  [ "$(layer_count)" = 0 ] || fail "cascade left layers"
  expect_code 3 R rm "$c"
  # A shared parent stays while another child holds it.
  a=$(R register "$WORK/a.tar")
  b=$(R register --parent "$a" "$WORK/b.tar")
  c=$(R register --parent "$a" "$WORK/c.tar")
  R rm "$a" >/dev/null 2>&1
  expect_code 0 R rm "$b"
  [ "$(cat "$WORK/out")" = "removed $b" ] || fail "rm of one of two children: $(cat "$WORK/out")"
  expect_code 0 R rm "$c"
  printf 'removed %s\nremoved %s\n' "$c" "$a" | diff - "$WORK/out" || fail "rm of the last child"
  # rm of several, one unknown: the others still go, exit 3.
  a=$(R register "$WORK/a.tar")
  expect_code 3 R rm "sha256:$(printf '%064d' 5)" "$a"
  grep -q "removed $a" "$WORK/out" || fail "rm continues after an unknown layer"
}

# Finds the stored copy of the marker file (any driver): a file under the store holding it.
find_stored_marker() {
  grep -rl --exclude='metadata.db*' -F "$1" "$STORE" | head -1
}

flip_byte() {
  python3 - "$1" "$2" <<'EOF'
import sys
p, marker = sys.argv[1], sys.argv[2].encode()
b = bytearray(open(p, "rb").read())
i = b.find(marker)
assert i >= 0
b[i + len(marker) - 3] ^= 0x20
open(p, "wb").write(bytes(b))
EOF
}

t_verify_tamper() {
  make_tree "$WORK/a" tamper
  mkdir -p "$WORK/b" && echo "other layer" >"$WORK/b/other.txt"
  make_tar "$WORK/a" "$WORK/a.tar"
  make_tar "$WORK/b" "$WORK/b.tar"
  local a b marker
  a=$(R register "$WORK/a.tar")
  b=$(R register "$WORK/b.tar")
  expect_code 0 R verify
  grep -q "$a  ok" "$WORK/out" || fail "verify ok line"
  grep -q "$b  ok" "$WORK/out" || fail "verify ok line"
  marker=$(cat "$WORK/a/etc/marker.txt" | tr -d '\n')
  local stored; stored=$(find_stored_marker "$marker")
  [ -n "$stored" ] || fail "cannot find the stored copy of the marker file"
  if [ "$DRIVER" = exact ]; then
    [[ $stored == "$STORE"/exact/*/layer.tar ]] || fail "the exact driver keeps <store>/exact/<id>/layer.tar, not $stored"
  fi
  chmod u+w "$stored"
  flip_byte "$stored" "$marker"
  # verify names the damaged layer (and the path where the driver knows it); exit 4.
  expect_code 4 R verify
  grep -q "$a  DAMAGED" "$WORK/out" || fail "verify does not name the damaged layer: $(cat "$WORK/out")"
  grep -q "$b  ok" "$WORK/out" || fail "verify of the undamaged layer"
  if [ "$DRIVER" = dir ]; then
    grep -q "etc/marker.txt" "$WORK/out" || fail "verify does not name the damaged path: $(cat "$WORK/out")"
  fi
  expect_code 4 R verify "$a"
  expect_code 0 R verify "$b"
  expect_code 4 R verify --json
  python3 - "$WORK/out" "$a" "$b" <<'EOF' || fail "verify --json"
import json, sys
j = {o["chain_id"]: o for o in json.load(open(sys.argv[1]))}
assert j[sys.argv[2]]["ok"] is False and j[sys.argv[2]]["error"]
assert j[sys.argv[3]]["ok"] is True and j[sys.argv[3]]["error"] is None
EOF
  # export fails with the library's message and leaves no partial file.
  mkdir "$WORK/exp"
  expect_code 4 R export "$a" -o "$WORK/exp/a.tar"
  [ -z "$(ls -A "$WORK/exp")" ] || fail "a failed export left files: $(ls -A "$WORK/exp")"
  grep -q -e "could not verify layer data" -e "checksum" -e "integrity" -e "damaged" -e "corrupt" "$WORK/err" ||
    fail "export failure message: $(cat "$WORK/err")"
  expect_code 3 R verify "sha256:$(printf '%064d' 9)"
}

t_export_atomic() {
  make_tree "$WORK/a" atomic
  make_tar "$WORK/a" "$WORK/a.tar"
  local a; a=$(R register "$WORK/a.tar")
  mkdir "$WORK/exp"
  echo "old content" >"$WORK/exp/a.tar"
  expect_code 0 R export "$a" -o "$WORK/exp/a.tar"
  cmp "$WORK/a.tar" "$WORK/exp/a.tar" || fail "export over an existing file"
  [ "$(ls -A "$WORK/exp")" = a.tar ] || fail "export left temporary files: $(ls -A "$WORK/exp")"
  expect_code 3 R export "sha256:$(printf '%064d' 3)" -o "$WORK/exp/none.tar"
  [ "$(ls -A "$WORK/exp")" = a.tar ] || fail "a failed export created files"
  expect_code 2 R export "$a" -o "$WORK/exp"   # a directory
  expect_code 2 R export
  # An existing output that is not a regular file is written in place, never renamed over:
  # a FIFO stays a FIFO (and its reader gets the layer), a character device stays a device.
  mkfifo "$WORK/out.fifo"
  timeout 30 cat "$WORK/out.fifo" >"$WORK/from-fifo.tar" &
  local cat_pid=$!
  expect_code 0 R export "$a" -o "$WORK/out.fifo"
  [ -p "$WORK/out.fifo" ] || fail "export -o FIFO replaced the FIFO (its reader stops after 30 s)"
  wait "$cat_pid" || fail "the FIFO's reader failed"
  cmp "$WORK/a.tar" "$WORK/from-fifo.tar" || fail "export -o FIFO: the reader got other bytes"
  if mknod "$WORK/null" c 1 3 2>/dev/null; then
    expect_code 0 R export "$a" -o "$WORK/null"
    [ -c "$WORK/null" ] || fail "export -o a character device replaced the device with a file"
  fi
  [ -z "$(ls -A "$WORK" | grep rolayer-)" ] || fail "in-place exports left temporary files: $(ls -A "$WORK")"
  # An interrupted export (here blocked writing to a pipe nobody reads) stops cleanly: 128 + signal.
  mkdir -p "$WORK/big"
  head -c 20000000 /dev/urandom >"$WORK/big/f"
  make_tar "$WORK/big" "$WORK/big.tar"
  local big; big=$(R register "$WORK/big.tar")
  mkfifo "$WORK/fifo"
  sleep 60 <"$WORK/fifo" &
  local reader=$!
  # (SIGTERM: a script's background job ignores SIGINT, and rolayer keeps an ignored signal ignored.)
  "$ROLAYER" --store "$STORE" --driver "$DRIVER" export "$big" >"$WORK/fifo" 2>"$WORK/int.err" &
  local pid=$!
  sleep 1
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  kill "$reader" 2>/dev/null || true
  [ "$rc" = 143 ] || fail "interrupted export: exit $rc: $(cat "$WORK/int.err")"
  grep -q interrupted "$WORK/int.err" || fail "interrupted export message: $(cat "$WORK/int.err")"
  # The store is usable after the interruption.
  expect_code 0 R verify "$big"
}

t_busy_store() {
  mkdir -p "$STORE"
  expect_code 0 R register "$(mk_small_tar 1)"
  local first; first=$(cat "$WORK/out")
  # Another process with the store open does not block anyone (issue 14): ls, register, rm
  # and verify run at once while it holds the store.
  mkfifo "$WORK/hold.in"
  "$HOLD" "$STORE" "$DRIVER" 60 <"$WORK/hold.in" >"$WORK/hold.out" &
  local hold=$!
  exec 3>"$WORK/hold.in"
  for _ in $(seq 100); do grep -q ready "$WORK/hold.out" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$WORK/hold.out" || fail "hold_store did not open the store"
  expect_code 0 R --wait 0 ls
  expect_code 0 R --wait 0 register "$(mk_small_tar 2)"
  expect_code 0 R --wait 0 verify
  expect_code 0 R --wait 0 rm "$first"
  exec 3>&-
  wait "$hold"
  # The conflict that remains: another writer keeps the database's write lock longer than
  # --wait. The command says the store is busy and what holds it.
  rm -f "$WORK/hold.in"; mkfifo "$WORK/hold.in"
  "$HOLD" "$STORE" "$DRIVER" 60 write <"$WORK/hold.in" >"$WORK/hold.out" &
  hold=$!
  exec 3>"$WORK/hold.in"
  for _ in $(seq 100); do grep -q ready "$WORK/hold.out" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$WORK/hold.out" || fail "hold_store did not take the write lock"
  expect_code 5 R --wait 0 register "$(mk_small_tar 3)"
  grep -q "store is busy" "$WORK/err" || fail "busy message: $(cat "$WORK/err")"
  grep -q "write lock" "$WORK/err" || fail "the busy message does not say what holds the store: $(cat "$WORK/err")"
  local t0 t1
  t0=$(date +%s%N)
  expect_code 5 "$ROLAYER" --store "$STORE" --driver "$DRIVER" --wait 0.5 register "$(mk_small_tar 3)"
  t1=$(date +%s%N)
  [ $(( (t1 - t0) / 1000000 )) -ge 400 ] || fail "--wait 0.5 did not wait"
  # A waiting command gets the store once the holder lets go.
  R --wait 30 ls --json >"$WORK/waited.out" 2>"$WORK/waited.err" 3>&- &
  local waiter=$!
  sleep 0.5
  exec 3>&-
  wait "$hold"
  local rc=0
  wait "$waiter" || rc=$?
  [ "$rc" = 0 ] || fail "the waiting command failed ($rc): $(cat "$WORK/waited.err")"
  [ "$(json 'len(j)' "$WORK/waited.out")" = 1 ] || fail "waited ls output: $(cat "$WORK/waited.out")"
}

# Issue 12, crash leftovers: a register killed between its commit and its retain leaves a layer
# only the dead process held; the next command (while another process has the store open all
# along) collects it, nothing of it stays on disk, and `gc` spares what is kept.
t_crash_leftovers() {
  mkdir -p "$STORE"
  expect_code 0 R register "$(mk_small_tar 1)"
  local kept; kept=$(cat "$WORK/out")
  mkfifo "$WORK/hold.in"
  "$HOLD" "$STORE" "$DRIVER" 60 <"$WORK/hold.in" >"$WORK/hold.out" &
  local hold=$!
  exec 3>"$WORK/hold.in"
  for _ in $(seq 100); do grep -q ready "$WORK/hold.out" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$WORK/hold.out" || fail "hold_store did not open the store"
  local rc=0
  ROLAYER_FAULT_KILL=register.committed:1 R register "$(mk_small_tar 2)" >/dev/null 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    exec 3>&-; wait "$hold"
    skip "the library was built without -DROLAYER_FAULT_HOOKS=ON: cannot kill a register after its commit"
  fi
  [ "$rc" = 137 ] || fail "the register was not killed (exit $rc)"
  expect_code 0 R ls --json
  [ "$(json 'len(j)' "$WORK/out")" = 1 ] || fail "the killed register's layer stayed: $(cat "$WORK/out")"
  [ "$(find "$STORE/$DRIVER" -mindepth 1 -maxdepth 1 ! -name .format ! -name .empty | wc -l)" = 1 ] || fail "driver data left: $(ls -a "$STORE/$DRIVER")"
  [ -z "$(ls "$STORE/pending")" ] || fail "intent marks left: $(ls "$STORE/pending")"
  expect_code 0 R gc
  [ ! -s "$WORK/out" ] || fail "gc removed a kept layer: $(cat "$WORK/out")"
  expect_code 0 R verify "$kept"
  exec 3>&-
  wait "$hold"
}

# The demo image: import, check the chain and descriptors, export every layer.
t_import_oci() {
  read -r -a diffs <<<"$(demo_diff_ids)"
  local want; want=$(chain_of "${diffs[@]}")
  expect_code 0 R import "$DEMO_IMAGE"
  [ "$(cat "$WORK/out")" = "$want" ] || fail "import printed $(cat "$WORK/out"), expected $want"
  # Descriptors recorded, equal to the manifest's.
  R ls --json >"$WORK/ls.json"
  python3 - "$WORK/ls.json" "$DEMO_IMAGE" <<'EOF' || fail "descriptors"
import json, os, sys
j = {o["diff_id"]: o for o in json.load(open(sys.argv[1]))}
d = sys.argv[2]
b = lambda dg: os.path.join(d, "blobs", "sha256", dg.split(":")[1])
idx = json.load(open(os.path.join(d, "index.json")))
m = json.load(open(b(idx["manifests"][0]["digest"])))
c = json.load(open(b(m["config"]["digest"])))
for desc, diff in zip(m["layers"], c["rootfs"]["diff_ids"]):
    o = j[diff]["descriptor"]
    assert o == {"media_type": desc["mediaType"], "digest": desc["digest"], "size": desc["size"]}, (o, desc)
assert sum(o["retained"] for o in j.values()) == 1
EOF
  # Every layer exports to its DiffID.
  local c=""
  for d in "${diffs[@]}"; do
    if [ -z "$c" ]; then c=$d; else c=$(chain_id "$c" "$d"); fi
    R export "$c" -o "$WORK/l.tar"
    [ "$(sha256 "$WORK/l.tar")" = "$d" ] || fail "layer $c does not export to its DiffID"
  done
  # Importing again: the same chain, still one reference.
  [ "$(R import "$DEMO_IMAGE")" = "$want" ] || fail "second import"
  R ls --json >"$WORK/ls.json"
  [ "$(json 'sum(o["retained"] for o in j)' "$WORK/ls.json")" = 1 ] || fail "second import added a reference"
  # The kept image holds the top layer: rm refuses it (rmi removes the image and its layers).
  expect_code 2 R rm "$want"
  rmi_all
  [ "$(layer_count)" = 0 ] || fail "rmi of an imported image left layers"
  # The layout as a tar, as a gzip'd tar with a top-level directory, and with :REF.
  tar -C "$DEMO_IMAGE" -cf "$WORK/layout.tar" .
  [ "$(R import "$WORK/layout.tar")" = "$want" ] || fail "import of a layout tar"
  tar -C "$(dirname "$DEMO_IMAGE")" -czf "$WORK/layout.tgz" "$(basename "$DEMO_IMAGE")"
  [ "$(R import "$WORK/layout.tgz:latest")" = "$want" ] || fail "import of a gzip'd layout tar with a top directory"
  [ "$(R import "$DEMO_IMAGE:latest")" = "$want" ] || fail "import DIR:REF"
  expect_code 3 R import "$DEMO_IMAGE:nope"
  grep -q "latest" "$WORK/err" || fail "an unknown REF lists the names"
  # Several manifests: REF is needed.
  cp -r "$DEMO_IMAGE" "$WORK/two"
  python3 - "$WORK/two/index.json" <<'EOF'
import json, sys
p = sys.argv[1]
i = json.load(open(p))
m = dict(i["manifests"][0])
m["annotations"] = {"org.opencontainers.image.ref.name": "other"}
i["manifests"].append(m)
json.dump(i, open(p, "w"))
EOF
  expect_code 2 R import "$WORK/two"
  grep -q "other" "$WORK/err" || fail "the several-manifests error lists the names"
  [ "$(R import "$WORK/two:other")" = "$want" ] || fail "import :other"
  # Not an image.
  mkdir "$WORK/empty"
  expect_code 6 R import "$WORK/empty"
  expect_code 3 R import "$WORK/nonexistent"
}

# A docker-save archive made by hand: manifest.json, <hex>.json config, <id>/layer.tar.
make_docker_archive() {
  python3 - "$@" <<'EOF'
import gzip, hashlib, io, json, sys, tarfile
out, mode = sys.argv[1], sys.argv[2]
def tarb(files):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in files:
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()
l1 = tarb([("etc/one", b"one\n" * 100)])
l2 = tarb([("etc/two", b"two\n" * 100), ("bin/x", bytes(range(256)) * 40)])
sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
diff_ids = [sha(l1), sha(l2)]
if mode == "bad-diffid":
    diff_ids[1] = "sha256:" + "ab" * 32
cfg = json.dumps({"architecture": "amd64", "os": "linux",
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
blobs = {"aaaa/layer.tar": l1, "bbbb/layer.tar": gzip.compress(l2, mtime=0) if mode == "gzip" else l2}
man = [{"Config": cfg_name, "RepoTags": ["demo/docker:v1"], "Layers": ["aaaa/layer.tar", "bbbb/layer.tar"]}]
with tarfile.open(out, "w") as t:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    add(cfg_name, cfg)
    for n, b in blobs.items():
        add(n, b)
    add("manifest.json", json.dumps(man).encode())
    add("repositories", b"{}")
print(" ".join([sha(l1), sha(l2)]))
EOF
}

t_import_docker_archive() {
  read -r -a diffs <<<"$(make_docker_archive "$WORK/d.tar" plain)"
  local want; want=$(chain_of "${diffs[@]}")
  expect_code 0 R import "$WORK/d.tar"
  [ "$(cat "$WORK/out")" = "$want" ] || fail "docker archive import: $(cat "$WORK/out") != $want"
  # A tag selects the image; an unknown tag is not found.
  [ "$(R import "$WORK/d.tar:demo/docker:v1")" = "$want" ] || fail "import ARCHIVE:TAG"
  expect_code 3 R import "$WORK/d.tar:demo/docker:v2"
  R export "$want" | cmp - <(python3 -c '
import tarfile,sys
t=tarfile.open(sys.argv[1]); sys.stdout.buffer.write(t.extractfile("bbbb/layer.tar").read())' "$WORK/d.tar") ||
    fail "the top layer does not export byte-exact"
  rmi_all
  # Gzip'd layers in a docker archive are fine too (detected from the bytes).
  make_docker_archive "$WORK/dz.tar" gzip >/dev/null
  [ "$(R import "$WORK/dz.tar")" = "$want" ] || fail "docker archive with a gzip'd layer"
  rmi_all
  # A DiffID that does not match the config: error naming the layer, nothing stays.
  make_docker_archive "$WORK/bad.tar" bad-diffid >/dev/null
  expect_code 4 R import "$WORK/bad.tar"
  grep -q "bbbb/layer.tar" "$WORK/err" || fail "the DiffID error does not name the layer: $(cat "$WORK/err")"
  grep -q "DiffID mismatch" "$WORK/err" || fail "DiffID mismatch message: $(cat "$WORK/err")"
  [ "$(layer_count)" = 0 ] || fail "a failed import left layers"
}

# rewrite_layout DIR MODE: damages a copy of the demo image in a given way.
rewrite_layout() {
  python3 - "$@" <<'EOF'
import hashlib, json, os, sys
d, mode = sys.argv[1], sys.argv[2]
bp = lambda dg: os.path.join(d, "blobs", "sha256", dg.split(":")[1])
def put(data):
    dg = "sha256:" + hashlib.sha256(data).hexdigest()
    open(bp(dg), "wb").write(data)
    return dg
idx = json.load(open(os.path.join(d, "index.json")))
md = idx["manifests"][0]
m = json.load(open(bp(md["digest"])))
layer = m["layers"][2]
if mode == "flip":          # a flipped byte in the last (gzip) layer blob
    p = bp(layer["digest"]); b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 1; open(p, "wb").write(bytes(b))
elif mode == "flip-plain":  # a flipped byte in the uncompressed middle layer blob, inside file data
    p = bp(m["layers"][1]["digest"]); b = bytearray(open(p, "rb").read()); b[1600] ^= 1; open(p, "wb").write(bytes(b))
elif mode == "append":      # trailing bytes after the gzip stream
    open(bp(layer["digest"]), "ab").write(b"\0" * 16)
elif mode in ("size", "diffid", "missing"):
    if mode == "size":
        layer["size"] += 1
    elif mode == "missing":
        os.unlink(bp(layer["digest"]))
    else:
        cd = m["config"]["digest"]; c = json.load(open(bp(cd)))
        c["rootfs"]["diff_ids"][2] = "sha256:" + "cd" * 32
        cdata = json.dumps(c).encode(); m["config"]["digest"] = put(cdata); m["config"]["size"] = len(cdata)
    mdata = json.dumps(m).encode()
    md["digest"] = put(mdata); md["size"] = len(mdata)
    json.dump(idx, open(os.path.join(d, "index.json"), "w"))
elif mode == "manifest":    # the manifest blob no longer matches the index's digest
    p = bp(md["digest"]); open(p, "ab").write(b" ")
print(layer["digest"])
EOF
}

t_import_corrupt() {
  read -r -a diffs <<<"$(demo_diff_ids)"
  # The base layer was in the store before: it must stay, retained.
  local blob0
  blob0=$(python3 -c '
import json,os,sys
d=sys.argv[1]; bp=lambda g: os.path.join(d,"blobs","sha256",g.split(":")[1])
i=json.load(open(os.path.join(d,"index.json"))); m=json.load(open(bp(i["manifests"][0]["digest"])))
print(bp(m["layers"][0]["digest"]))' "$DEMO_IMAGE")
  local base; base=$(R register "$blob0")
  [ "$base" = "${diffs[0]}" ] || fail "pre-registered base layer"
  for mode in flip flip-plain append size diffid missing manifest; do
    note "corrupt image: $mode"
    rm -rf "$WORK/img"
    cp -r "$DEMO_IMAGE" "$WORK/img"
    local blob; blob=$(rewrite_layout "$WORK/img" "$mode")
    local want=4
    [ "$mode" = missing ] && want=3
    expect_code "$want" R import "$WORK/img"
    case $mode in
      manifest) grep -q "manifest" "$WORK/err" || fail "$mode: message does not name the manifest: $(cat "$WORK/err")" ;;
      flip-plain) grep -q "layer blob sha256:" "$WORK/err" || fail "$mode: message does not name the blob: $(cat "$WORK/err")" ;;
      *) grep -q -F "$blob" "$WORK/err" || fail "$mode: message does not name the blob $blob: $(cat "$WORK/err")" ;;
    esac
    R ls --json >"$WORK/ls.json"
    [ "$(json '[o["chain_id"] for o in j]' "$WORK/ls.json")" = "['$base']" ] ||
      fail "$mode: the failed import left layers: $(cat "$WORK/ls.json")"
    [ "$(json 'j[0]["retained"]' "$WORK/ls.json")" = 1 ] || fail "$mode: the earlier layer lost its reference"
    # The same corruption in a tar of the layout.
    tar -C "$WORK/img" -cf "$WORK/img.tar" .
    expect_code "$want" R import "$WORK/img.tar"
    [ "$(layer_count)" = 1 ] || fail "$mode (tar): the failed import left layers"
  done
  expect_code 0 R verify
}

t_import_umoci() {
  need umoci umoci
  local L=$WORK/umoci-img
  umoci init --layout "$L"
  umoci new --image "$L:latest"
  umoci unpack --rootless --image "$L:latest" "$WORK/bundle" >/dev/null
  make_tree "$WORK/bundle/rootfs" umoci1
  umoci repack --image "$L:latest" "$WORK/bundle"
  rm -rf "$WORK/bundle"
  umoci unpack --rootless --image "$L:latest" "$WORK/bundle" >/dev/null
  # A second layer with a changed file, a new file and a deletion (a whiteout).
  echo changed >"$WORK/bundle/rootfs/etc/hello.txt"
  echo new >"$WORK/bundle/rootfs/etc/new.txt"
  rm "$WORK/bundle/rootfs/usr/bin/hello-link"
  umoci repack --image "$L:latest" "$WORK/bundle"
  umoci tag --image "$L:latest" second
  python3 - "$L" >"$WORK/expect" <<'EOF'
import json, os, sys
d = sys.argv[1]
bp = lambda g: os.path.join(d, "blobs", "sha256", g.split(":")[1])
idx = json.load(open(os.path.join(d, "index.json")))
md = [m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "latest"][0]
m = json.load(open(bp(md["digest"])))
c = json.load(open(bp(m["config"]["digest"])))
print(" ".join(c["rootfs"]["diff_ids"]))
print(" ".join(l["digest"] for l in m["layers"]))
EOF
  read -r -a diffs <<<"$(sed -n 1p "$WORK/expect")"
  read -r -a blobs <<<"$(sed -n 2p "$WORK/expect")"
  [ "${#diffs[@]}" -ge 2 ] || fail "umoci made ${#diffs[@]} layers"
  local want; want=$(chain_of "${diffs[@]}")
  # Two manifests (latest, second): the REF picks one.
  expect_code 2 R import "$L"
  expect_code 0 R import "$L:latest"
  [ "$(cat "$WORK/out")" = "$want" ] || fail "umoci image: $(cat "$WORK/out") != $want"
  # Layer digests agree: each layer's descriptor is umoci's blob; its stream is umoci's DiffID.
  local c="" i=0
  for d in "${diffs[@]}"; do
    if [ -z "$c" ]; then c=$d; else c=$(chain_id "$c" "$d"); fi
    R inspect --json "$c" >"$WORK/i.json"
    [ "$(json 'j["descriptor"]["digest"]' "$WORK/i.json")" = "${blobs[$i]}" ] || fail "descriptor of layer $i"
    [ "$(json 'j["diff_id"]' "$WORK/i.json")" = "$d" ] || fail "DiffID of layer $i"
    R export "$c" -o "$WORK/l.tar"
    [ "$(sha256 "$WORK/l.tar")" = "$d" ] || fail "layer $i does not export to umoci's DiffID"
    # umoci's blob, decompressed, is the exported stream.
    gzip -dc "$L/blobs/sha256/${blobs[$i]#sha256:}" | cmp - "$WORK/l.tar" || fail "layer $i differs from umoci's blob"
    i=$((i + 1))
  done
  expect_code 0 R verify
  # The whiteout survived byte-exact in the second layer.
  grep -q '\.wh\.hello-link' <(tar -tf "$WORK/l.tar") || fail "the deletion's whiteout is missing"
  # Back out as an image: umoci unpacks the same tree from ours as from its own.
  expect_code 0 R export-image "$want" "$WORK/ours"
  umoci unpack --rootless --image "$WORK/ours:latest" "$WORK/u-ours" >/dev/null
  umoci unpack --rootless --image "$L:latest" "$WORK/u-orig" >/dev/null
  diff -r --no-dereference "$WORK/u-ours/rootfs" "$WORK/u-orig/rootfs" || fail "umoci unpacks a different tree from export-image"
  [ ! -e "$WORK/u-ours/rootfs/usr/bin/hello-link" ] || fail "the whiteout was not applied"
  [ "$(cat "$WORK/u-ours/rootfs/etc/hello.txt")" = changed ] || fail "the second layer's change is missing"
}

t_export_image_umoci() {
  need umoci umoci
  read -r -a diffs <<<"$(demo_diff_ids)"
  local top; top=$(R import "$DEMO_IMAGE")
  expect_code 0 R export-image "$top" "$WORK/out-img"
  local mdg; mdg=$(cat "$WORK/out")
  python3 - "$WORK/out-img" "$mdg" "${diffs[@]}" <<'EOF' || fail "the exported layout"
import hashlib, json, os, sys
d, mdg, diffs = sys.argv[1], sys.argv[2], sys.argv[3:]
bp = lambda g: os.path.join(d, "blobs", "sha256", g.split(":")[1])
def check(desc):
    data = open(bp(desc["digest"]), "rb").read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"], desc
    assert len(data) == desc["size"], desc
    return data
assert json.load(open(os.path.join(d, "oci-layout")))["imageLayoutVersion"] == "1.0.0"
idx = json.load(open(os.path.join(d, "index.json")))
assert idx["schemaVersion"] == 2 and len(idx["manifests"]) == 1
md = idx["manifests"][0]
assert md["digest"] == mdg and md["annotations"]["org.opencontainers.image.ref.name"] == "latest"
m = json.loads(check(md))
assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
c = json.loads(check(m["config"]))
assert c["rootfs"]["diff_ids"] == diffs and c["os"] == "linux" and c["architecture"]
assert [l["digest"] for l in m["layers"]] == diffs
for l in m["layers"]:
    assert l["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    check(l)
EOF
  # umoci reads it (checking every digest) and unpacks the same tree as the source image.
  umoci unpack --rootless --image "$WORK/out-img:latest" "$WORK/b1" >/dev/null
  umoci unpack --rootless --image "$DEMO_IMAGE:latest" "$WORK/b2" >/dev/null
  diff -r "$WORK/b1/rootfs" "$WORK/b2/rootfs" || fail "umoci unpacks a different tree"
  [ "$(head -1 "$WORK/b1/rootfs/bin/hello")" = "#!/bin/sh" ] || fail "unpacked content"
  # The chain is the kept demo image's top: its original config is written, byte for byte (issue
  # 16). (umoci stat panics on that config, as on the demo image itself: its history entries have
  # no "created"; umoci stat is run on the generated config of the second image below.)
  cmp "$WORK/out-img/blobs/sha256/$(python3 -c 'import json,sys; d=sys.argv[1]; i=json.load(open(d+"/index.json")); print(json.load(open(d+"/blobs/sha256/"+i["manifests"][0]["digest"][7:]))["config"]["digest"][7:])' "$WORK/out-img")" \
    "$DEMO_IMAGE/blobs/sha256/$(python3 -c 'import json,sys; d=sys.argv[1]; i=json.load(open(d+"/index.json")); print(json.load(open(d+"/blobs/sha256/"+i["manifests"][0]["digest"][7:]))["config"]["digest"][7:])' "$DEMO_IMAGE")" ||
    fail "export-image of a kept image did not write its original config"
  # Re-imported: the same chain.
  rmi_all
  [ "$(R import "$WORK/out-img")" = "$top" ] || fail "re-importing the exported image"
  # Adding a second image to the same layout keeps the first.
  mkdir -p "$WORK/x" && echo x >"$WORK/x/x"
  make_tar "$WORK/x" "$WORK/x.tar"
  local x; x=$(R register "$WORK/x.tar")
  expect_code 0 R export-image "$x" "$WORK/out-img" --ref solo
  [ "$(json 'len(j["manifests"])' "$WORK/out-img/index.json")" = 2 ] || fail "export-image into an existing layout"
  umoci unpack --rootless --image "$WORK/out-img:solo" "$WORK/b3" >/dev/null
  [ "$(cat "$WORK/b3/rootfs/x")" = x ] || fail "second image content"
  umoci stat --image "$WORK/out-img:solo" >/dev/null || fail "umoci stat"
  umoci unpack --rootless --image "$WORK/out-img:latest" "$WORK/b4" >/dev/null
  # A non-empty directory that is not a layout is refused.
  expect_code 2 R export-image "$x" "$WORK/x"
}

t_skopeo_formats() {
  need skopeo skopeo
  read -r -a diffs <<<"$(demo_diff_ids)"
  local want; want=$(chain_of "${diffs[@]}")
  local S=(skopeo --insecure-policy)
  # skopeo's docker-archive (docker save format) and oci-archive of the demo image.
  "${S[@]}" copy -q "oci:$DEMO_IMAGE:latest" "docker-archive:$WORK/da.tar:demo:latest"
  "${S[@]}" copy -q "oci:$DEMO_IMAGE:latest" "oci-archive:$WORK/oa.tar:latest"
  expect_code 0 R import "$WORK/da.tar"
  [ "$(cat "$WORK/out")" = "$want" ] || fail "skopeo docker-archive: $(cat "$WORK/out") != $want"
  [ "$(R import "$WORK/oa.tar:latest")" = "$want" ] || fail "skopeo oci-archive"
  [ "$(R import "$WORK/da.tar:demo:latest")" = "$want" ] || fail "skopeo docker-archive with a tag"
  # Our export-image, read back by skopeo: it verifies the digests while copying.
  expect_code 0 R export-image "$want" "$WORK/ours"
  "${S[@]}" inspect "oci:$WORK/ours:latest" >"$WORK/inspect.json" || fail "skopeo inspect of export-image"
  python3 - "$WORK/inspect.json" "${diffs[@]}" <<'EOF' || fail "skopeo sees other layers"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["Layers"] == sys.argv[2:], j["Layers"]
EOF
  "${S[@]}" copy -q "oci:$WORK/ours:latest" "oci:$WORK/copied:latest" || fail "skopeo copy of export-image"
  "${S[@]}" copy -q "oci:$WORK/ours:latest" "docker-archive:$WORK/ours-da.tar:ours:latest" || fail "skopeo to docker-archive"
  [ "$(R import "$WORK/copied")" = "$want" ] || fail "re-importing skopeo's copy"
  [ "$(R import "$WORK/ours-da.tar")" = "$want" ] || fail "re-importing skopeo's docker-archive"
  R ls --json >"$WORK/ls.json"
  [ "$(json 'len(j)' "$WORK/ls.json")" = 3 ] || fail "the same image in several formats is one chain"
  # Compressed by skopeo (zstd) on the way: still the same DiffIDs and chain.
  if "${S[@]}" copy -q --dest-compress-format zstd "oci:$WORK/ours:latest" "oci:$WORK/zst:latest" 2>/dev/null; then
    grep -q "tar+zstd" "$WORK/zst/blobs/sha256/"* || fail "skopeo did not write zstd layers"
    [ "$(R import "$WORK/zst")" = "$want" ] || fail "zstd layers from skopeo"
  else
    note "this skopeo cannot write zstd layers; skipped that part"
  fi
}

t_demo() {
  # The README's demo, against the default store (XDG: $HOME/.local/share/rolayer here).
  expect_code 0 bash "$TOOLS_DIR/demo.sh" "$(dirname "$ROLAYER")"
  [ -f "$HOME/.local/share/rolayer/metadata.db" ] || [ -d "$HOME/.local/share/rolayer" ] ||
    fail "the demo did not use the default store"
  grep -q "sha256:" "$WORK/out" || fail "demo output"
  # XDG_DATA_HOME and ROLAYER_ROOT move the default store.
  XDG_DATA_HOME=$WORK/xdg "$ROLAYER" ls >/dev/null
  [ -d "$WORK/xdg/rolayer" ] || fail "XDG_DATA_HOME is not used"
  ROLAYER_ROOT=$WORK/rr "$ROLAYER" ls >/dev/null
  [ -d "$WORK/rr" ] || fail "ROLAYER_ROOT is not used"
}

t_progress() {
  need script "util-linux/bsdutils"
  mkdir -p "$WORK/big"
  head -c 30000000 /dev/urandom >"$WORK/big/f"
  make_tar "$WORK/big" "$WORK/big.tar"
  # Not a terminal: nothing on stderr.
  R register "$WORK/big.tar" >"$WORK/id" 2>"$WORK/err"
  [ ! -s "$WORK/err" ] || fail "progress output without a terminal: $(cat "$WORK/err")"
  # A terminal: a progress bar (percentage, bytes) on stderr, the ChainID still alone on stdout.
  script -qec "'$ROLAYER' --store '$STORE' --driver $DRIVER export $(cat "$WORK/id") -o '$WORK/o.tar' " "$WORK/typescript" </dev/null >/dev/null
  grep -q "%" "$WORK/typescript" || fail "no progress bar on a terminal: $(cat -v "$WORK/typescript")"
  grep -q "MiB" "$WORK/typescript" || fail "no byte counts in the progress bar"
  cmp "$WORK/big.tar" "$WORK/o.tar" || fail "export with a progress bar"
  script -qec "'$ROLAYER' --store '$STORE' --driver $DRIVER --quiet export $(cat "$WORK/id") -o '$WORK/o2.tar'" "$WORK/ts2" </dev/null >/dev/null
  ! grep -q "%" "$WORK/ts2" || fail "--quiet still shows progress"
  script -qec "'$ROLAYER' --store '$STORE' --driver $DRIVER verify" "$WORK/ts3" </dev/null >/dev/null
  grep -q "ok" "$WORK/ts3" || fail "verify on a terminal"
}

# --- trust at the edges (issue 12): hostile image directories and layouts --------------------

# demo_blob N: the path of the demo image's layer blob N (0-based) in a copy DIR; "config" for the config.
demo_blob() {
  python3 - "$1" "$2" <<'EOF'
import json, os, sys
d, n = sys.argv[1], sys.argv[2]
bp = lambda g: os.path.join(d, "blobs", "sha256", g.split(":")[1])
i = json.load(open(os.path.join(d, "index.json"))); m = json.load(open(bp(i["manifests"][0]["digest"])))
print(bp(m["config"]["digest"]) if n == "config" else bp(m["layers"][int(n)]["digest"]))
EOF
}

# no_leak: the last error must reveal nothing of the secret file ($WORK/secret): not its size,
# digest or first byte.
no_leak() {
  local size dg first
  size=$(stat -c %s "$WORK/secret"); dg=$(sha256sum "$WORK/secret" | cut -c1-64); first=$(head -c1 "$WORK/secret")
  ! grep -q -e "$dg" -e " $size bytes" -e "has $size" "$WORK/err" || fail "the error reveals the link target: $(cat "$WORK/err")"
  ! grep -q "$first$first$first" "$WORK/err" || fail "the error shows the target's content: $(cat "$WORK/err")"
}

# Item 5: links, devices and FIFOs inside an image directory are never followed or read.
t_import_dir_links() {
  printf 'QQQQ root-only secret %s\n' "$RANDOM" >"$WORK/secret"
  chmod 0600 "$WORK/secret"
  for mode in layer-link config-link index-link blobs-link sha256-link layer-fifo layer-device docker-subdir-link; do
    note "image directory with: $mode"
    rm -rf "$WORK/img" "$WORK/elsewhere"
    cp -r "$DEMO_IMAGE" "$WORK/img"
    case $mode in
      layer-link) ln -sf "$WORK/secret" "$(demo_blob "$WORK/img" 0)" ;;
      config-link) ln -sf "$WORK/secret" "$(demo_blob "$WORK/img" config)" ;;
      index-link) mv "$WORK/img/index.json" "$WORK/index.json"; ln -s "$WORK/index.json" "$WORK/img/index.json" ;;
      # A complete, valid copy of the blobs elsewhere: followed, the import would succeed.
      blobs-link) mv "$WORK/img/blobs" "$WORK/elsewhere"; ln -s "$WORK/elsewhere" "$WORK/img/blobs" ;;
      sha256-link) mv "$WORK/img/blobs/sha256" "$WORK/elsewhere"; ln -s "$WORK/elsewhere" "$WORK/img/blobs/sha256" ;;
      layer-fifo) local b; b=$(demo_blob "$WORK/img" 1); rm "$b"; mkfifo "$b" ;;
      layer-device) local b; b=$(demo_blob "$WORK/img" 1); rm "$b"; ln -s /dev/zero "$b" ;;
      docker-subdir-link)
        rm -rf "$WORK/img"; mkdir -p "$WORK/img" "$WORK/elsewhere"
        make_docker_archive "$WORK/d.tar" plain >/dev/null
        tar -C "$WORK/img" -xf "$WORK/d.tar"
        mv "$WORK/img/bbbb" "$WORK/elsewhere/bbbb"; ln -s "$WORK/elsewhere/bbbb" "$WORK/img/bbbb" ;;
    esac
    expect_code 6 timeout 60 "$ROLAYER" --store "$STORE" --driver "$DRIVER" import "$WORK/img"
    grep -q -e "symbolic link" -e "FIFO" "$WORK/err" || fail "$mode: the error does not say what the entry is: $(cat "$WORK/err")"
    grep -q "refused" "$WORK/err" || fail "$mode: the error does not say it refused: $(cat "$WORK/err")"
    no_leak
    [ "$(layer_count)" = 0 ] || fail "$mode: a refused import left layers"
  done
  # A plain copy still imports.
  rm -rf "$WORK/img"; cp -r "$DEMO_IMAGE" "$WORK/img"
  expect_code 0 R import "$WORK/img"
}

# Item 5: skopeo's dir: layout (version, manifest.json, blobs named by hex) is read.
t_import_skopeo_dir() {
  need skopeo skopeo
  read -r -a diffs <<<"$(demo_diff_ids)"
  local want; want=$(chain_of "${diffs[@]}")
  skopeo --insecure-policy copy -q "oci:$DEMO_IMAGE:latest" "dir:$WORK/sd"
  [ -f "$WORK/sd/version" ] || fail "skopeo wrote no dir: layout"
  expect_code 0 R import "$WORK/sd"
  [ "$(cat "$WORK/out")" = "$want" ] || fail "skopeo dir: layout: $(cat "$WORK/out") != $want"
  rmi_all
  # A damaged dir: layout is damaged (not "unsupported"): bytes appended to a layer blob.
  local blob; blob=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]+"/manifest.json")); print(sys.argv[1]+"/"+m["layers"][0]["digest"].split(":")[1])' "$WORK/sd")
  printf 'x' >>"$blob"
  expect_code 4 R import "$WORK/sd"
  grep -q -e "digest mismatch" -e "larger than" "$WORK/err" || fail "damaged dir: layout: $(cat "$WORK/err")"
  [ "$(layer_count)" = 0 ] || fail "a failed import left layers"
}

# Item 2: export-image writes nothing through links, FIFOs or devices planted in its target.
t_export_image_links() {
  mkdir -p "$WORK/x" && echo x >"$WORK/x/x"
  make_tar "$WORK/x" "$WORK/x.tar"
  local x; x=$(R register "$WORK/x.tar")
  local hex; hex=$(R inspect --json "$x" | python3 -c 'import json,sys; print(json.load(sys.stdin)["diff_id"][7:])')
  for mode in blobs-link sha256-link blob-link blob-fifo-link blob-fifo index-link index-fifo layout-link layout-device; do
    note "export-image target with: $mode"
    rm -rf "$WORK/t" "$WORK/other"; rm -f "$WORK/victim" "$WORK/fifo"
    mkdir -p "$WORK/t" "$WORK/other"
    printf 'victim\n' >"$WORK/victim"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$WORK/t/oci-layout"
    mkfifo "$WORK/fifo"
    case $mode in
      blobs-link) ln -s "$WORK/other" "$WORK/t/blobs" ;;
      sha256-link) mkdir "$WORK/t/blobs"; ln -s "$WORK/other" "$WORK/t/blobs/sha256" ;;
      blob-link) mkdir -p "$WORK/t/blobs/sha256"; ln -s "$WORK/victim" "$WORK/t/blobs/sha256/$hex" ;;
      blob-fifo-link) mkdir -p "$WORK/t/blobs/sha256"; ln -s "$WORK/fifo" "$WORK/t/blobs/sha256/$hex" ;;
      blob-fifo) mkdir -p "$WORK/t/blobs/sha256"; mkfifo "$WORK/t/blobs/sha256/$hex" ;;
      index-link) printf '{"manifests":[]}' >"$WORK/victim"; ln -s "$WORK/victim" "$WORK/t/index.json" ;;
      index-fifo) ln -s "$WORK/fifo" "$WORK/t/index.json" ;;
      layout-link) printf '{"imageLayoutVersion":"1.0.0"}' >"$WORK/victim"; rm "$WORK/t/oci-layout"; ln -s "$WORK/victim" "$WORK/t/oci-layout" ;;
      layout-device) rm "$WORK/t/oci-layout"; ln -s /dev/zero "$WORK/t/oci-layout" ;;
    esac
    local before; before=$(cat "$WORK/victim")
    expect_code 6 timeout 60 "$ROLAYER" --store "$STORE" --driver "$DRIVER" export-image "$x" "$WORK/t"
    grep -q -e "symbolic link" -e "FIFO" "$WORK/err" || fail "$mode: the error does not say what it found: $(cat "$WORK/err")"
    grep -q "refused" "$WORK/err" || fail "$mode: the error does not say it refused: $(cat "$WORK/err")"
    [ -z "$(ls -A "$WORK/other")" ] || fail "$mode: written through a link: $(ls -A "$WORK/other")"
    [ "$(cat "$WORK/victim")" = "$before" ] || fail "$mode: the link's target changed"
    [ ! -e "$WORK/t/index.json" ] || [ -L "$WORK/t/index.json" ] || fail "$mode: an index.json was written"
  done
  # An ordinary target still works.
  rm -rf "$WORK/t"
  expect_code 0 R export-image "$x" "$WORK/t"
  [ -f "$WORK/t/index.json" ] && [ -f "$WORK/t/blobs/sha256/$hex" ] || fail "export-image into a new directory"
}

# Item 8: a failing export-image leaves no half-written layout; text that is not UTF-8 in
# --ref/--arch/--os is refused up front (exit 2), not an internal error after the blobs.
t_export_image_atomic() {
  mkdir -p "$WORK/a" "$WORK/b"
  make_tree "$WORK/a" atomic
  echo "top layer" >"$WORK/b/top.txt"
  make_tar "$WORK/a" "$WORK/a.tar"; make_tar "$WORK/b" "$WORK/b.tar"
  local a b
  a=$(R register "$WORK/a.tar")
  b=$(R register --parent "$a" "$WORK/b.tar")
  for opt in ref arch os; do
    expect_code 2 R export-image "$b" "$WORK/l-$opt" "--$opt" $'caf\xe9'
    grep -q "not UTF-8" "$WORK/err" || fail "--$opt not UTF-8: $(cat "$WORK/err")"
    [ ! -e "$WORK/l-$opt" ] || fail "--$opt not UTF-8 left $(find "$WORK/l-$opt")"
  done
  expect_code 2 R export-image "$b" "$WORK/l-ctl" --ref $'a\033[31mb'
  [ ! -e "$WORK/l-ctl" ] || fail "a refused --ref left a layout"
  # A damaged lower layer: the top's blob may be written before the failure; nothing stays.
  local marker; marker=$(tr -d '\n' <"$WORK/a/etc/marker.txt")
  local stored; stored=$(find_stored_marker "$marker")
  [ -n "$stored" ] || fail "cannot find the stored copy of the marker file"
  chmod u+w "$stored"
  flip_byte "$stored" "$marker"
  expect_code 4 R export-image "$b" "$WORK/new"
  [ ! -e "$WORK/new" ] || fail "a failed export-image left a layout: $(find "$WORK/new")"
  mkdir "$WORK/empty"
  expect_code 4 R export-image "$b" "$WORK/empty"
  [ -z "$(ls -A "$WORK/empty")" ] || fail "a failed export-image left files in an empty directory: $(find "$WORK/empty")"
  # An existing layout keeps exactly what it had.
  mkdir -p "$WORK/c" && echo c >"$WORK/c/c" && make_tar "$WORK/c" "$WORK/c.tar"
  local c; c=$(R register "$WORK/c.tar")
  expect_code 0 R export-image "$c" "$WORK/lay"
  (cd "$WORK/lay" && find . -type f | sort | xargs sha256sum) >"$WORK/lay.before"
  expect_code 4 R export-image "$b" "$WORK/lay" --ref other
  (cd "$WORK/lay" && find . -type f | sort | xargs sha256sum) >"$WORK/lay.after"
  cmp -s "$WORK/lay.before" "$WORK/lay.after" || fail "a failed export-image changed the existing layout: $(diff "$WORK/lay.before" "$WORK/lay.after")"
}

# make_named_tar OUT NAME...: a tar whose files have the given names (bytes: \xNN escapes are
# decoded), each holding "MARKERDATA-<n>-" repeated.
make_named_tar() {
  python3 - "$@" <<'EOF'
import io, sys, tarfile
out, names = sys.argv[1], sys.argv[2:]
with tarfile.open(out, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as t:
    for n, name in enumerate(names):
        raw = name.encode().decode("unicode_escape").encode("latin-1")
        data = b"MARKERDATA-%d-" % n * 50
        ti = tarfile.TarInfo(raw.decode("utf-8", "surrogateescape")); ti.size = len(data); ti.mtime = 1700000000
        t.addfile(ti, io.BytesIO(data))
EOF
}

# damage_stored N: flips a byte of the stored copy of file N of make_named_tar (dir driver).
damage_stored() {
  local f; f=$(grep -rl --exclude='metadata.db*' -F "MARKERDATA-$1-" "$STORE" | head -1)
  [ -n "$f" ] || fail "cannot find the stored file $1"
  chmod u+w "$f"
  flip_byte "$f" "MARKERDATA-$1-"
}

# Item 8: JSON output with text that is not UTF-8 (Latin-1 names, a store path): valid JSON,
# the value with U+FFFD for display and "<key>_b64" with the exact bytes.
t_json_not_utf8() {
  make_named_tar "$WORK/l1.tar" 'etc/caf\xe9-name.txt' 'etc/plain.txt'
  local id; id=$(R register "$WORK/l1.tar")
  damage_stored 0
  expect_code 4 R verify --json
  python3 - "$WORK/out" <<'EOF' || fail "verify --json with a Latin-1 name: $(cat "$WORK/out" "$WORK/err")"
import base64, json, sys
j = json.load(open(sys.argv[1]))
r = j[0]
assert r["ok"] is False, r
assert base64.b64decode(r["path_b64"]).endswith(b"caf\xe9-name.txt"), r
assert "\ufffd" in r["path"], r
assert "error_b64" not in r or b"caf\xe9" in base64.b64decode(r["error_b64"]), r
EOF
  expect_code 4 R verify
  grep -q 'caf\\xe9-name.txt' "$WORK/out" || fail "verify does not show the name escaped: $(cat "$WORK/out")"
  # A store whose path is not UTF-8.
  local S2=$WORK/st$'\xe9'
  local id2; id2=$("$ROLAYER" --store "$S2" --driver "$DRIVER" register "$WORK/l1.tar")
  "$ROLAYER" --store "$S2" --driver "$DRIVER" inspect --json "$id2" >"$WORK/i.json" || fail "inspect --json on a store whose path is not UTF-8"
  python3 - "$WORK/i.json" <<'EOF' || fail "inspect --json: $(cat "$WORK/i.json")"
import base64, json, sys
j = json.load(open(sys.argv[1]))
vals = [base64.b64decode(v) for k, v in j["metadata"].items() if k.endswith("_b64")]
assert any(b"st\xe9" in v for v in vals), j["metadata"]
EOF
  "$ROLAYER" --store "$S2" --driver "$DRIVER" ls --json >"$WORK/l.json" || fail "ls --json on that store"
  "$ROLAYER" --store "$S2" --driver "$DRIVER" verify --json >"$WORK/v.json" || fail "verify --json on that store"
  python3 -c 'import json,sys; json.load(open(sys.argv[1])); json.load(open(sys.argv[2]))' "$WORK/l.json" "$WORK/v.json" || fail "not JSON"
}

# Control characters in names and messages never reach the terminal raw.
t_terminal_escapes() {
  make_named_tar "$WORK/e.tar" 'etc/\x1b]0;pwned\x07-\x1b[31mred' 'etc/ok.txt'
  local id; id=$(R register "$WORK/e.tar")
  damage_stored 0
  expect_code 4 R verify
  cat "$WORK/out" "$WORK/err" >"$WORK/all"
  ! grep -q $'[\x1b\x07]' "$WORK/all" || fail "verify printed a raw control character: $(cat -v "$WORK/all")"
  grep -q -F '\x1b]0;pwned\x07-\x1b[31mred' "$WORK/out" || fail "verify does not show the escaped name: $(cat "$WORK/out")"
  R inspect "$id" >"$WORK/insp" 2>&1
  ! grep -q $'[\x1b\x07]' "$WORK/insp" || fail "inspect printed a raw control character"
  # An error message that quotes the user's or the image's text.
  expect_code 3 R import "$DEMO_IMAGE:"$'\x1b[31mnope\x07'
  ! grep -q $'[\x1b\x07]' "$WORK/err" || fail "an error printed a raw control character: $(cat -v "$WORK/err")"
  grep -q -F '\x1b[31mnope\x07' "$WORK/err" || fail "the error does not show the escaped text: $(cat "$WORK/err")"
  # JSON output is ASCII: control characters as \u escapes.
  expect_code 4 R verify --json
  ! grep -q $'[\x1b\x07]' "$WORK/out" || fail "verify --json printed a raw control character"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert "\x1b" in j[0]["path"], j' "$WORK/out" || fail "verify --json path"
}

# Item 6: deeply nested JSON (index, manifest, config, docker save manifest.json, an existing
# layout's index.json) is refused with a message, never a crash.
t_deep_json() {
  for where in index-annotation config docker-manifest; do
    note "deep JSON in: $where"
    rm -rf "$WORK/img"; cp -r "$DEMO_IMAGE" "$WORK/img"
    python3 - "$WORK/img" "$where" <<'EOF'
import hashlib, json, os, sys
d, where = sys.argv[1], sys.argv[2]
deep = "[" * 400000 + "]" * 400000
bp = lambda g: os.path.join(d, "blobs", "sha256", g.split(":")[1])
idx = json.load(open(os.path.join(d, "index.json")))
if where == "index-annotation":
    t = json.dumps(idx).replace('"annotations": {', '"annotations": {"deep": %s, ' % deep, 1)
    open(os.path.join(d, "index.json"), "w").write(t)
elif where == "config":
    md = idx["manifests"][0]; m = json.load(open(bp(md["digest"])))
    c = json.dumps(json.load(open(bp(m["config"]["digest"])))).replace('"rootfs"', '"deep": %s, "rootfs"' % deep, 1).encode()
    cd = "sha256:" + hashlib.sha256(c).hexdigest(); open(bp(cd), "wb").write(c)
    m["config"]["digest"] = cd; m["config"]["size"] = len(c)
    mb = json.dumps(m).encode(); mdg = "sha256:" + hashlib.sha256(mb).hexdigest(); open(bp(mdg), "wb").write(mb)
    md["digest"] = mdg; md["size"] = len(mb)
    json.dump(idx, open(os.path.join(d, "index.json"), "w"))
else:
    os.unlink(os.path.join(d, "index.json")); os.unlink(os.path.join(d, "oci-layout"))
    open(os.path.join(d, "manifest.json"), "w").write('[{"Config": "x.json", "Layers": [], "RepoTags": %s}]' % deep)
EOF
    expect_code 6 R import "$WORK/img"
    grep -q "nested deeper than" "$WORK/err" || fail "$where: $(cat "$WORK/err")"
    tar -C "$WORK/img" -cf "$WORK/img.tar" .
    expect_code 6 R import "$WORK/img.tar"
    grep -q "nested deeper than" "$WORK/err" || fail "$where (tar): $(cat "$WORK/err")"
  done
  [ "$(layer_count)" = 0 ] || fail "a refused import left layers"
  # export-image into a layout whose index.json is deeply nested.
  mkdir -p "$WORK/x" && echo x >"$WORK/x/x" && make_tar "$WORK/x" "$WORK/x.tar"
  local x; x=$(R register "$WORK/x.tar")
  mkdir "$WORK/lay"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$WORK/lay/oci-layout"
  python3 -c 'import sys; open(sys.argv[1],"w").write("{\"manifests\":[{\"annotations\":{\"a\":" + "["*400000 + "]"*400000 + "}}]}")' "$WORK/lay/index.json"
  expect_code 6 R export-image "$x" "$WORK/lay"
  grep -q "nested deeper than" "$WORK/err" || fail "export-image: $(cat "$WORK/err")"
  [ ! -e "$WORK/lay/blobs" ] || fail "export-image wrote blobs into a layout it refused"
}

# No external program ever runs on input data: lzop, lrzip, grzip (which libarchive decodes only
# through a helper program) are refused with a message; fake helpers on PATH must never run.
t_no_external_filters() {
  mkdir -p "$WORK/bin"
  for p in lzop lrzip grzip lzip lz4 zstd gzip bzip2 xz uudecode compress; do
    printf '#!/bin/sh\necho "$0 $*" >>"%s"\ncat >/dev/null\nexit 1\n' "$WORK/marker" >"$WORK/bin/$p"
    chmod +x "$WORK/bin/$p"
  done
  python3 - "$WORK" <<'EOF'
import os, sys
w = sys.argv[1]
junk = os.urandom(300)
open(w + "/x.lzo", "wb").write(b"\x89LZO\x00\r\n\x1a\n\x10\x30\x20\xa0\x09\x40\x01\x05\x03\x00\x00\x01\x00\x00\x81\xa4" + b"\0" * 16 + junk)
open(w + "/x.lrz", "wb").write(b"LRZI\x00\x06" + b"\0" * 8 + junk)
open(w + "/x.grz", "wb").write(b"GRZipII\x00\x02\x04:)" + junk)
EOF
  for f in x.lzo x.lrz x.grz; do
    note "compressed input: $f"
    expect_code 6 env PATH="$WORK/bin:$PATH" "$ROLAYER" --store "$STORE" --driver "$DRIVER" register "$WORK/$f"
    grep -q "not supported" "$WORK/err" || fail "$f: $(cat "$WORK/err")"
    [ ! -e "$WORK/marker" ] || fail "$f: an external program ran: $(cat "$WORK/marker")"
    expect_code 6 env PATH="$WORK/bin:$PATH" "$ROLAYER" --store "$STORE" --driver "$DRIVER" import "$WORK/$f"
    grep -q "not supported" "$WORK/err" || fail "$f (import): $(cat "$WORK/err")"
    [ ! -e "$WORK/marker" ] || fail "$f (import): an external program ran: $(cat "$WORK/marker")"
  done
  # The in-process decoders still work, with the fake helpers first on PATH.
  mkdir -p "$WORK/t" && echo hello >"$WORK/t/hello" && make_tar "$WORK/t" "$WORK/t.tar"
  local want; want=$(sha256 "$WORK/t.tar")
  for c in gzip bzip2 xz zstd; do
    command -v "$c" >/dev/null || continue
    "$c" -c "$WORK/t.tar" >"$WORK/t.tar.$c"
    [ "$(env PATH="$WORK/bin:$PATH" "$ROLAYER" --store "$STORE" --driver "$DRIVER" register "$WORK/t.tar.$c")" = "$want" ] ||
      fail "$c input no longer registers"
  done
  tar -C "$DEMO_IMAGE" -czf "$WORK/img.tgz" .
  expect_code 0 env PATH="$WORK/bin:$PATH" "$ROLAYER" --store "$STORE" --driver "$DRIVER" import "$WORK/img.tgz"
  [ ! -e "$WORK/marker" ] || fail "an external program ran: $(cat "$WORK/marker")"
}

# Decompression limits: --max-uncompressed, --max-ratio and their environment variables.
t_decompression_limits() {
  # 24 MiB of zeros in a gzip'd tar (made as a stream: only the small .tgz touches the disk).
  python3 - "$WORK/z.tgz" <<'EOF'
import io, sys, tarfile
class Zeros(io.RawIOBase):
    def __init__(self, n): self.n = n
    def readable(self): return True
    def readinto(self, b):
        k = min(len(b), self.n); b[:k] = bytes(k); self.n -= k; return k
with tarfile.open(sys.argv[1], "w:gz", compresslevel=1) as t:
    ti = tarfile.TarInfo("zeros"); ti.size = 24 << 20; ti.mtime = 1700000000
    t.addfile(ti, Zeros(ti.size))
EOF
  expect_code 6 R --max-ratio 100 register "$WORK/z.tgz"
  grep -q "decompression bomb" "$WORK/err" || fail "--max-ratio: $(cat "$WORK/err")"
  expect_code 6 env ROLAYER_MAX_RATIO=100 "$ROLAYER" --store "$STORE" --driver "$DRIVER" register "$WORK/z.tgz"
  grep -q "ROLAYER_MAX_RATIO" "$WORK/err" || fail "ROLAYER_MAX_RATIO: $(cat "$WORK/err")"
  expect_code 6 R --max-uncompressed 1M register "$WORK/z.tgz"
  grep -q "more than 1.0 MiB" "$WORK/err" || fail "--max-uncompressed: $(cat "$WORK/err")"
  expect_code 6 env ROLAYER_MAX_UNCOMPRESSED=1M "$ROLAYER" --store "$STORE" --driver "$DRIVER" register "$WORK/z.tgz"
  expect_code 2 R --max-ratio lots register "$WORK/z.tgz"
  [ "$(layer_count)" = 0 ] || fail "a refused input left a layer"
  # A compressed image archive, decompressed once under the same limits.
  tar -C "$DEMO_IMAGE" -czf "$WORK/img.tgz" .
  expect_code 6 R --max-uncompressed 4K import "$WORK/img.tgz"
  grep -q "more than 4.0 KiB" "$WORK/err" || fail "import --max-uncompressed: $(cat "$WORK/err")"
  # Within the limits (the default ratio is 4096): accepted.
  expect_code 0 R register "$WORK/z.tgz"
  expect_code 0 R import "$WORK/img.tgz"
}

# A compressed image archive is decompressed once, not once per layer: it is opened once.
t_import_archive_one_pass() {
  need strace strace
  tar -C "$DEMO_IMAGE" -czf "$WORK/img.tgz" .
  strace -f -qq -e trace=open,openat -o "$WORK/trace" "$ROLAYER" --store "$STORE" --driver "$DRIVER" import "$WORK/img.tgz" >"$WORK/out" 2>"$WORK/err" ||
    { grep -q "ptrace" "$WORK/err" && skip "strace cannot trace here: $(head -1 "$WORK/err")"; fail "import under strace: $(cat "$WORK/err")"; }
  local n; n=$(grep -c -F "img.tgz\"" "$WORK/trace" || true)
  [ "$n" = 1 ] || fail "the archive was opened $n times (once per pass): $(grep -F img.tgz "$WORK/trace")"
}

t_deep_nesting_linear() {
  # Registering n nested directories costs system calls in proportion to n (the dir driver
  # keeps parent descriptors; it used to walk from the 64th cached component for every level,
  # n^2 openat calls). Counted with strace, so the verdict does not depend on the machine's load:
  # 4n levels must cost well under 16 times (quadratic) what n levels cost; linear gives ~4.
  need strace strace
  python3 - "$WORK" <<'PY'
import io, sys, tarfile
for n in (450, 1800):
    with tarfile.open(f"{sys.argv[1]}/deep{n}.tar", "w", format=tarfile.PAX_FORMAT) as t:
        p = ""
        for i in range(n):
            p = p + "/d" if i else "d"
            ti = tarfile.TarInfo(p); ti.type = tarfile.DIRTYPE; ti.mode = 0o755; t.addfile(ti)
        data = b"deep"; ti = tarfile.TarInfo(p + "/leaf"); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
PY
  local n calls=()
  for n in 450 1800; do
    strace -f -qq -c -o "$WORK/sum$n" "$ROLAYER" --store "$WORK/s$n" --driver "$DRIVER" register "$WORK/deep$n.tar" >"$WORK/id$n" 2>"$WORK/err" ||
      { grep -q "ptrace" "$WORK/err" && skip "strace cannot trace here: $(head -1 "$WORK/err")"; fail "register under strace: $(cat "$WORK/err")"; }
    calls+=("$(awk '$NF == "total" { print $(NF-2) }' "$WORK/sum$n")")
    # The layer is whole: its export is the registered tar, byte for byte.
    "$ROLAYER" --store "$WORK/s$n" export "$(cat "$WORK/id$n")" | cmp - "$WORK/deep$n.tar" || fail "export of the $n-deep layer differs"
  done
  echo "system calls: 450 levels ${calls[0]}, 1800 levels ${calls[1]}"
  [ -n "${calls[0]}" ] && [ -n "${calls[1]}" ] || fail "no strace summary: $(cat "$WORK/sum450")"
  [ "${calls[1]}" -lt $((8 * calls[0])) ] || fail "deep nesting is not linear: ${calls[0]} -> ${calls[1]} system calls"
}

# An image with Env, Cmd, labels and history, as an OCI layout named REF (argv 2) and as a
# docker save archive tagged TAG (argv 3). Prints the config's digest and the top ChainID.
make_rich_image() {
  python3 - "$@" <<'EOF'
import gzip, hashlib, io, json, os, sys, tarfile
out, ref, tag = sys.argv[1], sys.argv[2], sys.argv[3]
sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
def tarb(files):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files:
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000000; ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()
l1 = tarb([("etc/base", b"base\n" * 50)])
l2 = tarb([("app/run", b"#!/bin/sh\necho hi\n")])
# Keys in an order and spacing no generator would reproduce: the bytes must come back as they are.
cfg = ('{"created":"2024-01-02T03:04:05Z", "architecture":"amd64","os":"linux",'
       '"config":{"Env":["PATH=/usr/bin","HELLO=world"],"Cmd":["/app/run","--flag"],"Labels":{"org.example.team":"rolayer"}},'
       '"rootfs":{"type":"layers","diff_ids":%s},'
       '"history":[{"created_by":"ADD base"},{"created_by":"COPY app","comment":"kept"}]}') % json.dumps([sha(l1), sha(l2)])
cfg = cfg.encode()
os.makedirs(out + "/oci/blobs/sha256")
def blob(data):
    open(out + "/oci/blobs/sha256/" + sha(data)[7:], "wb").write(data)
    return {"digest": sha(data), "size": len(data)}
c1 = gzip.compress(l1, mtime=0)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **blob(cfg)),
    "layers": [dict(mediaType="application/vnd.oci.image.layer.v1.tar+gzip", **blob(c1)),
               dict(mediaType="application/vnd.oci.image.layer.v1.tar", **blob(l2))]}).encode()
idx = {"schemaVersion": 2, "manifests": [dict(mediaType="application/vnd.oci.image.manifest.v1+json",
       annotations={"org.opencontainers.image.ref.name": ref}, **blob(man))]}
json.dump(idx, open(out + "/oci/index.json", "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(out + "/oci/oci-layout", "w"))
with tarfile.open(out + "/save.tar", "w") as t:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    add(sha(cfg)[7:] + ".json", cfg)
    add("l1/layer.tar", l1); add("l2/layer.tar", l2)
    add("manifest.json", json.dumps([{"Config": sha(cfg)[7:] + ".json", "RepoTags": [tag], "Layers": ["l1/layer.tar", "l2/layer.tar"]}]).encode())
c = sha((sha(l1) + " " + sha(l2)).encode())
open(out + "/config.json", "wb").write(cfg)
print(sha(cfg), c)
EOF
}

# config_of LAYOUT: the digest of the config of LAYOUT's only manifest.
config_of() {
  python3 -c 'import json,sys,os; d=sys.argv[1]; b=lambda g: os.path.join(d,"blobs","sha256",g.split(":")[1]); i=json.load(open(os.path.join(d,"index.json"))); assert len(i["manifests"])==1; print(json.load(open(b(i["manifests"][0]["digest"])))["config"]["digest"])' "$1"
}

# Issue 16: import keeps the image (manifest and config as found, under its names); export-image
# of its chain writes the original config bytes; images lists it; rmi removes it.
t_import_keeps_image() {
  local cfg top
  read -r cfg top <<<"$(make_rich_image "$WORK/img" "example.com/team/app:1.0" "app:2")"
  expect_code 0 R import "$WORK/img/oci"
  [ "$(cat "$WORK/out")" = "$top" ] || fail "import printed $(cat "$WORK/out"), expected $top"
  R images --json >"$WORK/images.json"
  [ "$(json '[(i["name"], i["config_digest"], i["top_chain_id"]) for i in j]' "$WORK/images.json")" = \
    "[('example.com/team/app:1.0', '$cfg', '$top')]" ] || { cat "$WORK/images.json" >&2; fail "images does not list the imported image"; }
  R images >"$WORK/images.txt"
  grep -q "example.com/team/app:1.0" "$WORK/images.txt" || fail "images (table) does not list the imported image"
  # export-image of the chain: the original config, byte for byte; layers uncompressed.
  expect_code 0 R export-image "$top" "$WORK/e1"
  [ "$(config_of "$WORK/e1")" = "$cfg" ] || fail "export-image wrote config $(config_of "$WORK/e1"), not the image's $cfg"
  cmp "$WORK/e1/blobs/sha256/${cfg#sha256:}" "$WORK/img/config.json" || fail "the exported config is not byte-identical"
  # And by name.
  expect_code 0 R export-image --image example.com/team/app:1.0 "$WORK/e2"
  [ "$(config_of "$WORK/e2")" = "$cfg" ] || fail "export-image --image: another config"
  expect_code 3 R export-image --image nosuch "$WORK/e3"
  [ ! -e "$WORK/e3" ] || fail "a failed export-image left a directory"
  expect_code 2 R export-image --image example.com/team/app:1.0 "$WORK/e3" --arch s390x
  # skopeo reads it, when present.
  if command -v skopeo >/dev/null 2>&1; then
    skopeo inspect --config "oci:$WORK/e1:latest" >"$WORK/sc.json" || fail "skopeo cannot read the exported layout"
    [ "$(json 'j["config"]["Env"][1]' "$WORK/sc.json")" = "HELLO=world" ] || fail "skopeo reads another Env"
  fi
  # Re-importing the export: the same chain, the same config (one more name: latest).
  expect_code 0 R import "$WORK/e1"
  [ "$(cat "$WORK/out")" = "$top" ] || fail "re-import of the export"
  R images --json >"$WORK/images.json"
  [ "$(json 'sorted((i["name"], i["config_digest"]) for i in j)' "$WORK/images.json")" = \
    "[('example.com/team/app:1.0', '$cfg'), ('latest', '$cfg')]" ] || { cat "$WORK/images.json" >&2; fail "re-import: images"; }
  expect_code 0 R rmi latest
  # A docker save archive: kept under its RepoTag, normalised (app:2 = docker.io/library/app:2).
  expect_code 0 R import "$WORK/img/save.tar"
  [ "$(cat "$WORK/out")" = "$top" ] || fail "docker archive import: another chain"
  R images --json >"$WORK/images.json"
  [ "$(json '[i["config_digest"] for i in j if i["name"] == "docker.io/library/app:2"]' "$WORK/images.json")" = "['$cfg']" ] ||
    { cat "$WORK/images.json" >&2; fail "the docker archive's image is not kept under docker.io/library/app:2"; }
  expect_code 0 R export-image --image app:2 "$WORK/e4"
  [ "$(config_of "$WORK/e4")" = "$cfg" ] || fail "export-image of the docker archive's image: another config"
  # rmi removes the images; the layers go with the last one.
  expect_code 0 R rmi example.com/team/app:1.0
  [ "$(layer_count)" = 2 ] || fail "rmi of one image removed layers another image holds"
  expect_code 0 R rmi app:2
  grep -q "removed $top" "$WORK/out" || { cat "$WORK/out" >&2; fail "rmi of the last image did not remove the chain"; }
  [ "$(layer_count)" = 0 ] || fail "rmi left layers"
  [ "$(image_names | wc -w)" = 0 ] || fail "rmi left images: $(image_names)"
  expect_code 3 R rmi app:2
}

# Issue 16: rm of a layer that a kept image holds is refused (it would leave an image whose
# layers are missing), unless --force.
t_rm_kept_image() {
  local cfg top
  read -r cfg top <<<"$(make_rich_image "$WORK/img" "example.com/team/app:1.0" "app:2")"
  expect_code 0 R import "$WORK/img/oci"
  expect_code 2 R rm "$top"
  grep -q "example.com/team/app:1.0" "$WORK/err" || fail "the refusal does not name the image: $(cat "$WORK/err")"
  grep -q "rmi" "$WORK/err" || fail "the refusal does not say to rmi: $(cat "$WORK/err")"
  [ "$(layer_count)" = 2 ] || fail "a refused rm removed layers"
  R images --json >"$WORK/images.json"
  [ "$(json '[i["size"] is not None for i in j]' "$WORK/images.json")" = "[True]" ] || fail "the image's layers went missing"
  # Several arguments: the refused one is reported, the others are handled, exit is the first failure's.
  local x; mkdir -p "$WORK/x" && echo x >"$WORK/x/x" && make_tar "$WORK/x" "$WORK/x.tar"
  x=$(R register "$WORK/x.tar")
  expect_code 2 R rm "$top" "$x"
  grep -q "removed $x" "$WORK/out" || fail "rm stopped at the refused layer"
  # --force drops the reference anyway (documented), and rmi still cleans up the image.
  expect_code 0 R rm --force "$top"
  grep -q "removed $top" "$WORK/out" || fail "rm --force did not remove the chain"
  expect_code 0 R rmi example.com/team/app:1.0
  [ "$(image_names | wc -w)" = 0 ] || fail "rmi left the image"
}

# Issue 16: `import -` reads an archive from standard input (a pipe, a file, compressed or not,
# docker save or OCI layout tar): the same chain and kept image as the import of the file; a pipe
# is copied into an unnamed file in the store's tmp folder, nowhere else; a terminal, empty input
# and garbage are clean errors that leave nothing registered.
t_import_stdin() {
  read -r -a diffs <<<"$(make_docker_archive "$WORK/d.tar" plain)"
  local want; want=$(chain_of "${diffs[@]}")
  local top; top=$(R import "$WORK/d.tar")
  [ "$top" = "$want" ] || fail "import of the file: $top != $want"
  rmi_all
  [ "$(layer_count)" = 0 ] || fail "rmi left layers"
  # docker save archive through a pipe (its manifest.json is the last member).
  cat "$WORK/d.tar" | R import - >"$WORK/out" || fail "cat archive | import -"
  [ "$(cat "$WORK/out")" = "$want" ] || fail "cat docker archive | import - printed $(cat "$WORK/out"), want $want"
  [ "$(image_names)" = "docker.io/demo/docker:v1" ] || fail "import - kept the image as: $(image_names)"
  [ -z "$(ls -A "$STORE/tmp")" ] || fail "import - left files in the store's tmp folder: $(ls -A "$STORE/tmp")"
  rmi_all
  # Compressed, through a pipe, with $TMPDIR unusable: the copy goes to the store's tmp folder.
  gzip -c "$WORK/d.tar" >"$WORK/d.tar.gz"
  [ "$(gzip -dc "$WORK/d.tar.gz" | gzip -c | TMPDIR=$WORK/nonexistent R import -)" = "$want" ] || fail "gzip'd archive through a pipe"
  rmi_all
  # A regular file on standard input (read in place), gzip'd too, and -:REF.
  [ "$(R import - <"$WORK/d.tar")" = "$want" ] || fail "import - < file"
  [ "$(TMPDIR=$WORK/nonexistent R import - <"$WORK/d.tar.gz")" = "$want" ] || fail "import - < file.gz"
  [ "$(cat "$WORK/d.tar" | R import -:demo/docker:v1)" = "$want" ] || fail "import -:TAG"
  cat "$WORK/d.tar" | expect_code 3 R import -:demo/docker:v2
  rmi_all
  # An OCI layout tar (plain and zstd) gives what the import of the file gives.
  read -r -a diffs <<<"$(demo_diff_ids)"
  want=$(chain_of "${diffs[@]}")
  tar -C "$DEMO_IMAGE" -cf "$WORK/layout.tar" .
  [ "$(R import "$WORK/layout.tar")" = "$want" ] || fail "import of the layout tar"
  rmi_all
  [ "$(cat "$WORK/layout.tar" | R import -)" = "$want" ] || fail "cat layout.tar | import -"
  rmi_all
  if command -v zstd >/dev/null; then
    [ "$(zstd -q -c "$WORK/layout.tar" | R import -:latest)" = "$want" ] || fail "zstd layout tar through a pipe"
    rmi_all
  fi
  # While the pipe is read, the copy is an unnamed file of the store's tmp folder (O_TMPFILE).
  mkfifo "$WORK/fifo"
  "$ROLAYER" --store "$STORE" --driver "$DRIVER" import - <"$WORK/fifo" >"$WORK/out" 2>"$WORK/err" &
  local pid=$!
  exec 3>"$WORK/fifo"
  head -c 10240 "$WORK/layout.tar" >&3
  local seen="" i
  for i in $(seq 100); do
    seen=$(ls -l "/proc/$pid/fd" 2>/dev/null | grep -F "$STORE/tmp/" || true)
    [ -n "$seen" ] && break
    sleep 0.1
  done
  tail -c +10241 "$WORK/layout.tar" >&3
  exec 3>&-
  wait "$pid" || fail "import - from the FIFO: $(cat "$WORK/err")"
  [ "$(cat "$WORK/out")" = "$want" ] || fail "import - from the FIFO printed $(cat "$WORK/out")"
  [ -n "$seen" ] || fail "no copy of standard input open in $STORE/tmp"
  echo "$seen" | grep -q "(deleted)" || fail "the copy of standard input has a name: $seen"
  [ -z "$(ls -A "$STORE/tmp")" ] || fail "import - left files in the store's tmp folder"
  rmi_all
  [ "$(layer_count)" = 0 ] || fail "rmi left layers"
  # Garbage, an empty input, a truncated archive: clean errors, nothing registered or kept.
  head -c 200000 /dev/urandom >"$WORK/garbage"
  cat "$WORK/garbage" | expect_code 6 R import -
  grep -q "standard input" "$WORK/err" || fail "the garbage error does not name standard input: $(cat "$WORK/err")"
  expect_code 6 R import - <"$WORK/garbage"
  expect_code 6 R import - </dev/null
  grep -q "empty" "$WORK/err" || fail "empty input: $(cat "$WORK/err")"
  : | expect_code 6 R import -
  head -c 3000 "$WORK/d.tar" | gzip -c | expect_code 6 R import -
  head -c 5000 "$WORK/layout.tar" | expect_code 6 R import -
  [ "$(layer_count)" = 0 ] || fail "a failed import - left layers"
  [ "$(image_names | wc -w)" = 0 ] || fail "a failed import - kept an image"
  [ -z "$(ls -A "$STORE/tmp")" ] || fail "a failed import - left files in the store's tmp folder"
  # A terminal on standard input: a usage error, no waiting for keystrokes.
  python3 - "$ROLAYER" --store "$STORE" --driver "$DRIVER" import - >"$WORK/tty" 2>&1 <<'EOF' || fail "pty run: $(cat "$WORK/tty")"
import os, pty, subprocess, sys
m, s = pty.openpty()
r = subprocess.run(sys.argv[1:], stdin=s, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
print(r.returncode)
print(r.stderr.decode())
EOF
  [ "$(head -1 "$WORK/tty")" = 2 ] || fail "import - on a terminal: $(cat "$WORK/tty")"
  grep -q "terminal" "$WORK/tty" || fail "import - on a terminal does not say so: $(cat "$WORK/tty")"
}

# Issue 18: import --jobs N stages the layers on N threads and commits them in chain order. The
# result must be what --jobs 1 (one register after the other) gives: the same ChainIDs, rows,
# exports, driver trees; the same errors, with nothing of the image left behind.
layer_rows() { R ls --json | python3 -c 'import json,sys; print(sorted((o["chain_id"],o["diff_id"],o["parent"],o["depth"],o["size"],o["diff_size"],o["retained"]) for o in json.load(sys.stdin)))'; }
# The driver's tree of every layer, by ChainID (names, kinds, modes, owners, sizes, link counts,
# and the times of the layer's own files; not the times of what the store itself made).
layer_trees() {
  python3 - "$STORE" "$DRIVER" <<'EOF'
import os, sqlite3, stat, sys
store, driver = sys.argv[1], sys.argv[2]
db = sqlite3.connect(store + "/metadata.db")
for chain, cache in sorted(db.execute("select chain_id, cache_id from layers")):
    root = os.path.join(store, driver, cache)
    print(chain)
    for d, dirs, files in sorted(os.walk(root)):
        for n in sorted(dirs + files):
            p = os.path.join(d, n); st = os.lstat(p); rel = os.path.relpath(p, root)
            if rel in ("meta/parent", "parent"):
                continue
            # (a whiteout object is the store's: its time is when it was made)
            t = st.st_mtime if rel.startswith("diff/") and stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) else ""
            print(rel, oct(st.st_mode), st.st_uid, 0 if stat.S_ISDIR(st.st_mode) else st.st_size, st.st_nlink, t)
EOF
}
store_leftovers() { (cd "$STORE" && find tmp pending "$DRIVER" -mindepth 1 -maxdepth 1 ! -name .format ! -name .empty | sort); }

# import_jobs_1 IMG WANT: `import --jobs 1` of IMG prints the ChainID WANT; its layer rows and
# driver trees are kept in $WORK/rows1 and $WORK/trees1 for import_like_jobs_1.
import_jobs_1() {
  local img=$1 want=$2
  expect_code 0 R import --jobs 1 "$img"
  [ "$(cat "$WORK/out")" = "$want" ] || fail "--jobs 1 printed $(cat "$WORK/out"), expected $want"
  layer_rows >"$WORK/rows1"
  layer_trees >"$WORK/trees1"
}

# import_like_jobs_1 IMG WANT JOBS: `import [--jobs JOBS]` of IMG prints the ChainID WANT and
# gives the layer rows and driver trees that `--jobs 1` gave ($WORK/rows1, $WORK/trees1).
import_like_jobs_1() {
  local img=$1 want=$2 jobs=$3
  expect_code 0 R import ${jobs:+--jobs $jobs} "$img"
  [ "$(cat "$WORK/out")" = "$want" ] || fail "--jobs ${jobs:-default} printed $(cat "$WORK/out"), expected $want"
  layer_rows >"$WORK/rows"
  diff "$WORK/rows1" "$WORK/rows" >&2 || fail "--jobs ${jobs:-default}: rows differ from --jobs 1"
  layer_trees >"$WORK/trees"
  diff "$WORK/trees1" "$WORK/trees" >&2 || fail "--jobs ${jobs:-default}: driver trees differ from --jobs 1"
}

t_import_parallel() {
  local img=$WORK/img.tar
  read -r -a diffs <<<"$(python3 "$TOOLS_DIR/tests/staged_image.py" "$img" plain)"
  local want; want=$(chain_of "${diffs[@]}")
  import_jobs_1 "$img" "$want"
  [ "$(wc -l <"$WORK/trees1")" -gt 6 ] || fail "layer_trees saw no driver data"
  rmi_all
  [ "$(layer_count)" = 0 ] || fail "rmi left layers"
  local jobs
  for jobs in 2 4 ""; do
    import_like_jobs_1 "$img" "$want" "$jobs"
    expect_code 0 R verify
    local c="" d
    for d in "${diffs[@]}"; do
      if [ -z "$c" ]; then c=$d; else c=$(chain_id "$c" "$d"); fi
      R export "$c" -o "$WORK/l.tar"
      [ "$(sha256 "$WORK/l.tar")" = "$d" ] || fail "--jobs ${jobs:-default}: layer $c does not export to its DiffID"
    done
    [ -z "$(cd "$STORE" && find tmp pending -mindepth 1)" ] || fail "temporary files left: $(store_leftovers)"
    rmi_all
    [ "$(layer_count)" = 0 ] || fail "rmi left layers"
    [ -z "$(store_leftovers)" ] || fail "driver data left after rmi: $(store_leftovers)"
  done
  # The same failures as --jobs 1, and nothing of the image left (not even staged layers).
  local mode code
  for mode in badlink bad-diffid; do
    python3 "$TOOLS_DIR/tests/staged_image.py" "$WORK/$mode.tar" "$mode" >/dev/null
    code=4; [ "$mode" = badlink ] && code=6
    expect_code $code R import --jobs 1 "$WORK/$mode.tar"
    cp "$WORK/err" "$WORK/err1"
    expect_code $code R import --jobs 4 "$WORK/$mode.tar"
    diff "$WORK/err1" "$WORK/err" >&2 || fail "$mode: --jobs 4 reports differently from --jobs 1"
    [ "$(layer_count)" = 0 ] || fail "$mode: a failed import left layers"
    [ -z "$(store_leftovers)" ] || fail "$mode: a failed import left files: $(store_leftovers)"
  done
  expect_code 2 R import --jobs 0 "$img"
  expect_code 2 R import --jobs x "$img"
}

# Issue 18: layers without directory entries (bazel rules_oci, ko): staged in parallel, their
# implicit directories fixed up from the parent chain at commit; the same result as --jobs 1.
t_import_parallel_nodirs() {
  local img=$WORK/img.tar
  read -r -a diffs <<<"$(python3 "$TOOLS_DIR/tests/staged_image.py" "$img" nodirs)"
  local want; want=$(chain_of "${diffs[@]}")
  import_jobs_1 "$img" "$want"
  # (the base layer's usr/ and the implicit ones above it, with the base layer's mode)
  [ "$DRIVER" != dir ] || [ "$(grep -c '^diff/usr 0o40711 ' "$WORK/trees1")" -ge 3 ] || fail "no implicit usr/ like the base's"
  rmi_all
  import_like_jobs_1 "$img" "$want" 4
  expect_code 0 R verify
  [ -z "$(cd "$STORE" && find tmp pending -mindepth 1)" ] || fail "temporary files left: $(store_leftovers)"
  [ -z "$(cd "$STORE" && find "$DRIVER" -path '*/meta/staged-*')" ] || fail "staged lists left in committed layers"
}

# Issue 18: verify -j N checks layers in parallel; output and exit code are those of -j 1.
t_verify_jobs() {
  local i ids=()
  for i in 1 2 3 4 5 6; do
    make_tree "$WORK/t$i" "v$i"
    make_tar "$WORK/t$i" "$WORK/t$i.tar"
    ids+=("$(R register "$WORK/t$i.tar")")
  done
  local j
  for j in 1 2 4; do
    expect_code 0 R verify -j $j
    cp "$WORK/out" "$WORK/ok$j.out"; cp "$WORK/err" "$WORK/ok$j.err"
  done
  cmp "$WORK/ok1.out" "$WORK/ok2.out" && cmp "$WORK/ok1.out" "$WORK/ok4.out" && cmp "$WORK/ok1.err" "$WORK/ok4.err" ||
    fail "verify -j N does not print what -j 1 prints"
  [ "$(grep -c '  ok$' "$WORK/ok1.out")" = 6 ] || fail "verify -j 1: $(cat "$WORK/ok1.out")"
  # Damage layers 2 and 5: same lines, same order, same exit code (4) for every -j; also --json,
  # an unknown ChainID among the arguments, and a single layer.
  local marker stored
  for i in 2 5; do
    marker=$(tr -d '\n' <"$WORK/t$i/etc/marker.txt")
    stored=$(find_stored_marker "$marker")
    [ -n "$stored" ] || fail "cannot find the stored copy of marker $i"
    chmod u+w "$stored"
    flip_byte "$stored" "$marker"
  done
  local unknown args
  unknown="sha256:$(printf '%064d' 7)"
  for args in "" "--json" "${ids[4]} $unknown ${ids[0]} ${ids[1]}"; do
    # shellcheck disable=SC2086
    expect_code 4 R verify -j 1 $args
    cp "$WORK/out" "$WORK/bad1.out"; cp "$WORK/err" "$WORK/bad1.err"
    for j in 2 3 8; do
      # shellcheck disable=SC2086
      expect_code 4 R verify -j $j $args
      cmp -s "$WORK/bad1.out" "$WORK/out" || { diff "$WORK/bad1.out" "$WORK/out" >&2; fail "verify -j $j $args: stdout differs from -j 1"; }
      cmp -s "$WORK/bad1.err" "$WORK/err" || { diff "$WORK/bad1.err" "$WORK/err" >&2; fail "verify -j $j $args: stderr differs from -j 1"; }
    done
  done
  expect_code 4 R verify -j 1
  grep -q "${ids[1]}  DAMAGED" "$WORK/out" || fail "damaged layer 2 not reported: $(cat "$WORK/out")"
  grep -q "${ids[4]}  DAMAGED" "$WORK/out" || fail "damaged layer 5 not reported: $(cat "$WORK/out")"
  [ "$(grep -c '  ok$' "$WORK/out")" = 4 ] || fail "undamaged layers: $(cat "$WORK/out")"
  expect_code 3 R verify -j 2 "$unknown"
  expect_code 0 R verify -j 2 "${ids[0]}"
  expect_code 2 R verify -j 0
}

# Issue 18 session 8: verify's default -j is the CPUs this process may run on, at most 4 (it was
# every CPU, uncapped; each layer under way holds about 5 MiB, so 8 jobs reached 64 MiB of peak
# RSS). verify -j 4 and the default stay within 64 MiB on layers of big and small files.
t_verify_rss() {
  need_rss_measure "$ROLAYER"
  local i
  for i in 1 2 3 4 5 6 7 8; do
    mkdir -p "$WORK/v$i/big" "$WORK/v$i/small"
    head -c $((12 << 20)) /dev/urandom >"$WORK/v$i/big/a.bin"
    head -c $((3 << 20)) /dev/urandom | split -b 3000 - "$WORK/v$i/small/f"
    make_tar "$WORK/v$i" "$WORK/v$i.tar"
    rm -rf "$WORK/v$i"
    R register "$WORK/v$i.tar" >/dev/null || fail "register layer $i"
    rm -f "$WORK/v$i.tar"
  done
  local rss args
  for args in "-j 4" ""; do
    # shellcheck disable=SC2086
    expect_code 0 /usr/bin/time -f 'RSS %M' -o "$WORK/time" "$ROLAYER" --store "$STORE" --driver "$DRIVER" verify $args
    [ "$(grep -c '  ok$' "$WORK/out")" = 8 ] || fail "verify $args: $(cat "$WORK/out")"
    rss=$(peak_rss_kib "$WORK/time")
    note "verify ${args:-(default -j)} of 8 layers of 15 MiB: peak RSS $((rss / 1024)) MiB"
    [ "$rss" -le $((64 * 1024)) ] || fail "verify $args: peak RSS $rss KiB > 64 MiB"
  done
}

# Issue 18 session 6: --pack-small (the dir driver's payload pack): kept in the store, export
# byte-exact from the pack, verify finds a changed tree file although export (from the pack)
# does not, off stops packing new layers.
t_pack_small() {
  make_tree "$WORK/tree" packsmall
  make_tar "$WORK/tree" "$WORK/a.tar"
  expect_code 2 R --pack-small 17M ls
  expect_code 2 R --pack-small lots ls
  expect_code 0 R --pack-small 32K register "$WORK/a.tar"
  local id; id=$(cat "$WORK/out")
  local packs; packs=$(find "$STORE/dir" -path '*/meta/pack' -type f | wc -l)
  [ "$packs" = 1 ] || fail "no pack written with --pack-small 32K ($packs)"
  expect_code 0 R export "$id" -o "$WORK/out.tar"
  cmp "$WORK/a.tar" "$WORK/out.tar" || fail "export from the pack is not byte-exact"
  expect_code 0 R verify
  # A changed tree file (same size): export still reads the registered bytes from the pack,
  # verify reads the tree and reports it.
  local f; f=$(find "$STORE/dir" -path '*/diff/*' -type f -size -32k -size +0 | head -1)
  [ -n "$f" ] || fail "no small file in the layer"
  chmod u+w "$f"
  printf 'Z' | dd of="$f" bs=1 seek=0 conv=notrunc 2>/dev/null
  expect_code 0 R export "$id" -o "$WORK/out2.tar"
  cmp "$WORK/a.tar" "$WORK/out2.tar" || fail "export from the pack changed"
  expect_code 4 R verify
  grep -q "$id  DAMAGED" "$WORK/out" || fail "verify did not report the changed tree file: $(cat "$WORK/out")"
  # The setting is kept: a new layer without the option is packed too; off stops it.
  make_tree "$WORK/tree2" packsmall2
  make_tar "$WORK/tree2" "$WORK/b.tar"
  expect_code 0 R register "$WORK/b.tar"
  packs=$(find "$STORE/dir" -path '*/meta/pack' -type f | wc -l)
  [ "$packs" = 2 ] || fail "the setting was not kept ($packs packs)"
  make_tree "$WORK/tree3" packsmall3
  make_tar "$WORK/tree3" "$WORK/c.tar"
  expect_code 0 R --pack-small off register "$WORK/c.tar"
  packs=$(find "$STORE/dir" -path '*/meta/pack' -type f | wc -l)
  [ "$packs" = 2 ] || fail "--pack-small off still packed ($packs packs)"
}

declare -F "t_$TEST" >/dev/null || fail "no such test: $TEST"
"t_$TEST"
echo "PASS [$TEST/$DRIVER]"
