#!/usr/bin/env python3
"""Builds a `docker save` archive (manifest.json + config + <id>/layer.tar) from layer tars,
for `docker load` in the docker tests.

usage: make_save_archive.py OUT.tar REPO:TAG LAYER.tar [LAYER.tar ...]
       make_save_archive.py --layer OUT.tar SPEC   (a small layer tar: SPEC is name=content,
                                                    name/ for a directory, name->target for a
                                                    symlink, .wh.name for a whiteout; ';'-separated)
Deterministic: fixed mtimes, sorted nothing (the given order is the archive's order).
"""
import hashlib
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


def main():
    if sys.argv[1] == "--layer":
        make_layer(sys.argv[2], sys.argv[3])
        return
    out, tag, layers = sys.argv[1], sys.argv[2], sys.argv[3:]
    blobs, diff_ids = [], []
    for path in layers:
        with open(path, "rb") as f:
            data = f.read()
        diff = "sha256:" + hashlib.sha256(data).hexdigest()
        diff_ids.append(diff)
        blobs.append((diff[7:] + "/layer.tar", data))
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
        "config": {"Cmd": ["/x"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2020-01-01T00:00:00Z"} for _ in diff_ids],
    }, sort_keys=True).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [tag],
                            "Layers": [b[0] for b in blobs]}]).encode()
    seen = set()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        add(tf, cfg_name, config)
        for name, data in blobs:
            if name in seen:
                continue
            seen.add(name)
            add(tf, name, data)
        add(tf, "manifest.json", manifest)


if __name__ == "__main__":
    main()
