/* SPDX-License-Identifier: Apache-2.0 */
/* rolayer/stage.h: two-phase registers (cmocka, through the public header only). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "c_util.h"

/* A one-entry ustar archive (a file, or a hard link when link is set) and its end blocks. */
static size_t make_tar(uint8_t *out, const char *name, const char *content, const char *link) {
  size_t len = link ? 0 : strlen(content);
  memset(out, 0, 512);
  strcpy((char *)out, name);
  strcpy((char *)out + 100, "0000644");
  strcpy((char *)out + 108, "0000000");
  strcpy((char *)out + 116, "0000000");
  sprintf((char *)out + 124, "%011o", (unsigned)len);
  strcpy((char *)out + 136, "14555555555");
  out[156] = link ? '1' : '0';
  if (link) strcpy((char *)out + 157, link);
  memcpy(out + 257, "ustar", 6);
  memcpy(out + 263, "00", 2);
  memset(out + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++) sum += out[i];
  sprintf((char *)out + 148, "%06o", sum);
  size_t pos = 512;
  if (len) {
    memset(out + pos, 0, (len + 511) / 512 * 512);
    memcpy(out + pos, content, len);
    pos += (len + 511) / 512 * 512;
  }
  memset(out + pos, 0, 1024);
  return pos + 1024;
}

static int count_names(const char *dir, const char *sub) {
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir, sub);
  DIR *d = opendir(p);
  if (!d) return -1;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (de->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

typedef struct {
  char *dir;
  rolayer_store *store;
  uint8_t a[4096], b[4096], link[4096];
  size_t alen, blen, linklen;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  f->dir = make_temp_dir();
  if (rolayer_store_open(&f->store, f->dir, NULL, NULL) != 0) return -1;
  f->alen = make_tar(f->a, "a.txt", "layer a\n", NULL);
  f->blen = make_tar(f->b, "b.txt", "layer b\n", NULL);
  f->linklen = make_tar(f->link, "a-link", NULL, "a.txt");
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

static rolayer_staged *stage_mem(fixture *f, const uint8_t *data, size_t len) {
  mem_reader_t r = {data, len, 0, 100};
  rolayer_staged *s = NULL;
  rolayer_error *err = NULL;
  int rc = rolayer_stage(&s, f->store, mem_read, &r, NULL, &err);
  if (rc != ROLAYER_OK) fail_msg("rolayer_stage: %s", rolayer_error_message(err));
  return s;
}

static void test_stage_commit(void **state) {
  fixture *f = *state;
  /* Staged in reverse order, committed in chain order: the chain a register gives. */
  rolayer_staged *sb = stage_mem(f, f->b, f->blen);
  rolayer_staged *sa = stage_mem(f, f->a, f->alen);
  char want[72];
  sha256_digest(f->a, f->alen, want);
  assert_string_equal(rolayer_staged_diff_id(sa), want);
  assert_int_equal(rolayer_staged_stream_size(sa), (int64_t)f->alen);
  assert_int_equal(rolayer_staged_deferred(sa), 0);
  rolayer_layer *la = NULL, *lb = NULL;
  assert_int_equal(rolayer_stage_commit(&la, f->store, sa, NULL, NULL), ROLAYER_OK);
  assert_int_equal(rolayer_stage_commit(&lb, f->store, sb, rolayer_layer_chain_id(la), NULL), ROLAYER_OK);
  assert_string_equal(rolayer_layer_parent(lb), rolayer_layer_chain_id(la));
  assert_int_equal(rolayer_layer_depth(lb), 2);
  /* A register of the same streams in another store gives the same ChainIDs. */
  char *dir2 = make_temp_dir();
  rolayer_store *s2 = NULL;
  assert_int_equal(rolayer_store_open(&s2, dir2, NULL, NULL), ROLAYER_OK);
  rolayer_layer *ra = NULL, *rb = NULL;
  assert_int_equal(rolayer_register_memory(&ra, s2, NULL, f->a, f->alen, NULL, NULL), ROLAYER_OK);
  assert_int_equal(rolayer_register_memory(&rb, s2, rolayer_layer_chain_id(ra), f->b, f->blen, NULL, NULL), ROLAYER_OK);
  assert_string_equal(rolayer_layer_chain_id(rb), rolayer_layer_chain_id(lb));
  /* The staged layer of one store is refused by another. */
  rolayer_staged *sc = stage_mem(f, f->b, f->blen);
  rolayer_layer *x = (rolayer_layer *)1;
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_stage_commit(&x, s2, sc, NULL, &err), ROLAYER_EINVAL);
  assert_null(x);
  rolayer_error_free(err);
  rolayer_stage_free(sc);
  rolayer_layer_close(ra);
  rolayer_layer_close(rb);
  rolayer_store_free(s2);
  rm_rf(dir2);
  free(dir2);
  /* Committed twice: refused; the layers stay. */
  err = NULL;
  assert_int_equal(rolayer_stage_commit(&x, f->store, sa, NULL, &err), ROLAYER_EINVAL);
  assert_non_null(strstr(rolayer_error_message(err), "committed"));
  rolayer_error_free(err);
  rolayer_stage_free(sa);
  rolayer_stage_free(sb);
  assert_int_equal(count_names(f->dir, "tmp"), 0);
  assert_int_equal(count_names(f->dir, "pending"), 0);
  assert_int_equal(count_names(f->dir, "dir"), 2);
  assert_int_equal(rolayer_release(lb, NULL), ROLAYER_OK);
  assert_int_equal(rolayer_release(la, NULL), ROLAYER_OK);
  assert_int_equal(count_names(f->dir, "dir"), 0);
}

static void test_stage_fd_and_parent_checks(void **state) {
  fixture *f = *state;
  char path[4096];
  snprintf(path, sizeof path, "%s/a.tar", f->dir);
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(f->a, 1, f->alen, fp), f->alen);
  fclose(fp);
  FILE *in = fopen(path, "rb");
  rolayer_staged *sa = NULL;
  assert_int_equal(rolayer_stage_fd(&sa, f->store, fileno(in), NULL, NULL), ROLAYER_OK);
  fclose(in);
  unlink(path);
  /* A hard link to a file of the parent: staged, applied on the parent at commit. */
  rolayer_staged *sl = stage_mem(f, f->link, f->linklen);
  assert_int_equal(rolayer_staged_deferred(sl), 1);
  rolayer_layer *x = NULL;
  rolayer_error *err = NULL;
  /* Unknown parent: ROLAYER_ENOTFOUND, the staged layer is kept for another try. */
  char nowhere[80] = "sha256:";
  memset(nowhere + 7, 'b', 64);
  nowhere[71] = 0;
  assert_int_equal(rolayer_stage_commit(&x, f->store, sl, nowhere, &err), ROLAYER_ENOTFOUND);
  rolayer_error_free(err);
  err = NULL;
  /* As a base layer its target is in no layer: ROLAYER_EARCHIVE, found at commit. */
  assert_int_equal(rolayer_stage_commit(&x, f->store, sl, NULL, &err), ROLAYER_EARCHIVE);
  assert_null(x);
  rolayer_error_free(err);
  rolayer_layer *la = NULL, *ll = NULL;
  assert_int_equal(rolayer_stage_commit(&la, f->store, sa, NULL, NULL), ROLAYER_OK);
  assert_int_equal(rolayer_stage_commit(&ll, f->store, sl, rolayer_layer_chain_id(la), NULL), ROLAYER_OK);
  rolayer_tar_stream *s = NULL;
  assert_int_equal(rolayer_tar_stream_open(&s, ll, NULL), ROLAYER_OK);
  buf_t got = {0};
  assert_int_equal(read_stream(s, &got, NULL), ROLAYER_OK);
  assert_int_equal(got.len, f->linklen);
  assert_memory_equal(got.data, f->link, f->linklen);
  free(got.data);
  rolayer_tar_stream_free(s);
  rolayer_stage_free(sa);
  rolayer_stage_free(sl);
  rolayer_layer_close(la);
  rolayer_layer_close(ll);
  assert_int_equal(count_names(f->dir, "tmp"), 0);
  assert_int_equal(count_names(f->dir, "pending"), 0);
}

