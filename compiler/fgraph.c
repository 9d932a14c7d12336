/*
** fgraph.c -- the function graph: the compiler's private, rewritable copy
** of what a function computes. See function.h.
*/
#include "compiler/function.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static bool push(kl_fgraph *g, kiln_node *v) {
  if (g->n == g->cap) {
    int cap = g->cap ? g->cap * 2 : 64;
    kiln_node **nn = kl_realloc(g->nodes, (size_t)cap * sizeof *nn);
    if (!nn) return false;
    g->nodes = nn;
    g->cap = cap;
  }
  v->id = (uint32_t)g->n;
  g->nodes[g->n++] = v;
  return true;
}

/* A copy of v in g's arena, inputs not yet set. */
static kiln_node *copy_node(kl_fgraph *g, const kiln_node *v) {
  kiln_node *c = kl_arena_alloc(&g->arena, sizeof *c);
  kiln_node **in = v->n_in ? kl_arena_alloc(&g->arena, v->n_in * sizeof *in) : NULL;
  if (!c || (v->n_in && !in)) return NULL;
  *c = *v;
  c->in = in;
  return c;
}

kiln_status kl_fg_build(kl_fgraph *g, kiln_ctx *ctx, int n_in, kiln_node *const *in, int n_out,
                        kiln_node *const *out, int n_upd, const kiln_update *upd) {
  memset(g, 0, sizeof *g);
  g->ctx = ctx;
  uint32_t N = ctx->n_nodes;
  kiln_node **map = kl_calloc(N ? N : 1, sizeof *map);
  bool *mark = kl_calloc(N ? N : 1, sizeof *mark);
  g->inputs = kl_arena_alloc(&g->arena, (n_in + 1) * sizeof *g->inputs);
  g->outputs = kl_arena_alloc(&g->arena, (n_out + 1) * sizeof *g->outputs);
  g->upd_shared = kl_arena_alloc(&g->arena, (n_upd + 1) * sizeof *g->upd_shared);
  g->upd_value = kl_arena_alloc(&g->arena, (n_upd + 1) * sizeof *g->upd_value);
  kiln_status st = KILN_OK;
  if (!map || !mark || !g->inputs || !g->outputs || !g->upd_shared || !g->upd_value) goto nomem;
  g->n_inputs = n_in;
  g->n_outputs = n_out;
  g->n_updates = n_upd;
  for (int i = 0; i < n_out; i++)
    mark[out[i]->id] = true;
  for (int u = 0; u < n_upd; u++)
    mark[upd[u].value->id] = true;
  for (uint32_t id = N; id-- > 0;)
    if (mark[id])
      for (int k = 0; k < ctx->nodes[id]->n_in; k++)
        mark[ctx->nodes[id]->in[k]->id] = true;
  for (uint32_t id = 0; id < N; id++) {
    if (!mark[id]) continue;
    kiln_node *v = ctx->nodes[id], *c = copy_node(g, v);
    if (!c || !push(g, c)) goto nomem;
    for (int k = 0; k < v->n_in; k++)
      c->in[k] = map[v->in[k]->id];
    map[id] = c;
    if (v->op == KL_OP_INPUT) {
      bool listed = false;
      for (int j = 0; j < n_in && !listed; j++)
        listed = in[j] == v;
      if (!listed) {
        char lb[256];
        st = kl_error(ctx, KILN_MISUSE,
                      "function: the outputs depend on %s, which is not among the inputs",
                      kl_node_label(v, lb, sizeof lb));
        goto done;
      }
    }
  }
  /* interface nodes the outputs do not reach still need copies */
  for (int j = 0; j < n_in; j++)
    if (!(g->inputs[j] = map[in[j]->id]) && !(g->inputs[j] = copy_node(g, in[j]))) goto nomem;
  for (int k = 0; k < n_out; k++)
    g->outputs[k] = map[out[k]->id];
  for (int u = 0; u < n_upd; u++) {
    g->upd_value[u] = map[upd[u].value->id];
    kiln_node *s = map[upd[u].shared->id];
    if (!s && !(s = copy_node(g, upd[u].shared))) goto nomem;
    g->upd_shared[u] = s;
  }
  goto done;
nomem:
  st = kl_error(ctx, KILN_NOMEM, "function: out of memory copying the graph");
done:
  kl_free(map);
  kl_free(mark);
  return st;
}

