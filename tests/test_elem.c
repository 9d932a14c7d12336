/*
** test_elem.c -- the second family of elementwise ops (log1p, expm1, tanh,
** sigmoid, softplus, relu, sign, comparisons, logical ops, isnan, isinf,
** where, clip, cast): the JIT against the reference evaluator for every
** dtype and a table of special values, values worked out by hand from
** numpy's semantics, and central finite differences of the gradients.
*/
#include "compiler/ops/kmath.h"
#include "compiler/refeval.h"
#include "runtime/rt.h"
#include "tests/testutil.h"

#include <math.h>
#include <string.h>

static const double SPECIAL[] = {0.0,  -0.0, 1.0,  -1.0, 0.5,   -2.5, 3.0,      20.0,      -20.0,
                                 100., -100, 1e-8, 1e30, -1e30, NAN,  INFINITY, -INFINITY, 7.25};
#define NS ((int64_t)(sizeof SPECIAL / sizeof SPECIAL[0]))

typedef kiln_node *(*unary_fn)(kiln_node *);
typedef kiln_node *(*binary_fn)(kiln_node *, kiln_node *);

static kiln_node *u_log1p(kiln_node *x) { return kiln_log1p(x); }
static kiln_node *u_expm1(kiln_node *x) { return kiln_expm1(x); }
static kiln_node *u_tanh(kiln_node *x) { return kiln_tanh(x); }
static kiln_node *u_sigmoid(kiln_node *x) { return kiln_sigmoid(x); }
static kiln_node *u_softplus(kiln_node *x) { return kiln_softplus(x); }
static kiln_node *u_relu(kiln_node *x) { return kiln_relu(x); }
static kiln_node *u_sign(kiln_node *x) { return kiln_sign(x); }
static kiln_node *u_not(kiln_node *x) { return kiln_logical_not(x); }
static kiln_node *u_isnan(kiln_node *x) { return kiln_isnan(x); }
static kiln_node *u_isinf(kiln_node *x) { return kiln_isinf(x); }
static kiln_node *u_cast_i32(kiln_node *x) { return kiln_cast(x, KILN_INT32); }
static kiln_node *u_cast_u8(kiln_node *x) { return kiln_cast(x, KILN_UINT8); }
static kiln_node *u_cast_f32(kiln_node *x) { return kiln_cast(x, KILN_FLOAT32); }
static kiln_node *u_cast_bool(kiln_node *x) { return kiln_cast(x, KILN_BOOL); }
static const unary_fn UNARY[] = {u_log1p,    u_expm1,   u_tanh,     u_sigmoid,  u_softplus,
                                 u_relu,     u_sign,    u_not,      u_isnan,    u_isinf,
                                 u_cast_i32, u_cast_u8, u_cast_f32, u_cast_bool};
#define NU ((int)(sizeof UNARY / sizeof UNARY[0]))

static kiln_node *b_lt(kiln_node *a, kiln_node *b) { return kiln_lt(a, b); }
static kiln_node *b_le(kiln_node *a, kiln_node *b) { return kiln_le(a, b); }
static kiln_node *b_gt(kiln_node *a, kiln_node *b) { return kiln_gt(a, b); }
static kiln_node *b_ge(kiln_node *a, kiln_node *b) { return kiln_ge(a, b); }
static kiln_node *b_eq(kiln_node *a, kiln_node *b) { return kiln_eq(a, b); }
static kiln_node *b_ne(kiln_node *a, kiln_node *b) { return kiln_ne(a, b); }
static kiln_node *b_and(kiln_node *a, kiln_node *b) { return kiln_logical_and(a, b); }
static kiln_node *b_or(kiln_node *a, kiln_node *b) { return kiln_logical_or(a, b); }
static kiln_node *b_where(kiln_node *a, kiln_node *b) { return kiln_where(kiln_gt(a, b), a, b); }
static kiln_node *b_clip(kiln_node *a, kiln_node *b) {
  return kiln_clip(a, kiln_neg(kiln_abs(b)), kiln_abs(b));
}
static const binary_fn BINARY[] = {b_lt, b_le,  b_gt, b_ge,    b_eq,
                                   b_ne, b_and, b_or, b_where, b_clip};
#define NB ((int)(sizeof BINARY / sizeof BINARY[0]))

