/*
** simplify.c -- algebraic simplification, as a table of rules. Each rule
** has a one-line description, recorded on the nodes it makes and shown in
** dumps. Rules marked fast_math change IEEE results (x*0 is not 0 when x is
** NaN or inf) and run only when the function asks for fast math.
** Needs: canonical form (constants on the right). Guarantees: without fast
** math, every value bit-identical.
*/
#include "compiler/passes/passes.h"

#include <math.h>
#include <string.h>

bool kl_is_scalar_const(const kiln_node *v, double *out) {
  if (v->op != KL_OP_CONST || kl_type_static_size(&v->type) != 1) return false;
  *out = kl_load_f64((kiln_dtype)v->type.dtype, v->data, 0);
  return true;
}

static bool is_const(const kiln_node *v, double want) {
  double x;
  return kl_is_scalar_const(v, &x) && x == want;
}

static bool is_neg_zero(const kiln_node *v) {
  double x;
  return kl_is_scalar_const(v, &x) && x == 0.0 && signbit(x);
}

static bool is_float(const kiln_node *v) { return kl_dtype_is_float((kiln_dtype)v->type.dtype); }

/* x when replacing v by x keeps v's type, else NULL */
static kiln_node *keep(kiln_node *v, kiln_node *x) {
  return kl_same_type(&v->type, &x->type) ? x : NULL;
}

static kiln_node *mul_one(kl_fgraph *g, kiln_node *v) {
  return v->op == KL_OP_MUL && is_const(v->in[1], 1.0) ? keep(v, v->in[0]) : NULL;
}
static kiln_node *div_one(kl_fgraph *g, kiln_node *v) {
  return v->op == KL_OP_DIV && is_const(v->in[1], 1.0) ? keep(v, v->in[0]) : NULL;
}
static kiln_node *add_neg_zero(kl_fgraph *g, kiln_node *v) {
  if (v->op != KL_OP_ADD) return NULL;
  if (is_float(v) ? is_neg_zero(v->in[1]) : is_const(v->in[1], 0.0)) return keep(v, v->in[0]);
  return NULL;
}
/* Can v never be -0.0? Float sums start from +0.0; a + b is -0.0 only when
** both are (round to nearest); exp, sqr, abs, softplus and sigmoid give
** +0.0 at most; a cast from an integer has no -0.0. */
static bool never_neg_zero(const kiln_node *v, int depth) {
  double x;
  if (kl_is_scalar_const(v, &x)) return !(x == 0.0 && signbit(x));
  if (!kl_dtype_is_float((kiln_dtype)v->type.dtype)) return true;
  switch (v->op) {
  case KL_OP_SUM:
  case KL_OP_SUM_LIKE:
  case KL_OP_COUNT:
  case KL_OP_EXP:
  case KL_OP_SQR:
  case KL_OP_ABS:
  case KL_OP_SOFTPLUS:
  case KL_OP_SIGMOID: return true;
  case KL_OP_CAST: return !kl_dtype_is_float((kiln_dtype)v->in[0]->type.dtype);
  case KL_OP_ADD:
    return depth > 0 &&
           (never_neg_zero(v->in[0], depth - 1) || never_neg_zero(v->in[1], depth - 1));
  default: return false;
  }
}
/* x + 0.0 is x but for -0.0 */
static kiln_node *add_zero_exact(kl_fgraph *g, kiln_node *v) {
  if (v->op != KL_OP_ADD || !is_float(v) || !is_const(v->in[1], 0.0) || is_neg_zero(v->in[1]))
    return NULL;
  return never_neg_zero(v->in[0], 4) ? keep(v, v->in[0]) : NULL;
}
static kiln_node *neg_neg(kl_fgraph *g, kiln_node *v) {
  return v->op == KL_OP_NEG && v->in[0]->op == KL_OP_NEG ? keep(v, v->in[0]->in[0]) : NULL;
}
static kiln_node *pow_one(kl_fgraph *g, kiln_node *v) {
  return v->op == KL_OP_POW && is_const(v->in[1], 1.0) ? keep(v, v->in[0]) : NULL;
}
/* Can condition c neither broadcast x nor fail to fit it at call time? Each
** of its dims must be a static 1 or x's static size there. */
static bool cond_fits(const kiln_node *c, const kiln_node *x) {
  if (c->type.rank > x->type.rank) return false;
  for (int d = 0; d < c->type.rank; d++) {
    int64_t cd = c->type.dims[d], xd = x->type.dims[d + x->type.rank - c->type.rank];
    if (cd != 1 && (cd == KILN_DYN || cd != xd)) return false;
  }
  return true;
}
static kiln_node *same_operands(kl_fgraph *g, kiln_node *v) {
  if ((v->op == KL_OP_MAX || v->op == KL_OP_MIN) && v->in[0] == v->in[1]) return keep(v, v->in[0]);
  if (v->op == KL_OP_WHERE && v->in[1] == v->in[2] && cond_fits(v->in[0], v->in[1]))
    return keep(v, v->in[1]);
  return NULL;
}
/* A cast there and back is the identity when the middle dtype holds every
** value of the first exactly. */
static bool widens(int from, int to) {
  if (from == to) return true;
  switch (from) {
  case KILN_BOOL: return true;
  case KILN_INT8:
    return to == KILN_INT16 || to == KILN_INT32 || to == KILN_INT64 ||
           kl_dtype_is_float((kiln_dtype)to);
  case KILN_UINT8: return to != KILN_INT8 && to != KILN_BOOL;
  case KILN_INT16: return to == KILN_INT32 || to == KILN_INT64 || kl_dtype_is_float((kiln_dtype)to);
  case KILN_INT32: return to == KILN_INT64 || to == KILN_FLOAT64;
  case KILN_FLOAT32: return to == KILN_FLOAT64;
  default: return false;
  }
}
static kiln_node *cast_roundtrip(kl_fgraph *g, kiln_node *v) {
  if (v->op != KL_OP_CAST || v->in[0]->op != KL_OP_CAST) return NULL;
  kiln_node *x = v->in[0]->in[0];
  if (x->type.dtype != v->type.dtype || !widens(x->type.dtype, v->in[0]->type.dtype)) return NULL;
  return keep(v, x);
}
static kiln_node *stop_gradient(kl_fgraph *g, kiln_node *v) {
  return v->op == KL_OP_STOPGRAD ? keep(v, v->in[0]) : NULL;
}
/* integers only: a float sum starts from +0.0, and +0.0 + -0.0 is +0.0 */
static kiln_node *sum_no_axes(kl_fgraph *g, kiln_node *v) {
  return v->op == KL_OP_SUM && v->p.axes == 0 && !is_float(v) ? keep(v, v->in[0]) : NULL;
}

