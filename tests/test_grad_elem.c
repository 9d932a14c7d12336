/*
** test_grad_elem.c -- gradients of the elementwise ops beyond arithmetic
** (log1p, expm1, tanh, sigmoid, softplus, relu, clip, where, cast, and the
** ops no gradient flows through: sign, comparisons, logical ops,
** isnan/isinf), held to finite differences.
**
** The helper check_grad() is test_grad.c's: it builds a graph from a builder
** callback, makes the cost sum(out * R) with R a fixed random constant of
** out's run-time shape, asks kiln_grad for the gradients wrt the leaves
** marked F_WRT, evaluates cost and gradients compiled by the JIT and by the
** reference evaluator (kl_ref_run), which must agree bit for bit, and holds
** every element of every JIT gradient to the central difference of the JIT
** cost. Inputs are kept away from kinks (relu at 0, clip at its bounds,
** where's condition at 0) so finite differences are meaningful there; the
** kinks themselves are checked by hand against the documented rules.
**
** Broadcasting: a unary op meets broadcasting through op(a + b) and
** op(a) * b, over (2,3)/(3,), (2,1)/(1,3), ()/(2,3), and dynamic (?,)
** given 1 against (4,); clip and where broadcast their own operands.
*/
#include "tests/gradcheck.h"

#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* the harness: tests/gradcheck.h */

/* ------------------------------------------------------ unary ops alone */

enum { G_LOG1P, G_EXPM1, G_TANH, G_SIGMOID, G_SOFTPLUS, G_RELU, N_G };

static kiln_node *un_op(int op, kiln_node *x) {
  switch (op) {
  case G_LOG1P: return kiln_log1p(x);
  case G_EXPM1: return kiln_expm1(x);
  case G_TANH: return kiln_tanh(x);
  case G_SIGMOID: return kiln_sigmoid(x);
  case G_SOFTPLUS: return kiln_softplus(x);
  default: return kiln_relu(x);
  }
}

/* Value ranges: log1p stays above -1; relu's operand sits on odd
** multiples of 0.125 (|x| >= 0.125, far from the kink for a step of 1e-6). */
static const struct {
  const char *name;
  double lo, hi, step;
  unsigned flags;
} g_ops[N_G] = {
    {"log1p", -0.6, 3, 0, 0}, {"expm1", -3, 3, 0, 0},    {"tanh", -3, 3, 0, 0},
    {"sigmoid", -5, 5, 0, 0}, {"softplus", -5, 5, 0, 0}, {"relu", 0.125, 2.125, 0.25, F_SIGN},
};

static kiln_node *b_unary(kiln_ctx *ctx, kiln_node *const *in, int op) {
  (void)ctx;
  return un_op(op, in[0]);
}

/* shapes: (2,3) static, scalar, (?,?) given (3,2), (2,3) float32 */
START_TEST(unary_op) {
  int op = _i % N_G, shp = _i / N_G;
  char what[64];
  snprintf(what, sizeof what, "%s shape %d", g_ops[op].name, shp);
  gcase c = {.what = what, .n_in = 1, .build = b_unary, .arg = op};
  ispec s = IN("x", D64, 2, 2, 3, 0, 0, g_ops[op].lo, g_ops[op].hi, g_ops[op].step,
               F_WRT | g_ops[op].flags);
  if (shp == 1) s.rank = 0;
  if (shp == 2) {
    s.shape[0] = 3;
    s.shape[1] = 2;
    s.dyn = 3;
  }
  if (shp == 3) {
    s.dt = F32;
    c.r32 = true;
  }
  c.in[0] = s;
  check_grad(&c);
}
END_TEST

/* ------------------------------------------------- unary ops broadcast */

/* arg = op * 2 + form: form 0 is op(a + b), form 1 op(a) * b */
static kiln_node *b_unary_bcast(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  (void)ctx;
  int op = arg / 2;
  return arg % 2 ? kiln_mul(un_op(op, in[0]), in[1]) : un_op(op, kiln_add(in[0], in[1]));
}

