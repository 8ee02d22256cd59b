#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the C examples against an installed librolayer (PREFIX), both with pkg-config and with
# find_package(rolayer), and runs them: register, list, export byte for byte.
set -euo pipefail
prefix=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
pass=0; fail=0
check() { if "$@"; then pass=$((pass+1)); else echo "FAILED: $*"; fail=$((fail+1)); fi; }

make -s -C "$here/examples" -f "$here/examples/Makefile" OUT="$work" >/dev/null
mkdir -p "$work/pc" && mv "$here"/examples/rolayer-{register,export,list} "$work/pc/"
cmake -S "$here/examples" -B "$work/cm" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cm" >/dev/null

# A layer nobody owns: registered, then its handle closed without a persistent reference. It
# stays in the store (closing never deletes) until a release or unretain, so the readers below
# must not delete it by looking at it.
cat > "$work/unretained.c" <<'EOF_C'
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <rolayer.h>
int main(int argc, char **argv) {
  rolayer_store *store = NULL;
  rolayer_layer *layer = NULL;
  rolayer_error *err = NULL;
  int fd = argc == 3 ? open(argv[2], O_RDONLY) : -1;
  if (fd < 0) return 2;
  int rc = rolayer_store_open(&store, argv[1], NULL, &err);
  if (rc == 0) rc = rolayer_register_fd(&layer, store, NULL, fd, NULL, &err);
  if (rc == 0) printf("%s\n", rolayer_layer_chain_id(layer));
  else fprintf(stderr, "error %d: %s\n", rc, rolayer_error_message(err));
  rolayer_layer_close(layer);
  rolayer_error_free(err);
  rolayer_store_free(store);
  close(fd);
  return rc == 0 ? 0 : 1;
}
EOF_C
# shellcheck disable=SC2046
cc -O2 -Wall -Wextra -o "$work/unretained" "$work/unretained.c" $(pkg-config --cflags --libs rolayer)

tar_in="$here/../../tests/vectors/data/base.tar"
child_in="$here/../../tests/vectors/data/child.tar"
for kind in pc cm; do
  bin="$work/$kind"
  store="$work/store-$kind"
  id=$("$bin/rolayer-register" "$store" "$tar_in")
  check test "$id" = "sha256:333bdc78b487fb5c4604b365c0fb2e45ce0ec82cba106e87afe88a1fe889b234"
  child=$("$bin/rolayer-register" "$store" "$child_in" "$id")
  check test "$child" = "sha256:9d85e3c58ded2988dece667df08fa20670125c65a9cf1ca08f7388f9b77174b9"
  "$bin/rolayer-export" "$store" "$child" > "$work/out.tar"
  check cmp -s "$work/out.tar" "$child_in"
  check test "$("$bin/rolayer-list" "$store" | wc -l)" -eq 2
  if "$bin/rolayer-export" "$store" "sha256:$(printf '0%.0s' $(seq 64))" >/dev/null 2>"$work/err"; then
    check false
  else
    check grep -q "layer does not exist" "$work/err"
  fi
  # The readers (list, export) only look: each run twice on an unretained layer finds it whole.
  loose="$work/loose-$kind"
  lid=$("$work/unretained" "$loose" "$tar_in")
  check test "$lid" = "sha256:333bdc78b487fb5c4604b365c0fb2e45ce0ec82cba106e87afe88a1fe889b234"
  for run in 1 2; do
    check test "$("$bin/rolayer-list" "$loose" | cut -d' ' -f1)" = "$lid"
    if "$bin/rolayer-export" "$loose" "$lid" > "$work/loose.tar" 2>"$work/err"; then
      check cmp -s "$work/loose.tar" "$tar_in"
    else
      echo "export run $run: $(cat "$work/err")"; check false
    fi
  done
  check test "$("$bin/rolayer-list" "$loose" | wc -l)" -eq 1
done
# The licence is installed with the library.
check test -s "$prefix/share/doc/rolayer/LICENSE"
check grep -q "Apache License" "$prefix/share/doc/rolayer/LICENSE"
check test -s "$prefix/share/doc/rolayer/NOTICE"
echo "c examples: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
