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
#include "compiler/passes/passes.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Adds node to a workspace slot's list of occupants. */
static bool slot_add(kl_buf *b, int node) {
  int32_t *nn = kl_realloc(b->nodes, (size_t)(b->n_nodes + 1) * sizeof *nn);
  if (!nn) return false;
  b->nodes = nn;
  b->nodes[b->n_nodes++] = node;
  if (b->n_nodes == 1) b->node = node;
  return true;
}

static int new_slot(kl_plan *p, int node) {
  int b = add_buf(p, KL_BUF_WORK, 0, node, -1);
  return slot_add(&p->bufs[b], node) ? b : -1;
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
  case KL_SHUFFLE: return KL_SH_SHUFFLE;
  case KL_RESHAPE: return KL_SH_RESHAPE;
  case KL_INDEX:
    switch (v->op) {
    case KL_OP_SLICE: return KL_SH_SLICE;
    case KL_OP_SLICE_INC: return KL_SH_SLICE_INC;
    case KL_OP_TAKE: return KL_SH_TAKE;
    case KL_OP_TAKE_INC: return KL_SH_TAKE_INC;
    case KL_OP_ONE_HOT: return KL_SH_ONEHOT;
    case KL_OP_CONCAT: return KL_SH_CONCAT;
    default: return KL_SH_PART;
    }
  }
  return KL_SH_SCALAR;
}

static int shared_buf(kl_fgraph *g, kiln_node *s) {
  kl_plan *p = g->plan;
  for (int b = 0; b < p->n_bufs; b++)
    if (p->bufs[b].kind == KL_BUF_SHARED && p->bufs[b].shared == s->value) return b;
  int b = add_buf(p, KL_BUF_SHARED, s->type.dtype, -1, -1);
  p->bufs[b].shared = s->value;
  return b;
}

#define NOMEM() fg_error(ctx, KILN_NOMEM, "function: out of memory")

