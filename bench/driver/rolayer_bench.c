/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rolayer-bench: the librolayer side of bench/run.sh, through the public C API only, plus the
 * machine-limit probes and a process timer. Each command prints one line of JSON.
 *
 *   rolayer-bench register STORE TAR         rolayer_register_fd on a fresh store; the layer is
 *                                            retained (persistent reference) for export
 *   rolayer-bench export STORE CHAIN [BUF]   rolayer_tar_stream_read to the end (verified), in
 *                                            BUF-byte reads (default 1 MiB), discarded in the
 *                                            process as the engine's io.Discard does (no write:
 *                                            where /dev/null is a regular file, as in some
 *                                            sandboxes, writing there would copy the layer)
 *   rolayer-bench open STORE                 rolayer_store_open + rolayer_store_free, timed
 *   rolayer-bench populate STORE N DEPTH     registers N tiny layers as N/DEPTH chains of DEPTH
 *                                            layers (depth <= 125), retaining each chain's top
 *   rolayer-bench sha256 FILE [BUF]          OpenSSL EVP SHA-256 over FILE in BUF-byte reads
 *   rolayer-bench time OUT.json [--stdout PATH] -- CMD ARGS...
 *                                            runs CMD, writes its wall, user and system time and
 *                                            peak RSS (wait4) to OUT.json; exits with CMD's code
 *
 * "seconds" is the operation alone (clock_gettime around the call); CPU and peak RSS of the
 * whole process come from getrusage(RUSAGE_SELF) or, for `time`, wait4.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <rolayer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

static void die_err(const char *what, int rc, rolayer_error *err) {
  fprintf(stderr, "rolayer-bench: %s: %s (%d)%s%s\n", what, err ? rolayer_error_message(err) : rolayer_strerror(rc),
          rc, err && rolayer_error_path(err) ? " path " : "", err && rolayer_error_path(err) ? rolayer_error_path(err) : "");
  rolayer_error_free(err);
  exit(1);
}

static void die_sys(const char *what, const char *arg) {
  fprintf(stderr, "rolayer-bench: %s %s: %s\n", what, arg, strerror(errno));
  exit(1);
}

/* The common tail of every JSON line: this process's CPU time and peak RSS. */
static void self_usage(char *buf, size_t cap) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  snprintf(buf, cap, "\"user_s\":%.6f,\"sys_s\":%.6f,\"maxrss_kib\":%ld", tv(ru.ru_utime), tv(ru.ru_stime),
           ru.ru_maxrss);
}

static rolayer_store *open_store(const char *root) {
  rolayer_store *store = NULL;
  rolayer_error *err = NULL;
  /* ROLAYER_BENCH_DRIVER picks another built-in driver (e.g. "exact"); default "dir".
   * ROLAYER_BENCH_PACK=BYTES sets the store's payload pack (rolayer_store_options.payload_pack_max;
   * -1 turns it off; unset = the store's setting). */
  const char *driver = getenv("ROLAYER_BENCH_DRIVER");
  const char *pack = getenv("ROLAYER_BENCH_PACK");
  rolayer_store_options o = ROLAYER_STORE_OPTIONS_INIT;
  o.driver = driver && *driver ? driver : "dir";
  o.payload_pack_max = pack && *pack ? strtoll(pack, NULL, 10) : 0;
  int rc = rolayer_store_open_ext(&store, root, &o, &err);
  if (rc != 0) die_err("open store", rc, err);
  return store;
}

