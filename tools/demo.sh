#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A first look at rolayer: import a small OCI image, list it, export a layer, verify the store.
#
# usage: tools/demo.sh [BUILD_DIR]
#   BUILD_DIR   a CMake build directory (holding tools/rolayer) or the directory of a rolayer
#               binary. Without it, or when it holds no rolayer yet, the script installs the
#               missing Debian packages (tools/install-deps.sh) and builds the tool there
#               (default: build/demo in the source tree).
#
# It uses the default store: $ROLAYER_ROOT, else $XDG_DATA_HOME/rolayer, else
# ~/.local/share/rolayer (created on first use). The image is tools/testdata/demo-image, made by
# tools/testdata/make-demo-image.py. What it imports stays in the store; the last line says how
# to remove it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(dirname "$here")
build=${1:-$src/build/demo}
if [ -x "$build/tools/rolayer" ]; then
  rolayer=$build/tools/rolayer
elif [ -x "$build/rolayer" ] && [ ! -d "$build/rolayer" ]; then
  rolayer=$build/rolayer
else
  echo "rolayer demo: building the tool in $build" >&2
  bash "$here/install-deps.sh"
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$src" -B "$build" -G Ninja -DROLAYER_BUILD_TESTS=OFF >/dev/null
  fi
  cmake --build "$build" --target rolayer_cli >/dev/null
  rolayer=$build/tools/rolayer
fi
image=$here/testdata/demo-image
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rolayer-demo.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# run CMD...: prints the command, then runs it.
run() {
  printf '\n$ %s\n' "$*" | sed "s|$rolayer|rolayer|g; s|$here/|tools/|g; s|$tmp|\$TMP|g"
  "$@"
}

if [ -n "${ROLAYER_ROOT:-}" ]; then
  store=$ROLAYER_ROOT
elif [ -n "${XDG_DATA_HOME:-}" ]; then
  store=$XDG_DATA_HOME/rolayer
else
  store=$HOME/.local/share/rolayer
fi
echo "rolayer demo: store $store (the default store), image tools/testdata/demo-image"

# 1. Import the OCI image layout: three layers (gzip, plain, gzip), each blob checked against its
#    digest while its DiffID is computed, the DiffIDs checked against the image config.
printf '\n$ rolayer import tools/testdata/demo-image:latest\n'
top=$("$rolayer" import "$image:latest")
echo "$top"

# 2. The store: the imported chain (the top layer is retained; its parents stay with it).
run "$rolayer" ls
run "$rolayer" inspect "$top"

# 3. Export the top layer: the byte-exact tar it was registered with, verified on the way out.
run "$rolayer" export "$top" -o "$tmp/top-layer.tar"
run tar -tvf "$tmp/top-layer.tar"
printf '\n$ sha256sum $TMP/top-layer.tar   # equals the layer'"'"'s DiffID\n'
sha256sum "$tmp/top-layer.tar" | sed "s|$tmp|\$TMP|"
"$rolayer" inspect --json "$top" | grep '"diff_id"'

# 4. Verify every layer in the store against its DiffID.
run "$rolayer" verify

# 5. Write the chain back out as an OCI image layout with uncompressed layers.
run "$rolayer" export-image "$top" "$tmp/exported-image"
run ls "$tmp/exported-image" "$tmp/exported-image/blobs/sha256"

printf '\nDone. The image stays in the store; remove it with:\n  rolayer rm %s\n' "$top"
