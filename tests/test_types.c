/*
** test_types.c -- the type rules of graph building: numpy promotion
** (kiln_promote and the dtype of every elementwise op), the result dtypes of
** div/sqrt/exp/log and of reductions, weak literals (NEP 50), static and
** call-time broadcasting with its messages, and rank/shape errors.
**
** Every expected dtype below is written out by hand from numpy's rules, not
** taken from the library's own tables.
*/
#include "compiler/graph.h"
#include "compiler/refeval.h"
#include "tests/testutil.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define NDT KILN_N_DTYPES
#define B KILN_BOOL
#define I8 KILN_INT8
#define I16 KILN_INT16
#define I32 KILN_INT32
#define I64 KILN_INT64
#define U8 KILN_UINT8
#define F32 KILN_FLOAT32
#define F64 KILN_FLOAT64

/* numpy's result_type for two arrays, in enum order
** (bool, int8, int16, int32, int64, uint8, float32, float64). */
static const kiln_dtype PROMOTE[NDT][NDT] = {
    /*          bool int8 int16 int32 int64 uint8 float32 float64 */
    /* bool  */ {B, I8, I16, I32, I64, U8, F32, F64},
    /* int8  */ {I8, I8, I16, I32, I64, I16, F32, F64},
    /* int16 */ {I16, I16, I16, I32, I64, I16, F32, F64},
    /* int32 */ {I32, I32, I32, I32, I64, I32, F64, F64},
    /* int64 */ {I64, I64, I64, I64, I64, I64, F64, F64},
    /* uint8 */ {U8, I16, I16, I32, I64, U8, F32, F64},
    /* f32   */ {F32, F32, F32, F64, F64, F32, F32, F64},
    /* f64   */ {F64, F64, F64, F64, F64, F64, F64, F64},
};

static const char *dn(int dt) { return kiln_dtype_name((kiln_dtype)dt); }

static kiln_ctx *new_ctx(void) {
  kiln_ctx *ctx = kiln_ctx_new();
  ck_assert_ptr_nonnull(ctx);
  return ctx;
}

/* A vector input of dtype dt with every dimension dynamic. */
static kiln_node *vec(kiln_ctx *ctx, const char *name, kiln_dtype dt) {
  kiln_node *v = kiln_input(ctx, name, dt, 1, NULL);
  ck_assert_msg(v != NULL, "input %s: %s", name, kiln_errmsg(ctx));
  return v;
}

static kiln_node *input_dims(kiln_ctx *ctx, const char *name, kiln_dtype dt, int rank,
                             const int64_t *dims) {
  kiln_node *v = kiln_input(ctx, name, dt, rank, dims);
  ck_assert_msg(v != NULL, "input %s: %s", name, kiln_errmsg(ctx));
  return v;
}

/* Asserts v is a node of the given dtype. */
static void expect_dtype(kiln_ctx *ctx, kiln_node *v, kiln_dtype want, const char *what) {
  ck_assert_msg(v != NULL, "%s: builder failed: %s", what, kiln_errmsg(ctx));
  ck_assert_msg(kiln_node_dtype(v) == want, "%s: dtype %s, want %s", what, dn(kiln_node_dtype(v)),
                dn(want));
}

/* Asserts a builder returned NULL with status st. */
static void expect_fail(kiln_ctx *ctx, kiln_node *v, kiln_status st, const char *what) {
  ck_assert_msg(v == NULL, "%s: built a %s node, want failure %s", what,
                v ? dn(kiln_node_dtype(v)) : "", kiln_status_str(st));
  ck_assert_msg(kiln_errcode(ctx) == st, "%s: status %s (%s), want %s", what,
                kiln_status_str(kiln_errcode(ctx)), kiln_errmsg(ctx), kiln_status_str(st));
  kiln_clear_error(ctx);
}

static void expect_shape(kiln_node *v, int rank, const int64_t *dims, const char *what) {
  ck_assert_msg(v != NULL, "%s: NULL node", what);
  ck_assert_msg(kiln_node_rank(v) == rank, "%s: rank %d, want %d", what, kiln_node_rank(v), rank);
  for (int i = 0; i < rank; i++)
    ck_assert_msg(kiln_node_dim(v, i) == dims[i], "%s: dim %d is %lld, want %lld", what, i,
                  (long long)kiln_node_dim(v, i), (long long)dims[i]);
}

/* Compiles f(ins) = out, calls it and returns a copy of the output (the
** caller frees it); asserts the reference evaluator agrees bit for bit. */
static kiln_tensor *jit_and_ref(kiln_ctx *ctx, int n, kiln_node **ins, kiln_tensor **vals,
                                kiln_node *out) {
  kiln_function *f = kiln_function_new(ctx, "t", n, ins, 1, &out, 0, NULL);
  ck_assert_msg(f != NULL, "function_new: %s", kiln_errmsg(ctx));
  const kiln_tensor *got = NULL;
  kiln_status st = kiln_call(f, (const kiln_tensor *const *)vals, &got);
  ck_assert_msg(st == KILN_OK, "call: %s", kiln_errmsg(ctx));
  kiln_tensor *ref = NULL;
  st = kl_ref_run(ctx, n, ins, (const kiln_tensor *const *)vals, 1, &out, &ref);
  ck_assert_msg(st == KILN_OK, "ref: %s", kiln_errmsg(ctx));
  ck_assert_msg(kt_same_bits(got, ref), "JIT and reference differ");
  kiln_tensor *copy = kiln_tensor_new(kiln_tensor_dtype(got), kiln_tensor_rank(got), got->shape,
                                      kiln_tensor_data(got));
  ck_assert_ptr_nonnull(copy);
  kiln_tensor_free(ref);
  kiln_function_free(f);
  return copy;
}