static int cmd_register(const char *root, const char *tar) {
  double t0 = now();
  rolayer_store *store = open_store(root);
  int fd = open(tar, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die_sys("open", tar);
  double t1 = now();
  rolayer_layer *layer = NULL;
  rolayer_error *err = NULL;
  int rc = rolayer_register_fd(&layer, store, NULL, fd, NULL, &err);
  if (rc != 0) die_err("register", rc, err);
  double t2 = now();
  close(fd);
  int64_t stream_size = 0, diff_size = 0;
  rolayer_layer_stream_size(&stream_size, layer, NULL);
  rolayer_layer_diff_size(&diff_size, layer, NULL);
  if ((rc = rolayer_store_retain(store, rolayer_layer_chain_id(layer), &err)) != 0) die_err("retain", rc, err);
  char chain[128];
  snprintf(chain, sizeof chain, "%s", rolayer_layer_chain_id(layer));
  double t3 = now();
  rolayer_release(layer, NULL);
  rolayer_store_free(store);
  double t4 = now();
  char usage[160];
  self_usage(usage, sizeof usage);
  printf("{\"op\":\"register\",\"impl\":\"rolayer-dir\",\"seconds\":%.6f,\"open_seconds\":%.6f,"
         "\"close_seconds\":%.6f,\"chain_id\":\"%s\",\"stream_size\":%lld,\"diff_size\":%lld,%s}\n",
         t2 - t1, t1 - t0, t4 - t3, chain, (long long)stream_size, (long long)diff_size, usage);
  return 0;
}

static int cmd_export(const char *root, const char *chain, size_t bufsize) {
  double t0 = now();
  rolayer_store *store = open_store(root);
  rolayer_layer *layer = NULL;
  rolayer_error *err = NULL;
  int rc = rolayer_open(&layer, store, chain, &err);
  if (rc != 0) die_err("open layer", rc, err);
  char *buf = malloc(bufsize);
  if (!buf) die_sys("malloc", "buffer");
  double t1 = now();
  rolayer_tar_stream *s = NULL;
  if ((rc = rolayer_tar_stream_open(&s, layer, &err)) != 0) die_err("tar stream open", rc, err);
  unsigned long long total = 0;
  for (;;) {
    size_t n = 0;
    if ((rc = rolayer_tar_stream_read(s, buf, bufsize, &n, &err)) != 0) die_err("tar stream read", rc, err);
    if (n == 0) break;
    total += n;
  }
  rolayer_tar_stream_free(s);
  double t2 = now();
  rolayer_release(layer, NULL);
  rolayer_store_free(store);
  free(buf);
  char usage[160];
  self_usage(usage, sizeof usage);
  printf("{\"op\":\"export\",\"impl\":\"rolayer-dir\",\"seconds\":%.6f,\"open_seconds\":%.6f,\"bytes\":%llu,"
         "\"bufsize\":%zu,%s}\n",
         t2 - t1, t1 - t0, total, bufsize, usage);
  return 0;
}

static int cmd_open(const char *root) {
  double t0 = now();
  rolayer_store *store = open_store(root);
  double t1 = now();
  rolayer_store_free(store);
  double t2 = now();
  /* Count the layers afterwards (not timed). */
  store = open_store(root);
  rolayer_string_list *l = NULL;
  rolayer_error *err = NULL;
  int rc = rolayer_store_list(&l, store, &err);
  if (rc != 0) die_err("list", rc, err);
  size_t count = rolayer_string_list_count(l);
  rolayer_string_list_free(l);
  rolayer_store_free(store);
  char usage[160];
  self_usage(usage, sizeof usage);
  printf("{\"op\":\"open\",\"impl\":\"rolayer-dir\",\"seconds\":%.6f,\"open_seconds\":%.6f,\"free_seconds\":%.6f,"
         "\"layers\":%zu,%s}\n",
         t2 - t0, t1 - t0, t2 - t1, count, usage);
  return 0;
}

/* A minimal one-file PAX/USTAR tar in memory: "f/<n>" holding a few bytes unique to n. */
static size_t tiny_tar(unsigned char *out, unsigned long n) {
  memset(out, 0, 2048);
  char name[64], body[64];
  snprintf(name, sizeof name, "layer/%lu", n);
  int blen = snprintf(body, sizeof body, "layer %lu\n", n);
  unsigned char *h = out;
  memcpy(h, name, strlen(name));
  snprintf((char *)h + 100, 8, "%07o", 0644);
  snprintf((char *)h + 108, 8, "%07o", 0);
  snprintf((char *)h + 116, 8, "%07o", 0);
  snprintf((char *)h + 124, 12, "%011o", (unsigned)blen);
  snprintf((char *)h + 136, 12, "%011o", 1700000000u);
  h[156] = '0';
  memcpy(h + 257, "ustar\0" "00", 8);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++) sum += h[i];
  snprintf((char *)h + 148, 8, "%06o", sum);
  h[155] = ' ';
  memcpy(out + 512, body, (size_t)blen);
  return 512 + 512 + 1024; /* header, padded data, end-of-archive */
}

static int cmd_populate(const char *root, long n, long depth) {
  if (n <= 0 || depth <= 0 || depth > ROLAYER_MAX_DEPTH) {
    fprintf(stderr, "rolayer-bench: populate: bad N or DEPTH\n");
    return 2;
  }
  rolayer_store *store = open_store(root);
  unsigned char tar[2048];
  double t0 = now();
  rolayer_layer *prev = NULL; /* held until its child is registered (the child then holds it) */
  for (long i = 0; i < n; i++) {
    size_t len = tiny_tar(tar, (unsigned long)i);
    rolayer_layer *layer = NULL;
    rolayer_error *err = NULL;
    int rc = rolayer_register_memory(&layer, store, prev ? rolayer_layer_chain_id(prev) : NULL, tar, len, NULL, &err);
    if (rc != 0) die_err("register", rc, err);
    if (prev) rolayer_release(prev, NULL);
    prev = layer;
    if ((i % depth) == depth - 1 || i == n - 1) {
      /* The chain's top keeps a persistent reference; its ancestors are held by their children. */
      if ((rc = rolayer_store_retain(store, rolayer_layer_chain_id(layer), &err)) != 0) die_err("retain", rc, err);
      rolayer_release(layer, NULL);
      prev = NULL;
    }
  }
  double t1 = now();
  rolayer_store_free(store);
  char usage[160];
  self_usage(usage, sizeof usage);
  printf("{\"op\":\"populate\",\"impl\":\"rolayer-dir\",\"seconds\":%.6f,\"layers\":%ld,\"depth\":%ld,%s}\n", t1 - t0,
         n, depth, usage);
  return 0;
}

