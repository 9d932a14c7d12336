/*
** test_function.c -- kiln_function_new / kiln_call through the public API:
** the seed's ten training steps bit for bit, the semantics of outputs and
** updates (everything computed from the values shared variables had when
** the call began, committed together afterwards), unusual output and update
** lists, dynamic shapes against the reference evaluator (also random
** expressions at random sizes), shared variables of every dtype, functions
** sharing state, and the lifetimes of functions and contexts.
**
** Expected values are computed here with plain C double arithmetic following
** numpy's formulas (or taken from the recorded numpy output in SEED.md), or
** come from the reference evaluator (kl_ref_run) -- never from the JIT.
*/
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "tests/testutil.h"
#include "compiler/refeval.h"
#include "runtime/rt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- helpers */

#define IN_ARGS(...) ((const kiln_tensor *const[]){__VA_ARGS__})

static void teardown(void) { kl_mem_fail_at(0); }

/* Fails with the context's message unless st is KILN_OK. */
#define OK(ctx, expr)                                                                              \
  do {                                                                                             \
    kiln_status st_ = (expr);                                                                      \
    ck_assert_msg(st_ == KILN_OK, "%s -> %s: %s", #expr, kiln_status_str(st_), kiln_errmsg(ctx));  \
  } while (0)

static kiln_function *must_fn(kiln_ctx *ctx, kiln_function *f) {
  ck_assert_msg(f != NULL, "kiln_function_new: %s", kiln_errmsg(ctx));
  return f;
}

static kiln_tensor *dvec(int64_t n, const double *v) {
  kiln_tensor *t = kiln_tensor_new(KILN_FLOAT64, 1, &n, v);
  ck_assert_ptr_nonnull(t);
  return t;
}

/* Bit pattern of a double, for exact comparisons that also cover -0.0/NaN. */
static uint64_t bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

#define ASSERT_BITS(got, want, ...) ck_assert_msg(bits(got) == bits(want), __VA_ARGS__)

/* t must be a float64 tensor of rank/shape (n,) (or rank 0 when n < 0)
** holding exactly want[0..]. */
static void check_f64(const kiln_tensor *t, int64_t n, const double *want, const char *what) {
  ck_assert_msg(t != NULL, "%s: NULL tensor", what);
  ck_assert_msg(kiln_tensor_dtype(t) == KILN_FLOAT64, "%s: dtype %s", what,
                kiln_dtype_name(kiln_tensor_dtype(t)));
  if (n < 0) {
    ck_assert_msg(kiln_tensor_rank(t) == 0, "%s: rank %d, want 0", what, kiln_tensor_rank(t));
    n = 1;
  } else {
    ck_assert_msg(kiln_tensor_rank(t) == 1, "%s: rank %d, want 1", what, kiln_tensor_rank(t));
    ck_assert_msg(kiln_tensor_dim(t, 0) == n, "%s: length %lld, want %lld", what,
                  (long long)kiln_tensor_dim(t, 0), (long long)n);
  }
  const double *d = kiln_tensor_data(t);
  for (int64_t i = 0; i < n; i++)
    ASSERT_BITS(d[i], want[i], "%s[%lld]: got %.17g, want %.17g", what, (long long)i, d[i],
                want[i]);
}

/* The shared variable's value must be exactly want[0..n-1] (float64). */
static void check_shared(const kiln_node *v, int64_t n, const double *want, const char *what) {
  double got[64];
  int64_t cnt = n < 0 ? 1 : n; /* n < 0: rank 0 */
  ck_assert(cnt <= 64);
  ck_assert_int_eq(kiln_shared_get(v, got, (size_t)cnt * sizeof *got), KILN_OK);
  for (int64_t i = 0; i < cnt; i++)
    ASSERT_BITS(got[i], want[i], "%s[%lld]: got %.17g, want %.17g", what, (long long)i, got[i],
                want[i]);
  check_f64(kiln_shared_value(v), n, want, what);
}

/* ------------------------------------------------------------- the seed */

typedef struct seed {
  kiln_ctx *ctx;
  kiln_node *x, *target, *W, *y;
  kiln_function *f;
} seed;

/* Builds the seed exactly as examples/seed.c does. */
static void seed_build(seed *s) {
  s->ctx = kiln_ctx_new();
  ck_assert_ptr_nonnull(s->ctx);
  kiln_ctx *ctx = s->ctx;
  s->x = kiln_fvector(ctx, "x");
  s->target = kiln_fscalar(ctx, "target");
  double w0[] = {0.1, 0.25, 0.15, 0.3};
  s->W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){4}, w0);
  s->y = kiln_sum(kiln_mul(s->x, s->W));
  kiln_node *cost = kiln_sqr(kiln_sub(s->target, s->y));
  kiln_node *gradients[1];
  OK(ctx, kiln_grad(cost, 1, &s->W, gradients, 0));
  kiln_node *W_updated = kiln_sub(s->W, kiln_mul(kiln_lit(ctx, 0.1), gradients[0]));
  kiln_update updates[] = {{s->W, W_updated}};
  kiln_node *inputs[] = {s->x, s->target};
  s->f = must_fn(ctx, kiln_function_new(ctx, "f", 2, inputs, 1, &s->y, 1, updates));
}

START_TEST(seed_ten_iterations_bit_exact) {
  seed s;
  seed_build(&s);
  ck_assert_int_eq(kiln_function_n_inputs(s.f), 2);
  ck_assert_int_eq(kiln_function_n_outputs(s.f), 1);
  float xv[] = {1.0f, 1.0f, 1.0f, 1.0f}, tv = 100.0f;
  kiln_tensor *x = kiln_tensor_new(KILN_FLOAT32, 1, (int64_t[]){4}, xv);
  kiln_tensor *t = kiln_tensor_new(KILN_FLOAT32, 0, NULL, &tv);
  ck_assert(x && t);

  /* numpy, by hand: float32 inputs widen to float64 because W is float64 */
  double w[4] = {0.1, 0.25, 0.15, 0.3}, xd[4], td = (double)tv;
  for (int j = 0; j < 4; j++)
    xd[j] = (double)xv[j];
  /* The recorded numpy output (SEED.md): shortest reprs, so exact doubles. */
  static const double numpy_y[10] = {
      0.8,       80.16000000000001, 96.03200000000001, 99.2064,           99.84128,
      99.968256, 99.9936512,        99.99873024,       99.99974604799999, 99.99994920960002};
  static const double numpy_w1[4] = {19.940000000000005, 20.090000000000003, 19.990000000000002,
                                     20.140000000000004};
  for (int it = 0; it < 10; it++) {
    /* y = (x * W).sum(): numpy adds in index order from +0.0 */
    double y = 0.0;
    for (int j = 0; j < 4; j++)
      y = y + xd[j] * w[j];
    /* W - 0.1 * ((-2 * (t - y)) * x) */
    double g = -2.0 * (td - y);
    for (int j = 0; j < 4; j++)
      w[j] = w[j] - 0.1 * (g * xd[j]);

    const kiln_tensor *out = NULL;
    OK(s.ctx, kiln_call(s.f, IN_ARGS(x, t), &out));
    char what[64];
    snprintf(what, sizeof what, "y at iteration %d", it);
    check_f64(out, -1, &y, what);
    ASSERT_BITS(kiln_tensor_get(out, 0), numpy_y[it], "iteration %d: y = %.17g, numpy %.17g", it,
                kiln_tensor_get(out, 0), numpy_y[it]);
    snprintf(what, sizeof what, "W after iteration %d", it);
    check_shared(s.W, 4, w, what);
    if (it == 0) check_shared(s.W, 4, numpy_w1, "W after iteration 0 (SEED.md)");
  }
  kiln_tensor_free(x);
  kiln_tensor_free(t);
  kiln_ctx_free(s.ctx);
}
END_TEST

/* ------------------------------------------------------- update semantics */

