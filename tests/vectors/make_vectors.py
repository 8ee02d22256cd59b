#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the shared conformance vectors (data/*.tar and vectors.tsv).

Every suite (C++, C, Go, Rust) reads vectors.tsv: each row registers data/<input> on the layer
of row <parent> ("-" for a base layer) and expects either the DiffID and ChainID given, or the
error code named. Run once; the outputs are checked in. Deterministic (fixed mtimes, no users).
"""
import hashlib, io, os, tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")


def tar_bytes(members, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for m in members:
            kind, name = m[0], m[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            data = None
            if kind == "file":
                data = m[2]
                ti.size = len(data)
                ti.mode = 0o644
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = m[2]
                ti.mode = 0o777
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = m[2]
                ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def chain(parent_chain, diff):
    return diff if parent_chain is None else "sha256:" + hashlib.sha256((parent_chain + " " + diff).encode()).hexdigest()


cases = []  # (name, bytes, parent, error)
empty = b"\0" * 1024
cases.append(("empty", empty, "-", "-"))
cases.append(("empty-on-empty", empty, "empty", "-"))
base = tar_bytes([("dir", "etc"), ("file", "etc/hostname", b"rolayer\n"), ("symlink", "etc/link", "hostname"),
                  ("file", "bin/sh", b"#!/bin/true\n" * 100)])
cases.append(("base", base, "-", "-"))
child = tar_bytes([("file", "etc/hostname", b"changed\n"), ("file", "etc/.wh.link", b""),
                   ("hardlink", "bin/sh2", "bin/sh")])
cases.append(("child", child, "base", "-"))
gnu = tar_bytes([("file", "a/" + "long" * 40 + "/name.txt", b"x" * 1000), ("symlink", "s", "a")], tarfile.GNU_FORMAT)
cases.append(("gnu-longname", gnu, "-", "-"))
ustar = tar_bytes([("file", "hello.txt", b"hello world\n")], tarfile.USTAR_FORMAT)
cases.append(("ustar-trailing", ustar + b"\0" * 700 + b"trailing bytes", "-", "-"))
dup = tar_bytes([("file", "dup", b"first version"), ("file", "dup", b"second, longer version")])
cases.append(("duplicate-path", dup, "-", "-"))
# Errors.
cases.append(("truncated", base[:512 + 100], "-", "ROLAYER_EARCHIVE"))
bad = bytearray(ustar)
bad[148] ^= 0x21
cases.append(("bad-checksum", bytes(bad), "-", "ROLAYER_EARCHIVE"))
cases.append(("dotdot", tar_bytes([("file", "../escape", b"x")]), "-", "ROLAYER_EUNSAFE"))
cases.append(("through-symlink", tar_bytes([("symlink", "l", "/etc"), ("file", "l/passwd", b"x")]), "-", "ROLAYER_EUNSAFE"))
cases.append(("hardlink-out", tar_bytes([("hardlink", "h", "../../etc/passwd")]), "-", "ROLAYER_EUNSAFE"))
cases.append(("missing-parent", empty, "sha256:" + "0" * 64, "ROLAYER_ENOTFOUND"))

chains = {}
rows = ["name\tinput\tparent\tdiff_id\tchain_id\terror"]
for name, data, parent, err in cases:
    fn = name + ".tar"
    with open(os.path.join(DATA, fn), "wb") as f:
        f.write(data)
    if err != "-":
        rows.append("\t".join([name, fn, parent, "-", "-", err]))
        continue
    d = sha(data)
    c = chain(chains[parent] if parent != "-" else None, d)
    chains[name] = c
    rows.append("\t".join([name, fn, parent, d, c, "-"]))
with open(os.path.join(HERE, "vectors.tsv"), "w") as f:
    f.write("\n".join(rows) + "\n")