/* Shape ops: chains are one op (index remaps compose; the composed
** dimshuffle still checks at run time every axis of x a step dropped). A
** chain of reshapes would otherwise store the middle one (a reshape reads a
** stored operand). */
static kiln_node *shuffle_shuffle(kl_fgraph *g, kiln_node *v) {
  if (v->op != KL_OP_DIMSHUFFLE || v->in[0]->op != KL_OP_DIMSHUFFLE) return NULL;
  kiln_node *in = v->in[0], *x = in->in[0];
  kl_params p = {0};
  bool same = v->type.rank == x->type.rank;
  for (int a = 0; a < v->type.rank; a++) {
    int k = v->p.src_axis[a];
    p.src_axis[a] = (int8_t)(k < 0 ? -1 : in->p.src_axis[k]);
    same &= p.src_axis[a] == a;
  }
  if (same) return keep(v, x);
  return kl_fg_add(g, KL_OP_DIMSHUFFLE, 1, &x, &v->type, &p, v);
}
/* Only through a middle reshape of static shape C: its check (x has C
** elements) is then the composed one's, and the outer result is static too.
** A middle -1 or copied size would lose a check (x of 7 elements reshaped to
** (-1, 2) fails; reshaped to (-1,) it would not). */
static kiln_node *reshape_reshape(kl_fgraph *g, kiln_node *v) {
  if (v->op != KL_OP_RESHAPE || kl_ops[v->in[0]->op].kind != KL_RESHAPE) return NULL;
  kiln_node *in = v->in[0], *x = in->in[0];
  if (kl_type_static_size(&in->type) < 0 || kl_type_static_size(&v->type) < 0) return NULL;
  if (kl_same_type(&v->type, &x->type)) return keep(v, x);
  kl_params p = {0}; /* entries past the rank stay 0, as the builders leave them (CSE) */
  for (int a = 0; a < v->type.rank; a++)
    p.src_axis[a] = -1;
  return kl_fg_add(g, KL_OP_RESHAPE, 1, &x, &v->type, &p, v);
}