START_TEST(outputs_see_old_values) {
  kiln_ctx *ctx = kiln_ctx_new();
  double w0[] = {1.5, -2.0, 0.25};
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){3}, w0);
  kiln_node *W2 = kiln_mul(W, kiln_lit(ctx, 2.0));
  kiln_update up = {W, kiln_add(W, kiln_lit(ctx, 1.0))};
  kiln_node *outs[] = {W, W2};
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "f", 0, NULL, 2, outs, 1, &up));
  double w[3] = {1.5, -2.0, 0.25};
  for (int call = 0; call < 3; call++) {
    const kiln_tensor *o[2] = {NULL, NULL};
    OK(ctx, kiln_call(f, NULL, o));
    double w2[3], wn[3];
    for (int i = 0; i < 3; i++)
      w2[i] = w[i] * 2.0, wn[i] = w[i] + 1.0;
    check_f64(o[0], 3, w, "output W (old value)");
    check_f64(o[1], 3, w2, "output W*2 (from the old value)");
    check_shared(W, 3, wn, "W after the call");
    memcpy(w, wn, sizeof w);
  }
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(swap_updates) {
  kiln_ctx *ctx = kiln_ctx_new();
  /* values whose bits matter: -0.0, a NaN with a payload, a subnormal */
  uint64_t nan_bits = 0x7ff4000000000123ull;
  double qnan;
  memcpy(&qnan, &nan_bits, sizeof qnan);
  double a0[] = {-0.0, qnan, 4.9e-324, 1.0}, b0[] = {3.0, -7.5, 0.0, -1e300};
  kiln_node *a = kiln_shared(ctx, "a", KILN_FLOAT64, 1, (int64_t[]){4}, a0);
  kiln_node *b = kiln_shared(ctx, "b", KILN_FLOAT64, 1, (int64_t[]){4}, b0);
  kiln_update ups[] = {{a, b}, {b, a}};
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "swap", 0, NULL, 0, NULL, 2, ups));
  OK(ctx, kiln_call(f, NULL, NULL));
  check_shared(a, 4, b0, "a after one swap");
  check_shared(b, 4, a0, "b after one swap");
  OK(ctx, kiln_call(f, NULL, NULL));
  check_shared(a, 4, a0, "a after two swaps");
  check_shared(b, 4, b0, "b after two swaps");

  /* computed swap: a <- b * 2, b <- a * 3, both from the old values */
  double c0[] = {1.0, 2.0}, d0[] = {10.0, 20.0};
  kiln_node *c = kiln_shared(ctx, "c", KILN_FLOAT64, 1, (int64_t[]){2}, c0);
  kiln_node *d = kiln_shared(ctx, "d", KILN_FLOAT64, 1, (int64_t[]){2}, d0);
  kiln_update ups2[] = {{c, kiln_mul(d, kiln_lit(ctx, 2.0))}, {d, kiln_mul(c, kiln_lit(ctx, 3.0))}};
  kiln_function *g = must_fn(ctx, kiln_function_new(ctx, "g", 0, NULL, 0, NULL, 2, ups2));
  OK(ctx, kiln_call(g, NULL, NULL));
  check_shared(c, 2, (double[]){20.0, 40.0}, "c <- d*2");
  check_shared(d, 2, (double[]){3.0, 6.0}, "d <- c*3");
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(update_used_by_two_outputs) {
  kiln_ctx *ctx = kiln_ctx_new();
  double w0[] = {0.5, 1.25, -3.0};
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){3}, w0);
  kiln_node *outs[] = {kiln_mul(W, kiln_lit(ctx, 2)), kiln_sum(W)};
  kiln_update up = {W, kiln_sub(W, kiln_lit(ctx, 1))};
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "f", 0, NULL, 2, outs, 1, &up));
  double w[3];
  memcpy(w, w0, sizeof w);
  for (int call = 0; call < 2; call++) {
    const kiln_tensor *o[2];
    OK(ctx, kiln_call(f, NULL, o));
    double w2[3], s = 0.0, wn[3];
    for (int i = 0; i < 3; i++)
      w2[i] = w[i] * 2.0, s = s + w[i], wn[i] = w[i] - 1.0;
    check_f64(o[0], 3, w2, "W*2 from the old W");
    check_f64(o[1], -1, &s, "sum(W) from the old W");
    check_shared(W, 3, wn, "W - 1");
    memcpy(w, wn, sizeof w);
  }
  /* the update value is itself an output */
  kiln_node *Wm = kiln_sub(W, kiln_lit(ctx, 0.5));
  kiln_node *outs2[] = {Wm, kiln_sum(W)};
  kiln_update up2 = {W, Wm};
  kiln_function *g = must_fn(ctx, kiln_function_new(ctx, "g", 0, NULL, 2, outs2, 1, &up2));
  const kiln_tensor *o[2];
  OK(ctx, kiln_call(g, NULL, o));
  double wm[3], s = 0.0;
  for (int i = 0; i < 3; i++)
    wm[i] = w[i] - 0.5, s = s + w[i];
  check_f64(o[0], 3, wm, "output that is also the update value");
  check_f64(o[1], -1, &s, "sum of the old W");
  check_shared(W, 3, wm, "W after W <- W - 0.5");
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(leaf_updates) {
  kiln_ctx *ctx = kiln_ctx_new();
  double w0[] = {1.0, -0.0, 3.5}, v0[] = {7.0, 8.0, 9.0};
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){3}, w0);
  kiln_node *V = kiln_shared(ctx, "V", KILN_FLOAT64, 1, (int64_t[]){3}, v0);

  /* identity W <- W */
  kiln_update id = {W, W};
  kiln_function *fi = must_fn(ctx, kiln_function_new(ctx, "id", 0, NULL, 1, &W, 1, &id));
  const kiln_tensor *o = NULL;
  OK(ctx, kiln_call(fi, NULL, &o));
  check_f64(o, 3, w0, "output of W <- W");
  check_shared(W, 3, w0, "W after W <- W");

  /* W <- V, while V <- V + 1: W gets V's old value */
  kiln_update ups[] = {{W, V}, {V, kiln_add(V, kiln_lit(ctx, 1.0))}};
  kiln_function *fv = must_fn(ctx, kiln_function_new(ctx, "wv", 0, NULL, 0, NULL, 2, ups));
  OK(ctx, kiln_call(fv, NULL, NULL));
  check_shared(W, 3, v0, "W <- V");
  check_shared(V, 3, (double[]){8.0, 9.0, 10.0}, "V <- V + 1");
  OK(ctx, kiln_call(fv, NULL, NULL));
  check_shared(W, 3, (double[]){8.0, 9.0, 10.0}, "W <- V (second call)");

  /* W <- x, an input; x's later changes do not reach W */
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_update ux = {W, x};
  kiln_function *fx = must_fn(ctx, kiln_function_new(ctx, "wx", 1, &x, 1, &W, 1, &ux));
  double xv[] = {-1.0, 0.125, 1e-310};
  kiln_tensor *xt = dvec(3, xv);
  OK(ctx, kiln_call(fx, IN_ARGS(xt), &o));
  check_f64(o, 3, (double[]){8.0, 9.0, 10.0}, "output W (old) of W <- x");
  check_shared(W, 3, xv, "W <- x");
  ((double *)kiln_tensor_data(xt))[0] = 42.0;
  check_shared(W, 3, xv, "W after the caller changed x");
  kiln_tensor_free(xt);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------ output lists */

