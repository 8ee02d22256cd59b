/* SPDX-License-Identifier: Apache-2.0 */
/* export: rolayer-export STORE CHAINID — writes the verified, byte-exact tar to stdout.
 * A reader: it closes its handle (rolayer_layer_close) instead of releasing it, so exporting
 * deletes nothing. */
#include <stdio.h>

#include <rolayer.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s STORE CHAINID > layer.tar\n", argv[0]);
    return 2;
  }
  rolayer_store *store = NULL;
  rolayer_layer *layer = NULL;
  rolayer_tar_stream *s = NULL;
  rolayer_error *err = NULL;
  static char buf[1 << 20];
  size_t n = 0;
  int rc = rolayer_store_open(&store, argv[1], NULL, &err);
  if (rc == 0) rc = rolayer_open(&layer, store, argv[2], &err);
  if (rc == 0) rc = rolayer_tar_stream_open(&s, layer, &err);
  while (rc == 0 && (rc = rolayer_tar_stream_read(s, buf, sizeof buf, &n, &err)) == 0 && n > 0)
    if (fwrite(buf, 1, n, stdout) != n) { perror("write"); rc = ROLAYER_EIO; }
  if (rc != 0 && err) fprintf(stderr, "error %d: %s\n", rc, rolayer_error_message(err));
  rolayer_tar_stream_free(s);
  rolayer_layer_close(layer); /* look, don't own: closing never deletes */
  rolayer_error_free(err);
  rolayer_store_free(store);
  return rc == 0 ? 0 : 1;
}
