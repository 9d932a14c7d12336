/*
** function.c -- kiln_function_new: checks the user's inputs, outputs and
** updates, collects the function graph, plans buffers and shapes, and hands
** the graph to the LLVM backend. Also kiln_call and kiln_function_dump.
**
** Buffers: inputs, shared variables and non-scalar constants are read where
** they live. Each output has its own buffer, and the node computing it
** writes there directly; every other computed node gets a workspace slot.
** An update's new value is read after the step from the buffer that holds
** it, except a shared variable's own storage (commits would see a new
** value), so leaves that are update values are first copied to a slot.
*/
#include "compiler/function.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kiln_status fg_error(kiln_ctx *ctx, kiln_status st, const char *msg) {
  return kl_error(ctx, st, "%s", msg);
}

/* -------------------------------------------------------------- checking */

static kiln_status check_node(kiln_ctx *ctx, kiln_node *v, const char *what, int i) {
  if (!v) {
    if (ctx->status != KILN_OK) return ctx->status; /* the builder's error explains it */
    return kl_error(ctx, KILN_MISUSE, "function: %s %d is NULL", what, i);
  }
  if (!kl_node_ok(v) || v->ctx != ctx)
    return kl_error(ctx, KILN_MISUSE, "function: %s %d is not a node of this context", what, i);
  return KILN_OK;
}

static kiln_status check_args(kiln_ctx *ctx, int n_in, kiln_node *const *in, int n_out,
                              kiln_node *const *out, int n_upd, const kiln_update *upd) {
  char la[256], lb[256];
  if (n_in < 0 || n_out < 0 || n_upd < 0 || (n_in && !in) || (n_out && !out) || (n_upd && !upd))
    return kl_error(ctx, KILN_MISUSE, "function: bad counts or NULL arrays");
  kiln_status st;
  for (int i = 0; i < n_in; i++) {
    if ((st = check_node(ctx, in[i], "input", i))) return st;
    if (in[i]->op != KL_OP_INPUT)
      return kl_error(ctx, KILN_MISUSE, "function: input %d, %s, is not a kiln_input", i,
                      kl_node_label(in[i], la, sizeof la));
    for (int j = 0; j < i; j++)
      if (in[j] == in[i])
        return kl_error(ctx, KILN_MISUSE, "function: %s is listed twice among the inputs",
                        kl_node_label(in[i], la, sizeof la));
  }
  for (int i = 0; i < n_out; i++)
    if ((st = check_node(ctx, out[i], "output", i))) return st;
  for (int u = 0; u < n_upd; u++) {
    if ((st = check_node(ctx, upd[u].shared, "update variable", u))) return st;
    if ((st = check_node(ctx, upd[u].value, "update value", u))) return st;
    kiln_node *s = upd[u].shared, *v = upd[u].value;
    if (s->op != KL_OP_SHARED)
      return kl_error(ctx, KILN_MISUSE, "function: update %d targets %s, not a shared variable", u,
                      kl_node_label(s, la, sizeof la));
    for (int j = 0; j < u; j++)
      if (upd[j].shared == s)
        return kl_error(ctx, KILN_MISUSE, "function: %s is updated twice",
                        kl_node_label(s, la, sizeof la));
    char ta[200], tb[200];
    kl_type vt = v->type;
    vt.weak = false;
    bool same = vt.dtype == s->type.dtype && vt.rank == s->type.rank, dims_ok = true;
    for (int d = 0; same && dims_ok && d < vt.rank; d++)
      dims_ok = vt.dims[d] == KILN_DYN || vt.dims[d] == s->type.dims[d];
    if (!same || !dims_ok) /* dtype/rank: a type error; static sizes: a shape error */
      return kl_error(ctx, same ? KILN_SHAPE : KILN_TYPE,
                      "function: update %d: %s has type %s but its new value %s has type %s", u,
                      kl_node_label(s, la, sizeof la), kl_type_str(&s->type, ta, sizeof ta),
                      kl_node_label(v, lb, sizeof lb), kl_type_str(&v->type, tb, sizeof tb));
  }
  return KILN_OK;
}

/* ------------------------------------------------------ the function graph */

static void fgraph_free(kl_fgraph *g) {
  kl_free(g->nodes);
  kl_free(g->home);
  kl_free(g->local);
  kl_free(g->copies);
}