/* (a, b) shapes; sa/sb are call-time shapes, da/db the dynamic dims. */
static const struct {
  const char *name;
  int ra;
  int64_t sa[2];
  unsigned da;
  int rb;
  int64_t sb[2];
  unsigned db;
} patterns[] = {
    {"(2,3) (3,)", 2, {2, 3}, 0, 1, {3, 0}, 0},
    {"(3,) (2,3)", 1, {3, 0}, 0, 2, {2, 3}, 0},
    {"(2,1) (1,3)", 2, {2, 1}, 0, 2, {1, 3}, 0},
    {"() (2,3)", 0, {0, 0}, 0, 2, {2, 3}, 0},
    {"(2,3) ()", 2, {2, 3}, 0, 0, {0, 0}, 0},
    {"(?,)=(1,) (4,)", 1, {1, 0}, 1, 1, {4, 0}, 0},
    {"(4,) (?,)=(1,)", 1, {4, 0}, 0, 1, {1, 0}, 1},
    {"(?,)=(1,) (?,)=(4,)", 1, {1, 0}, 1, 1, {4, 0}, 1},
};
#define N_PAT ((int)(sizeof patterns / sizeof *patterns))

/* Operand ranges per op for op(a + b) (form 0) and op(a) * b (form 1). For
** relu, a sits on multiples of 0.5 and b a quarter off (form 0: a + b is
** an odd multiple of 0.25) or a on odd multiples of 0.125 (form 1). */
static void bcast_ranges(int op, int form, ispec *a, ispec *b) {
  a->lo = -1.5, a->hi = 1.5, b->lo = -1.5, b->hi = 1.5;
  if (op == G_LOG1P) a->lo = 0, a->hi = 1.5, b->lo = form ? -1.5 : -0.5, b->hi = 1.5;
  if (op == G_LOG1P && form) a->lo = -0.5;
  if (op == G_RELU && !form)
    a->lo = -2, a->hi = 2, a->step = 0.5, b->lo = -1.75, b->hi = 1.75, b->step = 0.5;
  if (op == G_RELU && form) a->lo = -2.125, a->hi = 2.125, a->step = 0.25;
}

START_TEST(unary_broadcast) {
  int pat = _i % N_PAT, rest = _i / N_PAT, form = rest % 2, op = rest / 2;
  char what[128];
  snprintf(what, sizeof what, "%s %s %s", g_ops[op].name, form ? "op(a) * b" : "op(a + b)",
           patterns[pat].name);
  gcase c = {.what = what, .n_in = 2, .build = b_unary_bcast, .arg = op * 2 + form};
  c.in[0] = (ispec)IN("a", D64, patterns[pat].ra, patterns[pat].sa[0], patterns[pat].sa[1], 0,
                      patterns[pat].da, 0, 0, 0, F_WRT);
  c.in[1] = (ispec)IN("b", D64, patterns[pat].rb, patterns[pat].sb[0], patterns[pat].sb[1], 0,
                      patterns[pat].db, 0, 0, 0, F_WRT);
  bcast_ranges(op, form, &c.in[0], &c.in[1]);
  check_grad(&c);
}
END_TEST

/* ------------------------------------------------------------------ clip */

/* arg 0: clip(x, lo, hi), all three wrt; 1: clip(x, -0.25, 0.75) literals;
** 2: clip(x, lo, 1.25) a literal hi; 3: clip(softplus(x), lo, hi) (the
** literals a quarter off x's multiples of 0.5) */
static kiln_node *b_clip(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  switch (arg) {
  case 1: return kiln_clip(in[0], kiln_lit(ctx, -0.25), kiln_lit(ctx, 0.75));
  case 2: return kiln_clip(in[0], in[1], kiln_lit(ctx, 1.25));
  case 3: return kiln_clip(kiln_softplus(in[0]), in[1], in[2]);
  default: return kiln_clip(in[0], in[1], in[2]);
  }
}

