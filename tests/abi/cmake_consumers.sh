#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# How integrators consume the build (docs/abi.md, "Packaging"), without rebuilding the library:
#  1. find_package(rolayer 0.1) from the build tree (-Drolayer_DIR=<build dir>): build and run.
#  2. add_subdirectory(<source>) in a parent project, configured only: rolayer::rolayer exists,
#     tests and tools default OFF, the parent's empty CMAKE_BUILD_TYPE is not forced, and with
#     a Debian multiarch libdir (lib/x86_64-linux-gnu) rolayer.pc still resolves to <prefix>/include
#     and <prefix>/lib/x86_64-linux-gnu, and has no Requires.private in a shared-only build.
#   cmake_consumers.sh SOURCE_DIR BUILD_DIR [run|norun]
set -eu
src=$1
build=$2
run=${3:-run}
work=$(mktemp -d /tmp/rolayer-cmake-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

mkdir -p "$work/tree"
cat > "$work/tree/main.c" <<'C'
#include <stdio.h>
#include <rolayer.h>
int main(void) { printf("%s\n", rolayer_version_string()); return rolayer_version() == ROLAYER_VERSION_NUMBER ? 0 : 1; }
C
cat > "$work/tree/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(tree_consumer C)
find_package(rolayer 0.1 REQUIRED)
add_executable(app main.c)
target_link_libraries(app PRIVATE rolayer::rolayer)
CM
if cmake -S "$work/tree" -B "$work/tree/b" -G Ninja -Drolayer_DIR="$build" >"$work/log" 2>&1 &&
   cmake --build "$work/tree/b" >>"$work/log" 2>&1; then
  if [ "$run" = run ]; then
    out=$("$work/tree/b/app") || bad "the build-tree consumer does not run"
    echo "build-tree find_package: OK (loaded $out)"
  else
    echo "build-tree find_package: OK (built; not run against a sanitized library)"
  fi
else
  cat "$work/log"; bad "find_package(rolayer) from the build tree"
fi
# A 0.2 request must not accept 0.1 (SameMinorVersion).
sed -i 's/find_package(rolayer 0.1 REQUIRED)/find_package(rolayer 0.2 QUIET)\nif(rolayer_FOUND)\n  message(FATAL_ERROR "0.2 accepted 0.1")\nendif()/' "$work/tree/CMakeLists.txt"
sed -i '/add_executable\|target_link_libraries/d' "$work/tree/CMakeLists.txt"
cmake -S "$work/tree" -B "$work/tree/b2" -G Ninja -Drolayer_DIR="$build" >"$work/log" 2>&1 || { cat "$work/log"; bad "find_package(rolayer 0.2) accepted 0.1"; }

mkdir -p "$work/sub"
cat > "$work/sub/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.20)
project(parent C CXX)
add_subdirectory("$src" rolayer)
if(NOT TARGET rolayer::rolayer)
  message(FATAL_ERROR "no rolayer::rolayer alias")
endif()
if(ROLAYER_BUILD_TESTS OR ROLAYER_BUILD_TOOLS)
  message(FATAL_ERROR "tests/tools default ON in a subproject")
endif()
if(CMAKE_BUILD_TYPE)
  message(FATAL_ERROR "the subproject set CMAKE_BUILD_TYPE=\${CMAKE_BUILD_TYPE}")
endif()
add_executable(app "$work/tree/main.c")
target_link_libraries(app PRIVATE rolayer::rolayer)
CM
if cmake -S "$work/sub" -B "$work/sub/b" -G Ninja -DCMAKE_INSTALL_LIBDIR=lib/x86_64-linux-gnu >"$work/log" 2>&1; then
  echo "add_subdirectory: OK (alias, tests/tools OFF, build type untouched)"
  pc="$work/sub/b/rolayer/rolayer.pc"
  mkdir -p "$work/prefix/lib/x86_64-linux-gnu/pkgconfig"
  cp "$pc" "$work/prefix/lib/x86_64-linux-gnu/pkgconfig/"
  q() { PKG_CONFIG_LIBDIR="$work/prefix/lib/x86_64-linux-gnu/pkgconfig" PKG_CONFIG_PATH= pkg-config "$@" rolayer; }
  inc=$(q --variable=includedir); lib=$(q --variable=libdir)
  p=$(realpath -m "$work/prefix")
  [ "$(realpath -m "$inc")" = "$p/include" ] || bad "rolayer.pc includedir $inc is not <prefix>/include"
  [ "$(realpath -m "$lib")" = "$p/lib/x86_64-linux-gnu" ] || bad "rolayer.pc libdir $lib is not <prefix>/lib/x86_64-linux-gnu"
  grep -q "Requires" "$pc" && bad "rolayer.pc of a shared-only build has Requires: $(grep Requires "$pc")"
  q --cflags --libs >/dev/null || bad "pkg-config --cflags --libs rolayer fails with only rolayer.pc visible"
  [ "$fail" -eq 0 ] && echo "rolayer.pc with libdir lib/x86_64-linux-gnu: OK ($(q --cflags --libs))"
else
  cat "$work/log"; bad "add_subdirectory configure"
fi
exit $fail