static kiln_status collect(kl_fgraph *g, int n_in, kiln_node *const *in, int n_out,
                           kiln_node *const *out, int n_upd, const kiln_update *upd) {
  kiln_ctx *ctx = g->ctx;
  uint32_t N = ctx->n_nodes;
  g->local = kl_malloc(N * sizeof *g->local);
  bool *mark = kl_calloc(N, sizeof *mark);
  if (!g->local || !mark) {
    kl_free(mark);
    return fg_error(ctx, KILN_NOMEM, "function: out of memory");
  }
  for (int i = 0; i < n_out; i++) mark[out[i]->id] = true;
  for (int u = 0; u < n_upd; u++) mark[upd[u].value->id] = true;
  int n = 0;
  for (uint32_t id = N; id-- > 0;)
    if (mark[id]) {
      n++;
      kiln_node *v = ctx->nodes[id];
      for (int k = 0; k < v->n_in; k++) mark[v->in[k]->id] = true;
    }
  g->nodes = kl_malloc((n ? n : 1) * sizeof *g->nodes);
  if (!g->nodes) {
    kl_free(mark);
    return fg_error(ctx, KILN_NOMEM, "function: out of memory");
  }
  g->n = 0;
  for (uint32_t id = 0; id < N; id++) {
    g->local[id] = -1;
    if (!mark[id]) continue;
    g->local[id] = g->n;
    g->nodes[g->n++] = ctx->nodes[id];
  }
  kl_free(mark);
  /* every input the graph reads must be one of the function's inputs */
  for (int i = 0; i < g->n; i++) {
    kiln_node *v = g->nodes[i];
    if (v->op != KL_OP_INPUT) continue;
    bool listed = false;
    for (int j = 0; j < n_in && !listed; j++) listed = in[j] == v;
    if (!listed) {
      char lb[256];
      return kl_error(ctx, KILN_MISUSE,
                      "function: the outputs depend on %s, which is not among the inputs",
                      kl_node_label(v, lb, sizeof lb));
    }
  }
  return KILN_OK;
}

/* ------------------------------------------------------------ the plan */

static int add_buf(kl_plan *p, kl_buf_kind kind, int dtype, int node, int src) {
  kl_buf *b = &p->bufs[p->n_bufs];
  memset(b, 0, sizeof *b);
  b->kind = (uint8_t)kind;
  b->dtype = (uint8_t)dtype;
  b->node = node;
  b->src = src;
  return p->n_bufs++;
}

static kl_shape_kind shape_kind(const kiln_node *v) {
  switch (kl_ops[v->op].kind) {
  case KL_LEAF: return v->op == KL_OP_INPUT ? KL_SH_INPUT : KL_SH_FIXED;
  case KL_ELEM: return KL_SH_ELEM;
  case KL_BCAST: return KL_SH_BCAST;
  case KL_REDUCE: return KL_SH_REDUCE;
  case KL_LIKE: return KL_SH_LIKE;
  case KL_DOT: return KL_SH_DOT;
  case KL_COUNT: return KL_SH_SCALAR;
  }
  return KL_SH_SCALAR;
}

