/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Drivers written by the caller (rolayer_driver_ops): an in-memory driver with and without
 * ROLAYER_DRIVER_CAP_EXACT_DIFFS, a driver that claims fidelity and lies, and callbacks that
 * fail at each step. Public header only.
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

/* ---- an in-memory driver -------------------------------------------------------------- */

#define MAX_LAYERS 64
typedef struct {
  char id[64];
  char parent[64];
  buf_t tar; /* the applied stream, kept whole */
  int used;
} mem_layer;

enum fail_at { F_NONE, F_CREATE, F_APPLY, F_DIFF_OPEN, F_DIFF_READ, F_PAYLOAD_OPEN, F_PAYLOAD_READ, F_REMOVE };

typedef struct {
  mem_layer layers[MAX_LAYERS];
  int fail;         /* enum fail_at */
  int lie;          /* diff returns a changed byte */
  int destroyed;
  int removes;
} mem_driver;

static mem_layer *find(mem_driver *d, const char *id) {
  for (int i = 0; i < MAX_LAYERS; i++)
    if (d->layers[i].used && !strcmp(d->layers[i].id, id)) return &d->layers[i];
  return NULL;
}

static int md_create(const char *id, const char *parent, rolayer_driver_error *derr, void *ud) {
  mem_driver *d = ud;
  if (d->fail == F_CREATE) { rolayer_driver_error_set(derr, "create refused by the test"); return 5; }
  for (int i = 0; i < MAX_LAYERS; i++)
    if (!d->layers[i].used) {
      memset(&d->layers[i], 0, sizeof d->layers[i]);
      d->layers[i].used = 1;
      snprintf(d->layers[i].id, sizeof d->layers[i].id, "%s", id);
      snprintf(d->layers[i].parent, sizeof d->layers[i].parent, "%s", parent ? parent : "");
      return 0;
    }
  rolayer_driver_error_set(derr, "no room");
  return 1;
}

static int md_remove(const char *id, rolayer_driver_error *derr, void *ud) {
  mem_driver *d = ud;
  if (d->fail == F_REMOVE) { rolayer_driver_error_set(derr, "remove refused by the test"); return 6; }
  mem_layer *l = find(d, id);
  d->removes++;
  if (l) { free(l->tar.data); memset(l, 0, sizeof *l); }
  return 0;
}

static int md_apply(const char *id, const char *parent, rolayer_read_fn read, void *read_data, int64_t *size,
                    rolayer_driver_error *derr, void *ud) {
  (void)parent;
  mem_driver *d = ud;
  mem_layer *l = find(d, id);
  if (!l) return 1;
  size_t cap = 1 << 16;
  l->tar.data = malloc(cap);
  l->tar.len = 0;
  for (;;) {
    if (l->tar.len + 4096 > cap) l->tar.data = realloc(l->tar.data, cap *= 2);
    size_t n = 0;
    if (read(l->tar.data + l->tar.len, 4096, &n, read_data) != 0) {
      rolayer_driver_error_set(derr, "input failed");
      return 9;
    }
    if (n == 0) break;
    l->tar.len += n;
    if (d->fail == F_APPLY && l->tar.len >= 512) { rolayer_driver_error_set(derr, "disk full (test)"); return 7; }
  }
  *size = (int64_t)l->tar.len;
  return 0;
}

typedef struct { mem_driver *d; const buf_t *src; size_t pos; } diff_stream;

static int md_diff_open(void **stream, const char *id, const char *ancestor, rolayer_driver_error *derr, void *ud) {
  mem_driver *d = ud;
  if (d->fail == F_DIFF_OPEN) { rolayer_driver_error_set(derr, "diff_open refused by the test"); return 8; }
  mem_layer *l = find(d, id);
  if (!l) { rolayer_driver_error_set(derr, "no such layer"); return 1; }
  if (strcmp(ancestor ? ancestor : "", l->parent) != 0) { rolayer_driver_error_set(derr, "only diffs against the parent"); return 2; }
  diff_stream *s = calloc(1, sizeof *s);
  s->d = d;
  s->src = &l->tar;
  *stream = s;
  return 0;
}

