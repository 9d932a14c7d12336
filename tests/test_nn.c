/*
** test_nn.c -- the max reduction and the stable losses built on it
** (log_softmax, softmax, crossentropy): JIT against the reference
** evaluator, values worked out by hand, stability with huge and -inf
** logits, and finite-difference gradients.
*/
#include "compiler/refeval.h"
#include "runtime/rt.h"
#include "tests/testutil.h"

#include <math.h>

static void jit_vs_ref(kiln_ctx *ctx, int n_in, kiln_node **ins, kiln_tensor **vals, kiln_node *out,
                       const kiln_tensor **got_out) {
  ck_assert_msg(out != NULL, "%s", kiln_errmsg(ctx));
  kiln_function *f = kiln_function_new(ctx, "f", n_in, ins, 1, &out, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  const kiln_tensor *got;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)vals, &got), KILN_OK);
  kiln_tensor *want;
  ck_assert_int_eq(kl_ref_run(ctx, n_in, ins, (const kiln_tensor *const *)vals, 1, &out, &want),
                   KILN_OK);
  ck_assert_msg(kt_same_bits(got, want), "JIT and reference differ");
  kiln_tensor_free(want);
  if (got_out) *got_out = got;
}

static const double M[12] = {1, 5, NAN, -2, 0.0, -0.0, -INFINITY, 3, 7, 7, -1, 2};

