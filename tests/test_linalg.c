/*
** test_linalg.c -- dot for ranks 0 to 2 (numpy.dot), matmul and batched_dot
** on stacks of matrices (numpy.matmul), outer, and the blocked dot kernel.
**
**  - JIT against the reference evaluator (kl_ref_run) bit for bit for every
**    form, every numeric dtype, static and dynamic shapes, with and without
**    optimization, sizes that leave row and column tails in the register
**    blocks, empty dimensions, values with NaN, +-inf and -0.0, integers
**    over their whole range (wrapping); for floats the gradients too, which
**    run the transposed-flag forms; the transposed forms also built
**    directly (kl_dot);
**  - values computed with numpy (written out below), integer wrapping,
**    -0.0 of outer, zeros for an empty inner dimension;
**  - central finite differences (float64) of every form, for both operands;
**  - errors: inner and batch size mismatches when built and at call time,
**    naming the nodes and this file's lines; ranks; bool; NULL operands;
**  - the lowering: vectors of 64 bytes, tb packed (no gathers), no fma.
*/
#include "compiler/graph.h"
#include "compiler/refeval.h"
#include "tests/testutil.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D KILN_DYN

static kiln_ctx *new_ctx(void) {
  kiln_ctx *ctx = kiln_ctx_new();
  ck_assert_ptr_nonnull(ctx);
  return ctx;
}

static bool is_float(int dt) { return dt == KILN_FLOAT32 || dt == KILN_FLOAT64; }

/* ------------------------------------------------------------- values */

static uint64_t next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1Dull;
}

/* Floats: mostly values of mixed sign over a few decades, 1 in 16 a
** special (NaN, +-inf, +-0.0) when specials; integers: random bits (their
** products wrap). */
static kiln_tensor *gen(kiln_dtype dt, int rank, const int64_t *shape, uint64_t seed,
                        bool specials) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 77;
  kiln_tensor *t = kiln_tensor_new(dt, rank, shape, NULL);
  ck_assert_ptr_nonnull(t);
  void *p = kiln_tensor_data(t);
  static const double sp[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0};
  for (int64_t i = 0; i < kiln_tensor_size(t); i++) {
    uint64_t r = next(&s);
    if (is_float(dt)) {
      double v = ((double)(r >> 11) / 9007199254740992.0 - 0.5) * 4.0;
      v *= pow(10.0, (double)((r >> 3) % 5) - 2.0);
      if (specials && (r & 15) == 0) v = sp[(r >> 4) % 5];
      if (dt == KILN_FLOAT64)
        ((double *)p)[i] = v;
      else
        ((float *)p)[i] = (float)v;
    } else {
      switch (dt) {
      case KILN_INT8: ((int8_t *)p)[i] = (int8_t)(uint8_t)r; break;
      case KILN_UINT8: ((uint8_t *)p)[i] = (uint8_t)r; break;
      case KILN_INT16: ((int16_t *)p)[i] = (int16_t)(uint16_t)r; break;
      case KILN_INT32: ((int32_t *)p)[i] = (int32_t)(uint32_t)r; break;
      default: ((int64_t *)p)[i] = (int64_t)r; break;
      }
    }
  }
  return t;
}

/* Compiles (optimized or not), calls twice, compares every output with the
** reference bit for bit (any NaN equals any NaN). */
static void check_jit(kiln_ctx *ctx, const char *what, int n_in, kiln_node *const *ins,
                      kiln_tensor *const *vals, int n_out, kiln_node *const *outs, bool no_opt) {
  for (int k = 0; k < n_out; k++)
    ck_assert_msg(outs[k] != NULL, "%s: output %d did not build: %s", what, k, kiln_errmsg(ctx));
  kiln_options o = {.size = sizeof o, .no_optimize = no_opt};
  kiln_function *f = kiln_function_new_opts(ctx, "linalg", n_in, ins, n_out, outs, 0, NULL, &o);
  ck_assert_msg(f != NULL, "%s: function: %s", what, kiln_errmsg(ctx));
  kt_check_calls(ctx, f, what, n_in, ins, vals, n_out, outs, 2, NULL);
  kiln_function_free(f);
}

