/*
** ctx.c -- contexts, their arena and error state, and the leaves of a
** graph: inputs, shared variables, constants and weak literals.
**
** Errors follow SQLite: each context holds one status and one message.
** Builders return NULL on error; a builder given a NULL input returns NULL
** without touching the message, so the first error is the one reported.
*/
#include "compiler/graph.h"
#include "compiler/function.h"
#include "runtime/pool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ arena */

struct kl_chunk {
  struct kl_chunk *next;
  size_t used, cap;
  _Alignas(16) unsigned char mem[];
};

void *kl_arena_alloc(kl_arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  struct kl_chunk *c = a->head;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > 16384 ? n : 16384;
    c = kl_malloc(sizeof *c + cap);
    if (!c) return NULL;
    c->next = a->head;
    c->used = 0;
    c->cap = cap;
    a->head = c;
  }
  void *p = c->mem + c->used;
  c->used += n;
  memset(p, 0, n);
  return p;
}

void kl_arena_free(kl_arena *a) {
  struct kl_chunk *c = a->head;
  while (c) {
    struct kl_chunk *next = c->next;
    kl_free(c);
    c = next;
  }
  a->head = NULL;
}

char *kl_arena_strdup(kl_arena *a, const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = kl_arena_alloc(a, n);
  if (d) memcpy(d, s, n);
  return d;
}

/* ---------------------------------------------------------------- context */

const char *kiln_version(void) { return KILN_VERSION; }

const char *kiln_status_str(kiln_status s) {
  static const char *const names[KILN_N_STATUS] = {"ok",          "error",       "out of memory",
                                                   "misuse",      "shape error", "type error",
                                                   "no gradient", "LLVM error",  "internal error"};
  return (unsigned)s < KILN_N_STATUS ? names[s] : "unknown status";
}

/* The pool of n threads, or none for one. On failure the context keeps
** its pool and the message says why. */
static kiln_status set_threads(kiln_ctx *ctx, int n) {
  if (n == kl_pool_threads(ctx->pool)) return KILN_OK;
  kl_pool *pool = NULL;
  if (n > 1) {
    char err[256];
    kiln_status st = kl_pool_new(n, &pool, err, sizeof err);
    if (st != KILN_OK) return kl_error(ctx, st, "set_threads: %s", err);
  }
  kl_pool_free(ctx->pool);
  ctx->pool = pool;
  for (int i = 0; i < ctx->n_fns; i++) /* their plans hold the pool, not the context */
    ctx->fns[i]->plan->pool = pool ? pool : kl_pool_serial;
  return KILN_OK;
}

kiln_ctx *kiln_ctx_new(void) {
  kiln_ctx *ctx = kl_calloc(1, sizeof *ctx);
  if (!ctx) return NULL;
  ctx->magic = KL_MAGIC_CTX;
  /* KILN_THREADS=n: the default thread count; an unusable value, or a pool
  ** that cannot be made, leaves one thread (a constructor has no status) */
  const char *env = getenv("KILN_THREADS");
  if (env && *env) {
    char *end;
    long n = strtol(env, &end, 10);
    if (*end == '\0' && n > 1 && n <= KL_POOL_MAX_THREADS) {
      set_threads(ctx, (int)n);
      kiln_clear_error(ctx);
    }
  }
  return ctx;
}

kiln_status kiln_ctx_set_threads(kiln_ctx *ctx, int n) {
  if (!kl_ctx_ok(ctx)) return KILN_MISUSE;
  if (n < 1 || n > KL_POOL_MAX_THREADS)
    return kl_error(ctx, KILN_MISUSE, "set_threads: %d threads (must be 1 to %d)", n,
                    KL_POOL_MAX_THREADS);
  return set_threads(ctx, n);
}

int kiln_ctx_threads(const kiln_ctx *ctx) {
  return kl_ctx_ok(ctx) ? kl_pool_threads(ctx->pool) : -1;
}