static int md_diff_read(void *stream, void *buf, size_t cap, size_t *n_read, rolayer_driver_error *derr, void *ud) {
  mem_driver *d = ud;
  diff_stream *s = stream;
  if (d->fail == F_DIFF_READ && s->pos > 0) { rolayer_driver_error_set(derr, "diff_read failed (test)"); return 10; }
  size_t n = s->src->len - s->pos;
  if (n > cap) n = cap;
  if (n > 1000) n = 1000;
  memcpy(buf, s->src->data + s->pos, n);
  if (d->lie && s->pos == 0 && n > 0) ((uint8_t *)buf)[0] ^= 1; /* claims fidelity, changes a byte */
  s->pos += n;
  *n_read = n;
  return 0;
}

static void md_diff_close(void *stream, void *ud) { (void)ud; free(stream); }

/* Payloads: walk the stored tar (ustar names + prefix, pax "path") for the last regular entry
 * with that name, as a filesystem would hold it. GNU 'L' long names count as a path record. */
typedef struct { const uint8_t *data; uint64_t size; } payload;

static uint64_t octal(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n && p[i] >= '0' && p[i] <= '7'; i++) v = v * 8 + (uint64_t)(p[i] - '0');
  return v;
}

static int md_payload_open(void **out, const char *id, const char *path, rolayer_driver_error *derr, void *ud) {
  mem_driver *d = ud;
  if (d->fail == F_PAYLOAD_OPEN) { rolayer_driver_error_set(derr, "payload_open refused by the test"); return 11; }
  mem_layer *l = find(d, id);
  if (!l) return 1;
  payload *found = NULL;
  char pax_path[1024] = "";
  for (size_t off = 0; off + 512 <= l->tar.len;) {
    const uint8_t *h = l->tar.data + off;
    if (h[0] == 0) break;
    uint64_t size = octal(h + 124, 12);
    char type = (char)h[156];
    const uint8_t *body = h + 512;
    if (type == 'L') {
      size_t n = size < sizeof pax_path ? (size_t)size : sizeof pax_path - 1;
      memcpy(pax_path, body, n);
      pax_path[n] = 0;
    } else if (type == 'x') {
      /* records "len path=value\n" */
      for (const uint8_t *r = body; r < body + size;) {
        unsigned len = 0;
        const uint8_t *q = r;
        while (*q >= '0' && *q <= '9') len = len * 10 + (unsigned)(*q++ - '0');
        if (!len) break;
        if (!strncmp((const char *)q + 1, "path=", 5)) {
          size_t vlen = len - (size_t)(q + 6 - r) - 1;
          if (vlen >= sizeof pax_path) vlen = sizeof pax_path - 1;
          memcpy(pax_path, q + 6, vlen);
          pax_path[vlen] = 0;
        }
        r += len;
      }
    } else {
      char name[1024];
      if (pax_path[0]) snprintf(name, sizeof name, "%s", pax_path);
      else if (h[345]) snprintf(name, sizeof name, "%.155s/%.100s", (const char *)h + 345, (const char *)h);
      else snprintf(name, sizeof name, "%.100s", (const char *)h);
      pax_path[0] = 0;
      const char *n = name;
      while (n[0] == '.' && n[1] == '/') n += 2;
      if ((type == '0' || type == 0) && !strcmp(n, path)) {
        free(found);
        found = malloc(sizeof *found);
        found->data = body;
        found->size = size;
      }
    }
    off += 512 + (size + 511) / 512 * 512;
  }
  if (!found) { rolayer_driver_error_set(derr, "no such file"); return 12; }
  *out = found;
  return 0;
}

static int md_payload_read(void *p, uint64_t offset, void *buf, size_t cap, size_t *n_read, rolayer_driver_error *derr,
                           void *ud) {
  mem_driver *d = ud;
  payload *pl = p;
  if (d->fail == F_PAYLOAD_READ) { rolayer_driver_error_set(derr, "payload_read failed (test)"); return 13; }
  size_t n = offset >= pl->size ? 0 : (size_t)(pl->size - offset);
  if (n > cap) n = cap;
  memcpy(buf, pl->data + offset, n);
  *n_read = n;
  return 0;
}

static void md_payload_close(void *p, void *ud) { (void)ud; free(p); }

static int md_metadata(const char *id, rolayer_metadata_emit_fn emit, void *emit_data, rolayer_driver_error *derr,
                       void *ud) {
  (void)derr;
  mem_layer *l = find(ud, id);
  char size[32];
  snprintf(size, sizeof size, "%zu", l ? l->tar.len : 0);
  return emit("kind", "memory", emit_data) || emit("bytes", size, emit_data);
}

