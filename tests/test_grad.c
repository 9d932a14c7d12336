/*
** test_grad.c -- kiln_grad (compiler/grad.c) held to finite differences.
**
** Every case goes through one helper, check_grad(): it builds a graph from a
** builder callback, makes the cost sum(out * R) with R a fixed random
** constant of out's run-time shape (so every output element matters), asks
** kiln_grad for the gradients wrt the leaves marked F_WRT, and evaluates
** cost and gradients twice: compiled by the JIT and by the plain-C reference
** evaluator (kl_ref_run). The two must agree bit for bit, and the JIT
** gradient must match the central difference of the JIT cost for every
** element of every wrt. Expected values thus come from finite differences
** and the reference evaluator, never from the gradient code alone.
**
** Also: broadcasting (static and decided at call time), shared variables
** as wrt (float64 and float32, mixed as in the seed), several wrt, a wrt
** used several times, intermediate nodes as wrt, second-order gradients
** (gradients of gradient graphs: the rules of broadcast, sum_like, cast,
** sign and transposed dots), integer paths, and the error cases.
*/
#include "tests/gradcheck.h"

#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* the harness: tests/gradcheck.h */

/* ------------------------------------------------------- elementwise ops */

static kiln_node *b_unary(kiln_ctx *ctx, kiln_node *const *in, int op) {
  (void)ctx;
  switch (op) {
  case 0: return kiln_neg(in[0]);
  case 1: return kiln_sqr(in[0]);
  case 2: return kiln_sqrt(in[0]);
  case 3: return kiln_exp(in[0]);
  case 4: return kiln_log(in[0]);
  default: return kiln_abs(in[0]);
  }
}

static const struct {
  const char *name;
  double lo, hi;
  unsigned flags;
} un_ops[] = {{"neg", -2, 2, 0},     {"sqr", -2, 2, 0},  {"sqrt", 0.5, 3, 0},
              {"exp", -1.5, 1.5, 0}, {"log", 0.3, 3, 0}, {"abs", 0.2, 2, F_SIGN}};
#define N_UN 6

/* 3 shapes: (2,3) static, scalar, (?,?) given (3,2) */
START_TEST(unary_op) {
  int op = _i % N_UN, shp = _i / N_UN;
  gcase c = {.what = un_ops[op].name, .n_in = 1, .build = b_unary, .arg = op};
  ispec s = IN("x", D64, 2, 2, 3, 0, 0, un_ops[op].lo, un_ops[op].hi, 0, F_WRT | un_ops[op].flags);
  if (shp == 1) s.rank = 0;
  if (shp == 2) {
    s.shape[0] = 3;
    s.shape[1] = 2;
    s.dyn = 3;
  }
  c.in[0] = s;
  check_grad(&c);
}
END_TEST

static kiln_node *b_binary(kiln_ctx *ctx, kiln_node *const *in, int op) {
  (void)ctx;
  switch (op) {
  case 0: return kiln_add(in[0], in[1]);
  case 1: return kiln_sub(in[0], in[1]);
  case 2: return kiln_mul(in[0], in[1]);
  case 3: return kiln_div(in[0], in[1]);
  case 4: return kiln_pow(in[0], in[1]);
  case 5: return kiln_maximum(in[0], in[1]);
  default: return kiln_minimum(in[0], in[1]);
  }
}

/* Value ranges of (a, b) per op: pow keeps its base > 0, div its divisor
** away from 0, maximum/minimum put a on multiples of 0.5 and b a quarter off,
** so |a - b| >= 0.25 and finite differences never cross a tie. */
static const struct {
  const char *name;
  double alo, ahi, astep, blo, bhi, bstep;
  unsigned bflags;
} bin_ops[] = {
    {"add", -2, 2, 0, -2, 2, 0, 0},
    {"sub", -2, 2, 0, -2, 2, 0, 0},
    {"mul", -2, 2, 0, -2, 2, 0, 0},
    {"div", -2, 2, 0, 0.5, 2, 0, F_SIGN},
    {"pow", 0.5, 2, 0, -2, 2, 0, 0},
    {"maximum", -2, 2, 0.5, -1.75, 1.75, 0.5, 0},
    {"minimum", -2, 2, 0.5, -1.75, 1.75, 0.5, 0},
};
#define N_BIN 7

/* Shapes of (a, b) and which dims are dynamic; sa/sb are call-time shapes. */
static const struct {
  const char *name;
  int ra;
  int64_t sa[2];
  unsigned da;
  int rb;
  int64_t sb[2];
  unsigned db;
} patterns[] = {
    {"(2,3) (2,3)", 2, {2, 3}, 0, 2, {2, 3}, 0},
    {"(?,?)=(2,3) (?,?)=(2,3)", 2, {2, 3}, 3, 2, {2, 3}, 3},
    {"(2,3) (3,)", 2, {2, 3}, 0, 1, {3, 0}, 0},
    {"(3,) (2,3)", 1, {3, 0}, 0, 2, {2, 3}, 0},
    {"(2,1) (1,3)", 2, {2, 1}, 0, 2, {1, 3}, 0},
    {"() (2,3)", 0, {0, 0}, 0, 2, {2, 3}, 0},
    {"(2,3) ()", 2, {2, 3}, 0, 0, {0, 0}, 0},
    {"(1,) (4,)", 1, {1, 0}, 0, 1, {4, 0}, 0},
    {"(4,) (1,)", 1, {4, 0}, 0, 1, {1, 0}, 0},
    {"(?,)=(1,) (4,)", 1, {1, 0}, 1, 1, {4, 0}, 0},
    {"(4,) (?,)=(1,)", 1, {4, 0}, 0, 1, {1, 0}, 1},
    {"(?,)=(1,) (?,)=(4,)", 1, {1, 0}, 1, 1, {4, 0}, 1},
    {"(?,?)=(2,1) (?,?)=(1,3)", 2, {2, 1}, 3, 2, {1, 3}, 3},
    {"(?,)=(1,) (2,?)=(2,3)", 1, {1, 0}, 1, 2, {2, 3}, 2},
};
#define N_PAT 14

START_TEST(binary_op) {
  int op = _i % N_BIN, pat = _i / N_BIN;
  char what[128];
  snprintf(what, sizeof what, "%s %s", bin_ops[op].name, patterns[pat].name);
  gcase c = {.what = what, .n_in = 2, .build = b_binary, .arg = _i};
  c.in[0] = (ispec)IN("a", D64, patterns[pat].ra, patterns[pat].sa[0], patterns[pat].sa[1], 0,
                      patterns[pat].da, bin_ops[op].alo, bin_ops[op].ahi, bin_ops[op].astep, F_WRT);
  c.in[1] = (ispec)IN("b", D64, patterns[pat].rb, patterns[pat].sb[0], patterns[pat].sb[1], 0,
                      patterns[pat].db, bin_ops[op].blo, bin_ops[op].bhi, bin_ops[op].bstep,
                      F_WRT | bin_ops[op].bflags);
  c.arg = op;
  check_grad(&c);
}
END_TEST

