#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates tests/docker/fixture-vfs: a tiny 2-layer image loaded by a real dockerd (vfs),
# stripped to what lib/dockerdb reads (layerdb, imagedb content, repositories.json, vfs/dir).
# The gtest (tests/cpp/dockerdb_test.cpp) runs on the committed copy, without dockerd.
# usage: tests/docker/make_fixture.sh   (as root; needs docker.io)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'dockerd_stop; rm -rf "$work"' EXIT
source "$here/dockerd.sh"
cd "$work"
mk="$here/make_save_archive.py"
python3 "$mk" --layer l1.tar $'etc/;etc/hello=hello world\n;bin/;bin/sh->busybox;bin/busybox=@rep:3000:x'
python3 "$mk" --layer l2.tar $'etc/;etc/hello=changed\n;etc/.wh.gone=;empty='
python3 "$mk" img.tar fixture:2layers l1.tar l2.tar
dockerd_start "$work/d" vfs
docker load -i img.tar
dockerd_stop
root="$work/d/root"
out="$here/fixture-vfs"
rm -rf "$out"
mkdir -p "$out/image/vfs/imagedb" "$out/vfs"
cp -a "$root/image/vfs/layerdb" "$out/image/vfs/"
rm -rf "$out/image/vfs/layerdb/tmp"
cp -a "$root/image/vfs/imagedb/content" "$out/image/vfs/imagedb/"
cp -a "$root/image/vfs/repositories.json" "$out/image/vfs/"
cp -a "$root/vfs/dir" "$out/vfs/"
echo "written: $out"