static kiln_status make_plan(kl_fgraph *g) {
  kiln_ctx *ctx = g->ctx;
  kl_plan *p = kl_calloc(1, sizeof *p);
  g->plan = p;
  if (!p) return NOMEM();
  int n = g->n, n_in = g->n_inputs, n_out = g->n_outputs, n_upd = g->n_updates;
  int max_bufs = n + n_out + 2 * n_upd;
  p->n_nodes = n;
  p->shape = kl_calloc(n ? n : 1, sizeof *p->shape);
  p->shape_dtype = kl_calloc(n ? n : 1, 1);
  p->bufs = kl_calloc(max_bufs ? max_bufs : 1, sizeof *p->bufs);
  p->inputs = kl_calloc(n_in ? n_in : 1, sizeof *p->inputs);
  p->output_node = kl_calloc(n_out ? n_out : 1, sizeof *p->output_node);
  p->outputs = kl_calloc(n_out ? n_out : 1, sizeof *p->outputs);
  p->updates = kl_calloc(n_upd ? n_upd : 1, sizeof *p->updates);
  g->home = kl_malloc((n ? n : 1) * sizeof *g->home);
  g->copies = kl_calloc(n_out + n_upd + 1, sizeof *g->copies);
  if (!p->shape || !p->shape_dtype || !p->bufs || !p->inputs || !p->output_node || !p->outputs ||
      !p->updates || !g->home || !g->copies)
    return NOMEM();
  p->n_outputs = n_out; /* so kl_plan_free releases what was made */
  p->n_inputs = n_in;
  p->n_updates = n_upd;
  char lb[256];

  /* shape program */
  int dims = 0;
  for (int i = 0; i < n; i++) {
    kiln_node *v = g->nodes[i];
    kl_shape_op *op = &p->shape[i];
    op->kind = (uint8_t)shape_kind(v);
    op->rank = v->type.rank;
    op->n_in = (uint8_t)v->n_in;
    op->mask = v->p.axes;
    op->flags = (uint8_t)((v->p.ta ? 1 : 0) | (v->p.tb ? 2 : 0));
    if (v->op == KL_OP_OUTER) op->flags |= KL_SHF_OUTER;
    if (kl_ops[v->op].kind == KL_REDUCE)
      op->flags |= (uint8_t)((v->p.keepdims ? KL_SHF_KEEPDIMS : 0) |
                             (kl_reduce_needs_elements(v->op) ? KL_SHF_NONEMPTY : 0));
    if (kl_is_blocked_sum(v) && v->in[0]->type.rank > 0) op->flags |= KL_SHF_PARTIALS;
    for (int k = 0; k < v->n_in && k < 3; k++)
      op->in[k] = (int32_t)v->in[k]->id;
    memcpy(op->src_axis, v->p.src_axis, sizeof op->src_axis);
    for (int d = 0; d < KILN_MAX_RANK; d++)
      op->fixed[d] = d < v->type.rank ? v->type.dims[d] : KILN_DYN;
    op->dims_base = dims;
    dims += v->type.rank;
    if (kl_ops[v->op].kind == KL_INDEX) {
      /* indexing: the axis in mask, stack's operands in flags; a slice
      ** keeps its slices and, after its dims, the first index per axis */
      op->mask = (uint32_t)v->p.axis;
      op->flags = v->p.lacks;
      if (v->op == KL_OP_SLICE || v->op == KL_OP_SLICE_INC) {
        int sr = v->in[v->op == KL_OP_SLICE ? 0 : 1]->type.rank;
        if (!(op->slices = kl_malloc((size_t)(sr ? sr : 1) * sizeof *op->slices))) return NOMEM();
        memcpy(op->slices, v->p.slices, (size_t)sr * sizeof *op->slices);
        dims += sr;
      }
    }
    op->opname = kl_ops[v->op].name;
    op->src = -1;
    p->shape_dtype[i] = v->type.dtype;
    if (!(op->label = kl_strdup(kl_node_label(v, lb, sizeof lb)))) return NOMEM();
    if (v->op == KL_OP_INPUT)
      for (int j = 0; j < n_in; j++)
        if (g->inputs[j] == v) op->src = j;
  }
  p->n_dims = dims;
  p->dims = kl_calloc(dims ? dims : 1, sizeof *p->dims);
  if (!p->dims) return NOMEM();

  for (int j = 0; j < n_in; j++) {
    kl_input_spec *s = &p->inputs[j];
    s->dtype = g->inputs[j]->type.dtype;
    s->rank = g->inputs[j]->type.rank;
    memcpy(s->dims, g->inputs[j]->type.dims, sizeof s->dims);
    if (!(s->label = kl_strdup(kl_node_label(g->inputs[j], lb, sizeof lb)))) return NOMEM();
  }

  /* leaves are read where they live; rank-0 constants are inlined */
  for (int i = 0; i < n; i++) {
    kiln_node *v = g->nodes[i];
    g->home[i] = -1;
    if (v->op == KL_OP_INPUT) {
      g->home[i] = add_buf(p, KL_BUF_INPUT, v->type.dtype, i, p->shape[i].src);
    } else if (v->op == KL_OP_SHARED) {
      g->home[i] = shared_buf(g, v);
      p->bufs[g->home[i]].node = i;
    } else if (v->op == KL_OP_CONST && v->type.rank > 0) {
      int b = add_buf(p, KL_BUF_CONST, v->type.dtype, i, -1);
      size_t bytes = (size_t)kl_type_static_size(&v->type) * kiln_dtype_size(v->type.dtype);
      if (!(p->bufs[b].data = kl_aligned_alloc(bytes))) return NOMEM();
      memcpy(p->bufs[b].data, v->data, bytes);
      g->home[i] = b;
    }
  }
  /* outputs: the first output of a computed node is where it is stored */
  for (int k = 0; k < n_out; k++) {
    int i = (int)g->outputs[k]->id;
    kl_tensor_init(&p->outputs[k], (kiln_dtype)g->outputs[k]->type.dtype);
    p->outputs[k].borrowed = true;
    p->output_node[k] = i;
    int b = add_buf(p, KL_BUF_OUTPUT, g->outputs[k]->type.dtype, i, k);
    bool computed = g->sched[i] == KL_S_ROOT || g->sched[i] == KL_S_SCALAR;
    if (computed && g->home[i] < 0)
      g->home[i] = b;
    else
      g->copies[g->n_copies++] = (kl_copy){i, b};
  }
  for (int u = 0; u < n_upd; u++) {
    kiln_node *v = g->upd_value[u];
    int i = (int)v->id;
    kl_update_spec *s = &p->updates[u];
    s->target = g->upd_shared[u]->value;
    s->node = i;
    if (!(s->label = kl_strdup(kl_node_label(g->upd_shared[u], lb, sizeof lb)))) return NOMEM();
    if (g->inplace[i]) {
      g->home[i] = shared_buf(g, g->upd_shared[u]);
      s->buf = -1;
    } else if (g->sched[i] == KL_S_LEAF) {
      /* a commit must not read a variable another commit changed: copy first */
      if ((s->buf = new_slot(p, i)) < 0) return NOMEM();
      g->copies[g->n_copies++] = (kl_copy){i, s->buf};
    } else {
      if (g->home[i] < 0 && (g->home[i] = new_slot(p, i)) < 0) return NOMEM();
      s->buf = g->home[i];
    }
  }
  /* intermediate kernel results share workspace slots when their lives do
  ** not overlap: a value is live from its kernel to the last kernel reading it */
  int *last = kl_malloc((n ? n : 1) * sizeof *last);
  if (!last) return NOMEM();
  for (int i = n; i-- > 0;) {
    last[i] = i;
    for (int j = i + 1; j < n; j++)
      for (int k = 0; k < g->nodes[j]->n_in; k++)
        if (g->nodes[j]->in[k]->id == (uint32_t)i && kl_reads_value(g->nodes[j], k)) {
          int at = g->sched[j] == KL_S_FUSED ? last[j] : j; /* fused: read where evaluated */
          if (at > last[i]) last[i] = at;
        }
  }
  int *free_after = kl_malloc((max_bufs ? max_bufs : 1) * sizeof *free_after);
  if (!free_after) {
    kl_free(last);
    return NOMEM();
  }
  for (int i = 0; i < n; i++) {
    if (g->sched[i] != KL_S_ROOT || g->home[i] >= 0 || g->nodes[i]->type.rank == 0) continue;
    int b = -1;
    for (int c = 0; c < p->n_bufs && b < 0; c++)
      if (p->bufs[c].kind == KL_BUF_WORK && p->bufs[c].src == -2 && free_after[c] < i) b = c;
    if (b >= 0) {
      if (!slot_add(&p->bufs[b], i)) b = -1, i = n;
    } else if ((b = new_slot(p, i)) >= 0) {
      p->bufs[b].src = -2; /* reusable */
    }
    if (b < 0) {
      kl_free(free_after);
      kl_free(last);
      return NOMEM();
    }
    free_after[b] = last[i];
    g->home[i] = b;
  }
  kl_free(free_after);
  kl_free(last);
  p->ptrs = kl_calloc((size_t)p->n_bufs + 1, sizeof *p->ptrs); /* + the partials area */
  p->offsets = kl_calloc(p->n_bufs ? p->n_bufs : 1, sizeof *p->offsets);
  if (!p->ptrs || !p->offsets) return NOMEM();
  return KILN_OK;
}