static kiln_status make_plan(kl_fgraph *g, int n_in, kiln_node *const *in, int n_out,
                             kiln_node *const *out, int n_upd, const kiln_update *upd) {
  kiln_ctx *ctx = g->ctx;
  kl_plan *p = kl_calloc(1, sizeof *p);
  g->plan = p;
  if (!p) return fg_error(ctx, KILN_NOMEM, "function: out of memory");
  int max_bufs = g->n + n_out + n_upd;
  p->n_nodes = g->n;
  p->shape = kl_calloc(g->n ? g->n : 1, sizeof *p->shape);
  p->bufs = kl_calloc(max_bufs ? max_bufs : 1, sizeof *p->bufs);
  p->inputs = kl_calloc(n_in ? n_in : 1, sizeof *p->inputs);
  p->output_node = kl_calloc(n_out ? n_out : 1, sizeof *p->output_node);
  p->outputs = kl_calloc(n_out ? n_out : 1, sizeof *p->outputs);
  p->updates = kl_calloc(n_upd ? n_upd : 1, sizeof *p->updates);
  g->home = kl_malloc((g->n ? g->n : 1) * sizeof *g->home);
  g->copies = kl_calloc(n_out + n_upd + 1, sizeof *g->copies);
  if (!p->shape || !p->bufs || !p->inputs || !p->output_node || !p->outputs || !p->updates ||
      !g->home || !g->copies)
    return fg_error(ctx, KILN_NOMEM, "function: out of memory");
  p->n_outputs = n_out; /* so kl_plan_free releases what was made */
  p->n_inputs = n_in;
  p->n_updates = n_upd;
  char lb[256];

  /* shape program */
  int dims = 0;
  for (int i = 0; i < g->n; i++) {
    kiln_node *v = g->nodes[i];
    kl_shape_op *op = &p->shape[i];
    op->kind = (uint8_t)shape_kind(v);
    op->rank = v->type.rank;
    op->n_in = (uint8_t)v->n_in;
    op->mask = v->p.axes;
    op->flags = (uint8_t)((v->p.ta ? 1 : 0) | (v->p.tb ? 2 : 0));
    for (int k = 0; k < v->n_in && k < 3; k++) op->in[k] = kl_fg_in(g, v, k);
    for (int d = 0; d < KILN_MAX_RANK; d++) op->fixed[d] = d < v->type.rank ? v->type.dims[d] : KILN_DYN;
    op->dims_base = dims;
    dims += v->type.rank;
    op->opname = kl_ops[v->op].name;
    op->src = -1;
    if (!(op->label = kl_strdup(kl_node_label(v, lb, sizeof lb))))
      return fg_error(ctx, KILN_NOMEM, "function: out of memory");
    if (v->op == KL_OP_INPUT)
      for (int j = 0; j < n_in; j++)
        if (in[j] == v) op->src = j;
  }
  p->n_dims = dims;
  p->dims = kl_calloc(dims ? dims : 1, sizeof *p->dims);
  if (!p->dims) return fg_error(ctx, KILN_NOMEM, "function: out of memory");

  for (int j = 0; j < n_in; j++) {
    kl_input_spec *s = &p->inputs[j];
    s->dtype = in[j]->type.dtype;
    s->rank = in[j]->type.rank;
    memcpy(s->dims, in[j]->type.dims, sizeof s->dims);
    if (!(s->label = kl_strdup(kl_node_label(in[j], lb, sizeof lb))))
      return fg_error(ctx, KILN_NOMEM, "function: out of memory");
  }

  /* buffers of leaves */
  for (int i = 0; i < g->n; i++) {
    kiln_node *v = g->nodes[i];
    g->home[i] = -1;
    if (v->op == KL_OP_INPUT) {
      g->home[i] = add_buf(p, KL_BUF_INPUT, v->type.dtype, i, p->shape[i].src);
    } else if (v->op == KL_OP_SHARED) {
      g->home[i] = add_buf(p, KL_BUF_SHARED, v->type.dtype, i, -1);
      p->bufs[g->home[i]].shared = v->value;
    } else if (v->op == KL_OP_CONST && v->type.rank > 0) {
      int b = add_buf(p, KL_BUF_CONST, v->type.dtype, i, -1);
      size_t bytes = (size_t)kl_type_static_size(&v->type) * kiln_dtype_size(v->type.dtype);
      if (!(p->bufs[b].data = kl_aligned_alloc(bytes)))
        return fg_error(ctx, KILN_NOMEM, "function: out of memory");
      memcpy(p->bufs[b].data, v->data, bytes);
      g->home[i] = b;
    }
  }
  /* outputs: the first output of a computed node is its home */
  for (int k = 0; k < n_out; k++) {
    int i = g->local[out[k]->id];
    kl_tensor_init(&p->outputs[k], (kiln_dtype)out[k]->type.dtype);
    p->outputs[k].borrowed = true;
    p->output_node[k] = i;
    int b = add_buf(p, KL_BUF_OUTPUT, out[k]->type.dtype, i, k);
    bool leaf = kl_ops[out[k]->op].kind == KL_LEAF;
    if (!leaf && g->home[i] < 0)
      g->home[i] = b;
    else
      g->copies[g->n_copies++] = (kl_copy){i, b};
  }
  for (int i = 0; i < g->n; i++)
    if (g->home[i] < 0 && kl_ops[g->nodes[i]->op].kind != KL_LEAF)
      g->home[i] = add_buf(p, KL_BUF_WORK, g->nodes[i]->type.dtype, i, -1);
  for (int u = 0; u < n_upd; u++) {
    int i = g->local[upd[u].value->id];
    kl_update_spec *s = &p->updates[u];
    s->target = upd[u].shared->value;
    s->node = i;
    if (!(s->label = kl_strdup(kl_node_label(upd[u].shared, lb, sizeof lb))))
      return fg_error(ctx, KILN_NOMEM, "function: out of memory");
    if (kl_ops[upd[u].value->op].kind == KL_LEAF) {
      s->buf = add_buf(p, KL_BUF_WORK, upd[u].value->type.dtype, i, -1);
      g->copies[g->n_copies++] = (kl_copy){i, s->buf};
    } else {
      s->buf = g->home[i];
    }
  }
  p->ptrs = kl_calloc(p->n_bufs ? p->n_bufs : 1, sizeof *p->ptrs);
  p->offsets = kl_calloc(p->n_bufs ? p->n_bufs : 1, sizeof *p->offsets);
  if (!p->ptrs || !p->offsets) return fg_error(ctx, KILN_NOMEM, "function: out of memory");
  return KILN_OK;
}