/* ------------------------------------------------------------ promotion */

START_TEST(promote_table) {
  for (int a = 0; a < NDT; a++)
    for (int b = 0; b < NDT; b++) {
      kiln_dtype got = kiln_promote((kiln_dtype)a, (kiln_dtype)b);
      ck_assert_msg(got == PROMOTE[a][b], "promote(%s, %s) = %s, numpy says %s", dn(a), dn(b),
                    dn(got), dn(PROMOTE[a][b]));
    }
}
END_TEST

START_TEST(promote_symmetric) {
  for (int a = 0; a < NDT; a++)
    for (int b = 0; b < NDT; b++)
      ck_assert_msg(kiln_promote((kiln_dtype)a, (kiln_dtype)b) ==
                        kiln_promote((kiln_dtype)b, (kiln_dtype)a),
                    "promote(%s, %s) != promote(%s, %s)", dn(a), dn(b), dn(b), dn(a));
  /* the hand table itself is symmetric, so a typo in it cannot hide */
  for (int a = 0; a < NDT; a++)
    for (int b = 0; b < NDT; b++)
      ck_assert_int_eq(PROMOTE[a][b], PROMOTE[b][a]);
}
END_TEST

START_TEST(promote_invalid) {
  ck_assert_int_eq(kiln_promote(KILN_N_DTYPES, KILN_INT8), KILN_N_DTYPES);
  ck_assert_int_eq(kiln_promote(KILN_FLOAT32, KILN_N_DTYPES), KILN_N_DTYPES);
  ck_assert_int_eq(kiln_promote((kiln_dtype)-1, KILN_BOOL), KILN_N_DTYPES);
  ck_assert_int_eq(kiln_promote((kiln_dtype)99, (kiln_dtype)99), KILN_N_DTYPES);
}
END_TEST

/* The dtype of kiln_add / kiln_mul / kiln_maximum / kiln_minimum / kiln_sub
** on two tensor inputs of every dtype pair is the promotion table's. */
START_TEST(binary_dtype_pairs) {
  kiln_ctx *ctx = new_ctx();
  for (int a = 0; a < NDT; a++)
    for (int b = 0; b < NDT; b++) {
      kiln_node *x = vec(ctx, "x", (kiln_dtype)a), *y = vec(ctx, "y", (kiln_dtype)b);
      char what[96];
      snprintf(what, sizeof what, "add(%s, %s)", dn(a), dn(b));
      expect_dtype(ctx, kiln_add(x, y), PROMOTE[a][b], what);
      snprintf(what, sizeof what, "mul(%s, %s)", dn(a), dn(b));
      expect_dtype(ctx, kiln_mul(x, y), PROMOTE[a][b], what);
      snprintf(what, sizeof what, "maximum(%s, %s)", dn(a), dn(b));
      expect_dtype(ctx, kiln_maximum(x, y), PROMOTE[a][b], what);
      snprintf(what, sizeof what, "minimum(%s, %s)", dn(a), dn(b));
      expect_dtype(ctx, kiln_minimum(x, y), PROMOTE[a][b], what);
      snprintf(what, sizeof what, "sub(%s, %s)", dn(a), dn(b));
      if (a == KILN_BOOL && b == KILN_BOOL)
        expect_fail(ctx, kiln_sub(x, y), KILN_TYPE, what);
      else
        expect_dtype(ctx, kiln_sub(x, y), PROMOTE[a][b], what);
      snprintf(what, sizeof what, "pow(%s, %s)", dn(a), dn(b));
      if (a == KILN_BOOL && b == KILN_BOOL)
        expect_fail(ctx, kiln_pow(x, y), KILN_TYPE, what);
      else
        expect_dtype(ctx, kiln_pow(x, y), PROMOTE[a][b], what);
    }
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(bool_arith_errors) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *p = vec(ctx, "p", KILN_BOOL), *q = vec(ctx, "q", KILN_BOOL);
  expect_fail(ctx, kiln_sub(p, q), KILN_TYPE, "sub(bool, bool)");
  expect_fail(ctx, kiln_neg(p), KILN_TYPE, "neg(bool)");
  expect_fail(ctx, kiln_pow(p, q), KILN_TYPE, "pow(bool, bool)");
  /* the message names the operand */
  kiln_node *r = kiln_neg(p);
  ck_assert_ptr_null(r);
  ck_assert_msg(strstr(kiln_errmsg(ctx), "'p'") != NULL, "%s", kiln_errmsg(ctx));
  kiln_clear_error(ctx);
  /* bool is fine where numpy allows it */
  expect_dtype(ctx, kiln_add(p, q), KILN_BOOL, "add(bool, bool)");
  expect_dtype(ctx, kiln_mul(p, q), KILN_BOOL, "mul(bool, bool)");
  expect_dtype(ctx, kiln_sqr(p), KILN_BOOL, "sqr(bool)");
  expect_dtype(ctx, kiln_abs(p), KILN_BOOL, "abs(bool)");
  /* a bool meeting an integer is that integer, so sub/neg/pow work */
  kiln_node *i = vec(ctx, "i", KILN_INT8);
  expect_dtype(ctx, kiln_sub(p, i), KILN_INT8, "sub(bool, int8)");
  expect_dtype(ctx, kiln_pow(i, p), KILN_INT8, "pow(int8, bool)");
  expect_dtype(ctx, kiln_neg(i), KILN_INT8, "neg(int8)");
  kiln_ctx_free(ctx);
}
END_TEST

