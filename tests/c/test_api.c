/* SPDX-License-Identifier: Apache-2.0 */
/* The C API contract, through the public header only (cmocka). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "c_util.h"

static const char *kEmpty = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
static const char *kEmptyOnEmpty = "sha256:170b376f64fb30995c140276be3d71dfb256b308d86183ca3b22aa93a79ad548";
static uint8_t zeros[1024];


static rolayer_layer *reg_mem(rolayer_store *s, const char *parent, const uint8_t *data, size_t len, int *rc_out,
                              rolayer_error **err) {
  mem_reader_t r = {data, len, 0, 333};
  rolayer_layer *l = (rolayer_layer *)0x1;
  int rc = rolayer_register(&l, s, parent, mem_read, &r, err);
  if (rc_out) *rc_out = rc;
  if (rc != 0) assert_null(l); /* *out is NULL on failure */
  return l;
}

static void test_version_and_strerror(void **state) {
  (void)state;
  assert_int_equal(rolayer_version(), ROLAYER_VERSION_NUMBER);
  assert_string_equal(rolayer_version_string(), ROLAYER_VERSION_STRING);
  assert_string_equal(rolayer_strerror(ROLAYER_ENOTFOUND), "layer does not exist");
  assert_string_equal(rolayer_strerror(12345), "unknown error");
  for (int c = 0; c >= -15; c--) assert_non_null(rolayer_strerror(c));
  assert_int_equal(rolayer_error_code(NULL), ROLAYER_OK);
  rolayer_error_free(NULL);
  rolayer_store_free(NULL);
  rolayer_tar_stream_free(NULL);
  rolayer_string_list_free(NULL);
  rolayer_removed_free(NULL);
}

static void test_empty_layer_vectors(void **state) {
  store_fixture *f = *state;
  int rc;
  rolayer_layer *a = reg_mem(f->store, NULL, zeros, sizeof zeros, &rc, NULL);
  assert_int_equal(rc, 0);
  assert_string_equal(rolayer_layer_diff_id(a), kEmpty);
  assert_string_equal(rolayer_layer_chain_id(a), kEmpty);
  assert_null(rolayer_layer_parent(a));
  rolayer_layer *b = reg_mem(f->store, kEmpty, zeros, sizeof zeros, &rc, NULL);
  assert_int_equal(rc, 0);
  assert_string_equal(rolayer_layer_chain_id(b), kEmptyOnEmpty);
  assert_string_equal(rolayer_layer_parent(b), kEmpty);
  assert_int_equal(rolayer_layer_depth(b), 2);
  int64_t size = -1;
  assert_int_equal(rolayer_layer_size(&size, b, NULL), 0);
  assert_int_equal(size, 0);
  rolayer_tar_stream *s = NULL;
  assert_int_equal(rolayer_tar_stream_open(&s, b, NULL), 0);
  buf_t out;
  assert_int_equal(read_stream(s, &out, NULL), 0);
  assert_int_equal(out.len, 1024);
  assert_memory_equal(out.data, zeros, 1024);
  free(out.data);
  rolayer_tar_stream_free(s);
  assert_int_equal(rolayer_release(a, NULL), 0);
  rolayer_removed *rm = NULL;
  assert_int_equal(rolayer_release_ext(&rm, b, NULL), 0);
  assert_int_equal(rolayer_removed_count(rm), 2);
  assert_string_equal(rolayer_removed_chain_id(rm, 0), kEmptyOnEmpty);
  assert_string_equal(rolayer_removed_chain_id(rm, 1), kEmpty);
  assert_null(rolayer_removed_chain_id(rm, 2));
  assert_int_equal(rolayer_removed_size(rm, 5), -1);
  rolayer_removed_free(rm);
}

static void test_errors_have_codes_and_messages(void **state) {
  store_fixture *f = *state;
  rolayer_error *err = NULL;
  rolayer_layer *l = (rolayer_layer *)0x1;
  assert_int_equal(rolayer_open(&l, f->store, kEmpty, &err), ROLAYER_ENOTFOUND);
  assert_null(l);
  assert_int_equal(rolayer_error_code(err), ROLAYER_ENOTFOUND);
  assert_non_null(strstr(rolayer_error_message(err), "layer does not exist"));
  rolayer_error_free(err);
  err = NULL;
  assert_int_equal(rolayer_open(&l, f->store, "sha256:xyz", &err), ROLAYER_EINVAL);
  assert_non_null(strstr(rolayer_error_message(err), "invalid digest"));
  rolayer_error_free(err);
  /* NULL err is allowed everywhere. */
  assert_int_equal(rolayer_open(&l, f->store, NULL, NULL), ROLAYER_EINVAL);
  assert_int_equal(rolayer_open(&l, NULL, kEmpty, NULL), ROLAYER_EINVAL);
  assert_int_equal(rolayer_release(NULL, NULL), ROLAYER_EINVAL);
  int rc;
  reg_mem(f->store, kEmpty, zeros, sizeof zeros, &rc, NULL);
  assert_int_equal(rc, ROLAYER_ENOTFOUND);
}