START_TEST(several_outputs) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *v = kiln_dvector(ctx, "v");
  kiln_node *outs[] = {kiln_add(x, v), kiln_mul(x, v), kiln_sum(x), kiln_sub(v, x)};
  kiln_node *ins[] = {x, v};
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "f", 2, ins, 4, outs, 0, NULL));
  ck_assert_int_eq(kiln_function_n_outputs(f), 4);
  double xv[] = {1.0, 2.5, -4.0, 0.1}, vv[] = {0.2, -0.5, 8.0, 0.7};
  kiln_tensor *xt = dvec(4, xv), *vt = dvec(4, vv);
  const kiln_tensor *o[4];
  OK(ctx, kiln_call(f, IN_ARGS(xt, vt), o));
  double add[4], mul[4], sub[4], s = 0.0;
  for (int i = 0; i < 4; i++)
    add[i] = xv[i] + vv[i], mul[i] = xv[i] * vv[i], sub[i] = vv[i] - xv[i];
  for (int i = 0; i < 4; i++)
    s = s + xv[i];
  check_f64(o[0], 4, add, "x + v");
  check_f64(o[1], 4, mul, "x * v");
  check_f64(o[2], -1, &s, "sum(x)");
  check_f64(o[3], 4, sub, "v - x");
  kiln_tensor_free(xt);
  kiln_tensor_free(vt);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(same_node_twice_and_input_as_output) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *x3 = kiln_mul(x, kiln_lit(ctx, 3.0));
  kiln_node *outs[] = {x3, x3, x, x};
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "f", 1, &x, 4, outs, 0, NULL));
  uint64_t nb = 0xfff8000000000abcull; /* a negative quiet NaN with a payload */
  double nan_;
  memcpy(&nan_, &nb, sizeof nan_);
  double xv[] = {1.0, -0.0, 1e308, nan_, 0.1};
  kiln_tensor *xt = dvec(5, xv);
  const kiln_tensor *o[4];
  OK(ctx, kiln_call(f, IN_ARGS(xt), o));
  double x3v[5];
  volatile double three = 3.0; /* computed at run time, as the JIT does */
  for (int i = 0; i < 5; i++)
    x3v[i] = xv[i] * three;
  check_f64(o[0], 5, x3v, "x*3 (first)");
  check_f64(o[1], 5, x3v, "x*3 (second)");
  check_f64(o[2], 5, xv, "x as an output");
  check_f64(o[3], 5, xv, "x as an output (again)");
  /* outputs belong to the function: changing the input afterwards does not
  ** change them */
  ((double *)kiln_tensor_data(xt))[0] = 99.0;
  check_f64(o[2], 5, xv, "x output after the caller changed x");
  check_f64(o[0], 5, x3v, "x*3 after the caller changed x");
  kiln_tensor_free(xt);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(constant_outputs) {
  kiln_ctx *ctx = kiln_ctx_new();
  float cv[] = {1.5f, -2.0f, 0.0f};
  kiln_node *c1 = kiln_const(ctx, KILN_FLOAT32, 1, (int64_t[]){3}, cv);
  kiln_node *c2 = kiln_scalar(ctx, KILN_INT16, -7.9); /* C cast: -7 */
  kiln_node *c3 = kiln_lit(ctx, 0.25);                /* weak float alone: float64 */
  kiln_node *c4 = kiln_lit(ctx, 3);                   /* weak int alone: int64 */
  int8_t mv[] = {1, -2, 3, -4, 5, -6};
  kiln_node *c5 = kiln_const(ctx, KILN_INT8, 2, (int64_t[]){2, 3}, mv);
  kiln_node *outs[] = {c1, c2, c3, c4, c5};
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "consts", 0, NULL, 5, outs, 0, NULL));
  const kiln_tensor *o[5];
  for (int call = 0; call < 2; call++) {
    OK(ctx, kiln_call(f, NULL, o));
    ck_assert_int_eq(kiln_tensor_dtype(o[0]), KILN_FLOAT32);
    ck_assert_int_eq(kiln_tensor_rank(o[0]), 1);
    ck_assert_int_eq(kiln_tensor_dim(o[0], 0), 3);
    ck_assert_mem_eq(kiln_tensor_data(o[0]), cv, sizeof cv);
    ck_assert_int_eq(kiln_tensor_dtype(o[1]), KILN_INT16);
    ck_assert_int_eq(kiln_tensor_rank(o[1]), 0);
    ck_assert_int_eq(*(const int16_t *)kiln_tensor_data(o[1]), -7);
    check_f64(o[2], -1, (double[]){0.25}, "weak literal 0.25");
    ck_assert_int_eq(kiln_tensor_dtype(o[3]), KILN_INT64);
    ck_assert_int_eq(kiln_tensor_rank(o[3]), 0);
    ck_assert_int_eq(*(const int64_t *)kiln_tensor_data(o[3]), 3);
    ck_assert_int_eq(kiln_tensor_dtype(o[4]), KILN_INT8);
    ck_assert_int_eq(kiln_tensor_rank(o[4]), 2);
    ck_assert_int_eq(kiln_tensor_dim(o[4], 0), 2);
    ck_assert_int_eq(kiln_tensor_dim(o[4], 1), 3);
    ck_assert_mem_eq(kiln_tensor_data(o[4]), mv, sizeof mv);
  }
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(updates_only_no_outputs) {
  kiln_ctx *ctx = kiln_ctx_new();
  int32_t c0 = 0;
  kiln_node *counter = kiln_shared(ctx, "counter", KILN_INT32, 0, NULL, &c0);
  kiln_node *x = kiln_iscalar(ctx, "step");
  kiln_update up = {counter, kiln_add(counter, x)};
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "count", 1, &x, 0, NULL, 1, &up));
  ck_assert_int_eq(kiln_function_n_outputs(f), 0);
  int32_t expect = 0;
  for (int32_t i = 1; i <= 5; i++) {
    kiln_tensor *st = kiln_tensor_new(KILN_INT32, 0, NULL, &i);
    const kiln_tensor *dummy[1] = {(const kiln_tensor *)&expect}; /* must stay untouched */
    OK(ctx, kiln_call(f, IN_ARGS(st), i % 2 ? NULL : dummy));
    ck_assert_ptr_eq(dummy[0], (const kiln_tensor *)&expect);
    expect += i;
    int32_t got = -1;
    ck_assert_int_eq(kiln_shared_get(counter, &got, sizeof got), KILN_OK);
    ck_assert_int_eq(got, expect);
    kiln_tensor_free(st);
  }
  ck_assert_int_eq(expect, 15);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(no_inputs) {
  kiln_ctx *ctx = kiln_ctx_new();
  double w0[] = {2.0, 3.0};
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){2}, w0);
  kiln_node *y = kiln_sum(kiln_sqr(W));
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "f", 0, NULL, 1, &y, 0, NULL));
  ck_assert_int_eq(kiln_function_n_inputs(f), 0);
  const kiln_tensor *o = NULL;
  OK(ctx, kiln_call(f, NULL, &o));
  check_f64(o, -1, (double[]){13.0}, "sum(W**2)");
  /* an empty (non-NULL) inputs array works too */
  const kiln_tensor *none[1] = {NULL};
  OK(ctx, kiln_call(f, none, &o));
  check_f64(o, -1, (double[]){13.0}, "sum(W**2), second call");
  kiln_ctx_free(ctx);
}
END_TEST

/* -------------------------------------------------------- dynamic shapes */

/* Calls f and the reference evaluator on the same inputs; every output
** must agree bit for bit. */
static void check_vs_ref(kiln_ctx *ctx, kiln_function *f, int n_in, kiln_node *const *ins,
                         const kiln_tensor *const *vals, int n_out, kiln_node *const *outs,
                         const char *what) {
  const kiln_tensor *got[8];
  kiln_tensor *want[8];
  ck_assert(n_out <= 8);
  OK(ctx, kiln_call(f, vals, got));
  OK(ctx, kl_ref_run(ctx, n_in, ins, vals, n_out, outs, want));
  for (int k = 0; k < n_out; k++) {
    ck_assert_msg(kt_same_bits(got[k], want[k]), "%s: output %d differs from the reference", what,
                  k);
    kiln_tensor_free(want[k]);
  }
}

