/*
** test_reduce.c -- the reductions of kiln_reduce (sum, mean, max, min, prod,
** argmax, argmin, logsumexp) with axis lists and keepdims.
**
**  - JIT against the reference evaluator (kl_ref_run) bit for bit (any NaN
**    equals any NaN) for every op and dtype, over single, multiple,
**    negative and all axes, with and without keepdims, static and dynamic
**    shapes, values full of NaN, +-inf, -0.0 and ties, producers fused into
**    the reduction loops, chains of reductions, and without optimization;
**    the dtype and shape of every result from numpy's rules;
**  - max/min/argmax/argmin over one axis checked again against a naive
**    loop written here from numpy's definitions (first NaN wins, the first
**    of equal values stays);
**  - values worked out by hand from numpy's semantics;
**  - errors: repeated and out-of-range axes, argmax over some axes, empty
**    max (built and at call time), bad arguments; dumps.
*/
#include "compiler/graph.h"
#include "compiler/refeval.h"
#include "tests/testutil.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXOUT 24
#define D KILN_DYN

static const char *dn(int dt) { return kiln_dtype_name((kiln_dtype)dt); }
static bool is_float(int dt) { return dt == KILN_FLOAT32 || dt == KILN_FLOAT64; }

static kiln_ctx *new_ctx(void) {
  kiln_ctx *ctx = kiln_ctx_new();
  ck_assert_ptr_nonnull(ctx);
  return ctx;
}

static const char *const OPNAME[KILN_N_REDUCE_OPS] = {"sum",  "mean",   "max",    "min",
                                                      "prod", "argmax", "argmin", "logsumexp"};

/* ------------------------------------------------------------- values */

typedef enum gen_kind {
  GEN_ANY,    /* specials (NaN, inf, -0.0, limits) mixed with wide random values */
  GEN_FINITE, /* finite floats of wide magnitude, random integers */
  GEN_TIES,   /* few distinct values: ties everywhere, NaN in some rows only */
  GEN_SMALL   /* floats in [0.5, 1.5] with random signs (products stay finite) */
} gen_kind;

static void put_val(kiln_dtype dt, void *p, int64_t i, double v) {
  if (dt == KILN_FLOAT64)
    ((double *)p)[i] = v;
  else
    ((float *)p)[i] = (float)v;
}

static kiln_tensor *gen(kiln_dtype dt, int rank, const int64_t *shape, uint64_t seed, gen_kind k) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
  kiln_tensor *t = kiln_tensor_new(dt, rank, shape, NULL);
  ck_assert_ptr_nonnull(t);
  void *p = kiln_tensor_data(t);
  static const double fspec[] = {NAN,   INFINITY, -INFINITY, 0.0, -0.0,    1.0, -1.0, 5e-324,
                                 1e300, -1e300,   0.5,       3.0, -3e-310, 2.0, -2.0};
  static const double fties[] = {0.0, -0.0, 1.0, -1.0, INFINITY, -INFINITY, 2.0, 1.0};
  for (int64_t i = 0; i < kiln_tensor_size(t); i++) {
    double u = kt_rand(&s);
    if (is_float(dt)) {
      double v;
      if (k == GEN_TIES)
        v = u < 0.04 ? NAN : fties[(int)(kt_rand(&s) * 8)];
      else if (k == GEN_SMALL)
        v = (0.5 + kt_rand(&s)) * (kt_rand(&s) < 0.5 ? -1 : 1);
      else if (k == GEN_ANY && u < 0.3)
        v = fspec[(int)(kt_rand(&s) * 15)];
      else
        v = (kt_rand(&s) < 0.5 ? -1 : 1) * ldexp(0.5 + kt_rand(&s), (int)(kt_rand(&s) * 40) - 10);
      put_val(dt, p, i, v);
    } else if (dt == KILN_BOOL) {
      kt_put_int(dt, p, i, k == GEN_TIES ? u < 0.8 : u < 0.5);
    } else {
      int64_t v;
      if (k == GEN_TIES) {
        const int64_t c[] = {kt_int_lo[dt], kt_int_hi[dt], 0, 1, 1};
        v = c[(int)(kt_rand(&s) * 5)];
      } else if (k == GEN_ANY && u < 0.3) {
        const int64_t c[] = {kt_int_lo[dt], kt_int_hi[dt], 0, -1, 1, kt_int_lo[dt] + 1};
        v = c[(int)(kt_rand(&s) * 6)];
      } else if (k == GEN_SMALL || kt_rand(&s) < 0.5) {
        v = (int64_t)(kt_rand(&s) * 9) - 4;
      } else {
        v = (int64_t)((uint64_t)(kt_rand(&s) * 4294967296.0) << 32 ^
                      (uint64_t)(kt_rand(&s) * 4294967296.0));
      }
      kt_put_int(dt, p, i, v);
    }
  }
  return t;
}

/* ------------------------------------------------------------ comparing */

static kiln_function *compile_opts(kiln_ctx *ctx, const char *what, int n_in, kiln_node *const *ins,
                                   int n_out, kiln_node *const *outs, bool no_opt) {
  ck_assert(n_out <= MAXOUT);
  for (int k = 0; k < n_out; k++)
    ck_assert_msg(outs[k] != NULL, "%s: output %d did not build: %s", what, k, kiln_errmsg(ctx));
  kiln_options o = {.size = sizeof o, .no_optimize = no_opt};
  kiln_function *f = kiln_function_new_opts(ctx, what, n_in, ins, n_out, outs, 0, NULL, &o);
  ck_assert_msg(f != NULL, "%s: function_new: %s", what, kiln_errmsg(ctx));
  return f;
}

/* ------------------------------------------- JIT against the reference */

typedef struct axl {
  int n;
  int ax[3];
} axl;

/* axis lists of a rank-3 input; n 0 is every axis */
static const axl AXL[] = {{1, {0}},      {1, {1}},    {1, {2}},       {1, {-1}}, {2, {0, 2}},
                          {2, {-1, -3}}, {2, {1, 2}}, {3, {2, 0, 1}}, {0, {0}}};
#define N_AXL ((int)(sizeof AXL / sizeof *AXL))
/* argmax/argmin: one axis or all */
static const axl AXL_ARG[] = {{1, {0}}, {1, {1}}, {1, {2}}, {1, {-1}}, {1, {-2}}, {0, {0}}};
#define N_AXL_ARG ((int)(sizeof AXL_ARG / sizeof *AXL_ARG))

static uint32_t mask_of(const axl *a, int rank) {
  if (a->n == 0) return (1u << rank) - 1u;
  uint32_t m = 0;
  for (int i = 0; i < a->n; i++)
    m |= 1u << (a->ax[i] < 0 ? a->ax[i] + rank : a->ax[i]);
  return m;
}

static kiln_dtype want_dtype(kiln_reduce_op op, kiln_dtype dt) {
  switch (op) {
  case KILN_SUM:
  case KILN_PROD: return is_float(dt) ? dt : KILN_INT64;
  case KILN_MEAN: return is_float(dt) ? dt : KILN_FLOAT64;
  case KILN_MAX:
  case KILN_MIN: return dt;
  case KILN_ARGMAX:
  case KILN_ARGMIN: return KILN_INT64;
  default:
    return is_float(dt) ? dt : (dt == KILN_INT32 || dt == KILN_INT64) ? KILN_FLOAT64 : KILN_FLOAT32;
  }
}

/* numpy's result shape: the reduced axes dropped, or of size 1 */
static int want_shape(const int64_t *shape, int rank, uint32_t mask, bool keep, int64_t *out) {
  int r = 0;
  for (int i = 0; i < rank; i++)
    if (!(mask >> i & 1u))
      out[r++] = shape[i];
    else if (keep)
      out[r++] = 1;
  return r;
}

static bool no_identity(kiln_reduce_op op) {
  return op == KILN_MAX || op == KILN_MIN || op == KILN_ARGMAX || op == KILN_ARGMIN ||
         op == KILN_LOGSUMEXP;
}

typedef struct call_pat {
  const char *name;
  int64_t c[3];
  gen_kind k;
} call_pat;

static const call_pat DYN_CALLS[] = {
    {"(5,7,9) finite", {5, 7, 9}, GEN_FINITE}, {"(3,1,40) specials", {3, 1, 40}, GEN_ANY},
    {"(4,6,5) ties", {4, 6, 5}, GEN_TIES},     {"(1,1,1)", {1, 1, 1}, GEN_ANY},
    {"(2,0,3) empty", {2, 0, 3}, GEN_ANY},     {"(6,3,7) small", {6, 3, 7}, GEN_SMALL},
};
#define N_DYN_CALLS ((int)(sizeof DYN_CALLS / sizeof *DYN_CALLS))