/* (x, lo, hi) shapes and dynamic dims. x lies on multiples of 0.5, lo a
** quarter off them, hi an eighth off: no two of x, lo, hi and
** maximum(x, lo) ever tie, and lo > hi occurs too (the gradient then goes
** to hi alone). */
static const struct {
  const char *name;
  int r[3];
  int64_t s[3][2];
  unsigned dyn[3];
} clip_pats[] = {
    {"(2,3) (3,) ()", {2, 1, 0}, {{2, 3}, {3, 0}, {0, 0}}, {0, 0, 0}},
    {"(2,1) (1,3) (2,1)", {2, 2, 2}, {{2, 1}, {1, 3}, {2, 1}}, {0, 0, 0}},
    {"() (2,3) (3,)", {0, 2, 1}, {{0, 0}, {2, 3}, {3, 0}}, {0, 0, 0}},
    {"(?,)=(1,) (4,) (?,)=(4,)", {1, 1, 1}, {{1, 0}, {4, 0}, {4, 0}}, {1, 0, 1}},
    {"(4,) (?,)=(1,) ()", {1, 1, 0}, {{4, 0}, {1, 0}, {0, 0}}, {0, 1, 0}},
    {"(?,?)=(3,4) (4,) (3,1)", {2, 1, 2}, {{3, 4}, {4, 0}, {3, 1}}, {3, 0, 0}},
};
#define N_CLIP ((int)(sizeof clip_pats / sizeof *clip_pats))

static void clip_specs(gcase *c, int pat, unsigned fx, unsigned flo, unsigned fhi) {
  const char *nm[3] = {"x", "lo", "hi"};
  double lo[3] = {-2, -1.75, -0.875}, hi[3] = {2, 0.25, 1.625};
  unsigned fl[3] = {fx, flo, fhi};
  for (int k = 0; k < 3; k++)
    c->in[k] =
        (ispec)IN(nm[k], D64, clip_pats[pat].r[k], clip_pats[pat].s[k][0], clip_pats[pat].s[k][1],
                  0, clip_pats[pat].dyn[k], lo[k], hi[k], 0.5, fl[k]);
}

START_TEST(clip_broadcast) {
  char what[128];
  snprintf(what, sizeof what, "clip %s", clip_pats[_i].name);
  gcase c = {.what = what, .n_in = 3, .build = b_clip, .arg = 0};
  clip_specs(&c, _i, F_WRT, F_WRT, F_WRT);
  check_grad(&c);
}
END_TEST

START_TEST(clip_variants) {
  gcase c = {.what = "clip variant", .n_in = 3, .build = b_clip, .arg = _i + 1};
  clip_specs(&c, 0, F_WRT, _i == 0 ? 0 : F_WRT, _i == 2 ? F_WRT : 0);
  if (_i == 2) /* softplus(x) >= 0 on multiples of 0.5 would tie: x off the grid */
    c.in[0].step = 0, c.in[0].lo = -2, c.in[0].hi = 2;
  check_grad(&c);
}
END_TEST

/* ----------------------------------------------------------------- where */

/* where(c > 0, a, b) (arg 0), where(c > 0, tanh(a), b * b) (arg 1),
** where(c, a, 0.5) with a float condition (arg 2) */
static kiln_node *b_where(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  kiln_node *cond = kiln_gt(in[0], kiln_lit(ctx, 0));
  switch (arg) {
  case 1: return kiln_where(cond, kiln_tanh(in[1]), kiln_mul(in[2], in[2]));
  case 2: return kiln_where(in[0], in[1], kiln_lit(ctx, 0.5));
  default: return kiln_where(cond, in[1], in[2]);
  }
}

START_TEST(where_broadcast) {
  static const struct {
    int r[3];
    int64_t s[3][2];
    unsigned dyn[3];
  } pats[] = {
      {{2, 2, 2}, {{2, 3}, {2, 3}, {2, 3}}, {0, 0, 0}},
      {{2, 1, 0}, {{2, 3}, {3, 0}, {0, 0}}, {0, 0, 0}},
      {{2, 2, 2}, {{2, 1}, {1, 3}, {2, 1}}, {0, 0, 0}},
      {{0, 2, 1}, {{0, 0}, {2, 3}, {3, 0}}, {0, 0, 0}},
      {{1, 1, 1}, {{4, 0}, {1, 0}, {4, 0}}, {0, 1, 1}},
      {{1, 1, 1}, {{1, 0}, {4, 0}, {1, 0}}, {1, 0, 0}},
  };
  int pat = _i % 6, arg = _i / 6;
  char what[64];
  snprintf(what, sizeof what, "where %d pattern %d", arg, pat);
  gcase c = {.what = what, .n_in = 3, .build = b_where, .arg = arg};
  const char *nm[3] = {"c", "a", "b"};
  for (int k = 0; k < 3; k++) /* c stays away from 0 (and is a wrt: it gets zeros) */
    c.in[k] =
        (ispec)IN(nm[k], D64, pats[pat].r[k], pats[pat].s[k][0], pats[pat].s[k][1], 0,
                  pats[pat].dyn[k], k == 0 ? 0.25 : -1.5, 1.5, 0, F_WRT | (k == 0 ? F_SIGN : 0));
  if (arg == 2) c.in[2].flags = 0;
  check_grad(&c);
}
END_TEST

