#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Images in parallel (issue 18): `rolayer import --jobs 1` (one register after the other) against
# `rolayer import` with its default --jobs (the number of CPUs: layers staged at once, committed
# in chain order), on a generated image of LAYERS layers of the bench's PROFILE workload
# (default 6 × medium, ~1.2 GiB of uncompressed tar in a docker-save archive), and
# `rolayer verify -j 1` against `-j N` on the store that import made.
#
#   bash bench/image.sh [--build DIR] [--reps N] [--layers N] [--profile P] [--work DIR] [--keep]
#
# --build: a build with tools/rolayer and bench/rolayer-bench-gen (default: builds Release into
# ${TMPDIR:-/tmp}/rolayer-bench-build, as run.sh does). Rounds are interleaved (serial, parallel,
# serial, …); each import goes to a fresh store on its own new loop-mounted ext4 (bench/fresh_fs.sh:
# a store made right after `rm -rf` of the last one pays ext4's scan of recently deleted inodes;
# FRESH_FS_MODE=dir keeps the old directory under --work), flushed (sync -f) before every run. Reports best and median wall time and median CPU time (user+sys)
# per variant, and the ratios serial / parallel (the target: >= 1.5 on 2 cores, best wall).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="" REPS=3 LAYERS=6 PROFILE=medium KEEP=0
WORK=${TMPDIR:-/tmp}/rolayer-bench-image
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --layers) LAYERS=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '3,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/image.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$BUILD" ]; then
  BUILD=${TMPDIR:-/tmp}/rolayer-bench-build
  cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DROLAYER_BUILD_BENCH=ON >/dev/null
  cmake --build "$BUILD" --target rolayer_cli rolayer-bench-gen >/dev/null
fi
ROLAYER=$BUILD/tools/rolayer
GEN=$BUILD/bench/rolayer-bench-gen
[ -x "$ROLAYER" ] && [ -x "$GEN" ] || { echo "bench/image.sh: no $ROLAYER or $GEN" >&2; exit 2; }

mkdir -p "$WORK"
# shellcheck source=bench/fresh_fs.sh
. "$SRC/bench/fresh_fs.sh"
cleanup() {
  fresh_fs_cleanup "$WORK"
  [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
IMG=$WORK/image.tar
if [ ! -f "$IMG" ]; then
  for i in $(seq 1 "$LAYERS"); do "$GEN" "$PROFILE" "$i" "$WORK/l$i.tar" 2>/dev/null; done
  python3 - "$IMG" "$WORK" "$LAYERS" <<'PY'
import hashlib, json, os, sys, tarfile
out, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
layers = [os.path.join(work, "l%d.tar" % i) for i in range(1, n + 1)]
def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return "sha256:" + h.hexdigest()
cfg = json.dumps({"architecture": "amd64", "os": "linux",
                  "rootfs": {"type": "layers", "diff_ids": [sha(p) for p in layers]}}).encode()
cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
names = ["%d/layer.tar" % i for i in range(1, n + 1)]
with tarfile.open(out, "w") as t:
    def add(name, data):
        import io
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    add(cfg_name, cfg)
    for name, p in zip(names, layers):
        t.add(p, arcname=name)
    add("manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": ["bench/image:1"], "Layers": names}]).encode())
PY
  rm -f "$WORK"/l*.tar
fi
cat "$IMG" >/dev/null  # page-cached, as run.sh's inputs are
echo "image: $(du -h "$IMG" | cut -f1) in $LAYERS layers ($PROFILE), $(nproc) CPUs, $REPS rounds" >&2

RES=$WORK/results.txt
: >"$RES"
run() {  # run NAME CMD...: one timed process, "<name> <wall> <user> <sys> <maxrss KiB>" to RES
  local name=$1; shift
  sync -f "$WORK/fs"
  /usr/bin/time -f "$name %e %U %S %M" -a -o "$RES" "$@" >/dev/null
}
for r in $(seq 1 "$REPS"); do
  for v in serial parallel; do
    fresh_fs "$WORK/fs" "$WORK" "$WORK" || { echo "bench/image.sh: SKIP: cannot make a fresh file system (see above; FRESH_FS_MODE=dir measures in $WORK as it is)" >&2; exit 77; }
    if [ $v = serial ]; then run import-serial "$ROLAYER" -q --store "$WORK/fs/store" import --jobs 1 "$IMG"
    else run import-parallel "$ROLAYER" -q --store "$WORK/fs/store" import "$IMG"; fi
  done
  run verify-serial "$ROLAYER" -q --store "$WORK/fs/store" verify -j 1
  run verify-parallel "$ROLAYER" -q --store "$WORK/fs/store" verify
done
python3 - "$RES" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) == 5 and f[0].count("-") == 1:
        rows.setdefault(f[0], []).append((float(f[1]), float(f[2]) + float(f[3]), int(f[4])))
print("| run | best wall s | median wall s | median CPU s | max RSS MiB |")
print("| --- | ---: | ---: | ---: | ---: |")
for k in ("import-serial", "import-parallel", "verify-serial", "verify-parallel"):
    v = rows.get(k, [])
    if v:
        print("| %s | %.2f | %.2f | %.2f | %.0f |" % (k, min(x[0] for x in v), statistics.median(x[0] for x in v),
              statistics.median(x[1] for x in v), max(x[2] for x in v) / 1024))
for what in ("import", "verify"):
    s, p = rows.get(what + "-serial"), rows.get(what + "-parallel")
    if s and p:
        print("%s: serial / parallel = %.2f (best wall), %.2f (median wall); CPU parallel / serial = %.2f" % (
            what, min(x[0] for x in s) / min(x[0] for x in p),
            statistics.median(x[0] for x in s) / statistics.median(x[0] for x in p),
            statistics.median(x[1] for x in p) / statistics.median(x[1] for x in s)))
PY