/* ------------------------------------------------------------- forms */

typedef enum form { F_DOT, F_MATMUL, F_BATCHED, F_OUTER, F_KL } form;

typedef struct lcase {
  form f;
  bool ta, tb; /* F_KL: kl_dot's transposes */
  int ra, rb;
  int64_t a[3], b[3];
} lcase;

static const lcase CASES[] = {
    {F_DOT, 0, 0, 1, 1, {5}, {5}},
    {F_DOT, 0, 0, 2, 1, {3, 5}, {5}},
    {F_DOT, 0, 0, 1, 2, {5}, {5, 4}},
    {F_DOT, 0, 0, 2, 2, {3, 5}, {5, 4}},
    {F_DOT, 0, 0, 2, 2, {37, 19}, {19, 45}}, /* row tail 1, a masked last vector */
    {F_DOT, 0, 0, 2, 2, {9, 64}, {64, 33}},  /* a full block, then 1 column */
    {F_DOT, 0, 0, 2, 2, {8, 3}, {3, 48}},    /* a block and a full single vector */
    {F_DOT, 0, 0, 2, 2, {6, 0}, {0, 7}},     /* empty inner: zeros */
    {F_DOT, 0, 0, 2, 2, {0, 5}, {5, 3}},
    {F_DOT, 0, 0, 2, 2, {4, 5}, {5, 0}},
    {F_DOT, 0, 0, 1, 1, {0}, {0}},
    {F_DOT, 0, 0, 0, 2, {0}, {3, 4}}, /* scalar . matrix: mul */
    {F_DOT, 0, 0, 1, 0, {3}, {0}},
    {F_DOT, 0, 0, 0, 0, {0}, {0}},
    {F_MATMUL, 0, 0, 2, 2, {3, 5}, {5, 4}},
    {F_MATMUL, 0, 0, 1, 2, {5}, {5, 17}},
    {F_MATMUL, 0, 0, 3, 3, {2, 3, 5}, {2, 5, 4}},
    {F_MATMUL, 0, 0, 2, 3, {3, 5}, {2, 5, 33}},
    {F_MATMUL, 0, 0, 3, 2, {2, 6, 5}, {5, 17}},
    {F_BATCHED, 0, 0, 3, 3, {3, 7, 9}, {3, 9, 20}},
    {F_BATCHED, 0, 0, 3, 3, {2, 5, 0}, {2, 0, 3}},
    {F_BATCHED, 0, 0, 3, 3, {0, 5, 2}, {0, 2, 3}},
    {F_OUTER, 0, 0, 1, 1, {5}, {7}},
    {F_OUTER, 0, 0, 1, 1, {0}, {3}},
    {F_KL, 1, 0, 2, 2, {19, 37}, {19, 45}}, /* a stored (k, m) */
    {F_KL, 0, 1, 2, 2, {37, 19}, {45, 19}}, /* b stored (n, k): gathers */
    {F_KL, 1, 1, 2, 2, {19, 37}, {45, 19}},
    {F_KL, 0, 1, 1, 2, {19}, {45, 19}},
    {F_KL, 1, 0, 2, 1, {19, 37}, {19}},
    {F_KL, 0, 1, 3, 3, {2, 6, 5}, {2, 17, 5}},
    {F_KL, 1, 1, 2, 3, {5, 6}, {2, 17, 5}},
    {F_KL, 1, 0, 3, 2, {2, 5, 6}, {5, 17}},
    {F_KL, 0, 1, 2, 2, {5, 300}, {40, 300}}, /* tb: two chunks of p, a partial panel */
    {F_KL, 1, 1, 2, 2, {520, 3}, {33, 520}}, /* tb: three chunks */
    {F_KL, 0, 1, 2, 2, {3, 0}, {5, 0}},      /* tb, empty inner: zeros */
    {F_KL, 0, 1, 3, 3, {2, 9, 4}, {2, 70, 4}},
};
#define N_CASES ((int)(sizeof CASES / sizeof *CASES))