/* The kernel plan as text (stage "plan"). */
static char *plan_text(const kl_fgraph *g) {
  static const char *const bufkind[] = {"input", "shared", "const", "output", "slot"};
  size_t cap = 4096, len = 0;
  char *s = kl_malloc(cap);
  if (!s) return NULL;
  s[0] = 0;
#define OUT(...)                                                                                   \
  do {                                                                                             \
    int w_ = snprintf(s + len, cap - len, __VA_ARGS__);                                            \
    while (w_ >= 0 && len + (size_t)w_ >= cap) {                                                   \
      char *ns_ = kl_realloc(s, cap * 2);                                                          \
      if (!ns_) {                                                                                  \
        kl_free(s);                                                                                \
        return NULL;                                                                               \
      }                                                                                            \
      s = ns_;                                                                                     \
      cap *= 2;                                                                                    \
      w_ = snprintf(s + len, cap - len, __VA_ARGS__);                                              \
    }                                                                                              \
    if (w_ > 0) len += (size_t)w_;                                                                 \
  } while (0)
  int kern = 0;
  char sh[160];
  for (int i = 0; i < g->n; i++) {
    const kiln_node *v = g->nodes[i];
    if (g->sched[i] == KL_S_SCALAR) {
      OUT("scalar   %%%d = %s%s%s%s\n", i, kl_ops[v->op].name, v->name ? " '" : "",
          v->name ? v->name : "", v->name ? "'" : "");
      continue;
    }
    if (g->sched[i] != KL_S_ROOT) continue;
    kl_opkind kd = kl_ops[v->op].kind;
    const kiln_node *space = (kd == KL_REDUCE || kd == KL_LIKE) ? v->in[0] : v;
    const char *what = kd == KL_REDUCE    ? "reduce"
                       : kd == KL_LIKE    ? "sum_like"
                       : kd == KL_DOT     ? "dot"
                       : kd == KL_RESHAPE ? "copy"
                       : kd == KL_INDEX   ? "indexing"
                                          : "elementwise";
    OUT("kernel %d: %%%d = %s%s%s%s, %s loop over %s", kern++, i, kl_ops[v->op].name,
        v->name ? " '" : "", v->name ? v->name : "", v->name ? "'" : "", what,
        kl_shape_str(sh, sizeof sh, space->type.rank, space->type.dims));
    /* the nodes it evaluates inline */
    bool any = false;
    for (int j = 0; j < i; j++) {
      if (g->sched[j] != KL_S_FUSED) continue;
      /* is j reached from i through fused nodes? */
      bool reach = false;
      int stack[64], sp = 0;
      stack[sp++] = i;
      while (sp > 0 && !reach) {
        const kiln_node *x = g->nodes[stack[--sp]];
        for (int k = 0; k < x->n_in; k++) {
          int y = (int)x->in[k]->id;
          if (!kl_reads_value(x, k)) continue;
          if (y == j)
            reach = true;
          else if (g->sched[y] == KL_S_FUSED && sp < 64)
            stack[sp++] = y;
        }
      }
      if (reach) {
        OUT("%s%%%d %s", any ? " " : "; fused: ", j, kl_ops[g->nodes[j]->op].name);
        any = true;
      }
    }
    if (g->home[i] < 0)
      OUT(" -> register\n");
    else if (g->inplace[i]) {
      const char *var = "?";
      for (int u = 0; u < g->n_updates; u++)
        if (g->upd_value[u] == v) var = g->upd_shared[u]->name ? g->upd_shared[u]->name : "?";
      OUT(" -> in place into '%s'\n", var);
    } else
      OUT(" -> buf %d (%s)\n", g->home[i], bufkind[g->plan->bufs[g->home[i]].kind]);
  }
  for (int c = 0; c < g->n_copies; c++)
    OUT("copy     %%%d -> buf %d\n", g->copies[c].node, g->copies[c].buf);
  for (int b = 0; b < g->plan->n_bufs; b++) {
    const kl_buf *bf = &g->plan->bufs[b];
    OUT("buf %d: %s", b, bufkind[bf->kind]);
    for (int j = 0; j < bf->n_nodes; j++)
      OUT("%s%%%d", j ? " " : " for ", bf->nodes[j]);
    OUT("\n");
  }
  for (int u = 0; u < g->n_updates; u++)
    OUT("update %s <- %%%u%s\n", g->plan->updates[u].label, g->upd_value[u]->id,
        g->plan->updates[u].buf < 0 ? " (in place)" : "");
#undef OUT
  return s;
}
/* ------------------------------------------------------------ public API */