START_TEST(max_every_dtype_and_axis) {
  kiln_dtype dt = (kiln_dtype)(_i / 4);
  int axis = _i % 4 - 1; /* -1: all axes */
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_input(ctx, "x", dt, 2, NULL);
  int64_t sh[2] = {3, 4};
  kiln_tensor *v = kt_tensor(dt, 2, sh, M);
  kiln_node *y = axis < 0 ? kiln_max(x) : axis < 2 ? kiln_max_axis(x, axis) : kiln_max_axis(x, -1);
  jit_vs_ref(ctx, 1, &x, &v, y, NULL);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(max_values) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dmatrix(ctx, "x");
  int64_t sh[2] = {3, 4};
  kiln_tensor *v = kt_tensor(KILN_FLOAT64, 2, sh, M);
  const kiln_tensor *r;
  jit_vs_ref(ctx, 1, &x, &v, kiln_max_axis(x, 1), &r);
  /* rows: [1 5 nan -2] -> nan, [0 -0 -inf 3] -> 3, [7 7 -1 2] -> 7 */
  ck_assert(isnan(kiln_tensor_get(r, 0)) && kiln_tensor_get(r, 1) == 3 &&
            kiln_tensor_get(r, 2) == 7);
  kiln_tensor_free(v);
  double zz[2] = {0.0, -0.0};
  kiln_node *z = kiln_dvector(ctx, "z");
  kiln_tensor *zv = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){2}, zz);
  jit_vs_ref(ctx, 1, &z, &zv, kiln_max(z), &r);
  ck_assert(kiln_tensor_get(r, 0) == 0.0 && !signbit(kiln_tensor_get(r, 0))); /* first stays */
  kiln_tensor_free(zv);
  kiln_node *iv = kiln_ivector(ctx, "i");
  kiln_tensor *ivv = kiln_tensor_new(KILN_INT32, 1, (int64_t[]){3}, (int32_t[]){-5, -9, -7});
  jit_vs_ref(ctx, 1, &iv, &ivv, kiln_max(iv), &r);
  ck_assert_int_eq(kiln_tensor_dtype(r), KILN_INT32);
  ck_assert(kiln_tensor_get(r, 0) == -5);
  kiln_tensor_free(ivv);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(softmax_values_and_stability) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *z = kiln_dmatrix(ctx, "z");
  /* rows: [0 0], [1000 1000] (huge), [0 -inf] (one -inf), [-inf -inf] */
  double zv[8] = {0, 0, 1000, 1000, 0, -INFINITY, -INFINITY, -INFINITY};
  kiln_tensor *v = kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){4, 2}, zv);
  const kiln_tensor *r;
  jit_vs_ref(ctx, 1, &z, &v, kiln_log_softmax(z), &r);
  ck_assert(kiln_tensor_get(r, 0) == -log(2.0) && kiln_tensor_get(r, 1) == -log(2.0));
  ck_assert(kiln_tensor_get(r, 2) == -log(2.0) && kiln_tensor_get(r, 3) == -log(2.0));
  ck_assert(kiln_tensor_get(r, 4) == 0.0 && kiln_tensor_get(r, 5) == -INFINITY);
  ck_assert(isnan(kiln_tensor_get(r, 6)) && isnan(kiln_tensor_get(r, 7))); /* documented */
  jit_vs_ref(ctx, 1, &z, &v, kiln_softmax(z), &r);
  ck_assert(kiln_tensor_get(r, 2) == 0.5 && kiln_tensor_get(r, 4) == 1.0 &&
            kiln_tensor_get(r, 5) == 0.0);
  /* crossentropy with one-hot targets: the -inf logit against a 0 target adds nothing */
  kiln_node *t = kiln_dmatrix(ctx, "t");
  double tv[8] = {1, 0, 0, 1, 1, 0, 1, 0};
  kiln_tensor *vals[2] = {v, kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){4, 2}, tv)};
  jit_vs_ref(ctx, 2, (kiln_node *[]){z, t}, vals, kiln_crossentropy(z, t), &r);
  ck_assert(kiln_tensor_get(r, 0) == log(2.0) && kiln_tensor_get(r, 1) == log(2.0));
  ck_assert(kiln_tensor_get(r, 2) == 0.0);
  kiln_tensor_free(vals[0]);
  kiln_tensor_free(vals[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* The loss on logits scaled by 1e3 has a finite value and gradient. */
START_TEST(huge_logits_finite_gradient) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *z = kiln_dmatrix(ctx, "z"), *t = kiln_dmatrix(ctx, "t"), *g;
  kiln_node *loss = kiln_mean(kiln_crossentropy(kiln_mul(z, kiln_lit(ctx, 1e3)), t));
  ck_assert_int_eq(kiln_grad(loss, 1, &z, &g, 0), KILN_OK);
  kiln_function *f =
      kiln_function_new(ctx, "f", 2, (kiln_node *[]){z, t}, 2, (kiln_node *[]){loss, g}, 0, NULL);
  ck_assert_ptr_nonnull(f);
  kiln_tensor *in[2] = {
      kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, -4, 0.5, 9}),
      kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){2, 3}, (double[]){1, 0, 0, 0, 1, 0})};
  const kiln_tensor *o[2];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)in, o), KILN_OK);
  ck_assert(isfinite(kiln_tensor_get(o[0], 0)));
  /* (1000*2 - 1000*1 + ...) : row 0 loses 2000 (3000 - 1000), row 1 loses 8500 */
  ck_assert(fabs(kiln_tensor_get(o[0], 0) - (2000.0 + 8500.0) / 2) < 1e-6);
  for (int i = 0; i < 6; i++)
    ck_assert(isfinite(kiln_tensor_get(o[1], i)));
  kiln_tensor_free(in[0]);
  kiln_tensor_free(in[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* Central differences of a scalar cost against the JIT gradient. */
static void fd(kiln_node *(*build)(kiln_ctx *, kiln_node *), const double *xs, int64_t r, int64_t c,
               const char *what) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dmatrix(ctx, "x"), *g;
  kiln_node *cost = build(ctx, x);
  ck_assert_int_eq(kiln_grad(cost, 1, &x, &g, 0), KILN_OK);
  kiln_function *fc = kiln_function_new(ctx, "c", 1, &x, 1, &cost, 0, NULL);
  kiln_function *fg = kiln_function_new(ctx, "g", 1, &x, 1, &g, 0, NULL);
  ck_assert_ptr_nonnull(fc);
  ck_assert_ptr_nonnull(fg);
  kiln_tensor *in = kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){r, c}, xs);
  const kiln_tensor *o;
  ck_assert_int_eq(kiln_call(fg, (const kiln_tensor *const *)&in, &o), KILN_OK);
  double grad[64];
  for (int64_t i = 0; i < r * c; i++)
    grad[i] = kiln_tensor_get(o, i);
  double *xv = kiln_tensor_data(in);
  for (int64_t i = 0; i < r * c; i++) {
    double x0 = xv[i], v[2];
    for (int s = 0; s < 2; s++) {
      xv[i] = x0 + (s ? -1e-6 : 1e-6);
      ck_assert_int_eq(kiln_call(fc, (const kiln_tensor *const *)&in, &o), KILN_OK);
      v[s] = kiln_tensor_get(o, 0);
    }
    xv[i] = x0;
    double n = (v[0] - v[1]) / 2e-6;
    ck_assert_msg(fabs(grad[i] - n) <= 1e-5 + 1e-3 * fabs(n),
                  "%s: element %lld grad %.10g fd %.10g", what, (long long)i, grad[i], n);
  }
  kiln_tensor_free(in);
  kiln_ctx_free(ctx);
}

