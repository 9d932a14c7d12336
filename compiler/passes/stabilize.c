/*
** stabilize.c -- numerical stability rewrites (Theano's "stabilize" phase).
**
** Expressions that overflow or lose everything to rounding when written the
** textbook way are replaced by equivalent stable forms:
**
**   log(exp(x))                   -> x       (so log(softmax(x)) -> log_softmax(x))
**   log(sigmoid(x))               -> -softplus(-x)
**   log(1 - sigmoid(x))           -> -softplus(x)
**   log(1 + exp(x)), log1p(exp(x)) -> softplus(x)
**   exp(x) / sum(exp(x)) along the last axis -> softmax(x), built as
**                                    kiln_softmax builds it (shifted by the max)
**
** kiln_softmax is exp(log_softmax(x)), so the first rule is what turns
** log(softmax(x)) into log_softmax(x); the hand-written softmax becomes the
** builder's form first, then the same rule applies. binary_crossentropy of
** a sigmoid becomes softplus terms through the second and third rules.
**
** The rules run twice: as a pass over the function graph (kl_pass_stabilize,
** in the rewrite loop; off with no_optimize or kiln_options.no_stabilize),
** and inside kiln_grad over the cost before it is differentiated
** (kl_stabilize_cost), because the gradient of the textbook form divides by
** the very value that underflowed: a rewrite of the forward graph alone
** would leave a NaN gradient behind.
**
** Needs: nothing (it matches the builders' output, constants on either side).
** Guarantees: types unchanged; values equal mathematically, not bit for bit
** (that is the point: the stable form is finite where the textbook one is not).
*/
#include "compiler/passes/passes.h"

#include <stdlib.h>

/* Where a rule builds: a function graph, or the context (for kiln_grad). */
typedef struct rw {
  kl_fgraph *g; /* NULL: build in ctx */
  kiln_ctx *ctx;
  const kiln_node *at; /* the node being rewritten: new nodes take its file and line */
  const bool *pinned;  /* by id, for nodes of the context (kiln_grad's wrt); may be NULL */
  uint32_t n_pinned;
} rw;

static kiln_node *mk(rw *b, kl_opcode op, int n, kiln_node *const *in, const kl_type *t,
                     const kl_params *p) {
  for (int k = 0; k < n; k++)
    if (!in[k]) return NULL;
  kl_type ty = *t;
  ty.weak = false;
  if (b->g) return kl_fg_add(b->g, op, n, in, &ty, p, b->at);
  return kl_node_new(b->ctx, op, n, in, &ty, p, b->at->file, b->at->line);
}
static kiln_node *mk1(rw *b, kl_opcode op, kiln_node *x, const kl_type *t) {
  return mk(b, op, 1, &x, t, NULL);
}
static kiln_node *mk2(rw *b, kl_opcode op, kiln_node *x, kiln_node *y, const kl_type *t) {
  kiln_node *in[2] = {x, y};
  return mk(b, op, 2, in, t, NULL);
}

/* A node a rule may look through (and so remove from the path): not one of
** kiln_grad's wrt, whose gradient must stay connected. */
static bool inner(const rw *b, const kiln_node *v) {
  return !b->pinned || v->id >= b->n_pinned || !b->pinned[v->id];
}

static bool same_type(const kiln_node *a, const kiln_node *b) {
  kl_type x = a->type, y = b->type;
  x.weak = y.weak = false;
  return kl_same_type(&x, &y) && kl_dtype_is_float((kiln_dtype)x.dtype);
}

static bool is_one(const kiln_node *v) {
  double d;
  return kl_is_scalar_const(v, &d) && d == 1.0;
}

/* x when v is op(x) and the rule may remove v, else NULL. */
static kiln_node *operand_of(const rw *b, const kiln_node *v, kl_opcode op) {
  return v->op == op && inner(b, v) ? v->in[0] : NULL;
}

static kiln_node *log_exp(rw *b, kiln_node *v) {
  kiln_node *x = v->op == KL_OP_LOG ? operand_of(b, v->in[0], KL_OP_EXP) : NULL;
  return x && same_type(v, x) ? x : NULL;
}