/* Each operand alone as wrt (the other is a constant of the gradient). */
START_TEST(binary_op_one_wrt) {
  int op = _i % N_BIN, which = _i / N_BIN;
  gcase c = {.what = bin_ops[op].name, .n_in = 2, .build = b_binary, .arg = op};
  c.in[0] = (ispec)IN("a", D64, 2, 2, 3, 0, 0, bin_ops[op].alo, bin_ops[op].ahi, bin_ops[op].astep,
                      which == 0 ? F_WRT : 0);
  c.in[1] = (ispec)IN("b", D64, 1, 3, 0, 0, 0, bin_ops[op].blo, bin_ops[op].bhi, bin_ops[op].bstep,
                      bin_ops[op].bflags | (which == 1 ? F_WRT : 0));
  check_grad(&c);
}
END_TEST

/* --------------------------------------------------------------- reductions */

/* arg: 100 = all axes, else the axis + 10; +1000 for mean */
static kiln_node *b_reduce(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  (void)ctx;
  bool mean = arg >= 1000;
  int a = arg % 1000;
  if (a == 100) return mean ? kiln_mean(in[0]) : kiln_sum(in[0]);
  return mean ? kiln_mean_axis(in[0], a - 10) : kiln_sum_axis(in[0], a - 10);
}

static const struct {
  int arg;
  int rank;
  unsigned dyn;
} reductions[] = {
    {100, 3, 0},  {10, 3, 0},   {11, 3, 0},   {12, 3, 0},   {9, 3, 0},    {7, 3, 0},
    {1100, 3, 0}, {1010, 3, 0}, {1011, 3, 0}, {1012, 3, 0}, {1008, 3, 0}, {100, 3, 7},
    {11, 3, 7},   {1100, 3, 7}, {1012, 3, 7}, {1010, 3, 5}, {100, 1, 0},  {1100, 1, 1},
    {10, 1, 0},   {1010, 1, 1}, {100, 2, 2},  {1011, 2, 1},
};
#define N_RED ((int)(sizeof reductions / sizeof reductions[0]))

START_TEST(reduction) {
  char what[64];
  int arg = reductions[_i].arg, r = reductions[_i].rank;
  snprintf(what, sizeof what, "%s axis %d rank %d dyn %u", arg >= 1000 ? "mean" : "sum",
           arg % 1000 == 100 ? 99 : arg % 1000 - 10, r, reductions[_i].dyn);
  gcase c = {.what = what, .n_in = 1, .build = b_reduce, .arg = arg};
  c.in[0] = (ispec)IN("x", D64, r, r == 1 ? 5 : 2, 3, 4, reductions[_i].dyn, -2, 2, 0, F_WRT);
  check_grad(&c);
}
END_TEST

/* Sum of a reduction of a nonlinear function: the gradient of the reduction
** is broadcast back and meets a non-constant factor. */
static kiln_node *b_reduce_nl(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  kiln_node *s = b_reduce(ctx, (kiln_node *[]){kiln_exp(in[0])}, arg);
  return kiln_mul(s, s);
}

START_TEST(reduction_nonlinear) {
  static const int args[] = {100, 10, 11, 12, 1100, 1010, 1011, 1012};
  gcase c = {.what = "reduce(exp(x))^2", .n_in = 1, .build = b_reduce_nl, .arg = args[_i]};
  c.in[0] = (ispec)IN("x", D64, 3, 2, 3, 4, 0, -1, 1, 0, F_WRT);
  check_grad(&c);
}
END_TEST

/* --------------------------------------------------------------------- dot */

static kiln_node *b_dot(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  (void)ctx;
  (void)arg;
  return kiln_dot(in[0], in[1]);
}

static const struct {
  const char *name;
  int ra;
  int64_t sa[2];
  unsigned da;
  int rb;
  int64_t sb[2];
  unsigned db;
} dots[] = {
    {"v.v", 1, {4, 0}, 0, 1, {4, 0}, 0},         {"m.v", 2, {3, 4}, 0, 1, {4, 0}, 0},
    {"v.m", 1, {4, 0}, 0, 2, {4, 3}, 0},         {"m.m", 2, {2, 4}, 0, 2, {4, 3}, 0},
    {"m.m inner 1", 2, {3, 1}, 0, 2, {1, 2}, 0}, {"v.v dyn", 1, {5, 0}, 1, 1, {5, 0}, 1},
    {"m.v dyn", 2, {3, 4}, 3, 1, {4, 0}, 1},     {"v.m dyn", 1, {4, 0}, 1, 2, {4, 3}, 3},
    {"m.m dyn", 2, {2, 4}, 3, 2, {4, 3}, 3},
};
#define N_DOT 9

START_TEST(dot_product) {
  gcase c = {.what = dots[_i].name, .n_in = 2, .build = b_dot, .arg = _i};
  c.in[0] = (ispec)IN("A", D64, dots[_i].ra, dots[_i].sa[0], dots[_i].sa[1], 0, dots[_i].da, -1, 1,
                      0, F_WRT);
  c.in[1] = (ispec)IN("B", D64, dots[_i].rb, dots[_i].sb[0], dots[_i].sb[1], 0, dots[_i].db, -1, 1,
                      0, F_WRT);
  check_grad(&c);
}
END_TEST

/* kiln_dot of a vector and a matrix is numpy's (k).(k,n) -> (n). */
START_TEST(dot_vector_matrix_accepted) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *a = kiln_input(ctx, "a", D64, 1, (int64_t[]){4});
  kiln_node *B = kiln_input(ctx, "B", D64, 2, (int64_t[]){4, 3});
  kiln_node *y = kiln_dot(a, B);
  ck_assert_msg(y != NULL, "%s", kiln_errmsg(ctx));
  ck_assert_int_eq(kiln_node_rank(y), 1);
  ck_assert_int_eq(kiln_node_dim(y, 0), 3);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------- composite graphs */

