/*
** test_index.c -- the indexing ops: kiln_slice, kiln_take, kiln_one_hot,
** kiln_concatenate and kiln_stack.
**
**  - values worked out by hand from numpy's semantics (Python's slice
**    rules: clamping, negative bounds and steps, omitted bounds, empty
**    results), with static and dynamic shapes;
**  - JIT against the reference evaluator (kl_ref_run) bit for bit, with and
**    without optimization, over dtypes and shapes;
**  - gradients: central finite differences in float64 of
**    sum(op(x) * R), and hand values (repeated indices accumulate);
**  - errors: status and message (node, source line, the bad index), and a
**    failed call leaves shared variables bit-identical;
**  - an embedding model (take + sum + grad + SGD) against plain C;
**  - dumps and CSE of the parameters; the allocation-failure loop.
*/
#define _POSIX_C_SOURCE 200809L /* open_memstream */
#include "compiler/graph.h"
#include "compiler/refeval.h"
#include "tests/testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D KILN_DYN
#define S(...) ((int64_t[]){__VA_ARGS__})
#define V(...) ((double[]){__VA_ARGS__})
#define THIS_FILE "test_index.c"

static void teardown(void) { kl_mem_fail_at(0); }

static kiln_ctx *new_ctx(void) {
  kiln_ctx *ctx = kiln_ctx_new();
  ck_assert_ptr_nonnull(ctx);
  return ctx;
}

static void msg_has(const kiln_ctx *ctx, const char *needle) {
  const char *m = kiln_errmsg(ctx);
  ck_assert_msg(m && strstr(m, needle), "message lacks \"%s\": %s", needle, m ? m : "(null)");
}

static kiln_function *compile(kiln_ctx *ctx, int n_in, kiln_node *const *ins, int n_out,
                              kiln_node *const *outs, int n_upd, const kiln_update *upd,
                              bool no_opt) {
  for (int k = 0; k < n_out; k++)
    ck_assert_msg(outs[k] != NULL, "output %d did not build: %s", k, kiln_errmsg(ctx));
  kiln_options o = {.size = sizeof o, .no_optimize = no_opt};
  kiln_function *f = kiln_function_new_opts(ctx, "f", n_in, ins, n_out, outs, n_upd, upd, &o);
  ck_assert_msg(f != NULL, "function_new: %s", kiln_errmsg(ctx));
  return f;
}

/* Runs outs over vals with the JIT, optimized and not, checks both against
** the reference evaluator bit for bit, and returns a copy of the first
** output (optimized JIT). */
static kiln_tensor *run(kiln_ctx *ctx, int n_in, kiln_node *const *ins, kiln_tensor *const *vals,
                        int n_out, kiln_node *const *outs) {
  kiln_tensor *ref[16], *first = NULL;
  ck_assert_int_le(n_out, 16);
  kiln_status st = kl_ref_run(ctx, n_in, ins, (const kiln_tensor *const *)vals, n_out, outs, ref);
  ck_assert_msg(st == KILN_OK, "reference: %s", kiln_errmsg(ctx));
  for (int no_opt = 0; no_opt < 2; no_opt++) {
    kiln_function *f = compile(ctx, n_in, ins, n_out, outs, 0, NULL, no_opt);
    for (int round = 0; round < 2; round++) {
      const kiln_tensor *got[16];
      st = kiln_call(f, (const kiln_tensor *const *)vals, got);
      ck_assert_msg(st == KILN_OK, "call: %s", kiln_errmsg(ctx));
      for (int k = 0; k < n_out; k++)
        ck_assert_msg(kt_same_bits(got[k], ref[k]), "output %d differs from the reference%s", k,
                      no_opt ? " (no_optimize)" : "");
      if (!first)
        first = kiln_tensor_new(kiln_tensor_dtype(got[0]), kiln_tensor_rank(got[0]), got[0]->shape,
                                kiln_tensor_data(got[0]));
    }
    kiln_function_free(f);
  }
  for (int k = 0; k < n_out; k++)
    kiln_tensor_free(ref[k]);
  return first;
}

/* t has dtype dt, shape (rank, shape) and the values vals (as doubles). */
static void expect(const kiln_tensor *t, kiln_dtype dt, int rank, const int64_t *shape,
                   const double *vals) {
  ck_assert_ptr_nonnull(t);
  ck_assert_msg(kiln_tensor_dtype(t) == dt, "dtype %s, want %s", kiln_dtype_name(t->dtype),
                kiln_dtype_name(dt));
  ck_assert_int_eq(kiln_tensor_rank(t), rank);
  int64_t n = 1;
  for (int d = 0; d < rank; d++) {
    ck_assert_msg(t->shape[d] == shape[d], "dim %d is %lld, want %lld", d, (long long)t->shape[d],
                  (long long)shape[d]);
    n *= shape[d];
  }
  for (int64_t i = 0; i < n; i++) {
    double got = kl_load_f64((kiln_dtype)t->dtype, t->data, i);
    ck_assert_msg(got == vals[i], "element %lld is %.17g, want %.17g", (long long)i, got, vals[i]);
  }
}

/* A constant from doubles converted to dt. */
static kiln_node *cst(kiln_ctx *ctx, kiln_dtype dt, int rank, const int64_t *shape,
                      const double *vals) {
  kiln_tensor *t = kt_tensor(dt, rank, shape, vals);
  kiln_node *c = kiln_const(ctx, dt, rank, shape, kiln_tensor_data(t));
  kiln_tensor_free(t);
  return c;
}

static kiln_tensor *iota(kiln_dtype dt, int rank, const int64_t *shape, double base) {
  int64_t n = 1;
  for (int d = 0; d < rank; d++)
    n *= shape[d];
  double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  for (int64_t i = 0; i < n; i++)
    v[i] = base + (double)i;
  kiln_tensor *t = kt_tensor(dt, rank, shape, v);
  free(v);
  return t;
}

/* ------------------------------------------------------------ slicing */

typedef struct case1 {
  kiln_slice s;
  int n;
  double want[5];
} case1;