/* Builds op over every axis list with and without keepdims, plus a fused
** producer and a chain; n outputs, masks and keeps recorded for checks. */
static int build_outs(kiln_ctx *ctx, kiln_reduce_op op, kiln_node *x, kiln_node **outs,
                      uint32_t *masks, bool *keeps) {
  int n = 0;
  bool arg = op == KILN_ARGMAX || op == KILN_ARGMIN;
  const axl *L = arg ? AXL_ARG : AXL;
  int nl = arg ? N_AXL_ARG : N_AXL;
  for (int k = 0; k < 2; k++)
    for (int a = 0; a < nl; a++) {
      outs[n] = kiln_reduce(x, op, L[a].n, L[a].n ? L[a].ax : NULL, k);
      ck_assert_msg(outs[n] != NULL, "%s axes #%d keepdims %d: %s", OPNAME[op], a, k,
                    kiln_errmsg(ctx));
      masks[n] = mask_of(&L[a], 3);
      keeps[n++] = k;
    }
  /* a producer fused into the reduction's loop */
  outs[n] = kiln_reduce(kiln_mul(x, x), op, 1, (int[]){arg ? 1 : 2}, 1);
  masks[n] = arg ? 2u : 4u;
  keeps[n++] = true;
  /* a chain: the reduction of a reduction */
  kiln_node *inner = kiln_reduce(x, op, 1, (int[]){0}, 0);
  outs[n] = kiln_reduce(inner, op, 1, (int[]){-1}, 1);
  masks[n] = 0; /* not checked */
  keeps[n++] = false;
  return n;
}

static void check_shapes(const char *what, kiln_reduce_op op, kiln_dtype dt, const int64_t *shape,
                         int n, kiln_tensor *const *got, const uint32_t *masks, const bool *keeps) {
  for (int k = 0; k < n; k++) {
    ck_assert_msg(got[k]->dtype == want_dtype(op, dt), "%s: output %d is %s", what, k,
                  dn(got[k]->dtype));
    if (k >= n - 2) continue; /* the fused and the chained ones */
    int64_t ws[3];
    int wr = want_shape(shape, 3, masks[k], keeps[k], ws);
    ck_assert_msg(got[k]->rank == wr, "%s: output %d has rank %d, numpy %d", what, k, got[k]->rank,
                  wr);
    for (int d = 0; d < wr; d++)
      ck_assert_msg(got[k]->shape[d] == ws[d], "%s: output %d dim %d is %lld, numpy %lld", what, k,
                    d, (long long)got[k]->shape[d], (long long)ws[d]);
  }
}

/* One op, one dtype: a static (2,3,4) function, a dynamic one called with
** several shapes, and the dynamic one again without optimization. */
static void check_op(kiln_reduce_op op, kiln_dtype dt) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *outs[MAXOUT];
  uint32_t masks[MAXOUT];
  bool keeps[MAXOUT];
  kiln_tensor *got[MAXOUT];
  char what[160];

  /* static shape */
  kiln_node *xs = kiln_input(ctx, "x", dt, 3, (int64_t[]){2, 3, 4});
  int n = build_outs(ctx, op, xs, outs, masks, keeps);
  snprintf(what, sizeof what, "%s %s static (2,3,4)", OPNAME[op], dn(dt));
  kiln_function *f = compile_opts(ctx, what, 1, &xs, n, outs, false);
  for (int g = 0; g < 3; g++) {
    kiln_tensor *v =
        gen(dt, 3, (int64_t[]){2, 3, 4}, (uint64_t)(op * 1000 + dt * 10 + g), (gen_kind)g);
    kt_check_calls(ctx, f, what, 1, &xs, &v, n, outs, 2, got);
    check_shapes(what, op, dt, (int64_t[]){2, 3, 4}, n, got, masks, keeps);
    for (int k = 0; k < n; k++)
      kiln_tensor_free(got[k]);
    kiln_tensor_free(v);
  }
  kiln_function_free(f);

  /* dynamic shapes, optimized and (two dtypes, to keep the suite quick) not */
  kiln_node *xd = kiln_input(ctx, "x", dt, 3, (int64_t[]){D, D, D});
  n = build_outs(ctx, op, xd, outs, masks, keeps);
  for (int no_opt = 0; no_opt < (dt == KILN_FLOAT64 || dt == KILN_INT16 ? 2 : 1); no_opt++) {
    snprintf(what, sizeof what, "%s %s dynamic%s", OPNAME[op], dn(dt),
             no_opt ? " no_optimize" : "");
    f = compile_opts(ctx, what, 1, &xd, n, outs, no_opt);
    for (int p = 0; p < N_DYN_CALLS; p++) {
      const call_pat *cp = &DYN_CALLS[p];
      if (cp->c[1] == 0 && no_identity(op)) continue; /* errors: see empty_no_identity */
      kiln_tensor *v = gen(dt, 3, cp->c, (uint64_t)(op * 1000 + dt * 10 + p + 5), cp->k);
      char w2[200];
      snprintf(w2, sizeof w2, "%s %s", what, cp->name);
      kt_check_calls(ctx, f, w2, 1, &xd, &v, n, outs, 2, got);
      check_shapes(w2, op, dt, cp->c, n, got, masks, keeps);
      for (int k = 0; k < n; k++)
        kiln_tensor_free(got[k]);
      kiln_tensor_free(v);
    }
    kiln_function_free(f);
  }
  kiln_ctx_free(ctx);
}

START_TEST(jit_sum) { check_op(KILN_SUM, (kiln_dtype)_i); }
END_TEST
START_TEST(jit_mean) { check_op(KILN_MEAN, (kiln_dtype)_i); }
END_TEST
START_TEST(jit_max) { check_op(KILN_MAX, (kiln_dtype)_i); }
END_TEST
START_TEST(jit_min) { check_op(KILN_MIN, (kiln_dtype)_i); }
END_TEST
START_TEST(jit_prod) { check_op(KILN_PROD, (kiln_dtype)_i); }
END_TEST
START_TEST(jit_argmax) { check_op(KILN_ARGMAX, (kiln_dtype)_i); }
END_TEST
START_TEST(jit_argmin) { check_op(KILN_ARGMIN, (kiln_dtype)_i); }
END_TEST
START_TEST(jit_logsumexp) { check_op(KILN_LOGSUMEXP, (kiln_dtype)_i); }
END_TEST

/* --------------------------------- numpy's definitions, written naively */

/* Is a "better" than b for max (sign 1) or min (-1) as numpy's maximum
** reduce and argmax decide it: a NaN beats any number, numbers compare
** strictly, so ties keep the earlier one. */
static bool better(const kiln_tensor *t, int64_t i, int64_t j, int sign) {
  kiln_dtype dt = (kiln_dtype)t->dtype;
  if (is_float(dt)) {
    double a = kl_load_f64(dt, t->data, i), b = kl_load_f64(dt, t->data, j);
    if (isnan(b)) return false;
    if (isnan(a)) return true;
    return sign > 0 ? a > b : a < b;
  }
  int64_t a = kl_load_i64(dt, t->data, i), b = kl_load_i64(dt, t->data, j);
  return sign > 0 ? a > b : a < b;
}