kiln_status kiln_ctx_set_compile_threads(kiln_ctx *ctx, int n) {
  if (!kl_ctx_ok(ctx)) return KILN_MISUSE;
  if (n < 0 || n > KILN_MAX_COMPILE_THREADS)
    return kl_error(ctx, KILN_MISUSE, "set_compile_threads: %d threads (must be 0 to %d)", n,
                    KILN_MAX_COMPILE_THREADS);
  ctx->compile_threads = n;
  return KILN_OK;
}

int kiln_ctx_compile_threads(const kiln_ctx *ctx) {
  return kl_ctx_ok(ctx) ? ctx->compile_threads : -1;
}

void kiln_ctx_free(kiln_ctx *ctx) {
  if (!kl_ctx_ok(ctx)) return;
  while (ctx->n_fns > 0)
    kiln_function_free(ctx->fns[ctx->n_fns - 1]);
  kl_free(ctx->fns);
  kl_cache_free(ctx);
  kl_ctx_jit_free(ctx);
  kl_pool_free(ctx->pool);
  for (int i = 0; i < ctx->n_shared; i++) {
    kl_tensor_release(ctx->shared[i]);
    kl_free(ctx->shared[i]);
  }
  kl_free(ctx->shared);
  for (uint32_t i = 0; i < ctx->n_nodes; i++)
    ctx->nodes[i]->magic = 0;
  kl_free(ctx->nodes);
  kl_arena_free(&ctx->arena);
  ctx->magic = 0;
  kl_free(ctx);
}

bool kl_node_ok(const kiln_node *v) { return v && v->magic == KL_MAGIC_NODE && kl_ctx_ok(v->ctx); }

kiln_status kl_error(kiln_ctx *ctx, kiln_status st, const char *fmt, ...) {
  if (!kl_ctx_ok(ctx)) return st;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
  va_end(ap);
  ctx->status = st;
  ctx->n_errors++;
  return st;
}

const char *kiln_errmsg(const kiln_ctx *ctx) {
  if (!ctx) return "NULL context";
  if (!kl_ctx_ok(ctx)) return "not a Kiln context (freed or foreign)";
  return ctx->status == KILN_OK ? "not an error" : ctx->msg;
}

kiln_status kiln_errcode(const kiln_ctx *ctx) {
  if (!kl_ctx_ok(ctx)) return KILN_MISUSE;
  return ctx->status;
}

void kiln_clear_error(kiln_ctx *ctx) {
  if (!kl_ctx_ok(ctx)) return;
  kl_ctx_clear(ctx);
}

/* ------------------------------------------------------------------ text */

const char *kl_basename(const char *file) {
  if (!file) return "?";
  const char *s = strrchr(file, '/');
  return s ? s + 1 : file;
}

const char *kl_node_label(const kiln_node *v, char *buf, size_t n) {
  if (!v) {
    snprintf(buf, n, "(null)");
    return buf;
  }
  const char *what = kl_ops[v->op].name;
  if (v->op == KL_OP_CAST && !v->name && v->in[0]->name) {
    /* a cast that promotion inserted: the user knows its operand */
    char inner[200];
    snprintf(buf, n, "%s as %s", kl_node_label(v->in[0], inner, sizeof inner),
             kiln_dtype_name(v->type.dtype));
    return buf;
  }
  if (v->name)
    snprintf(buf, n, "'%s' (%s built at %s:%d)", v->name, what, kl_basename(v->file), v->line);
  else
    snprintf(buf, n, "%s #%u (built at %s:%d)", what, v->id, kl_basename(v->file), v->line);
  return buf;
}

const char *kl_type_str(const kl_type *t, char *buf, size_t n) {
  char sh[160];
  kl_shape_str(sh, sizeof sh, t->rank, t->dims);
  snprintf(buf, n, "%s%s %s", t->weak ? "weak " : "", kiln_dtype_name(t->dtype), sh);
  return buf;
}

/* ------------------------------------------------------------------ nodes */