/* Compiles outs over ins, calls with vals, and compares with the reference. */
static void jit_vs_ref(kiln_ctx *ctx, int n_in, kiln_node **ins, kiln_tensor **vals, kiln_node *out,
                       const char *what) {
  ck_assert_msg(out != NULL, "%s: %s", what, kiln_errmsg(ctx));
  kiln_function *f = kiln_function_new(ctx, what, n_in, ins, 1, &out, 0, NULL);
  ck_assert_msg(f != NULL, "%s: %s", what, kiln_errmsg(ctx));
  const kiln_tensor *got;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)vals, &got), KILN_OK);
  kiln_tensor *want;
  ck_assert_int_eq(kl_ref_run(ctx, n_in, ins, (const kiln_tensor *const *)vals, 1, &out, &want),
                   KILN_OK);
  for (int64_t i = 0; i < kiln_tensor_size(want); i++)
    ck_assert_msg(kt_same_bits(got, want), "%s: JIT %.17g, reference %.17g at %lld", what,
                  kiln_tensor_get(got, i), kiln_tensor_get(want, i), (long long)i);
  kiln_tensor_free(want);
}

START_TEST(unary_every_dtype) {
  int op = _i / KILN_N_DTYPES;
  kiln_dtype dt = (kiln_dtype)(_i % KILN_N_DTYPES);
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_input(ctx, "x", dt, 1, NULL);
  int64_t n = NS;
  kiln_tensor *v = kt_tensor(dt, 1, &n, SPECIAL);
  char what[64];
  snprintf(what, sizeof what, "unary %d %s", op, kiln_dtype_name(dt));
  if (UNARY[op] == u_sign && dt == KILN_BOOL) { /* numpy has no bool sign */
    ck_assert_ptr_null(u_sign(x));
    ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  } else {
    jit_vs_ref(ctx, 1, &x, &v, UNARY[op](x), what);
  }
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(binary_every_dtype_pair) {
  int op = _i / KILN_N_DTYPES;
  kiln_dtype dt = (kiln_dtype)(_i % KILN_N_DTYPES);
  kiln_ctx *ctx = kiln_ctx_new();
  /* every special value against every other: a (NS,1) column and a (NS,) row */
  kiln_node *a = kiln_input(ctx, "a", dt, 2, ((int64_t[]){NS, 1}));
  kiln_node *b = kiln_input(ctx, "b", KILN_FLOAT64, 1, NULL);
  int64_t sa[2] = {NS, 1}, sb = NS;
  kiln_tensor *vals[2] = {kt_tensor(dt, 2, sa, SPECIAL), kt_tensor(KILN_FLOAT64, 1, &sb, SPECIAL)};
  char what[64];
  snprintf(what, sizeof what, "binary %d %s", op, kiln_dtype_name(dt));
  jit_vs_ref(ctx, 2, (kiln_node *[]){a, b}, vals, BINARY[op](a, b), what);
  kiln_tensor_free(vals[0]);
  kiln_tensor_free(vals[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* One value through the JIT. */
static double eval1(unary_fn f, kiln_dtype dt, double x, kiln_dtype *out_dt) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *in = kiln_input(ctx, "x", dt, 0, NULL), *y = f(in);
  kiln_function *fn = kiln_function_new(ctx, "f", 1, &in, 1, &y, 0, NULL);
  ck_assert_msg(fn != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *v = kt_tensor(dt, 0, NULL, &x);
  const kiln_tensor *r;
  ck_assert_int_eq(kiln_call(fn, (const kiln_tensor *const *)&v, &r), KILN_OK);
  double got = kiln_tensor_get(r, 0);
  if (out_dt) *out_dt = kiln_tensor_dtype(r);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
  return got;
}

START_TEST(numpy_values) {
  kiln_dtype dt;
  ck_assert(eval1(u_sigmoid, KILN_FLOAT64, 0.0, NULL) == 0.5);
  ck_assert(eval1(u_sigmoid, KILN_FLOAT64, -1000.0, NULL) == 0.0); /* no overflow, no NaN */
  ck_assert(eval1(u_sigmoid, KILN_FLOAT64, 1000.0, NULL) == 1.0);
  ck_assert(eval1(u_softplus, KILN_FLOAT64, 0.0, NULL) == log(2.0));
  ck_assert(eval1(u_softplus, KILN_FLOAT64, 1000.0, NULL) == 1000.0); /* not inf */
  ck_assert(eval1(u_softplus, KILN_FLOAT64, -1000.0, NULL) == 0.0);
  ck_assert(eval1(u_tanh, KILN_FLOAT64, INFINITY, NULL) == 1.0);
  ck_assert(eval1(u_relu, KILN_FLOAT64, -1.0, NULL) == 0.0);
  ck_assert(isnan(eval1(u_relu, KILN_FLOAT64, NAN, NULL)));
  ck_assert(eval1(u_relu, KILN_INT32, -7, &dt) == 0 && dt == KILN_INT32);
  ck_assert(eval1(u_log1p, KILN_FLOAT64, 1e-20, NULL) == 1e-20); /* exact where log(1+x) is 0 */
  ck_assert(eval1(u_expm1, KILN_FLOAT64, 1e-20, NULL) == 1e-20);
  /* float32 tanh is Kiln's own (ops/kmath.c), within 1 ulp of libm's */
  ck_assert(eval1(u_tanh, KILN_INT8, 1, &dt) == (double)kl_tanhf(1.0f) && dt == KILN_FLOAT32);
  ck_assert(eval1(u_isnan, KILN_FLOAT32, NAN, &dt) == 1 && dt == KILN_BOOL);
  ck_assert(eval1(u_isinf, KILN_FLOAT64, -INFINITY, NULL) == 1);
  ck_assert(eval1(u_isinf, KILN_INT64, 5, NULL) == 0);
  ck_assert(eval1(u_not, KILN_FLOAT64, 0.5, NULL) == 0); /* 0.5 is true */
  ck_assert(eval1(u_not, KILN_INT32, 0, NULL) == 1);
  ck_assert(eval1(u_cast_i32, KILN_FLOAT64, 1e300, NULL) == 2147483647.0); /* saturates */
  ck_assert(eval1(u_cast_i32, KILN_FLOAT64, NAN, NULL) == 0.0);
  ck_assert(eval1(u_cast_i32, KILN_FLOAT64, -1.5, NULL) == -1.0);  /* toward zero */
  ck_assert(eval1(u_cast_u8, KILN_INT32, 300, NULL) == 44.0);      /* int wraps */
  ck_assert(eval1(u_cast_u8, KILN_FLOAT64, 300.0, NULL) == 255.0); /* float saturates */
  ck_assert(eval1(u_cast_bool, KILN_FLOAT64, NAN, NULL) == 1.0);   /* NaN != 0 */
  ck_assert(eval1(u_sign, KILN_FLOAT64, -3.0, NULL) == -1.0);
}
END_TEST

START_TEST(logic_truth_tables) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *a = kiln_bvector(ctx, "a"), *b = kiln_bvector(ctx, "b");
  kiln_node *outs[3] = {kiln_logical_and(a, b), kiln_logical_or(a, b), kiln_logical_not(a)};
  kiln_function *f = kiln_function_new(ctx, "f", 2, (kiln_node *[]){a, b}, 3, outs, 0, NULL);
  ck_assert_ptr_nonnull(f);
  int8_t av[4] = {0, 0, 5, -1}, bv[4] = {0, 3, 0, 2}; /* int8: nonzero is true */
  kiln_tensor *in[2] = {kiln_tensor_new(KILN_INT8, 1, (int64_t[]){4}, av),
                        kiln_tensor_new(KILN_INT8, 1, (int64_t[]){4}, bv)};
  const kiln_tensor *o[3];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)in, o), KILN_OK);
  const int want_and[4] = {0, 0, 0, 1}, want_or[4] = {0, 1, 1, 1}, want_not[4] = {1, 1, 0, 0};
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(kiln_tensor_dtype(o[0]), KILN_BOOL);
    ck_assert_int_eq((int)kiln_tensor_get(o[0], i), want_and[i]);
    ck_assert_int_eq((int)kiln_tensor_get(o[1], i), want_or[i]);
    ck_assert_int_eq((int)kiln_tensor_get(o[2], i), want_not[i]);
  }
  kiln_tensor_free(in[0]);
  kiln_tensor_free(in[1]);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(where_and_clip_values) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *outs[2] = {kiln_where(kiln_lt(x, kiln_lit(ctx, 0)), kiln_neg(x), kiln_lit(ctx, 10)),
                        kiln_clip(x, kiln_lit(ctx, -1.0), kiln_lit(ctx, 2.0))};
  kiln_function *f = kiln_function_new(ctx, "f", 1, &x, 2, outs, 0, NULL);
  ck_assert_ptr_nonnull(f);
  double xv[4] = {-3, 0.5, 5, NAN};
  kiln_tensor *in = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){4}, xv);
  const kiln_tensor *o[2];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&in, o), KILN_OK);
  ck_assert(kiln_tensor_get(o[0], 0) == 3 && kiln_tensor_get(o[0], 1) == 10);
  ck_assert(kiln_tensor_get(o[0], 3) == 10); /* NaN < 0 is false */
  ck_assert(kiln_tensor_get(o[1], 0) == -1 && kiln_tensor_get(o[1], 1) == 0.5);
  ck_assert(kiln_tensor_get(o[1], 2) == 2 && isnan(kiln_tensor_get(o[1], 3)));
  kiln_tensor_free(in);
  kiln_ctx_free(ctx);
}
END_TEST