#define NS KILN_SLICE_NO_START
#define NX KILN_SLICE_NO_STOP
/* x = [10, 11, 12, 13, 14]; expected values are Python's list slicing */
static const case1 CASES1[] = {
    {{1, 3, 1, 0}, 2, {11, 12}},                    /* x[1:3] */
    {{-2, 0, 1, NX}, 2, {13, 14}},                  /* x[-2:] */
    {{0, 0, -1, NS | NX}, 5, {14, 13, 12, 11, 10}}, /* x[::-1] */
    {{0, 0, -2, NS | NX}, 3, {14, 12, 10}},         /* x[::-2] */
    {{3, 0, -1, 0}, 3, {13, 12, 11}},               /* x[3:0:-1] */
    {{-100, 100, 1, 0}, 5, {10, 11, 12, 13, 14}},   /* x[-100:100] */
    {{5, 2, 1, 0}, 0, {0}},                         /* x[5:2] */
    {{10, 0, 1, NX}, 0, {0}},                       /* x[10:] */
    {{0, -10, 1, NS}, 0, {0}},                      /* x[:-10] */
    {{4, -6, -1, 0}, 5, {14, 13, 12, 11, 10}},      /* x[4:-6:-1] */
    {{-1, -6, -2, 0}, 3, {14, 12, 10}},             /* x[-1:-6:-2] */
    {{1, 4, 2, 0}, 2, {11, 13}},                    /* x[1:4:2] */
    {{0, 0, -1, NS}, 4, {14, 13, 12, 11}},          /* x[:0:-1] */
    {{0, 5, 7, 0}, 1, {10}},                        /* x[0:5:7] */
    {{100, 0, -1, NX}, 5, {14, 13, 12, 11, 10}},    /* x[100::-1] */
    {{-100, 0, -1, NX}, 0, {0}},                    /* x[-100::-1] */
    {{2, 2, 1, 0}, 0, {0}},                         /* x[2:2] */
    {{0, -1, 1, NS}, 4, {10, 11, 12, 13}},          /* x[:-1] */
    {{-3, -1, 1, 0}, 2, {12, 13}},                  /* x[-3:-1] */
    {{1, 0, 3, NX}, 2, {11, 14}},                   /* x[1::3] */
};

START_TEST(slice_1d_numpy_rules) {
  enum { NC = sizeof CASES1 / sizeof *CASES1 };
  bool dyn = _i & 1;
  kiln_dtype dt = (_i & 2) ? KILN_INT16 : KILN_FLOAT64;
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, 1, dyn ? S(D) : S(5));
  kiln_node *y[NC];
  for (int c = 0; c < NC; c++) {
    y[c] = kiln_slice(x, 1, &CASES1[c].s);
    ck_assert_msg(y[c] != NULL, "case %d: %s", c, kiln_errmsg(ctx));
    ck_assert_int_eq(y[c]->type.dims[0], dyn ? D : CASES1[c].n); /* static size: numpy's rule */
  }
  kiln_tensor *xt = iota(dt, 1, S(5), 10), *ref[NC];
  ck_assert_int_eq(kl_ref_run(ctx, 1, &x, (const kiln_tensor *const[]){xt}, NC, y, ref), KILN_OK);
  for (int no_opt = 0; no_opt < 2; no_opt++) {
    kiln_function *f = compile(ctx, 1, &x, NC, y, 0, NULL, no_opt);
    const kiln_tensor *got[NC];
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const[]){xt}, got), KILN_OK);
    for (int c = 0; c < NC; c++) {
      expect(got[c], dt, 1, S(CASES1[c].n), CASES1[c].want);
      ck_assert_msg(kt_same_bits(got[c], ref[c]), "case %d: JIT differs from the reference", c);
    }
    kiln_function_free(f);
  }
  for (int c = 0; c < NC; c++)
    kiln_tensor_free(ref[c]);
  kiln_tensor_free(xt);
  kiln_ctx_free(ctx);
}
END_TEST

/* x = arange(12).reshape(3, 4) */
START_TEST(slice_2d_hand) {
  for (int dyn = 0; dyn < 2; dyn++) {
    kiln_ctx *ctx = new_ctx();
    kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT32, 2, dyn ? S(D, D) : S(3, 4));
    kiln_tensor *xt = iota(KILN_FLOAT32, 2, S(3, 4), 0), *got;
    /* x[-1] -> [8, 9, 10, 11] */
    kiln_node *y = kiln_slice(x, 1, (kiln_slice[]){KILN_INDEX(-1)});
    got = run(ctx, 1, &x, &xt, 1, &y);
    expect(got, KILN_FLOAT32, 1, S(4), V(8, 9, 10, 11));
    kiln_tensor_free(got);
    /* x[1:, ::-2] -> [[7, 5], [11, 9]] */
    y = kiln_slice(x, 2, (kiln_slice[]){KILN_FROM(1), KILN_STEP(-2)});
    got = run(ctx, 1, &x, &xt, 1, &y);
    expect(got, KILN_FLOAT32, 2, S(2, 2), V(7, 5, 11, 9));
    kiln_tensor_free(got);
    /* x[1, 2] -> 6.0 (rank 0) */
    y = kiln_slice(x, 2, (kiln_slice[]){KILN_INDEX(1), KILN_INDEX(2)});
    got = run(ctx, 1, &x, &xt, 1, &y);
    expect(got, KILN_FLOAT32, 0, NULL, V(6));
    kiln_tensor_free(got);
    /* x[:, -1] -> [3, 7, 11]; x[::2, 1:3] -> [[1, 2], [9, 10]] */
    y = kiln_slice(x, 2, (kiln_slice[]){KILN_ALL, KILN_INDEX(-1)});
    got = run(ctx, 1, &x, &xt, 1, &y);
    expect(got, KILN_FLOAT32, 1, S(3), V(3, 7, 11));
    kiln_tensor_free(got);
    y = kiln_slice(x, 2, (kiln_slice[]){KILN_STEP(2), KILN_SLICE(1, 3, 1)});
    got = run(ctx, 1, &x, &xt, 1, &y);
    expect(got, KILN_FLOAT32, 2, S(2, 2), V(1, 2, 9, 10));
    kiln_tensor_free(got);
    /* x[2:1] -> shape (0, 4); x[:, 4:] -> shape (3, 0) */
    y = kiln_slice(x, 1, (kiln_slice[]){KILN_SLICE(2, 1, 1)});
    got = run(ctx, 1, &x, &xt, 1, &y);
    expect(got, KILN_FLOAT32, 2, S(0, 4), V(0));
    kiln_tensor_free(got);
    y = kiln_slice(x, 2, (kiln_slice[]){KILN_ALL, KILN_FROM(4)});
    got = run(ctx, 1, &x, &xt, 1, &y);
    expect(got, KILN_FLOAT32, 2, S(3, 0), V(0));
    kiln_tensor_free(got);
    /* a slice fused into elementwise consumers and a reduction: sum(x[1:] * 2) */
    y = kiln_sum(kiln_mul(kiln_slice(x, 1, (kiln_slice[]){KILN_FROM(1)}), kiln_lit(ctx, 2.0)));
    got = run(ctx, 1, &x, &xt, 1, &y);
    expect(got, KILN_FLOAT32, 0, NULL, V(2 * (4 + 5 + 6 + 7 + 8 + 9 + 10 + 11)));
    kiln_tensor_free(got);
    kiln_tensor_free(xt);
    kiln_ctx_free(ctx);
  }
}
END_TEST