static kiln_node *build(const lcase *c, kiln_node *a, kiln_node *b) {
  switch (c->f) {
  case F_DOT: return kiln_dot(a, b);
  case F_MATMUL: return kiln_matmul(a, b);
  case F_BATCHED: return kiln_batched_dot(a, b);
  case F_OUTER: return kiln_outer(a, b);
  default: return kl_dot(a, b, c->ta, c->tb, __FILE__, __LINE__);
  }
}

static const kiln_dtype DTYPES[] = {KILN_FLOAT32, KILN_FLOAT64, KILN_INT8, KILN_INT16,
                                    KILN_INT32,   KILN_INT64,   KILN_UINT8};
#define N_DT ((int)(sizeof DTYPES / sizeof *DTYPES))

static void case_name(char *buf, size_t n, const lcase *c, kiln_dtype dt, int var) {
  static const char *const fn[] = {"dot", "matmul", "batched_dot", "outer", "kl_dot"};
  char sa[64], sb[64];
  kl_shape_str(sa, sizeof sa, c->ra, c->a);
  kl_shape_str(sb, sizeof sb, c->rb, c->b);
  snprintf(buf, n, "%s%s%s %s . %s %s (%s, %s)", fn[c->f], c->ta ? " ta" : "", c->tb ? " tb" : "",
           sa, sb, kiln_dtype_name(dt), var & 1 ? "dynamic" : "static",
           var & 2 ? "unoptimized" : "optimized");
}