/* max, min, argmax, argmin of a rank-3 JIT result over one axis against a
** triple loop. */
static void naive_one_axis(kiln_dtype dt, uint64_t seed, gen_kind k) {
  kiln_ctx *ctx = new_ctx();
  int64_t shape[3] = {3, 5, 4};
  kiln_node *x = kiln_input(ctx, "x", dt, 3, NULL);
  kiln_node *outs[12];
  for (int a = 0; a < 3; a++) {
    outs[4 * a + 0] = kiln_max_axis(x, a);
    outs[4 * a + 1] = kiln_min_axis(x, a);
    outs[4 * a + 2] = kiln_argmax(x, a);
    outs[4 * a + 3] = kiln_argmin(x, a);
  }
  kiln_function *f = compile_opts(ctx, "naive", 1, &x, 12, outs, false);
  kiln_tensor *v = gen(dt, 3, shape, seed, k);
  const kiln_tensor *got[12];
  ck_assert_msg(kiln_call(f, (const kiln_tensor *const *)&v, got) == KILN_OK, "%s",
                kiln_errmsg(ctx));
  int nan_rows = 0, clean_rows = 0;
  for (int a = 0; a < 3; a++) {
    int b = a == 0 ? 1 : 0, c = a == 2 ? 1 : 2; /* the kept axes, in order */
    for (int64_t i = 0; i < shape[b]; i++)
      for (int64_t j = 0; j < shape[c]; j++) {
        int64_t best[2] = {-1, -1}, stride[3] = {shape[1] * shape[2], shape[2], 1};
        for (int64_t t = 0; t < shape[a]; t++) {
          int64_t e = i * stride[b] + j * stride[c] + t * stride[a];
          for (int s = 0; s < 2; s++)
            if (best[s] < 0 || better(v, e, best[s], s ? -1 : 1)) best[s] = e;
        }
        int64_t o = i * shape[c] + j;
        int64_t pos[2] = {(best[0] / stride[a]) % shape[a], (best[1] / stride[a]) % shape[a]};
        for (int s = 0; s < 2; s++) {
          const kiln_tensor *m = got[4 * a + s];
          size_t es = kiln_dtype_size(dt);
          bool same = memcmp((char *)m->data + o * es, (char *)v->data + best[s] * es, es) == 0 ||
                      (is_float(dt) && isnan(kl_load_f64(dt, m->data, o)) &&
                       isnan(kl_load_f64(dt, v->data, best[s])));
          ck_assert_msg(same, "%s %s axis %d [%lld]: %g, numpy %g", dn(dt), s ? "min" : "max", a,
                        (long long)o, kl_load_f64(dt, m->data, o),
                        kl_load_f64(dt, v->data, best[s]));
          int64_t idx = ((const int64_t *)got[4 * a + 2 + s]->data)[o];
          ck_assert_msg(idx == pos[s], "%s arg%s axis %d [%lld]: %lld, numpy %lld", dn(dt),
                        s ? "min" : "max", a, (long long)o, (long long)idx, (long long)pos[s]);
        }
        if (is_float(dt)) {
          if (isnan(kl_load_f64(dt, got[4 * a]->data, o)))
            nan_rows++;
          else
            clean_rows++;
        }
      }
  }
  if (is_float(dt) && k == GEN_TIES)
    ck_assert_msg(nan_rows > 0 && clean_rows > 0, "%s: %d rows with NaN, %d without", dn(dt),
                  nan_rows, clean_rows);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}

START_TEST(naive_max_argmax) {
  naive_one_axis((kiln_dtype)_i, 11, GEN_TIES);
  naive_one_axis((kiln_dtype)_i, 12, GEN_ANY);
}
END_TEST

/* ------------------------------------------------------- hand values */

/* The JIT value of op(x, axes, keepdims) for x of dtype dt and the given
** shape and values; also checked against the reference. */
static kiln_tensor *red_vals(kiln_reduce_op op, int n_axes, const int *axes, int keep,
                             kiln_dtype dt, int rank, const int64_t *shape, const double *vals) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, rank, NULL);
  kiln_node *y = kiln_reduce(x, op, n_axes, axes, keep);
  kiln_function *f = compile_opts(ctx, "hand", 1, &x, 1, &y, false);
  kiln_tensor *v = kt_tensor(dt, rank, shape, vals);
  kiln_tensor *got;
  kt_check_calls(ctx, f, "hand", 1, &x, &v, 1, &y, 2, &got);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
  return got;
}

static void expect_shape(const kiln_tensor *t, int rank, const int64_t *shape) {
  ck_assert_int_eq(t->rank, rank);
  for (int d = 0; d < rank; d++)
    ck_assert_int_eq(t->shape[d], shape[d]);
}

static void expect_i64(const kiln_tensor *t, int n, const int64_t *want, const char *what) {
  ck_assert_msg(t->dtype == KILN_INT64, "%s: dtype %s", what, dn(t->dtype));
  ck_assert_int_eq(t->size, n);
  for (int i = 0; i < n; i++)
    ck_assert_msg(((const int64_t *)t->data)[i] == want[i], "%s[%d] = %lld, numpy %lld", what, i,
                  (long long)((const int64_t *)t->data)[i], (long long)want[i]);
}

/* exact doubles, NaN equal to NaN, the sign of zero compared too */
static void expect_f64(const kiln_tensor *t, int n, const double *want, const char *what) {
  ck_assert_int_eq(t->size, n);
  for (int i = 0; i < n; i++) {
    double g = kl_load_f64((kiln_dtype)t->dtype, t->data, i);
    bool ok = isnan(want[i]) ? isnan(g) : g == want[i] && signbit(g) == signbit(want[i]);
    ck_assert_msg(ok, "%s[%d] = %a, numpy %a", what, i, g, want[i]);
  }
}

#define V(...) ((double[]){__VA_ARGS__})
#define S(...) ((int64_t[]){__VA_ARGS__})
#define A(...) ((int[]){__VA_ARGS__})

START_TEST(hand_argmax) {
  kiln_tensor *t;
  t = red_vals(KILN_ARGMAX, 0, NULL, 0, KILN_FLOAT64, 1, S(4), V(1, 3, 3, 2));
  expect_shape(t, 0, NULL);
  expect_i64(t, 1, S(1), "argmax([1,3,3,2])");
  kiln_tensor_free(t);
  t = red_vals(KILN_ARGMAX, 0, NULL, 0, KILN_FLOAT64, 1, S(3), V(1, NAN, 5));
  expect_i64(t, 1, S(1), "argmax([1,nan,5])");
  kiln_tensor_free(t);
  t = red_vals(KILN_ARGMAX, 0, NULL, 0, KILN_FLOAT32, 1, S(4), V(NAN, 7, NAN, 8));
  expect_i64(t, 1, S(0), "argmax([nan,7,nan,8])");
  kiln_tensor_free(t);
  t = red_vals(KILN_ARGMIN, 0, NULL, 0, KILN_FLOAT64, 1, S(4), V(2, -INFINITY, 1, NAN));
  expect_i64(t, 1, S(3), "argmin([2,-inf,1,nan])");
  kiln_tensor_free(t);
  t = red_vals(KILN_ARGMIN, 0, NULL, 0, KILN_FLOAT64, 1, S(3), V(0.0, -0.0, -0.0));
  expect_i64(t, 1, S(0), "argmin([0.0,-0.0,-0.0])"); /* equal values: the first */
  kiln_tensor_free(t);
  t = red_vals(KILN_ARGMAX, 0, NULL, 0, KILN_FLOAT64, 1, S(3), V(-INFINITY, -INFINITY, -INFINITY));
  expect_i64(t, 1, S(0), "argmax([-inf,-inf,-inf])");
  kiln_tensor_free(t);
  t = red_vals(KILN_ARGMIN, 0, NULL, 0, KILN_FLOAT64, 1, S(2), V(INFINITY, INFINITY));
  expect_i64(t, 1, S(0), "argmin([inf,inf])");
  kiln_tensor_free(t);
  /* integers: the type's limits are values like any other */
  t = red_vals(KILN_ARGMAX, 0, NULL, 0, KILN_INT8, 1, S(3), V(-128, -128, -128));
  expect_i64(t, 1, S(0), "argmax(int8 [-128,-128,-128])");
  kiln_tensor_free(t);
  t = red_vals(KILN_ARGMAX, 0, NULL, 0, KILN_UINT8, 1, S(3), V(1, 255, 200));
  expect_i64(t, 1, S(1), "argmax(uint8 [1,255,200])");
  kiln_tensor_free(t);
  t = red_vals(KILN_ARGMIN, 0, NULL, 0, KILN_INT64, 1, S(3), V(5, -9007199254740992.0, 0));
  expect_i64(t, 1, S(1), "argmin(int64 [5,-2^53,0])");
  kiln_tensor_free(t);
  t = red_vals(KILN_ARGMAX, 0, NULL, 0, KILN_BOOL, 1, S(3), V(0, 1, 1));
  expect_i64(t, 1, S(1), "argmax([False,True,True])");
  kiln_tensor_free(t);
  /* matrices: along an axis, and flattened (all axes) */
  t = red_vals(KILN_ARGMAX, 1, A(0), 0, KILN_FLOAT64, 2, S(2, 2), V(1, 9, 9, 2));
  expect_shape(t, 1, S(2));
  expect_i64(t, 2, S(1, 0), "argmax([[1,9],[9,2]], axis=0)");
  kiln_tensor_free(t);
  t = red_vals(KILN_ARGMAX, 1, A(-1), 1, KILN_FLOAT64, 2, S(2, 3), V(1, 9, 9, 7, 2, 3));
  expect_shape(t, 2, S(2, 1));
  expect_i64(t, 2, S(1, 0), "argmax([[1,9,9],[7,2,3]], axis=-1, keepdims)");
  kiln_tensor_free(t);
  t = red_vals(KILN_ARGMAX, 0, NULL, 0, KILN_FLOAT64, 2, S(2, 2), V(1, 9, 9, 2));
  expect_shape(t, 0, NULL);
  expect_i64(t, 1, S(1), "argmax([[1,9],[9,2]]) flattened");
  kiln_tensor_free(t);
  t = red_vals(KILN_ARGMIN, 2, A(1, 0), 1, KILN_INT32, 2, S(2, 3), V(4, 5, 6, 7, -1, -1));
  expect_shape(t, 2, S(1, 1));
  expect_i64(t, 1, S(4), "argmin([[4,5,6],[7,-1,-1]], keepdims) flattened");
  kiln_tensor_free(t);
  /* a scalar: index 0 */
  t = red_vals(KILN_ARGMAX, 0, NULL, 0, KILN_FLOAT64, 0, NULL, V(NAN));
  expect_i64(t, 1, S(0), "argmax(nan)");
  kiln_tensor_free(t);
}
END_TEST

