#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Builds a `docker save` archive (manifest.json + config + <id>/layer.tar) from layer tars,
for `docker load` in the docker tests.

usage: make_save_archive.py OUT.tar REPO:TAG LAYER.tar [LAYER.tar ...]
       make_save_archive.py --images OUT.tar REPO:TAG=L1.tar,L2.tar [REPO:TAG=... ...]
       make_save_archive.py --corpus OUTDIR CORPUS_DIR
                                   (OUTDIR/<n>.tar: a single-layer image rolayer-corpus:<n> per
                                    well-formed corpus file; OUTDIR/<n>.layer: the layer tar;
                                    OUTDIR/list: "<n> <file>" lines)
       make_save_archive.py --layer OUT.tar SPEC   (a small layer tar: SPEC is name=content,
                                                    name/ for a directory, name->target for a
                                                    symlink, .wh.name for a whiteout; ';'-separated)
Deterministic: fixed mtimes, sorted nothing (the given order is the archive's order).
"""
import bz2
import gzip
import hashlib
import lzma
import io
import json
import sys
import tarfile


def add(tf, name, data, mtime=0):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = mtime
    ti.mode = 0o644
    tf.addfile(ti, io.BytesIO(data))


def make_layer(out, spec):
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for item in [s for s in spec.split(";") if s]:
            if item.endswith("/"):
                ti = tarfile.TarInfo(item.rstrip("/"))
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                ti.mtime = 1
                tf.addfile(ti)
            elif "->" in item:
                name, target = item.split("->", 1)
                ti = tarfile.TarInfo(name)
                ti.type = tarfile.SYMTYPE
                ti.linkname = target
                ti.mtime = 1
                tf.addfile(ti)
            else:
                name, _, content = item.partition("=")
                data = content.encode()
                if content.startswith("@rep:"):  # @rep:N:X = X repeated N times
                    _, n, x = content.split(":", 2)
                    data = (x * int(n)).encode()
                add(tf, name, data, 1)


def read_layer(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.endswith(".bz2"):
        data = bz2.decompress(data)
    elif path.endswith(".xz"):
        data = lzma.decompress(data)
    return data


def expands_beyond(data, limit):
    """Whether the archive's files (sparse ones at their full size) exceed limit bytes."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            return sum(m.size for m in tf.getmembers()) > limit
    except Exception:
        return False


def image(tag, datas, n=0):
    """The config (name, bytes), the blobs and the manifest entry of one image."""
    blobs, diff_ids = [], []
    for data in datas:
        diff = "sha256:" + hashlib.sha256(data).hexdigest()
        diff_ids.append(diff)
        blobs.append((diff[7:] + "/layer.tar", data))
    config = json.dumps(dict({
        "architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
        "config": {"Cmd": ["/x"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2020-01-01T00:00:00Z"} for _ in diff_ids],
    }, **({"comment": "image %d" % n} if n else {})), sort_keys=True).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    entry = {"Config": cfg_name, "RepoTags": [tag], "Layers": [b[0] for b in blobs]}
    return (cfg_name, config), blobs, entry


def write_archive(out, images):
    seen = set()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for (cfg_name, config), blobs, _ in images:
            if cfg_name not in seen:
                seen.add(cfg_name)
                add(tf, cfg_name, config)
            for name, data in blobs:
                if name in seen:
                    continue
                seen.add(name)
                add(tf, name, data)
        add(tf, "manifest.json", json.dumps([e for _, _, e in images]).encode())


def main():
    if sys.argv[1] == "--layer":
        make_layer(sys.argv[2], sys.argv[3])
        return
    if sys.argv[1] == "--corpus":
        out, corpus = sys.argv[2], sys.argv[3]
        lines = []
        with open(corpus + "/MANIFEST.tsv") as f:
            rows = [r.rstrip("\n").split("\t") for r in f][1:]
        n = 0
        for r in rows:
            if len(r) < 9 or r[8] != "well-formed":
                continue
            n += 1
            data = read_layer(corpus + "/" + r[0])
            if expands_beyond(data, 32 << 20) or "sparse-big" in r[0]:
                print("   skipped %s: its files expand to more than 32 MiB on disk" % r[0])
                continue
            write_archive("%s/%d.tar" % (out, n), [image("rolayer-corpus:%d" % n, [data], n)])
            with open("%s/%d.layer" % (out, n), "wb") as f:
                f.write(data)
            lines.append("%d %s\n" % (n, r[0]))
        with open(out + "/list", "w") as f:
            f.writelines(lines)
        return
    if sys.argv[1] == "--images":  # OUT REPO:TAG=L1.tar,L2.tar ...: several images, one archive
        imgs = []
        for spec in sys.argv[3:]:
            tag, _, paths = spec.partition("=")
            imgs.append(image(tag, [read_layer(p) for p in paths.split(",")]))
        write_archive(sys.argv[2], imgs)
        return
    out, tag, layers = sys.argv[1], sys.argv[2], sys.argv[3:]
    write_archive(out, [image(tag, [read_layer(p) for p in layers])])


if __name__ == "__main__":
    main()