static kiln_node *log_sigmoid(rw *b, kiln_node *v) {
  kiln_node *x = v->op == KL_OP_LOG ? operand_of(b, v->in[0], KL_OP_SIGMOID) : NULL;
  if (!x || !same_type(v, x)) return NULL;
  kiln_node *sp = mk1(b, KL_OP_SOFTPLUS, mk1(b, KL_OP_NEG, x, &v->type), &v->type);
  return mk1(b, KL_OP_NEG, sp, &v->type);
}

static kiln_node *log_one_minus_sigmoid(rw *b, kiln_node *v) {
  if (v->op != KL_OP_LOG) return NULL;
  kiln_node *d = v->in[0];
  if (d->op != KL_OP_SUB || !inner(b, d) || !is_one(d->in[0])) return NULL;
  kiln_node *x = operand_of(b, d->in[1], KL_OP_SIGMOID);
  if (!x || !same_type(v, x)) return NULL;
  return mk1(b, KL_OP_NEG, mk1(b, KL_OP_SOFTPLUS, x, &v->type), &v->type);
}

static kiln_node *log_one_plus_exp(rw *b, kiln_node *v) {
  kiln_node *x = NULL;
  if (v->op == KL_OP_LOG1P)
    x = operand_of(b, v->in[0], KL_OP_EXP);
  else if (v->op == KL_OP_LOG && v->in[0]->op == KL_OP_ADD && inner(b, v->in[0])) {
    kiln_node *s = v->in[0];
    if (is_one(s->in[1])) x = operand_of(b, s->in[0], KL_OP_EXP);
    if (!x && is_one(s->in[0])) x = operand_of(b, s->in[1], KL_OP_EXP);
  }
  return x && same_type(v, x) ? mk1(b, KL_OP_SOFTPLUS, x, &v->type) : NULL;
}

static kl_type reduced(const kl_type *t, uint32_t axes) {
  kl_type r = {.dtype = t->dtype};
  for (int i = 0; i < t->rank; i++)
    if (!(axes >> i & 1u)) r.dims[r.rank++] = t->dims[i];
  return r;
}

/* exp(x) / sum(exp(x)) along the last axis: the sum is rank 0 for a vector,
** else broadcast back along the last axis (there is no keepdims). */
static kiln_node *naive_softmax(rw *b, kiln_node *v) {
  if (v->op != KL_OP_DIV) return NULL;
  kiln_node *e = v->in[0], *d = v->in[1], *x = operand_of(b, e, KL_OP_EXP);
  if (!x || !same_type(v, x) || x->type.rank < 1) return NULL;
  uint32_t last = 1u << (x->type.rank - 1);
  if (d->op == KL_OP_BCAST && inner(b, d) && d->p.axes == last && same_type(d, x) &&
      (d->in[1] == e || d->in[1] == x))
    d = d->in[0];
  else if (x->type.rank != 1)
    return NULL;
  if (d->op != KL_OP_SUM || !inner(b, d) || d->in[0] != e || d->p.axes != last) return NULL;
  /* the builder's form: m = max(x); s = x - m; ls = s - log(sum(exp(s))); exp(ls) */
  const kl_type *t = &v->type;
  kl_type r = reduced(t, last);
  kl_params pl = {.axes = last};
  kiln_node *m = mk(b, KL_OP_RMAX, 1, &x, &r, &pl);
  if (!b->g) m = mk1(b, KL_OP_STOPGRAD, m, &r); /* as kiln_log_softmax: no gradient */
  kiln_node *s = mk2(b, KL_OP_SUB, x, mk(b, KL_OP_BCAST, 2, (kiln_node *[]){m, x}, t, &pl), t);
  kiln_node *sum = mk(b, KL_OP_SUM, 1, (kiln_node *[]){mk1(b, KL_OP_EXP, s, t)}, &r, &pl);
  kiln_node *lse = mk1(b, KL_OP_LOG, sum, &r);
  kiln_node *ls = mk2(b, KL_OP_SUB, s, mk(b, KL_OP_BCAST, 2, (kiln_node *[]){lse, x}, t, &pl), t);
  return mk1(b, KL_OP_EXP, ls, t);
}