START_TEST(hand_max_min) {
  kiln_tensor *t;
  t = red_vals(KILN_MAX, 1, A(0), 0, KILN_FLOAT64, 2, S(2, 2), V(1, 5, 4, 2));
  expect_shape(t, 1, S(2));
  expect_f64(t, 2, V(4, 5), "max([[1,5],[4,2]], axis=0)");
  kiln_tensor_free(t);
  t = red_vals(KILN_MIN, 1, A(1), 1, KILN_FLOAT32, 2, S(2, 2), V(1, 5, 4, 2));
  expect_shape(t, 2, S(2, 1));
  expect_f64(t, 2, V(1, 2), "min([[1,5],[4,2]], axis=1, keepdims)");
  kiln_tensor_free(t);
  /* -0.0 and 0.0 are equal: the first stays */
  t = red_vals(KILN_MAX, 0, NULL, 0, KILN_FLOAT64, 1, S(2), V(-0.0, 0.0));
  expect_f64(t, 1, V(-0.0), "max([-0.0, 0.0])");
  kiln_tensor_free(t);
  t = red_vals(KILN_MAX, 0, NULL, 0, KILN_FLOAT64, 1, S(2), V(0.0, -0.0));
  expect_f64(t, 1, V(0.0), "max([0.0, -0.0])");
  kiln_tensor_free(t);
  t = red_vals(KILN_MIN, 0, NULL, 0, KILN_FLOAT32, 1, S(3), V(0.0, -0.0, 1));
  expect_f64(t, 1, V(0.0), "min([0.0, -0.0, 1])");
  kiln_tensor_free(t);
  t = red_vals(KILN_MIN, 0, NULL, 0, KILN_FLOAT32, 1, S(2), V(-0.0, 0.0));
  expect_f64(t, 1, V(-0.0), "min([-0.0, 0.0])");
  kiln_tensor_free(t);
  /* NaN propagates wherever it is */
  for (int pos = 0; pos < 3; pos++) {
    double v[3] = {1, 2, 3};
    v[pos] = NAN;
    t = red_vals(KILN_MAX, 0, NULL, 0, KILN_FLOAT64, 1, S(3), v);
    expect_f64(t, 1, V(NAN), "max with a NaN");
    kiln_tensor_free(t);
    t = red_vals(KILN_MIN, 0, NULL, 0, KILN_FLOAT32, 1, S(3), v);
    expect_f64(t, 1, V(NAN), "min with a NaN");
    kiln_tensor_free(t);
  }
  /* a single -inf, all -inf, +inf */
  t = red_vals(KILN_MAX, 0, NULL, 0, KILN_FLOAT64, 1, S(2), V(-INFINITY, -INFINITY));
  expect_f64(t, 1, V(-INFINITY), "max([-inf,-inf])");
  kiln_tensor_free(t);
  t = red_vals(KILN_MIN, 0, NULL, 0, KILN_FLOAT64, 1, S(2), V(INFINITY, -1e308));
  expect_f64(t, 1, V(-1e308), "min([inf,-1e308])");
  kiln_tensor_free(t);
  /* integers keep their dtype and limits */
  t = red_vals(KILN_MAX, 0, NULL, 0, KILN_INT8, 1, S(2), V(-128, -128));
  ck_assert_int_eq(t->dtype, KILN_INT8);
  ck_assert_int_eq(((int8_t *)t->data)[0], -128);
  kiln_tensor_free(t);
  t = red_vals(KILN_MIN, 0, NULL, 0, KILN_INT64, 1, S(2), V(9.2e18, 9.2e18));
  ck_assert_int_eq(t->dtype, KILN_INT64);
  ck_assert(((int64_t *)t->data)[0] == (int64_t)9.2e18);
  kiln_tensor_free(t);
  t = red_vals(KILN_MAX, 0, NULL, 0, KILN_UINT8, 1, S(3), V(0, 255, 7));
  ck_assert_int_eq(((uint8_t *)t->data)[0], 255);
  kiln_tensor_free(t);
  t = red_vals(KILN_MIN, 0, NULL, 0, KILN_UINT8, 1, S(3), V(255, 0, 7));
  ck_assert_int_eq(((uint8_t *)t->data)[0], 0);
  kiln_tensor_free(t);
  t = red_vals(KILN_MIN, 1, A(0), 0, KILN_INT16, 2, S(2, 2), V(-32768, 32767, 32767, -32768));
  ck_assert_int_eq(((int16_t *)t->data)[0], -32768);
  ck_assert_int_eq(((int16_t *)t->data)[1], -32768);
  kiln_tensor_free(t);
  /* bool: max is any, min is all */
  t = red_vals(KILN_MAX, 1, A(1), 0, KILN_BOOL, 2, S(2, 2), V(0, 0, 0, 1));
  ck_assert_int_eq(t->dtype, KILN_BOOL);
  ck_assert_int_eq(((uint8_t *)t->data)[0], 0);
  ck_assert_int_eq(((uint8_t *)t->data)[1], 1);
  kiln_tensor_free(t);
  t = red_vals(KILN_MIN, 1, A(1), 0, KILN_BOOL, 2, S(2, 2), V(1, 1, 1, 0));
  ck_assert_int_eq(((uint8_t *)t->data)[0], 1);
  ck_assert_int_eq(((uint8_t *)t->data)[1], 0);
  kiln_tensor_free(t);
  /* a scalar: itself; an axis of size 1: the element */
  t = red_vals(KILN_MAX, 0, NULL, 0, KILN_FLOAT64, 0, NULL, V(-0.0));
  expect_f64(t, 1, V(-0.0), "max(-0.0)");
  kiln_tensor_free(t);
  /* an empty output is no error: (2,0) over axis 0 */
  t = red_vals(KILN_MAX, 1, A(0), 0, KILN_FLOAT64, 2, S(2, 0), NULL);
  expect_shape(t, 1, S(0));
  kiln_tensor_free(t);
}
END_TEST