static int failing_read(void *buf, size_t cap, size_t *n_read, void *ud) {
  int *calls = ud;
  if ((*calls)++ > 0) return 77;
  memset(buf, 0, cap < 512 ? cap : 512);
  *n_read = cap < 512 ? cap : 512;
  return 0;
}

static void test_callback_failure_is_euser(void **state) {
  store_fixture *f = *state;
  int calls = 0;
  rolayer_layer *l = NULL;
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_register(&l, f->store, NULL, failing_read, &calls, &err), ROLAYER_EUSER);
  assert_int_equal(rolayer_error_user_code(err), 77);
  assert_null(l);
  rolayer_error_free(err);
  rolayer_string_list *ids = NULL;
  assert_int_equal(rolayer_store_list(&ids, f->store, NULL), 0);
  assert_int_equal(rolayer_string_list_count(ids), 0);
  rolayer_string_list_free(ids);
}

static void test_persistent_references(void **state) {
  store_fixture *f = *state;
  rolayer_layer *l = reg_mem(f->store, NULL, zeros, sizeof zeros, NULL, NULL);
  assert_int_equal(rolayer_store_retain(f->store, kEmpty, NULL), 0);
  assert_int_equal(rolayer_release(l, NULL), 0);
  int64_t n = 0;
  assert_int_equal(rolayer_store_retained(&n, f->store, kEmpty, NULL), 0);
  assert_int_equal(n, 1);
  rolayer_removed *rm = NULL;
  assert_int_equal(rolayer_store_unretain(&rm, f->store, kEmpty, NULL), 0);
  assert_int_equal(rolayer_removed_count(rm), 1);
  rolayer_removed_free(rm);
  assert_int_equal(rolayer_store_unretain(NULL, f->store, kEmpty, NULL), ROLAYER_ENOTFOUND);
}

static void test_verify_and_stream_size(void **state) {
  store_fixture *f = *state;
  rolayer_layer *l = reg_mem(f->store, NULL, zeros, sizeof zeros, NULL, NULL);
  assert_int_equal(rolayer_layer_verify(l, NULL), 0);
  int64_t n = 0;
  assert_int_equal(rolayer_layer_stream_size(&n, l, NULL), 0);
  assert_int_equal(n, 1024);
  rolayer_string_list *md = NULL;
  assert_int_equal(rolayer_layer_metadata(&md, l, NULL), 0);
  assert_int_equal(rolayer_string_list_count(md) % 2, 0);
  rolayer_string_list_free(md);
  assert_int_equal(rolayer_release(l, NULL), 0);
}

static void test_descriptor(void **state) {
  store_fixture *f = *state;
  rolayer_register_options o = ROLAYER_REGISTER_OPTIONS_INIT;
  o.descriptor_media_type = "application/vnd.oci.image.layer.v1.tar";
  o.descriptor_digest = kEmpty;
  o.descriptor_size = 1024;
  rolayer_layer *l = NULL;
  assert_int_equal(rolayer_register_memory(&l, f->store, NULL, zeros, sizeof zeros, &o, NULL), 0);
  assert_string_equal(rolayer_layer_descriptor_media_type(l), o.descriptor_media_type);
  assert_string_equal(rolayer_layer_descriptor_digest(l), kEmpty);
  assert_int_equal(rolayer_layer_descriptor_size(l), 1024);
  rolayer_release(l, NULL);
  o.descriptor_digest = "sha256:nothex";
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_register_memory(&l, f->store, NULL, zeros, sizeof zeros, &o, &err), ROLAYER_EINVAL);
  rolayer_error_free(err);
}

