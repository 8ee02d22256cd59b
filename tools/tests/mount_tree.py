#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fixtures and tree comparison for the mount tests (tools/tests/mount_test.sh).

  mount_tree.py fixtures OUTDIR        write l1.tar l2.tar l3.tar (a 3-layer chain)
  mount_tree.py chain OUTDIR N         write N small layer tars c001.tar ... (deletions each)
  mount_tree.py downgrade STORE         rewrite a dir store in the layout of version 1 (before
                                       overlay-ready trees), to test the migration on open
  mount_tree.py docker-save OUT TAG L1.tar L2.tar ...   a docker-save archive of those layers
  mount_tree.py compare TAR DIR [IGNORE...] [--exact=PATH] [--no-xattrs] [--layers L1.tar ...]
                                       the tree that extracting TAR gives == the tree at DIR?
                                       (--layers: the chain's own tars, base first, whose PAX
                                       times give the nanoseconds a diff tar may not carry)

Compared: names, types, permission bits with set-uid/set-gid/sticky, owners, nanosecond
mtimes (directories and non-directories), extended attributes, hard-link groups, contents,
symlink targets, device numbers. Not compared: the root directory itself, overlayfs' own
attributes (<ns>.overlay.*) and the store's escaped ones (<ns>.rolayer-esc*), which a layer's
own attributes named like overlay's become in a mount (docs/mount.md); a layer's 0/0 character
device is, in a mount, an empty regular file marked user.rolayer-esc-chr00 (its escaped form).
"""
import base64
import hashlib
import io
import os
import stat
import sys
import tarfile
import urllib.parse

T0 = 1700000000


def ns_of(info):
    m = info.pax_headers.get("mtime")
    if m is None:
        return int(info.mtime) * 10**9
    if "." in m:
        a, b = m.split(".", 1)
        b = (b + "000000000")[:9]
        sign = -1 if a.startswith("-") else 1
        return int(a) * 10**9 + sign * int(b)
    return int(m) * 10**9


def add(tf, name, kind="f", data=b"", mode=0o644, uid=0, gid=0, mtime_ns=None, xattrs=None,
        link=None, dev=(0, 0)):
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    if mtime_ns is None:
        # A hard link carries its target's time, as tar writers emit it (the Docker engine
        # applies a link entry's time to the shared inode; this store keeps the target's).
        base = link if kind == "h" else name
        mtime_ns = (T0 + len(base)) * 10**9 + 123456789
    ti.mtime = mtime_ns // 10**9
    pax = {"mtime": "%d.%09d" % (mtime_ns // 10**9, mtime_ns % 10**9)}
    for k, v in (xattrs or {}).items():
        pax["SCHILY.xattr." + k] = v
    ti.pax_headers = pax
    if kind == "f":
        ti.type = tarfile.REGTYPE
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
        return
    if kind == "d":
        ti.type = tarfile.DIRTYPE
    elif kind == "l":
        ti.type = tarfile.SYMTYPE
        ti.linkname = link
    elif kind == "h":
        ti.type = tarfile.LNKTYPE
        ti.linkname = link
    elif kind == "c":
        ti.type = tarfile.CHRTYPE
        ti.devmajor, ti.devminor = dev
    elif kind == "b":
        ti.type = tarfile.BLKTYPE
        ti.devmajor, ti.devminor = dev
    elif kind == "p":
        ti.type = tarfile.FIFOTYPE
    tf.addfile(ti)


def fixtures(out, with_dev00=True):
    os.makedirs(out, exist_ok=True)
    with tarfile.open(os.path.join(out, "l1.tar"), "w", format=tarfile.PAX_FORMAT) as tf:
        add(tf, "a", "d", mode=0o755)
        add(tf, "a/b", "d", mode=0o750, uid=1000, gid=1000)
        add(tf, "a/f1", data=b"one\n")
        add(tf, "a/b/deep", data=b"deep\n" * 100, uid=1000, gid=100)
        add(tf, "a/h1", data=b"linked\n")
        add(tf, "a/h2", "h", link="a/h1")
        add(tf, "bin", "d", mode=0o755)
        add(tf, "bin/su", data=b"\x7fELF", mode=0o4755)
        add(tf, "bin/sg", data=b"\x7fELF", mode=0o2711, gid=42)
        add(tf, "tmp", "d", mode=0o1777)
        add(tf, "s", "l", link="a/f1")
        add(tf, "dangling", "l", link="/nowhere")
        add(tf, "x", data=b"xattr", xattrs={"user.foo": "bar"})
        add(tf, "dev", "d", mode=0o755)
        add(tf, "dev/null", "c", mode=0o666, dev=(1, 3))
        add(tf, "dev/sda", "b", mode=0o660, gid=6, dev=(8, 0))
        add(tf, "dev/fifo", "p", mode=0o600)
        add(tf, "d2", "d", mode=0o755, xattrs={"user.dir": "d2"})
        add(tf, "d2/old", data=b"old\n")
        add(tf, "d2/sub", "d")
        add(tf, "d2/sub/o2", data=b"o2\n")
        add(tf, "rep", data=b"file that becomes a directory\n")
        add(tf, "repd", "d")
        add(tf, "repd/inner", data=b"inner\n")
        add(tf, "gone", "d")
        add(tf, "gone/g1", data=b"g1\n")
        add(tf, "keep", "d")
        add(tf, "keep/k1", data=b"k1\n")
        add(tf, "keep/k2", data=b"k2\n")
    with tarfile.open(os.path.join(out, "l2.tar"), "w", format=tarfile.PAX_FORMAT) as tf:
        add(tf, "a", "d", mode=0o755, mtime_ns=(T0 + 500) * 10**9 + 1)
        add(tf, "a/.wh.f1", data=b"")
        add(tf, "a/new", data=b"new in l2\n",
            xattrs={"trusted.overlay.opaque": "y", "user.overlay.whiteout": "y"} if with_dev00 else {"user.n": "1"})
        add(tf, "d2", "d", mode=0o700)
        add(tf, "d2/.wh..wh..opq", data=b"")
        add(tf, "d2/fresh", data=b"fresh\n")
        add(tf, "rep", "d", mode=0o755)
        add(tf, "rep/x", data=b"x\n")
        add(tf, "repd", data=b"now a file\n")
        add(tf, ".wh.gone", data=b"")
        add(tf, "keep", "d", mode=0o755)
        add(tf, "keep/.wh.k1", data=b"")
        add(tf, "a/h3", "h", link="a/new")
        if with_dev00:
            add(tf, "dev", "d", mode=0o755)
            add(tf, "dev/zero00", "c", mode=0o600, dev=(0, 0))
        add(tf, "esc", data=b"esc", xattrs={"user.rolayer-esc-chr00": "mine", "user.rolayer-esc.x": "y"})
    with tarfile.open(os.path.join(out, "l3.tar"), "w", format=tarfile.PAX_FORMAT) as tf:
        if with_dev00:
            add(tf, ".wh.a", data=b"")
            add(tf, "a", "d", mode=0o711)
        else:
            # Docker's overlay2 merges a directory re-created after its whiteout in the same
            # layer with the lower one (its vfs driver and this store hide the lower content):
            # the docker variant says opaque directly. Likewise overlay2 gives an implicit parent
            # directory the time of extraction: the variant names bin/ itself.
            add(tf, "a", "d", mode=0o711)
            add(tf, "a/.wh..wh..opq", data=b"")
            add(tf, "bin", "d", mode=0o755)
        add(tf, "a/g", data=b"g in l3\n")
        add(tf, "a/g2", "h", link="a/g")
        add(tf, "gone/l", "l", link="../a/g")
        add(tf, "gone", "d", mode=0o755)
        add(tf, "gone/back", data=b"back\n")
        add(tf, "bin/su", data=b"\x7fELF2", mode=0o4750)


def rootless_fixtures(out):
    """Two layers an unprivileged user can register (no device nodes)."""
    os.makedirs(out, exist_ok=True)
    with tarfile.open(os.path.join(out, "u1.tar"), "w", format=tarfile.PAX_FORMAT) as tf:
        for n, k, d in [("a", "d", b""), ("a/f1", "f", b"1"), ("a/f2", "f", b"2"), ("d2", "d", b""),
                        ("d2/old", "f", b"o"), ("keep", "d", b""), ("keep/k1", "f", b"k1"),
                        ("keep/k2", "f", b"k2"), ("x", "f", b"x")]:
            add(tf, n, k, data=d, mode=0o755 if k == "d" else 0o644)
    with tarfile.open(os.path.join(out, "u2.tar"), "w", format=tarfile.PAX_FORMAT) as tf:
        add(tf, "a/.wh.f1")
        add(tf, "d2", "d", mode=0o755)
        add(tf, "d2/.wh..wh..opq")
        add(tf, "d2/fresh", data=b"f")
        add(tf, "keep/.wh.k1")
        add(tf, ".wh.x")


def chain(out, n):
    os.makedirs(out, exist_ok=True)
    for i in range(1, n + 1):
        with tarfile.open(os.path.join(out, "c%03d.tar" % i), "w", format=tarfile.PAX_FORMAT) as tf:
            add(tf, "f%03d" % i, data=b"layer %d\n" % i)
            if i > 1:
                add(tf, ".wh.f%03d" % (i - 1), data=b"")
            add(tf, "all", "d")
            add(tf, "all/%03d" % i, data=b"%d\n" % i)


def skip_xattr(k):
    parts = k.split(".", 1)
    if len(parts) < 2:
        return False
    rest = parts[1]
    return rest.startswith("overlay.") or rest.startswith("rolayer-esc")


def pax_xattrs(ti):
    """Extended attributes of a tar entry: SCHILY.xattr.* and libarchive's LIBARCHIVE.xattr.*
    (URL-encoded name, base64 value), less those skip_xattr leaves out."""
    xs = {}
    for k, v in ti.pax_headers.items():
        if k.startswith("SCHILY.xattr."):
            xs[k[len("SCHILY.xattr."):]] = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v
    for k, v in ti.pax_headers.items():
        if k.startswith("LIBARCHIVE.xattr."):
            name = urllib.parse.unquote(k[len("LIBARCHIVE.xattr."):])
            raw = v.encode("ascii") if isinstance(v, str) else v
            xs.setdefault(name, base64.b64decode(raw + b"=" * (-len(raw) % 4)))
    return {k: v for k, v in xs.items() if not skip_xattr(k)}


def tar_tree(path):
    tree, groups = {}, {}
    with tarfile.open(path, "r:*") as tf:
        for ti in tf:
            name = ti.name.rstrip("/")
            if name in ("", "."):
                continue
            if name.startswith("./"):
                name = name[2:]
            xs = pax_xattrs(ti)
            if ti.islnk():
                target = ti.linkname.rstrip("/")
                base = tree[target]
                tree[name] = dict(base)
                groups.setdefault(target, {target}).add(name)
                continue
            e = {"mode": ti.mode & 0o7777, "uid": ti.uid, "gid": ti.gid, "mtime": ns_of(ti), "xattrs": xs}
            if ti.isdir():
                e["type"] = "d"
            elif ti.issym():
                # Extracting gives a symlink mode 0777 whatever its header says: Linux links
                # have no permissions of their own (the flattened diff now carries the
                # registered headers as they are, e.g. 0644).
                e["type"], e["link"], e["mode"] = "l", ti.linkname, 0o777
            elif ti.ischr() and ti.devmajor == 0 and ti.devminor == 0:
                e["type"], e["sha"] = "f", hashlib.sha256(b"").hexdigest()  # escaped form (see above)
            elif ti.ischr() or ti.isblk():
                e["type"], e["dev"] = ("c" if ti.ischr() else "b"), (ti.devmajor, ti.devminor)
            elif ti.isfifo():
                e["type"] = "p"
            else:
                e["type"] = "f"
                e["sha"] = hashlib.sha256(tf.extractfile(ti).read()).hexdigest()
            tree[name] = e
    links = sorted(sorted(g) for g in groups.values())
    return tree, links


def fs_tree(root):
    tree, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            xs = {}
            try:
                for k in os.listxattr(p, follow_symlinks=False):
                    if not skip_xattr(k):
                        xs[k] = os.getxattr(p, k, follow_symlinks=False)
            except OSError:
                pass
            e = {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "mtime": st.st_mtime_ns,
                 "xattrs": xs}
            m = st.st_mode
            if stat.S_ISDIR(m):
                e["type"] = "d"
            elif stat.S_ISLNK(m):
                e["type"], e["link"] = "l", os.readlink(p)
            elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
                e["type"], e["dev"] = ("c" if stat.S_ISCHR(m) else "b"), (os.major(st.st_rdev), os.minor(st.st_rdev))
            elif stat.S_ISFIFO(m):
                e["type"] = "p"
            else:
                e["type"] = "f"
                with open(p, "rb") as f:
                    e["sha"] = hashlib.sha256(f.read()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), set()).add(rel)
            tree[rel] = e
    links = sorted(sorted(g) for g in inodes.values() if len(g) > 1)
    return tree, links


def layer_times(layers):
    """path -> mtime in ns from the topmost layer tar that has the path (base first given)."""
    times = {}
    for lt in layers:
        with tarfile.open(lt, "r:*") as tf:
            members = list(tf)
            base = {}
            for ti in members:
                name = ti.name.rstrip("/")
                bn = os.path.basename(name)
                d = os.path.dirname(name)
                if bn == ".wh..wh..opq":
                    for k in list(times):
                        if d == "" or k.startswith(d + "/"):
                            del times[k]
                    continue
                if bn.startswith(".wh."):
                    gone = os.path.join(d, bn[4:])
                    for k in list(times):
                        if k == gone or k.startswith(gone + "/"):
                            del times[k]
                    continue
                if ti.islnk():
                    target = ti.linkname.rstrip("/")
                    times[name] = base.get(target, times.get(target))
                    continue
                if not ti.isdir():
                    for k in list(times):
                        if k.startswith(name + "/"):
                            del times[k]
                times[name] = ns_of(ti)
                base[name] = times[name]
    return times


def docker_save(out, layer_tars, tag):
    """A docker-save archive (manifest.json, config, layer tars) of the given layer tars."""
    import json
    import tarfile as tf_mod
    diff_ids, names = [], []
    with tf_mod.open(out, "w") as arch:
        for i, lt in enumerate(layer_tars):
            data = open(lt, "rb").read()
            h = hashlib.sha256(data).hexdigest()
            diff_ids.append("sha256:" + h)
            name = "%s/layer.tar" % h
            names.append(name)
            ti = tf_mod.TarInfo(name)
            ti.size = len(data)
            arch.addfile(ti, io.BytesIO(data))
        cfg = json.dumps({"architecture": "amd64", "os": "linux",
                          "config": {"Cmd": ["/bin/su"], "Env": ["PATH=/bin"]},
                          "rootfs": {"type": "layers", "diff_ids": diff_ids},
                          "history": [{"created_by": "layer %d" % i} for i in range(len(layer_tars))]}).encode()
        ch = hashlib.sha256(cfg).hexdigest() + ".json"
        for name, data in ((ch, cfg), ("manifest.json", json.dumps(
                [{"Config": ch, "RepoTags": [tag], "Layers": names}]).encode())):
            ti = tf_mod.TarInfo(name)
            ti.size = len(data)
            arch.addfile(ti, io.BytesIO(data))


def compare(tar, root, ignore=(), layers=(), exact_ignore=(), no_xattrs=False):
    a, la = tar_tree(tar)
    b, lb = fs_tree(root)
    for t in (a, b):
        for k in exact_ignore:
            t.pop(k, None)
        if no_xattrs:
            for e in t.values():
                e["xattrs"] = {}
    if layers:
        # A diff tar may carry whole seconds only: take the nanoseconds from the layers (the
        # seconds must still agree with the diff).
        times = layer_times(layers)
        for k, e in a.items():
            if k in times and times[k] // 10**9 == e["mtime"] // 10**9:
                e["mtime"] = times[k]
    for t in (a, b):
        for k in list(t):
            if any(k == i or k.startswith(i + "/") for i in ignore):
                del t[k]
    bad = []
    for k in sorted(set(a) | set(b)):
        if k not in a:
            bad.append("only in %s: %s %s" % (root, k, b[k]))
        elif k not in b:
            bad.append("only in %s: %s %s" % (tar, k, a[k]))
        elif a[k] != b[k]:
            bad.append("differs: %s\n  tar:   %s\n  mount: %s" % (k, a[k], b[k]))
    la = [g for g in la if not any(p.startswith(i) for p in g for i in ignore)]
    if la != lb:
        bad.append("hard-link groups differ: tar %s, mount %s" % (la, lb))
    for line in bad:
        print(line)
    print("compared %d entries, %d hard-link group(s): %s" % (len(a), len(la), "equal" if not bad else "DIFFERENT"))
    return 0 if not bad else 1


def downgrade(store):
    root = os.path.join(store, "dir")
    os.unlink(os.path.join(root, ".format"))
    for lid in os.listdir(root):
        ldir = os.path.join(root, lid)
        if lid.startswith(".") or not os.path.isdir(os.path.join(ldir, "meta")):
            continue
        os.unlink(os.path.join(ldir, "meta", "overlay"))
        diff = os.path.join(ldir, "diff")
        wpath = os.path.join(ldir, "meta", "whiteouts")
        if os.path.exists(wpath):
            for w in open(wpath, "rb").read().split(b"\0")[1:-1]:
                p = os.path.join(diff, w.decode())
                try:
                    st = os.lstat(p)
                except FileNotFoundError:
                    continue
                obj = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
                if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    obj = "user.overlay.whiteout" in os.listxattr(p, follow_symlinks=False)
                if obj:
                    parent = os.path.dirname(p)
                    pst = os.lstat(parent)
                    os.unlink(p)
                    os.utime(parent, ns=(pst.st_atime_ns, pst.st_mtime_ns))
        for dirpath, dirnames, filenames in os.walk(diff):
            for p in [dirpath] + [os.path.join(dirpath, n) for n in filenames + dirnames]:
                try:
                    names = os.listxattr(p, follow_symlinks=False)
                except OSError:
                    continue
                placeholder = "user.rolayer-esc-chr00" in names
                for k in names:
                    ns, _, rest = k.partition(".")
                    if rest.startswith("overlay."):
                        os.removexattr(p, k, follow_symlinks=False)
                    elif rest.startswith("rolayer-esc."):
                        v = os.getxattr(p, k, follow_symlinks=False)
                        os.setxattr(p, ns + "." + rest[len("rolayer-esc."):], v, follow_symlinks=False)
                        os.removexattr(p, k, follow_symlinks=False)
                if placeholder:
                    os.removexattr(p, "user.rolayer-esc-chr00")
                    names = os.listxattr(p, follow_symlinks=False)
                    st = os.lstat(p)
                    xs = {k: os.getxattr(p, k) for k in names}
                    parent = os.path.dirname(p)
                    pst = os.lstat(parent)
                    os.unlink(p)
                    os.mknod(p, stat.S_IFCHR | stat.S_IMODE(st.st_mode), 0)
                    os.chown(p, st.st_uid, st.st_gid, follow_symlinks=False)
                    os.chmod(p, stat.S_IMODE(st.st_mode))
                    for k, v in xs.items():
                        os.setxattr(p, k, v, follow_symlinks=False)
                    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
                    os.utime(parent, ns=(pst.st_atime_ns, pst.st_mtime_ns))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "fixtures":
        fixtures(sys.argv[2], with_dev00=(len(sys.argv) < 4 or sys.argv[3] != "nodev00"))
    elif cmd == "downgrade":
        downgrade(sys.argv[2])
    elif cmd == "rootless-fixtures":
        rootless_fixtures(sys.argv[2])
    elif cmd == "names":  # the names extracting a tar gives, sorted, one per line
        # (a directory a flattened diff declares in two layers is one directory once extracted)
        with tarfile.open(sys.argv[2]) as tf:
            print("\n".join(sorted({m.name.rstrip("/") for m in tf})))
    elif cmd == "chain":
        chain(sys.argv[2], int(sys.argv[3]))
    elif cmd == "docker-save":
        docker_save(sys.argv[2], sys.argv[4:], sys.argv[3])
    elif cmd == "compare":
        rest = sys.argv[4:]
        layers = ()
        if "--layers" in rest:
            i = rest.index("--layers")
            rest, layers = rest[:i], rest[i + 1:]
        no_x = "--no-xattrs" in rest
        exact = tuple(r[len("--exact="):] for r in rest if r.startswith("--exact="))
        rest = [r for r in rest if not r.startswith("--")]
        sys.exit(compare(sys.argv[2], sys.argv[3], tuple(rest), tuple(layers), exact, no_x))
    else:
        sys.exit("unknown command " + cmd)