START_TEST(dynamic_shapes_regrow) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *v = kiln_fvector(ctx, "v");
  kiln_node *t = kiln_add(kiln_mul(x, v), kiln_div(x, kiln_add(kiln_abs(v), kiln_lit(ctx, 1))));
  kiln_node *outs[] = {t, kiln_sum(kiln_mul(t, x)), kiln_sqr(v), kiln_maximum(x, v)};
  kiln_node *ins[] = {x, v};
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "f", 2, ins, 4, outs, 0, NULL));
  uint64_t seed = 12345;
  const int64_t lens[] = {3, 1000, 2, 0, 17};
  for (int c = 0; c < 5; c++) {
    int64_t n = lens[c];
    double *xv = malloc((size_t)(n + 1) * sizeof *xv), *vv = malloc((size_t)(n + 1) * sizeof *vv);
    for (int64_t i = 0; i < n; i++)
      xv[i] = kt_rand(&seed) * 20 - 10, vv[i] = kt_rand(&seed) * 6 - 3;
    kiln_tensor *xt = kt_tensor(KILN_FLOAT64, 1, &n, xv), *vt = kt_tensor(KILN_FLOAT32, 1, &n, vv);
    char what[64];
    snprintf(what, sizeof what, "length %lld", (long long)n);
    check_vs_ref(ctx, f, 2, ins, IN_ARGS(xt, vt), 4, outs, what);
    /* and, independently, the first element of output 0 and the sum */
    const kiln_tensor *o[4];
    OK(ctx, kiln_call(f, IN_ARGS(xt, vt), o));
    ck_assert_int_eq(kiln_tensor_dim(o[0], 0), n);
    /* the documented order of a full float sum: 16 lanes along the axis
    ** for the first n - n % 16 elements, a tree over the lanes, then + tail */
    double lane[16] = {0}, tail = 0.0;
    for (int64_t i = 0; i < n; i++) {
      double vd = (double)(float)vv[i];
      /* abs(v) + 1 is float32 (weak literal), widened for the division */
      double ti = xv[i] * vd + xv[i] / (double)(fabsf((float)vv[i]) + 1.0f);
      ASSERT_BITS(kiln_tensor_get(o[0], i), ti, "%s: t[%lld]", what, (long long)i);
      if (i < n - n % 16)
        lane[i % 16] = lane[i % 16] + ti * xv[i];
      else
        tail = tail + ti * xv[i];
    }
    for (int w = 8; w >= 1; w /= 2)
      for (int j = 0; j < w; j++)
        lane[j] = lane[j] + lane[j + w];
    ASSERT_BITS(kiln_tensor_get(o[1], 0), lane[0] + tail, "%s: sum", what);
    kiln_tensor_free(xt);
    kiln_tensor_free(vt);
    free(xv);
    free(vv);
  }
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(dynamic_matrix_shapes) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *A = kiln_dmatrix(ctx, "A"), *B = kiln_dmatrix(ctx, "B"), *r = kiln_dvector(ctx, "r");
  kiln_node *AB = kiln_dot(A, B);
  kiln_node *outs[] = {AB, kiln_add(AB, r), kiln_sum_axis(AB, 0), kiln_mean_axis(A, 1)};
  kiln_node *ins[] = {A, B, r};
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "f", 3, ins, 4, outs, 0, NULL));
  const int64_t dims[][3] = {{2, 3, 4}, {40, 50, 30}, {1, 1, 1}, {3, 2, 5}};
  uint64_t seed = 777;
  for (int c = 0; c < 4; c++) {
    int64_t m = dims[c][0], k = dims[c][1], n = dims[c][2];
    double *av = malloc((size_t)(m * k) * sizeof *av), *bv = malloc((size_t)(k * n) * sizeof *bv);
    double *rv = malloc((size_t)n * sizeof *rv);
    for (int64_t i = 0; i < m * k; i++)
      av[i] = kt_rand(&seed) - 0.5;
    for (int64_t i = 0; i < k * n; i++)
      bv[i] = kt_rand(&seed) - 0.5;
    for (int64_t i = 0; i < n; i++)
      rv[i] = kt_rand(&seed);
    kiln_tensor *at = kt_tensor(KILN_FLOAT64, 2, (int64_t[]){m, k}, av);
    kiln_tensor *bt = kt_tensor(KILN_FLOAT64, 2, (int64_t[]){k, n}, bv);
    kiln_tensor *rt = kt_tensor(KILN_FLOAT64, 1, &n, rv);
    char what[64];
    snprintf(what, sizeof what, "(%lld,%lld).(%lld,%lld)", (long long)m, (long long)k, (long long)k,
             (long long)n);
    check_vs_ref(ctx, f, 3, ins, IN_ARGS(at, bt, rt), 4, outs, what);
    /* one element by hand: AB[m-1][n-1] */
    const kiln_tensor *o[4];
    OK(ctx, kiln_call(f, IN_ARGS(at, bt, rt), o));
    double d = 0.0;
    for (int64_t i = 0; i < k; i++)
      d = d + av[(m - 1) * k + i] * bv[i * n + n - 1];
    ASSERT_BITS(kiln_tensor_get(o[0], m * n - 1), d, "%s: last element of A.B", what);
    kiln_tensor_free(at);
    kiln_tensor_free(bt);
    kiln_tensor_free(rt);
    free(av);
    free(bv);
    free(rv);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------- shared variables */

/* A byte pattern valid for dt (bool holds 0/1). */
static void pattern(kiln_dtype dt, unsigned char *p, size_t n, unsigned salt) {
  for (size_t i = 0; i < n; i++)
    p[i] = dt == KILN_BOOL ? (unsigned char)((i * 7 + salt) % 3 == 0)
                           : (unsigned char)(i * 37 + 11 + salt * 101);
}

/* The fast step assumes no dynamic size is 1; the first call where one is
** (x of size 1 broadcasts against b) compiles the general step, and a failure
** there, as anywhere in a call, leaves b bit-identical. Values by hand. */
/* Does f's ll dump show the general step (compiled by some call)? */
static bool has_general_step(kiln_function *f) {
  char *ll = kt_dump(f, "ll");
  bool yes = strstr(ll, "; ---- kiln: the general step") != NULL;
  free(ll);
  return yes;
}

START_TEST(general_step_on_first_broadcast) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *b = kiln_shared(ctx, "b", KILN_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3});
  kiln_node *y = kiln_mul(x, b);
  kiln_update u = {b, kiln_add(b, kiln_mul(kiln_lit(ctx, 0.5), x))};
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "f", 1, &x, 1, &y, 1, &u));
  kiln_tensor *x3 = dvec(3, (double[]){1, 2, 3}), *x1 = dvec(1, (double[]){2});
  const kiln_tensor *out = NULL;
  OK(ctx, kiln_call(f, IN_ARGS(x3), &out));
  check_f64(out, 3, (double[]){1, 4, 9}, "y, x of size 3");
  check_shared(b, 3, (double[]){1.5, 3, 4.5}, "b after the first call");
  ck_assert_msg(!has_general_step(f), "a general step before any call needed it");

  /* x of size 1: every allocation of the call (shapes, then the compile of
  ** the general step) fails once in turn, each cleanly */
  long k, failed = 0, compiling = 0;
  kiln_status st = KILN_NOMEM;
  for (k = 1; k < 100000 && st != KILN_OK; k++) {
    long n0 = kl_mem_count();
    kl_mem_fail_at(k);
    st = kiln_call(f, IN_ARGS(x1), &out);
    kl_mem_fail_at(0);
    compiling = kl_mem_count() - n0; /* the successful call's, which compiled */
    if (st == KILN_OK) break;
    ck_assert_msg(st == KILN_NOMEM, "call %ld: %s: %s", k, kiln_status_str(st), kiln_errmsg(ctx));
    check_shared(b, 3, (double[]){1.5, 3, 4.5}, "b after a failed call");
    failed++;
  }
  ck_assert_int_eq(st, KILN_OK);
  ck_assert_int_gt(failed, 5);
  check_f64(out, 3, (double[]){3, 6, 9}, "y, x of size 1");
  check_shared(b, 3, (double[]){2.5, 4, 5.5}, "b after x of size 1");
  ck_assert_msg(has_general_step(f), "no general step after x of size 1");

  /* size 3 again: the fast step; size 1 again: the general step, compiled once */
  OK(ctx, kiln_call(f, IN_ARGS(x3), &out));
  check_f64(out, 3, (double[]){2.5, 8, 16.5}, "y, x of size 3 again");
  check_shared(b, 3, (double[]){3, 5, 7}, "b");
  long n0 = kl_mem_count();
  OK(ctx, kiln_call(f, IN_ARGS(x1), &out));
  ck_assert_msg(kl_mem_count() - n0 < compiling / 2, "a second compile? %ld allocations, %ld",
                kl_mem_count() - n0, compiling);
  check_f64(out, 3, (double[]){6, 10, 14}, "y, x of size 1 again");
  check_shared(b, 3, (double[]){4, 6, 8}, "b");

  /* an equal function shares both steps: its first size-1 call compiles nothing */
  kiln_function *g = must_fn(ctx, kiln_function_new(ctx, "g", 1, &x, 1, &y, 1, &u));
  n0 = kl_mem_count();
  OK(ctx, kiln_call(g, IN_ARGS(x1), &out));
  ck_assert_msg(kl_mem_count() - n0 < compiling / 2, "g compiled again? %ld allocations, %ld",
                kl_mem_count() - n0, compiling);
  check_f64(out, 3, (double[]){8, 12, 16}, "g's y, x of size 1");
  check_shared(b, 3, (double[]){5, 7, 9}, "b after g");
  ck_assert_msg(has_general_step(g), "g's dump lacks the general step");
  kiln_tensor_free(x3);
  kiln_tensor_free(x1);
  kiln_ctx_free(ctx);
}
END_TEST

/* A dynamic size of 1 that does not stretch runs on the fast step: only a
** broadcast of one (an elementwise operand's dynamic axis of size 1 where the
** result's is not 1) needs the general step. Every value is held to the
** reference evaluator, bit for bit. */
static kiln_tensor *dmat(int64_t r, int64_t c, double scale) {
  kiln_tensor *t = kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){r, c}, NULL);
  ck_assert_ptr_nonnull(t);
  double *d = kiln_tensor_data(t);
  for (int64_t i = 0; i < r * c; i++)
    d[i] = scale * (double)((i * 7 % 11) - 5);
  return t;
}

