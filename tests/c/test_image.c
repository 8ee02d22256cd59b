/* SPDX-License-Identifier: Apache-2.0 */
/* rolayer/image.h: images kept in a store (cmocka, through the public header only). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_util.h"

static uint8_t zeros[1024];
static const uint8_t kManifest[] = "{\"schemaVersion\":2,\"layers\":[]}";
static const uint8_t kConfig[] = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
static const char *kMt = "application/vnd.oci.image.manifest.v1+json";

typedef struct {
  char *dir;
  rolayer_store *store;
  char base[80], child[80];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  f->dir = make_temp_dir();
  int rc = rolayer_store_open(&f->store, f->dir, NULL, NULL);
  if (rc != 0) return rc;
  rolayer_layer *a = NULL, *b = NULL;
  rc = rolayer_register_memory(&a, f->store, NULL, zeros, sizeof zeros, NULL, NULL);
  if (rc != 0) return rc;
  strcpy(f->base, rolayer_layer_chain_id(a));
  rc = rolayer_register_memory(&b, f->store, f->base, zeros, sizeof zeros, NULL, NULL);
  if (rc != 0) return rc;
  strcpy(f->child, rolayer_layer_chain_id(b));
  rolayer_layer_close(a);
  rolayer_layer_close(b);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  rolayer_store_free(f->store);
  rm_rf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static int64_t retained(fixture *f, const char *id) {
  int64_t n = -1;
  assert_int_equal(rolayer_store_retained(&n, f->store, id, NULL), ROLAYER_OK);
  return n;
}

static void put(fixture *f, const char *name, const char *top) {
  rolayer_error *err = NULL;
  int rc = rolayer_image_put(f->store, name, top, kMt, kManifest, sizeof kManifest - 1, kConfig, sizeof kConfig - 1, &err);
  if (rc) fprintf(stderr, "put: %s\n", rolayer_error_message(err));
  rolayer_error_free(err);
  assert_int_equal(rc, ROLAYER_OK);
}

/* Put, open (bytes and digests back), list, persist across a reopen, remove with the cascade. */
static void test_roundtrip(void **state) {
  fixture *f = *state;
  put(f, "example.com/a:1", f->child);
  assert_int_equal(retained(f, f->child), 1);
  rolayer_image *img = NULL;
  assert_int_equal(rolayer_image_open(&img, f->store, "example.com/a:1", NULL), ROLAYER_OK);
  size_t n = 0;
  const uint8_t *m = rolayer_image_manifest(img, &n);
  assert_int_equal(n, sizeof kManifest - 1);
  assert_memory_equal(m, kManifest, n);
  const uint8_t *c = rolayer_image_config(img, &n);
  assert_int_equal(n, sizeof kConfig - 1);
  assert_memory_equal(c, kConfig, n);
  char d[72];
  sha256_digest(kManifest, sizeof kManifest - 1, d);
  assert_string_equal(rolayer_image_manifest_digest(img), d);
  sha256_digest(kConfig, sizeof kConfig - 1, d);
  assert_string_equal(rolayer_image_config_digest(img), d);
  assert_string_equal(rolayer_image_top_chain_id(img), f->child);
  assert_string_equal(rolayer_image_manifest_media_type(img), kMt);
  assert_string_equal(rolayer_image_name(img), "example.com/a:1");
  assert_true(rolayer_image_created(img) > 0);
  rolayer_image_free(img);

  /* Across a reopen. */
  rolayer_store_free(f->store);
  assert_int_equal(rolayer_store_open(&f->store, f->dir, NULL, NULL), ROLAYER_OK);
  rolayer_string_list *l = NULL;
  assert_int_equal(rolayer_image_list(&l, f->store, NULL), ROLAYER_OK);
  assert_int_equal(rolayer_string_list_count(l), 1);
  assert_string_equal(rolayer_string_list_get(l, 0), "example.com/a:1");
  rolayer_string_list_free(l);

  /* A second image on the same chain: removing one keeps the layers. */
  put(f, "example.com/b:2", f->child);
  assert_int_equal(retained(f, f->child), 2);
  rolayer_removed *r = NULL;
  assert_int_equal(rolayer_image_remove(&r, f->store, "example.com/a:1", NULL), ROLAYER_OK);
  assert_int_equal(rolayer_removed_count(r), 0);
  rolayer_removed_free(r);
  /* The shared manifest and config stay with the other image. */
  assert_int_equal(rolayer_image_open(&img, f->store, "example.com/b:2", NULL), ROLAYER_OK);
  rolayer_image_free(img);
  assert_int_equal(rolayer_image_remove(&r, f->store, "example.com/b:2", NULL), ROLAYER_OK);
  assert_int_equal(rolayer_removed_count(r), 2);
  assert_string_equal(rolayer_removed_chain_id(r, 0), f->child);
  assert_string_equal(rolayer_removed_chain_id(r, 1), f->base);
  rolayer_removed_free(r);
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_image_open(&img, f->store, "example.com/b:2", &err), ROLAYER_ENOTFOUND);
  assert_null(img);
  assert_non_null(strstr(rolayer_error_message(err), "no such image"));
  rolayer_error_free(err);
  assert_int_equal(rolayer_image_remove(NULL, f->store, "example.com/b:2", NULL), ROLAYER_ENOTFOUND);
}