static bool push_node(kiln_ctx *ctx, kiln_node *v) {
  if (ctx->n_nodes == ctx->cap_nodes) {
    uint32_t cap = ctx->cap_nodes ? ctx->cap_nodes * 2 : 256;
    kiln_node **nn = kl_realloc(ctx->nodes, cap * sizeof *nn);
    if (!nn) return false;
    ctx->nodes = nn;
    ctx->cap_nodes = cap;
  }
  v->id = ctx->n_nodes;
  ctx->nodes[ctx->n_nodes++] = v;
  return true;
}

kiln_node *kl_node_new(kiln_ctx *ctx, kl_opcode op, int n_in, kiln_node *const *in,
                       const kl_type *type, const kl_params *p, const char *file, int line) {
  kiln_node *v = kl_arena_alloc(&ctx->arena, sizeof *v);
  kiln_node **ins = n_in ? kl_arena_alloc(&ctx->arena, n_in * sizeof *ins) : NULL;
  if (!v || (n_in && !ins) || !push_node(ctx, v)) {
    kl_error(ctx, KILN_NOMEM, "out of memory building %s", kl_ops[op].name);
    return NULL;
  }
  v->magic = KL_MAGIC_NODE;
  v->ctx = ctx;
  v->op = (uint16_t)op;
  v->n_in = (uint16_t)n_in;
  v->in = ins;
  for (int i = 0; i < n_in; i++)
    ins[i] = in[i];
  v->type = *type;
  if (p) v->p = *p;
  v->file = file;
  v->line = line;
  v->origin = ctx->origin;
  return v;
}

static bool check_shape_arg(kiln_ctx *ctx, const char *what, int rank, const int64_t *dims,
                            bool allow_dyn) {
  if (rank < 0 || rank > KILN_MAX_RANK) {
    kl_error(ctx, KILN_MISUSE, "%s: rank %d is outside 0..%d", what, rank, KILN_MAX_RANK);
    return false;
  }
  if (rank > 0 && !dims && !allow_dyn) {
    kl_error(ctx, KILN_MISUSE, "%s: shape is NULL for rank %d", what, rank);
    return false;
  }
  for (int i = 0; dims && i < rank; i++) {
    if (dims[i] < 0 && !(allow_dyn && dims[i] == KILN_DYN)) {
      kl_error(ctx, KILN_MISUSE, "%s: dimension %d has invalid size %lld", what, i,
               (long long)dims[i]);
      return false;
    }
  }
  return true;
}

static bool check_dtype_arg(kiln_ctx *ctx, const char *what, kiln_dtype dt) {
  if (kl_dtype_valid(dt)) return true;
  kl_error(ctx, KILN_MISUSE, "%s: invalid dtype %d", what, (int)dt);
  return false;
}

kiln_node *kiln_input_at(kiln_ctx *ctx, const char *name, kiln_dtype dtype, int rank,
                         const int64_t *dims, const char *file, int line) {
  if (!kl_ctx_ok(ctx)) return NULL;
  if (!check_dtype_arg(ctx, "input", dtype) || !check_shape_arg(ctx, "input", rank, dims, true))
    return NULL;
  kl_type t = {.dtype = dtype, .rank = (uint8_t)rank};
  for (int i = 0; i < rank; i++)
    t.dims[i] = dims ? dims[i] : KILN_DYN;
  kiln_node *v = kl_node_new(ctx, KL_OP_INPUT, 0, NULL, &t, NULL, file, line);
  if (v && name && !(v->name = kl_arena_strdup(&ctx->arena, name))) {
    kl_error(ctx, KILN_NOMEM, "out of memory naming an input");
    return NULL;
  }
  return v;
}

