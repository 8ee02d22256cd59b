#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# rolayer export-image --format docker-archive (issue 18).
#   docker_archive_test.sh ROLAYER roundtrip   the archive's layout, stdout = file, rolayer import
#                                              of it gives the same chain and image ID
#   docker_archive_test.sh ROLAYER tampered    rolayer import of the archive with a layer blob
#                                              changed (a valid tar, or a broken one): exit 4,
#                                              "digest mismatch", nothing left in the store, with
#                                              --jobs 1 and --jobs 2 (the uncompressed blob is
#                                              checked through its DiffID, not hashed twice)
#   docker_archive_test.sh ROLAYER docker      docker load (dockerd 20.10, overlay2, private) of
#                                              it: same image ID and RootFS layers; skips (77)
#                                              with the reason where dockerd cannot start
set -euo pipefail
R=$1 test=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d /tmp/rolayer-archive-test.XXXXXX)
cleanup() {
  set +e
  if declare -f dockerd_stop >/dev/null; then dockerd_stop; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL [$test]: $*" >&2; exit 1; }

# Three layers: files, a directory, a symlink; the second changes a file of the first.
python3 - "$work" <<'EOF'
import io, sys, tarfile
d = sys.argv[1]
def layer(name, files):
    with tarfile.open(f"{d}/{name}.tar", "w", format=tarfile.PAX_FORMAT) as t:
        for path, data in files:
            if data is None:
                i = tarfile.TarInfo(path); i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
            elif isinstance(data, tuple):
                i = tarfile.TarInfo(path); i.type = tarfile.SYMTYPE; i.linkname = data[0]; t.addfile(i)
            else:
                i = tarfile.TarInfo(path); i.size = len(data); i.mode = 0o644; i.mtime = 1700000000
                t.addfile(i, io.BytesIO(data))
layer("l1", [("etc", None), ("etc/os-release", b"ID=test\n"), ("bin", None), ("bin/tool", bytes(range(256)) * 700)])
layer("l2", [("etc", None), ("etc/os-release", b"ID=test2\n"), ("etc/link", ("os-release",))])
layer("l3", [("data", None), ("data/big", b"x" * 1000001)])
EOF
S="$work/store"
c1=$("$R" --store "$S" register "$work/l1.tar" | tail -1)
c2=$("$R" --store "$S" register --parent "$c1" "$work/l2.tar" | tail -1)
c3=$("$R" --store "$S" register --parent "$c2" "$work/l3.tar" | tail -1)
[ -n "$c3" ] || fail "register gave no ChainID"

A="$work/img.tar"
id=$("$R" --store "$S" export-image "$c3" "$A" --format docker-archive --tag example.test/rolayer/archive:v1)
case "$id" in sha256:*) ;; *) fail "export-image printed \"$id\", not an image ID" ;; esac
ls -a "$work" | grep -q rolayer- && fail "a temporary file was left next to the archive"

# The layout: manifest.json names the config and the layers (the DiffIDs, in chain order),
# repositories the tag, index.json the OCI manifest; every blob's name is its digest.
python3 - "$A" "$id" "$R" "$S" "$c3" <<'EOF'
import hashlib, json, subprocess, sys, tarfile
a, image_id, R, S, top = sys.argv[1:6]
t = tarfile.open(a)
names = t.getnames()
def rd(n): return t.extractfile(n).read()
for n in names:
    if n.startswith("blobs/sha256/") and t.getmember(n).isfile():
        assert "sha256:" + hashlib.sha256(rd(n)).hexdigest() == "sha256:" + n.split("/")[-1], n
m = json.loads(rd("manifest.json"))
assert len(m) == 1 and m[0]["RepoTags"] == ["example.test/rolayer/archive:v1"], m
assert m[0]["Config"] == "blobs/sha256/" + image_id[7:], m
cfg = json.loads(rd(m[0]["Config"]))
diff_ids = cfg["rootfs"]["diff_ids"]
assert [ "sha256:" + p.split("/")[-1] for p in m[0]["Layers"]] == diff_ids, (m, diff_ids)
# The DiffIDs are the chain's, base first.
chain = json.loads(subprocess.check_output([R, "--store", S, "inspect", "--json", top]))["chain"]
want = [json.loads(subprocess.check_output([R, "--store", S, "inspect", "--json", c]))["diff_id"] for c in chain]
assert diff_ids == want, (diff_ids, want)
assert json.loads(rd("repositories")) == {"example.test/rolayer/archive": {"v1": image_id[7:]}}
idx = json.loads(rd("index.json"))
md = idx["manifests"][0]["digest"]
om = json.loads(rd("blobs/sha256/" + md[7:]))
assert om["config"]["digest"] == image_id and [l["digest"] for l in om["layers"]] == diff_ids
assert json.loads(rd("oci-layout"))["imageLayoutVersion"] == "1.0.0"
EOF