/* ------------------------------------------------------------- dumping */

typedef struct sbuf {
  char *s;
  size_t len, cap;
  bool oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (b->s && b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap ? b->cap * 2 : 1024;
    while (cap < b->len + (size_t)n + 1) cap *= 2;
    char *s = kl_realloc(b->s, cap);
    if (!s) {
      b->oom = true;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
}

char *kl_fgraph_text(const kl_fgraph *g) {
  sbuf b = {0};
  char ty[200];
  for (int i = 0; i < g->n; i++) {
    const kiln_node *v = g->nodes[i];
    sb_printf(&b, "%%%d = %s", i, kl_ops[v->op].name);
    if (v->op == KL_OP_CAST) sb_printf(&b, "{%s}", kiln_dtype_name(v->type.dtype));
    if (kl_ops[v->op].kind == KL_REDUCE || kl_ops[v->op].kind == KL_BCAST ||
        kl_ops[v->op].kind == KL_COUNT)
      sb_printf(&b, "{axes=0x%x}", v->p.axes);
    if (v->op == KL_OP_DOT && (v->p.ta || v->p.tb))
      sb_printf(&b, "{%s%s}", v->p.ta ? "ta" : "", v->p.tb ? "tb" : "");
    if (v->op == KL_OP_CONST && v->type.rank == 0) {
      char num[40];
      if (kl_dtype_is_float((kiln_dtype)v->type.dtype))
        kiln_format_double(kl_load_f64((kiln_dtype)v->type.dtype, v->data, 0), num, sizeof num);
      else
        snprintf(num, sizeof num, "%lld", (long long)kl_load_i64((kiln_dtype)v->type.dtype, v->data, 0));
      sb_printf(&b, "{%s}", num);
    }
    sb_printf(&b, "(");
    for (int k = 0; k < v->n_in; k++) sb_printf(&b, "%s%%%d", k ? ", " : "", kl_fg_in(g, v, k));
    sb_printf(&b, ") : %s", kl_type_str(&v->type, ty, sizeof ty));
    if (v->name) sb_printf(&b, " '%s'", v->name);
    const char *f = v->file ? strrchr(v->file, '/') : NULL;
    sb_printf(&b, "  @ %s:%d", f ? f + 1 : v->file ? v->file : "?", v->line);
    if (v->origin) sb_printf(&b, "  [%s]", v->origin);
    sb_printf(&b, "\n");
  }
  if (b.oom) {
    kl_free(b.s);
    return NULL;
  }
  if (!b.s) return kl_strdup("");
  return b.s;
}

/* ------------------------------------------------------------ public API */

kiln_function *kiln_function_new(kiln_ctx *ctx, const char *name, int n_inputs,
                                 kiln_node *const *inputs, int n_outputs,
                                 kiln_node *const *outputs, int n_updates,
                                 const kiln_update *updates) {
  if (!kl_ctx_ok(ctx)) return NULL;
  if (check_args(ctx, n_inputs, inputs, n_outputs, outputs, n_updates, updates)) return NULL;
  kl_fgraph g = {.ctx = ctx};
  kiln_function *f = NULL;
  kiln_status st = collect(&g, n_inputs, inputs, n_outputs, outputs, n_updates, updates);
  if (!st) st = make_plan(&g, n_inputs, inputs, n_outputs, outputs, n_updates, updates);
  if (!st && ctx->n_fns == ctx->cap_fns) {
    int cap = ctx->cap_fns ? ctx->cap_fns * 2 : 8;
    kiln_function **nf = kl_realloc(ctx->fns, cap * sizeof *nf);
    if (!nf)
      st = fg_error(ctx, KILN_NOMEM, "function: out of memory");
    else {
      ctx->fns = nf;
      ctx->cap_fns = cap;
    }
  }
  if (!st) {
    f = kl_calloc(1, sizeof *f);
    if (f) {
      f->ctx = ctx;
      f->name = kl_strdup(name ? name : "f");
      f->graph_text = kl_fgraph_text(&g);
    }
    if (!f || !f->name || !f->graph_text) st = fg_error(ctx, KILN_NOMEM, "function: out of memory");
  }
  if (!st) {
    char sym[64];
    snprintf(sym, sizeof sym, "kiln_step_%d", ctx->n_funcs_made++);
    void *fn = NULL;
    st = kl_backend_compile(ctx, &g, sym, &f->code, &fn);
    g.plan->step = (kl_step_fn)fn;
  }
  if (st) {
    if (f) {
      kl_free(f->name);
      kl_free(f->graph_text);
      kl_free(f);
    }
    kl_plan_free(g.plan);
    fgraph_free(&g);
    return NULL;
  }
  f->plan = g.plan;
  f->magic = KL_MAGIC_FN;
  fgraph_free(&g);
  ctx->fns[ctx->n_fns++] = f;
  kiln_clear_error(ctx);
  return f;
}

static bool fn_ok(const kiln_function *f) {
  return f && f->magic == KL_MAGIC_FN && kl_ctx_ok(f->ctx);
}

void kiln_function_free(kiln_function *f) {
  if (!fn_ok(f)) return;
  kiln_ctx *ctx = f->ctx;
  for (int i = 0; i < ctx->n_fns; i++)
    if (ctx->fns[i] == f) {
      ctx->fns[i] = ctx->fns[--ctx->n_fns];
      break;
    }
  kl_backend_code_free(f->code);
  kl_plan_free(f->plan);
  kl_free(f->name);
  kl_free(f->graph_text);
  f->magic = 0;
  kl_free(f);
}

kiln_status kiln_call(kiln_function *f, const kiln_tensor *const *inputs,
                      const kiln_tensor **outputs) {
  if (!fn_ok(f)) return KILN_MISUSE;
  char err[1024];
  kiln_status st = kl_plan_run(f->plan, inputs, err, sizeof err);
  if (st != KILN_OK) return kl_error(f->ctx, st, "%s", err);
  kiln_clear_error(f->ctx);
  if (outputs)
    for (int k = 0; k < f->plan->n_outputs; k++) outputs[k] = &f->plan->outputs[k];
  return KILN_OK;
}

int kiln_function_n_inputs(const kiln_function *f) { return fn_ok(f) ? f->plan->n_inputs : -1; }
int kiln_function_n_outputs(const kiln_function *f) { return fn_ok(f) ? f->plan->n_outputs : -1; }

kiln_status kiln_function_dump(const kiln_function *f, kiln_stage stage, FILE *out) {
  if (!fn_ok(f)) return KILN_MISUSE;
  if (!out || (unsigned)stage >= KILN_N_STAGES)
    return kl_error(f->ctx, KILN_MISUSE, "function_dump: bad stage or NULL stream");
  const char *text = f->graph_text;
  if (stage != KILN_STAGE_GRAPH) {
    kiln_status st = KILN_OK;
    char err[512] = "";
    text = kl_backend_text(f->code, stage, &st, err, sizeof err);
    if (!text) return kl_error(f->ctx, st ? st : KILN_LLVM, "function_dump: %s", err);
  }
  if (fputs(text, out) < 0) return kl_error(f->ctx, KILN_ERROR, "function_dump: write failed");
  return KILN_OK;
}