kiln_node *kl_const_new(kiln_ctx *ctx, const kl_type *type, const void *data, const char *file,
                        int line) {
  int64_t n = kl_shape_size(type->rank, type->dims, kiln_dtype_size(type->dtype));
  if (n < 0) {
    kl_error(ctx, KILN_MISUSE, "const: shape too large");
    return NULL;
  }
  size_t bytes = (size_t)n * kiln_dtype_size(type->dtype);
  void *copy = kl_arena_alloc(&ctx->arena, bytes ? bytes : 1);
  if (!copy) {
    kl_error(ctx, KILN_NOMEM, "out of memory copying a constant");
    return NULL;
  }
  if (data && bytes) memcpy(copy, data, bytes);
  kiln_node *v = kl_node_new(ctx, KL_OP_CONST, 0, NULL, type, NULL, file, line);
  if (v) v->data = copy;
  return v;
}

kiln_node *kiln_const_at(kiln_ctx *ctx, kiln_dtype dtype, int rank, const int64_t *shape,
                         const void *data, const char *file, int line) {
  if (!kl_ctx_ok(ctx)) return NULL;
  if (!check_dtype_arg(ctx, "const", dtype) || !check_shape_arg(ctx, "const", rank, shape, false))
    return NULL;
  kl_type t = {.dtype = dtype, .rank = (uint8_t)rank};
  for (int i = 0; i < rank; i++)
    t.dims[i] = shape[i];
  if (!data && kl_type_static_size(&t) > 0) {
    kl_error(ctx, KILN_MISUSE, "const: data is NULL");
    return NULL;
  }
  return kl_const_new(ctx, &t, data, file, line);
}

kiln_node *kl_scalar_const(kiln_ctx *ctx, kiln_dtype dt, double v, const char *file, int line) {
  kl_type t = {.dtype = dt};
  unsigned char buf[8];
  kl_convert(dt, buf, 0, KILN_FLOAT64, &v, 0);
  return kl_const_new(ctx, &t, buf, file, line);
}

kiln_node *kiln_scalar_at(kiln_ctx *ctx, kiln_dtype dtype, double v, const char *file, int line) {
  if (!kl_ctx_ok(ctx) || !check_dtype_arg(ctx, "scalar", dtype)) return NULL;
  return kl_scalar_const(ctx, dtype, v, file, line);
}

kiln_node *kiln_flit_at(kiln_ctx *ctx, double v, const char *file, int line) {
  if (!kl_ctx_ok(ctx)) return NULL;
  kl_type t = {.dtype = KILN_FLOAT64, .weak = true};
  return kl_const_new(ctx, &t, &v, file, line);
}

kiln_node *kiln_ilit_at(kiln_ctx *ctx, int64_t v, const char *file, int line) {
  if (!kl_ctx_ok(ctx)) return NULL;
  kl_type t = {.dtype = KILN_INT64, .weak = true};
  return kl_const_new(ctx, &t, &v, file, line);
}

/* ---------------------------------------------------------------- shared */

kiln_node *kiln_shared_at(kiln_ctx *ctx, const char *name, kiln_dtype dtype, int rank,
                          const int64_t *shape, const void *data, const char *file, int line) {
  if (!kl_ctx_ok(ctx)) return NULL;
  if (!check_dtype_arg(ctx, "shared", dtype) || !check_shape_arg(ctx, "shared", rank, shape, false))
    return NULL;
  if (ctx->n_shared == ctx->cap_shared) {
    int cap = ctx->cap_shared ? ctx->cap_shared * 2 : 16;
    kiln_tensor **ns = kl_realloc(ctx->shared, cap * sizeof *ns);
    if (!ns) goto nomem;
    ctx->shared = ns;
    ctx->cap_shared = cap;
  }
  kiln_tensor *val = kl_calloc(1, sizeof *val);
  if (!val) goto nomem;
  kl_tensor_init(val, dtype);
  if (kl_tensor_reshape(val, dtype, rank, shape) != KILN_OK) {
    kl_free(val);
    goto nomem;
  }
  val->borrowed = true;
  if (data) memcpy(val->data, data, kl_tensor_nbytes(val));
  kl_type t = {.dtype = dtype, .rank = (uint8_t)rank};
  for (int i = 0; i < rank; i++)
    t.dims[i] = shape[i];
  kiln_node *v = kl_node_new(ctx, KL_OP_SHARED, 0, NULL, &t, NULL, file, line);
  if (v && name) v->name = kl_arena_strdup(&ctx->arena, name);
  if (!v || (name && !v->name)) {
    kl_tensor_release(val);
    kl_free(val);
    goto nomem;
  }
  v->value = val;
  ctx->shared[ctx->n_shared++] = val;
  return v;
nomem:
  kl_error(ctx, KILN_NOMEM, "out of memory creating shared variable '%s'", name ? name : "");
  return NULL;
}

