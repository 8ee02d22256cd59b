/* SPDX-License-Identifier: Apache-2.0 */
#include "c_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int read_file(const char *path, buf_t *out) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t cap = 1 << 16, len = 0;
  uint8_t *p = malloc(cap);
  size_t n;
  while (p && (n = fread(p + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      cap *= 2;
      uint8_t *q = realloc(p, cap);
      if (!q) { free(p); p = NULL; }
      p = q;
    }
  }
  fclose(f);
  if (!p) return -1;
  out->data = p;
  out->len = len;
  return 0;
}

char *make_temp_dir(void) {
  const char *base = getenv("TMPDIR");
  char *tmpl = malloc(4096);
  snprintf(tmpl, 4096, "%s/rolayer-ctest-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmpl)) { free(tmpl); return NULL; }
  return tmpl;
}

void rm_rf(const char *path) {
  DIR *d = opendir(path);
  if (!d) { unlink(path); return; }
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    char child[4096];
    snprintf(child, sizeof child, "%s/%s", path, de->d_name);
    struct stat st;
    if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode)) { chmod(child, 0700); rm_rf(child); }
    else unlink(child);
  }
  closedir(d);
  rmdir(path);
}

int mem_read(void *buf, size_t cap, size_t *n_read, void *user_data) {
  mem_reader_t *r = user_data;
  size_t n = r->len - r->pos;
  if (n > cap) n = cap;
  if (r->chunk && n > r->chunk) n = r->chunk;
  memcpy(buf, r->data + r->pos, n);
  r->pos += n;
  *n_read = n;
  return 0;
}

int read_stream(rolayer_tar_stream *s, buf_t *out, rolayer_error **err) {
  size_t cap = 1 << 16;
  out->data = malloc(cap);
  out->len = 0;
  for (;;) {
    if (out->len + 65536 > cap) {
      cap *= 2;
      out->data = realloc(out->data, cap);
    }
    size_t n = 0;
    int rc = rolayer_tar_stream_read(s, out->data + out->len, 65536, &n, err);
    if (rc != 0) return rc;
    if (n == 0) return 0;
    out->len += n;
  }
}

int code_by_name(const char *name) {
  static const struct { const char *n; int c; } t[] = {
    {"ROLAYER_OK", ROLAYER_OK}, {"ROLAYER_EINVAL", ROLAYER_EINVAL}, {"ROLAYER_ENOTFOUND", ROLAYER_ENOTFOUND},
    {"ROLAYER_EEXISTS", ROLAYER_EEXISTS}, {"ROLAYER_ENOTRETAINED", ROLAYER_ENOTRETAINED},
    {"ROLAYER_EMAXDEPTH", ROLAYER_EMAXDEPTH}, {"ROLAYER_ENOTANCESTOR", ROLAYER_ENOTANCESTOR},
    {"ROLAYER_EDIGEST", ROLAYER_EDIGEST}, {"ROLAYER_ECORRUPT", ROLAYER_ECORRUPT},
    {"ROLAYER_EARCHIVE", ROLAYER_EARCHIVE}, {"ROLAYER_EUNSAFE", ROLAYER_EUNSAFE}, {"ROLAYER_EIO", ROLAYER_EIO},
    {"ROLAYER_ENOMEM", ROLAYER_ENOMEM}, {"ROLAYER_EUSER", ROLAYER_EUSER}, {"ROLAYER_EBUSY", ROLAYER_EBUSY},
    {"ROLAYER_EUNSUPPORTED", ROLAYER_EUNSUPPORTED}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (!strcmp(t[i].n, name)) return t[i].c;
  return 1;
}

const char *corpus_dir(void) {
  static char path[4096];
  const char *env = getenv("ROLAYER_CORPUS");
  if (env) return env;
  snprintf(path, sizeof path, "%s/../shared/corpus", ROLAYER_SOURCE_DIR);
  char manifest[4200];
  snprintf(manifest, sizeof manifest, "%s/MANIFEST.tsv", path);
  struct stat st;
  return stat(manifest, &st) == 0 ? path : NULL;
}

/* A compact SHA-256 (FIPS 180-4) so that the C suite checks DiffIDs independently. */
static const uint32_t K[64] = {
  0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,0xd807aa98,0x12835b01,
  0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,
  0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,
  0x06ca6351,0x14292967,0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,
  0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,0x19a4c116,0x1e376c08,
  0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,
  0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2};
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
static void block(uint32_t h[8], const uint8_t *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4*i] << 24 | (uint32_t)p[4*i+1] << 16 | (uint32_t)p[4*i+2] << 8 | p[4*i+3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i-15], 7) ^ ROR(w[i-15], 18) ^ (w[i-15] >> 3);
    uint32_t s1 = ROR(w[i-2], 17) ^ ROR(w[i-2], 19) ^ (w[i-2] >> 10);
    w[i] = w[i-16] + s0 + w[i-7] + s1;
  }
  uint32_t a=h[0],b=h[1],c=h[2],d=h[3],e=h[4],f=h[5],g=h[6],hh=h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = hh + (ROR(e,6)^ROR(e,11)^ROR(e,25)) + ((e&f)^(~e&g)) + K[i] + w[i];
    uint32_t t2 = (ROR(a,2)^ROR(a,13)^ROR(a,22)) + ((a&b)^(a&c)^(b&c));
    hh=g; g=f; f=e; e=d+t1; d=c; c=b; b=a; a=t1+t2;
  }
  h[0]+=a; h[1]+=b; h[2]+=c; h[3]+=d; h[4]+=e; h[5]+=f; h[6]+=g; h[7]+=hh;
}
void sha256_digest(const uint8_t *data, size_t len, char out[72]) {
  uint32_t h[8] = {0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19};
  size_t i = 0;
  for (; i + 64 <= len; i += 64) block(h, data + i);
  uint8_t last[128] = {0};
  size_t rem = len - i;
  memcpy(last, data + i, rem);
  last[rem] = 0x80;
  size_t total = rem + 9 <= 64 ? 64 : 128;
  uint64_t bits = (uint64_t)len * 8;
  for (int k = 0; k < 8; k++) last[total - 1 - k] = (uint8_t)(bits >> (8 * k));
  block(h, last);
  if (total == 128) block(h, last + 64);
  strcpy(out, "sha256:");
  for (int k = 0; k < 8; k++) sprintf(out + 7 + 8 * k, "%08x", h[k]);
}

static int fixture_setup_with(void **state, const char *driver) {
  store_fixture *f = calloc(1, sizeof *f);
  f->dir = make_temp_dir();
  rolayer_error *err = NULL;
  int rc = rolayer_store_open(&f->store, f->dir, driver, &err);
  if (rc != 0) fprintf(stderr, "open: %s\n", rolayer_error_message(err));
  rolayer_error_free(err);
  *state = f;
  return rc;
}
int fixture_setup_exact(void **state) { return fixture_setup_with(state, "exact"); }
int fixture_setup_dir(void **state) { return fixture_setup_with(state, NULL); }
int fixture_teardown(void **state) {
  store_fixture *f = *state;
  rolayer_store_free(f->store);
  rm_rf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}