/* ------------------------------------------------------------------ cast */

/* 0: sigmoid(float64(x32)); 1: tanh(float32(float64(x32))), a float32 cost;
** 2: float64(int32(x)) * x: no gradient through the integer, x's own;
** 3: float64(bool(x)) + softplus(x) */
static kiln_node *b_cast(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  (void)ctx;
  kiln_node *x = in[0];
  switch (arg) {
  case 0: return kiln_sigmoid(kiln_cast(x, D64));
  case 1: return kiln_tanh(kiln_cast(kiln_cast(x, D64), F32));
  case 2: return kiln_mul(kiln_cast(kiln_cast(x, I32), D64), x);
  default: return kiln_add(kiln_cast(kiln_cast(x, KILN_BOOL), D64), kiln_softplus(x));
  }
}

START_TEST(cast_paths) {
  gcase c = {.what = "cast", .n_in = 1, .build = b_cast, .arg = _i};
  /* on odd multiples of 0.25: int32(x) and bool(x) are constant nearby */
  c.in[0] = (ispec)IN("x", _i <= 1 ? F32 : D64, 2, 2, 3, 0, 1, 0.25, 2.75, 0.5, F_WRT | F_SIGN);
  c.r32 = _i == 1;
  check_grad(&c);
}
END_TEST

/* -------------------------------------------- ops no gradient flows through */

/* The cost reaches x only through the op: the gradient is zeros (x is
** connected, as in Theano), and so is the finite difference away from the
** op's jumps. arg 7 mixes: where(x < y, x * x, exp(y)), the condition
** passing nothing. */
static kiln_node *b_nograd(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  kiln_node *x = in[0], *y = in[1], *r;
  switch (arg) {
  case 0: r = kiln_sign(x); break;
  case 1: r = kiln_cast(kiln_lt(x, y), D64); break;
  case 2: r = kiln_cast(kiln_eq(x, y), D64); break;
  case 3: r = kiln_cast(kiln_logical_and(x, y), D64); break;
  case 4: r = kiln_cast(kiln_logical_not(x), D64); break;
  case 5: r = kiln_cast(kiln_isnan(kiln_log(x)), D64); break;
  case 6: r = kiln_cast(kiln_logical_or(kiln_isinf(x), kiln_ge(y, x)), D64); break;
  default: r = kiln_where(kiln_lt(x, y), kiln_mul(x, x), kiln_exp(y)); break;
  }
  return kiln_mul(r, kiln_lit(ctx, 3.0));
}
#define N_NOGRAD 8

START_TEST(no_gradient_through) {
  gcase c = {.what = "no gradient", .n_in = 2, .build = b_nograd, .arg = _i};
  c.in[0] = (ispec)IN("x", D64, 2, 2, 3, 0, 0, 0.25, 2.25, 0.5, F_WRT | F_SIGN);
  c.in[1] = (ispec)IN("y", D64, 1, 3, 0, 0, 1, -2, 2, 0.5, _i == 7 ? F_WRT : 0);
  check_grad(&c);
}
END_TEST

/* ---------------------------------------------------------- second order */

static kiln_node *inner_grad(kiln_node *cost, kiln_node *wrt) {
  kiln_node *g = NULL;
  return kiln_grad(cost, 1, &wrt, &g, 0) == KILN_OK ? g : NULL;
}