typedef struct rule {
  const char *desc;
  kiln_node *(*apply)(rw *b, kiln_node *v);
} rule;

static const rule rules[] = {
    {"stabilize: exp(x) / sum(exp(x)) -> softmax(x) (shifted by the max)", naive_softmax},
    {"stabilize: log(exp(x)) -> x (log(softmax(x)) -> log_softmax(x))", log_exp},
    {"stabilize: log(sigmoid(x)) -> -softplus(-x)", log_sigmoid},
    {"stabilize: log(1 - sigmoid(x)) -> -softplus(x)", log_one_minus_sigmoid},
    {"stabilize: log(1 + exp(x)), log1p(exp(x)) -> softplus(x)", log_one_plus_exp},
};
#define N_RULES (sizeof rules / sizeof rules[0])

bool kl_pass_stabilize(kl_fgraph *g) {
  if (g->no_stabilize) return false;
  bool changed = false;
  int n = g->n;
  rw b = {.g = g, .ctx = g->ctx};
  for (int i = 0; i < n; i++) {
    kiln_node *v = g->nodes[i];
    b.at = v;
    for (size_t r = 0; r < N_RULES; r++) {
      g->rule = rules[r].desc;
      unsigned errs = g->ctx->n_errors;
      kiln_node *x = rules[r].apply(&b, v);
      g->rule = NULL;
      if (g->ctx->n_errors != errs) return changed;
      if (x) {
        kl_fg_replace(g, v, x);
        changed = true;
        break;
      }
    }
  }
  if (changed) kl_fg_sort(g);
  return changed;
}

kiln_node *kl_stabilize_cost(kiln_ctx *ctx, kiln_node *cost, int n_keep, kiln_node *const *keep) {
  uint32_t n = cost->id + 1;
  bool *flags = kl_calloc(n, 2 * sizeof(bool));
  kiln_node **map = kl_calloc(n, sizeof *map);
  if (!flags || !map) {
    kl_free(flags);
    kl_free(map);
    kl_error(ctx, KILN_NOMEM, "grad: out of memory");
    return NULL;
  }
  bool *reach = flags, *pinned = flags + n;
  for (int i = 0; i < n_keep; i++)
    if (keep[i]->id < n) pinned[keep[i]->id] = true;
  reach[cost->id] = true;
  for (uint32_t id = n; id-- > 0;)
    if (reach[id])
      for (int k = 0; k < ctx->nodes[id]->n_in; k++)
        reach[ctx->nodes[id]->in[k]->id] = true;
  const char *origin = ctx->origin;
  unsigned errs = ctx->n_errors;
  rw b = {.ctx = ctx, .pinned = pinned, .n_pinned = n};
  for (uint32_t id = 0; id < n && ctx->n_errors == errs; id++) {
    if (!reach[id]) continue;
    kiln_node *v = ctx->nodes[id], *w = v, *in[3];
    if (pinned[id]) { /* a wrt stays itself, so its gradient stays connected */
      map[id] = v;
      continue;
    }
    bool moved = false;
    for (int k = 0; k < v->n_in; k++) {
      in[k] = map[v->in[k]->id];
      moved |= in[k] != v->in[k];
    }
    if (moved) { /* a rewrite below: the same op over the new operands */
      ctx->origin = v->origin;
      w = kl_node_new(ctx, (kl_opcode)v->op, v->n_in, in, &v->type, &v->p, v->file, v->line);
      if (!w) break;
      w->name = v->name;
    }
    b.at = v;
    int fired = 0; /* the result may match again (softmax, then log of it); a bound, to be sure */
    for (size_t r = 0; r < N_RULES && fired < 8 && ctx->n_errors == errs; r++) {
      ctx->origin = rules[r].desc;
      kiln_node *x = rules[r].apply(&b, w);
      if (x) {
        w = x;
        fired++;
        r = (size_t)-1;
      }
    }
    map[id] = w;
  }
  ctx->origin = origin;
  kiln_node *out = ctx->n_errors == errs ? map[cost->id] : NULL;
  kl_free(flags);
  kl_free(map);
  return out;
}