/* ------------------------------------------------------------ dumping */

/* Writes every stage to $KILN_DUMP_DIR/<name>.<stage>. Dumping is a
** debugging aid: a failure to write is reported on stderr, not as an error
** of kiln_function_new. */
static void dump_to_dir(kiln_function *f, const char *dir) {
  for (int i = 0; i < f->log.n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s", dir, f->name, f->log.stages[i].name);
    FILE *out = fopen(path, "w");
    if (!out || fputs(f->log.stages[i].text, out) < 0)
      fprintf(stderr, "kiln: cannot write %s\n", path);
    if (out) fclose(out);
  }
  static const struct {
    kiln_stage stage;
    const char *suffix;
  } llvm_stages[] = {
      {KILN_STAGE_LLVM_IR, "ll"}, {KILN_STAGE_LLVM_OPT, "opt.ll"}, {KILN_STAGE_ASM, "s"}};
  for (size_t i = 0; i < sizeof llvm_stages / sizeof llvm_stages[0]; i++) {
    char path[4096], err[256];
    kiln_status st;
    snprintf(path, sizeof path, "%s/%s.%s", dir, f->name, llvm_stages[i].suffix);
    const char *text = kl_backend_text(f->code, llvm_stages[i].stage, &st, err, sizeof err);
    FILE *out = text ? fopen(path, "w") : NULL;
    if (!out || fputs(text, out) < 0) fprintf(stderr, "kiln: cannot write %s\n", path);
    if (out) fclose(out);
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void print_llvm_timing(const kl_times *t, int hit, double total_s);

/* KILN_TIMING set to something other than "" or "0". */
static bool timing_wanted(void) {
  const char *timing = getenv("KILN_TIMING");
  return timing && *timing && strcmp(timing, "0") != 0;
}

static void print_timing(const kiln_function *f, double graph_s, double plan_s, const kl_times *t,
                         int hit, double total_s) {
  fprintf(stderr, "kiln: timing of function '%s'\n", f->name);
  fprintf(stderr, "kiln:   %-16s %9.3f ms\n", "copy graph", graph_s * 1e3);
  for (int p = 0; p < f->log.n_passes; p++)
    if (f->log.pass_names[p])
      fprintf(stderr, "kiln:   pass %-11s %9.3f ms\n", f->log.pass_names[p],
              f->log.seconds[p] * 1e3);
  fprintf(stderr, "kiln:   %-16s %9.3f ms\n", "plan", plan_s * 1e3);
  print_llvm_timing(t, hit, total_s);
}

static void print_llvm_timing(const kl_times *t, int hit, double total_s) {
  fprintf(stderr, "kiln:   %-16s %9.3f ms%s\n", "LLVM + JIT", t->total * 1e3,
          hit == 1   ? " (in-memory cache hit)"
          : hit == 2 ? " (linked from KILN_CACHE_DIR)"
                     : "");
  if (hit == 0) {
    static const char *const what[] = {"JIT creation", "build IR", "verify + text", "LLVM passes",
                                       "codegen + link"};
    double v[] = {t->jit_new, t->lower, t->text, t->passes, t->codegen};
    for (int i = 0; i < 5; i++)
      fprintf(stderr, "kiln:     %-14s %9.3f ms\n", what[i], v[i] * 1e3);
  }
  fprintf(stderr, "kiln:   %-16s %9.3f ms\n", "total", total_s * 1e3);
}

/* ------------------------------------------------------------ public API */

kiln_function *kiln_function_new(kiln_ctx *ctx, const char *name, int n_inputs,
                                 kiln_node *const *inputs, int n_outputs, kiln_node *const *outputs,
                                 int n_updates, const kiln_update *updates) {
  return kiln_function_new_opts(ctx, name, n_inputs, inputs, n_outputs, outputs, n_updates, updates,
                                NULL);
}

kiln_function *kiln_function_new_opts(kiln_ctx *ctx, const char *name, int n_inputs,
                                      kiln_node *const *inputs, int n_outputs,
                                      kiln_node *const *outputs, int n_updates,
                                      const kiln_update *updates, const kiln_options *opts) {
  if (!kl_ctx_ok(ctx)) return NULL;
  kiln_options o = {.size = sizeof o};
  if (opts) {
    /* version 0.1.0's struct ended before no_stabilize; the fields it lacks stay zero */
    size_t v010 = offsetof(kiln_options, no_stabilize);
    if (opts->size != sizeof *opts && opts->size != v010) {
      kl_error(ctx, KILN_MISUSE, "function: kiln_options.size is %zu, expected %zu", opts->size,
               sizeof *opts);
      return NULL;
    }
    memcpy(&o, opts, opts->size);
    if (o.llvm_opt_level < 0 || o.llvm_opt_level > 3) {
      kl_error(ctx, KILN_MISUSE, "function: llvm_opt_level %d is outside 0..3", o.llvm_opt_level);
      return NULL;
    }
  }
  if (check_args(ctx, n_inputs, inputs, n_outputs, outputs, n_updates, updates)) return NULL;
  /* the givens rebuild the outputs and update values: work on copies of the lists */
  kiln_node **gout = NULL;
  kiln_update *gupd = NULL;
  if (o.n_givens != 0 || o.givens) {
    gout = kl_malloc((size_t)(n_outputs + 1) * sizeof *gout);
    gupd = kl_malloc((size_t)(n_updates + 1) * sizeof *gupd);
    if (!gout || !gupd) {
      kl_free(gout);
      kl_free(gupd);
      fg_error(ctx, KILN_NOMEM, "function: out of memory");
      return NULL;
    }
    if (n_outputs) memcpy(gout, outputs, (size_t)n_outputs * sizeof *gout);
    if (n_updates) memcpy(gupd, updates, (size_t)n_updates * sizeof *gupd);
    if (kl_givens_apply(ctx, o.n_givens, o.givens, n_outputs, gout, n_updates, gupd)) {
      kl_free(gout);
      kl_free(gupd);
      return NULL;
    }
    outputs = gout;
    updates = gupd;
  }
  double t0 = now();
  kl_fgraph g;
  kiln_function *f = kl_calloc(1, sizeof *f);
  kiln_status st = f ? KILN_OK : fg_error(ctx, KILN_NOMEM, "function: out of memory");
  if (!st) {
    f->ctx = ctx;
    if (!(f->name = kl_strdup(name ? name : "f")))
      st = fg_error(ctx, KILN_NOMEM, "function: out of memory");
  }
  if (!st)
    st = kl_fg_build(&g, ctx, n_inputs, inputs, n_outputs, outputs, n_updates, updates);
  else
    memset(&g, 0, sizeof g);
  kl_free(gout);
  kl_free(gupd);
  if (!st && kl_fg_sort(&g) != KILN_OK) st = ctx->status;
  if (!st && kl_log_add(&f->log, "graph", kl_fg_text(&g)) != KILN_OK)
    st = fg_error(ctx, KILN_NOMEM, "function: out of memory");
  double t1 = now();
  g.fast_math = o.fast_math != 0;
  g.no_optimize = o.no_optimize != 0;
  g.no_stabilize = o.no_stabilize != 0;
  g.llvm_opt_level = o.llvm_opt_level ? o.llvm_opt_level : 2;
  if (!st) st = kl_pipeline_run(&g, &f->log);
  double t2 = now();
  if (!st) st = make_plan(&g);
  if (!st && (kl_log_add(&f->log, "opt", kl_fg_text(&g)) != KILN_OK ||
              kl_log_add(&f->log, "plan", plan_text(&g)) != KILN_OK ||
              kl_log_add(&f->log, "dot", kl_fg_dot(&g, f->name)) != KILN_OK))
    st = fg_error(ctx, KILN_NOMEM, "function: out of memory");
  if (!st && !(f->graph = kl_malloc(sizeof *f->graph)))
    st = fg_error(ctx, KILN_NOMEM, "function: out of memory");
  if (!st && ctx->n_fns == ctx->cap_fns) {
    int cap = ctx->cap_fns ? ctx->cap_fns * 2 : 8;
    kiln_function **nf = kl_realloc(ctx->fns, (size_t)cap * sizeof *nf);
    if (!nf)
      st = fg_error(ctx, KILN_NOMEM, "function: out of memory");
    else {
      ctx->fns = nf;
      ctx->cap_fns = cap;
    }
  }
  double t3 = now();
  kl_times times = {0};
  int hit = 0;
  if (!st) {
    void *fn = NULL;
    st = kl_cache_compile(ctx, &g, &f->code, &fn, &times, &hit);
    g.plan->step = (kl_step_fn)fn;
    g.plan->pool = ctx->pool ? ctx->pool : kl_pool_serial; /* kiln_ctx_set_threads updates it */
  }
  if (st) {
    if (f) {
      kl_free(f->graph);
      kl_free(f->name);
      kl_log_free(&f->log);
      kl_free(f);
    }
    kl_plan_free(g.plan);
    kl_fg_free(&g);
    return NULL;
  }
  f->plan = g.plan;
  f->magic = KL_MAGIC_FN;
  *f->graph = g; /* kept for the general step (moved: nothing points at g itself) */
  ctx->fns[ctx->n_fns++] = f;
  const char *dir = getenv("KILN_DUMP_DIR");
  if (dir && *dir) dump_to_dir(f, dir);
  if (timing_wanted()) print_timing(f, t1 - t0, t3 - t2, &times, hit, now() - t0);
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
  kl_cache_release(ctx, f->code);
  kl_plan_free(f->plan);
  kl_fg_free(f->graph);
  kl_free(f->graph);
  kl_free(f->name);
  kl_log_free(&f->log);
  f->magic = 0;
  kl_free(f);
}

/* The first call with a dynamic size of 1 compiles the general step (or
** finds it in the cache); nothing has run yet, so a failure commits nothing. */
static kiln_status compile_general(kiln_function *f) {
  kl_times times = {0};
  int hit = 0;
  void *fn = NULL;
  double t0 = now();
  kiln_status st =
      kl_cache_compile_general(f->ctx, f->graph, f->code, &f->code_general, &fn, &times, &hit);
  if (st != KILN_OK) return st;
  f->plan->step_general = (kl_step_fn)fn;
  if (timing_wanted()) {
    fprintf(stderr, "kiln: the general step of '%s', for its first call with a dynamic size of 1\n",
            f->name);
    print_llvm_timing(&times, hit, now() - t0);
  }
  return KILN_OK;
}

kiln_status kiln_call(kiln_function *f, const kiln_tensor *const *inputs,
                      const kiln_tensor **outputs) {
  if (!fn_ok(f)) return KILN_MISUSE;
  char err[1024];
  kiln_status st = kl_plan_run(f->plan, inputs, err, sizeof err);
  if (st == KL_NEED_GENERAL) {
    if ((st = compile_general(f)) != KILN_OK) return st;
    st = kl_plan_run(f->plan, inputs, err, sizeof err);
  }
  if (st != KILN_OK) return kl_error(f->ctx, st, "%s", err);
  kl_ctx_clear(f->ctx);
  if (outputs)
    for (int k = 0; k < f->plan->n_outputs; k++)
      outputs[k] = &f->plan->outputs[k];
  return KILN_OK;
}

int kiln_function_n_inputs(const kiln_function *f) { return fn_ok(f) ? f->plan->n_inputs : -1; }
int kiln_function_n_outputs(const kiln_function *f) { return fn_ok(f) ? f->plan->n_outputs : -1; }

static const char *const stage_names[KILN_N_STAGES] = {"graph", "ll",   "opt.ll", "s",
                                                       "opt",   "plan", "dot"};

int kiln_function_n_dumps(const kiln_function *f) { return fn_ok(f) ? f->log.n + 3 : -1; }

const char *kiln_function_dump_name(const kiln_function *f, int i) {
  if (!fn_ok(f) || i < 0) return NULL;
  if (i < f->log.n) return f->log.stages[i].name;
  i -= f->log.n;
  return i < 3 ? stage_names[KILN_STAGE_LLVM_IR + i] : NULL;
}

/* Between the fast step's LLVM text and the general step's, once compiled. */
static const char general_banner[] =
    "\n; ---- kiln: the general step (kernels with their broadcasting versions), compiled for "
    "the first call with a dynamic size of 1 ----\n";

kiln_status kiln_function_dump_named(const kiln_function *f, const char *stage, FILE *out) {
  if (!fn_ok(f)) return KILN_MISUSE;
  if (!stage || !out) return kl_error(f->ctx, KILN_MISUSE, "function_dump: NULL stage or stream");
  const char *text = NULL, *general = NULL;
  for (int i = 0; i < f->log.n && !text; i++)
    if (strcmp(f->log.stages[i].name, stage) == 0) text = f->log.stages[i].text;
  for (int s = KILN_STAGE_LLVM_IR; s <= KILN_STAGE_ASM && !text; s++)
    if (strcmp(stage_names[s], stage) == 0) {
      kiln_status st = KILN_OK;
      char err[512] = "";
      text = kl_backend_text(f->code, (kiln_stage)s, &st, err, sizeof err);
      if (!text) return kl_error(f->ctx, st ? st : KILN_LLVM, "function_dump: %s", err);
      if (f->code_general) {
        general = kl_backend_text(f->code_general, (kiln_stage)s, &st, err, sizeof err);
        if (!general) return kl_error(f->ctx, st ? st : KILN_LLVM, "function_dump: %s", err);
      }
    }
  if (!text)
    return kl_error(f->ctx, KILN_MISUSE, "function_dump: no stage '%s' in '%s'", stage, f->name);
  if (fputs(text, out) < 0 ||
      (general && (fputs(general_banner, out) < 0 || fputs(general, out) < 0)))
    return kl_error(f->ctx, KILN_ERROR, "function_dump: write failed");
  return KILN_OK;
}

kiln_status kiln_function_dump(const kiln_function *f, kiln_stage stage, FILE *out) {
  if (!fn_ok(f)) return KILN_MISUSE;
  if (!out || (unsigned)stage >= KILN_N_STAGES)
    return kl_error(f->ctx, KILN_MISUSE, "function_dump: bad stage or NULL stream");
  return kiln_function_dump_named(f, stage_names[stage], out);
}
