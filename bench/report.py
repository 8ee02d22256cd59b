#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Turns bench/run.sh's raw results (JSON lines) into the Markdown report: medians per
operation, the ratios the targets are stated in, peak RSS across layer sizes, record sizes,
the store-open test and, when given, the micro-benchmarks.

    python3 bench/report.py results.jsonl meta.json [--micro micro.json] [--out FILE]
"""
import argparse
import json
import statistics
import sys

MiB = 1024 * 1024


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Results:
    def __init__(self, rows):
        self.rows = rows

    def runs(self, profile, name):
        return [r for r in self.rows if r.get("profile") == profile and r.get("name") == name]

    def ok_runs(self, profile, name):
        return [r for r in self.runs(profile, name) if r.get("proc_exit", 0) == 0]

    def med(self, profile, name, key):
        return median([r.get(key) for r in self.ok_runs(profile, name)])

    def one(self, profile, name):
        rs = self.runs(profile, name)
        return rs[-1] if rs else None

    def wall(self, profile, name):
        """Best (minimum) wall time over the rounds: on a shared machine, interference only
        ever adds time, so the minimum is the least disturbed measurement."""
        xs = [r.get("proc_wall_s") for r in self.ok_runs(profile, name) if r.get("proc_wall_s") is not None]
        return min(xs) if xs else None

    def wall_med(self, profile, name):
        return self.med(profile, name, "proc_wall_s")

    def op_best(self, profile, name):
        xs = [r.get("op_seconds") for r in self.ok_runs(profile, name) if r.get("op_seconds") is not None]
        return min(xs) if xs else None

    def cpu(self, profile, name):
        return median([(r.get("proc_user_s") or 0) + (r.get("proc_sys_s") or 0) for r in self.ok_runs(profile, name)])

    def rss(self, profile, name):
        """Peak RSS: the largest over the rounds."""
        xs = [r.get("proc_maxrss_kib") for r in self.ok_runs(profile, name) if r.get("proc_maxrss_kib") is not None]
        return max(xs) / 1024 if xs else None

    def failed(self, profile, name):
        return any(r.get("proc_exit", 0) != 0 for r in self.runs(profile, name))


def fmt(v, spec="{:.3f}", none="—"):
    return none if v is None else spec.format(v)


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


OPS = [
    ("sha256", "OpenSSL EVP SHA-256 (rolayer-bench sha256, 64 KiB reads)"),
    ("openssl-dgst", "openssl dgst -sha256 (reference)"),
    ("cat", "cat FILE > /dev/null"),
    ("tar-x", "GNU tar -x (--xattrs -p) into a fresh dir"),
    ("tar-x-sync", "GNU tar -x, then sync -f (durable, as register is)"),
    ("rolayer-register", "librolayer register (dir driver, rolayer_register_fd)"),
    ("rolayer-register-nosync", "librolayer register, fsync/syncfs made no-ops (diagnostic)"),
    ("rolayer-export", "librolayer export (rolayer_tar_stream_read, verified)"),
    ("rolayer-register-pack", "librolayer register, payload pack on (run.sh --pack)"),
    ("rolayer-export-pack", "librolayer export from the packed store (run.sh --pack)"),
    ("moby-register", "Docker engine layer.Store.Register (vfs)"),
    ("moby-export", "Docker engine Layer.TarStream -> io.Discard (vfs)"),
    ("tar-split", "tar-split alone (asm + gzip JSON packer)"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("meta")
    ap.add_argument("--micro")
    ap.add_argument("--out")
    a = ap.parse_args()
    R = Results(load(a.results))
    meta = json.load(open(a.meta))
    out = []
    w = out.append

    profiles = [p for p in ("small", "medium", "large", "tiny") if R.runs(p, "workload")]
    profiles += [p for p in ("bigfiles",) if R.runs(p, "workload")]
    w("## Run")
    w("")
    w("- command: `%s`" % meta.get("command"))
    w("- machine: %s, %s cores, %s, Linux %s, %s filesystem for the work directory" % (
        meta.get("cpu"), meta.get("cores"), meta.get("mem"), meta.get("kernel"), meta.get("fs")))
    w("- load average at start %s, at end %s; CPU pressure at end: %s (other work on the machine competes for its 2 cores)" % (
        meta.get("load_start"), meta.get("load_end"), meta.get("cpu_pressure") or "n/a"))
    w("- measured processes run at nice %s" % meta.get("nice"))
    w("- tools: %s; %s; %s" % (meta.get("openssl"), meta.get("tar"), meta.get("go")))
    w("- librolayer built from commit %s%s; report %s; seed %s, %s rounds" % (
        meta.get("commit"), " with uncommitted changes in lib/ or include/" if str(meta.get("dirty", "0")).strip() not in ("", "0") else "",
        meta.get("date"), meta.get("seed"), meta.get("reps")))
    w("")

    # ---- workloads and per-operation tables
    w("## Workloads")
    w("")
    w("| profile | tar bytes | entries | regular files | payload bytes |")
    w("| --- | ---: | ---: | ---: | ---: |")
    for p in profiles:
        g = R.one(p, "workload")
        w("| %s | %s (%.1f MiB) | %d | %d | %d |" % (p, g["bytes"], g["bytes"] / MiB, g["entries"], g["files"], g["payload"]))
    w("")

    for p in profiles:
        size = R.one(p, "workload")["bytes"]
        w("### %s (%.1f MiB)" % (p, size / MiB))
        w("")
        w("| operation | wall s, best | wall s, median | MiB/s (best) | CPU s (median) | peak RSS MiB | in-process s (best) |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, label in OPS:
            if not R.runs(p, name):
                continue
            wall = R.wall(p, name)
            tput = size / MiB / wall if wall else None
            flag = " **(failed)**" if R.failed(p, name) else ""
            w("| %s%s | %s | %s | %s | %s | %s | %s |" % (label, flag, fmt(wall), fmt(R.wall_med(p, name)),
                                                         fmt(tput, "{:.0f}"), fmt(R.cpu(p, name)),
                                                         fmt(R.rss(p, name), "{:.1f}"), fmt(R.op_best(p, name))))
        w("")

    # ---- targets
    tp = "large" if "large" in profiles else (profiles[-1] if profiles else None)
    if tp:
        note = "" if tp == "large" else " (measured on **%s**: the large layer was not in this run)" % tp
        w("## Targets%s" % note)
        w("")
        w("Ratios of process wall times from this run, best of the rounds (see the tables above), on "
          "the %s layer; in brackets the same ratio from median wall times and from CPU time "
          "(user + system, median), which other load on the machine disturbs least." % tp)
        w("")
        w("| target | measured | verdict |")
        w("| --- | --- | --- |")

        def row(target, value, ok, detail):
            verdict = "—" if ok is None else ("met" if ok else "**missed**")
            w("| %s | %s | %s |" % (target, detail, verdict))

        def trio(a, b, invert=False):
            """(best-wall ratio, median-wall ratio, CPU ratio) of a over b."""
            f = (lambda x, y: ratio(y, x)) if invert else ratio
            return (f(R.wall(tp, a), R.wall(tp, b)), f(R.wall_med(tp, a), R.wall_med(tp, b)),
                    f(R.cpu(tp, a), R.cpu(tp, b)))

        def describe(t, extra):
            if t[0] is None:
                return "—"
            return "**%.2f ×** (median %s ×, CPU %s ×); %s" % (t[0], fmt(t[1], "{:.2f}"), fmt(t[2], "{:.2f}"), extra)

        t1 = trio("sha256", "rolayer-export")   # export rate / SHA rate = t_sha / t_export
        row("export ≥ 0.85 × OpenSSL SHA-256 rate", t1[0], None if t1[0] is None else t1[0] >= 0.85,
            describe(t1, "export %s s, SHA-256 %s s" % (fmt(R.wall(tp, "rolayer-export")), fmt(R.wall(tp, "sha256")))))
        # Issue 18: ≥ 0.9 × the SHA-256 rate and CPU ≤ 1.3 × the hash's, on the large layer and
        # on the big-files layer.
        for p18 in [tp] + [p for p in ("bigfiles",) if p in profiles and p != tp]:
            e18 = (ratio(R.wall(p18, "sha256"), R.wall(p18, "rolayer-export")),
                   ratio(R.wall_med(p18, "sha256"), R.wall_med(p18, "rolayer-export")),
                   ratio(R.cpu(p18, "sha256"), R.cpu(p18, "rolayer-export")))
            c18 = ratio(R.cpu(p18, "rolayer-export"), R.cpu(p18, "sha256"))
            ok18 = None if e18[0] is None or c18 is None else (e18[0] >= 0.9 and c18 <= 1.3)
            row("export (%s) ≥ 0.9 × SHA-256 rate, CPU ≤ 1.3 × SHA-256's" % p18, e18[0], ok18,
                describe(e18, "export CPU %s × SHA-256's (%s s vs %s s)" % (
                    fmt(c18, "{:.2f}"), fmt(R.cpu(p18, "rolayer-export")), fmt(R.cpu(p18, "sha256")))))
        t2 = trio("moby-export", "rolayer-export")
        row("export ≥ 2 × Docker engine TarStream throughput", t2[0], None if t2[0] is None else t2[0] >= 2,
            describe(t2, "engine %s s" % fmt(R.wall(tp, "moby-export"))))
        t3 = trio("rolayer-register", "tar-x")
        t3s = trio("rolayer-register", "tar-x-sync")
        row("register ≤ 1.1 × GNU tar -x time", t3[0], None if t3[0] is None else t3[0] <= 1.1,
            describe(t3, "register %s s, tar -x %s s; against tar -x + sync -f (%s s, durable like register): %s ×" % (
                fmt(R.wall(tp, "rolayer-register")), fmt(R.wall(tp, "tar-x")), fmt(R.wall(tp, "tar-x-sync")),
                fmt(t3s[0], "{:.2f}"))))
        if "tiny" in profiles and R.wall("tiny", "tar-x-sync"):
            tt = (ratio(R.wall("tiny", "rolayer-register"), R.wall("tiny", "tar-x-sync")),
                  ratio(R.wall_med("tiny", "rolayer-register"), R.wall_med("tiny", "tar-x-sync")),
                  ratio(R.cpu("tiny", "rolayer-register"), R.cpu("tiny", "tar-x-sync")))
            row("register ≤ 1.1 × tar -x + sync -f, tiny layer (%d entries)" % R.one("tiny", "workload")["entries"],
                tt[0], None if tt[0] is None else tt[0] <= 1.1,
                describe(tt, "register %s s, tar -x + sync -f %s s, tar -x %s s" % (
                    fmt(R.wall("tiny", "rolayer-register")), fmt(R.wall("tiny", "tar-x-sync")),
                    fmt(R.wall("tiny", "tar-x")))))
        t4 = trio("moby-register", "rolayer-register")
        row("register ≥ 1.5 × Docker engine Register throughput", t4[0], None if t4[0] is None else t4[0] >= 1.5,
            describe(t4, "engine %s s" % fmt(R.wall(tp, "moby-register"))))
        rr = R.rss(tp, "rolayer-register")
        re_ = R.rss(tp, "rolayer-export")
        ok5 = None if rr is None or re_ is None else (rr <= 64 and re_ <= 64)
        row("peak RSS of register and export ≤ 64 MiB", None, ok5,
            "register %s MiB, export %s MiB" % (fmt(rr, "{:.1f}"), fmt(re_, "{:.1f}")))
        # flatness
        by_size = [p for p in profiles if p != "tiny"]  # tiny is a shape, not a size step
        seq_r = [(p, R.rss(p, "rolayer-register")) for p in by_size]
        seq_e = [(p, R.rss(p, "rolayer-export")) for p in by_size]
        sizes = {p: R.one(p, "workload")["bytes"] for p in profiles}
        flat = None
        if len(by_size) >= 2 and all(v is not None for _, v in seq_r + seq_e):
            # "flat": from the smallest to the largest layer, RSS grows by less than 2x while
            # the layer grows by ~175x.
            flat = seq_r[-1][1] <= 2 * seq_r[0][1] and seq_e[-1][1] <= 2 * seq_e[0][1]
        row("… flat as the layer grows", None, flat,
            "register " + ", ".join("%s %s" % (p, fmt(v, "{:.1f}")) for p, v in seq_r) +
            "; export " + ", ".join("%s %s" % (p, fmt(v, "{:.1f}")) for p, v in seq_e) + " MiB")
        rec = R.one(tp, "rolayer-record")
        mreg_one = R.ok_runs(tp, "moby-register")
        ts_stored = mreg_one[-1].get("op_tar_split_gz_bytes") if mreg_one else None
        ts_direct = R.one(tp, "tar-split")
        ts_direct = ts_direct.get("op_tar_split_gz_bytes") if ts_direct else None
        ts = ts_stored if ts_stored not in (None, -1) else ts_direct
        r6 = ratio(rec["bytes"], ts) if rec else None
        row("fidelity record ≤ tar-split's gzipped JSON", r6, None if r6 is None else r6 <= 1,
            "—" if r6 is None else "%.2f × (record %d B, tar-split %d B)" % (r6, rec["bytes"], ts))
        ops_ = [r.get("op_open_seconds") for r in R.ok_runs("open", "rolayer-open")]
        op = min(ops_) if ops_ else None
        nl = R.one("open", "rolayer-open")
        nlayers = nl.get("op_layers") if nl else None
        row("open a store of 10,000 layers < 200 ms" + ("" if (nlayers or 0) >= 10000 else
                                                         " (not judged: the store held fewer layers)"), None,
            None if op is None or (nlayers or 0) < 10000 else op < 0.2,
            "—" if op is None else "%.1f ms to open, best of 5 (median %.1f ms; %s layers; whole process best %.1f ms)" % (
                op * 1000, R.med("open", "rolayer-open", "op_open_seconds") * 1000, nlayers,
                R.wall("open", "rolayer-open") * 1000))
        w("")

    # ---- record sizes for every profile
    if profiles:
        w("## Record sizes")
        w("")
        w("| profile | librolayer record (sum of length(data) in records) | tar-split gzipped JSON (engine's tar-split.json.gz) | tar-split direct | ratio |")
        w("| --- | ---: | ---: | ---: | ---: |")
        for p in profiles:
            rec = R.one(p, "rolayer-record")
            mr = R.ok_runs(p, "moby-register")
            st = mr[-1].get("op_tar_split_gz_bytes") if mr else None
            d = R.one(p, "tar-split")
            d = d.get("op_tar_split_gz_bytes") if d else None
            base = st if st not in (None, -1) else d
            w("| %s | %s | %s | %s | %s |" % (p, rec["bytes"] if rec else "—", st if st is not None else "—",
                                             d if d is not None else "—",
                                             fmt(ratio(rec["bytes"], base) if rec else None, "{:.2f}")))
        w("")

    # ---- store open
    if R.runs("open", "rolayer-open"):
        w("## Opening a store with many layers")
        w("")
        pop = R.one("open", "populate")
        n = pop.get("op_layers") if pop else None
        w("- populate: %s tiny layers in chains of %s, %s s (%s ms a register; on a tmpfs fsync costs nothing)" % (
            n, pop.get("op_depth") if pop else "?", fmt(R.wall("open", "populate"), "{:.1f}"),
            fmt(R.wall("open", "populate") * 1000 / n if n else None, "{:.1f}")))
        w("- populated on a tmpfs, then copied (cp -a) to the measured file system; opened there in fresh processes")
        w("- rolayer_store_open: best %s ms, median %s ms; open+free median %s ms; whole process best %s ms; peak RSS %s MiB" % (
            fmt(min(r.get("op_open_seconds") for r in R.ok_runs("open", "rolayer-open")) * 1000, "{:.1f}"),
            fmt(R.med("open", "rolayer-open", "op_open_seconds") * 1000, "{:.1f}"),
            fmt(R.med("open", "rolayer-open", "op_seconds") * 1000, "{:.1f}"),
            fmt(R.wall("open", "rolayer-open") * 1000, "{:.1f}"), fmt(R.rss("open", "rolayer-open"), "{:.1f}")))
        if R.runs("open", "rolayer-ls-json"):
            w("- `rolayer ls --json` (the CLI, whole process): best %s ms, median %s ms, median CPU %s ms; peak RSS %s MiB" % (
                fmt(R.wall("open", "rolayer-ls-json") * 1000, "{:.0f}"), fmt(R.wall_med("open", "rolayer-ls-json") * 1000, "{:.0f}"),
                fmt(R.cpu("open", "rolayer-ls-json") * 1000, "{:.0f}"), fmt(R.rss("open", "rolayer-ls-json"), "{:.1f}")))
        for op in ("register", "export"):
            big = "%s-%s" % (op, "into-big" if op == "register" else "from-big")
            empty = "%s-%s" % (op, "into-empty" if op == "register" else "from-empty")
            if R.runs("open", big) and R.runs("open", empty):
                w("- %s of a layer, %s-layer store vs empty store: the operation alone best %s s vs %s s (%s ×); "
                  "whole process (store open included) best %s s vs %s s, median CPU %s s vs %s s; peak RSS %s vs %s MiB" % (
                    op, n, fmt(R.op_best("open", big), "{:.3f}"), fmt(R.op_best("open", empty), "{:.3f}"),
                    fmt(ratio(R.op_best("open", big), R.op_best("open", empty)), "{:.2f}"),
                    fmt(R.wall("open", big), "{:.3f}"), fmt(R.wall("open", empty), "{:.3f}"),
                    fmt(R.cpu("open", big), "{:.3f}"), fmt(R.cpu("open", empty), "{:.3f}"),
                    fmt(R.rss("open", big), "{:.1f}"), fmt(R.rss("open", empty), "{:.1f}")))
        sc = R.one("open", "open-syscalls")
        if sc:
            calls = sc["calls"]
            keys = ["openat", "read", "pread64", "getdents64", "newfstatat", "statx", "fsync", "unlink", "mmap"]
            w("- system calls of one `rolayer-bench open` process (which opens the store twice and lists it once), strace -c: " +
              ", ".join("%s %d" % (k, calls[k]) for k in keys if k in calls) +
              "")
        w("")

    # ---- micro-benchmarks
    if a.micro:
        m = json.load(open(a.micro))
        w("## Micro-benchmarks (Google Benchmark, rolayer_core)")
        w("")
        w("Throughput is Google Benchmark's: bytes over CPU time (not wall time, which other load on the machine inflates).")
        w("")
        w("| benchmark | wall/iter | CPU/iter | throughput (CPU) | label |")
        w("| --- | ---: | ---: | ---: | --- |")
        for b in m.get("benchmarks", []):
            bps = b.get("bytes_per_second")
            unit = b.get("time_unit", "ns")
            tp_ = "—"
            if bps:
                tp_ = "%.1f GiB/s" % (bps / 1024 / MiB) if bps >= 1024 * MiB else "%.0f MiB/s" % (bps / MiB)
            w("| %s | %.2f %s | %.2f %s | %s | %s |" % (b["name"], b["real_time"], unit, b["cpu_time"], unit,
                                                     tp_, b.get("label", "")))
        w("")

    text = "\n".join(out)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