/* the same function called with different dynamic sizes clamps each time */
START_TEST(slice_dynamic_sizes_change) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_INT64, 1, S(D));
  kiln_node *y = kiln_slice(x, 1, (kiln_slice[]){KILN_SLICE(-3, 100, 1)}); /* x[-3:100] */
  kiln_function *f = compile(ctx, 1, &x, 1, &y, 0, NULL, false);
  for (int64_t n = 0; n < 7; n++) {
    kiln_tensor *xt = iota(KILN_INT64, 1, S(n), 0);
    const kiln_tensor *out;
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const[]){xt}, &out), KILN_OK);
    double want[3];
    int64_t lo = n >= 3 ? n - 3 : 0;
    for (int64_t i = lo; i < n; i++)
      want[i - lo] = (double)i;
    expect(out, KILN_INT64, 1, S(n - lo), want);
    kiln_tensor_free(xt);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* every dtype, ranks 1-3, several slices, static and dynamic: JIT = reference */
START_TEST(slice_jit_vs_ref) {
  static const kiln_slice SL[][3] = {
      {KILN_SLICE(1, -1, 1), KILN_STEP(-1), KILN_INDEX(0)},
      {KILN_INDEX(-1), KILN_SLICE(0, 3, 2), KILN_FROM(-2)},
      {KILN_STEP(-2), KILN_INDEX(1), KILN_UPTO(-1)},
      {KILN_SLICE(5, -100, -3), KILN_ALL, KILN_SLICE(1, 2, 1)},
  };
  kiln_dtype dt = (kiln_dtype)(_i % KILN_N_DTYPES);
  for (int dyn = 0; dyn < 2; dyn++) {
    kiln_ctx *ctx = new_ctx();
    kiln_node *x = kiln_input(ctx, "x", dt, 3, dyn ? S(D, 4, D) : S(3, 4, 5)), *outs[12];
    for (int c = 0; c < 4; c++)
      for (int n = 1; n <= 3; n++)
        outs[c * 3 + n - 1] = kiln_slice(x, n, SL[c]);
    kiln_tensor *xt = iota(dt, 3, S(3, 4, 5), -7);
    kiln_tensor_free(run(ctx, 1, &x, &xt, 12, outs));
    kiln_tensor_free(xt);
    kiln_ctx_free(ctx);
  }
}
END_TEST

START_TEST(slice_errors) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 2, S(3, D));
  ck_assert_ptr_null(kiln_slice(x, 1, (kiln_slice[]){KILN_SLICE(0, 3, 0)}));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  msg_has(ctx, "step 0 for axis 0");
  msg_has(ctx, "'x'");
  ck_assert_ptr_null(kiln_slice(x, 3, (kiln_slice[]){KILN_ALL, KILN_ALL, KILN_ALL}));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  ck_assert_ptr_null(kiln_slice(x, 1, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  /* a static index out of range: when built */
  ck_assert_ptr_null(kiln_slice(x, 1, (kiln_slice[]){KILN_INDEX(-4)}));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  msg_has(ctx, "index -4 is out of bounds for axis 0 with size 3");
  msg_has(ctx, THIS_FILE ":");
  /* a dynamic one: at the call, naming the node and its line */
  kiln_node *y = kiln_slice(x, 2, (kiln_slice[]){KILN_ALL, KILN_INDEX(2)});
  int line = __LINE__ - 1;
  kiln_function *f = compile(ctx, 1, &x, 1, &y, 0, NULL, false);
  kiln_tensor *xt = iota(KILN_FLOAT64, 2, S(3, 2), 0);
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const[]){xt}, NULL), KILN_SHAPE);
  msg_has(ctx, "index 2 is out of bounds for axis 1 with size 2");
  msg_has(ctx, "'x'");
  char where[64];
  snprintf(where, sizeof where, "%s:%d", THIS_FILE, line);
  msg_has(ctx, where);
  kiln_tensor_free(xt);
  xt = iota(KILN_FLOAT64, 2, S(3, 3), 0); /* now in range */
  const kiln_tensor *out;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const[]){xt}, &out), KILN_OK);
  expect(out, KILN_FLOAT64, 1, S(3), V(2, 5, 8));
  kiln_tensor_free(xt);
  /* NULL input: quietly NULL; slicing nothing returns x itself */
  ck_assert_ptr_null(kiln_slice(NULL, 0, NULL));
  ck_assert_ptr_eq(kiln_slice(x, 0, NULL), x);
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- take */

START_TEST(take_hand) {
  for (int dyn = 0; dyn < 2; dyn++) {
    kiln_ctx *ctx = new_ctx();
    kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 2, dyn ? S(D, D) : S(3, 4));
    kiln_node *i1 = kiln_input(ctx, "i", KILN_INT32, 1, S(D));
    kiln_node *i2 = kiln_input(ctx, "j", KILN_UINT8, 2, S(2, 2));
    kiln_node *i0 = kiln_input(ctx, "k", KILN_INT64, 0, NULL);
    kiln_tensor *xt = iota(KILN_FLOAT64, 2, S(3, 4), 0);
    kiln_tensor *it = kt_tensor(KILN_INT32, 1, S(4), V(2, -1, 0, 2));
    kiln_tensor *jt = kt_tensor(KILN_UINT8, 2, S(2, 2), V(3, 0, 1, 1));
    kiln_tensor *kt = kt_tensor(KILN_INT64, 0, NULL, V(-3));
    kiln_node *ins[4] = {x, i1, i2, i0};
    kiln_tensor *vals[4] = {xt, it, jt, kt};
    /* np.take(x, [2, -1, 0, 2], 0): rows 2, 2, 0, 2 */
    kiln_node *y = kiln_take(x, i1, 0);
    kiln_tensor *got = run(ctx, 4, ins, vals, 1, &y);
    expect(got, KILN_FLOAT64, 2, S(4, 4), V(8, 9, 10, 11, 8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11));
    kiln_tensor_free(got);
    /* np.take(x, [[3, 0], [1, 1]], axis=-1): shape (3, 2, 2) */
    y = kiln_take(x, i2, -1);
    got = run(ctx, 4, ins, vals, 1, &y);
    expect(got, KILN_FLOAT64, 3, S(3, 2, 2), V(3, 0, 1, 1, 7, 4, 5, 5, 11, 8, 9, 9));
    kiln_tensor_free(got);
    /* a scalar index drops the axis: x[-3] along 0 is row 0; along 1 column 1 */
    y = kiln_take(x, i0, 0);
    got = run(ctx, 4, ins, vals, 1, &y);
    expect(got, KILN_FLOAT64, 1, S(4), V(0, 1, 2, 3));
    kiln_tensor_free(got);
    y = kiln_take(x, i0, 1);
    got = run(ctx, 4, ins, vals, 1, &y);
    expect(got, KILN_FLOAT64, 1, S(3), V(1, 5, 9));
    kiln_tensor_free(got);
    /* an empty index vector: shape (0, 4) */
    kiln_tensor *et = kt_tensor(KILN_INT32, 1, S(0), V(0));
    vals[1] = et;
    y = kiln_take(x, i1, 0);
    got = run(ctx, 4, ins, vals, 1, &y);
    expect(got, KILN_FLOAT64, 2, S(0, 4), V(0));
    kiln_tensor_free(got);
    kiln_tensor_free(et);
    for (int k = 0; k < 4; k++)
      kiln_tensor_free(k == 1 ? it : vals[k]);
    kiln_ctx_free(ctx);
  }
}
END_TEST

