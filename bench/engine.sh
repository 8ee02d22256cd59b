#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/engine.sh: librolayer's CLI against a real Docker engine on the same machine (issue 18,
# "a real engine as the yardstick"): Debian's docker.io (dockerd 20.10, overlay2), started here
# on a private data root, and `rolayer`, on the same generated image archive.
#
#   bash bench/engine.sh [--dir DIR] [--build DIR] [--rolayer PATH] [--layers N] [--profile P]
#                        [--reps N] [--seed N] [--driver overlay2|vfs] [--fs loop|dir] [--keep]
#                        [--archive FILE] [--report FILE]
#
#   --dir DIR       where the work happens (default: a fresh directory under ${TMPDIR:-/tmp})
#   --build DIR     CMake build directory for rolayer and rolayer-bench (Release; default
#                   ${TMPDIR:-/tmp}/rolayer-engine-build, kept between runs)
#   --rolayer PATH  use this rolayer binary (its rolayer-bench beside it in ../bench/) instead
#   --layers N      layers in the image (default 6)
#   --profile P     bench/gen profile of each layer (default medium: 6 × 174 MiB ≈ 1 GiB)
#   --reps N        interleaved rounds (default 3)
#   --driver D      dockerd's storage driver (default overlay2)
#   --fs loop       (default) each side on its own fresh ext4 file system (a sparse file under
#                   DIR, mkfs.ext4 -i 8192, loop-mounted), made anew for every round: rolayer's
#                   store on one, dockerd's data root on the other (dockerd restarted on it).
#                   Neither side then pays for what an earlier round deleted (ext4 skips
#                   recently deleted inodes when it allocates new ones: a store or image removed
#                   just before a measured command made its inode allocations scan; that was
#                   most of import's system time in session 4). Skips (exit 77) with the reason
#                   where no loop file system can be made.
#   --fs dir        measure on DIR's file system as it is (deletions of earlier rounds included)
#   --archive FILE  measure this docker-archive (one image, tagged rolayer-bench/engine:1, as an
#                   earlier run made it) instead of generating one (--layers/--profile unused)
#
# What is compared, each in its own process, after `sync -f` of its file system:
#   import   `rolayer import ARCHIVE` into a fresh store (durable: every layer is synced)
#            vs `docker load -i ARCHIVE` after `docker rmi` of the image (its layers go too)
#   export   `rolayer export-image --format docker-archive CHAIN FILE` (fsync'd, renamed)
#            vs `docker save -o FILE IMAGE` (not synced)
# For the engine, CPU time is the docker client's plus dockerd's own (utime+stime+cutime+cstime
# from /proc/PID/stat before and after: its re-executed untar helpers count as waited-for
# children). Durability differs: docker writes nothing with fsync on either path, so a
# `sync -f` right after each docker command is timed too and reported beside it ("+ sync").
# Needs root (dockerd), docker.io, python3. Skips (exit 77) with the reason when dockerd
# cannot start here.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/.." && pwd)
dir="" build="${TMPDIR:-/tmp}/rolayer-engine-build" rolayer="" layers=6 profile=medium reps=3 seed=1
driver=overlay2 keep=0 report="" fsmode=loop given_archive=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift ;;
    --build) build=$2; shift ;;
    --rolayer) rolayer=$2; shift ;;
    --layers) layers=$2; shift ;;
    --profile) profile=$2; shift ;;
    --reps) reps=$2; shift ;;
    --seed) seed=$2; shift ;;
    --driver) driver=$2; shift ;;
    --fs) fsmode=$2; shift ;;
    --archive) given_archive=$(realpath "$2"); shift ;;
    --keep) keep=1 ;;
    --report) report=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "engine.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$fsmode" in loop|dir) ;; *) echo "engine.sh: --fs loop|dir" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "engine.sh: run as root (dockerd)" >&2; exit 2; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

made_dir=0
if [ -z "$dir" ]; then dir=$(mktemp -d "${TMPDIR:-/tmp}/rolayer-engine.XXXXXX"); made_dir=1; fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
work="$dir/work"
rm -rf "$work"
mkdir -p "$work"
results="$work/results.jsonl"
: >"$results"
. "$src/tests/docker/dockerd.sh"
# The measured file systems: rolayer's store and export on $rfs, dockerd's data root and its
# save on $dfs (with --fs dir both are directories under $work).
rfs="$work/rolayer-fs" dfs="$work/docker-fs"
cleanup() {
  set +e
  dockerd_stop
  local m
  fresh_fs_cleanup "$dir"
  if [ "$keep" = 0 ]; then rm -rf "$work"; [ "$made_dir" = 1 ] && rmdir "$dir" 2>/dev/null; else echo "engine.sh: kept $work" >&2; fi
  return 0
}
# fresh_fs MNT: MNT empty, on a file system that has seen no deletion (--fs loop: a new ext4,
# as bench/run.sh makes; --fs dir: a fresh directory). Returns 1 with the reason on stderr.
# shellcheck source=bench/fresh_fs.sh
. "$(dirname "${BASH_SOURCE[0]}")/fresh_fs.sh"
FRESH_FS_MODE=$fsmode
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build -------------------------------------------------------------------------------
if [ -z "$rolayer" ]; then
  log "building rolayer and rolayer-bench (Release) in $build"
  gen_args=()
  command -v ninja >/dev/null && gen_args=(-G Ninja)
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$src" -B "$build" "${gen_args[@]}" -DCMAKE_BUILD_TYPE=Release -DROLAYER_BUILD_BENCH=ON \
      -DROLAYER_BUILD_TESTS=OFF -DROLAYER_BUILD_TOOLS=ON >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log" >&2; exit 1; }
  fi
  cmake --build "$build" --target rolayer_cli rolayer-bench rolayer-bench-gen >"$work/build.log" 2>&1 ||
    { cat "$work/build.log" >&2; exit 1; }
  rolayer="$build/tools/rolayer"
