/* SPDX-License-Identifier: Apache-2.0 */
/* rolayer_store_options version 3 (payload_pack_max) and rolayer_store_payload_pack_max: the
 * "dir" driver's payload pack, turned on, kept in the store, turned off; packed layers export
 * and verify byte for byte; a damaged pack is ROLAYER_ECORRUPT. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "c_util.h"

/* A one-file tar: "f" holding body. */
static size_t one_file_tar(uint8_t out[3072], const char *body) {
  memset(out, 0, 3072);
  size_t blen = strlen(body);
  memcpy(out, "f", 1);
  memcpy(out + 100, "0000644", 7);
  memcpy(out + 108, "0000000", 7);
  memcpy(out + 116, "0000000", 7);
  snprintf((char *)out + 124, 12, "%011o", (unsigned)blen);
  memcpy(out + 136, "00000000000", 11);
  out[156] = '0';
  memcpy(out + 257, "ustar\0" "00", 8);
  memset(out + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++) sum += out[i];
  snprintf((char *)out + 148, 8, "%06o", sum);
  memcpy(out + 512, body, blen);
  return 512 + 512 + 1024;
}

static int open_with(rolayer_store **s, const char *dir, int64_t pack, int read_only) {
  rolayer_store_options o = ROLAYER_STORE_OPTIONS_INIT;
  o.driver = "dir";
  o.payload_pack_max = pack;
  o.read_only = read_only;
  return rolayer_store_open_ext(s, dir, &o, NULL);
}

static rolayer_layer *add(rolayer_store *s, const uint8_t *tar, size_t len) {
  mem_reader_t r = {tar, len, 0, 700};
  rolayer_layer *l = NULL;
  assert_int_equal(rolayer_register(&l, s, NULL, mem_read, &r, NULL), 0);
  return l;
}

static void test_pack_setting_and_round_trip(void **state) {
  (void)state;
  char *dir = make_temp_dir();
  rolayer_store *s = NULL;
  assert_int_equal(open_with(&s, dir, 32768, 0), 0);
  assert_int_equal(rolayer_store_payload_pack_max(s), 32768);
  uint8_t tar[3072];
  size_t len = one_file_tar(tar, "a small payload, packed\n");
  rolayer_layer *l = add(s, tar, len);
  char pack[4096];
  snprintf(pack, sizeof pack, "%s/dir/%s/meta/pack", dir, rolayer_layer_cache_id(l));
  struct stat st;
  assert_int_equal(lstat(pack, &st), 0);
  assert_int_equal((int)st.st_size, (int)strlen("a small payload, packed\n"));
  rolayer_tar_stream *ts = NULL;
  assert_int_equal(rolayer_tar_stream_open(&ts, l, NULL), 0);
  buf_t out = {0};
  assert_int_equal(read_stream(ts, &out, NULL), 0);
  assert_int_equal(out.len, len);
  assert_memory_equal(out.data, tar, len);
  free(out.data);
  rolayer_tar_stream_free(ts);
  assert_int_equal(rolayer_layer_verify(l, NULL), 0);
  assert_int_equal(rolayer_store_retain(s, rolayer_layer_chain_id(l), NULL), 0);
  rolayer_layer_close(l);
  rolayer_store_free(s);

  /* Kept: a later open with 0 (the store's setting) and the plain open see it. */
  assert_int_equal(rolayer_store_open(&s, dir, NULL, NULL), 0);
  assert_int_equal(rolayer_store_payload_pack_max(s), 32768);
  rolayer_store_free(s);
  /* Read-only opens cannot change it; above 16 MiB is refused. */
  rolayer_error *err = NULL;
  rolayer_store_options o = ROLAYER_STORE_OPTIONS_INIT;
  o.payload_pack_max = 4096;
  o.read_only = 1;
  assert_int_equal(rolayer_store_open_ext(&s, dir, &o, &err), ROLAYER_EIO);
  assert_int_equal(rolayer_error_errno(err), EROFS);
  rolayer_error_free(err);
  assert_null(s);
  assert_int_equal(open_with(&s, dir, (int64_t)16 * 1024 * 1024 + 1, 0), ROLAYER_EINVAL);
  /* Turned off. */
  assert_int_equal(open_with(&s, dir, -1, 0), 0);
  assert_int_equal(rolayer_store_payload_pack_max(s), 0);
  rolayer_store_free(s);
  assert_int_equal(rolayer_store_open(&s, dir, NULL, NULL), 0);
  assert_int_equal(rolayer_store_payload_pack_max(s), 0);
  assert_int_equal(rolayer_store_payload_pack_max(NULL), 0);

  /* A damaged pack: the packed layer's export is ROLAYER_ECORRUPT naming the pack. */
  FILE *f = fopen(pack, "r+b");
  if (!f) {
    chmod(pack, 0600);
    f = fopen(pack, "r+b");
  }
  assert_non_null(f);
  fputc('X', f);
  fclose(f);
  rolayer_string_list *ids = NULL;
  assert_int_equal(rolayer_store_list(&ids, s, NULL), 0);
  assert_int_equal(rolayer_string_list_count(ids), 1);
  assert_int_equal(rolayer_open(&l, s, rolayer_string_list_get(ids, 0), NULL), 0);
  rolayer_string_list_free(ids);
  err = NULL;
  assert_int_equal(rolayer_layer_verify(l, &err), ROLAYER_ECORRUPT);
  assert_non_null(strstr(rolayer_error_message(err), "payload pack"));
  rolayer_error_free(err);
  rolayer_layer_close(l);
  rolayer_store_free(s);
  rm_rf(dir);
  free(dir);
}

/* An options struct of version 2 (no payload_pack_max) is read as before. */
static void test_version_2_options(void **state) {
  (void)state;
  char *dir = make_temp_dir();
  rolayer_store_options o = ROLAYER_STORE_OPTIONS_INIT;
  o.version = 2;
  o.payload_pack_max = 12345; /* not read */
  rolayer_store *s = NULL;
  assert_int_equal(rolayer_store_open_ext(&s, dir, &o, NULL), 0);
  assert_int_equal(rolayer_store_payload_pack_max(s), 0);
  rolayer_store_free(s);
  rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pack_setting_and_round_trip),
      cmocka_unit_test(test_version_2_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