/* 0: x*x + x (x used twice in one op and once more); 1: x*x*x + exp(x) - x;
** 2: mean(x) * x (a reduction and its input meet again) */
static kiln_node *b_reuse(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  (void)ctx;
  kiln_node *x = in[0];
  switch (arg) {
  case 0: return kiln_add(kiln_mul(x, x), x);
  case 1: return kiln_sub(kiln_add(kiln_mul(kiln_mul(x, x), x), kiln_exp(x)), x);
  default: return kiln_mul(kiln_mean(x), x);
  }
}

START_TEST(wrt_used_several_times) {
  gcase c = {.what = "reuse", .n_in = 1, .build = b_reuse, .arg = _i};
  c.in[0] = (ispec)IN("x", D64, 2, 2, 3, 0, 0, -2, 2, 0, F_WRT);
  check_grad(&c);
}
END_TEST

/* x*x + x: the gradient is 2x + 1 times R, checked against R's values. */
START_TEST(wrt_used_twice_accumulates) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *cost = kiln_sum(kiln_add(kiln_mul(x, x), x));
  kiln_node *g = NULL;
  ck_assert_int_eq(kiln_grad(cost, 1, &x, &g, 0), KILN_OK);
  kiln_function *f = kiln_function_new(ctx, "f", 1, &x, 1, &g, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  double xv[] = {-1.5, 0.25, 3.0};
  kiln_tensor *xt = kt_tensor(D64, 1, (int64_t[]){3}, xv);
  const kiln_tensor *o;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&xt, &o), KILN_OK);
  ck_assert_int_eq(kiln_tensor_size(o), 3);
  for (int i = 0; i < 3; i++)
    ck_assert_double_eq(kiln_tensor_get(o, i), 2 * xv[i] + 1);
  kiln_tensor_free(xt);
  kiln_ctx_free(ctx);
}
END_TEST

/* A small layer: sum(sqr(dot(W, x) + b - t)) wrt W, b (shared), x, t (inputs) at once. */
static kiln_node *b_layer(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  (void)ctx;
  kiln_node *z = kiln_sub(kiln_add(kiln_dot(in[0], in[1]), in[2]), in[3]);
  return arg ? kiln_exp(z) : kiln_sqr(z);
}

START_TEST(several_wrt) {
  gcase c = {.what = "layer", .n_in = 4, .build = b_layer, .arg = _i};
  c.in[0] = (ispec)IN("W", D64, 2, 2, 3, 0, 0, -1, 1, 0, F_WRT | F_SHARED);
  c.in[1] = (ispec)IN("x", D64, 1, 3, 0, 0, 1, -1, 1, 0, F_WRT);
  c.in[2] = (ispec)IN("b", D64, 1, 2, 0, 0, 0, -1, 1, 0, F_WRT | F_SHARED);
  c.in[3] = (ispec)IN("t", D64, 1, 2, 0, 0, 0, -1, 1, 0, F_WRT);
  check_grad(&c);
}
END_TEST

/* The same wrt twice in the list: both gradients are complete and equal. */
START_TEST(same_wrt_listed_twice) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *cost = kiln_sum(kiln_mul(kiln_exp(x), x));
  kiln_node *g[2] = {NULL, NULL};
  ck_assert_int_eq(kiln_grad(cost, 2, (kiln_node *[]){x, x}, g, 0), KILN_OK);
  ck_assert_ptr_nonnull(g[0]);
  ck_assert_ptr_nonnull(g[1]);
  kiln_function *f = kiln_function_new(ctx, "f", 1, &x, 2, g, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  double xv[] = {-1.0, 0.5};
  kiln_tensor *xt = kt_tensor(D64, 1, (int64_t[]){2}, xv);
  const kiln_tensor *o[2];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&xt, o), KILN_OK);
  ck_assert(kt_same_bits(o[0], o[1]));
  for (int i = 0; i < 2; i++) /* d/dx x e^x = (x + 1) e^x, to a few ulps */
    ck_assert_double_eq_tol(kiln_tensor_get(o[0], i), (xv[i] + 1) * exp(xv[i]), 1e-14);
  kiln_tensor_free(xt);
  kiln_ctx_free(ctx);
}
END_TEST

/* An intermediate node h = exp(x) * 0.5 as wrt, next to x itself. The
** gradient wrt h is the partial derivative with x held fixed: it is checked
** against finite differences of the same cost built with h as an input. */
static kiln_node *cost_of_h(kiln_ctx *ctx, kiln_node *h, kiln_node *x) {
  kiln_node *R = rand_const(ctx, D64, 2, (int64_t[]){2, 3}, 5);
  return kiln_name(kiln_add(kiln_sum(kiln_mul(kiln_sqr(h), R)), kiln_sum(kiln_mul(h, x))), "cost");
}

START_TEST(intermediate_wrt) {
  ispec s = IN("x", D64, 2, 2, 3, 0, 0, -1, 1, 0, 0);
  world w;
  world_init(&w, 1, &s, 11);
  kiln_node *x = w.node[0];
  kiln_node *h = kiln_name(kiln_mul(kiln_exp(x), kiln_lit(w.ctx, 0.5)), "h");
  kiln_node *cost = cost_of_h(w.ctx, h, x);
  kiln_node *outs[3] = {cost, NULL, NULL};
  ck_assert_int_eq(kiln_grad(cost, 2, (kiln_node *[]){h, x}, outs + 1, 0), KILN_OK);
  kiln_function *f = compile(&w, 3, outs);
  kiln_tensor *jr[3], *rr[3];
  run_jit(&w, f, 3, jr);
  run_ref(&w, 3, outs, rr);
  for (int i = 0; i < 3; i++)
    ck_assert(kt_same_bits(jr[i], rr[i]));
  fd_check(&w, f, 0, jr[2], false, "total derivative wrt x");

  /* the same cost with h an input holding h's value, x held fixed */
  ispec s2[2] = {IN("h", D64, 2, 2, 3, 0, 0, 0, 0, 0, F_WRT), s};
  world w2;
  world_init(&w2, 2, s2, 11);
  kiln_tensor *hv = ref_value(&w, h);
  memcpy(kiln_tensor_data(w2.val[0]), kiln_tensor_data(hv), 6 * sizeof(double));
  memcpy(kiln_tensor_data(w2.val[1]), kiln_tensor_data(w.val[0]), 6 * sizeof(double));
  kiln_node *cost2 = cost_of_h(w2.ctx, w2.node[0], w2.node[1]);
  kiln_function *f2 = compile(&w2, 1, &cost2);
  ck_assert_double_eq(jit_cost(&w2, f2), kiln_tensor_get(jr[0], 0));
  fd_check(&w2, f2, 0, jr[1], false, "partial derivative wrt intermediate h");
  kiln_tensor_free(hv);
  for (int i = 0; i < 3; i++) {
    kiln_tensor_free(jr[i]);
    kiln_tensor_free(rr[i]);
  }
  world_free(&w2);
  world_free(&w);
}
END_TEST