/* fast math only */
static kiln_node *zero_like(kl_fgraph *g, kiln_node *v) {
  kl_type t = {.dtype = v->type.dtype};
  unsigned char zero[8] = {0};
  kiln_node *z = kl_fg_const(g, &t, zero, v);
  if (!z || v->type.rank == 0) return z;
  kiln_node *in[2] = {z, v};
  kl_params p = {.axes = (1u << v->type.rank) - 1u};
  return kl_fg_add(g, KL_OP_BCAST, 2, in, &v->type, &p, v);
}
static kiln_node *mul_zero(kl_fgraph *g, kiln_node *v) {
  if (v->op != KL_OP_MUL || !is_const(v->in[1], 0.0) || !kl_same_type(&v->type, &v->in[0]->type))
    return NULL;
  return zero_like(g, v->in[0]);
}
static kiln_node *sub_self(kl_fgraph *g, kiln_node *v) {
  if (v->op != KL_OP_SUB || v->in[0] != v->in[1]) return NULL;
  return zero_like(g, v->in[0]);
}
static kiln_node *add_zero(kl_fgraph *g, kiln_node *v) {
  return v->op == KL_OP_ADD && is_const(v->in[1], 0.0) ? keep(v, v->in[0]) : NULL;
}

typedef struct rule {
  const char *desc;
  bool fast_math;
  kiln_node *(*apply)(kl_fgraph *g, kiln_node *v);
} rule;

static const rule rules[] = {
    {"simplify: x * 1 -> x", false, mul_one},
    {"simplify: x / 1 -> x", false, div_one},
    {"simplify: x + (-0.0) -> x (x + 0 for integers)", false, add_neg_zero},
    {"simplify: x + 0.0 -> x where x is never -0.0 (a sum, exp, x + 0.0, ...)", false,
     add_zero_exact},
    {"simplify: neg(neg(x)) -> x", false, neg_neg},
    {"simplify: x ** 1 -> x", false, pow_one},
    {"simplify: maximum(x, x), minimum(x, x), where(c, x, x) -> x", false, same_operands},
    {"simplify: cast(cast(x, wider), back) -> x", false, cast_roundtrip},
    {"simplify: sum over no axes -> x (integers)", false, sum_no_axes},
    {"simplify: stop_gradient(x) -> x (gradients are already built)", false, stop_gradient},
    {"simplify: dimshuffle(dimshuffle(x)) -> dimshuffle(x) (or x)", false, shuffle_shuffle},
    {"simplify: reshape(reshape(x)) -> reshape(x) (or x)", false, reshape_reshape},
    {"simplify (fast math): x * 0 -> 0", true, mul_zero},
    {"simplify (fast math): x - x -> 0", true, sub_self},
    {"simplify (fast math): x + 0 -> x", true, add_zero},
};

/* ---- sizes known equal without being known
** Gradients of broadcasting ops end in sum_like(g, like), which sums g down
** to like's shape. With dynamic sizes the builder must keep it (a size may
** be 1 at call time and broadcast), but often g provably has like's shape:
** then the node is a full copy of g, a kernel of its own. Each dim of each
** node gets a description: a static size, or a set of "base" sizes (the
** dynamic dims of inputs and of ops this analysis does not follow) whose
** run-time value is the one size in the set that is not 1, or 1. An
** elementwise op's output dim is the union of its operands' sets (the call
** fails unless they broadcast), a broadcast or sum_like takes like's dims,
** a reduction keeps its source's, dot and dimshuffle move them. Two dims
** with equal sets are equal at every call. */
typedef struct sdim {
  int64_t stat; /* >= 0: static size; -1: dynamic, see set */
  uint64_t set; /* base sizes; 0: unknown (equal to nothing) */
} sdim;

typedef struct sdims {
  sdim (*d)[KILN_MAX_RANK];
  int next; /* the next base size's bit */
} sdims;

static sdim fresh(sdims *s) {
  sdim x = {-1, 0};
  if (s->next < 64) x.set = 1ull << s->next++;
  return x;
}

static sdim union_of(sdim a, sdim b) {
  if (a.stat == 1) return b;
  if (b.stat == 1) return a;
  if (a.stat >= 0) return a; /* b is a's size, or 1 */
  if (b.stat >= 0) return b;
  return (sdim){-1, a.set && b.set ? a.set | b.set : 0};
}

static bool same_dim(sdim a, sdim b) {
  return a.stat >= 0 ? a.stat == b.stat : b.stat < 0 && a.set && a.set == b.set;
}