void kl_fg_free(kl_fgraph *g) {
  kl_free(g->nodes);
  kl_free(g->sched);
  kl_free(g->inplace);
  kl_free(g->home);
  kl_free(g->copies);
  kl_arena_free(&g->arena);
  g->nodes = NULL;
}

kiln_node *kl_fg_add(kl_fgraph *g, kl_opcode op, int n_in, kiln_node *const *in,
                     const kl_type *type, const kl_params *p, const kiln_node *like) {
  kiln_node *v = kl_arena_alloc(&g->arena, sizeof *v);
  kiln_node **ins = n_in ? kl_arena_alloc(&g->arena, n_in * sizeof *ins) : NULL;
  if (!v || (n_in && !ins) || !push(g, v)) {
    kl_error(g->ctx, KILN_NOMEM, "out of memory in the optimizer");
    return NULL;
  }
  v->magic = KL_MAGIC_NODE;
  v->ctx = g->ctx;
  v->op = (uint16_t)op;
  v->n_in = (uint16_t)n_in;
  v->in = ins;
  for (int k = 0; k < n_in; k++)
    ins[k] = in[k];
  v->type = *type;
  if (p) v->p = *p;
  if (like) {
    v->name = like->name;
    v->file = like->file;
    v->line = like->line;
  }
  v->origin = g->rule;
  return v;
}

kiln_node *kl_fg_const(kl_fgraph *g, const kl_type *type, const void *data, const kiln_node *like) {
  int64_t n = kl_type_static_size(type);
  size_t bytes = (size_t)(n < 0 ? 0 : n) * kiln_dtype_size(type->dtype);
  void *copy = kl_arena_alloc(&g->arena, bytes ? bytes : 1);
  if (!copy) {
    kl_error(g->ctx, KILN_NOMEM, "out of memory in the optimizer");
    return NULL;
  }
  if (bytes) memcpy(copy, data, bytes);
  kiln_node *c = kl_fg_add(g, KL_OP_CONST, 0, NULL, type, NULL, like);
  if (c) c->data = copy;
  return c;
}

void kl_fg_replace(kl_fgraph *g, kiln_node *old, kiln_node *repl) {
  if (old == repl) return;
  for (int i = 0; i < g->n; i++)
    for (int k = 0; k < g->nodes[i]->n_in; k++)
      if (g->nodes[i]->in[k] == old) g->nodes[i]->in[k] = repl;
  for (int k = 0; k < g->n_outputs; k++)
    if (g->outputs[k] == old) g->outputs[k] = repl;
  for (int u = 0; u < g->n_updates; u++)
    if (g->upd_value[u] == old) g->upd_value[u] = repl;
}

kiln_status kl_fg_sort(kl_fgraph *g) {
  int n = g->n;
  uint8_t *state = kl_calloc(n ? n : 1, 1); /* 0 new, 1 reachable, 2 placed */
  kiln_node **order = kl_malloc((n ? n : 1) * sizeof *order);
  kiln_node **stack = kl_malloc((n ? n : 1) * sizeof *stack);
  int *next = kl_malloc((n ? n : 1) * sizeof *next);
  if (!state || !order || !stack || !next) {
    kl_free(state);
    kl_free(order);
    kl_free(stack);
    kl_free(next);
    return kl_error(g->ctx, KILN_NOMEM, "out of memory in the optimizer");
  }
  for (int i = 0; i < n; i++)
    g->nodes[i]->id = (uint32_t)i;
  /* reachability from the sinks; a node is marked when pushed, so it is
  ** pushed once and the stack never holds more than n (outputs and update
  ** values may repeat, and outnumber the nodes after folding and CSE) */
  int sp = 0;
#define PUSH_NEW(w)                                                                                \
  do {                                                                                             \
    kiln_node *w_ = (w);                                                                           \
    if (!state[w_->id]) {                                                                          \
      state[w_->id] = 1;                                                                           \
      stack[sp++] = w_;                                                                            \
    }                                                                                              \
  } while (0)
  for (int k = 0; k < g->n_outputs; k++)
    PUSH_NEW(g->outputs[k]);
  for (int u = 0; u < g->n_updates; u++)
    PUSH_NEW(g->upd_value[u]);
  while (sp > 0) {
    kiln_node *v = stack[--sp];
    for (int k = 0; k < v->n_in; k++)
      PUSH_NEW(v->in[k]);
  }
#undef PUSH_NEW
  /* stable topological order: depth-first post-order, roots in index order */
  int m = 0;
  for (int i = 0; i < n; i++) {
    if (state[i] != 1) continue;
    sp = 0;
    stack[sp] = g->nodes[i];
    next[sp++] = 0;
    while (sp > 0) {
      kiln_node *v = stack[sp - 1];
      int k = next[sp - 1]++;
      if (k < v->n_in) {
        kiln_node *w = v->in[k];
        if (state[w->id] == 1) {
          state[w->id] = 3; /* on the stack */
          stack[sp] = w;
          next[sp++] = 0;
        }
        continue;
      }
      state[v->id] = 2;
      order[m++] = v;
      sp--;
    }
  }
  for (int i = 0; i < m; i++) {
    g->nodes[i] = order[i];
    order[i]->id = (uint32_t)i;
  }
  g->n = m;
  kl_free(state);
  kl_free(order);
  kl_free(stack);
  kl_free(next);
  return KILN_OK;
}