/* Central differences (eps 1e-6, |a-n| <= 1e-5 + 1e-3|n|) of sum(f(x) * r)
** against the JIT gradient, for x in float64 over a broadcast pattern. */
static void fd_check(unary_fn f, const double *xs, int n, const char *what) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *r = kiln_dvector(ctx, "r");
  kiln_node *cost = kiln_sum(kiln_mul(f(x), r)), *g;
  ck_assert_int_eq(kiln_grad(cost, 1, &x, &g, 0), KILN_OK);
  kiln_function *fc = kiln_function_new(ctx, "c", 2, (kiln_node *[]){x, r}, 1, &cost, 0, NULL);
  kiln_function *fg = kiln_function_new(ctx, "g", 2, (kiln_node *[]){x, r}, 1, &g, 0, NULL);
  ck_assert_ptr_nonnull(fc);
  ck_assert_ptr_nonnull(fg);
  int64_t len = n;
  double rv[16];
  for (int i = 0; i < n; i++)
    rv[i] = 0.3 + 0.1 * i;
  kiln_tensor *in[2] = {kiln_tensor_new(KILN_FLOAT64, 1, &len, xs),
                        kiln_tensor_new(KILN_FLOAT64, 1, &len, rv)};
  const kiln_tensor *gt;
  ck_assert_int_eq(kiln_call(fg, (const kiln_tensor *const *)in, &gt), KILN_OK);
  double grads[16];
  for (int i = 0; i < n; i++)
    grads[i] = kiln_tensor_get(gt, i);
  for (int i = 0; i < n; i++) {
    double *xv = kiln_tensor_data(in[0]), x0 = xv[i], c[2];
    const kiln_tensor *ct;
    for (int s = 0; s < 2; s++) {
      xv[i] = x0 + (s ? -1e-6 : 1e-6);
      ck_assert_int_eq(kiln_call(fc, (const kiln_tensor *const *)in, &ct), KILN_OK);
      c[s] = kiln_tensor_get(ct, 0);
    }
    xv[i] = x0;
    double num = (c[0] - c[1]) / 2e-6;
    ck_assert_msg(fabs(grads[i] - num) <= 1e-5 + 1e-3 * fabs(num), "%s: x=%g grad %.10g, fd %.10g",
                  what, x0, grads[i], num);
  }
  kiln_tensor_free(in[0]);
  kiln_tensor_free(in[1]);
  kiln_ctx_free(ctx);
}