START_TEST(take_jit_vs_ref) {
  kiln_dtype dt = (kiln_dtype)(_i % KILN_N_DTYPES);
  for (int dyn = 0; dyn < 2; dyn++) {
    kiln_ctx *ctx = new_ctx();
    kiln_node *x = kiln_input(ctx, "x", dt, 3, dyn ? S(D, 3, D) : S(2, 3, 4));
    kiln_node *ix = kiln_input(ctx, "i", KILN_INT16, 2, S(D, 3));
    kiln_node *ins[2] = {x, ix}, *outs[12];
    /* in range for every axis (sizes 2, 3, 4): -2..1 */
    kiln_tensor *vals[2] = {iota(dt, 3, S(2, 3, 4), -5),
                            kt_tensor(KILN_INT16, 2, S(2, 3), V(1, -2, 0, 0, -1, 1))};
    for (int axis = -3; axis < 3; axis++) {
      outs[axis + 3] = kiln_take(x, ix, axis);
      outs[axis + 9] = kiln_sum(kiln_cast(kiln_take(x, ix, axis), KILN_FLOAT64));
    }
    kiln_tensor_free(run(ctx, 2, ins, vals, 12, outs));
    kiln_tensor_free(vals[0]);
    kiln_tensor_free(vals[1]);
    kiln_ctx_free(ctx);
  }
}
END_TEST

START_TEST(take_errors) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 2, S(3, 2), V(1, 2, 3, 4, 5, 6));
  kiln_node *ix = kiln_input(ctx, "idx", KILN_INT64, 1, S(D));
  kiln_node *fx = kiln_input(ctx, "fidx", KILN_FLOAT64, 1, S(D));
  ck_assert_ptr_null(kiln_take(W, fx, 0));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  msg_has(ctx, "indices must be integers");
  msg_has(ctx, "'fidx'");
  ck_assert_ptr_null(kiln_take(W, ix, 2));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  msg_has(ctx, "axis 2 is out of range for rank 2");
  /* constant indices are checked when built */
  kiln_node *ci = cst(ctx, KILN_INT32, 1, S(2), V(1, 3));
  ck_assert_ptr_null(kiln_take(W, ci, 0));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  msg_has(ctx, "index 3 is out of bounds for axis 0 with size 3");
  /* at call time: the step stops at the bad index; W keeps its bits even
  ** though the update would otherwise be written in place */
  kiln_node *e = kiln_take(W, ix, 0);
  int line = __LINE__ - 1;
  kiln_node *cost = kiln_sum(kiln_sqr(e));
  kiln_node *g;
  ck_assert_int_eq(kiln_grad(cost, 1, &W, &g, 0), KILN_OK);
  kiln_update up = {W, kiln_sub(W, kiln_mul(kiln_lit(ctx, 0.5), g))};
  for (int no_opt = 0; no_opt < 2; no_opt++) {
    kiln_function *f = compile(ctx, 1, &ix, 1, &cost, 1, &up, no_opt);
    double before[6], after[6];
    ck_assert_int_eq(kiln_shared_get(W, before, sizeof before), KILN_OK);
    for (int bad = 0; bad < 3; bad++) {
      static const double BAD[3] = {3, -4, 100};
      kiln_tensor *it = kt_tensor(KILN_INT64, 1, S(3), V(0, -1, BAD[bad]));
      ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const[]){it}, NULL), KILN_SHAPE);
      char want[128], where[64];
      snprintf(want, sizeof want, "index %g is out of bounds for axis 0 with size 3", BAD[bad]);
      msg_has(ctx, want);
      msg_has(ctx, "'idx'");
      snprintf(where, sizeof where, "%s:%d", THIS_FILE, line);
      msg_has(ctx, where);
      ck_assert_int_eq(kiln_shared_get(W, after, sizeof after), KILN_OK);
      ck_assert(memcmp(before, after, sizeof before) == 0);
      kiln_tensor_free(it);
    }
    /* and the reference evaluator fails alike */
    kiln_tensor *it = kt_tensor(KILN_INT64, 1, S(1), V(7));
    kiln_tensor *r;
    ck_assert_int_eq(kl_ref_run(ctx, 1, &ix, (const kiln_tensor *const[]){it}, 1, &e, &r),
                     KILN_SHAPE);
    msg_has(ctx, "index 7 is out of bounds");
    kiln_tensor_free(it);
    /* a good call then works and updates W */
    it = kt_tensor(KILN_INT64, 1, S(1), V(-3));
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const[]){it}, NULL), KILN_OK);
    ck_assert_int_eq(kiln_shared_get(W, after, sizeof after), KILN_OK);
    /* row 0: w - 0.5 * 2w = 0 */
    ck_assert(after[0] == 0 && after[1] == 0 && after[2] == before[2]);
    kiln_tensor_free(it);
    kiln_tensor *w0 = kiln_tensor_new(KILN_FLOAT64, 2, S(3, 2), before);
    ck_assert_int_eq(kiln_shared_set(W, w0), KILN_OK);
    kiln_tensor_free(w0);
    kiln_function_free(f);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------- one_hot */