bool kl_reads_value(const kiln_node *v, int k) {
  if (v->op == KL_OP_BCAST && k == 1) return false;
  if (v->op == KL_OP_SUM_LIKE && k == 1) return false;
  if (v->op == KL_OP_RESHAPE_LIKE && k == 1) return false;
  if (v->op == KL_OP_COUNT) return false;
  if (kl_index_shape_only(v, k)) return false;
  return true;
}

void kl_fg_uses(const kl_fgraph *g, int *uses) {
  for (int i = 0; i < g->n; i++)
    uses[i] = 0;
  for (int i = 0; i < g->n; i++)
    for (int k = 0; k < g->nodes[i]->n_in; k++)
      if (kl_reads_value(g->nodes[i], k)) uses[g->nodes[i]->in[k]->id]++;
  for (int k = 0; k < g->n_outputs; k++)
    uses[g->outputs[k]->id]++;
  for (int u = 0; u < g->n_updates; u++)
    uses[g->upd_value[u]->id]++;
}

/* ------------------------------------------------------------------ text */

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
    while (cap < b->len + (size_t)n + 1)
      cap *= 2;
    char *s = kl_realloc(b->s, cap);
    if (!s) {
      b->oom = true;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
}

static char *sb_done(sbuf *b) {
  if (b->oom) {
    kl_free(b->s);
    return NULL;
  }
  return b->s ? b->s : kl_strdup("");
}

/* "mul", "cast{float64}", "sum{axes=0x1}", "const{0.1}" */
static void op_text(sbuf *b, const kiln_node *v) {
  sb_printf(b, "%s", kl_ops[v->op].name);
  if (v->op == KL_OP_CAST) sb_printf(b, "{%s}", kiln_dtype_name(v->type.dtype));
  kl_opkind kd = kl_ops[v->op].kind;
  if (kd == KL_REDUCE || kd == KL_BCAST || kd == KL_COUNT)
    sb_printf(b, "{axes=0x%x%s}", v->p.axes, v->p.keepdims ? ",keepdims" : "");
  if (v->op == KL_OP_DOT && (v->p.ta || v->p.tb))
    sb_printf(b, "{%s%s}", v->p.ta ? "ta" : "", v->p.tb ? "tb" : "");
  if (kd == KL_SHUFFLE || kd == KL_RESHAPE) {
    /* dimshuffle{1,0,x}: source axes, x for a new one; reshape{2,d0,-1}:
    ** static sizes, dK for the last input's axis K, -1 for the inferred size */
    sb_printf(b, "{");
    for (int a = 0; a < v->type.rank; a++) {
      int k = v->p.src_axis[a];
      const char *sep = a ? "," : "";
      if (kd == KL_SHUFFLE && k < 0)
        sb_printf(b, "%sx", sep);
      else if (kd == KL_SHUFFLE)
        sb_printf(b, "%s%d", sep, k);
      else if (v->type.dims[a] >= 0)
        sb_printf(b, "%s%lld", sep, (long long)v->type.dims[a]);
      else if (k >= 0)
        sb_printf(b, "%sd%d", sep, k);
      else
        sb_printf(b, "%s-1", sep);
    }
    sb_printf(b, "}");
  } else if (kd == KL_INDEX) {
    char buf[600];
    sb_printf(b, "{%s}", kl_index_params_text(v, buf, sizeof buf));
  }
  if (v->op == KL_OP_CONST) {
    int64_t n = kl_type_static_size(&v->type);
    if (n == 1) {
      char num[40];
      if (kl_dtype_is_float((kiln_dtype)v->type.dtype))
        kiln_format_double(kl_load_f64((kiln_dtype)v->type.dtype, v->data, 0), num, sizeof num);
      else
        snprintf(num, sizeof num, "%lld",
                 (long long)kl_load_i64((kiln_dtype)v->type.dtype, v->data, 0));
      sb_printf(b, "{%s}", num);
    }
  }
}