/* Unary ops that keep the dtype. */
START_TEST(unary_keep_dtype) {
  kiln_ctx *ctx = new_ctx();
  for (int a = 0; a < NDT; a++) {
    kiln_node *x = vec(ctx, "x", (kiln_dtype)a);
    char what[64];
    snprintf(what, sizeof what, "sqr(%s)", dn(a));
    expect_dtype(ctx, kiln_sqr(x), (kiln_dtype)a, what);
    snprintf(what, sizeof what, "abs(%s)", dn(a));
    expect_dtype(ctx, kiln_abs(x), (kiln_dtype)a, what);
    if (a != KILN_BOOL) {
      snprintf(what, sizeof what, "neg(%s)", dn(a));
      expect_dtype(ctx, kiln_neg(x), (kiln_dtype)a, what);
    }
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* div is numpy's true division: integers and bool are divided as float64,
** floats keep their dtype (after promotion). */
START_TEST(div_dtypes) {
  static const kiln_dtype want[NDT][NDT] = {
      /*          bool int8 int16 int32 int64 uint8 float32 float64 */
      /* bool  */ {F64, F64, F64, F64, F64, F64, F32, F64},
      /* int8  */ {F64, F64, F64, F64, F64, F64, F32, F64},
      /* int16 */ {F64, F64, F64, F64, F64, F64, F32, F64},
      /* int32 */ {F64, F64, F64, F64, F64, F64, F64, F64},
      /* int64 */ {F64, F64, F64, F64, F64, F64, F64, F64},
      /* uint8 */ {F64, F64, F64, F64, F64, F64, F32, F64},
      /* f32   */ {F32, F32, F32, F64, F64, F32, F32, F64},
      /* f64   */ {F64, F64, F64, F64, F64, F64, F64, F64},
  };
  kiln_ctx *ctx = new_ctx();
  for (int a = 0; a < NDT; a++)
    for (int b = 0; b < NDT; b++) {
      kiln_node *x = vec(ctx, "x", (kiln_dtype)a), *y = vec(ctx, "y", (kiln_dtype)b);
      char what[64];
      snprintf(what, sizeof what, "div(%s, %s)", dn(a), dn(b));
      expect_dtype(ctx, kiln_div(x, y), want[a][b], what);
    }
  kiln_ctx_free(ctx);
}
END_TEST

/* The value of an integer division is the float64 quotient (7/2 = 3.5, not
** 3 and not a float32 rounding of 1/3). */
START_TEST(div_int_value) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = vec(ctx, "x", KILN_INT8), *y = vec(ctx, "y", KILN_INT8);
  kiln_node *q = kiln_div(x, y);
  ck_assert_msg(q != NULL, "%s", kiln_errmsg(ctx));
  kiln_node *ins[] = {x, y};
  kiln_tensor *v[] = {kt_tensor(KILN_INT8, 1, (int64_t[]){3}, (double[]){7, 1, -128}),
                      kt_tensor(KILN_INT8, 1, (int64_t[]){3}, (double[]){2, 3, 0})};
  kiln_tensor *r = jit_and_ref(ctx, 2, ins, v, q);
  ck_assert_int_eq(kiln_tensor_dtype(r), KILN_FLOAT64);
  const double *d = kiln_tensor_data(r);
  ck_assert(d[0] == 3.5);
  ck_assert(d[1] == 1.0 / 3.0);
  ck_assert(isinf(d[2]) && d[2] < 0);
  kiln_tensor_free(r);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* sqrt, exp, log: bool/int8/int16/uint8 -> float32, int32/int64 -> float64. */
START_TEST(float_fn_dtypes) {
  static const kiln_dtype want[NDT] = {F32, F32, F32, F64, F64, F32, F32, F64};
  kiln_ctx *ctx = new_ctx();
  for (int a = 0; a < NDT; a++) {
    kiln_node *x = vec(ctx, "x", (kiln_dtype)a);
    char what[64];
    snprintf(what, sizeof what, "sqrt(%s)", dn(a));
    expect_dtype(ctx, kiln_sqrt(x), want[a], what);
    snprintf(what, sizeof what, "exp(%s)", dn(a));
    expect_dtype(ctx, kiln_exp(x), want[a], what);
    snprintf(what, sizeof what, "log(%s)", dn(a));
    expect_dtype(ctx, kiln_log(x), want[a], what);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* sum: bool/ints -> int64, floats keep; mean: bool/ints -> float64. */
START_TEST(reduce_dtypes) {
  static const kiln_dtype sum_want[NDT] = {I64, I64, I64, I64, I64, I64, F32, F64};
  static const kiln_dtype mean_want[NDT] = {F64, F64, F64, F64, F64, F64, F32, F64};
  kiln_ctx *ctx = new_ctx();
  for (int a = 0; a < NDT; a++) {
    kiln_node *x = kiln_input(ctx, "x", (kiln_dtype)a, 2, NULL);
    ck_assert_ptr_nonnull(x);
    char what[64];
    snprintf(what, sizeof what, "sum(%s)", dn(a));
    expect_dtype(ctx, kiln_sum(x), sum_want[a], what);
    snprintf(what, sizeof what, "sum_axis(%s)", dn(a));
    expect_dtype(ctx, kiln_sum_axis(x, 1), sum_want[a], what);
    snprintf(what, sizeof what, "mean(%s)", dn(a));
    expect_dtype(ctx, kiln_mean(x), mean_want[a], what);
    snprintf(what, sizeof what, "mean_axis(%s)", dn(a));
    expect_dtype(ctx, kiln_mean_axis(x, 0), mean_want[a], what);
    ck_assert_int_eq(kiln_node_rank(kiln_sum(x)), 0);
    ck_assert_int_eq(kiln_node_rank(kiln_mean_axis(x, -1)), 1);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* dot promotes like the elementwise ops; bool is refused. */
START_TEST(dot_dtypes) {
  kiln_ctx *ctx = new_ctx();
  for (int a = 0; a < NDT; a++)
    for (int b = 0; b < NDT; b++) {
      kiln_node *x = vec(ctx, "x", (kiln_dtype)a), *y = vec(ctx, "y", (kiln_dtype)b);
      char what[64];
      snprintf(what, sizeof what, "dot(%s, %s)", dn(a), dn(b));
      if (a == KILN_BOOL && b == KILN_BOOL)
        expect_fail(ctx, kiln_dot(x, y), KILN_TYPE, what);
      else
        expect_dtype(ctx, kiln_dot(x, y), PROMOTE[a][b], what);
    }
  kiln_ctx_free(ctx);
}
END_TEST

/* --------------------------------------------------------- weak literals */

static bool is_weak(const kiln_node *v) { return v && v->type.weak; }

START_TEST(weak_float_lit_float32) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_fvector(ctx, "x");
  kiln_node *y = kiln_mul(kiln_lit(ctx, 0.1), x);
  expect_dtype(ctx, y, KILN_FLOAT32, "0.1 * fvector");
  ck_assert(!is_weak(y));
  expect_dtype(ctx, kiln_mul(x, kiln_lit(ctx, 0.1)), KILN_FLOAT32, "fvector * 0.1");
  expect_dtype(ctx, kiln_add(kiln_lit(ctx, 1e300), x), KILN_FLOAT32, "1e300 + fvector");
  expect_dtype(ctx, kiln_mul(kiln_lit(ctx, 0.1), kiln_dvector(ctx, "d")), KILN_FLOAT64,
               "0.1 * dvector");
  /* an int literal with floats keeps the float dtype too */
  expect_dtype(ctx, kiln_mul(kiln_lit(ctx, 3), x), KILN_FLOAT32, "3 * fvector");
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(weak_int_lit_int8) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_bvector(ctx, "x");
  expect_dtype(ctx, kiln_mul(kiln_lit(ctx, 2), x), KILN_INT8, "2 * bvector");
  expect_dtype(ctx, kiln_add(x, kiln_lit(ctx, 127)), KILN_INT8, "bvector + 127");
  expect_dtype(ctx, kiln_add(x, kiln_lit(ctx, -128)), KILN_INT8, "bvector + -128");
  kiln_node *u = vec(ctx, "u", KILN_UINT8);
  expect_dtype(ctx, kiln_add(u, kiln_lit(ctx, 255)), KILN_UINT8, "uint8 + 255");
  expect_dtype(ctx, kiln_mul(kiln_lit(ctx, 2), kiln_wvector(ctx, "w")), KILN_INT16, "2 * wvector");
  expect_dtype(ctx, kiln_mul(kiln_lit(ctx, 2), kiln_ivector(ctx, "i")), KILN_INT32, "2 * ivector");
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(weak_int_lit_out_of_range) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_bvector(ctx, "x");
  expect_fail(ctx, kiln_add(kiln_lit(ctx, 300), x), KILN_TYPE, "300 + int8");
  ck_assert_ptr_null(kiln_add(x, kiln_lit(ctx, 300)));
  ck_assert_msg(strstr(kiln_errmsg(ctx), "300") != NULL, "%s", kiln_errmsg(ctx));
  kiln_clear_error(ctx);
  expect_fail(ctx, kiln_add(x, kiln_lit(ctx, 128)), KILN_TYPE, "int8 + 128");
  expect_fail(ctx, kiln_add(x, kiln_lit(ctx, -129)), KILN_TYPE, "int8 + -129");
  kiln_node *u = vec(ctx, "u", KILN_UINT8);
  expect_fail(ctx, kiln_add(u, kiln_lit(ctx, 256)), KILN_TYPE, "uint8 + 256");
  expect_fail(ctx, kiln_add(u, kiln_lit(ctx, -1)), KILN_TYPE, "uint8 + -1");
  expect_fail(ctx, kiln_mul(kiln_wvector(ctx, "w"), kiln_lit(ctx, 40000)), KILN_TYPE,
              "int16 * 40000");
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(weak_float_lit_int) {
  kiln_ctx *ctx = new_ctx();
  expect_dtype(ctx, kiln_mul(kiln_lit(ctx, 0.5), kiln_ivector(ctx, "i")), KILN_FLOAT64,
               "0.5 * int32");
  expect_dtype(ctx, kiln_mul(kiln_lit(ctx, 0.5), kiln_bvector(ctx, "b")), KILN_FLOAT64,
               "0.5 * int8");
  expect_dtype(ctx, kiln_add(vec(ctx, "p", KILN_BOOL), kiln_lit(ctx, 0.5)), KILN_FLOAT64,
               "bool + 0.5");
  expect_dtype(ctx, kiln_add(vec(ctx, "u", KILN_UINT8), kiln_lit(ctx, 1.0)), KILN_FLOAT64,
               "uint8 + 1.0");
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(weak_int_lit_bool) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *p = vec(ctx, "p", KILN_BOOL);
  expect_dtype(ctx, kiln_add(kiln_lit(ctx, 1), p), KILN_INT64, "1 + bool");
  expect_dtype(ctx, kiln_mul(p, kiln_lit(ctx, 300)), KILN_INT64, "bool * 300");
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(weak_lit_lit) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *ff = kiln_add(kiln_lit(ctx, 0.5), kiln_lit(ctx, 0.25));
  kiln_node *ii = kiln_mul(kiln_lit(ctx, 2), kiln_lit(ctx, 3));
  kiln_node *fi = kiln_add(kiln_lit(ctx, 2), kiln_lit(ctx, 0.5));
  expect_dtype(ctx, ff, KILN_FLOAT64, "float lit + float lit");
  expect_dtype(ctx, ii, KILN_INT64, "int lit * int lit");
  expect_dtype(ctx, fi, KILN_FLOAT64, "int lit + float lit");
  ck_assert(is_weak(ff) && is_weak(ii) && is_weak(fi));
  expect_dtype(ctx, kiln_lit(ctx, 0.5), KILN_FLOAT64, "float lit");
  expect_dtype(ctx, kiln_lit(ctx, 7), KILN_INT64, "int lit");
  ck_assert(is_weak(kiln_lit(ctx, 7)));
  /* still weak: they take the dtype of the tensor they meet later */
  expect_dtype(ctx, kiln_mul(ff, kiln_fvector(ctx, "x")), KILN_FLOAT32, "(lit+lit) * f32");
  expect_dtype(ctx, kiln_mul(ii, kiln_bvector(ctx, "b")), KILN_INT8, "(lit*lit) * int8");
  expect_dtype(ctx, kiln_neg(ii), KILN_INT64, "neg(lit*lit)");
  ck_assert(is_weak(kiln_neg(ii)));
  /* an explicit constant is strong */
  kiln_node *c = kiln_scalar(ctx, KILN_FLOAT64, 0.5);
  ck_assert(!is_weak(c));
  expect_dtype(ctx, kiln_mul(c, kiln_fvector(ctx, "x2")), KILN_FLOAT64, "float64 const * f32");
  expect_dtype(ctx, kiln_mul(kiln_scalar(ctx, KILN_INT16, 2), kiln_bvector(ctx, "b2")), KILN_INT16,
               "int16 const * int8");
  /* a lone literal computes to its default dtype's value */
  kiln_node *out = kiln_add(kiln_lit(ctx, 0.1), kiln_lit(ctx, 0.2));
  kiln_tensor *r = jit_and_ref(ctx, 0, NULL, NULL, out);
  ck_assert_int_eq(kiln_tensor_dtype(r), KILN_FLOAT64);
  ck_assert(*(const double *)kiln_tensor_data(r) == 0.1 + 0.2);
  kiln_tensor_free(r);
  kiln_ctx_free(ctx);
}
END_TEST

/* 0.1 * x for float32 x is the float32 product with (float)0.1, not the
** double product rounded to float. */
START_TEST(weak_lit_value_float32) {
  enum { N = 64 };
  float xs[N], want[N];
  int differ = 0;
  const float lit = (float)0.1;
  for (int i = 0; i < N; i++) {
    xs[i] = (float)(i + 1) * 1.37f + (float)i * 1e-3f;
    volatile float a = lit, b = xs[i];
    want[i] = a * b;
    if ((float)(0.1 * (double)xs[i]) != want[i]) differ++;
  }
  ck_assert_msg(differ > 0, "no x where the float32 and the double product differ");
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_fvector(ctx, "x");
  kiln_node *y = kiln_mul(kiln_lit(ctx, 0.1), x);
  kiln_tensor *v = kiln_tensor_new(KILN_FLOAT32, 1, (int64_t[]){N}, xs);
  kiln_tensor *r = jit_and_ref(ctx, 1, &x, &v, y);
  ck_assert_int_eq(kiln_tensor_dtype(r), KILN_FLOAT32);
  const float *g = kiln_tensor_data(r);
  for (int i = 0; i < N; i++)
    ck_assert_msg(memcmp(&g[i], &want[i], sizeof(float)) == 0, "x=%a: got %a want %a", xs[i], g[i],
                  want[i]);
  kiln_tensor_free(r);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* 2 * int8 stays int8 and wraps; 1 + bool is int64. */
START_TEST(weak_lit_value_int) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_bvector(ctx, "x");
  kiln_node *y = kiln_mul(kiln_lit(ctx, 2), x);
  kiln_tensor *v = kt_tensor(KILN_INT8, 1, (int64_t[]){4}, (double[]){1, 64, -64, 100});
  kiln_tensor *r = jit_and_ref(ctx, 1, &x, &v, y);
  ck_assert_int_eq(kiln_tensor_dtype(r), KILN_INT8);
  const int8_t *g = kiln_tensor_data(r);
  ck_assert_int_eq(g[0], 2);
  ck_assert_int_eq(g[1], -128); /* 128 wraps */
  ck_assert_int_eq(g[2], -128);
  ck_assert_int_eq(g[3], -56); /* 200 - 256 */
  kiln_tensor_free(r);
  kiln_tensor_free(v);

  kiln_node *p = vec(ctx, "p", KILN_BOOL);
  kiln_node *q = kiln_add(kiln_lit(ctx, 1), p);
  v = kt_tensor(KILN_BOOL, 1, (int64_t[]){2}, (double[]){0, 1});
  r = jit_and_ref(ctx, 1, &p, &v, q);
  ck_assert_int_eq(kiln_tensor_dtype(r), KILN_INT64);
  ck_assert_int_eq(((const int64_t *)kiln_tensor_data(r))[0], 1);
  ck_assert_int_eq(((const int64_t *)kiln_tensor_data(r))[1], 2);
  kiln_tensor_free(r);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------- broadcasting */

START_TEST(bcast_static) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *a = input_dims(ctx, "a", KILN_FLOAT32, 2, (int64_t[]){3, 1});
  kiln_node *b = input_dims(ctx, "b", KILN_FLOAT32, 2, (int64_t[]){1, 4});
  expect_shape(kiln_add(a, b), 2, (int64_t[]){3, 4}, "(3,1)+(1,4)");
  expect_shape(kiln_add(b, a), 2, (int64_t[]){3, 4}, "(1,4)+(3,1)");
  kiln_node *c = input_dims(ctx, "c", KILN_FLOAT32, 1, (int64_t[]){4});
  expect_shape(kiln_mul(a, c), 2, (int64_t[]){3, 4}, "(3,1)*(4,)");
  kiln_node *s = kiln_fscalar(ctx, "s");
  expect_shape(kiln_mul(s, a), 2, (int64_t[]){3, 1}, "()*(3,1)");
  kiln_node *t = input_dims(ctx, "t", KILN_FLOAT32, 3, (int64_t[]){2, 1, 4});
  kiln_node *u = input_dims(ctx, "u", KILN_FLOAT32, 2, (int64_t[]){3, 1});
  expect_shape(kiln_sub(t, u), 3, (int64_t[]){2, 3, 4}, "(2,1,4)-(3,1)");
  kiln_node *z = input_dims(ctx, "z", KILN_FLOAT32, 2, (int64_t[]){0, 1});
  expect_shape(kiln_add(z, b), 2, (int64_t[]){0, 4}, "(0,1)+(1,4)");
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(bcast_static_error) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *a = input_dims(ctx, "alpha", KILN_FLOAT32, 1, (int64_t[]){3});
  kiln_node *b = input_dims(ctx, "beta", KILN_FLOAT32, 1, (int64_t[]){4});
  kiln_node *y = kiln_add(a, b);
  ck_assert_ptr_null(y);
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  const char *m = kiln_errmsg(ctx);
  ck_assert_msg(strstr(m, "shapes (3,) and (4,)") != NULL, "%s", m);
  ck_assert_msg(strstr(m, "'alpha'") != NULL, "%s", m);
  ck_assert_msg(strstr(m, "'beta'") != NULL, "%s", m);
  ck_assert_msg(strstr(m, "test_types.c") != NULL, "no location: %s", m);
  kiln_clear_error(ctx);
  /* a later builder on the NULL keeps quiet and returns NULL */
  ck_assert_ptr_null(kiln_neg(y));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_OK);
  /* rank 2 clash in the leading dimension */
  kiln_node *c = input_dims(ctx, "c", KILN_FLOAT64, 2, (int64_t[]){2, 3});
  kiln_node *d = input_dims(ctx, "d", KILN_FLOAT64, 3, (int64_t[]){5, 4, 3});
  expect_fail(ctx, kiln_mul(c, d), KILN_SHAPE, "(2,3)*(5,4,3)");
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(bcast_dynamic_build) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *a = kiln_fvector(ctx, "a");
  kiln_node *b = input_dims(ctx, "b", KILN_FLOAT32, 1, (int64_t[]){4});
  expect_shape(kiln_add(a, b), 1, (int64_t[]){4}, "(?,)+(4,)");
  expect_shape(kiln_add(b, a), 1, (int64_t[]){4}, "(4,)+(?,)");
  expect_shape(kiln_add(a, a), 1, (int64_t[]){KILN_DYN}, "(?,)+(?,)");
  kiln_node *r = kiln_frow(ctx, "r"), *c = kiln_fcol(ctx, "c");
  expect_shape(r, 2, (int64_t[]){1, KILN_DYN}, "frow");
  expect_shape(c, 2, (int64_t[]){KILN_DYN, 1}, "fcol");
  expect_shape(kiln_add(r, c), 2, (int64_t[]){KILN_DYN, KILN_DYN}, "row+col");
  expect_shape(kiln_mul(c, r), 2, (int64_t[]){KILN_DYN, KILN_DYN}, "col*row");
  expect_shape(kiln_add(r, b), 2, (int64_t[]){1, 4}, "row+(4,)");
  kiln_node *d = input_dims(ctx, "d", KILN_FLOAT32, 2, (int64_t[]){3, 1});
  expect_shape(kiln_add(r, d), 2, (int64_t[]){3, KILN_DYN}, "row+(3,1)");
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(bcast_call_error) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *a = kiln_fvector(ctx, "left"), *b = kiln_fvector(ctx, "right");
  kiln_node *y = kiln_mul(a, b);
  kiln_node *ins[] = {a, b};
  kiln_function *f = kiln_function_new(ctx, "f", 2, ins, 1, &y, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *v[] = {kt_tensor(KILN_FLOAT32, 1, (int64_t[]){3}, (double[]){1, 2, 3}),
                      kt_tensor(KILN_FLOAT32, 1, (int64_t[]){4}, (double[]){1, 2, 3, 4})};
  const kiln_tensor *out = NULL;
  kiln_status st = kiln_call(f, (const kiln_tensor *const *)v, &out);
  ck_assert_int_eq(st, KILN_SHAPE);
  const char *m = kiln_errmsg(ctx);
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  ck_assert_msg(strstr(m, "'left'") != NULL, "%s", m);
  ck_assert_msg(strstr(m, "'right'") != NULL, "%s", m);
  ck_assert_msg(strstr(m, "(3,)") != NULL && strstr(m, "(4,)") != NULL, "%s", m);
  /* the reference evaluator refuses the same values */
  kiln_tensor *ref = NULL;
  ck_assert_int_eq(kl_ref_run(ctx, 2, ins, (const kiln_tensor *const *)v, 1, &y, &ref), KILN_SHAPE);
  ck_assert_ptr_null(ref);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  /* the function still works afterwards */
  v[0] = kt_tensor(KILN_FLOAT32, 1, (int64_t[]){2}, (double[]){1, 2});
  v[1] = kt_tensor(KILN_FLOAT32, 1, (int64_t[]){2}, (double[]){3, 4});
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)v, &out), KILN_OK);
  ck_assert(kiln_tensor_get(out, 0) == 3.0 && kiln_tensor_get(out, 1) == 8.0);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* A run-time size of 1 stretches, on either side. */
START_TEST(bcast_call_stretch) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *a = kiln_fvector(ctx, "a"), *b = kiln_fvector(ctx, "b");
  kiln_node *y = kiln_mul(a, b);
  kiln_node *ins[] = {a, b};
  kiln_tensor *one = kt_tensor(KILN_FLOAT32, 1, (int64_t[]){1}, (double[]){2});
  kiln_tensor *four = kt_tensor(KILN_FLOAT32, 1, (int64_t[]){4}, (double[]){1, 2, 3, -4});
  kiln_tensor *v1[] = {one, four}, *v2[] = {four, one};
  kiln_tensor *r1 = jit_and_ref(ctx, 2, ins, v1, y);
  kiln_tensor *r2 = jit_and_ref(ctx, 2, ins, v2, y);
  const double want[] = {2, 4, 6, -8};
  for (int k = 0; k < 2; k++) {
    kiln_tensor *r = k ? r2 : r1;
    ck_assert_int_eq(kiln_tensor_rank(r), 1);
    ck_assert_int_eq(kiln_tensor_dim(r, 0), 4);
    for (int i = 0; i < 4; i++)
      ck_assert_msg(kiln_tensor_get(r, i) == want[i], "order %d elem %d: %g", k, i,
                    kiln_tensor_get(r, i));
  }
  kiln_tensor_free(r1);
  kiln_tensor_free(r2);
  kiln_tensor_free(one);
  kiln_tensor_free(four);

  /* row + col: (1,3) + (2,1) -> (2,3) */
  kiln_node *r = kiln_frow(ctx, "r"), *c = kiln_fcol(ctx, "c");
  kiln_node *s = kiln_add(r, c);
  kiln_node *ins2[] = {r, c};
  kiln_tensor *v[] = {kt_tensor(KILN_FLOAT32, 2, (int64_t[]){1, 3}, (double[]){1, 2, 3}),
                      kt_tensor(KILN_FLOAT32, 2, (int64_t[]){2, 1}, (double[]){10, 20})};
  kiln_tensor *rs = jit_and_ref(ctx, 2, ins2, v, s);
  const double w2[] = {11, 12, 13, 21, 22, 23};
  ck_assert_int_eq(kiln_tensor_dim(rs, 0), 2);
  ck_assert_int_eq(kiln_tensor_dim(rs, 1), 3);
  for (int i = 0; i < 6; i++)
    ck_assert(kiln_tensor_get(rs, i) == w2[i]);
  kiln_tensor_free(rs);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);

  /* a static (4,) against a dynamic (?,) given length 1 */
  kiln_node *d = kiln_fvector(ctx, "d");
  kiln_node *e = input_dims(ctx, "e", KILN_FLOAT32, 1, (int64_t[]){4});
  kiln_node *de = kiln_sub(d, e);
  kiln_node *ins3[] = {d, e};
  kiln_tensor *v3[] = {kt_tensor(KILN_FLOAT32, 1, (int64_t[]){1}, (double[]){10}),
                       kt_tensor(KILN_FLOAT32, 1, (int64_t[]){4}, (double[]){1, 2, 3, 4})};
  kiln_tensor *r3 = jit_and_ref(ctx, 2, ins3, v3, de);
  for (int i = 0; i < 4; i++)
    ck_assert(kiln_tensor_get(r3, i) == 10.0 - (i + 1));
  kiln_tensor_free(r3);
  kiln_tensor_free(v3[0]);
  kiln_tensor_free(v3[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* A static input dimension must match at call time. */
START_TEST(call_static_dim_mismatch) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *r = kiln_frow(ctx, "r");
  kiln_node *y = kiln_neg(r);
  kiln_function *f = kiln_function_new(ctx, "f", 1, &r, 1, &y, 0, NULL);
  ck_assert_ptr_nonnull(f);
  kiln_tensor *v = kt_tensor(KILN_FLOAT32, 2, (int64_t[]){2, 1}, (double[]){1, 2});
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&v, NULL), KILN_SHAPE);
  ck_assert_msg(strstr(kiln_errmsg(ctx), "'r'") != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor_free(v);
  v = kt_tensor(KILN_FLOAT64, 2, (int64_t[]){1, 2}, (double[]){1, 2});
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&v, NULL), KILN_TYPE);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------ rank and shapes */

START_TEST(rank_limits) {
  kiln_ctx *ctx = new_ctx();
  ck_assert_ptr_null(kiln_input(ctx, "x", KILN_FLOAT32, 9, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_input(ctx, "x", KILN_FLOAT32, -1, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_input(ctx, "x", KILN_N_DTYPES, 1, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_input(ctx, "x", KILN_FLOAT32, 1, (int64_t[]){-5}));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_clear_error(ctx);
  kiln_node *x8 = kiln_input(ctx, "x8", KILN_FLOAT32, KILN_MAX_RANK, NULL);
  ck_assert_ptr_nonnull(x8);
  ck_assert_int_eq(kiln_node_rank(x8), 8);
  ck_assert_int_eq(kiln_node_dim(x8, 7), KILN_DYN);
  ck_assert_int_eq(kiln_node_dim(x8, 8), -2);
  ck_assert_int_eq(kiln_node_rank(kiln_sum_axis(x8, 7)), 7);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(axis_out_of_range) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_fmatrix(ctx, "m");
  expect_fail(ctx, kiln_sum_axis(x, 2), KILN_SHAPE, "sum_axis(2) of rank 2");
  expect_fail(ctx, kiln_sum_axis(x, -3), KILN_SHAPE, "sum_axis(-3) of rank 2");
  expect_fail(ctx, kiln_mean_axis(x, 5), KILN_SHAPE, "mean_axis(5) of rank 2");
  expect_fail(ctx, kiln_sum_axis(kiln_fscalar(ctx, "s"), 0), KILN_SHAPE, "sum_axis of scalar");
  ck_assert_ptr_null(kiln_sum_axis(x, 2));
  ck_assert_msg(strstr(kiln_errmsg(ctx), "'m'") != NULL, "%s", kiln_errmsg(ctx));
  kiln_clear_error(ctx);
  kiln_node *t = input_dims(ctx, "t", KILN_FLOAT32, 3, (int64_t[]){2, 3, 4});
  expect_shape(kiln_sum_axis(t, -1), 2, (int64_t[]){2, 3}, "sum_axis(-1)");
  expect_shape(kiln_sum_axis(t, -3), 2, (int64_t[]){3, 4}, "sum_axis(-3)");
  expect_shape(kiln_mean_axis(t, 1), 2, (int64_t[]){2, 4}, "mean_axis(1)");
  expect_shape(kiln_sum(t), 0, NULL, "sum");
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(dot_shapes) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *a = input_dims(ctx, "a", KILN_FLOAT64, 2, (int64_t[]){3, 4});
  kiln_node *v5 = input_dims(ctx, "v5", KILN_FLOAT64, 1, (int64_t[]){5});
  kiln_node *v4 = input_dims(ctx, "v4", KILN_FLOAT64, 1, (int64_t[]){4});
  ck_assert_ptr_null(kiln_dot(a, v5));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  ck_assert_msg(strstr(kiln_errmsg(ctx), "'a'") && strstr(kiln_errmsg(ctx), "'v5'"), "%s",
                kiln_errmsg(ctx));
  kiln_clear_error(ctx);
  expect_shape(kiln_dot(a, v4), 1, (int64_t[]){3}, "(3,4).(4,)");
  kiln_node *b = input_dims(ctx, "b", KILN_FLOAT64, 2, (int64_t[]){4, 2});
  expect_shape(kiln_dot(a, b), 2, (int64_t[]){3, 2}, "(3,4).(4,2)");
  expect_fail(ctx, kiln_dot(b, a), KILN_SHAPE, "(4,2).(3,4)");
  expect_shape(kiln_dot(v4, b), 1, (int64_t[]){2}, "(4,).(4,2)");
  expect_shape(kiln_dot(v4, v4), 0, NULL, "(4,).(4,)");
  kiln_node *t3 = kiln_dtensor3(ctx, "t3");
  expect_fail(ctx, kiln_dot(t3, v4), KILN_TYPE, "dot rank 3 . 1");
  expect_fail(ctx, kiln_dot(a, t3), KILN_TYPE, "dot rank 2 . 3");
  /* a scalar multiplies, as numpy.dot (issue 4) */
  expect_shape(kiln_dot(kiln_dscalar(ctx, "s"), v4), 1, (int64_t[]){4}, "dot rank 0 . 1");
  /* dynamic inner sizes build, and are checked at call time */
  kiln_node *m = kiln_dmatrix(ctx, "m"), *w = kiln_dvector(ctx, "w");
  kiln_node *mw = kiln_dot(m, w);
  expect_shape(mw, 1, (int64_t[]){KILN_DYN}, "(?,?).(?,)");
  kiln_node *ins[] = {m, w};
  kiln_function *f = kiln_function_new(ctx, "f", 2, ins, 1, &mw, 0, NULL);
  ck_assert_ptr_nonnull(f);
  kiln_tensor *v[] = {kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){3, 4}, NULL),
                      kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){5}, NULL)};
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)v, NULL), KILN_SHAPE);
  ck_assert_msg(strstr(kiln_errmsg(ctx), "'m'") && strstr(kiln_errmsg(ctx), "'w'"), "%s",
                kiln_errmsg(ctx));
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- main */