START_TEST(one_hot_hand) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *y = kiln_input(ctx, "y", KILN_INT32, 1, S(D));
  kiln_node *y2 = kiln_input(ctx, "y2", KILN_UINT8, 2, S(2, 2));
  kiln_node *ins[2] = {y, y2};
  kiln_tensor *vals[2] = {kt_tensor(KILN_INT32, 1, S(3), V(2, 0, 2)),
                          kt_tensor(KILN_UINT8, 2, S(2, 2), V(1, 0, 0, 1))};
  kiln_node *h = kiln_one_hot(y, 4, KILN_FLOAT64);
  kiln_tensor *got = run(ctx, 2, ins, vals, 1, &h);
  expect(got, KILN_FLOAT64, 2, S(3, 4), V(0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0));
  kiln_tensor_free(got);
  h = kiln_one_hot(y2, 2, KILN_BOOL);
  got = run(ctx, 2, ins, vals, 1, &h);
  expect(got, KILN_BOOL, 3, S(2, 2, 2), V(0, 1, 1, 0, 1, 0, 0, 1));
  kiln_tensor_free(got);
  /* crossentropy against one-hot targets: -log_softmax at the label */
  kiln_node *z = cst(ctx, KILN_FLOAT32, 2, S(3, 4), V(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
  kiln_node *ce = kiln_crossentropy(z, kiln_one_hot(y, 4, KILN_FLOAT32));
  got = run(ctx, 2, ins, vals, 1, &ce);
  float l4 = logf(4.0f);
  expect(got, KILN_FLOAT32, 1, S(3), V(l4, l4, l4));
  kiln_tensor_free(got);
  kiln_tensor_free(vals[0]);
  kiln_tensor_free(vals[1]);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(one_hot_errors) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *y = kiln_input(ctx, "labels", KILN_INT64, 1, S(D));
  kiln_node *fy = kiln_input(ctx, "flabels", KILN_FLOAT32, 1, S(D));
  ck_assert_ptr_null(kiln_one_hot(fy, 3, KILN_FLOAT64));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  msg_has(ctx, "labels must be integers");
  ck_assert_ptr_null(kiln_one_hot(y, 0, KILN_FLOAT64));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  msg_has(ctx, "n_classes is 0");
  ck_assert_ptr_null(kiln_one_hot(y, 3, (kiln_dtype)99));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_node *h = kiln_one_hot(y, 3, KILN_FLOAT64);
  int line = __LINE__ - 1;
  kiln_function *f = compile(ctx, 1, &y, 1, &h, 0, NULL, false);
  static const double BAD[2] = {3, -1}; /* past the end; negative (not wrapped) */
  for (int b = 0; b < 2; b++) {
    kiln_tensor *t = kt_tensor(KILN_INT64, 1, S(2), V(0, BAD[b]));
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const[]){t}, NULL), KILN_SHAPE);
    char want[64], where[64];
    snprintf(want, sizeof want, "label %g is outside [0, 3)", BAD[b]);
    msg_has(ctx, want);
    msg_has(ctx, "'labels'");
    snprintf(where, sizeof where, "%s:%d", THIS_FILE, line);
    msg_has(ctx, where);
    kiln_tensor *r;
    ck_assert_int_eq(kl_ref_run(ctx, 1, &y, (const kiln_tensor *const[]){t}, 1, &h, &r),
                     KILN_SHAPE);
    msg_has(ctx, want);
    kiln_tensor_free(t);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------- concatenate, stack */

START_TEST(concat_hand) {
  for (int dyn = 0; dyn < 2; dyn++) {
    kiln_ctx *ctx = new_ctx();
    kiln_node *a = kiln_input(ctx, "a", KILN_INT32, 2, dyn ? S(D, D) : S(2, 2));
    kiln_node *b = kiln_input(ctx, "b", KILN_FLOAT32, 2, dyn ? S(D, D) : S(1, 2));
    kiln_node *c = kiln_input(ctx, "c", KILN_INT8, 2, S(2, D));
    kiln_node *ins[3] = {a, b, c};
    kiln_tensor *vals[3] = {kt_tensor(KILN_INT32, 2, S(2, 2), V(1, 2, 3, 4)),
                            kt_tensor(KILN_FLOAT32, 2, S(1, 2), V(0.5, 6)),
                            kt_tensor(KILN_INT8, 2, S(2, 1), V(-1, -2))};
    /* np.concatenate([a, b]): int32 with float32 is float64 */
    kiln_node *y = kiln_concatenate(2, (kiln_node *[]){a, b}, 0);
    kiln_tensor *got = run(ctx, 3, ins, vals, 1, &y);
    expect(got, KILN_FLOAT64, 2, S(3, 2), V(1, 2, 3, 4, 0.5, 6));
    kiln_tensor_free(got);
    /* np.concatenate([c, a, c], axis=-1) -> int32 (2, 4) */
    y = kiln_concatenate(3, (kiln_node *[]){c, a, c}, -1);
    got = run(ctx, 3, ins, vals, 1, &y);
    expect(got, KILN_INT32, 2, S(2, 4), V(-1, 1, 2, -1, -2, 3, 4, -2));
    kiln_tensor_free(got);
    /* np.stack([a, a * 10, a], axis=1) -> (2, 3, 2); axis=-1 -> (2, 2, 3) */
    kiln_node *a10 = kiln_mul(a, kiln_lit(ctx, 10));
    y = kiln_stack(3, (kiln_node *[]){a, a10, a}, 1);
    got = run(ctx, 3, ins, vals, 1, &y);
    expect(got, KILN_INT32, 3, S(2, 3, 2), V(1, 2, 10, 20, 1, 2, 3, 4, 30, 40, 3, 4));
    kiln_tensor_free(got);
    y = kiln_stack(3, (kiln_node *[]){a, a10, a}, -1);
    got = run(ctx, 3, ins, vals, 1, &y);
    expect(got, KILN_INT32, 3, S(2, 2, 3), V(1, 10, 1, 2, 20, 2, 3, 30, 3, 4, 40, 4));
    kiln_tensor_free(got);
    /* stack of one, and of scalars */
    y = kiln_stack(1, &b, 0);
    got = run(ctx, 3, ins, vals, 1, &y);
    expect(got, KILN_FLOAT32, 3, S(1, 1, 2), V(0.5, 6));
    kiln_tensor_free(got);
    kiln_node *s1 = kiln_sum(a), *s2 = kiln_max(a);
    y = kiln_stack(3, (kiln_node *[]){s1, s2, s1}, 0);
    got = run(ctx, 3, ins, vals, 1, &y);
    expect(got, KILN_INT64, 1, S(3), V(10, 4, 10));
    kiln_tensor_free(got);
    for (int k = 0; k < 3; k++)
      kiln_tensor_free(vals[k]);
    kiln_ctx_free(ctx);
  }
}
END_TEST

START_TEST(concat_jit_vs_ref) {
  kiln_dtype dt = (kiln_dtype)(_i % KILN_N_DTYPES);
  for (int dyn = 0; dyn < 2; dyn++) {
    kiln_ctx *ctx = new_ctx();
    kiln_node *x = kiln_input(ctx, "x", dt, 3, dyn ? S(D, 3, D) : S(2, 3, 4)), *outs[12];
    kiln_tensor *ct = iota(dt, 3, S(2, 3, 4), 3);
    kiln_node *c = kiln_const(ctx, dt, 3, S(2, 3, 4), kiln_tensor_data(ct));
    kiln_tensor_free(ct);
    kiln_node *parts[3] = {x, kiln_slice(x, 1, (kiln_slice[]){KILN_STEP(-1)}), c};
    for (int axis = -3; axis < 3; axis++) {
      outs[axis + 3] = kiln_concatenate(3, parts, axis);
      outs[axis + 9] = kiln_stack(3, parts, axis);
    }
    kiln_tensor *xt = iota(dt, 3, S(2, 3, 4), -9);
    kiln_tensor_free(run(ctx, 1, &x, &xt, 12, outs));
    kiln_tensor_free(xt);
    kiln_ctx_free(ctx);
  }
}
END_TEST

