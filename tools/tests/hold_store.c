/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hold_store: a test helper that opens a store, says "ready" on stdout, and holds it until
 * standard input closes or SECONDS pass, then frees it.
 * usage: hold_store ROOT DRIVER SECONDS [write]
 * With "write", it also holds the store database's write lock (an open SQLite write
 * transaction on ROOT/metadata.db) for that time: the one conflict that makes other
 * processes wait, and fail with "store is busy" after their busy timeout.
 */
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rolayer.h"

int main(int argc, char **argv) {
  rolayer_store *store = NULL;
  rolayer_error *err = NULL;
  sqlite3 *db = NULL;
  int rc, seconds;
  struct pollfd p;

  if (argc != 4 && !(argc == 5 && strcmp(argv[4], "write") == 0)) {
    fprintf(stderr, "usage: hold_store ROOT DRIVER SECONDS [write]\n");
    return 2;
  }
  seconds = atoi(argv[3]);
  rc = rolayer_store_open(&store, argv[1], argv[2], &err);
  if (rc != ROLAYER_OK) {
    fprintf(stderr, "hold_store: %s\n", rolayer_error_message(err));
    rolayer_error_free(err);
    return 1;
  }
  if (argc == 5) {
    char path[4096];
    snprintf(path, sizeof path, "%s/metadata.db", argv[1]);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
      fprintf(stderr, "hold_store: cannot take the database's write lock: %s\n", db ? sqlite3_errmsg(db) : "");
      return 1;
    }
  }
  printf("ready\n");
  fflush(stdout);
  p.fd = STDIN_FILENO;
  p.events = POLLIN;
  p.revents = 0;
  /* Returns when stdin is readable or closed (EOF), or on timeout. */
  poll(&p, 1, seconds * 1000);
  if (db) {
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
  }
  rolayer_store_free(store);
  return 0;
}