int main(void) {
  Suite *s = suite_create("types");
  TCase *tc = tcase_create("promote");
  tcase_add_test(tc, promote_table);
  tcase_add_test(tc, promote_symmetric);
  tcase_add_test(tc, promote_invalid);
  tcase_add_test(tc, binary_dtype_pairs);
  tcase_add_test(tc, bool_arith_errors);
  tcase_add_test(tc, unary_keep_dtype);
  tcase_add_test(tc, div_dtypes);
  tcase_add_test(tc, div_int_value);
  tcase_add_test(tc, float_fn_dtypes);
  tcase_add_test(tc, reduce_dtypes);
  tcase_add_test(tc, dot_dtypes);
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);

  tc = tcase_create("weak");
  tcase_add_test(tc, weak_float_lit_float32);
  tcase_add_test(tc, weak_int_lit_int8);
  tcase_add_test(tc, weak_int_lit_out_of_range);
  tcase_add_test(tc, weak_float_lit_int);
  tcase_add_test(tc, weak_int_lit_bool);
  tcase_add_test(tc, weak_lit_lit);
  tcase_add_test(tc, weak_lit_value_float32);
  tcase_add_test(tc, weak_lit_value_int);
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);

  tc = tcase_create("broadcast");
  tcase_add_test(tc, bcast_static);
  tcase_add_test(tc, bcast_static_error);
  tcase_add_test(tc, bcast_dynamic_build);
  tcase_add_test(tc, bcast_call_error);
  tcase_add_test(tc, bcast_call_stretch);
  tcase_add_test(tc, call_static_dim_mismatch);
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);

  tc = tcase_create("shape");
  tcase_add_test(tc, rank_limits);
  tcase_add_test(tc, axis_out_of_range);
  tcase_add_test(tc, dot_shapes);
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