START_TEST(general_step_only_where_a_size_1_stretches) {
  kiln_ctx *ctx = kiln_ctx_new();
  double w[12], bv[3] = {0.25, -0.5, 0.125};
  for (int i = 0; i < 12; i++)
    w[i] = (double)(i % 5 - 2) / 4.0;
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 2, (int64_t[]){4, 3}, w);
  kiln_node *b = kiln_shared(ctx, "b", KILN_FLOAT64, 1, (int64_t[]){3}, bv);

  /* a layer, a softmax crossentropy and its gradients, on a batch of 1 and
  ** of 3 */
  kiln_node *x = kiln_dmatrix(ctx, "x"), *t = kiln_dmatrix(ctx, "t"), *xt[2] = {x, t};
  kiln_node *h = kiln_tanh(kiln_add(kiln_dot(x, W), b));
  kiln_node *loss = kiln_mean(kiln_crossentropy(h, t)), *g[2];
  OK(ctx, kiln_grad(loss, 2, (kiln_node *[]){W, b}, g, 0));
  kiln_node *outs[4] = {h, loss, g[0], g[1]};
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "layer", 2, xt, 4, outs, 0, NULL));
  kiln_tensor *x1 = dmat(1, 4, 0.5), *x3 = dmat(3, 4, 0.25);
  kiln_tensor *t1 = kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){1, 3}, (double[]){0, 1, 0});
  kiln_tensor *t3 =
      kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){3, 3}, (double[]){1, 0, 0, 0, 0, 1, 0, 1, 0});
  kt_check_calls(ctx, f, "layer, batch 1", 2, xt, (kiln_tensor *[]){x1, t1}, 4, outs, 2, NULL);
  ck_assert_msg(!has_general_step(f), "a batch of 1 compiled the general step");
  kt_check_calls(ctx, f, "layer, batch 3", 2, xt, (kiln_tensor *[]){x3, t3}, 4, outs, 1, NULL);
  ck_assert(!has_general_step(f));

  /* x - mean(x, axis 0, keepdims): the static size 1 stretches, the dynamic
  ** one (x of shape (4, 1)) does not */
  kiln_node *c = kiln_sub(x, kiln_reduce(x, KILN_MEAN, 1, (int[]){0}, 1));
  kiln_function *fc = must_fn(ctx, kiln_function_new(ctx, "centre", 1, &x, 1, &c, 0, NULL));
  kiln_tensor *x41 = dmat(4, 1, 1.0), *x11 = dmat(1, 1, 3.0);
  kt_check_calls(ctx, fc, "centre, (4, 1)", 1, &x, &x41, 1, &c, 1, NULL);
  kt_check_calls(ctx, fc, "centre, (1, 1)", 1, &x, &x11, 1, &c, 1, NULL);
  ck_assert_msg(!has_general_step(fc), "no dynamic size 1 stretched, yet a general step");

  /* u * v + u over two dynamic vectors: sizes (1, 1) stay fast; (1, 4)
  ** stretches u and compiles the general step; (4, 1) then uses it */
  kiln_node *u = kiln_dvector(ctx, "u"), *v = kiln_dvector(ctx, "v");
  kiln_node *y = kiln_add(kiln_mul(u, v), u), *uv[2] = {u, v};
  kiln_function *fe = must_fn(ctx, kiln_function_new(ctx, "uv", 2, uv, 1, &y, 0, NULL));
  kiln_tensor *a1 = dvec(1, (double[]){3}), *b1 = dvec(1, (double[]){-2});
  kiln_tensor *a4 = dvec(4, (double[]){1, 2, 3, 4}), *b4 = dvec(4, (double[]){0.5, -1, 2, 8});
  kt_check_calls(ctx, fe, "uv, (1, 1)", 2, uv, (kiln_tensor *[]){a1, b1}, 1, &y, 1, NULL);
  ck_assert(!has_general_step(fe));
  const kiln_tensor *out = NULL;
  OK(ctx, kiln_call(fe, IN_ARGS(a1, b1), &out));
  check_f64(out, 1, (double[]){-3}, "u * v + u, (1, 1)");
  kt_check_calls(ctx, fe, "uv, (1, 4)", 2, uv, (kiln_tensor *[]){a1, b4}, 1, &y, 1, NULL);
  ck_assert_msg(has_general_step(fe), "u of size 1 stretched to 4 without the general step");
  OK(ctx, kiln_call(fe, IN_ARGS(a1, b4), &out));
  check_f64(out, 4, (double[]){4.5, 0, 9, 27}, "u * v + u, (1, 4)");
  OK(ctx, kiln_call(fe, IN_ARGS(a4, b1), &out));
  check_f64(out, 4, (double[]){-1, -2, -3, -4}, "u * v + u, (4, 1)");

  kiln_tensor *all[] = {x1, x3, t1, t3, x41, x11, a1, b1, a4, b4};
  for (size_t k = 0; k < sizeof all / sizeof *all; k++)
    kiln_tensor_free(all[k]);
  kiln_ctx_free(ctx);
}
END_TEST

/* Random small expressions over dynamic inputs (two matrices and a
** vector), each compiled once and called at random shapes with sizes 1, 2
** and 3: every call's outputs against the reference evaluator bit for bit,
** or the same status where the shapes do not broadcast. Calls switch
** between the fast and the general step as their sizes of 1 stretch or
** not. */
START_TEST(random_expressions_at_random_sizes) {
  uint64_t rng = 0x9e3779b97f4a7c15u;
  int fast_only = 0, both = 0, refused = 0;
  for (int trial = 0; trial < 40; trial++) {
    kiln_ctx *ctx = kiln_ctx_new();
    kiln_node *in[3] = {kiln_dmatrix(ctx, "a"), kiln_dmatrix(ctx, "b"), kiln_dvector(ctx, "c")};
    kiln_node *nodes[12] = {in[0], in[1], in[2]};
    int n = 3;
    while (n < 10) {
      kiln_node *x = nodes[(int)(kt_rand(&rng) * n)], *y = nodes[(int)(kt_rand(&rng) * n)], *r;
      int rank = kiln_node_rank(x);
      switch ((int)(kt_rand(&rng) * 7)) {
      case 0: r = kiln_add(x, y); break;
      case 1: r = kiln_mul(x, y); break;
      case 2: r = kiln_sub(x, y); break;
      case 3: r = kiln_maximum(x, kiln_tanh(y)); break;
      case 4: /* a sum over the last axis, kept with size 1 */
        r = rank ? kiln_reduce(x, KILN_SUM, 1, (int[]){rank - 1}, 1) : kiln_exp(x);
        break;
      case 5: r = rank == 2 ? kiln_transpose(x, 0, NULL) : kiln_neg(x); break;
      default: /* a mean over the first axis, dropped */
        r = rank ? kiln_reduce(x, KILN_MEAN, 1, (int[]){0}, 0) : kiln_sqr(x);
        break;
      }
      ck_assert_msg(r != NULL, "trial %d: %s", trial, kiln_errmsg(ctx));
      nodes[n++] = r;
    }
    kiln_node *outs[2] = {nodes[n - 1], nodes[n - 2]};
    kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "random", 3, in, 2, outs, 0, NULL));
    for (int draw = 0; draw < 8; draw++) {
      int64_t sh[3][2];
      for (int k = 0; k < 3; k++)
        for (int d = 0; d < 2; d++)
          sh[k][d] = 1 + (int64_t)(kt_rand(&rng) * 3);
      kiln_tensor *v[3];
      for (int k = 0; k < 3; k++) {
        v[k] = kiln_tensor_new(KILN_FLOAT64, k < 2 ? 2 : 1, sh[k], NULL);
        double *d = kiln_tensor_data(v[k]);
        for (int64_t i = 0; i < kiln_tensor_size(v[k]); i++)
          d[i] = kt_rand(&rng) * 4.0 - 2.0;
      }
      kiln_tensor *ref[2] = {NULL, NULL};
      kiln_status rs = kl_ref_run(ctx, 3, in, (const kiln_tensor *const *)v, 2, outs, ref);
      const kiln_tensor *got[2];
      kiln_status st = kiln_call(f, (const kiln_tensor *const *)v, got);
      ck_assert_msg(st == rs, "trial %d draw %d: call %s, reference %s: %s", trial, draw,
                    kiln_status_str(st), kiln_status_str(rs), kiln_errmsg(ctx));
      refused += st != KILN_OK;
      for (int k = 0; st == KILN_OK && k < 2; k++)
        ck_assert_msg(kt_same_bits(got[k], ref[k]), "trial %d draw %d: output %d differs", trial,
                      draw, k);
      for (int k = 0; k < 3; k++)
        kiln_tensor_free(v[k]);
      for (int k = 0; k < 2; k++)
        kiln_tensor_free(ref[k]);
    }
    if (has_general_step(f))
      both++;
    else
      fast_only++;
    kiln_ctx_free(ctx);
  }
  /* the draws did reach both steps, and some shapes were refused */
  ck_assert_msg(both > 5 && fast_only > 5 && refused > 10,
                "general step in %d trials, fast only in %d, %d calls refused", both, fast_only,
                refused);
}
END_TEST