static void md_destroy(void *ud) { ((mem_driver *)ud)->destroyed++; }

static rolayer_driver_ops make_ops(uint32_t caps) {
  rolayer_driver_ops o;
  memset(&o, 0, sizeof o);
  o.version = ROLAYER_DRIVER_OPS_VERSION;
  o.name = caps ? "memory-exact" : "memory";
  o.capabilities = caps;
  o.create = md_create;
  o.remove = md_remove;
  o.apply_diff = md_apply;
  o.diff_open = md_diff_open;
  o.diff_read = md_diff_read;
  o.diff_close = md_diff_close;
  o.payload_open = md_payload_open;
  o.payload_read = md_payload_read;
  o.payload_close = md_payload_close;
  o.metadata = md_metadata;
  o.destroy = md_destroy;
  return o;
}

/* ---- fixtures -------------------------------------------------------------------------- */

typedef struct {
  char *dir;
  mem_driver *drv;
  rolayer_driver_ops ops;
  rolayer_store *store;
} fx;

static rolayer_store *open_store(fx *f) {
  rolayer_store_options o = ROLAYER_STORE_OPTIONS_INIT;
  o.driver_ops = &f->ops;
  o.driver_user_data = f->drv;
  rolayer_store *s = NULL;
  rolayer_error *err = NULL;
  if (rolayer_store_open_ext(&s, f->dir, &o, &err) != 0) fail_msg("open: %s", rolayer_error_message(err));
  return s;
}

static int setup(void **state, uint32_t caps) {
  fx *f = calloc(1, sizeof *f);
  f->dir = make_temp_dir();
  f->drv = calloc(1, sizeof *f->drv);
  f->ops = make_ops(caps);
  f->store = open_store(f);
  *state = f;
  return 0;
}
static int setup_exact(void **state) { return setup(state, ROLAYER_DRIVER_CAP_EXACT_DIFFS); }
static int setup_payload(void **state) { return setup(state, 0); }
static int teardown(void **state) {
  fx *f = *state;
  rolayer_store_free(f->store);
  if (f->store) assert_int_equal(f->drv->destroyed, 1);
  for (int i = 0; i < MAX_LAYERS; i++) free(f->drv->layers[i].tar.data);
  rm_rf(f->dir);
  free(f->dir);
  free(f->drv);
  free(f);
  return 0;
}

static buf_t vector(const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/vectors/data/%s.tar", ROLAYER_SOURCE_DIR, name);
  buf_t b;
  if (read_file(path, &b) != 0) fail_msg("cannot read %s", path);
  return b;
}

static int reg(rolayer_store *s, const char *parent, const buf_t *b, rolayer_layer **out, rolayer_error **err) {
  mem_reader_t r = {b->data, b->len, 0, 0};
  return rolayer_register(out, s, parent, mem_read, &r, err);
}

static int exports_equal(rolayer_layer *l, const buf_t *want, rolayer_error **err) {
  rolayer_tar_stream *s = NULL;
  int rc = rolayer_tar_stream_open(&s, l, err);
  buf_t got = {0, 0};
  if (rc == 0) rc = read_stream(s, &got, err);
  rolayer_tar_stream_free(s);
  if (rc == 0 && (got.len != want->len || memcmp(got.data, want->data, want->len) != 0)) rc = 1;
  free(got.data);
  return rc;
}