START_TEST(concat_errors) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *a = kiln_input(ctx, "a", KILN_FLOAT64, 2, S(2, 3));
  kiln_node *b = kiln_input(ctx, "b", KILN_FLOAT64, 2, S(2, 4));
  kiln_node *v = kiln_input(ctx, "v", KILN_FLOAT64, 1, S(3));
  kiln_node *d = kiln_input(ctx, "d", KILN_FLOAT64, 2, S(D, D));
  ck_assert_ptr_null(kiln_concatenate(2, (kiln_node *[]){a, b}, 0));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  msg_has(ctx, "sizes 3 and 4 differ along axis 1");
  msg_has(ctx, "'a'");
  msg_has(ctx, "'b'");
  ck_assert_ptr_nonnull(kiln_concatenate(2, (kiln_node *[]){a, b}, 1));
  ck_assert_ptr_null(kiln_concatenate(2, (kiln_node *[]){a, v}, 0));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  ck_assert_ptr_null(kiln_stack(2, (kiln_node *[]){a, b}, 0));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  ck_assert_ptr_null(kiln_stack(2, (kiln_node *[]){a, a}, 3));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  msg_has(ctx, "axis 3 is out of range for rank 3");
  ck_assert_ptr_null(kiln_concatenate(0, (kiln_node *[]){a}, 0));
  ck_assert_ptr_null(kiln_concatenate(2, (kiln_node *[]){a, NULL}, 0));
  /* dynamic sizes: at the call */
  kiln_node *y = kiln_concatenate(2, (kiln_node *[]){a, d}, 0);
  kiln_function *f = compile(ctx, 2, (kiln_node *[]){a, d}, 1, &y, 0, NULL, false);
  kiln_tensor *at = iota(KILN_FLOAT64, 2, S(2, 3), 0), *dt = iota(KILN_FLOAT64, 2, S(1, 2), 0);
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const[]){at, dt}, NULL), KILN_SHAPE);
  msg_has(ctx, "differ off the joined axis");
  msg_has(ctx, "'d'");
  kiln_tensor_free(at);
  kiln_tensor_free(dt);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------ gradients */

/* d/dx sum(exp(0.7 out(x))) checked against central differences of the
** JIT's cost, and the JIT's gradient against the reference's bit for bit. */
typedef kiln_node *(*build_fn)(kiln_node *x, kiln_node *aux);

static void fd_check(const char *what, int rank, const int64_t *shape, bool dyn, build_fn build,
                     kiln_node *(*make_aux)(kiln_ctx *), const kiln_tensor *aux_val) {
  kiln_ctx *ctx = new_ctx();
  int64_t dims[KILN_MAX_RANK], n = 1;
  for (int d = 0; d < rank; d++) {
    dims[d] = dyn ? D : shape[d];
    n *= shape[d];
  }
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, rank, dims);
  kiln_node *aux = make_aux ? make_aux(ctx) : NULL;
  kiln_node *out = build(x, aux);
  ck_assert_msg(out != NULL, "%s: %s", what, kiln_errmsg(ctx));
  /* exp(0.7 out): a gradient that differs element by element, so a
  ** gradient sent to the wrong place shows */
  kiln_node *cost = kiln_sum(kiln_exp(kiln_mul(out, kiln_lit(ctx, 0.7))));
  kiln_node *g;
  ck_assert_msg(kiln_grad(cost, 1, &x, &g, 0) == KILN_OK, "%s: grad: %s", what, kiln_errmsg(ctx));
  kiln_node *ins[2] = {x, aux};
  int n_in = aux ? 2 : 1;
  double *xv = malloc((size_t)n * sizeof *xv);
  uint64_t seed = 99;
  for (int64_t i = 0; i < n; i++)
    xv[i] = 2 * kt_rand(&seed) - 1;
  kiln_tensor *vals[2] = {kt_tensor(KILN_FLOAT64, rank, shape, xv), (kiln_tensor *)aux_val};
  kiln_node *outs[2] = {cost, g};
  kiln_tensor_free(run(ctx, n_in, ins, vals, 2, outs)); /* JIT = reference */
  kiln_function *f = compile(ctx, n_in, ins, 2, outs, 0, NULL, false);
  const kiln_tensor *res[2];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)vals, res), KILN_OK);
  kiln_tensor *grad = kiln_tensor_new(KILN_FLOAT64, rank, shape, kiln_tensor_data(res[1]));
  const double h = 1e-5;
  double *p = kiln_tensor_data(vals[0]);
  for (int64_t i = 0; i < n; i++) {
    double c[2];
    for (int sgn = 0; sgn < 2; sgn++) {
      p[i] = xv[i] + (sgn ? -h : h);
      ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)vals, res), KILN_OK);
      c[sgn] = *(const double *)kiln_tensor_data(res[0]);
    }
    p[i] = xv[i];
    double fd = (c[0] - c[1]) / (2 * h), an = ((const double *)kiln_tensor_data(grad))[i];
    ck_assert_msg(fabs(fd - an) <= 1e-7 * (1 + fabs(fd)), "%s: d/dx[%lld]: %.12g, fd %.12g", what,
                  (long long)i, an, fd);
  }
  kiln_tensor_free(grad);
  kiln_tensor_free(vals[0]);
  free(xv);
  kiln_ctx_free(ctx);
}

static kiln_node *g_slice_steps(kiln_node *x, kiln_node *aux) {
  return kiln_slice(x, 2, (kiln_slice[]){KILN_STEP(-2), KILN_SLICE(-4, 5, 2)});
}
static kiln_node *g_slice_index(kiln_node *x, kiln_node *aux) {
  return kiln_slice(x, 2, (kiln_slice[]){KILN_INDEX(-1), KILN_FROM(1)});
}
static kiln_node *g_slice_overlap(kiln_node *x, kiln_node *aux) { /* x[:3] + x[1:]: both paths */
  kiln_node *a = kiln_slice(x, 1, (kiln_slice[]){KILN_UPTO(3)});
  kiln_node *b = kiln_slice(x, 1, (kiln_slice[]){KILN_FROM(1)});
  return kiln_mul(a, b);
}
static kiln_node *g_take0(kiln_node *x, kiln_node *aux) { return kiln_take(x, aux, 0); }
static kiln_node *g_take1(kiln_node *x, kiln_node *aux) { return kiln_take(x, aux, -1); }
static kiln_node *g_concat(kiln_node *x, kiln_node *aux) {
  kiln_node *r = kiln_slice(x, 1, (kiln_slice[]){KILN_STEP(-1)});
  return kiln_concatenate(3, (kiln_node *[]){x, r, kiln_sqr(x)}, 1);
}
static kiln_node *g_stack(kiln_node *x, kiln_node *aux) {
  return kiln_stack(3, (kiln_node *[]){x, kiln_sqr(x), x}, -1);
}
static kiln_node *g_stack1(kiln_node *x, kiln_node *aux) { return kiln_stack(1, &x, 1); }
static kiln_node *idx_input(kiln_ctx *ctx) { return kiln_input(ctx, "i", KILN_INT32, 1, S(D)); }