START_TEST(hand_prod) {
  kiln_tensor *t;
  /* integers multiply in int64, as numpy's prod: int8 [100, 100] is 10000 */
  t = red_vals(KILN_PROD, 0, NULL, 0, KILN_INT8, 1, S(2), V(100, 100));
  expect_i64(t, 1, S(10000), "prod(int8 [100,100])");
  kiln_tensor_free(t);
  /* and int64 wraps: (-128)^9 = -2^63 fits, (-128)^10 = 2^70 wraps to 0 */
  double m128[10];
  for (int i = 0; i < 10; i++)
    m128[i] = -128;
  t = red_vals(KILN_PROD, 0, NULL, 0, KILN_INT8, 1, S(9), m128);
  expect_i64(t, 1, S(INT64_MIN), "prod(int8 [-128]*9)");
  kiln_tensor_free(t);
  t = red_vals(KILN_PROD, 0, NULL, 0, KILN_INT8, 1, S(10), m128);
  expect_i64(t, 1, S(0), "prod(int8 [-128]*10)");
  kiln_tensor_free(t);
  /* 127^10 = 1091533853073393531649, mod 2^64 (two's complement):
  ** 3175952724529986305 */
  double p127[10];
  for (int i = 0; i < 10; i++)
    p127[i] = 127;
  t = red_vals(KILN_PROD, 0, NULL, 0, KILN_INT8, 1, S(10), p127);
  expect_i64(t, 1, S(INT64_C(3175952724529986305)), "prod(int8 [127]*10)");
  kiln_tensor_free(t);
  t = red_vals(KILN_PROD, 1, A(1), 0, KILN_UINT8, 2, S(2, 2), V(255, 255, 16, 16));
  expect_i64(t, 2, S(65025, 256), "prod(uint8 [[255,255],[16,16]], axis=1)");
  kiln_tensor_free(t);
  t = red_vals(KILN_PROD, 0, NULL, 0, KILN_BOOL, 1, S(3), V(1, 1, 0));
  expect_i64(t, 1, S(0), "prod([True,True,False])");
  kiln_tensor_free(t);
  /* floats: in order, from 1 */
  t = red_vals(KILN_PROD, 1, A(0), 1, KILN_FLOAT64, 2, S(2, 3), V(2, -3, 0.5, 4, 0.25, -0.0));
  expect_shape(t, 2, S(1, 3));
  expect_f64(t, 3, V(8, -0.75, -0.0), "prod(axis=0, keepdims)");
  kiln_tensor_free(t);
  t = red_vals(KILN_PROD, 0, NULL, 0, KILN_FLOAT32, 1, S(3), V(1e30, 1e30, 0));
  expect_f64(t, 1, V(NAN), "prod(float32 [1e30,1e30,0]) = inf * 0");
  kiln_tensor_free(t);
  /* empty: 1 */
  t = red_vals(KILN_PROD, 0, NULL, 0, KILN_FLOAT64, 1, S(0), NULL);
  expect_f64(t, 1, V(1.0), "prod([])");
  kiln_tensor_free(t);
  t = red_vals(KILN_PROD, 1, A(1), 0, KILN_INT32, 2, S(3, 0), NULL);
  expect_i64(t, 3, S(1, 1, 1), "prod(int32 (3,0), axis=1)");
  kiln_tensor_free(t);
}
END_TEST

START_TEST(hand_logsumexp) {
  kiln_tensor *t;
  t = red_vals(KILN_LOGSUMEXP, 0, NULL, 0, KILN_FLOAT64, 1, S(2), V(0, 0));
  expect_f64(t, 1, V(log(2.0)), "logsumexp([0,0])");
  kiln_tensor_free(t);
  t = red_vals(KILN_LOGSUMEXP, 0, NULL, 0, KILN_FLOAT64, 1, S(2), V(-INFINITY, -INFINITY));
  expect_f64(t, 1, V(-INFINITY), "logsumexp([-inf,-inf])");
  kiln_tensor_free(t);
  t = red_vals(KILN_LOGSUMEXP, 0, NULL, 0, KILN_FLOAT64, 1, S(2), V(1000, 1000));
  expect_f64(t, 1, V(1000.0 + log(2.0)), "logsumexp([1000,1000])");
  ck_assert(isfinite(kiln_tensor_get(t, 0)));
  kiln_tensor_free(t);
  t = red_vals(KILN_LOGSUMEXP, 0, NULL, 0, KILN_FLOAT64, 1, S(2), V(-1000, -1000));
  expect_f64(t, 1, V(-1000.0 + log(2.0)), "logsumexp([-1000,-1000])");
  kiln_tensor_free(t);
  t = red_vals(KILN_LOGSUMEXP, 0, NULL, 0, KILN_FLOAT64, 1, S(3), V(5, -INFINITY, -INFINITY));
  expect_f64(t, 1, V(5.0), "logsumexp([5,-inf,-inf])");
  kiln_tensor_free(t);
  t = red_vals(KILN_LOGSUMEXP, 0, NULL, 0, KILN_FLOAT64, 1, S(2), V(INFINITY, 3));
  expect_f64(t, 1, V(INFINITY), "logsumexp([inf,3])");
  kiln_tensor_free(t);
  t = red_vals(KILN_LOGSUMEXP, 0, NULL, 0, KILN_FLOAT64, 1, S(2), V(NAN, 3));
  expect_f64(t, 1, V(NAN), "logsumexp([nan,3])");
  kiln_tensor_free(t);
  /* rows, one all -inf: -inf there, the others finite; keepdims */
  t = red_vals(KILN_LOGSUMEXP, 1, A(1), 1, KILN_FLOAT64, 2, S(2, 2), V(-INFINITY, -INFINITY, 0, 0));
  expect_shape(t, 2, S(2, 1));
  expect_f64(t, 2, V(-INFINITY, log(2.0)), "logsumexp(rows, keepdims)");
  kiln_tensor_free(t);
  /* float32 stays float32; int64 becomes float64 */
  t = red_vals(KILN_LOGSUMEXP, 0, NULL, 0, KILN_FLOAT32, 1, S(2), V(0, 0));
  ck_assert_int_eq(t->dtype, KILN_FLOAT32);
  expect_f64(t, 1, V((double)logf(2.0f)), "logsumexp(float32 [0,0])");
  kiln_tensor_free(t);
  t = red_vals(KILN_LOGSUMEXP, 0, NULL, 0, KILN_INT64, 1, S(2), V(-5, -5));
  ck_assert_int_eq(t->dtype, KILN_FLOAT64);
  expect_f64(t, 1, V(-5.0 + log(2.0)), "logsumexp(int64 [-5,-5])");
  kiln_tensor_free(t);
  /* int8 extremes would wrap in x - max: converted to float first */
  t = red_vals(KILN_LOGSUMEXP, 0, NULL, 0, KILN_INT8, 1, S(2), V(-128, 127));
  ck_assert_int_eq(t->dtype, KILN_FLOAT32);
  expect_f64(t, 1, V((double)(logf(expf(-255.0f) + 1.0f) + 127.0f)), "logsumexp(int8 [-128,127])");
  kiln_tensor_free(t);
}
END_TEST

START_TEST(hand_sum_mean_keepdims) {
  kiln_tensor *t;
  double v24[24];
  for (int i = 0; i < 24; i++)
    v24[i] = i;
  t = red_vals(KILN_SUM, 2, A(0, 2), 1, KILN_FLOAT64, 3, S(2, 3, 4), v24);
  expect_shape(t, 3, S(1, 3, 1));
  /* axis 1 index j: the 8 terms 12 i + 4 j + k (i < 2, k < 4) add to 48 + 32 j + 12 */
  expect_f64(t, 3, V(60, 92, 124), "sum((2,3,4), axes (0,2), keepdims)");
  kiln_tensor_free(t);
  t = red_vals(KILN_SUM, 2, A(-1, -2), 0, KILN_INT8, 3, S(2, 3, 4), v24);
  expect_shape(t, 1, S(2));
  expect_i64(t, 2, S(66, 210), "sum(int8, axes (-1,-2))");
  kiln_tensor_free(t);
  t = red_vals(KILN_MEAN, 2, A(0, 1), 1, KILN_FLOAT64, 2, S(2, 2), V(1, 2, 3, 4));
  expect_shape(t, 2, S(1, 1));
  expect_f64(t, 1, V(2.5), "mean([[1,2],[3,4]], keepdims)");
  kiln_tensor_free(t);
  t = red_vals(KILN_MEAN, 1, A(-1), 1, KILN_INT32, 2, S(2, 3), V(1, 2, 4, -1, -2, -4));
  ck_assert_int_eq(t->dtype, KILN_FLOAT64);
  expect_shape(t, 2, S(2, 1));
  expect_f64(t, 2, V(7.0 / 3.0, -7.0 / 3.0), "mean(int32, axis -1, keepdims)");
  kiln_tensor_free(t);
  /* keepdims of a scalar, of every axis of a vector */
  t = red_vals(KILN_SUM, 0, NULL, 1, KILN_FLOAT32, 1, S(3), V(1, 2, 3));
  expect_shape(t, 1, S(1));
  expect_f64(t, 1, V(6), "sum(vector, keepdims)");
  kiln_tensor_free(t);
  t = red_vals(KILN_MEAN, 0, NULL, 1, KILN_FLOAT64, 0, NULL, V(-0.0));
  expect_shape(t, 0, NULL);
  expect_f64(t, 1, V(0.0), "mean(-0.0): (0.0 + -0.0) / 1");
  kiln_tensor_free(t);
  /* empty: sum 0, mean 0/0 */
  t = red_vals(KILN_SUM, 1, A(0), 1, KILN_FLOAT64, 2, S(0, 2), NULL);
  expect_shape(t, 2, S(1, 2));
  expect_f64(t, 2, V(0, 0), "sum((0,2), axis 0, keepdims)");
  kiln_tensor_free(t);
  t = red_vals(KILN_MEAN, 1, A(0), 0, KILN_FLOAT64, 2, S(0, 2), NULL);
  expect_f64(t, 2, V(NAN, NAN), "mean((0,2), axis 0)");
  kiln_tensor_free(t);
}
END_TEST