/* The W3 MLP (64 -> 128 tanh -> 10 softmax crossentropy, dynamic batch)
** compiled in one piece and in two parts on two threads (separate contexts,
** kiln_ctx_set_compile_threads 1 and 2, so neither is a cache hit): three
** training steps give the same bits. */
typedef struct mlp {
  kiln_ctx *ctx;
  kiln_node *W[4];
  kiln_function *f;
} mlp;

static mlp mlp_new(int threads) {
  enum { I = 64, H = 128, O = 10 };
  mlp m = {.ctx = kiln_ctx_new()};
  kiln_ctx *ctx = m.ctx;
  ck_assert_int_eq(kiln_ctx_compile_threads(ctx), 0);
  OK(ctx, kiln_ctx_set_compile_threads(ctx, threads));
  ck_assert_int_eq(kiln_ctx_compile_threads(ctx), threads);
  float *w1 = malloc(sizeof(float) * I * H), *w2 = malloc(sizeof(float) * H * O);
  for (int i = 0; i < I * H; i++)
    w1[i] = (float)((i * 37 % 101) - 50) / 400.0f;
  for (int i = 0; i < H * O; i++)
    w2[i] = (float)((i * 53 % 97) - 48) / 300.0f;
  kiln_node *x = kiln_fmatrix(ctx, "x"), *y = kiln_fmatrix(ctx, "y");
  m.W[0] = kiln_shared(ctx, "W1", KILN_FLOAT32, 2, (int64_t[]){I, H}, w1);
  m.W[1] = kiln_shared(ctx, "b1", KILN_FLOAT32, 1, (int64_t[]){H}, NULL);
  m.W[2] = kiln_shared(ctx, "W2", KILN_FLOAT32, 2, (int64_t[]){H, O}, w2);
  m.W[3] = kiln_shared(ctx, "b2", KILN_FLOAT32, 1, (int64_t[]){O}, NULL);
  free(w1);
  free(w2);
  kiln_node *h = kiln_tanh(kiln_add(kiln_dot(x, m.W[0]), m.W[1]));
  kiln_node *loss = kiln_mean(kiln_crossentropy(kiln_add(kiln_dot(h, m.W[2]), m.W[3]), y));
  kiln_node *g[4];
  OK(ctx, kiln_grad(loss, 4, m.W, g, 0));
  kiln_update u[4];
  for (int k = 0; k < 4; k++)
    u[k] = (kiln_update){m.W[k], kiln_sub(m.W[k], kiln_mul(kiln_lit(ctx, 0.05), g[k]))};
  m.f = must_fn(ctx, kiln_function_new(ctx, "mlp", 2, (kiln_node *[]){x, y}, 1, &loss, 4, u));
  return m;
}

START_TEST(mlp_split_compile_same_bits) {
  enum { B = 32, I = 64, O = 10 };
  mlp one = mlp_new(1), two = mlp_new(2);
  /* the setting's bounds */
  ck_assert_int_eq(kiln_ctx_set_compile_threads(one.ctx, -1), KILN_MISUSE);
  ck_assert_int_eq(kiln_ctx_set_compile_threads(one.ctx, KILN_MAX_COMPILE_THREADS + 1),
                   KILN_MISUSE);
  ck_assert_msg(strstr(kiln_errmsg(one.ctx), "must be 0 to 4"), "%s", kiln_errmsg(one.ctx));
  ck_assert_int_eq(kiln_ctx_compile_threads(one.ctx), 1);
  ck_assert_int_eq(kiln_ctx_set_compile_threads(NULL, 1), KILN_MISUSE);
  ck_assert_int_eq(kiln_ctx_compile_threads(NULL), -1);
  kiln_clear_error(one.ctx);
  char *opt1 = kt_dump(one.f, "opt.ll"), *opt2 = kt_dump(two.f, "opt.ll");
  ck_assert_ptr_null(strstr(opt1, "; ---- kiln: part"));
  ck_assert_msg(strstr(opt2, "; ---- kiln: part 2 of 2"), "the MLP was not split");
  free(opt1);
  free(opt2);
  kiln_tensor *x = kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){B, I}, NULL);
  kiln_tensor *y = kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){B, O}, NULL);
  float *px = kiln_tensor_data(x), *py = kiln_tensor_data(y);
  for (int i = 0; i < B * I; i++)
    px[i] = (float)(i % 17) / 16.0f;
  for (int r = 0; r < B; r++)
    py[r * O + r % O] = 1.0f;
  for (int step = 0; step < 3; step++) {
    const kiln_tensor *l1 = NULL, *l2 = NULL;
    OK(one.ctx, kiln_call(one.f, IN_ARGS(x, y), &l1));
    OK(two.ctx, kiln_call(two.f, IN_ARGS(x, y), &l2));
    ck_assert(memcmp(kiln_tensor_data(l1), kiln_tensor_data(l2), sizeof(float)) == 0);
    ck_assert(isfinite(*(const float *)kiln_tensor_data(l1)));
  }
  for (int k = 0; k < 4; k++) {
    const kiln_tensor *a = kiln_shared_value(one.W[k]), *b = kiln_shared_value(two.W[k]);
    size_t n = (size_t)kiln_tensor_size(a) * sizeof(float);
    ck_assert_msg(memcmp(kiln_tensor_data(a), kiln_tensor_data(b), n) == 0, "weights %d", k);
  }
  kiln_tensor_free(x);
  kiln_tensor_free(y);
  kiln_ctx_free(one.ctx);
  kiln_ctx_free(two.ctx);
}
END_TEST