START_TEST(grad_finite_differences) {
  kiln_tensor *it = kt_tensor(KILN_INT32, 1, S(5), V(3, 0, 3, -1, 1)); /* repeats */
  for (int dyn = 0; dyn < 2; dyn++) {
    fd_check("slice steps", 2, S(4, 5), dyn, g_slice_steps, NULL, NULL);
    fd_check("slice index", 2, S(4, 5), dyn, g_slice_index, NULL, NULL);
    fd_check("slice overlap", 2, S(4, 5), dyn, g_slice_overlap, NULL, NULL);
    fd_check("take axis 0", 2, S(4, 5), dyn, g_take0, idx_input, it);
    fd_check("take axis -1", 2, S(3, 4), dyn, g_take1, idx_input, it);
    fd_check("concatenate", 2, S(3, 4), dyn, g_concat, NULL, NULL);
    fd_check("stack", 2, S(3, 4), dyn, g_stack, NULL, NULL);
    fd_check("stack of one", 2, S(3, 4), dyn, g_stack1, NULL, NULL);
  }
  kiln_tensor_free(it);
}
END_TEST

/* hand values: repeated indices accumulate; the slice's gradient is zero
** outside the slice; second derivatives through inc_slice and inc_take */
START_TEST(grad_hand) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *W = kiln_input(ctx, "W", KILN_FLOAT64, 2, S(3, 2));
  kiln_node *ix = cst(ctx, KILN_INT64, 1, S(4), V(2, 0, 2, -1));
  kiln_node *g[2];
  ck_assert_int_eq(kiln_grad(kiln_sum(kiln_take(W, ix, 0)), 1, &W, g, 0), KILN_OK);
  kiln_node *s = kiln_slice(W, 2, (kiln_slice[]){KILN_FROM(1), KILN_INDEX(0)});
  ck_assert_int_eq(kiln_grad(kiln_sum(kiln_mul(s, kiln_lit(ctx, 5.0))), 1, &W, g + 1, 0), KILN_OK);
  kiln_tensor *wt = iota(KILN_FLOAT64, 2, S(3, 2), 1), *got = run(ctx, 1, &W, &wt, 1, g);
  expect(got, KILN_FLOAT64, 2, S(3, 2), V(1, 1, 0, 0, 3, 3));
  kiln_tensor_free(got);
  got = run(ctx, 1, &W, &wt, 1, g + 1);
  expect(got, KILN_FLOAT64, 2, S(3, 2), V(0, 0, 5, 0, 5, 0));
  kiln_tensor_free(got);
  /* d/dW sum(grad_W(sum(take(W, ix)^2)) * W): the gradient of inc_take is take */
  kiln_node *h;
  ck_assert_int_eq(kiln_grad(kiln_sum(kiln_sqr(kiln_take(W, ix, 0))), 1, &W, &h, 0), KILN_OK);
  kiln_node *h2;
  ck_assert_int_eq(kiln_grad(kiln_sum(kiln_mul(h, W)), 1, &W, &h2, 0), KILN_OK);
  got = run(ctx, 1, &W, &wt, 1, &h2); /* 2 * (2 * count * W): counts 1, 0, 3 */
  expect(got, KILN_FLOAT64, 2, S(3, 2), V(4, 8, 0, 0, 60, 72));
  kiln_tensor_free(got);
  /* one_hot of integer labels: no gradient path, the cost sees none */
  kiln_node *y = kiln_input(ctx, "y", KILN_INT64, 1, S(D));
  kiln_node *z = kiln_input(ctx, "z", KILN_FLOAT64, 2, S(D, 3));
  kiln_node *ce = kiln_sum(kiln_crossentropy(z, kiln_one_hot(y, 3, KILN_FLOAT64)));
  kiln_node *gz;
  ck_assert_int_eq(kiln_grad(ce, 1, &z, &gz, 0), KILN_OK);
  kiln_tensor *yt = kt_tensor(KILN_INT64, 1, S(2), V(1, 2));
  kiln_tensor *zt = kt_tensor(KILN_FLOAT64, 2, S(2, 3), V(0, 0, 0, 0, 0, 0));
  got = run(ctx, 2, (kiln_node *[]){y, z}, (kiln_tensor *[]){yt, zt}, 1, &gz);
  double t = 1.0 / 3.0; /* softmax - onehot */
  expect(got, KILN_FLOAT64, 2, S(2, 3), V(t, t - 1, t, t, t, t - 1));
  kiln_tensor_free(got);
  kiln_tensor_free(yt);
  kiln_tensor_free(zt);
  kiln_tensor_free(wt);
  kiln_ctx_free(ctx);
}
END_TEST

/* --------------------------------------------------- embedding model */

/* W (V, E) shared; cost = sum((W[idx] - T)^2); W <- W - 0.1 dW, held
** bit for bit to the same computation in plain C (sums in index order from
** +0.0, repeated indices accumulating in order). */
START_TEST(embedding_sgd) {
  enum { NV = 4, NE = 3 }; /* vocabulary, embedding size */
  double w[NV][NE];
  for (int k = 0; k < NV; k++)
    for (int d = 0; d < (int)NE; d++)
      w[k][d] = 0.1 * k - 0.05 * d + 0.3;
  kiln_ctx *ctx = new_ctx();
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 2, S(NV, NE), &w[0][0]);
  kiln_node *idx = kiln_input(ctx, "idx", KILN_INT64, 1, S(D));
  kiln_node *T = kiln_input(ctx, "T", KILN_FLOAT64, 2, S(D, NE));
  kiln_node *cost = kiln_sum(kiln_sqr(kiln_sub(kiln_take(W, idx, 0), T)));
  kiln_node *gW;
  ck_assert_int_eq(kiln_grad(cost, 1, &W, &gW, 0), KILN_OK);
  kiln_update up = {W, kiln_sub(W, kiln_mul(kiln_lit(ctx, 0.1), gW))};
  kiln_function *f = compile(ctx, 2, (kiln_node *[]){idx, T}, 1, &cost, 1, &up, false);
  static const int64_t IDX[3][5] = {{1, 3, 1, -1, 0}, {2, 2, 2, 0, 1}, {0, 1, 2, 3, -4}};
  for (int step = 0; step < 3; step++) {
    int n = 5;
    double tv[5][NE], dw[NV][NE] = {{0}}, c = 0.0;
    for (int i = 0; i < n; i++)
      for (int d = 0; d < (int)NE; d++)
        tv[i][d] = 0.25 * (i - d) + 0.125 * step;
    for (int i = 0; i < n; i++) {
      int64_t k = IDX[step][i] < 0 ? IDX[step][i] + NV : IDX[step][i];
      for (int d = 0; d < (int)NE; d++) {
        double diff = w[k][d] - tv[i][d];
        c = c + diff * diff;
        dw[k][d] = dw[k][d] + diff * 2.0;
      }
    }
    for (int k = 0; k < NV; k++)
      for (int d = 0; d < (int)NE; d++)
        w[k][d] = w[k][d] - dw[k][d] * 0.1;
    double iv[5];
    for (int i = 0; i < n; i++)
      iv[i] = (double)IDX[step][i];
    kiln_tensor *it = kt_tensor(KILN_INT64, 1, S(n), iv);
    kiln_tensor *tt = kt_tensor(KILN_FLOAT64, 2, S(n, NE), &tv[0][0]);
    const kiln_tensor *out;
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const[]){it, tt}, &out), KILN_OK);
    ck_assert_msg(*(const double *)kiln_tensor_data(out) == c, "step %d: cost %.17g, want %.17g",
                  step, *(const double *)kiln_tensor_data(out), c);
    double got[NV][NE];
    ck_assert_int_eq(kiln_shared_get(W, got, sizeof got), KILN_OK);
    for (int k = 0; k < NV; k++)
      for (int d = 0; d < (int)NE; d++)
        ck_assert_msg(got[k][d] == w[k][d], "step %d: W[%d][%d] %.17g, want %.17g", step, k, d,
                      got[k][d], w[k][d]);
    kiln_tensor_free(it);
    kiln_tensor_free(tt);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------- dumps and CSE */