fi
bdir=$(cd "$(dirname "$rolayer")/../bench" && pwd)
RB="$bdir/rolayer-bench"
GEN="$bdir/rolayer-bench-gen"

# ---- the image archive ---------------------------------------------------------------------
fs="$work/fs" # the archive (read by both sides, from the page cache) and the generator's scratch
mkdir -p "$fs"
fresh_fs "$rfs" "$dir" "$work" || { echo "engine.sh: SKIP: cannot make a loop-mounted ext4 file system here (see above); --fs dir measures on $dir as it is" >&2; exit 77; }
st0="$fs/source-store"
parent=""
if [ -n "$given_archive" ]; then
  archive=$given_archive
  # The image ID is the config's digest, as manifest.json names it.
  read -r image_id layers < <(python3 - "$archive" <<'EOF'
import json, sys, tarfile
m = json.load(tarfile.open(sys.argv[1]).extractfile("manifest.json"))
print("sha256:" + m[0]["Config"].split("/")[-1].removesuffix(".json"), len(m[0]["Layers"]))
EOF
)
  profile="(given archive)"
fi
[ -n "$given_archive" ] || log "generating $layers $profile layers and the image archive"
for i in $( [ -n "$given_archive" ] || seq "$layers"); do
  "$GEN" "$profile" "$((seed + i - 1))" "$fs/layer$i.tar" 2>/dev/null
  if [ -z "$parent" ]; then
    parent=$("$rolayer" --store "$st0" --quiet register "$fs/layer$i.tar" | tail -1)
  else
    parent=$("$rolayer" --store "$st0" --quiet register --parent "$parent" "$fs/layer$i.tar" | tail -1)
  fi
  rm -f "$fs/layer$i.tar"
done
if [ -z "$given_archive" ]; then
  archive="$fs/image.tar"
  image_id=$("$rolayer" --store "$st0" --quiet export-image "$parent" "$archive" --format docker-archive --tag rolayer-bench/engine:1)
  rm -rf "$st0"
fi
archive_bytes=$(stat -c %s "$archive")
cat "$archive" >/dev/null

# ---- dockerd -------------------------------------------------------------------------------
# start_engine: dockerd on a fresh $dfs (a new file system with --fs loop). Exits 77 with the
# reason when it cannot start.
start_engine() {
  dockerd_stop
  fresh_fs "$dfs" "$dir" "$work" || { echo "engine.sh: SKIP: cannot make a fresh file system for dockerd (see above)" >&2; exit 77; }
  local rc=0
  dockerd_start "$dfs/dockerd" "$driver" || rc=$?
  if [ "$rc" != 0 ]; then echo "engine.sh: SKIP: dockerd cannot start here (see above)" >&2; exit 77; fi
}
log "starting dockerd ($driver) on a private data root ($fsmode)"
start_engine
docker_ver=$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo unknown)

dcpu() { awk '{print $14 + $15 + $16 + $17}' "/proc/$DOCKERD_PID/stat"; }
# timed NAME REP [docker] -- CMD...: sync, run CMD under rolayer-bench time, record; then time a
# `sync -f` of the file system the command wrote to.
timed() {
  local name=$1 rep=$2 engine=0 out=$rfs; shift 2
  if [ "$1" = docker ]; then engine=1; out=$dfs; shift; fi
  shift # --
  sync -f "$fs"; sync -f "$rfs"; sync -f "$dfs"
  local before=0 after=0
  [ "$engine" = 1 ] && before=$(dcpu)
  "$RB" time "$work/t.json" --stdout "$work/out.txt" -- "$@" 2>"$work/err.txt" ||
    { echo "engine.sh: $name failed: $*" >&2; cat "$work/err.txt" "$work/out.txt" >&2; return 1; }
  [ "$engine" = 1 ] && after=$(dcpu)
  local t0 t1
  t0=$(date +%s.%N)
  sync -f "$out"
  t1=$(date +%s.%N)
  python3 - "$name" "$rep" "$work/t.json" "$before" "$after" "$t0" "$t1" "$(getconf CLK_TCK)" >>"$results" <<'EOF'
import json, sys
name, rep, tj, b, a, t0, t1, tck = sys.argv[1:9]
t = json.load(open(tj))
t["daemon_cpu_s"] = (float(a) - float(b)) / float(tck)
t["sync_s"] = float(t1) - float(t0)
t.update(name=name, rep=int(rep))
print(json.dumps(t))
EOF
}

