#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Packaging proof (docs/abi.md, "Packaging"): builds the Debian packages librolayer0.1,
# librolayer-dev and rolayer with CPack from a release build configured as a distribution
# would (prefix /usr, multiarch libdir, Debian's hardening flags, no RPATH, no tests), runs
# lintian on them, unpacks them into a fresh root and builds a consumer against that root with
# pkg-config (only rolayer.pc visible) and with find_package(rolayer), and runs it.
#   packaging/deb/build-and-test.sh [BUILD_DIR]    (default build/deb; CI: .ci/run)
# The packages are unpacked with `dpkg -x`, not installed with `dpkg --root`: a root for
# dpkg --root would need libc, libstdc++, libarchive, libssl … installed in it first (a
# debootstrap), which is neither fast nor offline. dpkg -x lays out exactly the files the
# packages would install; the Depends fields are checked separately.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build/deb}
case "$build" in /*) ;; *) build=$(pwd)/$build ;; esac
for t in dpkg-deb dpkg-shlibdeps lintian fakeroot; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed (tools/install-deps.sh)"; exit 77; }
done
jobs=$(nproc)
export CFLAGS CXXFLAGS LDFLAGS CPPFLAGS
CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
CXXFLAGS="$(dpkg-buildflags --get CXXFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
LDFLAGS=$(dpkg-buildflags --get LDFLAGS)
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DROLAYER_BUILD_TESTS=OFF -DROLAYER_BUILD_TOOLS=ON -DROLAYER_PC_RELOCATABLE=OFF \
  -DCMAKE_SKIP_INSTALL_RPATH=ON >/dev/null
cmake --build "$build" -j"$jobs"
rm -f "$build"/*.deb
(cd "$build" && cpack -G DEB >/dev/null)
ver=$(sed -n 's/^project(rolayer VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
so=$(echo "$ver" | awk -F. '$1 == 0 {print $1 "." $2; next} {print $1}')
runtime="librolayer$so"
work=$(mktemp -d /tmp/rolayer-deb-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
debs=()
for p in "$runtime" librolayer-dev rolayer; do
  f=$(ls "$build/${p}_${ver}-"*_*.deb 2>/dev/null | head -1)
  [ -n "$f" ] || { bad "no package $p"; continue; }
  debs+=("$f")
  echo "== $(basename "$f")"
  dpkg-deb -f "$f" Package Version Depends | sed 's/^/   /'
done
[ "$fail" -eq 0 ] || exit 1

# The runtime package follows the SONAME; the others depend on exactly this build of it.
f_rt=${debs[0]}; f_dev=${debs[1]}; f_cli=${debs[2]}
dpkg-deb -c "$f_rt" > "$work/rt.txt"
grep -q "librolayer.so.$so.0\$" "$work/rt.txt" || bad "$runtime lacks librolayer.so.$so.0"
grep -q "librolayer.so.$so -> librolayer.so.$so.0" "$work/rt.txt" || bad "$runtime lacks the SONAME link"
grep -qE "librolayer.so -> |/include/" "$work/rt.txt" && bad "$runtime holds development files"
dev_deps=$(dpkg-deb -f "$f_dev" Depends); cli_deps=$(dpkg-deb -f "$f_cli" Depends)
case "$dev_deps" in *"$runtime (= $ver-"*) ;; *) bad "librolayer-dev does not depend on $runtime (= $ver-…)";; esac
case "$cli_deps" in *"$runtime"*) ;; *) bad "rolayer does not depend on $runtime";; esac
dpkg-deb -I "$f_rt" shlibs > "$work/shlibs" 2>&1 || true
grep -q "^librolayer $so $runtime" "$work/shlibs" || bad "$runtime has no shlibs entry for librolayer $so"

# lintian: no errors or warnings but those docs/abi.md explains (packaging/deb/lintian-expected).
lintian --no-tag-display-limit -i "${debs[@]}" > "$work/lintian.txt" 2>&1 || true
# "W: package: tag [context]" -> "W: tag"
grep -E '^[EW]: ' "$work/lintian.txt" | awk '{print $1, $3}' | sort -u > "$work/tags.txt" || true
unexpected=$(grep -vxF -f "$src/packaging/deb/lintian-expected" "$work/tags.txt" || true)
if [ -n "$unexpected" ]; then
  grep -E '^[EW]: ' "$work/lintian.txt"
  bad "lintian: unexpected tags: $(echo $unexpected)"
else
  echo "lintian: $(grep -cE '^[EW]: ' "$work/lintian.txt" || true) error/warning lines, all explained in docs/abi.md: $(tr '\n' ' ' < "$work/tags.txt")"
fi

# A fresh root with only these packages' files.
root="$work/root"
for f in "${debs[@]}"; do dpkg -x "$f" "$root"; done
libdir=$(cd "$root" && dirname "$(find usr/lib -name "librolayer.so.$so" | head -1)")
[ -f "$root/$libdir/pkgconfig/rolayer.pc" ] || bad "no rolayer.pc under /$libdir/pkgconfig"
grep -q '^includedir=/usr/include$' "$root/$libdir/pkgconfig/rolayer.pc" || bad "rolayer.pc: includedir is not /usr/include"
grep -q "^libdir=/$libdir\$" "$root/$libdir/pkgconfig/rolayer.pc" || bad "rolayer.pc: libdir is not /$libdir"
"$root/usr/bin/rolayer" --help >/dev/null 2>&1 || LD_LIBRARY_PATH="$root/$libdir" "$root/usr/bin/rolayer" --help >/dev/null || bad "rolayer --help fails"

cat > "$work/consumer.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <rolayer.h>
int main(int argc, char **argv) {
  static const uint8_t empty_tar[1024];
  rolayer_store *store = NULL;
  rolayer_layer *layer = NULL;
  rolayer_error *err = NULL;
  int64_t n = -1;
  if (argc < 2 || rolayer_version() != ROLAYER_VERSION_NUMBER) return 2;
  if (rolayer_store_open(&store, argv[1], NULL, &err) != ROLAYER_OK ||
      rolayer_register_memory(&layer, store, NULL, empty_tar, sizeof empty_tar, NULL, &err) != ROLAYER_OK ||
      rolayer_layer_stream_size(&n, layer, &err) != ROLAYER_OK) {
    fprintf(stderr, "consumer: %s\n", rolayer_error_message(err));
    return 1;
  }
  printf("%s %lld\n", rolayer_layer_chain_id(layer), (long long)n);
  rolayer_layer_close(layer);
  rolayer_store_free(store);
  return 0;
}
C
want="sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef 1024"
# pkg-config: only the packages' own .pc is visible (no libarchive.pc, sqlite3.pc …), paths
# are rooted at the fresh root through the sysroot.
pc() { PKG_CONFIG_LIBDIR="$root/$libdir/pkgconfig" PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR="$root" pkg-config "$@"; }
flags=$(pc --cflags --libs rolayer) || bad "pkg-config --cflags --libs rolayer fails with only the packages' files"
echo "pkg-config --cflags --libs rolayer: $flags"
cc -std=c99 -Wall -Werror -o "$work/consumer-pc" "$work/consumer.c" $flags || bad "the pkg-config consumer does not build"
mkdir -p "$work/s1" "$work/s2"
[ "$(LD_LIBRARY_PATH="$root/$libdir" "$work/consumer-pc" "$work/s1" 2>&1)" = "$want" ] || bad "the pkg-config consumer does not run"
ldd_out=$(LD_LIBRARY_PATH="$root/$libdir" ldd "$work/consumer-pc" | grep librolayer)
echo "$ldd_out" | grep -q "$root/$libdir/librolayer.so.$so " || bad "the consumer does not load the packaged library: $ldd_out"
# find_package(rolayer) from the root, version-checked (SameMinorVersion).
mkdir -p "$work/cm"
cat > "$work/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(rolayer $ver REQUIRED)
add_executable(consumer-cm $work/consumer.c)
target_link_libraries(consumer-cm PRIVATE rolayer::rolayer)
CM
cmake -S "$work/cm" -B "$work/cm/build" -DCMAKE_PREFIX_PATH="$root/usr" -DCMAKE_FIND_USE_CMAKE_SYSTEM_PATH=OFF >/dev/null \
  && cmake --build "$work/cm/build" >/dev/null || bad "the find_package consumer does not build"
[ "$(LD_LIBRARY_PATH="$root/$libdir" "$work/cm/build/consumer-cm" "$work/s2" 2>&1)" = "$want" ] || bad "the find_package consumer does not run"
if [ "$fail" -ne 0 ]; then echo "deb packages: FAILED"; exit 1; fi
echo "deb packages: OK ($(cd "$build" && ls *.deb | tr '\n' ' '))"
