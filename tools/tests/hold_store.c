/*
 * hold_store: a test helper that opens a store (taking its process lock), says "ready" on
 * stdout, and holds it until standard input closes or SECONDS pass, then frees it.
 * usage: hold_store ROOT DRIVER SECONDS
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "rolayer.h"

int main(int argc, char **argv) {
  rolayer_store *store = NULL;
  rolayer_error *err = NULL;
  int rc, seconds;
  struct pollfd p;

  if (argc != 4) {
    fprintf(stderr, "usage: hold_store ROOT DRIVER SECONDS\n");
    return 2;
  }
  seconds = atoi(argv[3]);
  rc = rolayer_store_open(&store, argv[1], argv[2], &err);
  if (rc != ROLAYER_OK) {
    fprintf(stderr, "hold_store: %s\n", rolayer_error_message(err));
    rolayer_error_free(err);
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  p.fd = STDIN_FILENO;
  p.events = POLLIN;
  p.revents = 0;
  /* Returns when stdin is readable or closed (EOF), or on timeout. */
  poll(&p, 1, seconds * 1000);
  rolayer_store_free(store);
  return 0;
}