static void describe(sdims *s, const kiln_node *v) {
  sdim *o = s->d[v->id];
  int r = v->type.rank;
  const kiln_node *a = v->n_in > 0 ? v->in[0] : NULL, *b = v->n_in > 1 ? v->in[1] : NULL;
  switch (kl_ops[v->op].kind) {
  case KL_ELEM:
    for (int d = 0; d < r; d++) {
      o[d] = (sdim){1, 0};
      for (int k = 0; k < v->n_in; k++) {
        int off = d - (r - v->in[k]->type.rank);
        if (off >= 0) o[d] = union_of(o[d], s->d[v->in[k]->id][off]);
      }
    }
    break;
  case KL_BCAST:
  case KL_LIKE: memcpy(o, s->d[b->id], (size_t)r * sizeof *o); break;
  case KL_REDUCE:
    for (int d = 0, k = 0; d < a->type.rank; d++)
      if (!(v->p.axes >> d & 1u))
        o[k++] = s->d[a->id][d];
      else if (v->p.keepdims)
        o[k++] = (sdim){1, 0};
    break;
  case KL_SHUFFLE:
    for (int d = 0; d < r; d++)
      o[d] = v->p.src_axis[d] < 0 ? (sdim){1, 0} : s->d[a->id][v->p.src_axis[d]];
    break;
  case KL_DOT:
    if (v->op == KL_OP_DOT && r == 2 && a->type.rank == 2 && b->type.rank == 2) {
      o[0] = s->d[a->id][v->p.ta ? 1 : 0];
      o[1] = s->d[b->id][v->p.tb ? 0 : 1];
      break;
    }
    /* fall through */
  default:
    for (int d = 0; d < r; d++)
      o[d] = fresh(s);
  }
  for (int d = 0; d < r; d++) /* the type's static sizes are facts */
    if (v->type.dims[d] != KILN_DYN) o[d] = (sdim){v->type.dims[d], 0};
}

/* Replaces every sum_like whose operand provably has like's shape (and
** type) by the operand (plus +0.0 for floats). */
static bool sum_like_same_shape(kl_fgraph *g) {
  int n = g->n;
  bool any = false;
  for (int i = 0; i < n && !any; i++)
    any = g->nodes[i]->op == KL_OP_SUM_LIKE;
  if (!any) return false;
  /* room for the nodes made here (two per rewrite), which later nodes read */
  int cap = 3 * n;
  sdims s = {kl_calloc((size_t)cap, sizeof *s.d), 0};
  if (!s.d) {
    kl_error(g->ctx, KILN_NOMEM, "out of memory in simplify");
    return false;
  }
  bool changed = false;
  g->rule = "simplify: sum_like(x, like) -> x + 0.0 (x for integers), x of like's shape";
  for (int i = 0; i < n; i++) {
    kiln_node *v = g->nodes[i];
    describe(&s, v);
    if (v->op != KL_OP_SUM_LIKE) continue;
    kiln_node *x = v->in[0], *like = v->in[1];
    bool same = x->type.rank == like->type.rank && kl_same_type(&v->type, &x->type);
    for (int d = 0; same && d < x->type.rank; d++)
      same = same_dim(s.d[x->id][d], s.d[like->id][d]);
    if (!same) continue;
    /* a float sum starts from +0.0 even over one term: x + 0.0 keeps that
    ** (-0.0 becomes +0.0, as the reference evaluator's sum_like does) */
    kiln_node *r = x;
    if (is_float(x)) {
      kl_type t = {.dtype = x->type.dtype};
      unsigned char zero[8] = {0};
      kiln_node *z = kl_fg_const(g, &t, zero, v);
      r = z ? kl_fg_add(g, KL_OP_ADD, 2, (kiln_node *[]){x, z}, &v->type, NULL, v) : NULL;
    }
    if (!r || (int)r->id >= cap) break;
    memcpy(s.d[r->id], s.d[v->id], sizeof s.d[0]);
    kl_fg_replace(g, v, r);
    changed = true;
  }
  g->rule = NULL;
  kl_free(s.d);
  return changed;
}

bool kl_pass_simplify(kl_fgraph *g) {
  unsigned errs0 = g->ctx->n_errors;
  bool changed = sum_like_same_shape(g);
  if (g->ctx->n_errors != errs0) return changed;
  int n = g->n;
  for (int i = 0; i < n; i++) {
    kiln_node *v = g->nodes[i];
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
      if (rules[r].fast_math && !g->fast_math) continue;
      g->rule = rules[r].desc;
      unsigned errs = g->ctx->n_errors;
      kiln_node *x = rules[r].apply(g, v);
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