static size_t count_layers(rolayer_store *s) {
  rolayer_string_list *l = NULL;
  assert_int_equal(rolayer_store_list(&l, s, NULL), 0);
  size_t n = rolayer_string_list_count(l);
  rolayer_string_list_free(l);
  return n;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_round_trip_and_cascade(void **state) {
  fx *f = *state;
  buf_t base = vector("base"), child = vector("child"), gnu = vector("gnu-longname");
  rolayer_layer *l1 = NULL, *l2 = NULL, *l3 = NULL;
  rolayer_error *err = NULL;
  assert_int_equal(reg(f->store, NULL, &base, &l1, &err), 0);
  assert_string_equal(rolayer_layer_chain_id(l1), "sha256:333bdc78b487fb5c4604b365c0fb2e45ce0ec82cba106e87afe88a1fe889b234");
  assert_int_equal(reg(f->store, rolayer_layer_chain_id(l1), &child, &l2, &err), 0);
  assert_string_equal(rolayer_layer_chain_id(l2), "sha256:9d85e3c58ded2988dece667df08fa20670125c65a9cf1ca08f7388f9b77174b9");
  assert_int_equal(reg(f->store, rolayer_layer_chain_id(l2), &gnu, &l3, &err), 0);
  if (exports_equal(l1, &base, &err) || exports_equal(l2, &child, &err) || exports_equal(l3, &gnu, &err))
    fail_msg("export: %s", err ? rolayer_error_message(err) : "bytes differ");
  /* TarStreamFrom(parent) is the driver's diff */
  rolayer_tar_stream *s = NULL;
  assert_int_equal(rolayer_tar_stream_open_from(&s, l2, rolayer_layer_chain_id(l1), NULL), 0);
  buf_t d;
  assert_int_equal(read_stream(s, &d, NULL), 0);
  assert_int_equal(d.len, child.len);
  free(d.data);
  rolayer_tar_stream_free(s);
  rolayer_string_list *md = NULL;
  assert_int_equal(rolayer_layer_metadata(&md, l1, NULL), 0);
  assert_string_equal(rolayer_string_list_get(md, 1), "memory");
  rolayer_string_list_free(md);
  /* the same tar twice: one layer */
  rolayer_layer *again = NULL;
  assert_int_equal(reg(f->store, NULL, &base, &again, NULL), 0);
  assert_string_equal(rolayer_layer_chain_id(again), rolayer_layer_chain_id(l1));
  assert_int_equal(count_layers(f->store), 3);
  assert_int_equal(rolayer_release(again, NULL), 0);
  /* cascade */
  assert_int_equal(rolayer_release(l1, NULL), 0);
  assert_int_equal(rolayer_release(l2, NULL), 0);
  rolayer_removed *rm = NULL;
  assert_int_equal(rolayer_release_ext(&rm, l3, NULL), 0);
  assert_int_equal(rolayer_removed_count(rm), 3);
  rolayer_removed_free(rm);
  for (int i = 0; i < MAX_LAYERS; i++) assert_false(f->drv->layers[i].used);
  free(base.data);
  free(child.data);
  free(gnu.data);
}

static void test_reopen_keeps_layers(void **state) {
  fx *f = *state;
  buf_t base = vector("base");
  rolayer_layer *l = NULL;
  assert_int_equal(reg(f->store, NULL, &base, &l, NULL), 0);
  char id[80];
  snprintf(id, sizeof id, "%s", rolayer_layer_chain_id(l));
  assert_int_equal(rolayer_store_retain(f->store, id, NULL), 0);
  assert_int_equal(rolayer_release(l, NULL), 0);
  rolayer_store_free(f->store);
  assert_int_equal(f->drv->destroyed, 1);
  f->drv->destroyed = 0;
  f->store = open_store(f);
  assert_int_equal(rolayer_open(&l, f->store, id, NULL), 0);
  rolayer_error *err = NULL;
  if (exports_equal(l, &base, &err)) fail_msg("%s", rolayer_error_message(err));
  rolayer_release(l, NULL);
  free(base.data);
}

static void test_lying_driver_is_caught(void **state) {
  fx *f = *state;
  buf_t base = vector("base");
  rolayer_layer *l = NULL;
  assert_int_equal(reg(f->store, NULL, &base, &l, NULL), 0);
  f->drv->lie = 1;
  rolayer_error *err = NULL;
  assert_int_equal(exports_equal(l, &base, &err), ROLAYER_EDIGEST);
  assert_non_null(strstr(rolayer_error_message(err), "could not verify layer data for: sha256:333bdc78"));
  assert_string_equal(rolayer_error_diff_id(err), rolayer_layer_diff_id(l));
  rolayer_error_free(err);
  f->drv->lie = 0;
  assert_int_equal(exports_equal(l, &base, NULL), 0);
  rolayer_release(l, NULL);
  free(base.data);
}

static void expect_user_error(int rc, rolayer_error *err, int user_code, const char *msg) {
  if (rc != ROLAYER_EUSER) fail_msg("want ROLAYER_EUSER, got %d (%s)", rc, err ? rolayer_error_message(err) : "");
  assert_int_equal(rolayer_error_user_code(err), user_code);
  if (!strstr(rolayer_error_message(err), msg)) fail_msg("message '%s' lacks '%s'", rolayer_error_message(err), msg);
}

static void test_failing_callbacks(void **state) {
  fx *f = *state;
  int exact = f->ops.capabilities != 0;
  buf_t base = vector("base");
  rolayer_layer *l = NULL;
  rolayer_error *err = NULL;
  /* register fails at create and at apply: nothing stays */
  int rc;
  f->drv->fail = F_CREATE;
  rc = reg(f->store, NULL, &base, &l, &err);
  expect_user_error(rc, err, 5, "create refused by the test");
  rolayer_error_free(err); err = NULL;
  f->drv->fail = F_APPLY;
  rc = reg(f->store, NULL, &base, &l, &err);
  expect_user_error(rc, err, 7, "disk full (test)");
  rolayer_error_free(err); err = NULL;
  assert_int_equal(count_layers(f->store), 0);
  for (int i = 0; i < MAX_LAYERS; i++) assert_false(f->drv->layers[i].used);
  /* export fails at each step, and works again once the driver recovers */
  f->drv->fail = F_NONE;
  assert_int_equal(reg(f->store, NULL, &base, &l, NULL), 0);
  int steps[] = {F_DIFF_OPEN, F_DIFF_READ, F_PAYLOAD_OPEN, F_PAYLOAD_READ};
  int codes[] = {8, 10, 11, 13};
  const char *msgs[] = {"diff_open refused", "diff_read failed", "payload_open refused", "payload_read failed"};
  for (int k = 0; k < 4; k++) {
    if (exact && k >= 2) continue;  /* payload callbacks are not used with exact diffs */
    if (!exact && k < 2) continue;  /* the diff is not used for a verified export without them */
    f->drv->fail = steps[k];
    rc = exports_equal(l, &base, &err);
    expect_user_error(rc, err, codes[k], msgs[k]);
    rolayer_error_free(err); err = NULL;
    f->drv->fail = F_NONE;
    assert_int_equal(exports_equal(l, &base, NULL), 0);
  }
  /* a failing remove leaves an intent mark: the next open removes the orphan */
  f->drv->fail = F_REMOVE;
  assert_int_equal(rolayer_release(l, NULL), 0); /* the layer is gone from the store */
  assert_int_equal(count_layers(f->store), 0);
  int used = 0;
  for (int i = 0; i < MAX_LAYERS; i++) used += f->drv->layers[i].used;
  assert_int_equal(used, 1);
  f->drv->fail = F_NONE;
  rolayer_store_free(f->store);
  f->drv->destroyed = 0;
  f->store = open_store(f);
  used = 0;
  for (int i = 0; i < MAX_LAYERS; i++) used += f->drv->layers[i].used;
  assert_int_equal(used, 0);
  free(base.data);
}

static void test_bad_ops_are_refused(void **state) {
  (void)state;
  char *dir = make_temp_dir();
  mem_driver *d = calloc(1, sizeof *d);
  rolayer_driver_ops o = make_ops(0);
  o.payload_read = NULL;
  rolayer_store_options so = ROLAYER_STORE_OPTIONS_INIT;
  so.driver_ops = &o;
  so.driver_user_data = d;
  rolayer_store *s = NULL;
  rolayer_error *err = NULL;
  assert_int_equal(rolayer_store_open_ext(&s, dir, &so, &err), ROLAYER_EINVAL);
  assert_non_null(strstr(rolayer_error_message(err), "payload_open and payload_read"));
  assert_int_equal(d->destroyed, 1);
  rolayer_error_free(err);
  o = make_ops(0);
  o.version = 99;
  err = NULL;
  assert_int_equal(rolayer_store_open_ext(&s, dir, &so, &err), ROLAYER_EUNSUPPORTED);
  rolayer_error_free(err);
  free(d);
  rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_round_trip_and_cascade, setup_exact, teardown),
    cmocka_unit_test_setup_teardown(test_round_trip_and_cascade, setup_payload, teardown),
    cmocka_unit_test_setup_teardown(test_reopen_keeps_layers, setup_exact, teardown),
    cmocka_unit_test_setup_teardown(test_reopen_keeps_layers, setup_payload, teardown),
    cmocka_unit_test_setup_teardown(test_lying_driver_is_caught, setup_exact, teardown),
    cmocka_unit_test_setup_teardown(test_failing_callbacks, setup_exact, teardown),
    cmocka_unit_test_setup_teardown(test_failing_callbacks, setup_payload, teardown),
    cmocka_unit_test(test_bad_ops_are_refused),
  };
  return cmocka_run_group_tests_name("user_driver", tests, NULL, NULL);
}