/* Issue 14: a second open of the same root shares the store; gc; the read-only option. */
static void test_second_open_shares_the_store(void **state) {
  store_fixture *f = *state;
  rolayer_store_options o = ROLAYER_STORE_OPTIONS_INIT;
  o.driver = rolayer_store_driver(f->store);
  o.busy_timeout_ms = 30;
  rolayer_store *s2 = NULL;
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_store_open_ext(&s2, f->dir, &o, &err), ROLAYER_OK);
  /* Registered through the second open, closed without a release: seen by the first at once. */
  rolayer_layer *l = reg_mem(s2, NULL, zeros, sizeof zeros, NULL, NULL);
  rolayer_layer *seen = NULL;
  assert_int_equal(rolayer_open(&seen, f->store, kEmpty, NULL), 0);
  rolayer_layer_close(seen);
  rolayer_removed *rm = NULL;
  /* gc spares what a live open holds ... */
  assert_int_equal(rolayer_store_gc(&rm, f->store, NULL), 0);
  assert_int_equal(rolayer_removed_count(rm), 0);
  rolayer_removed_free(rm);
  /* ... and removes it once nothing keeps it. */
  rolayer_layer_close(l);
  assert_int_equal(rolayer_store_gc(&rm, f->store, NULL), 0);
  assert_int_equal(rolayer_removed_count(rm), 1);
  assert_string_equal(rolayer_removed_chain_id(rm, 0), kEmpty);
  rolayer_removed_free(rm);
  rolayer_store_free(s2);

  /* Read-only: reads work, writes fail with ROLAYER_EIO / EROFS. */
  rolayer_layer *kept = reg_mem(f->store, NULL, zeros, sizeof zeros, NULL, NULL);
  assert_int_equal(rolayer_store_retain(f->store, kEmpty, NULL), 0);
  o.read_only = 1;
  assert_int_equal(rolayer_store_open_ext(&s2, f->dir, &o, NULL), ROLAYER_OK);
  rolayer_layer *r = NULL;
  assert_int_equal(rolayer_open(&r, s2, kEmpty, NULL), 0);
  rolayer_layer_close(r);
  assert_int_equal(rolayer_store_retain(s2, kEmpty, &err), ROLAYER_EIO);
  assert_int_equal(rolayer_error_errno(err), EROFS);
  rolayer_error_free(err);
  err = NULL;
  assert_int_equal(rolayer_store_gc(NULL, s2, &err), ROLAYER_EIO);
  rolayer_error_free(err);
  rolayer_store_free(s2);
  rolayer_layer_close(kept);
}

static void test_handles_outlive_store(void **state) {
  store_fixture *f = *state;
  rolayer_layer *l = reg_mem(f->store, NULL, zeros, sizeof zeros, NULL, NULL);
  rolayer_store_free(f->store);
  f->store = NULL;
  /* Getters still work; operations that need the store fail cleanly; release is fine. */
  assert_string_equal(rolayer_layer_chain_id(l), kEmpty);
  rolayer_tar_stream *s = NULL;
  assert_int_equal(rolayer_tar_stream_open(&s, l, NULL), ROLAYER_EINVAL);
  assert_int_equal(rolayer_release(l, NULL), 0);
}

static void test_close_deletes_nothing(void **state) {
  store_fixture *f = *state;
  rolayer_layer *l = reg_mem(f->store, NULL, zeros, sizeof zeros, NULL, NULL);
  rolayer_layer_close(l);
  rolayer_layer_close(NULL);
  rolayer_layer *again = NULL;
  assert_int_equal(rolayer_open(&again, f->store, kEmpty, NULL), 0); /* still registered */
  rolayer_removed *rm = NULL;
  assert_int_equal(rolayer_release_ext(&rm, again, NULL), 0);
  assert_int_equal(rolayer_removed_count(rm), 1);
  rolayer_removed_free(rm);
}

static void test_null_driver_reopens_with_the_stores_own(void **state) {
  store_fixture *f = *state;
  rolayer_layer *l = reg_mem(f->store, NULL, zeros, sizeof zeros, NULL, NULL);
  assert_int_equal(rolayer_store_retain(f->store, kEmpty, NULL), 0);
  rolayer_layer_close(l);
  rolayer_store_free(f->store);
  f->store = NULL;
  assert_int_equal(rolayer_store_open(&f->store, f->dir, NULL, NULL), 0);
  assert_string_equal(rolayer_store_driver(f->store), "exact");
}

/* rolayer_layer_cache_id: the dir driver's id of the layer (its directory under <store>/dir),
 * distinct per layer, not the ChainID, the same through another handle and after reopening. */