st="$rfs/store"
for r in $(seq "$reps"); do
  log "round $r of $reps"
  if [ "$r" -gt 1 ]; then
    # Fresh file systems for both sides (dockerd restarted on its own): nothing deleted before.
    fresh_fs "$rfs" "$dir" "$work" || { echo "engine.sh: cannot remake the file system for the store" >&2; exit 1; }
    start_engine
  fi
  rm -rf "$st"
  timed rolayer-import "$r" -- "$rolayer" --store "$st" --quiet import "$archive"
  chain=$(tail -1 "$work/out.txt")
  docker rmi -f rolayer-bench/engine:1 >/dev/null 2>&1 || true
  timed docker-load "$r" docker -- docker load -i "$archive"
  rm -f "$rfs/out-rolayer.tar" "$dfs/out-docker.tar"
  timed rolayer-export-image "$r" -- "$rolayer" --store "$st" --quiet export-image "$chain" "$rfs/out-rolayer.tar" \
    --format docker-archive --tag rolayer-bench/engine:1
  got=$(tail -1 "$work/out.txt")
  [ "$got" = "$image_id" ] || { echo "engine.sh: export-image gave image $got, not $image_id" >&2; exit 1; }
  timed docker-save "$r" docker -- docker save -o "$dfs/out-docker.tar" rolayer-bench/engine:1
  rm -f "$rfs/out-rolayer.tar" "$dfs/out-docker.tar"
done
loaded=$(docker image inspect --format '{{.Id}}' rolayer-bench/engine:1)
[ "$loaded" = "$image_id" ] || { echo "engine.sh: docker loaded image $loaded, not $image_id" >&2; exit 1; }

python3 - "$results" "$archive_bytes" "$layers" "$profile" "$docker_ver" "$driver" "$reps" "${report:-}" "$fsmode" <<'EOF'
import json, statistics, sys, platform, os
res, nbytes, layers, profile, dver, driver, reps, report, fsmode = sys.argv[1:10]
rows = [json.loads(l) for l in open(res)]
by = {}
for r in rows:
    by.setdefault(r["name"], []).append(r)
def s(name, key):
    return [r[key] for r in by.get(name, [])]
def cpu(name):
    return [r["user_s"] + r["sys_s"] + r.get("daemon_cpu_s", 0) for r in by.get(name, [])]
def wsync(name):
    return [r["wall_s"] + r["sync_s"] for r in by.get(name, [])]
out = []
out.append(f"## rolayer vs dockerd {dver} ({driver}), one image archive")
out.append("")
out.append(f"{layers} × `{profile}` layers, archive {int(nbytes)/2**20:.0f} MiB; {reps} interleaved rounds; "
           f"{platform.release()}, {os.cpu_count()} CPUs, load at end {' '.join(open('/proc/loadavg').read().split()[:3])}; "
           + ("each side on a fresh loop-mounted ext4 (mkfs -i 8192) every round" if fsmode == "loop"
              else "on the work directory's file system as found (--fs dir)"))
out.append("")
out.append("| operation | best wall s | median wall s | median wall + sync -f s | median CPU s | peak RSS MiB |")
out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
for n in ["rolayer-import", "docker-load", "rolayer-export-image", "docker-save"]:
    if n not in by: continue
    w = s(n, "wall_s")
    out.append(f"| {n} | {min(w):.2f} | {statistics.median(w):.2f} | {statistics.median(wsync(n)):.2f} | "
               f"{statistics.median(cpu(n)):.2f} | {max(s(n, 'maxrss_kib'))/1024:.0f} |")
out.append("")
out.append("| target | best wall ratio | median wall ratio | median (wall + sync) ratio | median CPU ratio | target |")
out.append("| --- | ---: | ---: | ---: | ---: | --- |")
for a, b, label in [("rolayer-import", "docker-load", "import vs docker load"),
                    ("rolayer-export-image", "docker-save", "export-image vs docker save")]:
    if a not in by or b not in by: continue
    f = lambda xs: statistics.median(xs)
    out.append(f"| {label} | {min(s(b,'wall_s'))/min(s(a,'wall_s')):.2f} × | {f(s(b,'wall_s'))/f(s(a,'wall_s')):.2f} × | "
               f"{f(wsync(b))/f(wsync(a)):.2f} × | {f(cpu(b))/f(cpu(a)):.2f} × | ≥ 3 × faster |")
out.append("")
out.append("CPU of the docker rows = the docker client's + dockerd's own (incl. its untar helpers). "
           "rolayer's rows are durable when they end (synced); docker's are not: `+ sync` adds the `sync -f` "
           "timed right after each command.")
text = "\n".join(out)
print(text)
if report:
    open(report, "w").write(text + "\n")
EOF