/* _i: case x dtype x (static/dynamic x optimized/not) */
START_TEST(jit_vs_ref) {
  const lcase *c = &CASES[_i / (N_DT * 4)];
  kiln_dtype dt = DTYPES[_i / 4 % N_DT];
  int var = _i % 4;
  bool dyn = var & 1, no_opt = var & 2;
  char what[256];
  case_name(what, sizeof what, c, dt, var);
  kiln_ctx *ctx = new_ctx();
  int64_t da[3], db[3];
  for (int d = 0; d < 3; d++) {
    da[d] = dyn ? D : c->a[d];
    db[d] = dyn ? D : c->b[d];
  }
  kiln_node *a = kiln_input(ctx, "a", dt, c->ra, da), *b = kiln_input(ctx, "b", dt, c->rb, db);
  kiln_node *out = build(c, a, b);
  ck_assert_msg(out != NULL, "%s: %s", what, kiln_errmsg(ctx));
  ck_assert_int_eq(kiln_node_dtype(out), dt);
  kiln_tensor *vals[2] = {gen(dt, c->ra, c->a, (uint64_t)_i, true),
                          gen(dt, c->rb, c->b, (uint64_t)_i + 1000, true)};
  kiln_node *ins[2] = {a, b}, *outs[3] = {out, NULL, NULL};
  int n_out = 1;
  if (is_float(dt)) { /* gradients: the transposed forms */
    kiln_tensor *ov;
    ck_assert_int_eq(kl_ref_run(ctx, 2, ins, (const kiln_tensor *const *)vals, 1, &out, &ov),
                     KILN_OK);
    kiln_tensor *rv = gen(dt, kiln_tensor_rank(ov), ov->shape, (uint64_t)_i + 7, false);
    kiln_node *R = kiln_const(ctx, dt, kiln_tensor_rank(ov), ov->shape, kiln_tensor_data(rv));
    kiln_tensor_free(rv);
    kiln_tensor_free(ov);
    kiln_node *cost = kiln_sum(kiln_mul(out, R)), *g[2];
    ck_assert_msg(kiln_grad(cost, 2, ins, g, 0) == KILN_OK, "%s: grad: %s", what, kiln_errmsg(ctx));
    outs[1] = g[0];
    outs[2] = g[1];
    n_out = 3;
  }
  check_jit(ctx, what, 2, ins, vals, n_out, outs, no_opt);
  kiln_tensor_free(vals[0]);
  kiln_tensor_free(vals[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* A function of two inputs at static shapes, called once; out is a copy. */
static kiln_tensor *run2(kiln_dtype dt, int ra, const int64_t *sa, const double *va, int rb,
                         const int64_t *sb, const double *vb,
                         kiln_node *(*mk)(kiln_node *, kiln_node *)) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *a = kiln_input(ctx, "a", dt, ra, sa), *b = kiln_input(ctx, "b", dt, rb, sb);
  kiln_node *y = mk(a, b);
  ck_assert_msg(y != NULL, "%s", kiln_errmsg(ctx));
  kiln_function *f = kiln_function_new(ctx, "f", 2, (kiln_node *[]){a, b}, 1, &y, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *t[2] = {kt_tensor(dt, ra, sa, va), kt_tensor(dt, rb, sb, vb)};
  const kiln_tensor *o;
  ck_assert_msg(kiln_call(f, (const kiln_tensor *const *)t, &o) == KILN_OK, "%s", kiln_errmsg(ctx));
  kiln_tensor *r =
      kiln_tensor_new(kiln_tensor_dtype(o), kiln_tensor_rank(o), o->shape, kiln_tensor_data(o));
  kiln_tensor_free(t[0]);
  kiln_tensor_free(t[1]);
  kiln_ctx_free(ctx);
  return r;
}

static void expect_vals(const kiln_tensor *t, int rank, const int64_t *shape, int n,
                        const double *want, const char *what) {
  ck_assert_msg(kiln_tensor_rank(t) == rank, "%s: rank %d", what, kiln_tensor_rank(t));
  for (int d = 0; d < rank; d++)
    ck_assert_int_eq(kiln_tensor_dim(t, d), shape[d]);
  ck_assert_int_eq(kiln_tensor_size(t), n);
  for (int i = 0; i < n; i++)
    ck_assert_msg(kiln_tensor_get(t, i) == want[i], "%s: element %d is %.17g, numpy %.17g", what, i,
                  kiln_tensor_get(t, i), want[i]);
}

static kiln_node *mk_dot(kiln_node *a, kiln_node *b) { return kiln_dot(a, b); }
static kiln_node *mk_matmul(kiln_node *a, kiln_node *b) { return kiln_matmul(a, b); }
static kiln_node *mk_outer(kiln_node *a, kiln_node *b) { return kiln_outer(a, b); }

#define S(...) ((const int64_t[]){__VA_ARGS__})
#define V(...) ((const double[]){__VA_ARGS__})

/* Expected values computed with numpy 1.24 (np.dot, np.matmul, np.outer). */
START_TEST(numpy_values) {
  kiln_tensor *t;
  t = run2(KILN_FLOAT64, 2, S(2, 3), V(1, 2, 3, 4, 5, 6), 2, S(3, 2), V(7, 8, 9, 10, 11, 12),
           mk_dot);
  expect_vals(t, 2, S(2, 2), 4, V(58, 64, 139, 154), "dot 2x3 . 3x2");
  kiln_tensor_free(t);
  t = run2(KILN_FLOAT64, 0, NULL, V(2.5), 2, S(2, 2), V(1, 2, 3, 4), mk_dot);
  expect_vals(t, 2, S(2, 2), 4, V(2.5, 5, 7.5, 10), "dot scalar . matrix");
  kiln_tensor_free(t);
  t = run2(KILN_INT64, 1, S(3), V(1, 2, 3), 1, S(3), V(4, 5, 6), mk_dot);
  expect_vals(t, 0, NULL, 1, V(32), "dot vector . vector");
  kiln_tensor_free(t);
  t = run2(KILN_INT32, 2, S(2, 3), V(1, 2, 3, 4, 5, 6), 1, S(3), V(1, 0, -1), mk_dot);
  expect_vals(t, 1, S(2), 2, V(-2, -2), "dot matrix . vector");
  kiln_tensor_free(t);
  t = run2(KILN_INT16, 1, S(2), V(1, -1), 2, S(2, 3), V(1, 2, 3, 4, 5, 6), mk_dot);
  expect_vals(t, 1, S(3), 3, V(-3, -3, -3), "dot vector . matrix");
  kiln_tensor_free(t);
  /* integers wrap as numpy's do */
  t = run2(KILN_INT8, 1, S(2), V(100, 100), 1, S(2), V(2, 1), mk_dot);
  expect_vals(t, 0, NULL, 1, V(44), "int8 dot wraps");
  kiln_tensor_free(t);
  t = run2(KILN_UINT8, 1, S(2), V(200, 100), 1, S(2), V(2, 3), mk_dot);
  expect_vals(t, 0, NULL, 1, V(188), "uint8 dot wraps");
  kiln_tensor_free(t);
  t = run2(KILN_INT64, 2, S(1, 2), V(4611686018427387904.0, 3), 1, S(2), V(4, 5), mk_dot);
  expect_vals(t, 1, S(1), 1, V(15), "int64 dot wraps");
  kiln_tensor_free(t);
  /* a = arange(12).reshape(2,2,3) - 5, b = arange(12).reshape(2,3,2) % 5 - 2 */
  const double *a3 = V(-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6);
  const double *b3 = V(-2, -1, 0, 1, 2, -2, -1, 0, 1, 2, -2, -1);
  t = run2(KILN_INT32, 3, S(2, 2, 3), a3, 3, S(2, 3, 2), b3, mk_matmul);
  expect_vals(t, 3, S(2, 2, 2), 8, V(4, 7, 4, 1, -5, 1, -11, 4), "matmul stacks");
  kiln_tensor_free(t);
  t = run2(KILN_FLOAT32, 2, S(2, 3), V(1, 2, 3, 0, -1, 2), 3, S(2, 3, 2), b3, mk_matmul);
  expect_vals(t, 3, S(2, 2, 2), 8, V(4, -5, 4, -5, -5, 1, -5, -4), "matmul matrix . stack");
  kiln_tensor_free(t);
  t = run2(KILN_FLOAT64, 3, S(2, 2, 3), a3, 2, S(3, 2), V(1, 0, 2, 1, -1, 3), mk_matmul);
  expect_vals(t, 3, S(2, 2, 2), 8, V(-10, -13, -4, -1, 2, 11, 8, 23), "matmul stack . matrix");
  kiln_tensor_free(t);
  /* outer keeps the sign of zero products, as numpy's multiply */
  t = run2(KILN_FLOAT64, 1, S(3), V(1, -2, 0), 1, S(3), V(3, -0.0, 4), mk_outer);
  expect_vals(t, 2, S(3, 3), 9, V(3, -0.0, 4, -6, 0, -8, 0, -0.0, 0), "outer");
  static const int neg[9] = {0, 1, 0, 1, 0, 1, 0, 1, 0};
  for (int i = 0; i < 9; i++)
    ck_assert_int_eq(signbit(kiln_tensor_get(t, i)) != 0, neg[i]);
  kiln_tensor_free(t);
  /* an empty inner dimension gives zeros */
  t = run2(KILN_FLOAT32, 2, S(2, 0), NULL, 2, S(0, 3), NULL, mk_dot);
  expect_vals(t, 2, S(2, 3), 6, V(0, 0, 0, 0, 0, 0), "empty inner");
  kiln_tensor_free(t);
  /* numpy float32 dot of [.1,.2,.3] and [.4,.5,.6], summed in order */
  t = run2(KILN_FLOAT32, 1, S(3), V(0.1, 0.2, 0.3), 1, S(3), V(0.4, 0.5, 0.6), mk_dot);
  expect_vals(t, 0, NULL, 1, V(0.3199999928474426), "float32 dot");
  kiln_tensor_free(t);
}
END_TEST

/* ------------------------------------------------ finite differences */

static void fill_small(kiln_tensor *t, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 5;
  for (int64_t i = 0; i < kiln_tensor_size(t); i++) {
    double v = 0.5 + (double)(next(&s) >> 11) / 9007199254740992.0;
    ((double *)kiln_tensor_data(t))[i] = (next(&s) & 1) ? v : -v;
  }
}

static double cost_at(kiln_ctx *ctx, kiln_function *f, kiln_tensor *const *v) {
  const kiln_tensor *o[3];
  ck_assert_msg(kiln_call(f, (const kiln_tensor *const *)v, o) == KILN_OK, "%s", kiln_errmsg(ctx));
  return kiln_tensor_get(o[0], 0);
}

/* _i: case (float64 forms) x static/dynamic. The gradients of
** sum(out * R) with respect to both operands against central differences. */
START_TEST(fd_grad) {
  const lcase *c = &CASES[_i / 2];
  bool dyn = _i % 2;
  char what[256];
  case_name(what, sizeof what, c, KILN_FLOAT64, dyn);
  kiln_ctx *ctx = new_ctx();
  int64_t da[3], db[3];
  for (int d = 0; d < 3; d++) {
    da[d] = dyn ? D : c->a[d];
    db[d] = dyn ? D : c->b[d];
  }
  kiln_node *ins[2] = {kiln_input(ctx, "a", KILN_FLOAT64, c->ra, da),
                       kiln_input(ctx, "b", KILN_FLOAT64, c->rb, db)};
  kiln_node *out = build(c, ins[0], ins[1]);
  ck_assert_msg(out != NULL, "%s: %s", what, kiln_errmsg(ctx));
  kiln_tensor *v[2] = {kiln_tensor_new(KILN_FLOAT64, c->ra, c->a, NULL),
                       kiln_tensor_new(KILN_FLOAT64, c->rb, c->b, NULL)};
  fill_small(v[0], (uint64_t)_i);
  fill_small(v[1], (uint64_t)_i + 99);
  kiln_tensor *ov;
  ck_assert_int_eq(kl_ref_run(ctx, 2, ins, (const kiln_tensor *const *)v, 1, &out, &ov), KILN_OK);
  kiln_tensor *rv = kiln_tensor_new(KILN_FLOAT64, kiln_tensor_rank(ov), ov->shape, NULL);
  fill_small(rv, (uint64_t)_i + 5);
  kiln_node *R =
      kiln_const(ctx, KILN_FLOAT64, kiln_tensor_rank(ov), ov->shape, kiln_tensor_data(rv));
  kiln_tensor_free(rv);
  kiln_tensor_free(ov);
  kiln_node *cost = kiln_sum(kiln_mul(out, R)), *g[2];
  ck_assert_msg(kiln_grad(cost, 2, ins, g, 0) == KILN_OK, "%s: %s", what, kiln_errmsg(ctx));
  kiln_node *outs[3] = {cost, g[0], g[1]};
  kiln_function *f = kiln_function_new(ctx, "fd", 2, ins, 3, outs, 0, NULL);
  ck_assert_msg(f != NULL, "%s: %s", what, kiln_errmsg(ctx));
  const kiln_tensor *o[3];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)v, o), KILN_OK);
  kiln_tensor *jg[2];
  for (int k = 0; k < 2; k++) {
    ck_assert_int_eq(kiln_tensor_rank(o[k + 1]), kiln_tensor_rank(v[k]));
    for (int d = 0; d < kiln_tensor_rank(v[k]); d++)
      ck_assert_int_eq(kiln_tensor_dim(o[k + 1], d), kiln_tensor_dim(v[k], d));
    jg[k] = kiln_tensor_new(KILN_FLOAT64, kiln_tensor_rank(o[k + 1]), o[k + 1]->shape,
                            kiln_tensor_data(o[k + 1]));
  }
  const double eps = 1e-6;
  for (int k = 0; k < 2; k++)
    for (int64_t e = 0; e < kiln_tensor_size(v[k]); e++) {
      double *x = (double *)kiln_tensor_data(v[k]) + e, x0 = *x;
      *x = x0 + eps;
      double cp = cost_at(ctx, f, v);
      *x = x0 - eps;
      double cm = cost_at(ctx, f, v);
      *x = x0;
      double fd = (cp - cm) / (2 * eps), got = kiln_tensor_get(jg[k], e);
      ck_assert_msg(fabs(got - fd) <= 1e-6 + 1e-6 * fabs(fd),
                    "%s: d cost / d %s[%lld]: gradient %.17g, finite difference %.17g", what,
                    k ? "b" : "a", (long long)e, got, fd);
    }
  for (int k = 0; k < 2; k++) {
    kiln_tensor_free(jg[k]);
    kiln_tensor_free(v[k]);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* --------------------------------------------------------------- errors */

static void expect_msg(kiln_ctx *ctx, const char *part) {
  ck_assert_msg(strstr(kiln_errmsg(ctx), part) != NULL, "message '%s' lacks '%s'", kiln_errmsg(ctx),
                part);
}

START_TEST(errors_built) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *A = kiln_input(ctx, "A", KILN_FLOAT32, 2, S(2, 3));
  kiln_node *B = kiln_input(ctx, "B", KILN_FLOAT32, 2, S(4, 5));
  char at[64];
  int line = __LINE__ + 1;
  ck_assert_ptr_null(kiln_dot(A, B));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  snprintf(at, sizeof at, "test_linalg.c:%d", line);
  expect_msg(ctx, "dot: inner dimensions 3 and 4 differ");
  expect_msg(ctx, "'A'");
  expect_msg(ctx, "'B'");
  expect_msg(ctx, at);
  /* stacks: batch sizes, inner sizes */
  kiln_node *S1 = kiln_input(ctx, "S1", KILN_FLOAT64, 3, S(2, 3, 4));
  kiln_node *S2 = kiln_input(ctx, "S2", KILN_FLOAT64, 3, S(3, 4, 5));
  line = __LINE__ + 1;
  ck_assert_ptr_null(kiln_matmul(S1, S2));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  snprintf(at, sizeof at, "test_linalg.c:%d", line);
  expect_msg(ctx, "matmul: batch sizes 2 and 3 differ");
  expect_msg(ctx, "'S1'");
  expect_msg(ctx, at);
  ck_assert_ptr_null(kiln_batched_dot(S1, S1));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  expect_msg(ctx, "batched_dot: inner dimensions 4 and 3 differ");
  /* ranks */
  kiln_node *v = kiln_input(ctx, "v", KILN_FLOAT64, 1, S(4));
  kiln_node *s = kiln_scalar(ctx, KILN_FLOAT64, 2.0);
  ck_assert_ptr_null(kiln_dot(S1, v));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  expect_msg(ctx, "kiln_matmul");
  ck_assert_ptr_null(kiln_matmul(s, v));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  expect_msg(ctx, "matmul:");
  ck_assert_ptr_null(kiln_matmul(S1, v));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  expect_msg(ctx, "'S1'");
  ck_assert_ptr_null(kiln_batched_dot(A, S1));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  ck_assert_ptr_null(kiln_outer(A, v));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  expect_msg(ctx, "outer: needs two vectors");
  /* bool */
  kiln_node *q = kiln_input(ctx, "q", KILN_BOOL, 1, S(4));
  ck_assert_ptr_null(kiln_dot(q, q));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  ck_assert_ptr_null(kiln_dot(kiln_scalar(ctx, KILN_BOOL, 1.0), q));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  ck_assert_ptr_null(kiln_outer(q, q));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  /* a NULL operand (an earlier failure) gives NULL and keeps the message */
  ck_assert_ptr_null(kiln_dot(A, B));
  ck_assert_ptr_null(kiln_dot(NULL, v));
  ck_assert_ptr_null(kiln_matmul(v, NULL));
  ck_assert_ptr_null(kiln_batched_dot(NULL, NULL));
  ck_assert_ptr_null(kiln_outer(NULL, v));
  expect_msg(ctx, "inner dimensions 3 and 4");
  /* operands of two contexts */
  kiln_ctx *other = new_ctx();
  kiln_node *w = kiln_input(other, "w", KILN_FLOAT64, 1, S(4));
  ck_assert_ptr_null(kiln_outer(v, w));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_ctx_free(other);
  kiln_ctx_free(ctx);
}
END_TEST

static const double ZEROS[64];

/* Dynamic sizes: the mismatch is found by kiln_call, which names the dot
** node and where it was built; shared variables keep their values. */
START_TEST(errors_call) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *A = kiln_input(ctx, "A", KILN_FLOAT32, 2, S(D, D));
  kiln_node *B = kiln_input(ctx, "B", KILN_FLOAT32, 2, S(D, D));
  int line = __LINE__ + 1;
  kiln_node *y = kiln_name(kiln_dot(A, B), "y");
  kiln_function *f = kiln_function_new(ctx, "f", 2, (kiln_node *[]){A, B}, 1, &y, 0, NULL);
  ck_assert_ptr_nonnull(f);
  kiln_tensor *t[2] = {kt_tensor(KILN_FLOAT32, 2, S(2, 3), ZEROS),
                       kt_tensor(KILN_FLOAT32, 2, S(4, 2), ZEROS)};
  const kiln_tensor *o;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)t, &o), KILN_SHAPE);
  char at[64];
  snprintf(at, sizeof at, "test_linalg.c:%d", line);
  expect_msg(ctx, "have different inner sizes");
  expect_msg(ctx, "'y'");
  expect_msg(ctx, "'A'");
  expect_msg(ctx, at);
  kiln_tensor_free(t[1]);
  t[1] = kt_tensor(KILN_FLOAT32, 2, S(3, 2), ZEROS);
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)t, &o), KILN_OK);
  kiln_tensor_free(t[0]);
  kiln_tensor_free(t[1]);
  /* stacks of dynamic batch size */
  kiln_node *P = kiln_input(ctx, "P", KILN_FLOAT64, 3, S(D, 2, 3));
  kiln_node *Q = kiln_input(ctx, "Q", KILN_FLOAT64, 3, S(D, 3, 2));
  line = __LINE__ + 1;
  kiln_node *z = kiln_batched_dot(P, Q);
  kiln_function *g = kiln_function_new(ctx, "g", 2, (kiln_node *[]){P, Q}, 1, &z, 0, NULL);
  ck_assert_ptr_nonnull(g);
  kiln_tensor *u[2] = {kt_tensor(KILN_FLOAT64, 3, S(2, 2, 3), ZEROS),
                       kt_tensor(KILN_FLOAT64, 3, S(3, 3, 2), ZEROS)};
  ck_assert_int_eq(kiln_call(g, (const kiln_tensor *const *)u, &o), KILN_SHAPE);
  snprintf(at, sizeof at, "test_linalg.c:%d", line);
  expect_msg(ctx, "have different batch sizes");
  expect_msg(ctx, "'P'");
  expect_msg(ctx, at);
  kiln_tensor_free(u[0]);
  kiln_tensor_free(u[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* --------------------------------------------------------------- lowering */

static char *ir_of(kiln_function *f) {
  char *ir = kt_dump_stage(f, KILN_STAGE_LLVM_OPT);
  ck_assert_int_gt(strlen(ir), 0);
  return ir;
}

/* The float kernel works on vectors of 64 bytes (across output columns),
** packs B's columns for tb (no gathers), and never contracts into fma. */
START_TEST(lowering) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT32, 2, S(64, 64));
  kiln_node *W = kiln_input(ctx, "W", KILN_FLOAT32, 2, S(64, 128));
  kiln_node *y = kiln_dot(x, W);
  kiln_function *f = kiln_function_new(ctx, "f", 2, (kiln_node *[]){x, W}, 1, &y, 0, NULL);
  ck_assert_ptr_nonnull(f);
  char *ir = ir_of(f);
  ck_assert_msg(strstr(ir, "<16 x float>") != NULL, "no 16-lane vectors in the dot kernel");
  ck_assert_msg(strstr(ir, "fma") == NULL && strstr(ir, "contract") == NULL, "fma in the kernel");
  free(ir);
  kiln_node *V = kiln_input(ctx, "V", KILN_FLOAT64, 2, S(D, D));
  kiln_node *z = kl_dot(V, V, false, true, __FILE__, __LINE__);
  kiln_function *g = kiln_function_new(ctx, "g", 1, &V, 1, &z, 0, NULL);
  ck_assert_ptr_nonnull(g);
  ir = ir_of(g);
  ck_assert_msg(strstr(ir, "gather") == NULL, "tb with gathers");
  ck_assert_msg(strstr(ir, "<8 x double>") != NULL, "no 8-lane vectors for float64");
  free(ir);
  kiln_ctx_free(ctx);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("linalg");
  TCase *tc = tcase_create("linalg");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, jit_vs_ref, 0, N_CASES * N_DT * 4);
  tcase_add_test(tc, numpy_values);
  tcase_add_loop_test(tc, fd_grad, 0, N_CASES * 2);
  tcase_add_test(tc, errors_built);
  tcase_add_test(tc, errors_call);
  tcase_add_test(tc, lowering);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return kt_run(suite()); }