static kiln_node *weights(kiln_ctx *ctx, int64_t r, int64_t c) {
  double w[64];
  for (int i = 0; i < r * c; i++)
    w[i] = 0.5 + 0.25 * (i % 5) - 0.1 * i;
  return kiln_const(ctx, KILN_FLOAT64, 2, ((int64_t[]){r, c}), w);
}
static kiln_node *c_max(kiln_ctx *ctx, kiln_node *x) {
  return kiln_sum(kiln_mul(kiln_max_axis(x, 1), kiln_const(ctx, KILN_FLOAT64, 1, ((int64_t[]){3}),
                                                           ((double[]){1.5, -2, 0.7}))));
}
static kiln_node *c_logsm(kiln_ctx *ctx, kiln_node *x) {
  return kiln_sum(kiln_mul(kiln_log_softmax(x), weights(ctx, 3, 4)));
}
static kiln_node *c_sm(kiln_ctx *ctx, kiln_node *x) {
  return kiln_sum(kiln_mul(kiln_softmax(x), weights(ctx, 3, 4)));
}
static kiln_node *c_xent(kiln_ctx *ctx, kiln_node *x) {
  double t[12] = {0, 1, 0, 0, 0.2, 0.3, 0.5, 0, 1, 0, 0, 0};
  return kiln_mean(kiln_crossentropy(x, kiln_const(ctx, KILN_FLOAT64, 2, ((int64_t[]){3, 4}), t)));
}

START_TEST(gradients) {
  const double xs[12] = {0.3,  -1.2, 2.5, 0.9, -0.4, 1.7,
                         -2.2, 0.1,  1.1, 0.6, -0.8, 3.1}; /* no ties */
  fd(c_max, xs, 3, 4, "max");
  fd(c_logsm, xs, 3, 4, "log_softmax");
  fd(c_sm, xs, 3, 4, "softmax");
  fd(c_xent, xs, 3, 4, "crossentropy");
}
END_TEST

/* d/dx sum(stop_gradient(x) * x) is stop_gradient(x) = x, not 2x; a wrt
** reached only through stop_gradient gets zeros. */
START_TEST(stop_gradient_blocks) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *g[2];
  kiln_node *cost = kiln_sum(kiln_mul(kiln_stop_gradient(x), x));
  ck_assert_int_eq(kiln_grad(cost, 1, &x, g, 0), KILN_OK);
  kiln_node *only = kiln_sum(kiln_exp(kiln_stop_gradient(x)));
  ck_assert_int_eq(kiln_grad(only, 1, &x, g + 1, 0), KILN_OK);
  kiln_function *f =
      kiln_function_new(ctx, "f", 1, &x, 3, (kiln_node *[]){g[0], g[1], cost}, 0, NULL);
  ck_assert_ptr_nonnull(f);
  kiln_tensor *in = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){3}, (double[]){1.5, -2, 4});
  const kiln_tensor *o[3];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&in, o), KILN_OK);
  const double xs[3] = {1.5, -2, 4};
  for (int i = 0; i < 3; i++) {
    ck_assert(kiln_tensor_get(o[0], i) == xs[i]);
    ck_assert(kiln_tensor_get(o[1], i) == 0.0);
  }
  ck_assert(kiln_tensor_get(o[2], 0) == 1.5 * 1.5 + 4.0 + 16.0);
  kiln_tensor_free(in);
  kiln_ctx_free(ctx);
}
END_TEST

