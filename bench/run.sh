#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/run.sh: librolayer against the Docker engine's layer store and the machine's limits,
# in one run, on the same files. Prints a Markdown report with the ratios the targets are
# stated in (bench/README.md explains every number; bench/RESULTS.md has a recorded run).
#
#   bash bench/run.sh [--quick] [--dir DIR] [--fs loop|dir] [--build DIR] [--seed N]
#                     [--reps N] [--layers N] [--nice N] [--no-moby] [--no-open] [--micro]
#                     [--diagnose] [--keep] [--report FILE] [--profiles LIST] [--moby-skip LIST]
#
#   --quick        small and medium layers only, and a 1,000-layer store for the open test
#   --dir DIR      where the work happens (default: a fresh directory under ${TMPDIR:-/tmp});
#                  everything made there is removed at the end
#   --fs loop      (default) measure on a private ext4 file system, loop-mounted from a sparse
#                  image in DIR and made fresh for the run: `sync -f` and the library's syncfs
#                  then flush only this run's writes, not whatever else the machine has dirty
#   --fs dir       measure on the file system that holds DIR, as it is
#   --build DIR    CMake build directory (default ${TMPDIR:-/tmp}/rolayer-bench-build, kept
#                  between runs so that a rerun only rebuilds what changed)
#   --seed N       workload seed (default 1); the same seed gives the same bytes
#   --reps N       rounds; each round runs every operation once, interleaved (default 3)
#   --layers N     layers in the store-open test (default 10000; 1000 with --quick); the test
#                  also times `rolayer ls --json` (the CLI) on that store, and a register and
#                  an export of a medium layer (small with --quick) into it against the same
#                  into an empty store (issue 18 "Scale": 100,000 layers: open < 300 ms,
#                  ls --json < 2 s, peak RSS < 128 MiB, register/export flat): --layers 100000
#   --nice N       run every measured process at this nice value (default -10, so that other
#                  work on a shared machine disturbs the numbers less; 0 to leave it)
#   --no-moby      skip the Docker engine baseline
#   --no-open      skip the store-open test
#   --micro        also run the Google Benchmark micro-benchmarks (rolayer-bench-micro)
#   --diagnose     also time librolayer's register with fsync, fdatasync and syncfs made no-ops
#                  (LD_PRELOAD shim): how much of a register is its durability
#   --keep         keep DIR/work (raw results) instead of removing it
#   --report FILE  also write the report to FILE
#   --profiles LIST  the layers to measure, e.g. "large tiny" (default: small medium large
#                  bigfiles tiny; with --quick: small medium). bigfiles: three files of 320-384
#                  MiB; tiny: >= 200,000 entries of 0-512-byte files
#   --moby-skip LIST  profiles on which the Docker engine rows are skipped, e.g. "tiny" (its
#                  Register of 240,000 entries takes minutes per round)
#   --pack SIZE    also register into a store with the dir driver's payload pack of SIZE bytes
#                  (rolayer_store_options.payload_pack_max, e.g. 32768) and export from it: rows
#                  rolayer-register-pack and rolayer-export-pack
#
# Needs root (the vfs driver, tar -x restoring owners and capabilities, mounting), cmake,
# ninja or make, a C/C++ compiler, go (the baseline), python3 (the report), GNU tar, OpenSSL.
# Every operation runs in its own process on page-cached input, after `sync -f` of the work
# file system (so that no operation pays for another's write-back); wall time, CPU time and
# peak RSS are that process's own (wait4).
set -euo pipefail

cmdline="bash bench/run.sh${*:+ $*}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/.." && pwd)

