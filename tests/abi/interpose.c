/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A host program with its own SQLite symbols (as a Go program linking go-sqlite3 has), exported
 * from the executable: librolayer must still use the SQLite it was built with, not these.
 * Exits 0 when the store works and the program's sqlite3_* were never called.
 */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rolayer.h>

static int interposed;

/* Exported from the executable (the build hides symbols by default; a Go program's cgo code is
 * compiled without -fvisibility=hidden and is linked with the shared libraries that use it). */
#define HOST_EXPORT __attribute__((visibility("default")))

/* The host's "SQLite": any call from librolayer lands here if its symbols can be interposed. */
HOST_EXPORT int sqlite3_open_v2(const char *name, void **db, int flags, const char *vfs) {
  (void)name; (void)flags; (void)vfs;
  fprintf(stderr, "INTERPOSED: the host program's sqlite3_open_v2 was called\n");
  interposed = 1;
  if (db) *db = NULL;
  return 14; /* SQLITE_CANTOPEN */
}
HOST_EXPORT int sqlite3_libversion_number(void) {
  fprintf(stderr, "INTERPOSED: the host program's sqlite3_libversion_number was called\n");
  interposed = 1;
  return 3000000;
}
/* And zstd / xxHash, which the library bundles the same way. */
HOST_EXPORT unsigned ZSTD_versionNumber(void) {
  fprintf(stderr, "INTERPOSED: the host program's ZSTD_versionNumber was called\n");
  interposed = 1;
  return 0;
}

int main(void) {
  char dir[] = "/tmp/rolayer-interpose-XXXXXX";
  if (!mkdtemp(dir)) { perror("mkdtemp"); return 2; }
  static const uint8_t empty_tar[1024];
  rolayer_store *store = NULL;
  rolayer_layer *layer = NULL;
  rolayer_error *err = NULL;
  int rc = rolayer_store_open(&store, dir, NULL, &err);
  if (rc == 0) rc = rolayer_register_memory(&layer, store, NULL, empty_tar, sizeof empty_tar, NULL, &err);
  if (rc != 0) fprintf(stderr, "librolayer failed (%d): %s\n", rc, rolayer_error_message(err));
  else printf("registered %s\n", rolayer_layer_chain_id(layer));
  if (layer) rolayer_release(layer, NULL);
  rolayer_store_free(store);
  rolayer_error_free(err);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  if (interposed) {
    fprintf(stderr, "FAIL: librolayer called the host program's copy of a dependency\n");
    return 1;
  }
  return rc == 0 ? 0 : 1;
}