START_TEST(gradients) {
  const double xs[] = {-3.0, -0.7, 0.2, 1.3, 4.0};
  fd_check(u_tanh, xs, 5, "tanh");
  fd_check(u_sigmoid, xs, 5, "sigmoid");
  fd_check(u_softplus, xs, 5, "softplus");
  fd_check(u_relu, xs, 5, "relu");
  fd_check(u_expm1, xs, 5, "expm1");
  const double pos[] = {0.1, 0.5, 2.0, 9.0};
  fd_check(u_log1p, pos, 4, "log1p");
}
END_TEST

static kiln_node *clip_fixed(kiln_node *x) {
  return kiln_clip(x, kiln_lit(kiln_node_ctx(x), -1.0), kiln_lit(kiln_node_ctx(x), 2.0));
}
static kiln_node *where_fixed(kiln_node *x) {
  return kiln_where(kiln_gt(x, kiln_lit(kiln_node_ctx(x), 0.0)), kiln_sqr(x), kiln_exp(x));
}

START_TEST(gradients_select) {
  const double xs[] = {-3.0, -0.7, 0.2, 1.3, 4.0};
  fd_check(clip_fixed, xs, 5, "clip");
  fd_check(where_fixed, xs, 5, "where");
}
END_TEST

/* comparisons and isnan carry no gradient: a cost reaching x only through
** them gives zeros, not an error */
START_TEST(no_gradient_through_comparisons) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *g;
  kiln_node *cost = kiln_sum(kiln_cast(kiln_gt(x, kiln_lit(ctx, 0.0)), KILN_FLOAT64));
  ck_assert_int_eq(kiln_grad(cost, 1, &x, &g, 0), KILN_OK);
  kiln_function *f = kiln_function_new(ctx, "f", 1, &x, 1, &g, 0, NULL);
  ck_assert_ptr_nonnull(f);
  kiln_tensor *in = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){3}, (double[]){-1, 2, 3});
  const kiln_tensor *o;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&in, &o), KILN_OK);
  for (int i = 0; i < 3; i++)
    ck_assert(kiln_tensor_get(o, i) == 0.0);
  kiln_tensor_free(in);
  kiln_ctx_free(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("elem");
  TCase *tc = tcase_create("elem");
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, unary_every_dtype, 0, NU * KILN_N_DTYPES);
  tcase_add_loop_test(tc, binary_every_dtype_pair, 0, NB * KILN_N_DTYPES);
  tcase_add_test(tc, numpy_values);
  tcase_add_test(tc, logic_truth_tables);
  tcase_add_test(tc, where_and_clip_values);
  tcase_add_test(tc, gradients);
  tcase_add_test(tc, gradients_select);
  tcase_add_test(tc, no_gradient_through_comparisons);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