case "$test" in
roundtrip)
  # Standard output gives the same bytes.
  "$R" --store "$S" export-image "$c3" - --format docker-archive --tag example.test/rolayer/archive:v1 >"$work/stdout.tar"
  cmp "$A" "$work/stdout.tar" || fail "the archive on standard output differs from the file"
  # rolayer import of it: the same chain, and exported again the same image ID.
  top=$("$R" --store "$work/store2" import "$A" | tail -1)
  [ "$top" = "$c3" ] || fail "import gave $top, not $c3"
  id2=$("$R" --store "$work/store2" export-image "$top" "$work/again.tar" --format docker-archive)
  [ "$id2" = "$id" ] || fail "re-exported image ID $id2, not $id"
  # A failing export leaves nothing; bad options are usage errors.
  set +e
  "$R" --store "$S" export-image sha256:0000000000000000000000000000000000000000000000000000000000000000 \
    "$work/none.tar" --format docker-archive 2>/dev/null
  rc=$?
  "$R" --store "$S" export-image "$c3" "$work/bad.tar" --format zip 2>/dev/null
  rc2=$?
  "$R" --store "$S" export-image "$c3" "$work/dir" --tag x:y 2>/dev/null
  rc3=$?
  "$R" --store "$S" export-image "$c3" "$work/bad.tar" --format docker-archive --tag "a@sha256:00" 2>/dev/null
  rc4=$?
  set -e
  [ "$rc" = 3 ] || fail "export of a missing chain exited $rc, not 3"
  [ ! -e "$work/none.tar" ] || fail "a failed export left a file"
  [ "$rc2" = 2 ] && [ "$rc3" = 2 ] && [ "$rc4" = 2 ] || fail "bad options exited $rc2/$rc3/$rc4, not 2"
  ls -a "$work" | grep -q rolayer- && fail "a temporary file was left behind"
  echo "PASS [$test]"
  ;;
tampered)
  # tamper ARCHIVE OUT LAYER MODE: OUT is ARCHIVE with layer LAYER's blob (1-based, manifest
  # order) changed in place, same size: MODE content = one payload byte of a file (still a valid
  # tar), header = the first header's checksum (a tar the library refuses).
  tamper() {
    python3 - "$@" <<'EOF'
import json, sys, tarfile
src, out, k, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
t = tarfile.open(src)
name = json.load(t.extractfile("manifest.json"))[0]["Layers"][k - 1]
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as o:
    for m in t.getmembers():
        data = t.extractfile(m).read() if m.isfile() else None
        if m.name == name:
            b = bytearray(data)
            if mode == "content":
                i = b.index(b"xxxxxxxx")
                b[i + 3] = ord("y")
            else:
                b[148] = ord("9") if b[148] != ord("9") else ord("8")
            data = bytes(b)
        o.addfile(m, None if data is None else __import__("io").BytesIO(data))
EOF
  }
  tamper "$A" "$work/content.tar" 3 content
  tamper "$A" "$work/header.tar" 2 header
  for f in content header; do
    for jobs in 1 2; do
      rm -rf "$work/st"
      set +e
      "$R" --store "$work/st" import --jobs "$jobs" "$work/$f.tar" >"$work/out" 2>"$work/err"
      rc=$?
      set -e
      [ "$rc" = 4 ] || fail "$f --jobs $jobs: exit $rc, not 4: $(cat "$work/err")"
      grep -q "digest mismatch" "$work/err" || fail "$f --jobs $jobs: no digest mismatch reported: $(cat "$work/err")"
      n=$("$R" --store "$work/st" ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
      [ "$n" = 0 ] || fail "$f --jobs $jobs: a failed import left $n layers"
      m=$("$R" --store "$work/st" images --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
      [ "$m" = 0 ] || fail "$f --jobs $jobs: a failed import kept $m images"
    done
  done
  # The archive as written imports, with either number of jobs.
  for jobs in 1 2; do
    top=$("$R" --store "$work/ok$jobs" import --jobs "$jobs" "$A" | tail -1)
    [ "$top" = "$c3" ] || fail "--jobs $jobs: import gave $top, not $c3"
  done
  echo "PASS [$test]"
  ;;
docker)
  . "$here/../../tests/docker/dockerd.sh"
  rc=0
  dockerd_start "$work/d" overlay2 || rc=$?
  if [ "$rc" = 77 ]; then
    dockerd_start "$work/d" vfs || rc=$?
    [ "$rc" = 0 ] || exit 77
  elif [ "$rc" != 0 ]; then
    exit 77
  fi
  out=$(docker load -i "$A") || fail "docker load failed: $out"
  echo "$out" | grep -q "Loaded image: example.test/rolayer/archive:v1" || fail "docker load said: $out"
  got=$(docker image inspect --format '{{.Id}}' example.test/rolayer/archive:v1)
  [ "$got" = "$id" ] || fail "docker's image ID is $got, not $id"
  layers=$(docker image inspect --format '{{json .RootFS.Layers}}' example.test/rolayer/archive:v1)
  want=$(tar xOf "$A" "blobs/sha256/${id#sha256:}" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["rootfs"]["diff_ids"], separators=(",", ":")))')
  [ "$layers" = "$want" ] || fail "docker's RootFS layers are $layers, not $want"
  # And back: docker save of it imports to the same chain.
  docker save -o "$work/saved.tar" example.test/rolayer/archive:v1
  top=$("$R" --store "$work/store3" import "$work/saved.tar" | tail -1)
  [ "$top" = "$c3" ] || fail "import of docker save gave $top, not $c3"
  echo "PASS [$test]"
  ;;
*) echo "unknown test $test" >&2; exit 2 ;;
esac