static const char *const sched_names[] = {"", "scalar", "fused", "kernel"};

char *kl_fg_text(const kl_fgraph *g) {
  sbuf b = {0};
  char ty[200];
  for (int i = 0; i < g->n; i++) {
    const kiln_node *v = g->nodes[i];
    sb_printf(&b, "%%%d = ", i);
    op_text(&b, v);
    sb_printf(&b, "(");
    for (int k = 0; k < v->n_in; k++)
      sb_printf(&b, "%s%%%u", k ? ", " : "", v->in[k]->id);
    sb_printf(&b, ") : %s", kl_type_str(&v->type, ty, sizeof ty));
    if (v->name) sb_printf(&b, " '%s'", v->name);
    sb_printf(&b, "  @ %s:%d", kl_basename(v->file), v->line);
    if (g->sched && g->sched[i]) {
      sb_printf(&b, "  <%s", sched_names[g->sched[i]]);
      if (g->inplace && g->inplace[i]) sb_printf(&b, ", in place");
      sb_printf(&b, ">");
    }
    if (v->origin) sb_printf(&b, "  [%s]", v->origin);
    sb_printf(&b, "\n");
  }
  for (int k = 0; k < g->n_outputs; k++)
    sb_printf(&b, "output %d = %%%u\n", k, g->outputs[k]->id);
  for (int u = 0; u < g->n_updates; u++) {
    const kiln_node *s = g->upd_shared[u];
    sb_printf(&b, "update '%s' <- %%%u\n", s->name ? s->name : "?", g->upd_value[u]->id);
  }
  return sb_done(&b);
}

char *kl_fg_dot(const kl_fgraph *g, const char *name) {
  static const char *const fill[] = {"white", "lightyellow", "lightblue", "lightsalmon"};
  sbuf b = {0};
  char ty[200];
  sb_printf(&b,
            "digraph \"%s\" {\n  rankdir=TB;\n  node [shape=box, style=filled, "
            "fontname=\"monospace\"];\n",
            name);
  for (int i = 0; i < g->n; i++) {
    const kiln_node *v = g->nodes[i];
    sb_printf(&b, "  n%d [label=\"%%%d ", i, i);
    op_text(&b, v);
    if (v->name) sb_printf(&b, " '%s'", v->name);
    sb_printf(&b, "\\n%s\", fillcolor=%s];\n", kl_type_str(&v->type, ty, sizeof ty),
              fill[g->sched ? g->sched[i] : 0]);
    for (int k = 0; k < v->n_in; k++)
      sb_printf(&b, "  n%u -> n%d%s;\n", v->in[k]->id, i,
                kl_reads_value(v, k) ? "" : " [style=dashed]");
  }
  for (int k = 0; k < g->n_outputs; k++)
    sb_printf(&b, "  out%d [shape=oval, label=\"output %d\"];\n  n%u -> out%d;\n", k, k,
              g->outputs[k]->id, k);
  for (int u = 0; u < g->n_updates; u++)
    sb_printf(&b, "  upd%d [shape=oval, label=\"update '%s'\"];\n  n%u -> upd%d;\n", u,
              g->upd_shared[u]->name ? g->upd_shared[u]->name : "?", g->upd_value[u]->id, u);
  sb_printf(&b, "}\n");
  return sb_done(&b);
}
