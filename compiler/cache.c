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
*/
#include "compiler/function.h"

#include <stdio.h>
#include <string.h>

typedef struct kl_cache_entry {
  uint64_t hash;
  unsigned char *key;
  size_t key_len;
  struct kl_jit_code *code;
  void *fn;
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
    if (kl_ops[v->op].kind == KL_INDEX) { /* slices, axis, classes: the full text */
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

static uint64_t fnv1a(const unsigned char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

kiln_status kl_cache_compile(kiln_ctx *ctx, const kl_fgraph *g, struct kl_jit_code **out_code,
                             void **out_fn, double *out_secs, bool *out_hit) {
  kbuf key = {0};
  *out_hit = false;
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
      *out_secs = 0;
      *out_hit = true;
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
  char sym[64];
  snprintf(sym, sizeof sym, "kiln_step_%d", ctx->n_funcs_made++);
  kiln_status st = kl_backend_compile(ctx, g, sym, &e->code, &e->fn, out_secs);
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

void kl_cache_release(kiln_ctx *ctx, struct kl_jit_code *code) {
  for (int i = 0; i < ctx->n_cache; i++) {
    kl_cache_entry *e = ctx->cache[i];
    if (e->code != code) continue;
    if (--e->refs > 0) return;
    kl_backend_code_free(e->code);
    kl_free(e->key);
    kl_free(e);
    ctx->cache[i] = ctx->cache[--ctx->n_cache];
    return;
  }
}

void kl_cache_free(kiln_ctx *ctx) {
  for (int i = 0; i < ctx->n_cache; i++) {
    kl_backend_code_free(ctx->cache[i]->code);
    kl_free(ctx->cache[i]->key);
    kl_free(ctx->cache[i]);
  }
  kl_free(ctx->cache);
  ctx->cache = NULL;
  ctx->n_cache = ctx->cap_cache = 0;
}
