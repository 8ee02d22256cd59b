#!/usr/bin/env python3
"""Writes a small OCI image layout, deterministically (same bytes on every run).

usage: make-demo-image.py [OUTDIR]     (default: tools/testdata/demo-image next to this script)

The image has three layers, one of each kind a layout commonly holds:
  1. gzip    application/vnd.oci.image.layer.v1.tar+gzip   /etc/motd, /bin/hello (a script), dirs
  2. plain   application/vnd.oci.image.layer.v1.tar        /usr/share/demo/README, a symlink
  3. gzip    application/vnd.oci.image.layer.v1.tar+gzip   /etc/motd replaced, /srv/data.bin
index.json names the manifest "latest". Only the standard library is used.
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

MTIME = 1700000000  # fixed: the image must not change between runs


def tar_bytes(entries):
    """entries: list of (path, kind, data_or_target, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, kind, data, mode in entries:
            ti = tarfile.TarInfo(path)
            ti.mtime = MTIME
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            ti.mode = mode
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def gz(data):
    # mtime=0 and no file name: the same bytes on every run
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0, filename="") as g:
        g.write(data)
    return out.getvalue()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "demo-image")
    if os.path.exists(out):
        shutil.rmtree(out)
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data):
        d = sha(data)
        with open(os.path.join(blobs, d[7:]), "wb") as f:
            f.write(data)
        return d

    hello = b"#!/bin/sh\necho 'hello from a rolayer demo image'\n"
    l1 = tar_bytes([
        ("bin", "dir", None, 0o755),
        ("bin/hello", "file", hello, 0o755),
        ("etc", "dir", None, 0o755),
        ("etc/motd", "file", b"Welcome to the rolayer demo image (layer 1).\n", 0o644),
    ])
    l2 = tar_bytes([
        ("usr", "dir", None, 0o755),
        ("usr/share", "dir", None, 0o755),
        ("usr/share/demo", "dir", None, 0o755),
        ("usr/share/demo/README", "file",
         b"This layer is stored uncompressed in the image layout.\n" * 20, 0o644),
        ("usr/share/demo/motd", "sym", "../../../etc/motd", 0o777),
    ])
    data_bin = bytes((i * 7 + 3) % 251 for i in range(64 * 1024))
    l3 = tar_bytes([
        ("etc", "dir", None, 0o755),
        ("etc/motd", "file", b"Welcome to the rolayer demo image (layer 3 replaced this file).\n", 0o644),
        ("srv", "dir", None, 0o755),
        ("srv/data.bin", "file", data_bin, 0o644),
    ])

    layers = []
    for raw, compress in ((l1, True), (l2, False), (l3, True)):
        blob = gz(raw) if compress else raw
        layers.append({
            "mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else ""),
            "digest": put(blob),
            "size": len(blob),
        })
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(l1), sha(l2), sha(l3)]},
        "history": [
            {"created_by": "make-demo-image.py: layer 1"},
            {"created_by": "make-demo-image.py: layer 2"},
            {"created_by": "make-demo-image.py: layer 3"},
        ],
    }
    config_data = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(config_data), "size": len(config_data)},
        "layers": layers,
    }
    manifest_data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put(manifest_data),
            "size": len(manifest_data),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True, separators=(",", ":"))
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(out)


if __name__ == "__main__":
    main()
