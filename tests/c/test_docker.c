/* SPDX-License-Identifier: Apache-2.0 */
/* include/rolayer/docker.h through the public header only (cmocka), on the committed data root
 * written by dockerd 20.10 (tests/docker/fixture-vfs), read-only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_util.h"

static const char *kBase = "sha256:b1162fda67a9705057b015ca3aa2c7321b0ffcf47ae8742153cd3f2272a975f7";
static const char *kTop = "sha256:3a073f3d534f5cf51952ef675d12f55dd4c9846525dc296bc30177bd8c03631c";
static const char *kTopDiff = "sha256:1e92951b88c83031f52e5273ebb8041940c79517180d3116b12e88fcec515236";
static const char *kFixture = ROLAYER_SOURCE_DIR "/tests/docker/fixture-vfs";

static rolayer_docker_root *open_root(void) {
  rolayer_docker_root *r = NULL;
  rolayer_error *err = NULL;
  int rc = rolayer_docker_root_open(&r, kFixture, NULL, &err);
  if (rc != 0) fprintf(stderr, "open: %s\n", rolayer_error_message(err));
  assert_int_equal(rc, ROLAYER_OK);
  rolayer_error_free(err);
  return r;
}

static void test_list_and_fields(void **state) {
  (void)state;
  rolayer_docker_root *r = open_root();
  assert_string_equal(rolayer_docker_root_driver(r), "vfs");
  rolayer_docker_layers *l = NULL;
  assert_int_equal(rolayer_docker_layers_list(&l, r, NULL), ROLAYER_OK);
  assert_int_equal(rolayer_docker_layers_count(l), 2);
  assert_string_equal(rolayer_docker_layers_chain_id(l, 0), kBase);
  assert_null(rolayer_docker_layers_parent(l, 0));
  assert_string_equal(rolayer_docker_layers_chain_id(l, 1), kTop);
  assert_string_equal(rolayer_docker_layers_diff_id(l, 1), kTopDiff);
  assert_string_equal(rolayer_docker_layers_parent(l, 1), kBase);
  assert_int_equal(strlen(rolayer_docker_layers_cache_id(l, 1)), 64);
  assert_null(rolayer_docker_layers_error(l, 1));
  assert_null(rolayer_docker_layers_descriptor_digest(l, 1));
  assert_int_equal(rolayer_docker_layers_descriptor_size(l, 1), -1);
  assert_int_equal(rolayer_docker_layers_size(l, 0), 3012);
  /* Out of range: NULL / -1, never a crash. */
  assert_null(rolayer_docker_layers_chain_id(l, 2));
  assert_int_equal(rolayer_docker_layers_size(l, 99), -1);
  rolayer_docker_layers_free(l);
  rolayer_docker_root_free(r);
}

static void test_stream_is_the_layer(void **state) {
  (void)state;
  rolayer_docker_root *r = open_root();
  rolayer_tar_stream *s = NULL;
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_docker_stream_open(&s, r, kTop, &err), ROLAYER_OK);
  rolayer_docker_root_free(r); /* the stream outlives the root handle */
  buf_t b = {0};
  assert_int_equal(read_stream(s, &b, &err), ROLAYER_OK);
  char digest[72];
  sha256_digest(b.data, b.len, digest);
  assert_string_equal(digest, kTopDiff);
  assert_int_equal(b.len, 10240);
  free(b.data);
  rolayer_tar_stream_free(s);

  r = open_root();
  int64_t n = 0;
  assert_int_equal(rolayer_docker_verify(&n, r, kBase, NULL), ROLAYER_OK);
  assert_int_equal(n, 10240);
  rolayer_docker_root_free(r);
}

static void test_resolve(void **state) {
  (void)state;
  rolayer_docker_root *r = open_root();
  rolayer_string_list *l = NULL;
  assert_int_equal(rolayer_docker_resolve(&l, r, "fixture:2layers", NULL), ROLAYER_OK);
  assert_int_equal(rolayer_string_list_count(l), 2);
  assert_string_equal(rolayer_string_list_get(l, 0), kBase);
  assert_string_equal(rolayer_string_list_get(l, 1), kTop);
  rolayer_string_list_free(l);
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_docker_resolve(&l, r, "nosuch:image", &err), ROLAYER_ENOTFOUND);
  assert_null(l);
  assert_non_null(strstr(rolayer_error_message(err), "nosuch:image"));
  rolayer_error_free(err);
  rolayer_docker_root_free(r);
}

static void test_errors(void **state) {
  (void)state;
  rolayer_docker_root *r = NULL;
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_docker_root_open(&r, "/nonexistent/docker", NULL, &err), ROLAYER_ENOTFOUND);
  assert_null(r);
  rolayer_error_free(err);
  err = NULL;
  assert_int_equal(rolayer_docker_root_open(&r, kFixture, "btrfs", &err), ROLAYER_EUNSUPPORTED);
  assert_non_null(strstr(rolayer_error_message(err), "unsupported driver"));
  rolayer_error_free(err);
  assert_int_equal(rolayer_docker_root_open(&r, NULL, NULL, NULL), ROLAYER_EINVAL);
  assert_int_equal(rolayer_docker_root_open(NULL, kFixture, NULL, NULL), ROLAYER_EINVAL);
  r = open_root();
  rolayer_docker_layers *l = NULL;
  assert_int_equal(rolayer_docker_layers_get(&l, r, "sha256:0000000000000000000000000000000000000000000000000000000000000000", NULL),
                   ROLAYER_ENOTFOUND);
  assert_int_equal(rolayer_docker_layers_get(&l, r, "../../etc", NULL), ROLAYER_EINVAL);
  assert_int_equal(rolayer_docker_verify(NULL, NULL, kTop, NULL), ROLAYER_EINVAL);
  rolayer_tar_stream *s = NULL;
  assert_int_equal(rolayer_docker_stream_open(&s, r, NULL, NULL), ROLAYER_EINVAL);
  assert_null(s);
  rolayer_docker_root_free(r);
  rolayer_docker_root_free(NULL);
  rolayer_docker_layers_free(NULL);
  assert_null(rolayer_docker_root_driver(NULL));
  assert_int_equal(rolayer_docker_layers_count(NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_list_and_fields),
    cmocka_unit_test(test_stream_is_the_layer),
    cmocka_unit_test(test_resolve),
    cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
