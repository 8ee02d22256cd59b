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
# repositories every run; wall, user and system time and peak RSS from /usr/bin/time):
#   pull:  rolayer pull            vs  skopeo copy docker://… oci:… + rolayer import
#                                  vs  docker pull (dockerd 20.10, overlay2)
#   push:  rolayer push (gzip)     vs  skopeo copy oci:… docker://… (of the same image)
# dockerd is started here (tests/docker/dockerd.sh: a private data root, exec root and socket,
# no network set-up) and stopped by its pid; each docker pull is cold (docker rmi and image prune
# before it). Its CPU time is the daemon's (utime+stime of dockerd and its reaped children, from
# /proc, over the pull) plus the client's; its RSS column is the daemon's peak since its start.
# Where dockerd cannot start (not root, no docker.io) that row is left out with the reason;
# BENCH_DOCKER=0 leaves it out on purpose.
# skopeo runs with an empty blob-info cache each time (a private mount namespace with a tmpfs on
# /var/lib/containers/cache as root, else a private $HOME): with the shared cache it would mount
# blobs it saw in another repository of the registry instead of uploading them.
# Goals (issue 16): pull <= 0.8x the skopeo + import pair and faster than docker pull; push
# faster than skopeo copy; peak RSS flat with image size (run it with two sizes). Everything is
# removed at the end. No test runs this; it asserts nothing.
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
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cleanup() {
  if declare -F dockerd_stop >/dev/null; then dockerd_stop; fi
  # (wait's status is the registry's 143: under set -e a failing last command of the trap would
  # end it before the folder goes.)
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
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
        # The folder first, as image builders write it (a layer that leaves it out depends on its
        # parent: its staged apply is redone at commit, docs/store.md "Staged registers").
        ti = tarfile.TarInfo("d%d" % i); ti.type = tarfile.DIRTYPE; ti.mode = 0o755; ti.mtime = 1700000000
        t.addfile(ti)
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
# skopeo with an empty blob-info cache (see above): a script, so that /usr/bin/time can run it.
skopeo_fresh=$WORK/skopeo-fresh
if [ "$(id -u)" = 0 ] && [ -d /var/lib/containers/cache ] && command -v unshare >/dev/null; then
  printf '#!/bin/sh\nexec unshare -m --propagation private sh -c '"'"'mount -t tmpfs tmpfs /var/lib/containers/cache && exec skopeo "$@"'"'"' sh "$@"\n' >"$skopeo_fresh"
else
  printf '#!/bin/sh\nrm -rf "%s/skopeo-home" && mkdir -p "%s/skopeo-home" && HOME="%s/skopeo-home" XDG_DATA_HOME= exec skopeo "$@"\n' \
    "$WORK" "$WORK" "$WORK" >"$skopeo_fresh"
fi
chmod +x "$skopeo_fresh"
"$skopeo_fresh" copy -q --dest-tls-verify=false "oci:$WORK/image:bench" "docker://$REG/bench/image:v1" >/dev/null

DOCKER_WHY=
if [ "${BENCH_DOCKER:-1}" = 0 ]; then
  DOCKER_WHY="BENCH_DOCKER=0"
else
  source "$HERE/../tests/docker/dockerd.sh"
  if ! dockerd_start "$WORK/dockerd" overlay2 2>"$WORK/dockerd.err"; then
    DOCKER_WHY=$(tr '\n' ' ' <"$WORK/dockerd.err" | cut -c1-300)
    [ -n "$DOCKER_WHY" ] || DOCKER_WHY="dockerd did not start"
  fi
fi
CLK_TCK=$(getconf CLK_TCK)
# utime+stime of a process and its reaped children, in clock ticks.
proc_cpu() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }

# timed NAME CMD...: appends "NAME wall user sys peak_kib" to results.
timed() {
  local name=$1
  shift
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }
  echo "$name $(tail -n 1 "$WORK/time")" >>"$WORK/results"
}
# timed_docker_pull: a cold docker pull; its CPU is the daemon's plus the client's.
timed_docker_pull() {
  docker rmi -f "$REG/bench/image:v1" >/dev/null 2>&1 || true
  docker image prune -af >/dev/null 2>&1 || true
  sync
  local c0 c1
  c0=$(proc_cpu "$DOCKERD_PID")
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" docker pull -q "$REG/bench/image:v1" >/dev/null 2>"$WORK/stderr" ||
    { cat "$WORK/stderr" >&2; exit 1; }
  c1=$(proc_cpu "$DOCKERD_PID")
  local hwm; hwm=$(awk '/VmHWM/ {print $2}' "/proc/$DOCKERD_PID/status")
  read -r wall user sys _ < <(tail -n 1 "$WORK/time")
  echo "docker_pull $wall $(python3 -c "print($user + ($c1 - $c0) / $CLK_TCK)") $sys $hwm" >>"$WORK/results"
}
: >"$WORK/results"
for r in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/s1" "$WORK/s2" "$WORK/oci"
  sync
  timed rolayer_pull "$ROLAYER" -q --store "$WORK/s1" pull "$REG/bench/image:v1"
  rm -rf "$WORK/s1"
  sync
  timed skopeo_copy_pull "$skopeo_fresh" copy -q --src-tls-verify=false "docker://$REG/bench/image:v1" "oci:$WORK/oci:v1"
  timed rolayer_import "$ROLAYER" -q --store "$WORK/s2" import "$WORK/oci:v1"
  if [ -z "$DOCKER_WHY" ]; then timed_docker_pull; fi
  top=$("$ROLAYER" -q --store "$WORK/s2" ls --json | python3 -c 'import json,sys; print(max(json.load(sys.stdin), key=lambda l: l["depth"])["chain_id"])')
  sync
  timed rolayer_push "$ROLAYER" -q --store "$WORK/s2" push "$top" "$REG/push-rolayer-$r/image:v1"
  sync
  timed skopeo_copy_push "$skopeo_fresh" copy -q --dest-tls-verify=false "oci:$WORK/oci:v1" "docker://$REG/push-skopeo-$r/image:v1"
done
if [ -z "$DOCKER_WHY" ]; then
  docker rmi -f "$REG/bench/image:v1" >/dev/null 2>&1 || true
  dockerd_stop
fi
python3 - "$WORK/results" "$LAYERS" "$MIB" "$DOCKER_WHY" <<'EOF'
import statistics, sys
res = {}
for line in open(sys.argv[1]):
    name, sec, user, sys_, kib = line.split()
    res.setdefault(name, []).append((float(sec), float(user) + float(sys_), int(kib)))
med = {k: statistics.median(s for s, _, _ in v) for k, v in res.items()}
cpu = {k: statistics.median(c for _, c, _ in v) for k, v in res.items()}
rss = {k: max(m for _, _, m in v) for k, v in res.items()}
print(f"image: {sys.argv[2]} layers x {sys.argv[3]} MiB (uncompressed), runs: {len(res['rolayer_pull'])} (medians)")
print(f"  {'':18s} {'wall':>8s}   {'CPU (user+sys)':>14s}   {'peak RSS':>10s}")
for k in med:
    note = "  (dockerd's peak since start)" if k == "docker_pull" else ""
    print(f"  {k:18s} {med[k]:8.2f} s {cpu[k]:12.2f} s   {rss[k] / 1024:8.1f} MiB{note}")
if sys.argv[4]:
    print(f"  docker_pull        skipped: {sys.argv[4]}")
pair, pair_cpu = med["skopeo_copy_pull"] + med["rolayer_import"], cpu["skopeo_copy_pull"] + cpu["rolayer_import"]
print(f"pull: rolayer pull / (skopeo copy + rolayer import) = {med['rolayer_pull'] / pair:.2f} wall, "
      f"{cpu['rolayer_pull'] / pair_cpu:.2f} CPU  (goal <= 0.80)")
if "docker_pull" in med:
    print(f"pull: rolayer pull / docker pull = {med['rolayer_pull'] / med['docker_pull']:.2f} wall, "
          f"{cpu['rolayer_pull'] / cpu['docker_pull']:.2f} CPU  (goal < 1)")
print(f"push: rolayer push / skopeo copy = {med['rolayer_push'] / med['skopeo_copy_push']:.2f} wall, "
      f"{cpu['rolayer_push'] / cpu['skopeo_copy_push']:.2f} CPU  (goal < 1)")
EOF
