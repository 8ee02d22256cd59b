/* SPDX-License-Identifier: Apache-2.0 */
/* rolayer_store_layers (issue 18, a store of 100,000 layers): every layer that
 * rolayer_store_list() names, with what a handle's getters tell, in one call. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_util.h"

static const char *kEmpty = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
static uint8_t zeros[1024];

typedef struct {
  char *dir;
  rolayer_store *store;
} fixture;

static int setup_with(void **state, const char *driver) {
  fixture *f = calloc(1, sizeof *f);
  f->dir = make_temp_dir();
  *state = f;
  return rolayer_store_open(&f->store, f->dir, driver, NULL);
}
static int setup_dir(void **state) { return setup_with(state, "dir"); }
static int setup_exact(void **state) { return setup_with(state, "exact"); }
static int teardown(void **state) {
  fixture *f = *state;
  rolayer_store_free(f->store);
  rm_rf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

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

/* The list agrees with the handle of every layer, field by field. */
static void check_against_handles(rolayer_store *s, size_t want) {
  rolayer_layer_list *l = (rolayer_layer_list *)0x1;
  assert_int_equal(rolayer_store_layers(&l, s, NULL), 0);
  assert_int_equal(rolayer_layer_list_count(l), want);
  rolayer_string_list *ids = NULL;
  assert_int_equal(rolayer_store_list(&ids, s, NULL), 0);
  assert_int_equal(rolayer_string_list_count(ids), want);
  for (size_t i = 0; i < want; i++) {
    const char *c = rolayer_layer_list_chain_id(l, i);
    int listed = 0;
    for (size_t k = 0; k < want; k++) listed |= strcmp(rolayer_string_list_get(ids, k), c) == 0;
    assert_true(listed);
    rolayer_layer *h = NULL;
    assert_int_equal(rolayer_open(&h, s, c, NULL), 0);
    assert_string_equal(rolayer_layer_diff_id(h), rolayer_layer_list_diff_id(l, i));
    assert_string_equal(rolayer_layer_cache_id(h), rolayer_layer_list_cache_id(l, i));
    if (rolayer_layer_parent(h))
      assert_string_equal(rolayer_layer_parent(h), rolayer_layer_list_parent(l, i));
    else
      assert_null(rolayer_layer_list_parent(l, i));
    assert_int_equal(rolayer_layer_depth(h), rolayer_layer_list_depth(l, i));
    int64_t v = 0;
    assert_int_equal(rolayer_layer_size(&v, h, NULL), 0);
    assert_int_equal(v, rolayer_layer_list_size(l, i));
    assert_int_equal(rolayer_layer_diff_size(&v, h, NULL), 0);
    assert_int_equal(v, rolayer_layer_list_diff_size(l, i));
    assert_int_equal(rolayer_layer_stream_size(&v, h, NULL), 0);
    assert_int_equal(v, rolayer_layer_list_stream_size(l, i));
    assert_int_equal(rolayer_store_retained(&v, s, c, NULL), 0);
    assert_int_equal(v, rolayer_layer_list_retained(l, i));
    const char *a = rolayer_layer_descriptor_media_type(h), *b = rolayer_layer_list_descriptor_media_type(l, i);
    if (a) assert_string_equal(a, b); else assert_null(b);
    a = rolayer_layer_descriptor_digest(h);
    b = rolayer_layer_list_descriptor_digest(l, i);
    if (a) assert_string_equal(a, b); else assert_null(b);
    assert_int_equal(rolayer_layer_descriptor_size(h), rolayer_layer_list_descriptor_size(l, i));
    rolayer_layer_close(h);
  }
  /* Out of range and NULL: 0 / NULL / -1, never a crash. */
  assert_null(rolayer_layer_list_chain_id(l, want));
  assert_null(rolayer_layer_list_diff_id(l, want));
  assert_null(rolayer_layer_list_parent(l, want));
  assert_null(rolayer_layer_list_cache_id(l, want));
  assert_int_equal(rolayer_layer_list_depth(l, want), 0);
  assert_int_equal(rolayer_layer_list_size(l, want), -1);
  assert_int_equal(rolayer_layer_list_retained(l, want), -1);
  assert_null(rolayer_layer_list_descriptor_digest(l, want));
  assert_int_equal(rolayer_layer_list_count(NULL), 0);
  assert_null(rolayer_layer_list_chain_id(NULL, 0));
  assert_null(rolayer_layer_list_cache_id(NULL, 0));
  rolayer_string_list_free(ids);
  rolayer_layer_list_free(l);
  rolayer_layer_list_free(NULL);
}

static void test_layers_match_handles(void **state) {
  fixture *f = *state;
  check_against_handles(f->store, 0);
  uint8_t tar[3072];
  rolayer_register_options o = ROLAYER_REGISTER_OPTIONS_INIT;
  o.descriptor_media_type = "application/vnd.oci.image.layer.v1.tar";
  o.descriptor_digest = kEmpty;
  o.descriptor_size = 1024;
  rolayer_layer *base = NULL, *mid = NULL, *top = NULL, *other = NULL;
  assert_int_equal(rolayer_register_memory(&base, f->store, NULL, zeros, sizeof zeros, &o, NULL), 0);
  size_t n = one_file_tar(tar, "middle\n");
  assert_int_equal(rolayer_register_memory(&mid, f->store, rolayer_layer_chain_id(base), tar, n, NULL, NULL), 0);
  n = one_file_tar(tar, "top of the chain\n");
  assert_int_equal(rolayer_register_memory(&top, f->store, rolayer_layer_chain_id(mid), tar, n, NULL, NULL), 0);
  n = one_file_tar(tar, "another base\n");
  assert_int_equal(rolayer_register_memory(&other, f->store, NULL, tar, n, NULL, NULL), 0);
  assert_int_equal(rolayer_store_retain(f->store, rolayer_layer_chain_id(top), NULL), 0);
  assert_int_equal(rolayer_store_retain(f->store, rolayer_layer_chain_id(top), NULL), 0);
  assert_int_equal(rolayer_store_retain(f->store, rolayer_layer_chain_id(other), NULL), 0);
  check_against_handles(f->store, 4);
  /* A released layer (nothing else holds it) is gone from the list. */
  assert_int_equal(rolayer_store_unretain(NULL, f->store, rolayer_layer_chain_id(other), NULL), 0);
  rolayer_release(other, NULL);
  check_against_handles(f->store, 3);
  /* Another open of the same root sees the same. */
  rolayer_store *again = NULL;
  assert_int_equal(rolayer_store_open(&again, f->dir, NULL, NULL), 0);
  check_against_handles(again, 3);
  rolayer_store_free(again);
  rolayer_layer_close(base);
  rolayer_layer_close(mid);
  rolayer_layer_close(top);
}

static void test_layers_errors(void **state) {
  fixture *f = *state;
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_store_layers(NULL, f->store, &err), ROLAYER_EINVAL);
  assert_non_null(rolayer_error_message(err));
  rolayer_error_free(err);
  err = NULL;
  rolayer_layer_list *l = (rolayer_layer_list *)0x1;
  assert_int_equal(rolayer_store_layers(&l, NULL, &err), ROLAYER_EINVAL);
  assert_null(l);
  rolayer_error_free(err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_layers_match_handles, setup_dir, teardown),
      cmocka_unit_test_setup_teardown(test_layers_match_handles, setup_exact, teardown),
      cmocka_unit_test_setup_teardown(test_layers_errors, setup_dir, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
