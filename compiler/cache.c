/*
** cache.c -- the in-memory compile cache of a context. Compiled step code
** depends only on the scheduled function graph and its buffer layout: shared
** variables, inputs and outputs reach it through the bufs array at run time.
** So two functions whose optimized graphs are the same (same ops, types,
** static sizes, constants, schedule and buffer numbering; names and source
** lines do not matter) share one compiled step. The key is that canonical
** description, byte for byte (the hash only picks the bucket), together with
** the LLVM options; the host CPU is the same for the whole process.
** Entries are counted references: the code is removed from the JIT when the
** last function using it is freed.
**
** On disk (optional: the environment variable KILN_CACHE_DIR names a
** directory): a miss in memory looks for <dir>/kiln-<hash>.obj, an object
** file compiled earlier, possibly by another process. Its key adds to the
** canonical description everything the machine code depends on besides:
** the LLVM version, target triple, host CPU and features, and the identity
** of the Kiln library itself (its file's path, size and modification time,
** so a rebuilt Kiln never links objects of an older one). The whole key is
** stored in the file and compared byte for byte; any mismatch, short read
** or failure to link is a miss, never an error. A miss compiles to an object
** file, links that, and writes the file to a temporary name then renames it,
** so readers see whole files only. With KILN_DUMP_DIR set the disk cache is
** not read (a linked object keeps no LLVM texts to dump).
**
**   file = u64 key length | key ("KILNOBJ1" ...) | u64 object length | object
**          | u64 FNV-1a hash of the object (a damaged object is a miss, never
**            code that runs)
*/
#define _GNU_SOURCE /* dladdr */
#include "compiler/function.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct kl_cache_entry {
  uint64_t hash;
  unsigned char *key;
  size_t key_len;
  struct kl_jit_code *code; /* the fast step */
  void *fn;
  struct kl_jit_code *code_general; /* the general step, once a call needed it */
  void *fn_general;
  int refs;
} kl_cache_entry;

typedef struct kbuf {
  unsigned char *p;
  size_t len, cap;
  bool oom;
} kbuf;