static int failing_read(void *buf, size_t cap, size_t *n, void *ud) {
  (void)buf, (void)cap, (void)n, (void)ud;
  return 42;
}

static void test_invalid_and_free(void **state) {
  fixture *f = *state;
  rolayer_staged *s = (rolayer_staged *)1;
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_stage(&s, f->store, NULL, NULL, NULL, NULL), ROLAYER_EINVAL);
  assert_null(s);
  assert_int_equal(rolayer_stage(NULL, f->store, mem_read, NULL, NULL, NULL), ROLAYER_EINVAL);
  assert_int_equal(rolayer_stage_fd(&s, f->store, -1, NULL, NULL), ROLAYER_EINVAL);
  assert_int_equal(rolayer_stage(&s, NULL, failing_read, NULL, NULL, NULL), ROLAYER_EINVAL);
  rolayer_register_options bad = ROLAYER_REGISTER_OPTIONS_INIT;
  bad.version = 99;
  mem_reader_t r = {f->a, f->alen, 0, 0};
  assert_int_equal(rolayer_stage(&s, f->store, mem_read, &r, &bad, NULL), ROLAYER_EUNSUPPORTED);
  assert_int_equal(rolayer_stage(&s, f->store, failing_read, NULL, NULL, &err), ROLAYER_EUSER);
  assert_int_equal(rolayer_error_user_code(err), 42);
  rolayer_error_free(err);
  rolayer_layer *x = (rolayer_layer *)1;
  assert_int_equal(rolayer_stage_commit(&x, f->store, NULL, NULL, NULL), ROLAYER_EINVAL);
  assert_null(x);
  assert_null(rolayer_staged_diff_id(NULL));
  assert_int_equal(rolayer_staged_stream_size(NULL), -1);
  assert_int_equal(rolayer_staged_deferred(NULL), -1);
  rolayer_stage_free(NULL);
  /* Freed without a commit: nothing stays. */
  rolayer_staged *a = stage_mem(f, f->a, f->alen);
  assert_int_equal(count_names(f->dir, "pending"), 1);
  rolayer_stage_free(a);
  assert_int_equal(count_names(f->dir, "tmp"), 0);
  assert_int_equal(count_names(f->dir, "pending"), 0);
  assert_int_equal(count_names(f->dir, "dir"), 0);
  rolayer_string_list *l = NULL;
  assert_int_equal(rolayer_store_list(&l, f->store, NULL), ROLAYER_OK);
  assert_int_equal(rolayer_string_list_count(l), 0);
  rolayer_string_list_free(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_stage_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stage_fd_and_parent_checks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_and_free, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