quick=0 dir="" fsmode=loop build="${TMPDIR:-/tmp}/rolayer-bench-build" seed=1 reps=3 layers=""
nice_level=-10 moby=1 openbench=1 micro=0 diagnose=0 keep=0 report=""
profiles_opt="" moby_skip="" pack=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --dir) dir=$2; shift ;;
    --fs) fsmode=$2; shift ;;
    --build) build=$2; shift ;;
    --seed) seed=$2; shift ;;
    --reps) reps=$2; shift ;;
    --layers) layers=$2; shift ;;
    --nice) nice_level=$2; shift ;;
    --no-moby) moby=0 ;;
    --no-open) openbench=0 ;;
    --micro) micro=1 ;;
    --diagnose) diagnose=1 ;;
    --keep) keep=1 ;;
    --report) report=$2; shift ;;
    --profiles) profiles_opt=$2; shift ;;
    --moby-skip) moby_skip=$2; shift ;;
    --pack) pack=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$fsmode" in loop|dir) ;; *) echo "run.sh: --fs loop|dir" >&2; exit 2 ;; esac
if [ "$quick" = 1 ]; then profiles="small medium"; else profiles="small medium large bigfiles tiny"; fi
if [ -n "$profiles_opt" ]; then profiles=$profiles_opt; fi
if [ -z "$layers" ]; then if [ "$quick" = 1 ]; then layers=1000; else layers=10000; fi; fi
if [ "$report" != "" ]; then report=$(cd "$(dirname "$report")" && pwd)/$(basename "$report"); fi

if [ "$(id -u)" != 0 ]; then
  echo "run.sh: run as root (the vfs driver, tar -x restoring owners, mounting)" >&2
  exit 2
fi
for t in cmake python3 tar openssl; do
  command -v "$t" >/dev/null || { echo "run.sh: $t is needed" >&2; exit 2; }
done
if [ "$moby" = 1 ] && ! command -v go >/dev/null; then
  echo "run.sh: go not found: the Docker engine baseline is skipped" >&2
  moby=0
fi

# ---- work directory and file systems -------------------------------------------------------
made_dir=0
if [ -z "$dir" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/rolayer-bench.XXXXXX")
  made_dir=1
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
work="$dir/work"       # raw results, logs (on the host file system)
fs="$dir/fs"           # where every measured operation reads and writes
shm="$dir/shm"         # tmpfs, to build the many-layer store quickly
img="$dir/fs.img"
mounted_fs=0 mounted_shm=0
cleanup() {
  set +e
  cd /
  [ "$mounted_shm" = 1 ] && umount "$shm"
  [ "$mounted_fs" = 1 ] && umount "$fs"
  rm -f "$img"
  rm -rf "$fs" "$shm"
  if [ "$keep" = 0 ]; then rm -rf "$work"; else echo "run.sh: kept $work" >&2; fi
  [ "$made_dir" = 1 ] && rmdir "$dir" 2>/dev/null
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$work" "$fs" "$shm"
mkdir -p "$work" "$fs" "$shm"
results="$work/results.jsonl"
: >"$results"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# Where measured output is thrown away. Some sandboxes make /dev/null a regular file, where a
# `cat FILE > /dev/null` would copy the file into memory: use a real null device then.
null=/dev/null
if [ ! -c /dev/null ]; then
  if mknod "$work/null" c 1 3 2>/dev/null; then null="$work/null"; else
    echo "run.sh: /dev/null is not a character device here and mknod failed: the cat and openssl dgst rows include a copy" >&2
  fi
fi
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ "$fsmode" = loop ]; then
  if command -v mkfs.ext4 >/dev/null && truncate -s 16G "$img" &&
    mkfs.ext4 -q -F -i 8192 -E lazy_itable_init=0,lazy_journal_init=0 "$img" >/dev/null 2>&1 &&
    mount -o loop "$img" "$fs" 2>/dev/null; then
    mounted_fs=1
  else
    echo "run.sh: cannot make a loop-mounted ext4 file system here; measuring on $dir as it is (--fs dir)" >&2
    rm -f "$img"
    fsmode=dir
  fi
fi

# ---- build -------------------------------------------------------------------------------
log "building librolayer (Release) and the bench programs in $build"
gen_args=()
command -v ninja >/dev/null && gen_args=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$src" -B "$build" "${gen_args[@]}" -DCMAKE_BUILD_TYPE=Release -DROLAYER_BUILD_BENCH=ON \
    -DROLAYER_BUILD_TESTS=OFF -DROLAYER_BUILD_TOOLS=OFF >"$work/cmake.log" 2>&1 ||
    { cat "$work/cmake.log" >&2; exit 1; }
fi
targets=(rolayer-bench rolayer-bench-gen)
if [ "$openbench" = 1 ]; then
  # The store-open test also times the CLI's `rolayer ls --json`.
  if ! grep -q '^ROLAYER_BUILD_TOOLS:BOOL=ON' "$build/CMakeCache.txt"; then
    cmake -DROLAYER_BUILD_TOOLS=ON "$build" >>"$work/cmake.log" 2>&1 || { cat "$work/cmake.log" >&2; exit 1; }
  fi
  targets+=(rolayer_cli)
fi
[ "$micro" = 1 ] && targets+=(rolayer-bench-micro)
[ "$diagnose" = 1 ] && targets+=(rolayer-bench-nosync)
# What is measured: the work tree as built now (commit, and whether lib/ or include/ differ from it).
built_commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
built_dirty=$(git -C "$src" status --porcelain -- lib include 2>/dev/null | wc -l)
cmake --build "$build" --target "${targets[@]}" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
RB="$build/bench/rolayer-bench"
GEN="$build/bench/rolayer-bench-gen"
MOBY="$build/bench/mobybench"
if [ "$moby" = 1 ]; then
  log "building the Docker engine baseline (bench/moby: github.com/docker/docker v28.5.2 layer + vfs)"
  (cd "$here/moby" && go build -o "$MOBY" .) >"$work/go-build.log" 2>&1 || { cat "$work/go-build.log" >&2; exit 1; }
fi

# ---- helpers -----------------------------------------------------------------------------
# record PROFILE NAME REP TIME.json [OP.json]: one result line = the process's numbers (wait4)
# merged with what the program printed about the operation itself.
record() {
  python3 - "$@" >>"$results" <<'EOF'
import json, sys
profile, name, rep, tjson = sys.argv[1:5]
out = {"profile": profile, "name": name, "rep": int(rep)}
try:
    out.update({"proc_" + k: v for k, v in json.load(open(tjson)).items()})
except (OSError, ValueError):
    out["proc_exit"] = -1
if len(sys.argv) > 5:
    try:
        text = open(sys.argv[5]).read().strip().splitlines()
        op = json.loads(text[-1]) if text else {}
    except (OSError, ValueError):
        op = {}
    out.update({"op_" + k: v for k, v in op.items()})
print(json.dumps(out))
EOF
}
field() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])[sys.argv[2]])' "$1" "$2"; }
fsync_work() { sync -f "$fs"; }

