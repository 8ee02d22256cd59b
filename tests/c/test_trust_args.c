/* SPDX-License-Identifier: Apache-2.0 */
/* The C API's argument checks at the edges (issue 12): a read of 0 bytes is not the end of
 * the stream; descriptor media types with control characters and negative sizes other than
 * the -1 "unknown" sentinel are refused. Public header only (cmocka). */
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


/* cap == 0 must not return 0 with *n_read == 0 (the end of the stream): ROLAYER_EINVAL, and
 * the stream is still usable afterwards and exports the whole layer. */
static void test_read_cap_zero_is_not_eof(void **state) {
  store_fixture *f = *state;
  rolayer_layer *l = NULL;
  assert_int_equal(rolayer_register_memory(&l, f->store, NULL, zeros, sizeof zeros, NULL, NULL), 0);
  rolayer_tar_stream *s = NULL;
  assert_int_equal(rolayer_tar_stream_open(&s, l, NULL), 0);
  uint8_t b[16];
  size_t n = 99;
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_tar_stream_read(s, b, 0, &n, &err), ROLAYER_EINVAL);
  assert_int_equal(n, 0);
  assert_non_null(err);
  assert_non_null(strstr(rolayer_error_message(err), "cap"));
  rolayer_error_free(err);
  err = NULL;
  assert_int_equal(rolayer_tar_stream_read(s, NULL, 0, &n, &err), ROLAYER_EINVAL);
  rolayer_error_free(err);
  buf_t out = {0};
  assert_int_equal(read_stream(s, &out, NULL), 0);
  assert_int_equal(out.len, sizeof zeros);
  free(out.data);
  rolayer_tar_stream_free(s);
  rolayer_release(l, NULL);
}

static int reg_with(store_fixture *f, const char *media_type, const char *digest, int64_t size, rolayer_error **err) {
  rolayer_register_options o = ROLAYER_REGISTER_OPTIONS_INIT;
  o.descriptor_media_type = media_type;
  o.descriptor_digest = digest;
  o.descriptor_size = size;
  rolayer_layer *l = NULL;
  int rc = rolayer_register_memory(&l, f->store, NULL, zeros, sizeof zeros, &o, err);
  if (rc == 0) {
    rolayer_release(l, NULL);
  } else {
    assert_null(l);
  }
  return rc;
}

static void expect_inval(store_fixture *f, const char *media_type, int64_t size, const char *words) {
  rolayer_error *err = NULL;
  assert_int_equal(reg_with(f, media_type, kEmpty, size, &err), ROLAYER_EINVAL);
  assert_non_null(err);
  if (!strstr(rolayer_error_message(err), words)) fail_msg("message \"%s\" lacks \"%s\"", rolayer_error_message(err), words);
  rolayer_error_free(err);
}

static void test_descriptor_control_characters(void **state) {
  store_fixture *f = *state;
  expect_inval(f, "application/vnd.oci.image.layer.v1.tar\n", 1024, "control characters");
  expect_inval(f, "application/\x1b[31mred", 1024, "control characters");
  expect_inval(f, "application/x\x7f", 1024, "control characters");
  expect_inval(f, "\t", 1024, "control characters");
  /* Nothing of a refused register is left in the store. */
  rolayer_string_list *ids = NULL;
  assert_int_equal(rolayer_store_list(&ids, f->store, NULL), 0);
  assert_int_equal(rolayer_string_list_count(ids), 0);
  rolayer_string_list_free(ids);
  /* Printable text (with a parameter and a space) is fine. */
  assert_int_equal(reg_with(f, "application/vnd.oci.image.layer.v1.tar; x=y", kEmpty, 1024, NULL), 0);
}

static void test_descriptor_negative_size(void **state) {
  store_fixture *f = *state;
  expect_inval(f, "application/vnd.oci.image.layer.v1.tar", -2, "descriptor_size");
  expect_inval(f, "application/vnd.oci.image.layer.v1.tar", INT64_MIN, "descriptor_size");
  /* -1 is the documented "unknown" sentinel, 0 a real size. */
  rolayer_register_options o = ROLAYER_REGISTER_OPTIONS_INIT;
  o.descriptor_media_type = "application/vnd.oci.image.layer.v1.tar";
  o.descriptor_digest = kEmpty;
  o.descriptor_size = -1;
  rolayer_layer *l = NULL;
  assert_int_equal(rolayer_register_memory(&l, f->store, NULL, zeros, sizeof zeros, &o, NULL), 0);
  assert_int_equal(rolayer_layer_descriptor_size(l), -1);
  rolayer_release(l, NULL);
  assert_int_equal(reg_with(f, "application/vnd.oci.image.layer.v1.tar", kEmpty, 0, NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_read_cap_zero_is_not_eof, fixture_setup_dir, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_read_cap_zero_is_not_eof, fixture_setup_exact, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_descriptor_control_characters, fixture_setup_dir, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_descriptor_negative_size, fixture_setup_dir, fixture_teardown),
  };
  return cmocka_run_group_tests_name("c_trust_args", tests, NULL, NULL);
}