/* The cost itself as wrt: its gradient is 1. */
START_TEST(cost_as_wrt) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *cost = kiln_sum(kiln_exp(x));
  kiln_node *g = NULL;
  ck_assert_int_eq(kiln_grad(cost, 1, &cost, &g, 0), KILN_OK);
  ck_assert_ptr_nonnull(g);
  kiln_function *f = kiln_function_new(ctx, "f", 1, &x, 1, &g, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *xt = kt_tensor(D64, 1, (int64_t[]){2}, (double[]){1, 2});
  const kiln_tensor *o;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&xt, &o), KILN_OK);
  ck_assert_int_eq(kiln_tensor_rank(o), 0);
  ck_assert_double_eq(kiln_tensor_get(o, 0), 1.0);
  kiln_tensor_free(xt);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------ shared variables */

/* The seed: cost = sqr(target - sum(x * W)), x and target float32 inputs,
** W a float64 shared variable. */
static kiln_node *b_seed(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  (void)ctx;
  (void)arg;
  return kiln_sqr(kiln_sub(in[1], kiln_sum(kiln_mul(in[0], in[2]))));
}

START_TEST(shared_seed_mixed) {
  /* _i: 0 wrt W only; 1 wrt W, x, target */
  unsigned fw = _i ? F_WRT : 0;
  gcase c = {.what = "seed", .n_in = 3, .build = b_seed, .arg = _i};
  c.in[0] = (ispec)IN("x", F32, 1, 4, 0, 0, 1, 0.5, 1.5, 0, fw);
  c.in[1] = (ispec)IN("target", F32, 0, 0, 0, 0, 0, 2, 4, 0, fw);
  c.in[2] = (ispec)IN("W", D64, 1, 4, 0, 0, 0, 0.1, 0.4, 0, F_WRT | F_SHARED);
  check_grad(&c);
}
END_TEST

/* A float32 shared variable in a float64 computation, and in a float32 one. */
static kiln_node *b_v32(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  (void)ctx;
  (void)arg;
  return kiln_sqr(kiln_sub(kiln_mul(in[0], in[1]), kiln_exp(in[0])));
}

START_TEST(shared_float32) {
  gcase c = {.what = _i ? "float32 shared, float32 cost" : "float32 shared, float64 cost",
             .n_in = 2,
             .build = b_v32,
             .arg = _i,
             .r32 = _i == 1};
  c.in[0] = (ispec)IN("V", F32, 2, 2, 3, 0, 0, -1, 1, 0, F_WRT | F_SHARED);
  c.in[1] = (ispec)IN("d", _i ? F32 : D64, 1, 3, 0, 0, 1, -1, 1, 0, F_WRT);
  check_grad(&c);
}
END_TEST

