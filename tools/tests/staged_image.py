# SPDX-License-Identifier: Apache-2.0
# staged_image.py OUT MODE: a docker-save archive of six layers that exercises parallel import
# (rolayer/stage.h): hard links inside a layer and into a lower layer, a parent directory a layer
# does not declare, whiteouts, an opaque directory, a symlink. Prints the DiffIDs, base first.
# MODE: plain; badlink (layer 3 links to a file that is in no layer); bad-diffid (the config
# lists a wrong DiffID for layer 5); nodirs (as plain, with no directory entries above the base).
import hashlib, io, json, sys, tarfile
out, mode = sys.argv[1], sys.argv[2]
def tarb(entries):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            kind, name = e[0], e[1]
            ti = tarfile.TarInfo(name); ti.mtime = 1700000000 + len(name)
            if kind == "d":
                ti.type = tarfile.DIRTYPE; ti.mode = e[2] if len(e) > 2 else 0o755
                t.addfile(ti)
            elif kind == "f":
                data = e[2]; ti.size = len(data); ti.mode = 0o644
                t.addfile(ti, io.BytesIO(data))
            elif kind == "h":
                ti.type = tarfile.LNKTYPE; ti.linkname = e[2]
                t.addfile(ti)
            elif kind == "s":
                ti.type = tarfile.SYMTYPE; ti.linkname = e[2]
                t.addfile(ti)
    return b.getvalue()
big = lambda seed, n: hashlib.sha256(seed).digest() * (n // 32)
layers = [
    tarb([("d", "etc/", 0o750), ("f", "etc/one", b"one\n" * 100), ("d", "usr/", 0o711), ("d", "usr/bin/"),
          ("f", "usr/bin/tool", big(b"tool", 200000))]),
    tarb([("d", "etc/"), ("f", "etc/two", b"two\n"), ("h", "etc/one-again", "etc/two"), ("f", ".wh.gone", b"")]),
    # a hard link to a file of a lower layer: applied again on its parent at commit
    tarb([("d", "usr/"), ("d", "usr/bin/"), ("h", "usr/bin/tool2", "usr/bin/tool"), ("f", "usr/bin/own", b"own")]),
    # a parent directory that the layer does not declare (usr/ is in a lower layer)
    tarb([("f", "usr/share/doc/readme", b"read me\n" * 50)]),
    tarb([("d", "opt/"), ("f", "opt/.wh..wh..opq", b""), ("f", "opt/x", big(b"x", 100000)), ("s", "opt/link", "../etc/one")]),
    tarb([("d", "var/"), ("f", "var/log", b"log\n")]),
]
if mode == "badlink":
    layers[2] = tarb([("h", "usr/bin/tool3", "usr/bin/nowhere")])
if mode == "nodirs":
    # as plain, but above the base layer no directory entries (as bazel rules_oci or ko write
    # layers): every parent directory is implicit, its metadata the lower layers'
    def strip_dirs(data):
        b = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
            for m in src.getmembers():
                if not m.isdir():
                    t.addfile(m, src.extractfile(m) if m.isreg() else None)
        return b.getvalue()
    layers = [layers[0]] + [strip_dirs(l) for l in layers[1:]]
sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
diff_ids = [sha(l) for l in layers]
if mode == "bad-diffid":
    diff_ids[4] = "sha256:" + "ab" * 32
cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
names = ["l%d/layer.tar" % i for i in range(len(layers))]
man = [{"Config": cfg_name, "RepoTags": ["demo/parallel:v1"], "Layers": names}]
with tarfile.open(out, "w") as t:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    add(cfg_name, cfg)
    for n, b in zip(names, layers):
        add(n, b)
    add("manifest.json", json.dumps(man).encode())
print(" ".join(diff_ids))