/* The caller passes memory the step writes as an input: an output of the
** last call fed back (a state), or a shared variable's own storage while it
** is updated in place. The step must read the values the call began with:
** Kiln copies such an input first. Values by hand. */
START_TEST(output_fed_back_as_input) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  /* (A x)[i] = x[(i + 1) % 4]: a rotation, written by a dot while x is read */
  double rot[16] = {0};
  for (int i = 0; i < 4; i++)
    rot[i * 4 + (i + 1) % 4] = 1;
  kiln_node *A = kiln_shared(ctx, "A", KILN_FLOAT64, 2, (int64_t[]){4, 4}, rot);
  kiln_function *f = must_fn(
      ctx, kiln_function_new(ctx, "rotate", 1, &x, 1, (kiln_node *[]){kiln_dot(A, x)}, 0, NULL));
  kiln_tensor *x0 = dvec(4, (double[]){1, 2, 3, 4});
  const kiln_tensor *out = x0;
  double want[4] = {1, 2, 3, 4};
  for (int step = 0; step < 6; step++) {
    OK(ctx, kiln_call(f, IN_ARGS(out), &out));
    double first = want[0];
    for (int i = 0; i < 3; i++)
      want[i] = want[i + 1];
    want[3] = first;
    check_f64(out, 4, want, "rotated");
  }

  /* x[1:]: the output passed back in is reshaped by the call it feeds */
  kiln_function *g = must_fn(
      ctx,
      kiln_function_new(ctx, "tail", 1, &x, 1,
                        (kiln_node *[]){kiln_slice(x, 1, (kiln_slice[]){KILN_FROM(1)})}, 0, NULL));
  OK(ctx, kiln_call(g, IN_ARGS(x0), &out));
  check_f64(out, 3, (double[]){2, 3, 4}, "x0[1:]");
  OK(ctx, kiln_call(g, IN_ARGS(out), &out));
  check_f64(out, 2, (double[]){3, 4}, "x0[2:]");
  OK(ctx, kiln_call(g, IN_ARGS(out), &out));
  check_f64(out, 1, (double[]){4}, "x0[3:]");

  /* W <- W + x with x = W's own storage, updated in place; y = sum(x) */
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){4}, (double[]){1, 2, 3, 4});
  kiln_update u = {W, kiln_add(W, x)};
  kiln_function *h =
      must_fn(ctx, kiln_function_new(ctx, "double", 1, &x, 1, (kiln_node *[]){kiln_sum(x)}, 1, &u));
  char *plan = kt_dump(h, "plan");
  ck_assert_msg(strstr(plan, "in place into 'W'"), "W is not updated in place:\n%s", plan);
  free(plan);
  const kiln_tensor *wt = kiln_shared_value(W);
  OK(ctx, kiln_call(h, IN_ARGS(wt), &out));
  check_f64(out, -1, (double[]){10}, "sum(W)");
  check_shared(W, 4, (double[]){2, 4, 6, 8}, "W + W");
  /* the copy is made under allocation failures too: each fails cleanly */
  long failed = 0;
  kiln_status st = KILN_NOMEM;
  for (long k = 1; k < 1000 && st != KILN_OK; k++) {
    kiln_function *h2 = must_fn(
        ctx, kiln_function_new(ctx, "double2", 1, &x, 1, (kiln_node *[]){kiln_sum(x)}, 1, &u));
    kl_mem_fail_at(k);
    st = kiln_call(h2, IN_ARGS(wt), &out);
    kl_mem_fail_at(0);
    if (st != KILN_OK) {
      ck_assert_msg(st == KILN_NOMEM, "%s: %s", kiln_status_str(st), kiln_errmsg(ctx));
      check_shared(W, 4, (double[]){2, 4, 6, 8}, "W after a failed call");
      failed++;
    } else {
      check_f64(out, -1, (double[]){20}, "sum(W) again");
      check_shared(W, 4, (double[]){4, 8, 12, 16}, "W + W again");
    }
    kiln_function_free(h2);
  }
  ck_assert_int_eq(st, KILN_OK);
  ck_assert_int_gt(failed, 2);
  kiln_tensor_free(x0);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(shared_every_dtype) {
  for (int di = 0; di < KILN_N_DTYPES; di++) {
    kiln_dtype dt = (kiln_dtype)di;
    const char *dn = kiln_dtype_name(dt);
    size_t es = kiln_dtype_size(dt), nb = 6 * es;
    ck_assert_uint_gt(es, 0);
    unsigned char p0[48], p1[48], p2[48], got[48];
    pattern(dt, p0, nb, 0);
    pattern(dt, p1, nb, 1);
    pattern(dt, p2, nb, 2);
    ck_assert_msg(memcmp(p0, p1, nb) != 0, "%s: patterns must differ", dn);
    kiln_ctx *ctx = kiln_ctx_new();
    int64_t shape[] = {2, 3};
    kiln_node *S = kiln_shared(ctx, "S", dt, 2, shape, p0);
    kiln_node *V = kiln_shared(ctx, "V", dt, 2, shape, p1);
    ck_assert_msg(S && V, "%s: %s", dn, kiln_errmsg(ctx));
    ck_assert_int_eq(kiln_node_dtype(S), dt);
    ck_assert_int_eq(kiln_node_rank(S), 2);
    ck_assert_int_eq(kiln_node_dim(S, 1), 3);

    const kiln_tensor *val = kiln_shared_value(S);
    ck_assert_ptr_nonnull(val);
    ck_assert_int_eq(kiln_tensor_dtype(val), dt);
    ck_assert_int_eq(kiln_tensor_rank(val), 2);
    ck_assert_int_eq(kiln_tensor_dim(val, 0), 2);
    ck_assert_int_eq(kiln_tensor_dim(val, 1), 3);
    ck_assert_msg(memcmp(kiln_tensor_data(val), p0, nb) == 0, "%s: value after creation", dn);
    ck_assert_int_eq(kiln_shared_get(S, got, nb), KILN_OK);
    ck_assert_msg(memcmp(got, p0, nb) == 0, "%s: shared_get after creation", dn);
    ck_assert_int_eq(kiln_shared_get(S, got, nb - 1), KILN_SHAPE);

    /* set, then get back */
    kiln_tensor *t2 = kiln_tensor_new(dt, 2, shape, p2);
    OK(ctx, kiln_shared_set(S, t2));
    memset(kiln_tensor_data(t2), 0, nb); /* the variable holds a copy */
    ck_assert_int_eq(kiln_shared_get(S, got, nb), KILN_OK);
    ck_assert_msg(memcmp(got, p2, nb) == 0, "%s: shared_get after set", dn);
    ck_assert_msg(memcmp(kiln_tensor_data(kiln_shared_value(S)), p2, nb) == 0, "%s: value", dn);

    /* wrong dtype, wrong shape (same size and different size): refused */
    kiln_dtype other = dt == KILN_FLOAT64 ? KILN_FLOAT32 : KILN_FLOAT64;
    kiln_tensor *bad_dt = kiln_tensor_new(other, 2, shape, NULL);
    kiln_tensor *bad_sh = kiln_tensor_new(dt, 2, (int64_t[]){3, 2}, p1);
    kiln_tensor *bad_n = kiln_tensor_new(dt, 1, (int64_t[]){5}, p1);
    kiln_tensor *bad_r = kiln_tensor_new(dt, 3, (int64_t[]){2, 3, 1}, p1);
    ck_assert_int_eq(kiln_shared_set(S, bad_dt), KILN_TYPE);
    ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
    ck_assert_int_eq(kiln_shared_set(S, bad_sh), KILN_SHAPE);
    ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
    ck_assert_int_eq(kiln_shared_set(S, bad_n), KILN_SHAPE);
    ck_assert_int_eq(kiln_shared_set(S, bad_r), KILN_SHAPE);
    ck_assert_int_eq(kiln_shared_get(S, got, nb), KILN_OK);
    ck_assert_msg(memcmp(got, p2, nb) == 0, "%s: value changed by a refused set", dn);
    val = kiln_shared_value(S);
    ck_assert_int_eq(kiln_tensor_rank(val), 2);
    ck_assert_int_eq(kiln_tensor_dim(val, 0), 2);
    ck_assert_int_eq(kiln_tensor_dtype(val), dt);

    /* through a compiled function: output S (old bits), S <- V */
    kiln_update up = {S, V};
    kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "f", 0, NULL, 1, &S, 1, &up));
    const kiln_tensor *o = NULL;
    OK(ctx, kiln_call(f, NULL, &o));
    ck_assert_int_eq(kiln_tensor_dtype(o), dt);
    ck_assert_int_eq(kiln_tensor_rank(o), 2);
    ck_assert_msg(memcmp(kiln_tensor_data(o), p2, nb) == 0, "%s: output of S", dn);
    ck_assert_int_eq(kiln_shared_get(S, got, nb), KILN_OK);
    ck_assert_msg(memcmp(got, p1, nb) == 0, "%s: S <- V", dn);

    /* rank 0 */
    kiln_node *R = kiln_shared(ctx, "R", dt, 0, NULL, p1);
    ck_assert_int_eq(kiln_shared_get(R, got, es), KILN_OK);
    ck_assert_msg(memcmp(got, p1, es) == 0, "%s: rank-0 value", dn);
    kiln_tensor *r2 = kiln_tensor_new(dt, 0, NULL, p2 + es);
    OK(ctx, kiln_shared_set(R, r2));
    ck_assert_int_eq(kiln_shared_get(R, got, es), KILN_OK);
    ck_assert_msg(memcmp(got, p2 + es, es) == 0, "%s: rank-0 set", dn);
    ck_assert_int_eq(kiln_shared_set(R, bad_n), KILN_SHAPE);

    kiln_tensor_free(t2);
    kiln_tensor_free(bad_dt);
    kiln_tensor_free(bad_sh);
    kiln_tensor_free(bad_n);
    kiln_tensor_free(bad_r);
    kiln_tensor_free(r2);
    kiln_ctx_free(ctx);
  }
}
END_TEST