/* The gradient graph of op, differentiated again: the rules of the nodes
** gradients are made of (sqr, where, sigmoid in softplus', exp in expm1').
** relu's and clip's inner gradients reach x only through comparisons:
** zeros, connected. */
static kiln_node *b_second(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  kiln_node *x = in[0];
  kiln_node *R = rand_const(ctx, D64, 2, (int64_t[]){2, 3}, 61);
  if (arg == N_G)
    return inner_grad(kiln_sum(kiln_mul(kiln_clip(x, kiln_lit(ctx, -1.0), kiln_lit(ctx, 1.0)), R)),
                      x);
  return inner_grad(kiln_sum(kiln_mul(un_op(arg, x), R)), x);
}

START_TEST(second_order) {
  gcase c = {.what = "second order", .n_in = 1, .build = b_second, .arg = _i};
  c.in[0] = (ispec)IN("x", D64, 2, 2, 3, 0, 0, -1.5, 1.5, 0, F_WRT);
  if (_i == G_LOG1P) c.in[0].lo = -0.5;
  if (_i == G_RELU || _i == N_G)
    c.in[0].lo = 0.25, c.in[0].hi = 1.75, c.in[0].step = 0.5, c.in[0].flags |= F_SIGN;
  check_grad(&c);
}
END_TEST

/* ------------------------------------------------------- kinks by hand */

/* Gradients of sum(out * w) wrt the given inputs at hand-picked points,
** w = [1, 2, 3, ...] so every element is told apart. */
static void grads_at(kiln_ctx *ctx, kiln_node *out, int n_wrt, kiln_node *const *wrt, int n_in,
                     kiln_node *const *ins, kiln_tensor *const *vals, kiln_tensor **res) {
  int64_t n = 1;
  for (int d = 0; d < kiln_node_rank(out); d++)
    n *= kiln_node_dim(out, d);
  double w[16];
  ck_assert_int_le(n, 16);
  for (int i = 0; i < n; i++)
    w[i] = i + 1;
  int64_t shape[KILN_MAX_RANK];
  for (int d = 0; d < kiln_node_rank(out); d++)
    shape[d] = kiln_node_dim(out, d);
  kiln_node *W = kiln_const(ctx, D64, kiln_node_rank(out), shape, w);
  kiln_node *cost = kiln_sum(kiln_mul(out, W));
  kiln_node *g[4];
  ck_assert_int_le(n_wrt, 4);
  ck_assert_msg(kiln_grad(cost, n_wrt, wrt, g, 0) == KILN_OK, "%s", kiln_errmsg(ctx));
  kiln_function *f = kiln_function_new(ctx, "kink", n_in, ins, n_wrt, g, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  const kiln_tensor *o[4];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)vals, o), KILN_OK);
  kiln_tensor *ref[4];
  ck_assert_int_eq(kl_ref_run(ctx, n_in, ins, (const kiln_tensor *const *)vals, n_wrt, g, ref),
                   KILN_OK);
  for (int k = 0; k < n_wrt; k++) {
    ck_assert(kt_same_bits(o[k], ref[k]));
    kiln_tensor_free(ref[k]);
    res[k] = copy_tensor(o[k]);
  }
}

static void expect_vals(const kiln_tensor *t, int n, const double *want, const char *what) {
  ck_assert_int_eq(kiln_tensor_size(t), n);
  for (int i = 0; i < n; i++)
    ck_assert_msg(kiln_tensor_get(t, i) == want[i], "%s: element %d is %.17g, want %.17g", what, i,
                  kiln_tensor_get(t, i), want[i]);
}