/* The documented order of a float sum down to one value (kiln.h, eval.c's
** blocked_sum), written here again from the words: along the last axis,
** element k below cut = n - n % 16 goes to lane k % 16, the rest to a tail;
** rows in C order; lanes start at +0.0 and add in order; but when a row's
** blocked part is longer than 2^14 elements, each run of 2^14 of them (the
** last one shorter) is first added into 16 partial lanes that start at
** +0.0, and at the end of the run the partials are added lane by lane into
** the lanes; then lane j += lane j + w for w = 8, 4, 2, 1, and the result
** is lane 0 + tail. chunk is 2^14, or INT64_MAX for the order before
** chunks existed (to show the test can tell them apart). */
#define ORDER_CHUNK 16384
#define ORDER_FN(T, NAME)                                                                          \
  static T NAME(const T *v, int64_t rows, int64_t n, int64_t chunk) {                              \
    T lane[16] = {0}, part[16] = {0}, tail = 0;                                                    \
    int64_t cut = n - n % 16;                                                                      \
    for (int64_t r = 0; r < rows; r++)                                                             \
      for (int64_t k = 0; k < n; k++) {                                                            \
        T x = v[r * n + k];                                                                        \
        if (k >= cut) {                                                                            \
          tail += x;                                                                               \
        } else if (cut <= chunk) {                                                                 \
          lane[k % 16] += x;                                                                       \
        } else {                                                                                   \
          part[k % 16] += x;                                                                       \
          if (k % chunk == chunk - 1 || k == cut - 1)                                              \
            for (int j = 0; j < 16; j++) {                                                         \
              lane[j] += part[j];                                                                  \
              part[j] = 0;                                                                         \
            }                                                                                      \
        }                                                                                          \
      }                                                                                            \
    for (int w = 8; w >= 1; w /= 2)                                                                \
      for (int j = 0; j < w; j++)                                                                  \
        lane[j] += lane[j + w];                                                                    \
    return lane[0] + tail;                                                                         \
  }
ORDER_FN(double, order_f64)
ORDER_FN(float, order_f32)

/* sum(x * y) and sum(x) over every axis, for lengths around the lane width,
** the JIT's chunk of 256 (the fused product is computed a chunk at a time
** into a buffer, then added to the lanes) and the order's chunk of 2^14
** (C - 1, C, C + 1, 3C + 17, several rows of more than C), static and
** dynamic shapes, with and without optimization: bit for bit the
** documented order. Values of mixed sign and magnitude, so another order
** gives other bits (checked: the plain left-to-right sum differs for most
** of these cases, and for the long rows the order without chunks too). */
START_TEST(blocked_order) {
  enum { C = ORDER_CHUNK };
  static const int64_t shapes[][2] = {
      {1, 15},         {1, 16},    {1, 17},     {1, 255},       {1, 256},   {1, 257},
      {1, 271},        {1, 512},   {1, 529},    {1, 4099},      {3, 257},   {5, 300},
      {2, 16},         {4, 1000},  {1, C - 1},  {1, C},         {1, C + 1}, {1, C + 16},
      {1, 3 * C + 17}, {3, C + 1}, {3, C + 33}, {2, 2 * C + 40}};
  int n_shapes = (int)(sizeof shapes / sizeof shapes[0]), differs = 0, unchunked_differs = 0;
  for (int dt = KILN_FLOAT32; dt <= KILN_FLOAT64; dt++)
    for (int s = 0; s < n_shapes; s++)
      for (int mode = 0; mode < 3; mode++) { /* static, dynamic, dynamic no_optimize */
        int64_t rows = shapes[s][0], n = shapes[s][1], size = rows * n;
        kiln_ctx *ctx = new_ctx();
        int64_t shp[2] = {mode ? D : rows, mode ? D : n};
        kiln_node *x = kiln_input(ctx, "x", (kiln_dtype)dt, 2, shp);
        kiln_node *y = kiln_input(ctx, "y", (kiln_dtype)dt, 2, shp);
        kiln_node *outs[2] = {kiln_sum(kiln_mul(x, y)), kiln_sum(x)};
        kiln_options o = {.size = sizeof o, .no_optimize = mode == 2};
        kiln_function *f =
            kiln_function_new_opts(ctx, "order", 2, (kiln_node *[]){x, y}, 2, outs, 0, NULL, &o);
        ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
        kiln_tensor *in[2], *prod = kiln_tensor_new((kiln_dtype)dt, 2, (int64_t[]){rows, n}, NULL);
        for (int k = 0; k < 2; k++)
          in[k] = kiln_tensor_new((kiln_dtype)dt, 2, (int64_t[]){rows, n}, NULL);
        uint64_t h = 0x9e3779b97f4a7c15u * (uint64_t)(s + 1);
        for (int64_t i = 0; i < size; i++)
          for (int k = 0; k < 2; k++) {
            h ^= h << 13, h ^= h >> 7, h ^= h << 17;
            double v = ldexp((double)(int64_t)(h % 2001) - 1000.0, (int)(h >> 40) % 24 - 12);
            if (dt == KILN_FLOAT32)
              ((float *)in[k]->data)[i] = (float)v;
            else
              ((double *)in[k]->data)[i] = v;
          }
        for (int64_t i = 0; i < size; i++)
          if (dt == KILN_FLOAT32)
            ((float *)prod->data)[i] = ((float *)in[0]->data)[i] * ((float *)in[1]->data)[i];
          else
            ((double *)prod->data)[i] = ((double *)in[0]->data)[i] * ((double *)in[1]->data)[i];
        const kiln_tensor *got[2];
        ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)in, got), KILN_OK);
        for (int k = 0; k < 2; k++) {
          const kiln_tensor *src = k == 0 ? prod : in[0];
          double want, naive = 0, have;
          if (dt == KILN_FLOAT32) {
            want = order_f32(src->data, rows, n, ORDER_CHUNK);
            unchunked_differs += want != order_f32(src->data, rows, n, INT64_MAX);
            float nf = 0;
            for (int64_t i = 0; i < size; i++)
              nf += ((const float *)src->data)[i];
            naive = nf;
            have = *(const float *)got[k]->data;
          } else {
            want = order_f64(src->data, rows, n, ORDER_CHUNK);
            unchunked_differs += want != order_f64(src->data, rows, n, INT64_MAX);
            for (int64_t i = 0; i < size; i++)
              naive += ((const double *)src->data)[i];
            have = *(const double *)got[k]->data;
          }
          differs += naive != want;
          ck_assert_msg(memcmp(&have, &want, sizeof have) == 0,
                        "%s sum(%s) over (%lld,%lld) mode %d: got %.17g, want %.17g", dn(dt),
                        k ? "x" : "x*y", (long long)rows, (long long)n, mode, have, want);
        }
        kiln_tensor_free(prod);
        kiln_tensor_free(in[0]);
        kiln_tensor_free(in[1]);
        kiln_ctx_free(ctx);
      }
  /* the values are such that the order matters */
  ck_assert_int_ge(differs, 2 * 3 * n_shapes);
  /* and chunks matter: for 3 shapes of the list (3C + 17, (3, C + 33),
  ** (2, 2C + 40)) the order without chunks gives other bits, in most of
  ** their 2 dtypes x 3 modes x 2 sums (a single row of C + 16 cannot
  ** differ: its first partial starts where the lanes are, +0.0, and its
  ** last has one element per lane) */
  ck_assert_int_ge(unchunked_differs, 18);
}
END_TEST