/* The seed's training step: W <- W - 0.1 grad. After each call W equals the
** reference evaluation of the update made before the call, bit for bit, and
** the gradient the step used matches finite differences at that W. */
START_TEST(shared_update_step) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_fvector(ctx, "x"), *target = kiln_fscalar(ctx, "target");
  double w0[] = {0.1, 0.25, 0.15, 0.3};
  kiln_node *W = kiln_shared(ctx, "W", D64, 1, (int64_t[]){4}, w0);
  kiln_node *cost = kiln_sqr(kiln_sub(target, kiln_sum(kiln_mul(x, W))));
  kiln_node *g = NULL;
  ck_assert_int_eq(kiln_grad(cost, 1, &W, &g, 0), KILN_OK);
  ck_assert_int_eq(kiln_node_dtype(g), KILN_FLOAT64);
  kiln_node *Wn = kiln_sub(W, kiln_mul(kiln_lit(ctx, 0.1), g));
  kiln_update up = {W, Wn};
  kiln_node *in[] = {x, target};
  kiln_function *f = kiln_function_new(ctx, "f", 2, in, 1, &cost, 1, &up);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *args[2] = {kt_tensor(F32, 1, (int64_t[]){4}, (double[]){1, 0.5, -1, 2}),
                          kt_tensor(F32, 0, NULL, (double[]){10})};
  for (int step = 0; step < 3; step++) {
    kiln_tensor *expect[2];
    kiln_node *outs[2] = {Wn, g};
    ck_assert_int_eq(kl_ref_run(ctx, 2, in, (const kiln_tensor *const *)args, 2, outs, expect),
                     KILN_OK);
    /* the gradient by central differences of the cost in W */
    for (int i = 0; i < 4; i++) {
      double c2[2];
      for (int s = 0; s < 2; s++) {
        kiln_tensor *wv = copy_tensor(kiln_shared_value(W));
        ((double *)kiln_tensor_data(wv))[i] += s ? -1e-6 : 1e-6;
        kiln_tensor *cv;
        kiln_node *wc = kiln_shared(ctx, "Wc", D64, 1, (int64_t[]){4}, kiln_tensor_data(wv));
        kiln_node *cc = kiln_sqr(kiln_sub(target, kiln_sum(kiln_mul(x, wc))));
        ck_assert_int_eq(kl_ref_run(ctx, 2, in, (const kiln_tensor *const *)args, 1, &cc, &cv),
                         KILN_OK);
        c2[s] = kiln_tensor_get(cv, 0);
        kiln_tensor_free(cv);
        kiln_tensor_free(wv);
      }
      double n = (c2[0] - c2[1]) / 2e-6, a = kiln_tensor_get(expect[1], i);
      ck_assert_msg(fabs(a - n) <= 1e-5 + 1e-3 * fabs(n), "step %d: dW[%d] %g vs fd %g", step, i, a,
                    n);
    }
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)args, NULL), KILN_OK);
    ck_assert_msg(kt_same_bits(kiln_shared_value(W), expect[0]), "step %d: W differs", step);
    kiln_tensor_free(expect[0]);
    kiln_tensor_free(expect[1]);
  }
  kiln_tensor_free(args[0]);
  kiln_tensor_free(args[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------ integer paths */

/* 0: x * i; 1: pow(x, i); 2: x * mean(i) + sum(i) * exp(x); 3: x / i32 (i != 0) */
static kiln_node *b_int(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  (void)ctx;
  kiln_node *x = in[0], *i = in[1];
  switch (arg) {
  case 0: return kiln_mul(x, i);
  case 1: return kiln_pow(x, i);
  case 2: return kiln_add(kiln_mul(x, kiln_mean(i)), kiln_mul(kiln_sum(i), kiln_exp(x)));
  default: return kiln_div(x, i);
  }
}

START_TEST(integer_input_not_differentiated) {
  gcase c = {.what = "int path", .n_in = 2, .build = b_int, .arg = _i};
  c.in[0] = (ispec)IN("x", D64, 2, 2, 3, 0, 0, 0.5, 2, 0, F_WRT);
  c.in[1] = (ispec)IN("i", I32, 1, 3, 0, 0, 1, _i == 3 ? 1 : -3, 3, 1, _i == 3 ? F_SIGN : 0);
  check_grad(&c);
}
END_TEST

/* maximum's gradient wrt a is where(a >= b, g, 0): a second gradient wrt a
** only meets a through the comparison. With DISCONNECTED_ZERO it is zeros
** (and finite differences agree, away from ties). */
START_TEST(second_order_through_comparison) {
  ispec s[2] = {IN("a", D64, 1, 4, 0, 0, 0, -2, 2, 0.5, 0),
                IN("b", D64, 1, 4, 0, 0, 0, -1.75, 1.75, 0.5, 0)};
  world w;
  world_init(&w, 2, s, 3);
  kiln_node *a = w.node[0], *b = w.node[1];
  kiln_node *R = rand_const(w.ctx, D64, 1, (int64_t[]){4}, 1);
  kiln_node *R2 = rand_const(w.ctx, D64, 1, (int64_t[]){4}, 2);
  kiln_node *ga = NULL, *outs[2] = {NULL, NULL};
  ck_assert_int_eq(kiln_grad(kiln_sum(kiln_mul(kiln_maximum(a, b), R)), 1, &a, &ga, 0), KILN_OK);
  outs[0] = kiln_sum(kiln_mul(ga, R2));
  ck_assert_int_eq(kiln_grad(outs[0], 1, &a, outs + 1, KILN_GRAD_DISCONNECTED_ZERO), KILN_OK);
  ck_assert_ptr_nonnull(outs[1]);
  kiln_function *f = compile(&w, 2, outs);
  kiln_tensor *jr[2], *rr[2];
  run_jit(&w, f, 2, jr);
  run_ref(&w, 2, outs, rr);
  ck_assert(kt_same_bits(jr[1], rr[1]));
  ck_assert_int_eq(kiln_tensor_size(jr[1]), 4);
  for (int i = 0; i < 4; i++)
    ck_assert_double_eq(kiln_tensor_get(jr[1], i), 0.0);
  fd_check(&w, f, 0, jr[1], false, "second order through maximum");
  for (int i = 0; i < 2; i++) {
    kiln_tensor_free(jr[i]);
    kiln_tensor_free(rr[i]);
  }
  world_free(&w);
}
END_TEST

/* The same second gradient without the flag. The cost does depend on a
** (through the comparison), as with Theano, where comparisons pass a zero
** gradient (connected, not disconnected): KILN_OK and zeros, like abs's sign,
** not a "does not depend on" error. A dependence only through a shape (the
** inner gradient of sum(2 x) for a dynamic x is sum_like(2, x)) stays
** disconnected, as Theano's x.shape is. */
START_TEST(second_order_comparison_default_flags) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *a = kiln_dvector(ctx, "a"), *b = kiln_dvector(ctx, "b");
  kiln_node *ga = NULL, *g2 = a;
  for (int op = 0; op < 2; op++) {
    kiln_node *m = op ? kiln_minimum(a, b) : kiln_maximum(a, b);
    ck_assert_int_eq(kiln_grad(kiln_sum(kiln_mul(m, kiln_lit(ctx, 3.0))), 1, &a, &ga, 0), KILN_OK);
    kiln_status st = kiln_grad(kiln_sum(kiln_mul(ga, ga)), 1, &a, &g2, 0);
    ck_assert_msg(st == KILN_OK, "%s: status %d: %s", op ? "minimum" : "maximum", (int)st,
                  kiln_errmsg(ctx));
    ck_assert_ptr_nonnull(g2);
    kiln_node *in[2] = {a, b};
    kiln_function *f = kiln_function_new(ctx, "f", 2, in, 1, &g2, 0, NULL);
    ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
    kiln_tensor *v[2] = {kt_tensor(D64, 1, (int64_t[]){3}, (double[]){1, -2, 0.5}),
                         kt_tensor(D64, 1, (int64_t[]){3}, (double[]){0, 2, -0.5})};
    const kiln_tensor *o;
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)v, &o), KILN_OK);
    ck_assert_int_eq(kiln_tensor_size(o), 3);
    for (int i = 0; i < 3; i++)
      ck_assert_double_eq(kiln_tensor_get(o, i), 0.0);
    kiln_tensor_free(v[0]);
    kiln_tensor_free(v[1]);
  }
  kiln_node *x = kiln_dvector(ctx, "x"), *gx = NULL, *g3 = x;
  ck_assert_int_eq(kiln_grad(kiln_sum(kiln_mul(x, kiln_lit(ctx, 2.0))), 1, &x, &gx, 0), KILN_OK);
  ck_assert_int_eq(kiln_grad(kiln_sum(gx), 1, &x, &g3, 0), KILN_NOGRAD);
  ck_assert_ptr_null(g3);
  ck_assert_msg(has(kiln_errmsg(ctx), "'x'"), "message: %s", kiln_errmsg(ctx));
  kiln_ctx_free(ctx);
}
END_TEST

/* Ties: maximum/minimum pick a (the first operand) on ties, 0.0 and -0.0
** included, and so does their gradient: a gets all of it, b none. */
START_TEST(max_min_ties_go_to_first) {
  for (int op = 0; op < 2; op++) {
    kiln_ctx *ctx = kiln_ctx_new();
    kiln_node *a = kiln_dvector(ctx, "a"), *b = kiln_dvector(ctx, "b");
    kiln_node *R = rand_const(ctx, D64, 1, (int64_t[]){4}, 8);
    kiln_node *m = op ? kiln_minimum(a, b) : kiln_maximum(a, b);
    kiln_node *outs[3] = {kiln_sum(kiln_mul(m, R)), NULL, NULL};
    ck_assert_int_eq(kiln_grad(outs[0], 2, (kiln_node *[]){a, b}, outs + 1, 0), KILN_OK);
    outs[0] = kiln_mul(R, kiln_lit(ctx, 1.0)); /* R's values, through the reference */
    kiln_node *in[2] = {a, b};
    kiln_function *f = kiln_function_new(ctx, "f", 2, in, 3, outs, 0, NULL);
    ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
    kiln_tensor *v[2] = {kt_tensor(D64, 1, (int64_t[]){4}, (double[]){1.5, 0.0, -0.0, -2}),
                         kt_tensor(D64, 1, (int64_t[]){4}, (double[]){1.5, -0.0, 0.0, -2})};
    const kiln_tensor *o[3];
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)v, o), KILN_OK);
    kiln_tensor *ref[3];
    ck_assert_int_eq(kl_ref_run(ctx, 2, in, (const kiln_tensor *const *)v, 3, outs, ref), KILN_OK);
    for (int i = 0; i < 4; i++) {
      ck_assert_double_eq(kiln_tensor_get(o[1], i), kiln_tensor_get(ref[0], i));
      ck_assert_double_eq(kiln_tensor_get(o[2], i), 0.0);
    }
    for (int i = 1; i < 3; i++)
      ck_assert(kt_same_bits(o[i], ref[i]));
    for (int i = 0; i < 3; i++)
      kiln_tensor_free(ref[i]);
    kiln_tensor_free(v[0]);
    kiln_tensor_free(v[1]);
    kiln_ctx_free(ctx);
  }
}
END_TEST