/* clip: x on lo or hi gets the gradient (Theano's closed interval); below
** lo it goes to lo, above hi to hi; with lo > hi all of it to hi. relu: 0 at
** x == 0 and -0.0. */
START_TEST(kinks_by_hand) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_input(ctx, "x", D64, 1, (int64_t[]){7});
  kiln_node *lo = kiln_input(ctx, "lo", D64, 1, (int64_t[]){7});
  kiln_node *hi = kiln_input(ctx, "hi", D64, 1, (int64_t[]){7});
  kiln_node *ins[3] = {x, lo, hi};
  /*                       x == lo  x == hi  inside  below  above  lo>hi  x==lo==hi */
  double xv[7] = {-1, 1, 0.5, -3, 3, 0, 2};
  double lv[7] = {-1, -1, -1, -1, -1, 2, 2};
  double hv[7] = {1, 1, 1, 1, 1, 1, 2};
  kiln_tensor *v[3] = {kt_tensor(D64, 1, (int64_t[]){7}, xv), kt_tensor(D64, 1, (int64_t[]){7}, lv),
                       kt_tensor(D64, 1, (int64_t[]){7}, hv)};
  kiln_tensor *g[3];
  grads_at(ctx, kiln_clip(x, lo, hi), 3, ins, 3, ins, v, g);
  expect_vals(g[0], 7, (double[]){1, 2, 3, 0, 0, 0, 7}, "clip d/dx");
  expect_vals(g[1], 7, (double[]){0, 0, 0, 4, 0, 0, 0}, "clip d/dlo");
  expect_vals(g[2], 7, (double[]){0, 0, 0, 0, 5, 6, 0}, "clip d/dhi");
  for (int k = 0; k < 3; k++)
    kiln_tensor_free(g[k]);
  /* relu and the smooth ops at points worked out by hand */
  double rv[7] = {-1, -0.0, 0.0, 2, 0.0, -800, 800};
  kiln_tensor *r = kt_tensor(D64, 1, (int64_t[]){7}, rv);
  kiln_node *outs[] = {kiln_relu(x),     kiln_sigmoid(x), kiln_tanh(x),
                       kiln_softplus(x), kiln_log1p(x),   kiln_expm1(x)};
  static const double want[6][7] = {
      {0, 0, 0, 4, 0, 0, 7},           /* relu': 1 where x > 0 */
      {-1, 0.5, 0.75, -1, 1.25, 0, 0}, /* s(1-s): 0.25 at 0, 0 at +-800 */
      {-1, 2, 3, -1, 5, 0, 0},         /* 1 - tanh^2: 1 at 0, 0 at +-800 */
      {-1, 1, 1.5, -1, 2.5, 0, 7},     /* sigmoid: 0.5 at 0, 0 and 1 at -+800 */
      {INFINITY, 2, 3, -1, 5, -1, -1}, /* 1/(1+x): 1 at 0, 1/0 at -1 */
      {-1, 2, 3, -1, 5, 0, INFINITY},  /* exp(x): 1 at 0, 0 and inf at -+800 */
  };
  for (int k = 0; k < 6; k++) {
    kiln_tensor *gk;
    grads_at(ctx, outs[k], 1, &x, 3, ins, (kiln_tensor *[]){r, v[1], v[2]}, &gk);
    for (int i = 0; i < 7; i++) {
      if (want[k][i] == -1) continue; /* not a round value (-1 never is a gradient here) */
      ck_assert_msg(kiln_tensor_get(gk, i) == want[k][i], "op %d element %d: %.17g, want %.17g", k,
                    i, kiln_tensor_get(gk, i), want[k][i]);
    }
    if (k == 1) /* sigmoid'(2) * 4 = 4 s(2) (1 - s(2)), s(2) = 0.8807970779778823 */
      ck_assert_double_eq_tol(kiln_tensor_get(gk, 3),
                              4 * 0.8807970779778823 * (1 - 0.8807970779778823), 1e-15);
    if (k == 2) /* 4 (1 - tanh(2)^2) */
      ck_assert_double_eq_tol(kiln_tensor_get(gk, 3),
                              4 * (1 - 0.9640275800758169 * 0.9640275800758169), 1e-15);
    kiln_tensor_free(gk);
  }
  kiln_tensor_free(r);
  for (int k = 0; k < 3; k++)
    kiln_tensor_free(v[k]);
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- main */

int main(void) {
  Suite *s = suite_create("grad_elem");
  TCase *tc = tcase_create("elementwise");
  tcase_add_loop_test(tc, unary_op, 0, N_G * 4);
  tcase_add_loop_test(tc, unary_broadcast, 0, N_G * 2 * N_PAT);
  tcase_add_loop_test(tc, clip_broadcast, 0, N_CLIP);
  tcase_add_loop_test(tc, clip_variants, 0, 3);
  tcase_add_loop_test(tc, where_broadcast, 0, 18);
  tcase_add_loop_test(tc, cast_paths, 0, 4);
  tcase_add_loop_test(tc, no_gradient_through, 0, N_NOGRAD);
  tcase_add_loop_test(tc, second_order, 0, N_G + 1);
  tcase_add_test(tc, kinks_by_hand);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