/* softmax along axis 0 by hand (numpy's softmax(x, axis=0)); log_softmax
** along -2 equals the transpose of the last-axis form of the transpose. */
START_TEST(softmax_any_axis) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dmatrix(ctx, "x");
  double xv[6] = {0.5, -1, 2, 3, 0.25, -4};
  kiln_tensor *v = kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){2, 3}, xv);
  const kiln_tensor *r;
  jit_vs_ref(ctx, 1, &x, &v, kiln_softmax_axis(x, 0), &r);
  for (int j = 0; j < 3; j++) {
    double m = fmax(xv[j], xv[3 + j]);
    double s = exp(xv[j] - m) + exp(xv[3 + j] - m);
    for (int i = 0; i < 2; i++) {
      double want = exp(xv[3 * i + j] - m) / s;
      ck_assert_msg(fabs(kiln_tensor_get(r, 3 * i + j) - want) <= 1e-15,
                    "softmax axis 0 [%d,%d]: %.17g want %.17g", i, j, kiln_tensor_get(r, 3 * i + j),
                    want);
    }
  }
  kiln_tensor *a = kt_clone(r), *b; /* the softmax, kept */
  jit_vs_ref(ctx, 1, &x, &v, kiln_log_softmax_axis(x, -2), &r);
  b = kt_clone(r);
  jit_vs_ref(ctx, 1, &x, &v, kiln_transpose(kiln_log_softmax(kiln_transpose(x, 0, NULL)), 0, NULL),
             &r);
  ck_assert_msg(kt_same_bits(b, r), "log_softmax along -2 differs from the transposed form");
  for (int k = 0; k < 6; k++)
    ck_assert(fabs(exp(kiln_tensor_get(b, k)) - kiln_tensor_get(a, k)) <= 1e-15);
  ck_assert_ptr_null(kiln_softmax_axis(x, 2));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  kiln_tensor_free(a);
  kiln_tensor_free(b);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

static kiln_node *c_xent_labels(kiln_ctx *ctx, kiln_node *x) {
  kiln_node *y = kiln_const(ctx, KILN_INT32, 1, ((int64_t[]){3}), ((int32_t[]){1, 0, 3}));
  return kiln_mean(kiln_crossentropy_labels(kiln_reshape(x, 2, ((int64_t[]){3, 4})), y));
}

/* Integer labels give what the one-hot targets give, bit for bit; the
** gradient matches finite differences; a label out of range is a call
** error; the errors when built. */
START_TEST(crossentropy_integer_labels) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *z = kiln_input(ctx, "z", KILN_FLOAT64, 2, (int64_t[]){KILN_DYN, 4});
  kiln_node *y = kiln_input(ctx, "y", KILN_INT32, 1, NULL);
  double t[12] = {0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1};
  kiln_node *hot = kiln_const(ctx, KILN_FLOAT64, 2, (int64_t[]){3, 4}, t);
  kiln_node *outs[2] = {kiln_crossentropy_labels(z, y), kiln_crossentropy(z, hot)};
  ck_assert_msg(outs[0] && outs[1], "%s", kiln_errmsg(ctx));
  kiln_function *f = kiln_function_new(ctx, "f", 2, (kiln_node *[]){z, y}, 2, outs, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *in[2] = {
      kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){3, 4},
                      (double[]){0.3, -1.2, 2.5, 0.9, -0.4, 1.7, -2.2, 0.1, 1.1, 0.6, -0.8, 3.1}),
      kiln_tensor_new(KILN_INT32, 1, (int64_t[]){3}, (int32_t[]){1, 0, 3})};
  const kiln_tensor *o[2];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)in, o), KILN_OK);
  ck_assert(kt_same_bits(o[0], o[1]));
  ((int32_t *)kiln_tensor_data(in[1]))[2] = 4;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)in, o), KILN_SHAPE);
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_crossentropy_labels(z, kiln_dvector(ctx, "f")));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_crossentropy_labels(kiln_dmatrix(ctx, "d"), y));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  kiln_tensor_free(in[0]);
  kiln_tensor_free(in[1]);
  kiln_ctx_free(ctx);
  const double xs[12] = {0.3, -1.2, 2.5, 0.9, -0.4, 1.7, -2.2, 0.1, 1.1, 0.6, -0.8, 3.1};
  fd(c_xent_labels, xs, 3, 4, "crossentropy with labels");
}
END_TEST

int main(void) {
  Suite *s = suite_create("nn");
  TCase *tc = tcase_create("nn");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, max_every_dtype_and_axis, 0, KILN_N_DTYPES * 4);
  tcase_add_test(tc, max_values);
  tcase_add_test(tc, softmax_values_and_stability);
  tcase_add_test(tc, huge_logits_finite_gradient);
  tcase_add_test(tc, gradients);
  tcase_add_test(tc, stop_gradient_blocks);
  tcase_add_test(tc, softmax_any_axis);
  tcase_add_test(tc, crossentropy_integer_labels);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