static bool shared_ok(const kiln_node *v) {
  if (!kl_node_ok(v)) return false;
  if (v->op != KL_OP_SHARED) {
    char lb[256];
    kl_error(v->ctx, KILN_MISUSE, "%s is not a shared variable", kl_node_label(v, lb, sizeof lb));
    return false;
  }
  return true;
}

const kiln_tensor *kiln_shared_value(const kiln_node *v) { return shared_ok(v) ? v->value : NULL; }

kiln_status kiln_shared_get(const kiln_node *v, void *out, size_t nbytes) {
  if (!shared_ok(v)) return KILN_MISUSE;
  size_t have = kl_tensor_nbytes(v->value);
  if (!out && nbytes) return kl_error(v->ctx, KILN_MISUSE, "shared_get: out is NULL");
  if (nbytes != have)
    return kl_error(v->ctx, KILN_SHAPE, "shared_get: '%s' holds %zu bytes, buffer has %zu",
                    v->name ? v->name : "?", have, nbytes);
  if (have) memcpy(out, v->value->data, have);
  return KILN_OK;
}

kiln_status kiln_shared_set(kiln_node *v, const kiln_tensor *t) {
  if (!shared_ok(v)) return KILN_MISUSE;
  if (!kl_tensor_ok(t)) return kl_error(v->ctx, KILN_MISUSE, "shared_set: not a tensor");
  char lb[256], a[160], b[160];
  if (t->dtype != v->value->dtype)
    return kl_error(v->ctx, KILN_TYPE, "shared_set: %s is %s, the value is %s",
                    kl_node_label(v, lb, sizeof lb), kiln_dtype_name(v->value->dtype),
                    kiln_dtype_name(t->dtype));
  bool same = t->rank == v->value->rank;
  for (int i = 0; same && i < t->rank; i++)
    same = t->shape[i] == v->value->shape[i];
  if (!same)
    return kl_error(v->ctx, KILN_SHAPE, "shared_set: %s has shape %s, the value has shape %s",
                    kl_node_label(v, lb, sizeof lb),
                    kl_shape_str(a, sizeof a, v->value->rank, v->value->shape),
                    kl_shape_str(b, sizeof b, t->rank, t->shape));
  if (t != v->value) memcpy(v->value->data, t->data, kl_tensor_nbytes(t));
  return KILN_OK;
}

/* ------------------------------------------------------------- accessors */

kiln_ctx *kiln_node_ctx(const kiln_node *v) { return kl_node_ok(v) ? v->ctx : NULL; }
kiln_dtype kiln_node_dtype(const kiln_node *v) {
  return kl_node_ok(v) ? (kiln_dtype)v->type.dtype : KILN_N_DTYPES;
}
int kiln_node_rank(const kiln_node *v) { return kl_node_ok(v) ? v->type.rank : -1; }
int64_t kiln_node_dim(const kiln_node *v, int i) {
  if (!kl_node_ok(v) || i < 0 || i >= v->type.rank) return -2;
  return v->type.dims[i];
}
const char *kiln_node_name(const kiln_node *v) { return kl_node_ok(v) ? v->name : NULL; }

kiln_node *kiln_name(kiln_node *v, const char *name) {
  if (!kl_node_ok(v)) return NULL;
  const char *copy = kl_arena_strdup(&v->ctx->arena, name);
  if (name && !copy) {
    kl_error(v->ctx, KILN_NOMEM, "out of memory naming a node");
    return NULL;
  }
  v->name = copy;
  return v;
}