START_TEST(shared_zero_init_and_set_self) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *Z = kiln_shared(ctx, "Z", KILN_FLOAT64, 1, (int64_t[]){3}, NULL);
  check_shared(Z, 3, (double[]){0.0, 0.0, 0.0}, "NULL data gives zeros");
  /* setting a variable to its own (borrowed) value is a no-op */
  OK(ctx, kiln_shared_set(Z, kiln_shared_value(Z)));
  check_shared(Z, 3, (double[]){0.0, 0.0, 0.0}, "set to itself");
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(two_functions_share_a_variable) {
  kiln_ctx *ctx = kiln_ctx_new();
  double w0[] = {1.0, 2.0, 3.0};
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){3}, w0);
  kiln_node *x = kiln_dvector(ctx, "x");
  /* train: W <- W - 0.5 * x ; predict: sum(W * x) */
  kiln_update up = {W, kiln_sub(W, kiln_mul(kiln_lit(ctx, 0.5), x))};
  kiln_function *train = must_fn(ctx, kiln_function_new(ctx, "train", 1, &x, 0, NULL, 1, &up));
  kiln_node *pred = kiln_sum(kiln_mul(W, x));
  kiln_function *predict =
      must_fn(ctx, kiln_function_new(ctx, "predict", 1, &x, 1, &pred, 0, NULL));
  double xv[] = {0.5, -1.0, 0.25}, w[3];
  memcpy(w, w0, sizeof w);
  kiln_tensor *xt = dvec(3, xv);
  for (int round = 0; round < 3; round++) {
    const kiln_tensor *o = NULL;
    OK(ctx, kiln_call(predict, IN_ARGS(xt), &o));
    double p = 0.0;
    for (int i = 0; i < 3; i++)
      p = p + w[i] * xv[i];
    check_f64(o, -1, &p, "prediction with the current W");
    OK(ctx, kiln_call(train, IN_ARGS(xt), NULL));
    for (int i = 0; i < 3; i++)
      w[i] = w[i] - 0.5 * xv[i];
    check_shared(W, 3, w, "W after training");
  }
  /* kiln_shared_set is seen by both */
  double ws[] = {10.0, 20.0, 30.0};
  kiln_tensor *wt = dvec(3, ws);
  OK(ctx, kiln_shared_set(W, wt));
  const kiln_tensor *o = NULL;
  OK(ctx, kiln_call(predict, IN_ARGS(xt), &o));
  double p = ((0.0 + 10.0 * 0.5) + 20.0 * -1.0) + 30.0 * 0.25;
  check_f64(o, -1, &p, "prediction after kiln_shared_set");
  OK(ctx, kiln_call(train, IN_ARGS(xt), NULL));
  check_shared(W, 3, (double[]){9.75, 20.5, 29.875}, "training after kiln_shared_set");
  kiln_tensor_free(wt);
  kiln_tensor_free(xt);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------ lifetimes */

START_TEST(function_free_then_ctx_free) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *y = kiln_mul(x, x);
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "f", 1, &x, 1, &y, 0, NULL));
  kiln_function *g = must_fn(ctx, kiln_function_new(ctx, "g", 1, &x, 1, &y, 0, NULL));
  kiln_tensor *xt = dvec(2, (double[]){3.0, -4.0});
  const kiln_tensor *o = NULL;
  OK(ctx, kiln_call(f, IN_ARGS(xt), &o));
  check_f64(o, 2, (double[]){9.0, 16.0}, "f");
  kiln_function_free(f);
  /* g is unaffected; a new function compiles after a free */
  OK(ctx, kiln_call(g, IN_ARGS(xt), &o));
  check_f64(o, 2, (double[]){9.0, 16.0}, "g after f was freed");
  kiln_node *z = kiln_add(x, kiln_lit(ctx, 1));
  kiln_function *h = must_fn(ctx, kiln_function_new(ctx, "h", 1, &x, 1, &z, 0, NULL));
  OK(ctx, kiln_call(h, IN_ARGS(xt), &o));
  check_f64(o, 2, (double[]){4.0, -3.0}, "h");
  kiln_function_free(g);
  kiln_function_free(h);
  kiln_ctx_free(ctx);
  /* tensors are independent of contexts */
  ck_assert(kiln_tensor_get(xt, 1) == -4.0);
  kiln_tensor_free(xt);
}
END_TEST

START_TEST(ctx_free_with_live_functions) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  double w0[] = {1.0, 1.0};
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){2}, w0);
  kiln_update up = {W, kiln_add(W, x)};
  kiln_node *y = kiln_mul(W, x);
  kiln_function *f = must_fn(ctx, kiln_function_new(ctx, "f", 1, &x, 1, &y, 1, &up));
  must_fn(ctx, kiln_function_new(ctx, "g", 1, &x, 1, &y, 0, NULL));
  kiln_tensor *xt = dvec(2, (double[]){2.0, 3.0});
  const kiln_tensor *o = NULL;
  OK(ctx, kiln_call(f, IN_ARGS(xt), &o));
  check_f64(o, 2, (double[]){2.0, 3.0}, "W*x");
  kiln_ctx_free(ctx); /* frees f, g and their code */
  ck_assert(kiln_tensor_get(xt, 0) == 2.0);
  kiln_tensor_free(xt);
}
END_TEST

START_TEST(many_functions) {
  enum { N = 50 };
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  double c0 = 0.0;
  kiln_node *C = kiln_shared(ctx, "C", KILN_FLOAT64, 0, NULL, &c0);
  kiln_function *fs[N];
  for (int i = 0; i < N; i++) {
    /* f_i(x) = x * i + 0.5, and C <- C + i */
    kiln_node *y = kiln_add(kiln_mul(x, kiln_lit(ctx, (int64_t)i)), kiln_lit(ctx, 0.5));
    kiln_update up = {C, kiln_add(C, kiln_lit(ctx, (double)i))};
    char name[16];
    snprintf(name, sizeof name, "f%d", i);
    fs[i] = must_fn(ctx, kiln_function_new(ctx, name, 1, &x, 1, &y, 1, &up));
  }
  double xv[] = {1.5, -2.0, 0.0}, c = 0.0;
  kiln_tensor *xt = dvec(3, xv);
  for (int pass = 0; pass < 2; pass++)
    for (int i = N - 1; i >= 0; i--) {
      if (pass == 1 && i % 3 == 0) continue; /* freed below */
      const kiln_tensor *o = NULL;
      OK(ctx, kiln_call(fs[i], IN_ARGS(xt), &o));
      double want[3];
      for (int j = 0; j < 3; j++)
        want[j] = xv[j] * (double)i + 0.5;
      char what[32];
      snprintf(what, sizeof what, "f%d", i);
      check_f64(o, 3, want, what);
      c = c + (double)i;
      check_shared(C, -1, &c, "C");
      if (pass == 0 && i % 3 == 0) {
        kiln_function_free(fs[i]);
        fs[i] = NULL;
      }
    }
  ck_assert(c == 1225.0 + 817.0); /* 0..49, then those not divisible by 3 */
  kiln_tensor_free(xt);
  kiln_ctx_free(ctx); /* with 33 functions still alive */
}
END_TEST

static Suite *function_suite(void) {
  Suite *s = suite_create("function");
  TCase *tc = tcase_create("semantics");
  tcase_set_timeout(tc, 300);
  tcase_add_checked_fixture(tc, NULL, teardown);
  tcase_add_test(tc, seed_ten_iterations_bit_exact);
  tcase_add_test(tc, outputs_see_old_values);
  tcase_add_test(tc, swap_updates);
  tcase_add_test(tc, update_used_by_two_outputs);
  tcase_add_test(tc, leaf_updates);
  tcase_add_test(tc, several_outputs);
  tcase_add_test(tc, same_node_twice_and_input_as_output);
  tcase_add_test(tc, constant_outputs);
  tcase_add_test(tc, updates_only_no_outputs);
  tcase_add_test(tc, no_inputs);
  suite_add_tcase(s, tc);
  TCase *td = tcase_create("shapes_and_state");
  tcase_set_timeout(td, 300);
  tcase_add_checked_fixture(td, NULL, teardown);
  tcase_add_test(td, dynamic_shapes_regrow);
  tcase_add_test(td, dynamic_matrix_shapes);
  tcase_add_test(td, general_step_on_first_broadcast);
  tcase_add_test(td, general_step_only_where_a_size_1_stretches);
  tcase_add_test(td, random_expressions_at_random_sizes);
  tcase_add_test(td, mlp_split_compile_same_bits);
  tcase_add_test(td, output_fed_back_as_input);
  tcase_add_test(td, shared_every_dtype);
  tcase_add_test(td, shared_zero_init_and_set_self);
  tcase_add_test(td, two_functions_share_a_variable);
  suite_add_tcase(s, td);
  TCase *tl = tcase_create("lifetimes");
  tcase_set_timeout(tl, 300);
  tcase_add_checked_fixture(tl, NULL, teardown);
  tcase_add_test(tl, function_free_then_ctx_free);
  tcase_add_test(tl, ctx_free_with_live_functions);
  tcase_add_test(tl, many_functions);
  suite_add_tcase(s, tl);
  return s;
}

int main(void) { return kt_run(function_suite()); }