# timed PROFILE NAME REP [--stdout PATH] -- CMD...: flush, run CMD in its own process, record.
timed() {
  local profile=$1 name=$2 rep=$3; shift 3
  local t="$work/t.json" o="$work/o.json" redir=() opjson=()
  if [ "$1" = "--stdout" ]; then redir=(--stdout "$2"); shift 2; fi
  shift # --
  rm -f "$t" "$o"
  if [ ${#redir[@]} -eq 0 ]; then redir=(--stdout "$o"); opjson=("$o"); fi
  fsync_work
  if ! nice -n "$nice_level" "$RB" time "$t" "${redir[@]}" -- "$@" 2>"$work/err.txt"; then
    echo "run.sh: $name ($profile) failed: $*" >&2
    cat "$work/err.txt" >&2
    record "$profile" "$name" "$rep" "$t" "${opjson[@]}" || true
    return 1
  fi
  record "$profile" "$name" "$rep" "$t" "${opjson[@]}"
}

# ---- per-profile measurements ------------------------------------------------------------
# Each round runs every operation once, in the same order, so that load that comes and goes
# on a shared machine hits all of them alike. The report gives the best (min) and the median.
for p in $profiles; do
  pmoby=$moby
  case " $moby_skip " in *" $p "*) pmoby=0 ;; esac
  tarf="$fs/$p.tar"
  log "$p: generating the workload (seed $seed)"
  "$GEN" "$p" "$seed" "$tarf" 2>"$work/gen-$p.txt"
  read -r bytes entries files payload <"$work/gen-$p.txt"
  echo "{\"profile\":\"$p\",\"name\":\"workload\",\"bytes\":$bytes,\"entries\":$entries,\"files\":$files,\"payload\":$payload}" >>"$results"
  cat "$tarf" >/dev/null # page-cache the input
  if [ "$pmoby" = 1 ]; then timed "$p" tar-split 1 -- "$MOBY" tarsplit -tar "$tarf" || true; fi

  for r in $(seq "$reps"); do
    log "$p: round $r of $reps"
    # The machine's limits.
    timed "$p" sha256 "$r" -- "$RB" sha256 "$tarf" 65536
    timed "$p" openssl-dgst "$r" --stdout "$null" -- openssl dgst -sha256 "$tarf"
    timed "$p" cat "$r" --stdout "$null" -- cat "$tarf"
    x="$fs/x-$p"; rm -rf "$x"; mkdir -p "$x"
    timed "$p" tar-x "$r" -- tar --xattrs --xattrs-include='*' -xpf "$tarf" -C "$x"
    rm -rf "$x"; mkdir -p "$x"
    timed "$p" tar-x-sync "$r" -- sh -c 'tar --xattrs --xattrs-include="*" -xpf "$1" -C "$2" && sync -f "$2"' sh "$tarf" "$x"
    rm -rf "$x"

    # librolayer, dir driver: register into a fresh store, then export from it.
    st="$fs/rolayer-$p"
    rm -rf "$st"
    if timed "$p" rolayer-register "$r" -- "$RB" register "$st" "$tarf"; then
      chain=$(field "$work/o.json" chain_id)
      timed "$p" rolayer-export "$r" -- "$RB" export "$st" "$chain" || true
      if [ "$r" = 1 ]; then
        recbytes=$(python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute("select coalesce(sum(length(data)),0) from records").fetchone()[0])' "$st/metadata.db")
        echo "{\"profile\":\"$p\",\"name\":\"rolayer-record\",\"bytes\":$recbytes}" >>"$results"
      fi
    fi
    rm -rf "$st"
    if [ -n "$pack" ]; then
      # The same into a store with the payload pack (small payloads also in one file per layer).
      if timed "$p" rolayer-register-pack "$r" -- env ROLAYER_BENCH_PACK="$pack" "$RB" register "$st" "$tarf"; then
        chain=$(field "$work/o.json" chain_id)
        timed "$p" rolayer-export-pack "$r" -- "$RB" export "$st" "$chain" || true
      fi
      rm -rf "$st"
    fi
    if [ "$diagnose" = 1 ]; then
      timed "$p" rolayer-register-nosync "$r" -- env LD_PRELOAD="$build/bench/rolayer-bench-nosync.so" \
        "$RB" register "$st" "$tarf" || true
      rm -rf "$st"
    fi

    # The Docker engine's layer store, vfs driver: the same.
    if [ "$pmoby" = 1 ]; then
      mr="$fs/moby-$p"
      rm -rf "$mr"
      if timed "$p" moby-register "$r" -- "$MOBY" register -root "$mr" -tar "$tarf"; then
        mchain=$(field "$work/o.json" chain_id)
        timed "$p" moby-export "$r" -- "$MOBY" export -root "$mr" -chain "$mchain" || true
      fi
      rm -rf "$mr"
    fi
  done
  rm -f "$tarf"
done

# ---- opening a store with many layers ----------------------------------------------------
if [ "$openbench" = 1 ]; then
  # The layers are registered on a tmpfs (a register is fsync'd several times: 10,000 of them
  # on a shared disk take many minutes), then the store is copied as it is to the measured
  # file system, and opened there in fresh processes (page-cached after the copy).
  if mount -t tmpfs -o size=4g tmpfs "$shm" 2>/dev/null; then mounted_shm=1; else
    echo "run.sh: cannot mount a tmpfs: registering the $layers layers on $fs (slow)" >&2
  fi
  log "store open: registering $layers tiny layers (chains of 10)"
  pst="$shm/rolayer-open"
  [ "$mounted_shm" = 1 ] || pst="$fs/rolayer-open"
  timed "open" populate 1 -- "$RB" populate "$pst" "$layers" 10
  st="$fs/rolayer-open"
  if [ "$pst" != "$st" ]; then
    cp -a "$pst" "$st"
    rm -rf "$pst"
  fi
  fsync_work
  nice -n "$nice_level" "$RB" open "$st" >/dev/null # warm
  for r in $(seq 5); do
    timed "open" rolayer-open "$r" -- "$RB" open "$st"
  done
  # The CLI's listing of every layer (one query: rolayer_store_layers).
  for r in $(seq 3); do
    timed "open" rolayer-ls-json "$r" --stdout "$null" -- "$build/tools/rolayer" --store "$st" --quiet ls --json
  done
  # Register and export do not grow with the store: a layer into the big store and into an
  # empty one, interleaved (a new seed each round, so that the layer is new to the big store).
  sp=medium
  [ "$quick" = 1 ] && sp=small
  log "store open: register + export of a $sp layer, $layers-layer store vs empty store"
  for r in $(seq "$reps"); do
    stf="$fs/scale-$r.tar"
    "$GEN" "$sp" "$((seed + 1000 + r))" "$stf" 2>/dev/null
    cat "$stf" >/dev/null
    se="$fs/rolayer-empty"
    rm -rf "$se"
    for which in big empty; do
      target=$st
      [ "$which" = empty ] && target=$se
      if timed "open" "register-into-$which" "$r" -- "$RB" register "$target" "$stf"; then
        c=$(field "$work/o.json" chain_id)
        timed "open" "export-from-$which" "$r" -- "$RB" export "$target" "$c" || true
      fi
    done
    rm -rf "$se" "$stf"
  done
  if command -v strace >/dev/null; then
    # What opening does, counted by system call.
    strace -f -c -o "$work/strace-open.txt" "$RB" open "$st" >/dev/null 2>&1 || true
    python3 - "$work/strace-open.txt" "$layers" >>"$results" <<'EOF'
import json, sys
calls = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit():
        try:
            calls[f[-1]] = int(f[3])
        except ValueError:
            pass
print(json.dumps({"profile": "open", "name": "open-syscalls", "layers": int(sys.argv[2]), "calls": calls}))
EOF
  fi
  rm -rf "$st"
fi

# ---- micro-benchmarks --------------------------------------------------------------------
if [ "$micro" = 1 ]; then
  log "micro-benchmarks (Google Benchmark)"
  nice -n "$nice_level" "$build/bench/rolayer-bench-micro" --benchmark_out="$work/micro.json" \
    --benchmark_out_format=json >/dev/null 2>"$work/micro.err" || cat "$work/micro.err" >&2
fi

# ---- report ------------------------------------------------------------------------------
meta="$work/meta.json"
python3 - "$meta" "$cmdline" "$seed" "$reps" "$built_commit" "$fs" "$load_start" "$fsmode" "$nice_level" "$built_dirty" <<'EOF'
import json, os, platform, subprocess, sys
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""
cpu = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip(); break
fs = sh("df -T '%s' | awk 'NR==2 {print $2}'" % sys.argv[6])
json.dump({
    "command": sys.argv[2], "seed": int(sys.argv[3]), "reps": int(sys.argv[4]),
    "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
    "mem": sh("free -g | awk '/Mem:/ {print $2\" GiB\"}'"),
    "fs": fs + (" (private, loop-mounted)" if sys.argv[8] == "loop" else " (as found)"),
    "nice": sys.argv[9],
    "openssl": sh("openssl version"), "tar": sh("tar --version | head -1"), "go": sh("go version"),
    "date": sh("date -u +%Y-%m-%dT%H:%MZ"), "commit": sys.argv[5],
    "load_start": sys.argv[7], "load_end": " ".join(open("/proc/loadavg").read().split()[:3]),
    "dirty": sys.argv[10],
}, open(sys.argv[1], "w"))
EOF
args=("$results" "$meta")
[ -f "$work/micro.json" ] && args+=(--micro "$work/micro.json")
[ -n "$report" ] && args+=(--out "$report")
python3 "$here/report.py" "${args[@]}"