static void put(kbuf *b, const void *data, size_t n) {
  if (b->oom) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 1024;
    while (cap < b->len + n)
      cap *= 2;
    unsigned char *p = kl_realloc(b->p, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static void put_i64(kbuf *b, int64_t v) { put(b, &v, sizeof v); }

/* The canonical description of what the lowering sees. */
static bool make_key(const kl_fgraph *g, kbuf *b) {
  const kl_plan *p = g->plan;
  put_i64(b, g->llvm_opt_level);
  put_i64(b, g->n);
  for (int i = 0; i < g->n; i++) {
    const kiln_node *v = g->nodes[i];
    put_i64(b, v->op);
    put_i64(b, v->type.dtype);
    put_i64(b, v->type.rank);
    for (int d = 0; d < v->type.rank; d++)
      put_i64(b, v->type.dims[d]);
    put_i64(b, v->p.axes);
    put_i64(b, v->p.ta | v->p.tb << 1);
    put(b, v->p.src_axis, sizeof v->p.src_axis); /* shape ops: same types, other patterns */
    if (kl_ops[v->op].kind == KL_INDEX) {        /* slices, axis, classes: the full text */
      char pt[600];
      const char *t = kl_index_params_text(v, pt, sizeof pt);
      put(b, t, strlen(t) + 1);
    }
    put_i64(b, v->n_in);
    for (int k = 0; k < v->n_in; k++)
      put_i64(b, v->in[k]->id);
    put_i64(b, g->sched[i]);
    put_i64(b, g->home[i]);
    put_i64(b, p->shape[i].dims_base);
    if (v->op == KL_OP_CONST && v->type.rank == 0) /* inlined; larger ones are buffers */
      put(b, v->data, kiln_dtype_size(v->type.dtype));
  }
  put_i64(b, p->n_bufs);
  for (int k = 0; k < p->n_bufs; k++)
    put_i64(b, p->bufs[k].kind);
  put_i64(b, g->n_copies);
  for (int c = 0; c < g->n_copies; c++) {
    put_i64(b, g->copies[c].node);
    put_i64(b, g->copies[c].buf);
  }
  return !b->oom;
}

/* ------------------------------------------------------------ on disk */

static uint64_t fnv1a(const unsigned char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

static const char disk_magic[8] = {'K', 'I', 'L', 'N', 'O', 'B', 'J', '1'};

/* The on-disk key: what the machine code depends on beyond the graph. NULL
** (no disk cache) when the library's own file cannot be identified. */
static bool disk_key(const kbuf *key, bool general, kbuf *dk) {
  Dl_info info;
  struct stat stt;
  if (!dladdr((void *)(uintptr_t)&kl_cache_compile, &info) || !info.dli_fname ||
      stat(info.dli_fname, &stt) != 0)
    return false;
  char *host = kl_backend_host_id();
  if (!host) return false;
  put(dk, disk_magic, sizeof disk_magic);
  put(dk, info.dli_fname, strlen(info.dli_fname) + 1);
  put_i64(dk, (int64_t)stt.st_size);
  put_i64(dk, (int64_t)stt.st_mtim.tv_sec);
  put_i64(dk, (int64_t)stt.st_mtim.tv_nsec);
  put(dk, host, strlen(host) + 1);
  kl_free(host);
  put(dk, key->p, key->len);
  put(dk, general ? "G" : "F", 1); /* the general or the fast step */
  return !dk->oom;
}

static void disk_path(char *path, size_t n, const char *dir, uint64_t h) {
  snprintf(path, n, "%s/kiln-%016llx.obj", dir, (unsigned long long)h);
}

/* Reads the object stored under key dk, or NULL (a miss). */
static unsigned char *disk_read(const char *path, const kbuf *dk, size_t *obj_len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char *obj = NULL, *k = NULL;
  uint64_t kn = 0, on = 0, sum = 0;
  struct stat stt;
  if (fstat(fileno(f), &stt) != 0 || fread(&kn, sizeof kn, 1, f) != 1 || kn != dk->len) goto out;
  k = kl_malloc(dk->len);
  if (!k || fread(k, 1, dk->len, f) != dk->len || memcmp(k, dk->p, dk->len) != 0) goto out;
  if (fread(&on, sizeof on, 1, f) != 1 || on == 0 ||
      on != (uint64_t)stt.st_size - sizeof kn - dk->len - sizeof on - sizeof sum)
    goto out;
  obj = kl_malloc((size_t)on);
  if (obj && (fread(obj, 1, (size_t)on, f) != on || fread(&sum, sizeof sum, 1, f) != 1 ||
              sum != fnv1a(obj, (size_t)on))) {
    kl_free(obj);
    obj = NULL;
  }
  if (obj) *obj_len = (size_t)on;
out:
  kl_free(k);
  fclose(f);
  return obj;
}

/* Writes the file under a temporary name and renames it into place; any
** failure leaves no file and is not an error (the cache is optional). */
static void disk_write(const char *dir, const char *path, const kbuf *dk, const unsigned char *obj,
                       size_t obj_len) {
  static unsigned counter;
  char tmp[4096];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  snprintf(tmp, sizeof tmp, "%s/.kiln-tmp-%ld-%u-%ld", dir, (long)getpid(),
           __atomic_fetch_add(&counter, 1u, __ATOMIC_RELAXED), (long)ts.tv_nsec);
  FILE *f = fopen(tmp, "wb");
  if (!f) return;
  uint64_t kn = dk->len, on = obj_len, sum = fnv1a(obj, obj_len);
  bool ok = fwrite(&kn, sizeof kn, 1, f) == 1 && fwrite(dk->p, 1, dk->len, f) == dk->len &&
            fwrite(&on, sizeof on, 1, f) == 1 && fwrite(obj, 1, obj_len, f) == obj_len &&
            fwrite(&sum, sizeof sum, 1, f) == 1;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) remove(tmp);
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The disk layer around kl_backend_compile: a hit links the stored object;
** a miss compiles to an object and stores it. Returns false when the disk
** cache is not in use (the caller compiles as usual). */
static bool disk_compile(kiln_ctx *ctx, const kl_fgraph *g, const kbuf *key, bool general,
                         struct kl_jit_code **code, void **fn, kl_times *t, int *out_hit,
                         kiln_status *st) {
  const char *dir = getenv("KILN_CACHE_DIR"), *dump = getenv("KILN_DUMP_DIR");
  if (!dir || !*dir) return false;
  kbuf dk = {0};
  if (!disk_key(key, general, &dk)) {
    kl_free(dk.p);
    return false;
  }
  uint64_t h = fnv1a(dk.p, dk.len);
  char path[4096], sym[64];
  disk_path(path, sizeof path, dir, h);
  snprintf(sym, sizeof sym, "kiln_step_%016llx", (unsigned long long)h);
  double t0 = seconds();
  size_t n = 0;
  unsigned char *obj = dump && *dump ? NULL : disk_read(path, &dk, &n);
  if (obj) {
    char err[512];
    kiln_status s = kl_backend_load(ctx, obj, n, sym, code, fn, err, sizeof err);
    kl_free(obj);
    if (s == KILN_OK) {
      t->total = seconds() - t0;
      *out_hit = 2;
      *st = KILN_OK;
      kl_free(dk.p);
      return true;
    }
  }
  *st = kl_backend_compile(ctx, g, sym, general, code, fn, t, &obj, &n);
  if (*st == KILN_OK) disk_write(dir, path, &dk, obj, n);
  kl_free(obj);
  kl_free(dk.p);
  return true;
}

/* The fast or the general step of g: from the disk cache when it is in
** use, else compiled under a name new in the context. */
static kiln_status compile_step(kiln_ctx *ctx, const kl_fgraph *g, const kbuf *key, bool general,
                                struct kl_jit_code **code, void **fn, kl_times *t, int *out_hit) {
  kiln_status st;
  if (disk_compile(ctx, g, key, general, code, fn, t, out_hit, &st)) return st;
  char sym[64];
  snprintf(sym, sizeof sym, "kiln_step_%d", ctx->n_funcs_made++);
  return kl_backend_compile(ctx, g, sym, general, code, fn, t, NULL, NULL);
}

/* ------------------------------------------------------------ in memory */

kiln_status kl_cache_compile(kiln_ctx *ctx, const kl_fgraph *g, struct kl_jit_code **out_code,
                             void **out_fn, kl_times *t, int *out_hit) {
  kbuf key = {0};
  *out_hit = 0;
  if (!make_key(g, &key)) {
    kl_free(key.p);
    return kl_error(ctx, KILN_NOMEM, "function: out of memory");
  }
  uint64_t h = fnv1a(key.p, key.len);
  for (int i = 0; i < ctx->n_cache; i++) {
    kl_cache_entry *e = ctx->cache[i];
    if (e->hash == h && e->key_len == key.len && memcmp(e->key, key.p, key.len) == 0) {
      e->refs++;
      *out_code = e->code;
      *out_fn = e->fn;
      t->total = 0;
      *out_hit = 1;
      kl_free(key.p);
      return KILN_OK;
    }
  }
  kl_cache_entry *e = kl_calloc(1, sizeof *e);
  if (ctx->n_cache == ctx->cap_cache) {
    int cap = ctx->cap_cache ? ctx->cap_cache * 2 : 8;
    struct kl_cache_entry **nc = kl_realloc(ctx->cache, (size_t)cap * sizeof *nc);
    if (nc) {
      ctx->cache = nc;
      ctx->cap_cache = cap;
    }
  }
  if (!e || ctx->n_cache == ctx->cap_cache) {
    kl_free(e);
    kl_free(key.p);
    return kl_error(ctx, KILN_NOMEM, "function: out of memory");
  }
  kiln_status st = compile_step(ctx, g, &key, false, &e->code, &e->fn, t, out_hit);
  if (st != KILN_OK) {
    kl_free(e);
    kl_free(key.p);
    return st;
  }
  e->hash = h;
  e->key = key.p;
  e->key_len = key.len;
  e->refs = 1;
  ctx->cache[ctx->n_cache++] = e;
  *out_code = e->code;
  *out_fn = e->fn;
  return KILN_OK;
}

kiln_status kl_cache_compile_general(kiln_ctx *ctx, const kl_fgraph *g, struct kl_jit_code *code,
                                     struct kl_jit_code **out_code, void **out_fn, kl_times *t,
                                     int *out_hit) {
  *out_hit = 0;
  kl_cache_entry *e = NULL;
  for (int i = 0; i < ctx->n_cache && !e; i++)
    if (ctx->cache[i]->code == code) e = ctx->cache[i];
  if (!e) return kl_error(ctx, KILN_INTERNAL, "call: the function's step is not in the cache");
  if (e->fn_general) {
    *out_code = e->code_general;
    *out_fn = e->fn_general;
    t->total = 0;
    *out_hit = 1;
    return KILN_OK;
  }
  kbuf key = {0};
  if (!make_key(g, &key)) {
    kl_free(key.p);
    return kl_error(ctx, KILN_NOMEM, "call: out of memory");
  }
  kiln_status st = compile_step(ctx, g, &key, true, &e->code_general, &e->fn_general, t, out_hit);
  kl_free(key.p);
  if (st != KILN_OK) return st;
  *out_code = e->code_general;
  *out_fn = e->fn_general;
  return KILN_OK;
}

void kl_cache_release(kiln_ctx *ctx, struct kl_jit_code *code) {
  for (int i = 0; i < ctx->n_cache; i++) {
    kl_cache_entry *e = ctx->cache[i];
    if (e->code != code) continue;
    if (--e->refs > 0) return;
    if (e->code_general) kl_backend_code_free(e->code_general);
    kl_backend_code_free(e->code);
    kl_free(e->key);
    kl_free(e);
    ctx->cache[i] = ctx->cache[--ctx->n_cache];
    return;
  }
}

void kl_cache_free(kiln_ctx *ctx) {
  for (int i = 0; i < ctx->n_cache; i++) {
    if (ctx->cache[i]->code_general) kl_backend_code_free(ctx->cache[i]->code_general);
    kl_backend_code_free(ctx->cache[i]->code);
    kl_free(ctx->cache[i]->key);
    kl_free(ctx->cache[i]);
  }
  kl_free(ctx->cache);
  ctx->cache = NULL;
  ctx->n_cache = ctx->cap_cache = 0;
}