/* The shorthands build the same nodes as kiln_reduce. */
START_TEST(shorthands) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 2, NULL);
  kiln_node *outs[] = {kiln_max(x),
                       kiln_min(x),
                       kiln_prod(x),
                       kiln_max_axis(x, 1),
                       kiln_min_axis(x, -2),
                       kiln_prod_axis(x, 0),
                       kiln_argmax(x, 0),
                       kiln_argmin(x, -1),
                       kiln_logsumexp(x, 1, 1),
                       kiln_logsumexp(x, 0, 0)};
  kiln_node *refs[] = {
      kiln_reduce(x, KILN_MAX, 0, NULL, 0),       kiln_reduce(x, KILN_MIN, 2, A(0, 1), 0),
      kiln_reduce(x, KILN_PROD, 0, NULL, 0),      kiln_reduce(x, KILN_MAX, 1, A(-1), 0),
      kiln_reduce(x, KILN_MIN, 1, A(0), 0),       kiln_reduce(x, KILN_PROD, 1, A(-2), 0),
      kiln_reduce(x, KILN_ARGMAX, 1, A(0), 0),    kiln_reduce(x, KILN_ARGMIN, 1, A(1), 0),
      kiln_reduce(x, KILN_LOGSUMEXP, 1, A(1), 1), kiln_reduce(x, KILN_LOGSUMEXP, 1, A(0), 0)};
  int n = (int)(sizeof outs / sizeof *outs);
  kiln_node *all[20];
  for (int i = 0; i < n; i++) {
    all[i] = outs[i];
    all[n + i] = refs[i];
  }
  kiln_function *f = compile_opts(ctx, "shorthands", 1, &x, 2 * n, all, false);
  kiln_tensor *v = gen(KILN_FLOAT64, 2, S(4, 5), 3, GEN_TIES);
  kiln_tensor *got[20];
  kt_check_calls(ctx, f, "shorthands", 1, &x, &v, 2 * n, all, 2, got);
  for (int i = 0; i < n; i++) {
    ck_assert_msg(kt_same_bits(got[i], got[n + i]), "shorthand %d differs from kiln_reduce", i);
    ck_assert_int_eq(kiln_node_rank(outs[i]), kiln_node_rank(refs[i]));
  }
  for (int i = 0; i < 2 * n; i++)
    kiln_tensor_free(got[i]);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* Static sizes: the types of the results know them, 1 where kept. */
START_TEST(static_types) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_INT16, 3, S(2, D, 4));
  kiln_node *y = kiln_reduce(x, KILN_MAX, 2, A(2, 0), 1);
  ck_assert_int_eq(kiln_node_rank(y), 3);
  ck_assert_int_eq(kiln_node_dim(y, 0), 1);
  ck_assert_int_eq(kiln_node_dim(y, 1), KILN_DYN);
  ck_assert_int_eq(kiln_node_dim(y, 2), 1);
  ck_assert_int_eq(kiln_node_dtype(y), KILN_INT16);
  kiln_node *z = kiln_reduce(x, KILN_ARGMIN, 1, A(-1), 0);
  ck_assert_int_eq(kiln_node_rank(z), 2);
  ck_assert_int_eq(kiln_node_dim(z, 0), 2);
  ck_assert_int_eq(kiln_node_dtype(z), KILN_INT64);
  kiln_node *p = kiln_reduce(x, KILN_PROD, 1, A(1), 0);
  ck_assert_int_eq(kiln_node_dtype(p), KILN_INT64);
  ck_assert_int_eq(kiln_node_dim(p, 1), 4);
  kiln_node *l = kiln_reduce(x, KILN_LOGSUMEXP, 0, NULL, 1);
  ck_assert_int_eq(kiln_node_dtype(l), KILN_FLOAT32);
  ck_assert_int_eq(kiln_node_rank(l), 3);
  for (int d = 0; d < 3; d++)
    ck_assert_int_eq(kiln_node_dim(l, d), 1);
  kiln_node *m = kiln_reduce(x, KILN_MEAN, 1, A(1), 1);
  ck_assert_int_eq(kiln_node_dtype(m), KILN_FLOAT64);
  ck_assert_int_eq(kiln_node_dim(m, 1), 1);
  ck_assert_int_eq(kiln_node_dim(m, 2), 4);
  kiln_ctx_free(ctx);
}
END_TEST

/* -------------------------------------------------------------- errors */

static void expect_build_error(kiln_node *(*mk)(kiln_node *), kiln_status st, const char *part) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_name(kiln_input(ctx, "xin", KILN_FLOAT64, 3, S(2, 0, D)), "xin");
  kiln_node *y = mk(x);
  ck_assert_ptr_null(y);
  ck_assert_msg(kiln_errcode(ctx) == st, "status %s: %s", kiln_status_str(kiln_errcode(ctx)),
                kiln_errmsg(ctx));
  ck_assert_msg(strstr(kiln_errmsg(ctx), "'xin'") != NULL, "the message names x: %s",
                kiln_errmsg(ctx));
  ck_assert_msg(strstr(kiln_errmsg(ctx), part) != NULL, "message lacks '%s': %s", part,
                kiln_errmsg(ctx));
  /* a builder given the failed node returns NULL and keeps the error */
  ck_assert_ptr_null(kiln_sum(y));
  ck_assert_int_eq(kiln_errcode(ctx), st);
  kiln_ctx_free(ctx);
}

static kiln_node *e_dup(kiln_node *x) { return kiln_reduce(x, KILN_SUM, 2, A(1, 1), 0); }
static kiln_node *e_dup_neg(kiln_node *x) { return kiln_reduce(x, KILN_MAX, 3, A(0, 2, -1), 1); }
static kiln_node *e_range(kiln_node *x) { return kiln_reduce(x, KILN_MEAN, 2, A(0, 3), 0); }
static kiln_node *e_range_neg(kiln_node *x) { return kiln_reduce(x, KILN_PROD, 1, A(-4), 0); }
static kiln_node *e_arg_two(kiln_node *x) { return kiln_reduce(x, KILN_ARGMAX, 2, A(0, 2), 0); }
static kiln_node *e_arg_range(kiln_node *x) { return kiln_argmin(x, 5); }
static kiln_node *e_max_empty(kiln_node *x) { return kiln_max_axis(x, 1); }
static kiln_node *e_min_empty(kiln_node *x) { return kiln_reduce(x, KILN_MIN, 0, NULL, 1); }
static kiln_node *e_argmax_empty(kiln_node *x) { return kiln_argmax(x, -2); }
static kiln_node *e_lse_empty(kiln_node *x) { return kiln_logsumexp(x, 1, 0); }
static kiln_node *e_bad_op(kiln_node *x) { return kiln_reduce(x, (kiln_reduce_op)99, 0, NULL, 0); }
static kiln_node *e_null_axes(kiln_node *x) { return kiln_reduce(x, KILN_SUM, 2, NULL, 0); }
static kiln_node *e_neg_count(kiln_node *x) { return kiln_reduce(x, KILN_SUM, -1, A(0), 0); }

START_TEST(errors_build) {
  expect_build_error(e_dup, KILN_SHAPE, "listed twice");
  expect_build_error(e_dup_neg, KILN_SHAPE, "listed twice");
  expect_build_error(e_range, KILN_SHAPE, "axis 3 is out of range");
  expect_build_error(e_range_neg, KILN_SHAPE, "axis -4 is out of range");
  expect_build_error(e_arg_two, KILN_SHAPE, "one axis or all");
  expect_build_error(e_arg_range, KILN_SHAPE, "out of range");
  expect_build_error(e_max_empty, KILN_SHAPE, "max: cannot reduce over axis 1 of size 0");
  expect_build_error(e_min_empty, KILN_SHAPE, "size 0");
  expect_build_error(e_argmax_empty, KILN_SHAPE, "argmax");
  expect_build_error(e_lse_empty, KILN_SHAPE, "size 0");
  expect_build_error(e_bad_op, KILN_MISUSE, "not a kiln_reduce_op");
  expect_build_error(e_null_axes, KILN_MISUSE, "axis list");
  expect_build_error(e_neg_count, KILN_MISUSE, "axis list");
  /* sums and products have an identity: reducing the empty axis is fine */
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 3, S(2, 0, D));
  ck_assert_ptr_nonnull(kiln_reduce(x, KILN_SUM, 1, A(1), 0));
  ck_assert_ptr_nonnull(kiln_reduce(x, KILN_PROD, 0, NULL, 1));
  ck_assert_ptr_nonnull(kiln_reduce(x, KILN_MEAN, 1, A(-2), 1));
  /* and max over other axes too (an empty result) */
  ck_assert_ptr_nonnull(kiln_reduce(x, KILN_MAX, 2, A(0, 2), 0));
  ck_assert_ptr_nonnull(kiln_argmax(x, 0));
  /* NULL in, NULL out, no error */
  ck_assert_int_eq(kiln_errcode(ctx), KILN_OK);
  ck_assert_ptr_null(kiln_reduce(NULL, KILN_MAX, 0, NULL, 0));
  ck_assert_ptr_null(kiln_argmax(NULL, 0));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_OK);
  kiln_ctx_free(ctx);
}
END_TEST