static int count(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

START_TEST(dump_and_cse) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 2, S(D, 4));
  kiln_node *y = kiln_input(ctx, "y", KILN_INT32, 1, S(D));
  kiln_node *a = kiln_slice(x, 2, (kiln_slice[]){KILN_FROM(1), KILN_STEP(-2)});
  kiln_node *b = kiln_slice(x, 2, (kiln_slice[]){KILN_FROM(1), KILN_STEP(-2)}); /* = a */
  kiln_node *c = kiln_slice(x, 2, (kiln_slice[]){KILN_FROM(2), KILN_STEP(-2)});
  kiln_node *t = kiln_take(x, y, 1), *t2 = kiln_take(x, y, 1);
  kiln_node *h = kiln_one_hot(y, 4, KILN_FLOAT64);
  kiln_node *j = kiln_concatenate(2, (kiln_node *[]){h, h}, 1);
  kiln_node *outs[5] = {kiln_add(a, b), c, kiln_add(t, t2), j,
                        kiln_slice(x, 2, (kiln_slice[]){KILN_INDEX(-1), KILN_SLICE(0, 3, 2)})};
  kiln_function *f = compile(ctx, 2, (kiln_node *[]){x, y}, 5, outs, 0, NULL, false);
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  ck_assert_int_eq(kiln_function_dump_named(f, "opt", m), KILN_OK);
  fclose(m);
  ck_assert_msg(count(text, "slice{1:,::-2}(") == 1, "%s", text); /* a and b merged */
  ck_assert_msg(count(text, "slice{2:,::-2}(") == 1, "%s", text);
  ck_assert_msg(count(text, "slice{-1,0:3:2}(") == 1, "%s", text);
  ck_assert_msg(count(text, "take{axis=1}(") == 1, "%s", text);
  ck_assert_msg(count(text, "one_hot{n=4}(") == 1, "%s", text);
  ck_assert_msg(count(text, "concatenate{axis=1}(") == 1, "%s", text);
  free(text);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------- allocation failures */

static kiln_status alloc_round(void) {
  kiln_ctx *ctx = kiln_ctx_new();
  if (!ctx) return KILN_NOMEM;
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 2, S(4, 3), NULL);
  kiln_node *idx = kiln_input(ctx, "idx", KILN_INT64, 1, S(D));
  kiln_node *e = kiln_take(W, idx, 0);
  kiln_node *s = kiln_slice(e, 2, (kiln_slice[]){KILN_STEP(-1), KILN_FROM(1)});
  kiln_node *cat = kiln_stack(2, (kiln_node *[]){s, s}, 0);
  kiln_node *oh = kiln_one_hot(idx, 4, KILN_FLOAT64);
  kiln_node *cost = cat && oh ? kiln_add(kiln_sum(cat), kiln_sum(oh)) : NULL;
  kiln_node *g = NULL;
  kiln_status st = cost ? kiln_grad(cost, 1, &W, &g, 0) : kiln_errcode(ctx);
  kiln_update up = {W, g ? kiln_sub(W, g) : NULL};
  kiln_function *f = NULL;
  if (st == KILN_OK) {
    f = kiln_function_new(ctx, "f", 1, &idx, 1, &cost, 1, &up);
    st = f ? KILN_OK : kiln_errcode(ctx);
  }
  if (st == KILN_OK) {
    kiln_tensor *it = kiln_tensor_new(KILN_INT64, 1, S(3), (int64_t[]){1, 3, 1});
    st = it ? kiln_call(f, (const kiln_tensor *const[]){it}, NULL) : KILN_NOMEM;
    kiln_tensor_free(it);
  }
  kiln_ctx_free(ctx);
  return st;
}

START_TEST(allocation_failures) {
  ck_assert_int_eq(alloc_round(), KILN_OK);
  for (long k = 1; k < 5000; k++) {
    long n0 = kl_mem_count();
    kl_mem_fail_at(k);
    kiln_status st = alloc_round();
    long used = kl_mem_count() - n0;
    kl_mem_fail_at(0);
    if (st == KILN_OK) { /* the last one may be the call's optional cache of input shapes */
      ck_assert_msg(used <= k, "succeeded although allocation %ld of %ld failed", k, used);
      return;
    }
    ck_assert_msg(st == KILN_NOMEM, "allocation %ld failed: %s", k, kiln_status_str(st));
  }
  ck_abort_msg("never succeeded");
}
END_TEST

int main(void) {
  Suite *s = suite_create("index");
  TCase *tc = tcase_create("index");
  tcase_set_timeout(tc, 600);
  tcase_add_checked_fixture(tc, NULL, teardown);
  tcase_add_loop_test(tc, slice_1d_numpy_rules, 0, 4);
  tcase_add_test(tc, slice_2d_hand);
  tcase_add_test(tc, slice_dynamic_sizes_change);
  tcase_add_loop_test(tc, slice_jit_vs_ref, 0, KILN_N_DTYPES);
  tcase_add_test(tc, slice_errors);
  tcase_add_test(tc, take_hand);
  tcase_add_loop_test(tc, take_jit_vs_ref, 0, KILN_N_DTYPES);
  tcase_add_test(tc, take_errors);
  tcase_add_test(tc, one_hot_hand);
  tcase_add_test(tc, one_hot_errors);
  tcase_add_test(tc, concat_hand);
  tcase_add_loop_test(tc, concat_jit_vs_ref, 0, KILN_N_DTYPES);
  tcase_add_test(tc, concat_errors);
  tcase_add_test(tc, grad_finite_differences);
  tcase_add_test(tc, grad_hand);
  tcase_add_test(tc, embedding_sgd);
  tcase_add_test(tc, dump_and_cse);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