/* ---------------------------------------------------------- second order */

/* The builder returns a gradient graph; check_grad differentiates it again
** (a Hessian-vector product), which runs the rules of the nodes that
** gradients are made of: broadcast, sum_like, cast, sign, transposed dots. */
static kiln_node *inner_grad(kiln_node *cost, kiln_node *wrt) {
  kiln_node *g = NULL;
  return kiln_grad(cost, 1, &wrt, &g, 0) == KILN_OK ? g : NULL;
}

static kiln_node *b_second(kiln_ctx *ctx, kiln_node *const *in, int arg) {
  kiln_node *x = in[0], *y = in[1];
  const int64_t s23[] = {2, 3}, s2[] = {2}, s3[] = {3};
  kiln_node *R23 = rand_const(ctx, D64, 2, s23, 41);
  switch (arg) {
  case 0: return inner_grad(kiln_sum(kiln_mul(kiln_sqr(x), R23)), x);
  case 1: return inner_grad(kiln_sum(kiln_mul(kiln_sqrt(x), R23)), x);
  case 2: return inner_grad(kiln_sum(kiln_mul(kiln_exp(x), R23)), x);
  case 3: return inner_grad(kiln_sum(kiln_mul(kiln_log(x), R23)), x);
  case 4: return inner_grad(kiln_sum(kiln_mul(kiln_abs(x), R23)), x); /* sign: zeros */
  case 5: return inner_grad(kiln_sum(kiln_mul(kiln_pow(x, y), R23)), x);
  case 6: return inner_grad(kiln_sum(kiln_mul(kiln_div(x, y), R23)), y);
  case 7: /* y (3,) broadcast over x (2,3): the inner gradient sums (sum_like) */
    return inner_grad(kiln_sum(kiln_mul(kiln_mul(kiln_sqr(x), y), R23)), y);
  case 8: /* the inner gradient broadcasts (bcast) a reduction's gradient */
    return inner_grad(
        kiln_sum(kiln_mul(kiln_sqr(kiln_sum_axis(x, 1)), rand_const(ctx, D64, 1, s2, 42))), x);
  case 9:
    return inner_grad(
        kiln_sum(kiln_mul(kiln_sqr(kiln_mean_axis(x, 0)), rand_const(ctx, D64, 1, s3, 43))), x);
  case 10: /* dot (2,4).(4,3): dA = dot(R, B^T) */
    return inner_grad(kiln_sum(kiln_mul(kiln_dot(x, y), R23)), x);
  case 11: /* dB = dot(A^T, R) */
    return inner_grad(
        kiln_sum(kiln_mul(kiln_dot(x, y), rand_const(ctx, D64, 2, (int64_t[]){2, 3}, 44))), y);
  case 12: /* dot (2,3).(3): dv = dot(A^T, r) */
    return inner_grad(kiln_sum(kiln_mul(kiln_dot(x, y), rand_const(ctx, D64, 1, s2, 45))), y);
  case 13: /* dA = bcast(r) * v */
    return inner_grad(kiln_sum(kiln_mul(kiln_dot(x, y), rand_const(ctx, D64, 1, s2, 46))), x);
  case 14: /* dot (3).(3,2) with a = x: da = dot(B, r) */
    return inner_grad(kiln_sum(kiln_mul(kiln_dot(x, y), rand_const(ctx, D64, 1, s2, 47))), x);
  case 15: /* dB = bcast(a) * r */
    return inner_grad(kiln_sum(kiln_mul(kiln_dot(x, y), rand_const(ctx, D64, 1, s2, 48))), y);
  case 16: /* the seed's gradient wrt W (float64), differentiated wrt x (float32): casts */
    return inner_grad(kiln_sqr(kiln_sub(kiln_lit(ctx, 3.0), kiln_sum(kiln_mul(x, y)))), y);
  default: /* a dynamic (?,) y broadcast at run time against (2,3) x */
    return inner_grad(kiln_sum(kiln_mul(kiln_mul(kiln_exp(x), y), R23)), y);
  }
}

START_TEST(second_order) {
  ispec x = IN("x", D64, 2, 2, 3, 0, 0, -1, 1, 0, F_WRT);
  ispec y = IN("y", D64, 2, 2, 3, 0, 0, -1, 1, 0, F_WRT);
  switch (_i) {
  case 1:
  case 3: x.lo = 0.5, x.hi = 2; break;
  case 4: x.lo = 0.2, x.hi = 1, x.flags |= F_SIGN; break;
  case 5: x.lo = 0.5, x.hi = 2; break;
  case 6: y.lo = 0.5, y.hi = 2, y.flags |= F_SIGN; break;
  case 7: y = (ispec)IN("y", D64, 1, 3, 0, 0, 0, -1, 1, 0, F_WRT); break;
  case 8:
  case 9: y.flags = 0; break;
  case 10:
  case 11:
    x = (ispec)IN("x", D64, 2, 2, 4, 0, 0, -1, 1, 0, F_WRT);
    y = (ispec)IN("y", D64, 2, 4, 3, 0, 0, -1, 1, 0, F_WRT);
    break;
  case 12:
  case 13: y = (ispec)IN("y", D64, 1, 3, 0, 0, 0, -1, 1, 0, F_WRT); break;
  case 14:
  case 15:
    x = (ispec)IN("x", D64, 1, 3, 0, 0, 0, -1, 1, 0, F_WRT);
    y = (ispec)IN("y", D64, 2, 3, 2, 0, 0, -1, 1, 0, F_WRT);
    break;
  case 16:
    x = (ispec)IN("x", F32, 1, 4, 0, 0, 1, 0.5, 1.5, 0, F_WRT);
    y = (ispec)IN("y", D64, 1, 4, 0, 0, 0, 0.1, 0.4, 0, F_WRT | F_SHARED);
    break;
  case 17: y = (ispec)IN("y", D64, 1, 1, 0, 0, 1, -1, 1, 0, F_WRT); break;
  default: break;
  }
  /* where the inner gradient does not depend on a leaf, it is not a wrt */
  if (_i == 0 || (_i >= 1 && _i <= 4)) y.flags &= ~F_WRT;
  if (_i == 10 || _i == 13 || _i == 14) x.flags &= ~F_WRT;
  if (_i == 7 || _i == 11 || _i == 12 || _i == 15 || _i == 17) y.flags &= ~F_WRT;
  gcase c = {.what = "second order", .n_in = 2, .build = b_second, .arg = _i};
  c.in[0] = x;
  c.in[1] = y;
  check_grad(&c);
}
END_TEST
#define N_SECOND 18

