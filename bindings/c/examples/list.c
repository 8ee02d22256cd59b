/* SPDX-License-Identifier: Apache-2.0 */
/* list: rolayer-list STORE — one line per layer: ChainID, DiffID, size, parent.
 * A reader: it closes the handles it opens (rolayer_layer_close), never releases them, so
 * listing deletes nothing. */
#include <inttypes.h>
#include <stdio.h>

#include <rolayer.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s STORE\n", argv[0]);
    return 2;
  }
  rolayer_store *store = NULL;
  rolayer_string_list *ids = NULL;
  rolayer_error *err = NULL;
  int rc = rolayer_store_open(&store, argv[1], NULL, &err);
  if (rc == 0) rc = rolayer_store_list(&ids, store, &err);
  for (size_t i = 0; rc == 0 && i < rolayer_string_list_count(ids); i++) {
    rolayer_layer *l = NULL;
    int64_t size = 0;
    if ((rc = rolayer_open(&l, store, rolayer_string_list_get(ids, i), &err)) != 0) break;
    rolayer_layer_size(&size, l, NULL);
    const char *parent = rolayer_layer_parent(l);
    printf("%s %s %" PRId64 " %s\n", rolayer_layer_chain_id(l), rolayer_layer_diff_id(l), size, parent ? parent : "-");
    rolayer_layer_close(l); /* look, don't own: closing never deletes */
  }
  if (rc != 0) fprintf(stderr, "error %d: %s\n", rc, rolayer_error_message(err));
  rolayer_string_list_free(ids);
  rolayer_error_free(err);
  rolayer_store_free(store);
  return rc == 0 ? 0 : 1;
}