/* An axis of size 0 known only at call time: KILN_SHAPE from the shape
** program, naming the node and the axis; the reference agrees; the same
** function works again with a nonempty axis. */
START_TEST(empty_no_identity) {
  static const kiln_reduce_op ops[] = {KILN_MAX, KILN_MIN, KILN_ARGMAX, KILN_ARGMIN,
                                       KILN_LOGSUMEXP};
  for (int k = 0; k < 5; k++) {
    kiln_ctx *ctx = new_ctx();
    kiln_node *x = kiln_input(ctx, "xd", KILN_FLOAT32, 2, NULL);
    kiln_node *y = kiln_name(kiln_reduce(x, ops[k], 1, A(1), k % 2), "red");
    ck_assert_ptr_nonnull(y);
    kiln_function *f = compile_opts(ctx, "empty", 1, &x, 1, &y, false);
    kiln_tensor *v = kiln_tensor_new(KILN_FLOAT32, 2, S(3, 0), NULL);
    const kiln_tensor *o[1];
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&v, o), KILN_SHAPE);
    const char *msg = kiln_errmsg(ctx);
    ck_assert_msg(strstr(msg, "axis 1 of size 0") && strstr(msg, "'xd'") && strstr(msg, "(3, 0)"),
                  "%s: %s", OPNAME[ops[k]], msg);
    if (ops[k] != KILN_LOGSUMEXP) /* logsumexp fails in its inner max */
      ck_assert_msg(strstr(msg, "'red'") != NULL, "%s: names the node: %s", OPNAME[ops[k]], msg);
    kiln_tensor *r[1];
    ck_assert_int_eq(kl_ref_run(ctx, 1, &x, (const kiln_tensor *const *)&v, 1, &y, r), KILN_SHAPE);
    kiln_tensor_free(v);
    /* (0, 3) over axis 1: an empty result, no error */
    v = kiln_tensor_new(KILN_FLOAT32, 2, S(0, 3), NULL);
    ck_assert_msg(kiln_call(f, (const kiln_tensor *const *)&v, o) == KILN_OK, "%s",
                  kiln_errmsg(ctx));
    ck_assert_int_eq(kiln_tensor_size(o[0]), 0);
    kiln_tensor_free(v);
    v = gen(KILN_FLOAT32, 2, S(3, 4), 9, GEN_ANY);
    kiln_tensor *got;
    kt_check_calls(ctx, f, "empty then not", 1, &x, &v, 1, &y, 2, &got);
    ck_assert_int_eq(kiln_tensor_size(got), 3);
    kiln_tensor_free(got);
    kiln_tensor_free(v);
    kiln_ctx_free(ctx);
  }
}
END_TEST

/* ------------------------------------------------------------- dumps */

/* Producers run inside the loops of the new reductions; keepdims shows. */
START_TEST(fusion_and_dumps) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 2, NULL),
            *y = kiln_input(ctx, "y", KILN_FLOAT64, 2, NULL);
  kiln_node *outs[] = {kiln_name(kiln_reduce(kiln_mul(x, y), KILN_MAX, 1, A(1), 1), "mx"),
                       kiln_name(kiln_argmin(kiln_add(x, y), 0), "am"),
                       kiln_name(kiln_prod(kiln_sub(x, y)), "pr")};
  kiln_node *ins[] = {x, y};
  kiln_function *f = compile_opts(ctx, "fused", 2, ins, 3, outs, false);
  char *opt = kt_dump(f, "opt"), *plan = kt_dump(f, "plan");
  ck_assert_msg(strstr(opt, "max{axes=0x2,keepdims}") != NULL, "%s", opt);
  ck_assert_msg(strstr(opt, "argmin{axes=0x1}") != NULL, "%s", opt);
  ck_assert_msg(strstr(opt, "prod{axes=0x3}") != NULL, "%s", opt);
  /* three kernels, each with its producer fused: no elementwise kernel */
  ck_assert_msg(strstr(plan, "elementwise") == NULL, "%s", plan);
  ck_assert_msg(strstr(plan, "= max 'mx', reduce loop") && strstr(plan, "fused: %"), "%s", plan);
  ck_assert_msg(strstr(plan, "mul") && strstr(plan, "add") && strstr(plan, "sub"), "%s", plan);
  free(opt);
  free(plan);
  kiln_tensor *v[2] = {gen(KILN_FLOAT64, 2, S(5, 6), 1, GEN_TIES),
                       gen(KILN_FLOAT64, 2, S(5, 6), 2, GEN_ANY)};
  kiln_tensor *got[3];
  kt_check_calls(ctx, f, "fused", 2, ins, v, 3, outs, 2, got);
  for (int k = 0; k < 3; k++)
    kiln_tensor_free(got[k]);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* Separately built equal reductions merge (CSE); keepdims apart do not. */
START_TEST(cse_keepdims) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 2, NULL);
  kiln_node *outs[] = {kiln_reduce(x, KILN_MAX, 1, A(0), 0), kiln_reduce(x, KILN_MAX, 1, A(-2), 0),
                       kiln_reduce(x, KILN_MAX, 1, A(0), 1)};
  kiln_function *f = compile_opts(ctx, "cse", 1, &x, 3, outs, false);
  char *opt = kt_dump(f, "opt");
  int n_max = 0;
  for (const char *p = opt; (p = strstr(p, "= max{")) != NULL; p++)
    n_max++;
  ck_assert_msg(n_max == 2, "%d max nodes: %s", n_max, opt);
  free(opt);
  kiln_tensor *v = gen(KILN_FLOAT64, 2, S(3, 4), 5, GEN_ANY);
  kiln_tensor *got[3];
  kt_check_calls(ctx, f, "cse", 1, &x, &v, 3, outs, 2, got);
  ck_assert_int_eq(got[0]->rank, 1);
  ck_assert_int_eq(got[2]->rank, 2);
  for (int k = 0; k < 3; k++)
    kiln_tensor_free(got[k]);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* Constant folding evaluates the new reductions with the reference: the
** folded function gives what the unfolded one computes. */
START_TEST(constant_folding) {
  kiln_ctx *ctx = new_ctx();
  double cv[6] = {3, NAN, -1, 2, 2, -0.0};
  kiln_node *c = kiln_const(ctx, KILN_FLOAT64, 2, S(2, 3), cv);
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 2, S(2, 3));
  kiln_node *outs[] = {kiln_max_axis(c, 1),    kiln_argmax(c, 1),       kiln_argmin(c, 0),
                       kiln_prod(c),           kiln_logsumexp(c, 1, 1), kiln_max_axis(x, 1),
                       kiln_argmax(x, 1),      kiln_argmin(x, 0),       kiln_prod(x),
                       kiln_logsumexp(x, 1, 1)};
  kiln_function *f = compile_opts(ctx, "fold", 1, &x, 10, outs, false);
  char *opt = kt_dump(f, "opt");
  ck_assert_msg(strstr(opt, "constant_fold") != NULL, "%s", opt);
  free(opt);
  kiln_tensor *v = kt_tensor(KILN_FLOAT64, 2, S(2, 3), cv);
  kiln_tensor *got[10];
  kt_check_calls(ctx, f, "fold", 1, &x, &v, 10, outs, 2, got);
  for (int k = 0; k < 5; k++)
    ck_assert_msg(kt_same_bits(got[k], got[5 + k]), "output %d", k);
  expect_i64(got[1], 2, S(1, 0), "argmax([[3,nan,-1],[2,2,-0.0]], axis 1)");
  expect_i64(got[2], 3, S(1, 0, 0), "argmin([[3,nan,-1],[2,2,-0.0]], axis 0)");
  for (int k = 0; k < 10; k++)
    kiln_tensor_free(got[k]);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ suite */

static Suite *suite(void) {
  Suite *s = suite_create("reduce");
  TCase *tc = tcase_create("jit");
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, jit_sum, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, jit_mean, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, jit_max, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, jit_min, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, jit_prod, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, jit_argmax, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, jit_argmin, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, jit_logsumexp, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, naive_max_argmax, 0, KILN_N_DTYPES);
  suite_add_tcase(s, tc);

  tc = tcase_create("hand");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, hand_argmax);
  tcase_add_test(tc, hand_max_min);
  tcase_add_test(tc, hand_prod);
  tcase_add_test(tc, hand_logsumexp);
  tcase_add_test(tc, hand_sum_mean_keepdims);
  tcase_add_test(tc, blocked_order);
  tcase_add_test(tc, shorthands);
  tcase_add_test(tc, static_types);
  suite_add_tcase(s, tc);

  tc = tcase_create("errors");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, errors_build);
  tcase_add_test(tc, empty_no_identity);
  suite_add_tcase(s, tc);

  tc = tcase_create("compiler");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, fusion_and_dumps);
  tcase_add_test(tc, cse_keepdims);
  tcase_add_test(tc, constant_folding);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return kt_run(suite()); }
