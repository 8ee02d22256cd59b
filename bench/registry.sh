#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Pull and push against a loopback registry: rolayer against skopeo, in the same run, as ratios.
#
# usage: bash bench/registry.sh ROLAYER [LAYERS [MIB_PER_LAYER [RUNS]]]
#   ROLAYER        the rolayer binary (e.g. build/release/tools/rolayer)
#   LAYERS         layers in the image (default 4)
#   MIB_PER_LAYER  uncompressed MiB per layer (default 64): half random, half text (gzip ~2:1)
#   RUNS           repetitions, the median is reported (default 3)
#
# Starts Debian's docker-registry on a free 127.0.0.1 port with a temporary storage folder, puts
# a generated OCI image there with skopeo, then times (each in its own process, fresh stores and
# repositories every run; wall time and peak RSS from /usr/bin/time):
#   pull:  rolayer pull            vs  skopeo copy docker://… oci:… + rolayer import
#   push:  rolayer push (gzip)     vs  skopeo copy oci:… docker://… (of the same image)
# Goals (issue 16): pull <= 0.8x the skopeo + import pair; push faster than skopeo copy; peak RSS
# flat with image size (run it with two sizes). Everything is removed at the end. No test runs
# this; it asserts nothing.
set -euo pipefail
ROLAYER=$(readlink -f "$1")
LAYERS=${2:-4}
MIB=${3:-64}
RUNS=${4:-3}
for t in docker-registry skopeo python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 1; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rolayer-bench-registry.XXXXXX")
REG_PID=
cleanup() {
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/config.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
EOF
docker-registry serve "$WORK/config.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
REG=127.0.0.1:$port
for _ in $(seq 1 100); do python3 -c "import urllib.request; urllib.request.urlopen('http://$REG/v2/')" 2>/dev/null && break; sleep 0.1; done

echo "making an image: $LAYERS layers of $MIB MiB" >&2
python3 - "$WORK/image" "$LAYERS" "$MIB" <<'EOF'
import gzip, hashlib, io, json, os, sys, tarfile
out, n, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(out + "/blobs/sha256/" + d, "wb").write(data)
    return "sha256:" + d
layers, diff_ids = [], []
for i in range(n):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for k in range(mib):
            if k % 2 == 0:
                data = os.urandom(1 << 20)
            else:
                data = (("layer %d file %d " % (i, k)) * 70000).encode()[: 1 << 20]
            ti = tarfile.TarInfo("d%d/f%05d" % (i, k)); ti.size = len(data); ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
    raw = b.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    c = gzip.compress(raw, compresslevel=1, mtime=0)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(c), "size": len(c)})
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config), "size": len(config)},
    "layers": layers}).encode()
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": blob(manifest), "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "bench"}}]},
    open(out + "/index.json", "w"))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
EOF
skopeo copy -q --dest-tls-verify=false "oci:$WORK/image:bench" "docker://$REG/bench/image:v1" >/dev/null

# timed NAME CMD...: appends "NAME seconds peak_kib" to results.
timed() {
  local name=$1
  shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }
  echo "$name $(cat "$WORK/time")" >>"$WORK/results"
}
: >"$WORK/results"
for r in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/s1" "$WORK/s2" "$WORK/oci"
  timed rolayer_pull "$ROLAYER" -q --store "$WORK/s1" pull "$REG/bench/image:v1"
  timed skopeo_copy_pull skopeo copy -q --src-tls-verify=false "docker://$REG/bench/image:v1" "oci:$WORK/oci:v1"
  timed rolayer_import "$ROLAYER" -q --store "$WORK/s2" import "$WORK/oci:v1"
  top=$("$ROLAYER" -q --store "$WORK/s2" ls --json | python3 -c 'import json,sys; print(max(json.load(sys.stdin), key=lambda l: l["depth"])["chain_id"])')
  timed rolayer_push "$ROLAYER" -q --store "$WORK/s2" push "$top" "$REG/push-rolayer-$r/image:v1"
  timed skopeo_copy_push skopeo copy -q --dest-tls-verify=false "oci:$WORK/oci:v1" "docker://$REG/push-skopeo-$r/image:v1"
done
python3 - "$WORK/results" "$LAYERS" "$MIB" <<'EOF'
import statistics, sys
res = {}
for line in open(sys.argv[1]):
    name, sec, kib = line.split()
    res.setdefault(name, []).append((float(sec), int(kib)))
med = {k: statistics.median(s for s, _ in v) for k, v in res.items()}
rss = {k: max(m for _, m in v) for k, v in res.items()}
print(f"image: {sys.argv[2]} layers x {sys.argv[3]} MiB (uncompressed), runs: {len(res['rolayer_pull'])}")
for k in med:
    print(f"  {k:18s} {med[k]:8.2f} s   peak RSS {rss[k] / 1024:8.1f} MiB")
pair = med["skopeo_copy_pull"] + med["rolayer_import"]
print(f"pull: rolayer pull / (skopeo copy + rolayer import) = {med['rolayer_pull'] / pair:.2f}  (goal <= 0.80)")
print(f"push: rolayer push / skopeo copy = {med['rolayer_push'] / med['skopeo_copy_push']:.2f}  (goal < 1)")
EOF