/* ------------------------------------------------------------------ errors */

START_TEST(error_nonscalar_cost) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_input(ctx, "x", D64, 2, (int64_t[]){2, 3});
  kiln_node *v = kiln_dvector(ctx, "v");
  kiln_node *c1 = kiln_name(kiln_exp(x), "vcost");
  kiln_node *g[2] = {x, x};
  ck_assert_int_eq(kiln_grad(c1, 1, &x, g, 0), KILN_NOGRAD);
  ck_assert_ptr_null(g[0]);
  ck_assert_int_eq(kiln_errcode(ctx), KILN_NOGRAD);
  const char *m = kiln_errmsg(ctx);
  ck_assert_msg(has(m, "'vcost'") && has(m, "(2, 3)"), "message: %s", m);
  /* a dynamic shape, and a vector */
  kiln_node *c2 = kiln_name(kiln_mul(v, kiln_lit(ctx, 2.0)), "vec_cost");
  g[0] = g[1] = x;
  ck_assert_int_eq(kiln_grad(c2, 2, (kiln_node *[]){v, v}, g, 0), KILN_NOGRAD);
  ck_assert_ptr_null(g[0]);
  ck_assert_ptr_null(g[1]);
  m = kiln_errmsg(ctx);
  ck_assert_msg(has(m, "'vec_cost'") && has(m, "(?,)"), "message: %s", m);
  kiln_node *c3 = kiln_name(kiln_sum_axis(x, 0), "rowsum");
  ck_assert_int_eq(kiln_grad(c3, 1, &x, g, 0), KILN_NOGRAD);
  m = kiln_errmsg(ctx);
  ck_assert_msg(has(m, "'rowsum'") && has(m, "(3,)"), "message: %s", m);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(error_disconnected) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *z = kiln_dvector(ctx, "zz");
  kiln_node *cost = kiln_name(kiln_sum(kiln_exp(x)), "c");
  kiln_node *late = kiln_dmatrix(ctx, "late"); /* built after the cost */
  kiln_node *g[2] = {x, x};
  ck_assert_int_eq(kiln_grad(cost, 2, (kiln_node *[]){x, z}, g, 0), KILN_NOGRAD);
  ck_assert_ptr_null(g[0]); /* x's gradient was fine: still cleared */
  ck_assert_ptr_null(g[1]);
  const char *m = kiln_errmsg(ctx);
  ck_assert_msg(has(m, "'zz'"), "message: %s", m);
  ck_assert_msg(!has(m, "'x'"), "names the wrong wrt: %s", m);
  g[0] = x;
  ck_assert_int_eq(kiln_grad(cost, 1, &late, g, 0), KILN_NOGRAD);
  ck_assert_ptr_null(g[0]);
  m = kiln_errmsg(ctx);
  ck_assert_msg(has(m, "'late'"), "message: %s", m);
  /* a wrt used only by another graph */
  kiln_node *other = kiln_sum(kiln_mul(z, x));
  ck_assert_ptr_nonnull(other);
  g[0] = x;
  ck_assert_int_eq(kiln_grad(cost, 1, &z, g, 0), KILN_NOGRAD);
  ck_assert_ptr_null(g[0]);
  kiln_ctx_free(ctx);
}
END_TEST