static int cmd_sha256(const char *path, size_t bufsize) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die_sys("open", path);
  unsigned char *buf = malloc(bufsize);
  if (!buf) die_sys("malloc", "buffer");
  double t0 = now();
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
    fprintf(stderr, "rolayer-bench: EVP init failed\n");
    return 1;
  }
  unsigned long long total = 0;
  for (;;) {
    ssize_t k = read(fd, buf, bufsize);
    if (k < 0) {
      if (errno == EINTR) continue;
      die_sys("read", path);
    }
    if (k == 0) break;
    EVP_DigestUpdate(ctx, buf, (size_t)k);
    total += (unsigned long long)k;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  EVP_DigestFinal_ex(ctx, md, &mdlen);
  EVP_MD_CTX_free(ctx);
  double t1 = now();
  close(fd);
  free(buf);
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  for (unsigned i = 0; i < mdlen; i++) sprintf(hex + 2 * i, "%02x", md[i]);
  char usage[160];
  self_usage(usage, sizeof usage);
  printf("{\"op\":\"sha256\",\"impl\":\"openssl-evp\",\"seconds\":%.6f,\"bytes\":%llu,\"digest\":\"sha256:%s\",%s}\n",
         t1 - t0, total, hex, usage);
  return 0;
}

static int cmd_time(int argc, char **argv) {
  /* time OUT.json [--stdout PATH] -- CMD ARGS... */
  if (argc < 4) return 2;
  const char *outpath = argv[2];
  const char *redirect = NULL;
  int i = 3;
  if (strcmp(argv[i], "--stdout") == 0 && i + 1 < argc) {
    redirect = argv[i + 1];
    i += 2;
  }
  if (i >= argc || strcmp(argv[i], "--") != 0) return 2;
  i++;
  if (i >= argc) return 2;
  double t0 = now();
  pid_t pid = fork();
  if (pid < 0) die_sys("fork", argv[i]);
  if (pid == 0) {
    if (redirect) {
      int fd = open(redirect, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0 || dup2(fd, 1) < 0) _exit(127);
      close(fd);
    }
    execvp(argv[i], argv + i);
    fprintf(stderr, "rolayer-bench: exec %s: %s\n", argv[i], strerror(errno));
    _exit(127);
  }
  int status = 0;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) die_sys("wait4", argv[i]);
  }
  double t1 = now();
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  FILE *f = fopen(outpath, "w");
  if (!f) die_sys("open", outpath);
  fprintf(f, "{\"wall_s\":%.6f,\"user_s\":%.6f,\"sys_s\":%.6f,\"maxrss_kib\":%ld,\"exit\":%d}\n", t1 - t0,
          tv(ru.ru_utime), tv(ru.ru_stime), ru.ru_maxrss, code);
  fclose(f);
  return code;
}

static void usage(void) {
  fprintf(stderr,
          "usage: rolayer-bench register STORE TAR | export STORE CHAIN [BUF] | open STORE |\n"
          "       populate STORE N DEPTH | sha256 FILE [BUF] | time OUT.json [--stdout PATH] -- CMD...\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage();
    return 2;
  }
  const char *c = argv[1];
  if (strcmp(c, "register") == 0 && argc == 4) return cmd_register(argv[2], argv[3]);
  if (strcmp(c, "export") == 0 && (argc == 4 || argc == 5))
    return cmd_export(argv[2], argv[3], argc == 5 ? (size_t)strtoull(argv[4], NULL, 0) : (size_t)1 << 20);
  if (strcmp(c, "open") == 0 && argc == 3) return cmd_open(argv[2]);
  if (strcmp(c, "populate") == 0 && argc == 5) return cmd_populate(argv[2], atol(argv[3]), atol(argv[4]));
  if (strcmp(c, "sha256") == 0 && (argc == 3 || argc == 4))
    return cmd_sha256(argv[2], argc == 4 ? (size_t)strtoull(argv[3], NULL, 0) : (size_t)1 << 20);
  if (strcmp(c, "time") == 0) {
    int rc = cmd_time(argc, argv);
    if (rc == 2 && argc < 4) usage();
    return rc;
  }
  usage();
  return 2;
}