static void test_layer_cache_id(void **state) {
  store_fixture *f = *state;
  assert_null(rolayer_layer_cache_id(NULL));
  rolayer_layer *a = reg_mem(f->store, NULL, zeros, sizeof zeros, NULL, NULL);
  rolayer_layer *b = reg_mem(f->store, kEmpty, zeros, sizeof zeros, NULL, NULL);
  assert_non_null(a);
  assert_non_null(b);
  const char *ca = rolayer_layer_cache_id(a);
  const char *cb = rolayer_layer_cache_id(b);
  assert_non_null(ca);
  assert_non_null(cb);
  assert_true(strlen(ca) > 0);
  assert_string_not_equal(ca, cb);
  assert_string_not_equal(ca, rolayer_layer_chain_id(a));
  assert_null(strchr(ca, '/'));
  char *keep = strdup(ca);
  /* The dir driver keeps the layer's files in <store>/dir/<cache id>. */
  size_t n = strlen(f->dir) + strlen(keep) + 8;
  char *path = malloc(n);
  snprintf(path, n, "%s/dir/%s", f->dir, keep);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  free(path);
  rolayer_layer *a2 = NULL;
  assert_int_equal(rolayer_open(&a2, f->store, kEmpty, NULL), 0);
  assert_string_equal(rolayer_layer_cache_id(a2), keep);
  rolayer_layer_close(a2);
  assert_int_equal(rolayer_store_retain(f->store, kEmptyOnEmpty, NULL), 0);
  rolayer_layer_close(a);
  rolayer_layer_close(b);
  rolayer_store_free(f->store);
  f->store = NULL;
  assert_int_equal(rolayer_store_open(&f->store, f->dir, NULL, NULL), 0);
  assert_int_equal(rolayer_open(&a2, f->store, kEmpty, NULL), 0);
  assert_string_equal(rolayer_layer_cache_id(a2), keep);
  rolayer_layer_close(a2);
  free(keep);
}

/* Options structs from a newer header (a larger version) are refused, not half-read
 * (as rolayer_driver_ops is): their extra fields would be silently ignored otherwise. */
static void test_options_reject_newer_version(void **state) {
  store_fixture *f = *state;
  char *dir = make_temp_dir();
  rolayer_store_options so = ROLAYER_STORE_OPTIONS_INIT;
  so.version = ROLAYER_STORE_OPTIONS_VERSION + 1;
  rolayer_store *s2 = (rolayer_store *)0x1;
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_store_open_ext(&s2, dir, &so, &err), ROLAYER_EUNSUPPORTED);
  assert_null(s2);
  assert_int_equal(rolayer_error_code(err), ROLAYER_EUNSUPPORTED);
  assert_non_null(strstr(rolayer_error_message(err), "rolayer_store_options.version"));
  rolayer_error_free(err);
  err = NULL;
  rm_rf(dir);
  free(dir);

  rolayer_register_options ro = ROLAYER_REGISTER_OPTIONS_INIT;
  ro.version = ROLAYER_REGISTER_OPTIONS_VERSION + 1;
  rolayer_layer *l = (rolayer_layer *)0x1;
  assert_int_equal(rolayer_register_memory(&l, f->store, NULL, zeros, sizeof zeros, &ro, &err),
                   ROLAYER_EUNSUPPORTED);
  assert_null(l);
  assert_non_null(strstr(rolayer_error_message(err), "rolayer_register_options.version"));
  rolayer_error_free(err);
  rolayer_string_list *ids = NULL;
  assert_int_equal(rolayer_store_list(&ids, f->store, NULL), 0);
  assert_int_equal(rolayer_string_list_count(ids), 0); /* nothing was registered */
  rolayer_string_list_free(ids);

  /* The current version still works, and the size getters take their output first. */
  ro.version = ROLAYER_REGISTER_OPTIONS_VERSION;
  assert_int_equal(rolayer_register_memory(&l, f->store, NULL, zeros, sizeof zeros, &ro, NULL), 0);
  int64_t n = -1;
  assert_int_equal(rolayer_layer_diff_size(&n, l, NULL), 0);
  assert_int_equal(n, 0);
  assert_int_equal(rolayer_layer_stream_size(&n, l, NULL), 0);
  assert_int_equal(n, sizeof zeros);
  assert_int_equal(rolayer_layer_size(NULL, l, NULL), ROLAYER_EINVAL);
  rolayer_layer_close(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_version_and_strerror),
    cmocka_unit_test_setup_teardown(test_empty_layer_vectors, fixture_setup_exact, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_empty_layer_vectors, fixture_setup_dir, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_errors_have_codes_and_messages, fixture_setup_exact, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_callback_failure_is_euser, fixture_setup_exact, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_callback_failure_is_euser, fixture_setup_dir, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_persistent_references, fixture_setup_dir, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_verify_and_stream_size, fixture_setup_exact, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_verify_and_stream_size, fixture_setup_dir, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_descriptor, fixture_setup_dir, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_second_open_shares_the_store, fixture_setup_dir, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_handles_outlive_store, fixture_setup_exact, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_close_deletes_nothing, fixture_setup_dir, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_null_driver_reopens_with_the_stores_own, fixture_setup_exact, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_options_reject_newer_version, fixture_setup_dir, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_layer_cache_id, fixture_setup_dir, fixture_teardown),
  };
  return cmocka_run_group_tests_name("c_api", tests, NULL, NULL);
}