/* With KILN_GRAD_DISCONNECTED_ZERO: zeros of the wrt's (run-time) shape and dtype. */
START_TEST(disconnected_zero) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *z = kiln_dmatrix(ctx, "z");                                 /* (?, ?) */
  kiln_node *s = kiln_input(ctx, "s", D64, 2, (int64_t[]){2, 2});        /* static */
  kiln_node *q = kiln_input(ctx, "q", F32, 2, (int64_t[]){KILN_DYN, 3}); /* float32 */
  kiln_node *cost = kiln_sum(kiln_exp(x));
  kiln_node *late = kiln_dvector(ctx, "late");
  kiln_node *wrt[5] = {z, x, s, q, late}, *g[5];
  ck_assert_int_eq(kiln_grad(cost, 5, wrt, g, KILN_GRAD_DISCONNECTED_ZERO), KILN_OK);
  for (int i = 0; i < 5; i++) {
    ck_assert_ptr_nonnull(g[i]);
    ck_assert_int_eq(kiln_node_dtype(g[i]), kiln_node_dtype(wrt[i]));
    ck_assert_int_eq(kiln_node_rank(g[i]), kiln_node_rank(wrt[i]));
  }
  kiln_node *in[5] = {x, z, s, q, late};
  kiln_function *f = kiln_function_new(ctx, "f", 5, in, 5, g, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  double v[16];
  for (int i = 0; i < 16; i++)
    v[i] = 1.0 + i;
  kiln_tensor *vals[5] = {
      kt_tensor(D64, 1, (int64_t[]){3}, v), kt_tensor(D64, 2, (int64_t[]){4, 2}, v),
      kt_tensor(D64, 2, (int64_t[]){2, 2}, v), kt_tensor(F32, 2, (int64_t[]){5, 3}, v),
      kt_tensor(D64, 1, (int64_t[]){0}, v)};
  const kiln_tensor *o[5];
  ck_assert_msg(kiln_call(f, (const kiln_tensor *const *)vals, o) == KILN_OK, "%s",
                kiln_errmsg(ctx));
  kiln_tensor *ref[5];
  ck_assert_int_eq(kl_ref_run(ctx, 5, in, (const kiln_tensor *const *)vals, 5, g, ref), KILN_OK);
  const kiln_tensor *shape_of[5] = {vals[1], vals[0], vals[2], vals[3], vals[4]};
  for (int i = 0; i < 5; i++) {
    ck_assert(kt_same_bits(o[i], ref[i]));
    ck_assert_int_eq(kiln_tensor_dtype(o[i]), kiln_tensor_dtype(shape_of[i]));
    ck_assert_int_eq(kiln_tensor_rank(o[i]), kiln_tensor_rank(shape_of[i]));
    for (int d = 0; d < kiln_tensor_rank(o[i]); d++)
      ck_assert_int_eq(kiln_tensor_dim(o[i], d), kiln_tensor_dim(shape_of[i], d));
    for (int64_t e = 0; e < kiln_tensor_size(o[i]); e++) {
      double want = i == 1 ? exp(v[e]) : 0.0;
      ck_assert_msg(kiln_tensor_get(o[i], e) == want, "grad %d [%lld] = %g", i, (long long)e,
                    kiln_tensor_get(o[i], e));
    }
    kiln_tensor_free(ref[i]);
  }
  for (int i = 0; i < 5; i++)
    kiln_tensor_free(vals[i]);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(error_integer_cost) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *i = kiln_ivector(ctx, "iv");
  kiln_node *c = kiln_name(kiln_sum(kiln_mul(i, i)), "icost");
  ck_assert_int_eq(kiln_node_dtype(c), KILN_INT64);
  kiln_node *g[1] = {x};
  ck_assert_int_eq(kiln_grad(c, 1, &x, g, 0), KILN_TYPE);
  ck_assert_ptr_null(g[0]);
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  ck_assert_msg(has(kiln_errmsg(ctx), "icost"), "message: %s", kiln_errmsg(ctx));
  /* also with the flag that tolerates disconnected wrt */
  g[0] = x;
  ck_assert_int_eq(kiln_grad(c, 1, &x, g, KILN_GRAD_DISCONNECTED_ZERO), KILN_TYPE);
  ck_assert_ptr_null(g[0]);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(error_integer_wrt) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *i = kiln_ivector(ctx, "iv");
  kiln_node *c = kiln_sum(kiln_mul(x, i));
  kiln_node *g[2] = {x, x};
  ck_assert_int_eq(kiln_grad(c, 2, (kiln_node *[]){x, i}, g, 0), KILN_TYPE);
  ck_assert_ptr_null(g[0]);
  ck_assert_ptr_null(g[1]);
  ck_assert_msg(has(kiln_errmsg(ctx), "'iv'"), "message: %s", kiln_errmsg(ctx));
  g[0] = x;
  ck_assert_int_eq(kiln_grad(c, 1, &i, g, KILN_GRAD_DISCONNECTED_ZERO), KILN_TYPE);
  ck_assert_ptr_null(g[0]);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(error_misuse) {
  kiln_ctx *ctx = kiln_ctx_new(), *ctx2 = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *y = kiln_dvector(ctx2, "y");
  kiln_node *c = kiln_sum(kiln_exp(x));
  kiln_node *g[2] = {x, x};
  ck_assert_int_eq(kiln_grad(NULL, 1, &x, g, 0), KILN_MISUSE);
  ck_assert_ptr_null(g[0]);
  g[0] = g[1] = x;
  ck_assert_int_eq(kiln_grad(NULL, 2, (kiln_node *[]){x, x}, g, KILN_GRAD_DISCONNECTED_ZERO),
                   KILN_MISUSE);
  ck_assert_ptr_null(g[0]);
  ck_assert_ptr_null(g[1]);
  g[0] = g[1] = x;
  ck_assert_int_eq(kiln_grad(c, 2, (kiln_node *[]){x, NULL}, g, 0), KILN_MISUSE);
  ck_assert_ptr_null(g[0]);
  ck_assert_ptr_null(g[1]);
  g[0] = x;
  ck_assert_int_eq(kiln_grad(c, 1, &y, g, 0), KILN_MISUSE); /* another context's node */
  ck_assert_ptr_null(g[0]);
  ck_assert_int_eq(kiln_grad(c, 1, NULL, g, 0), KILN_MISUSE);
  ck_assert_int_eq(kiln_grad(c, 1, &x, NULL, 0), KILN_MISUSE);
  ck_assert_int_eq(kiln_grad(c, -1, &x, g, 0), KILN_MISUSE);
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  /* nothing to differentiate is fine */
  ck_assert_int_eq(kiln_grad(c, 0, NULL, NULL, 0), KILN_OK);
  /* the context still works */
  kiln_clear_error(ctx);
  g[0] = NULL;
  ck_assert_int_eq(kiln_grad(c, 1, &x, g, 0), KILN_OK);
  ck_assert_ptr_nonnull(g[0]);
  kiln_ctx_free(ctx2);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------- suite */

static Suite *suite(void) {
  Suite *s = suite_create("grad");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, unary_op, 0, N_UN * 3);
  tcase_add_loop_test(tc, binary_op, 0, N_BIN * N_PAT);
  tcase_add_loop_test(tc, binary_op_one_wrt, 0, N_BIN * 2);
  tcase_add_loop_test(tc, reduction, 0, N_RED);
  tcase_add_loop_test(tc, reduction_nonlinear, 0, 8);
  tcase_add_loop_test(tc, dot_product, 0, N_DOT);
  tcase_add_test(tc, dot_vector_matrix_accepted);
  suite_add_tcase(s, tc);

  tc = tcase_create("graphs");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, wrt_used_several_times, 0, 3);
  tcase_add_test(tc, wrt_used_twice_accumulates);
  tcase_add_loop_test(tc, several_wrt, 0, 2);
  tcase_add_test(tc, same_wrt_listed_twice);
  tcase_add_test(tc, intermediate_wrt);
  tcase_add_test(tc, cost_as_wrt);
  tcase_add_loop_test(tc, shared_seed_mixed, 0, 2);
  tcase_add_loop_test(tc, shared_float32, 0, 2);
  tcase_add_test(tc, shared_update_step);
  tcase_add_loop_test(tc, integer_input_not_differentiated, 0, 4);
  tcase_add_test(tc, second_order_through_comparison);
  tcase_add_test(tc, second_order_comparison_default_flags);
  tcase_add_test(tc, max_min_ties_go_to_first);
  tcase_add_loop_test(tc, second_order, 0, N_SECOND);
  suite_add_tcase(s, tc);

  tc = tcase_create("errors");
  tcase_add_test(tc, error_nonscalar_cost);
  tcase_add_test(tc, error_disconnected);
  tcase_add_test(tc, disconnected_zero);
  tcase_add_test(tc, error_integer_cost);
  tcase_add_test(tc, error_integer_wrt);
  tcase_add_test(tc, error_misuse);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return kt_run(suite()); }
