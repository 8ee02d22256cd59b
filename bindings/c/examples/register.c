/* SPDX-License-Identifier: Apache-2.0 */
/* register: rolayer-register STORE FILE [PARENT] — registers a tar file and keeps it
 * (a persistent reference); prints the ChainID. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <rolayer.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s STORE FILE [PARENT]\n", argv[0]);
    return 2;
  }
  rolayer_store *store = NULL;
  rolayer_layer *layer = NULL;
  rolayer_error *err = NULL;
  int fd = open(argv[2], O_RDONLY);
  if (fd < 0) { perror(argv[2]); return 1; }
  int rc = rolayer_store_open(&store, argv[1], NULL, &err);
  if (rc == 0) rc = rolayer_register_fd(&layer, store, argc > 3 ? argv[3] : NULL, fd, NULL, &err);
  if (rc == 0) rc = rolayer_store_retain(store, rolayer_layer_chain_id(layer), &err);
  if (rc == 0) printf("%s\n", rolayer_layer_chain_id(layer));
  else fprintf(stderr, "error %d: %s\n", rc, rolayer_error_message(err));
  /* An owner gives its handle's reference back with rolayer_release: the persistent reference
   * taken above keeps the layer (had the retain failed, this deletes it: nothing half-kept). */
  rolayer_release(layer, NULL);
  rolayer_error_free(err);
  rolayer_store_free(store);
  close(fd);
  return rc == 0 ? 0 : 1;
}