/* Replacing an image moves its reference to the new top; the old chain goes when free. */
static void test_replace(void **state) {
  fixture *f = *state;
  /* base is kept by child; child is not retained by anything but images here. */
  put(f, "x", f->base);
  assert_int_equal(retained(f, f->base), 1);
  put(f, "x", f->base);  /* the same again: still one reference */
  assert_int_equal(retained(f, f->base), 1);
  put(f, "x", f->child);
  assert_int_equal(retained(f, f->base), 0);
  assert_int_equal(retained(f, f->child), 1);
  rolayer_image *img = NULL;
  assert_int_equal(rolayer_image_open(&img, f->store, "x", NULL), ROLAYER_OK);
  assert_string_equal(rolayer_image_top_chain_id(img), f->child);
  rolayer_image_free(img);
}

/* Bad arguments: a specific code, nothing kept. */
static void test_invalid(void **state) {
  fixture *f = *state;
  const char *missing = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
  assert_int_equal(rolayer_image_put(f->store, "y", missing, kMt, kManifest, 3, kConfig, 3, NULL), ROLAYER_ENOTFOUND);
  assert_int_equal(rolayer_image_put(f->store, "", f->base, kMt, kManifest, 3, kConfig, 3, NULL), ROLAYER_EINVAL);
  assert_int_equal(rolayer_image_put(f->store, "a\nb", f->base, kMt, kManifest, 3, kConfig, 3, NULL), ROLAYER_EINVAL);
  assert_int_equal(rolayer_image_put(f->store, "y", "nonsense", kMt, kManifest, 3, kConfig, 3, NULL), ROLAYER_EINVAL);
  assert_int_equal(rolayer_image_put(f->store, "y", f->base, kMt, NULL, 3, kConfig, 3, NULL), ROLAYER_EINVAL);
  assert_int_equal(rolayer_image_put(f->store, "y", f->base, kMt, kManifest, 0, kConfig, 3, NULL), ROLAYER_EINVAL);
  assert_int_equal(rolayer_image_put(NULL, "y", f->base, kMt, kManifest, 3, kConfig, 3, NULL), ROLAYER_EINVAL);
  uint8_t *big = calloc(1, (4u << 20) + 1);
  assert_int_equal(rolayer_image_put(f->store, "y", f->base, kMt, big, (4u << 20) + 1, kConfig, 3, NULL), ROLAYER_EINVAL);
  free(big);
  assert_int_equal(retained(f, f->base), 0);
  rolayer_string_list *l = NULL;
  assert_int_equal(rolayer_image_list(&l, f->store, NULL), ROLAYER_OK);
  assert_int_equal(rolayer_string_list_count(l), 0);
  rolayer_string_list_free(l);
  assert_null(rolayer_image_name(NULL));
  size_t n = 7;
  assert_null(rolayer_image_manifest(NULL, &n));
  assert_int_equal(n, 0);
  rolayer_image_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replace, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
