/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for the cmocka suites: they use the public header only. */
#ifndef ROLAYER_TEST_C_UTIL_H
#define ROLAYER_TEST_C_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <rolayer.h>

typedef struct {
  uint8_t *data;
  size_t len;
} buf_t;

/* Reads a whole file; returns 0 on success. */
int read_file(const char *path, buf_t *out);
/* A fresh temporary directory (caller frees the string; rm_rf removes the tree). */
char *make_temp_dir(void);
void rm_rf(const char *path);
/* Memory reader for rolayer_read_fn: user_data is a mem_reader_t. */
typedef struct {
  const uint8_t *data;
  size_t len, pos, chunk;
} mem_reader_t;
int mem_read(void *buf, size_t cap, size_t *n_read, void *user_data);
/* Reads a whole stream into out (malloc'd); returns the status of the failing read or 0. */
int read_stream(rolayer_tar_stream *s, buf_t *out, rolayer_error **err);
/* Code name to value ("ROLAYER_EARCHIVE" -> -9); 1 for an unknown name. */
int code_by_name(const char *name);
/* The corpus directory or NULL (ROLAYER_CORPUS, else <source>/../shared/corpus). */
const char *corpus_dir(void);
/* sha256 as "sha256:<hex>" of data, computed by registering nothing: a tiny local SHA-256. */
void sha256_digest(const uint8_t *data, size_t len, char out[72]);

/* A cmocka fixture: a fresh store in a temporary directory. */
typedef struct {
  char *dir;
  rolayer_store *store;
} store_fixture;
/* cmocka setups: *state becomes a fixture with a store on the `dir` (default) or `exact`
 * driver; nonzero (the open's status) when the store cannot be opened. */
int fixture_setup_dir(void **state);
int fixture_setup_exact(void **state);
/* cmocka teardown: frees the store and removes its directory. */
int fixture_teardown(void **state);

#endif
