/*
** test_shape.c -- the shape ops: dimshuffle, transpose, reshape, flatten.
**
**  - values against numpy's semantics worked out here by index arithmetic
**    (out[i][j][0] = x[j][i], C-order flat copies), for every dtype, with
**    empty dimensions and rank 0;
**  - the JIT against the reference evaluator (kl_ref_run) bit for bit, with
**    and without optimization, static and dynamic shapes (including dynamic
**    sizes of 1: the general step where they stretch, else the fast one), shape ops fused
**    into elementwise kernels and reductions, as outputs, and as updates;
**  - gradients against central finite differences in float64;
**  - errors: bad patterns, repeated axes, dropping a non-1 axis, two -1,
**    static and dynamic size mismatches (the call commits nothing), with
**    the messages' contents; an allocation-failure loop;
**  - dumps: a transpose feeding an elementwise op is fused (no copy
**    kernel); CSE of equal shape ops.
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
#define X KILN_NEWAXIS
#define A(...) ((int[]){__VA_ARGS__})
#define S(...) ((int64_t[]){__VA_ARGS__})
#define MAXOUT 8
#define THIS_FILE "test_shape.c"

static kiln_ctx *new_ctx(void) {
  kiln_ctx *ctx = kiln_ctx_new();
  ck_assert_ptr_nonnull(ctx);
  return ctx;
}

static bool is_float(int dt) { return dt == KILN_FLOAT32 || dt == KILN_FLOAT64; }

/* The context's message must contain every one of the strings. */
#define MSG_HAS(ctx, ...) msg_has((ctx), (const char *[]){__VA_ARGS__, NULL})
static void msg_has(const kiln_ctx *ctx, const char **needles) {
  const char *m = kiln_errmsg(ctx);
  ck_assert_ptr_nonnull(m);
  for (int i = 0; needles[i]; i++)
    ck_assert_msg(strstr(m, needles[i]) != NULL, "message lacks \"%s\": %s", needles[i], m);
}

/* x[i] = i * step + off, converted to dt (bool: i % 3 != 0). */
static kiln_tensor *ramp(kiln_dtype dt, int rank, const int64_t *shape, double step, double off) {
  kiln_tensor *t = kiln_tensor_new(dt, rank, shape, NULL);
  ck_assert_ptr_nonnull(t);
  for (int64_t i = 0; i < kiln_tensor_size(t); i++) {
    double v = dt == KILN_BOOL ? (double)(i % 3 != 0) : (double)i * step + off;
    kl_convert(dt, kiln_tensor_data(t), i, KILN_FLOAT64, &v, 0);
  }
  return t;
}

/* Random values of dt: floats with specials (NaN, +-inf, -0.0), integers
** across their range. */
static kiln_tensor *gen(kiln_dtype dt, int rank, const int64_t *shape, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 99;
  kiln_tensor *t = kiln_tensor_new(dt, rank, shape, NULL);
  ck_assert_ptr_nonnull(t);
  static const double spec[] = {NAN, INFINITY, -INFINITY, -0.0, 0.0, 1e300, 5e-324};
  for (int64_t i = 0; i < kiln_tensor_size(t); i++) {
    double u = kt_rand(&s), v;
    if (is_float(dt) && u < 0.2)
      v = spec[(int)(kt_rand(&s) * 7)];
    else if (is_float(dt))
      v = (kt_rand(&s) - 0.5) * 200.0;
    else
      v = floor(kt_rand(&s) * 256.0) - 128.0;
    kl_convert(dt, kiln_tensor_data(t), i, KILN_FLOAT64, &v, 0);
  }
  return t;
}

static kiln_function *compile(kiln_ctx *ctx, const char *what, int n_in, kiln_node *const *ins,
                              int n_out, kiln_node *const *outs, bool no_opt) {
  for (int k = 0; k < n_out; k++)
    ck_assert_msg(outs[k] != NULL, "%s: output %d did not build: %s", what, k, kiln_errmsg(ctx));
  kiln_options o = {.size = sizeof o, .no_optimize = no_opt};
  kiln_function *f = kiln_function_new_opts(ctx, what, n_in, ins, n_out, outs, 0, NULL, &o);
  ck_assert_msg(f != NULL, "%s: function_new: %s", what, kiln_errmsg(ctx));
  return f;
}

/* Compiles outs twice (optimized and not), calls each with vals, and holds
** every output to the reference evaluator bit for bit. */
static void check_jit(kiln_ctx *ctx, const char *what, int n_in, kiln_node *const *ins,
                      kiln_tensor *const *vals, int n_out, kiln_node *const *outs) {
  kiln_tensor *ref[MAXOUT];
  kiln_status st = kl_ref_run(ctx, n_in, ins, (const kiln_tensor *const *)vals, n_out, outs, ref);
  ck_assert_msg(st == KILN_OK, "%s: reference: %s", what, kiln_errmsg(ctx));
  for (int no_opt = 0; no_opt < 2; no_opt++) {
    kiln_function *f = compile(ctx, what, n_in, ins, n_out, outs, no_opt);
    for (int round = 0; round < 2; round++) {
      const kiln_tensor *got[MAXOUT];
      st = kiln_call(f, (const kiln_tensor *const *)vals, got);
      ck_assert_msg(st == KILN_OK, "%s: call: %s", what, kiln_errmsg(ctx));
      for (int k = 0; k < n_out; k++)
        ck_assert_msg(kt_same_bits(got[k], ref[k]), "%s: output %d differs from the reference%s",
                      what, k, no_opt ? " (no_optimize)" : "");
    }
    kiln_function_free(f);
  }
  for (int k = 0; k < n_out; k++)
    kiln_tensor_free(ref[k]);
}

/* The single output of out(x) for value xv, from the optimized JIT, checked
** against the reference; returns a copy. */
static kiln_tensor *run1(kiln_ctx *ctx, kiln_node *x, kiln_node *out, kiln_tensor *xv) {
  check_jit(ctx, "run1", 1, &x, &xv, 1, &out);
  kiln_function *f = compile(ctx, "run1", 1, &x, 1, &out, false);
  const kiln_tensor *o;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&xv, &o), KILN_OK);
  int64_t sh[KILN_MAX_RANK];
  for (int d = 0; d < kiln_tensor_rank(o); d++)
    sh[d] = kiln_tensor_dim(o, d);
  kiln_tensor *c =
      kiln_tensor_new(kiln_tensor_dtype(o), kiln_tensor_rank(o), sh, kiln_tensor_data(o));
  ck_assert_ptr_nonnull(c);
  kiln_function_free(f);
  return c;
}

static void expect_shape(const kiln_tensor *t, int rank, const int64_t *shape) {
  ck_assert_int_eq(kiln_tensor_rank(t), rank);
  for (int d = 0; d < rank; d++)
    ck_assert_int_eq(kiln_tensor_dim(t, d), shape[d]);
}

/* element i of a and element j of b hold the same bits */
static bool same_elem(const kiln_tensor *a, int64_t i, const kiln_tensor *b, int64_t j) {
  size_t es = kiln_dtype_size(kiln_tensor_dtype(a));
  return memcmp((const char *)kiln_tensor_data(a) + i * es,
                (const char *)kiln_tensor_data(b) + j * es, es) == 0;
}

/* ------------------------------------------------------- hand values */

/* Theano's x.dimshuffle(1, 0, 'x') on (2, 3): out[i][j][0] = x[j][i]. */
START_TEST(hand_dimshuffle) {
  kiln_dtype dt = (kiln_dtype)_i;
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, 2, S(2, 3));
  kiln_tensor *xv = ramp(dt, 2, S(2, 3), 1.0, 1.0);
  kiln_node *y = kiln_dimshuffle(x, 3, A(1, 0, X));
  ck_assert_int_eq(kiln_node_dtype(y), dt);
  ck_assert_int_eq(kiln_node_dim(y, 0), 3);
  ck_assert_int_eq(kiln_node_dim(y, 2), 1);
  kiln_tensor *o = run1(ctx, x, y, xv);
  expect_shape(o, 3, S(3, 2, 1));
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 2; j++)
      ck_assert(same_elem(o, i * 2 + j, xv, j * 3 + i));
  kiln_tensor_free(o);
  /* 'x' first and in the middle: (1, 2, 1, 3), the same order as x */
  o = run1(ctx, x, kiln_dimshuffle(x, 4, A(X, 0, X, 1)), xv);
  expect_shape(o, 4, S(1, 2, 1, 3));
  for (int i = 0; i < 6; i++)
    ck_assert(same_elem(o, i, xv, i));
  kiln_tensor_free(o);
  kiln_tensor_free(xv);
  /* dropping a size-1 axis: (1, 3) -> (3,); (3, 1) -> (1, 3) as a row */
  kiln_node *r = kiln_input(ctx, "r", dt, 2, S(1, 3));
  xv = ramp(dt, 2, S(1, 3), 2.0, -1.0);
  o = run1(ctx, r, kiln_dimshuffle(r, 1, A(1)), xv);
  expect_shape(o, 1, S(3));
  for (int i = 0; i < 3; i++)
    ck_assert(same_elem(o, i, xv, i));
  kiln_tensor_free(o);
  kiln_tensor_free(xv);
  /* rank 0 -> (1, 1), and (1,) -> rank 0 */
  kiln_node *s = kiln_input(ctx, "s", dt, 0, NULL);
  xv = ramp(dt, 0, NULL, 1.0, 7.0);
  o = run1(ctx, s, kiln_dimshuffle(s, 2, A(X, X)), xv);
  expect_shape(o, 2, S(1, 1));
  ck_assert(same_elem(o, 0, xv, 0));
  kiln_tensor_free(o);
  kiln_tensor_free(xv);
  kiln_node *v1 = kiln_input(ctx, "v1", dt, 1, S(1));
  xv = ramp(dt, 1, S(1), 1.0, 5.0);
  o = run1(ctx, v1, kiln_dimshuffle(v1, 0, NULL), xv);
  expect_shape(o, 0, NULL);
  ck_assert(same_elem(o, 0, xv, 0));
  kiln_tensor_free(o);
  kiln_tensor_free(xv);
  /* the identity pattern is x itself */
  ck_assert_ptr_eq(kiln_dimshuffle(x, 2, A(0, 1)), x);
  kiln_ctx_free(ctx);
}
END_TEST

/* numpy's transpose: reversed axes by default, or a permutation (negative
** axes count from the end); empty dimensions. */
START_TEST(hand_transpose) {
  kiln_dtype dt = (kiln_dtype)_i;
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, 3, S(2, 3, 4));
  kiln_tensor *xv = ramp(dt, 3, S(2, 3, 4), 1.0, -11.0);
  kiln_tensor *o = run1(ctx, x, kiln_transpose(x, 0, NULL), xv);
  expect_shape(o, 3, S(4, 3, 2));
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++)
        ck_assert(same_elem(o, (k * 3 + j) * 2 + i, xv, (i * 3 + j) * 4 + k));
  kiln_tensor_free(o);
  /* axes (1, -1, 0): out[j][k][i] = x[i][j][k] */
  o = run1(ctx, x, kiln_transpose(x, 3, A(1, -1, 0)), xv);
  expect_shape(o, 3, S(3, 4, 2));
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++)
        ck_assert(same_elem(o, (j * 4 + k) * 2 + i, xv, (i * 3 + j) * 4 + k));
  kiln_tensor_free(o);
  kiln_tensor_free(xv);
  /* empty: (0, 3) -> (3, 0) */
  kiln_node *e = kiln_input(ctx, "e", dt, 2, S(0, 3));
  xv = ramp(dt, 2, S(0, 3), 1.0, 0.0);
  o = run1(ctx, e, kiln_transpose(e, 0, NULL), xv);
  expect_shape(o, 2, S(3, 0));
  kiln_tensor_free(o);
  kiln_tensor_free(xv);
  /* a scalar and a vector are their own transposes */
  kiln_node *s = kiln_input(ctx, "s", dt, 0, NULL);
  ck_assert_ptr_eq(kiln_transpose(s, 0, NULL), s);
  kiln_node *v = kiln_input(ctx, "v", dt, 1, S(D));
  ck_assert_ptr_eq(kiln_transpose(v, 0, NULL), v);
  kiln_ctx_free(ctx);
}
END_TEST

/* numpy's reshape: the C-order elements in the new shape. */
START_TEST(hand_reshape) {
  kiln_dtype dt = (kiln_dtype)_i;
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, 3, S(2, 3, 4));
  kiln_tensor *xv = ramp(dt, 3, S(2, 3, 4), 3.0, -30.0);
  static const struct {
    int n;
    int64_t spec[4], want[4];
  } cases[] = {{2, {4, -1}, {4, 6}},       {1, {-1}, {24}},       {4, {2, 2, 3, 2}, {2, 2, 3, 2}},
               {3, {-1, 1, 8}, {3, 1, 8}}, {2, {24, 1}, {24, 1}}, {3, {4, 3, 2}, {4, 3, 2}}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    kiln_node *y = kiln_reshape(x, cases[c].n, cases[c].spec);
    ck_assert_msg(y != NULL, "%s", kiln_errmsg(ctx));
    for (int d = 0; d < cases[c].n; d++)
      ck_assert_int_eq(kiln_node_dim(y, d), cases[c].want[d]);
    kiln_tensor *o = run1(ctx, x, y, xv);
    expect_shape(o, cases[c].n, cases[c].want);
    for (int i = 0; i < 24; i++)
      ck_assert(same_elem(o, i, xv, i));
    kiln_tensor_free(o);
  }
  kiln_tensor_free(xv);
  /* rank 0 <-> (1, 1, 1) */
  kiln_node *s = kiln_input(ctx, "s", dt, 0, NULL);
  xv = ramp(dt, 0, NULL, 1.0, 3.0);
  kiln_tensor *o = run1(ctx, s, kiln_reshape(s, 3, S(1, -1, 1)), xv);
  expect_shape(o, 3, S(1, 1, 1));
  ck_assert(same_elem(o, 0, xv, 0));
  kiln_tensor_free(o);
  kiln_tensor_free(xv);
  kiln_node *c1 = kiln_input(ctx, "c1", dt, 2, S(1, 1));
  xv = ramp(dt, 2, S(1, 1), 1.0, 9.0);
  o = run1(ctx, c1, kiln_reshape(c1, 0, NULL), xv);
  expect_shape(o, 0, NULL);
  ck_assert(same_elem(o, 0, xv, 0));
  kiln_tensor_free(o);
  kiln_tensor_free(xv);
  /* empty: (0, 3) -> (-1, 3) is (0, 3); -> (3, 0, 2) */
  kiln_node *e = kiln_input(ctx, "e", dt, 2, S(0, 3));
  xv = ramp(dt, 2, S(0, 3), 1.0, 0.0);
  o = run1(ctx, e, kiln_reshape(e, 2, S(-1, 3)), xv);
  expect_shape(o, 2, S(0, 3));
  kiln_tensor_free(o);
  o = run1(ctx, e, kiln_reshape(e, 3, S(3, 0, 2)), xv);
  expect_shape(o, 3, S(3, 0, 2));
  kiln_tensor_free(o);
  kiln_tensor_free(xv);
  /* dynamic: (?, 4) -> (-1, 2) at (3, 4) is (6, 2); the type says (?, 2) */
  kiln_node *dx = kiln_input(ctx, "dx", dt, 2, S(D, 4));
  kiln_node *dy = kiln_reshape(dx, 2, S(-1, 2));
  ck_assert_int_eq(kiln_node_dim(dy, 0), D);
  ck_assert_int_eq(kiln_node_dim(dy, 1), 2);
  xv = ramp(dt, 2, S(3, 4), 1.0, 1.0);
  o = run1(ctx, dx, dy, xv);
  expect_shape(o, 2, S(6, 2));
  for (int i = 0; i < 12; i++)
    ck_assert(same_elem(o, i, xv, i));
  kiln_tensor_free(o);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* Theano's flatten(x, ndim): the first ndim-1 axes stay. */
START_TEST(hand_flatten) {
  kiln_dtype dt = (kiln_dtype)_i;
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, 3, S(D, 3, D));
  kiln_tensor *xv = ramp(dt, 3, S(2, 3, 4), 1.0, 0.5);
  static const int64_t want[3][3] = {{24}, {2, 12}, {2, 3, 4}};
  for (int nd = 1; nd <= 3; nd++) {
    kiln_node *y = kiln_flatten(x, nd);
    ck_assert_msg(y != NULL, "%s", kiln_errmsg(ctx));
    ck_assert_int_eq(kiln_node_rank(y), nd);
    if (nd == 2) {
      ck_assert_int_eq(kiln_node_dim(y, 0), D); /* a dynamic kept axis stays dynamic */
      ck_assert_int_eq(kiln_node_dim(y, 1), D);
    }
    kiln_tensor *o = run1(ctx, x, y, xv);
    expect_shape(o, nd, want[nd - 1]);
    for (int i = 0; i < 24; i++)
      ck_assert(same_elem(o, i, xv, i));
    kiln_tensor_free(o);
  }
  ck_assert_ptr_eq(kiln_flatten(x, 3), x);
  /* static collapsed axes give a static size */
  kiln_node *sx = kiln_input(ctx, "sx", dt, 3, S(D, 3, 4));
  kiln_node *f2 = kiln_flatten(sx, 2);
  ck_assert_int_eq(kiln_node_dim(f2, 0), D);
  ck_assert_int_eq(kiln_node_dim(f2, 1), 12);
  kiln_tensor *o = run1(ctx, sx, f2, xv);
  expect_shape(o, 2, S(2, 12));
  kiln_tensor_free(o);
  kiln_tensor_free(xv);
  /* a scalar flattens to (1,) */
  kiln_node *s = kiln_input(ctx, "s", dt, 0, NULL);
  xv = ramp(dt, 0, NULL, 1.0, 4.0);
  o = run1(ctx, s, kiln_flatten(s, 1), xv);
  expect_shape(o, 1, S(1));
  ck_assert(same_elem(o, 0, xv, 0));
  kiln_tensor_free(o);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------ JIT against the reference */

/* Shape ops inside larger expressions, static and dynamic, each dtype. */
START_TEST(jit_compositions) {
  kiln_dtype dt = (kiln_dtype)_i;
  for (int dyn = 0; dyn < 2; dyn++) {
    kiln_ctx *ctx = new_ctx();
    kiln_node *x = kiln_input(ctx, "x", dt, 3, dyn ? S(D, D, D) : S(2, 3, 4));
    kiln_node *y = kiln_input(ctx, "y", dt, 2, dyn ? S(D, D) : S(4, 3));
    kiln_node *v = kiln_input(ctx, "v", dt, 1, dyn ? S(D) : S(3));
    kiln_node *ins[3] = {x, y, v};
    kiln_node *xt = kiln_transpose(x, 0, NULL);                        /* (4, 3, 2) */
    kiln_node *row = kiln_dimshuffle(v, 2, A(X, 0));                   /* (1, 3) */
    kiln_node *col = kiln_dimshuffle(v, 3, A(X, 0, X));                /* (1, 3, 1) */
    kiln_node *r12 = kiln_reshape(x, 2, S(-1, 12));                    /* (2, 12) */
    kiln_node *f2 = kiln_flatten(kiln_transpose(x, 3, A(1, 0, 2)), 2); /* (3, 8) */
    kiln_node *outs[8] = {
        kiln_maximum(xt, col), /* fused transpose + bcast */
        kiln_add(kiln_transpose(y, 0, NULL), kiln_dimshuffle(v, 2, A(0, X))), /* + a column */
        kiln_sum_axis(kiln_mul(xt, col), 1),    /* transpose into a reduction */
        kiln_reduce(r12, KILN_MAX, 1, A(1), 0), /* reshape into a reduction */
        kiln_add(kiln_reshape(kiln_add(x, x), 3, S(-1, 4, 3)), kiln_mul(y, row)),
        f2,                                                         /* a reshape as output */
        kiln_transpose(kiln_transpose(xt, 3, A(2, 0, 1)), 0, NULL), /* chains */
        kiln_dimshuffle(kiln_sum(x), 2, A(X, X)),                   /* scalar -> (1, 1) */
    };
    for (int k = 0; k < 8; k++)
      ck_assert_msg(outs[k] != NULL, "output %d: %s", k, kiln_errmsg(ctx));
    kiln_tensor *vals[3] = {gen(dt, 3, S(2, 3, 4), 1), gen(dt, 2, S(4, 3), 2), gen(dt, 1, S(3), 3)};
    check_jit(ctx, dyn ? "compositions dyn" : "compositions", 3, ins, vals, 8, outs);
    for (int k = 0; k < 3; k++)
      kiln_tensor_free(vals[k]);
    if (dyn) { /* dynamic sizes of 1 (the general step where they stretch), empty ones */
      int64_t shapes[3][3][3] = {
          {{1, 3, 4}, {4, 3}, {3}}, {{2, 1, 1}, {1, 1}, {1}}, {{0, 3, 4}, {4, 3}, {3}}};
      for (int c = 0; c < 3; c++) {
        kiln_tensor *w[3] = {gen(dt, 3, shapes[c][0], 4), gen(dt, 2, shapes[c][1], 5),
                             gen(dt, 1, shapes[c][2], 6)};
        kiln_node *some[6] = {outs[0], outs[1], outs[2], outs[5], outs[6], outs[7]};
        check_jit(ctx, "compositions dyn sizes", 3, ins, w, 6, some);
        for (int k = 0; k < 3; k++)
          kiln_tensor_free(w[k]);
      }
    }
    kiln_ctx_free(ctx);
  }
}
END_TEST

/* A shape op's result used by several kernels, reshapes of reshapes,
** reshape after a reduction (the operand is a stored kernel result), rank-0
** schedules. */
START_TEST(jit_shared_uses) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 2, S(D, 6));
  kiln_node *t = kiln_transpose(x, 0, NULL);
  kiln_node *r = kiln_reshape(kiln_exp(x), 3, S(-1, 2, 3));
  kiln_node *outs[6] = {
      kiln_add(kiln_sum(t), kiln_sum(kiln_sqr(t))),
      kiln_mul(t, kiln_sum_axis(t, 0)),
      kiln_reshape(kiln_reshape(r, 2, S(2, -1)), 1, S(-1)),
      kiln_reshape(kiln_sum_axis(x, 0), 2, S(3, 2)),
      kiln_mul(kiln_reshape(kiln_sum(x), 2, S(1, 1)), kiln_dimshuffle(kiln_max(x), 1, A(X))),
      kiln_sub(r, kiln_dimshuffle(kiln_sum_axis(r, 1), 3, A(0, X, 1))),
  };
  for (int rows = 1; rows <= 3; rows++) {
    kiln_tensor *xv = gen(KILN_FLOAT64, 2, S(rows * 2, 6), (uint64_t)rows);
    check_jit(ctx, "shared uses", 1, &x, &xv, 6, outs);
    kiln_tensor_free(xv);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* An update through a transpose cannot be written in place (it reads other
** elements of the variable): W <- W^T + 1 on a square W, by hand. */
START_TEST(update_through_transpose) {
  kiln_ctx *ctx = new_ctx();
  double w0[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 2, S(3, 3), w0);
  kiln_node *V = kiln_shared(ctx, "V", KILN_FLOAT64, 2, S(3, 3), w0);
  kiln_update up[2] = {
      {W, kiln_add(kiln_transpose(W, 0, NULL), kiln_lit(ctx, 1.0))},
      {V, kiln_reshape(kiln_transpose(kiln_reshape(V, 1, S(9)), 0, NULL), 2, S(3, 3))}};
  kiln_function *f = kiln_function_new(ctx, "upd", 0, NULL, 0, NULL, 2, up);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  ck_assert_int_eq(kiln_call(f, NULL, NULL), KILN_OK);
  double w[9], v[9];
  ck_assert_int_eq(kiln_shared_get(W, w, sizeof w), KILN_OK);
  ck_assert_int_eq(kiln_shared_get(V, v, sizeof v), KILN_OK);
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      ck_assert(w[i * 3 + j] == w0[j * 3 + i] + 1);
  for (int i = 0; i < 9; i++)
    ck_assert(v[i] == w0[i]);
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------- gradients */

typedef kiln_node *(*mk_fn)(kiln_node *x);

/* d sum(mk(x) * R) / dx against central differences, R fixed and random,
** with x's dims static or dynamic; JIT and reference gradients bit-exact. */
static void fd_check(const char *what, int rank, const int64_t *shape, bool dyn, mk_fn mk) {
  kiln_ctx *ctx = new_ctx();
  int64_t dims[KILN_MAX_RANK];
  for (int d = 0; d < rank; d++)
    dims[d] = dyn ? D : shape[d];
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, rank, dims);
  kiln_node *out = mk(x);
  ck_assert_msg(out != NULL, "%s: %s", what, kiln_errmsg(ctx));
  uint64_t s = 42;
  kiln_tensor *xv = kiln_tensor_new(KILN_FLOAT64, rank, shape, NULL);
  for (int64_t i = 0; i < kiln_tensor_size(xv); i++)
    ((double *)kiln_tensor_data(xv))[i] = 4 * kt_rand(&s) - 2;
  kiln_tensor *ov;
  ck_assert_int_eq(kl_ref_run(ctx, 1, &x, (const kiln_tensor *const *)&xv, 1, &out, &ov), KILN_OK);
  int64_t osh[KILN_MAX_RANK];
  for (int d = 0; d < kiln_tensor_rank(ov); d++)
    osh[d] = kiln_tensor_dim(ov, d);
  kiln_tensor *rt = kiln_tensor_new(KILN_FLOAT64, kiln_tensor_rank(ov), osh, NULL);
  for (int64_t i = 0; i < kiln_tensor_size(rt); i++)
    ((double *)kiln_tensor_data(rt))[i] = (0.5 + kt_rand(&s)) * (kt_rand(&s) < 0.5 ? -1 : 1);
  kiln_node *R = kiln_const(ctx, KILN_FLOAT64, kiln_tensor_rank(ov), osh, kiln_tensor_data(rt));
  kiln_tensor_free(rt);
  kiln_tensor_free(ov);
  kiln_node *cost = kiln_name(kiln_sum(kiln_mul(kiln_tanh(out), R)), "cost");
  kiln_node *g = NULL;
  ck_assert_msg(kiln_grad(cost, 1, &x, &g, 0) == KILN_OK, "%s: grad: %s", what, kiln_errmsg(ctx));
  ck_assert_int_eq(kiln_node_rank(g), rank);
  for (int d = 0; d < rank; d++)
    ck_assert_int_eq(kiln_node_dim(g, d), dims[d]);
  kiln_node *outs[2] = {cost, g};
  check_jit(ctx, what, 1, &x, &xv, 2, outs);
  kiln_function *f = compile(ctx, what, 1, &x, 2, outs, false);
  const kiln_tensor *o[2];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&xv, o), KILN_OK);
  expect_shape(o[1], rank, shape);
  int64_t n = kiln_tensor_size(xv);
  double *gv = malloc((size_t)(n ? n : 1) * sizeof *gv);
  memcpy(gv, kiln_tensor_data(o[1]), (size_t)n * sizeof *gv);
  double *xd = kiln_tensor_data(xv);
  for (int64_t e = 0; e < n; e++) {
    double x0 = xd[e], h = 1e-6;
    xd[e] = x0 + h;
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&xv, o), KILN_OK);
    double cp = kiln_tensor_get(o[0], 0);
    xd[e] = x0 - h;
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&xv, o), KILN_OK);
    double cm = kiln_tensor_get(o[0], 0);
    xd[e] = x0;
    double fd = (cp - cm) / (2 * h);
    ck_assert_msg(fabs(gv[e] - fd) <= 1e-6 + 1e-5 * fabs(fd),
                  "%s: d cost / d x[%lld]: gradient %.17g, finite difference %.17g", what,
                  (long long)e, gv[e], fd);
  }
  free(gv);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}

static kiln_node *g_shuffle(kiln_node *x) { return kiln_dimshuffle(x, 4, A(2, X, 0, 1)); }
static kiln_node *g_drop(kiln_node *x) { return kiln_dimshuffle(x, 2, A(2, 0)); }
static kiln_node *g_transpose(kiln_node *x) {
  return kiln_mul(kiln_transpose(x, 0, NULL), kiln_transpose(x, 3, A(2, 1, 0)));
}
static kiln_node *g_bcast_row(kiln_node *x) {
  kiln_node *v = kiln_sum_axis(kiln_sum_axis(x, 0), 0); /* (4,) */
  return kiln_add(kiln_dimshuffle(v, 2, A(X, 0)), kiln_reshape(x, 2, S(-1, 4)));
}
static kiln_node *g_reshape(kiln_node *x) { return kiln_reshape(x, 2, S(4, -1)); }
static kiln_node *g_reshape2(kiln_node *x) {
  kiln_node *r = kiln_reshape(kiln_sqr(x), 3, S(3, 2, -1));
  return kiln_mul(r, kiln_transpose(kiln_reshape(x, 3, S(4, 2, 3)), 0, NULL));
}
static kiln_node *g_flatten(kiln_node *x) {
  return kiln_mul(kiln_flatten(x, 2), kiln_lit(kiln_node_ctx(x), 3.0));
}

START_TEST(grad_fd) {
  static const struct {
    const char *what;
    mk_fn mk;
    int rank;
    int64_t shape[3];
  } cases[] = {
      {"dimshuffle", g_shuffle, 3, {2, 3, 4}},  {"dimshuffle drop", g_drop, 3, {2, 1, 4}},
      {"transpose", g_transpose, 3, {2, 3, 2}}, {"row broadcast", g_bcast_row, 3, {2, 3, 4}},
      {"reshape", g_reshape, 3, {2, 3, 4}},     {"reshape twice", g_reshape2, 3, {2, 3, 4}},
      {"flatten", g_flatten, 3, {2, 3, 4}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
    for (int dyn = 0; dyn < 2; dyn++) {
      if (dyn && cases[c].mk == g_drop) continue; /* dropping needs a static 1 */
      fd_check(cases[c].what, cases[c].rank, cases[c].shape, dyn, cases[c].mk);
    }
}
END_TEST

/* ------------------------------------------------------------- errors */

START_TEST(errors_build) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_name(kiln_input(ctx, "x", KILN_FLOAT32, 2, S(2, 3)), "x");
  kiln_node *d = kiln_input(ctx, "d", KILN_FLOAT32, 2, S(D, 3));
  /* dimshuffle: not an axis, repeated, dropping a non-1 axis, misuse */
  ck_assert_ptr_null(kiln_dimshuffle(x, 2, A(0, 2)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "dimshuffle", "entry 1 is 2", "'x'", "rank 2", THIS_FILE);
  ck_assert_ptr_null(kiln_dimshuffle(x, 3, A(1, X, 1)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "axis 1", "twice", "'x'", THIS_FILE);
  ck_assert_ptr_null(kiln_dimshuffle(x, 2, A(1, X)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "axis 0", "(2, 3)", "static size 1", THIS_FILE);
  ck_assert_ptr_null(kiln_dimshuffle(d, 1, A(1))); /* a dynamic axis may not be dropped */
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "axis 0", "(?, 3)");
  ck_assert_ptr_null(kiln_dimshuffle(x, 2, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  ck_assert_ptr_null(kiln_dimshuffle(x, 9, A(0, 1, X, X, X, X, X, X, X)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  /* transpose: wrong count, repeated, out of range */
  ck_assert_ptr_null(kiln_transpose(x, 1, A(0)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "transpose", "1 axes", "rank 2", "'x'", THIS_FILE);
  ck_assert_ptr_null(kiln_transpose(x, 2, A(-1, 1)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "axis 1 (given as 1)", "twice", "'x'");
  ck_assert_ptr_null(kiln_transpose(x, 2, A(0, 2)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "axis 2", "out of range");
  ck_assert_ptr_null(kiln_transpose(x, -1, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  /* reshape: two -1, another negative, static mismatch, -1 next to 0 */
  ck_assert_ptr_null(kiln_reshape(x, 3, S(-1, 3, -1)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "reshape", "more than one -1", "'x'", THIS_FILE);
  ck_assert_ptr_null(kiln_reshape(x, 2, S(-2, 3)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "negative size");
  int line = __LINE__ + 1;
  ck_assert_ptr_null(kiln_reshape(x, 2, S(4, 2)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  char at[64];
  snprintf(at, sizeof at, "%s:%d", THIS_FILE, line);
  MSG_HAS(ctx, "cannot reshape", "'x'", "(2, 3)", "6 elements", "(4, 2)", at);
  ck_assert_ptr_null(kiln_reshape(x, 2, S(4, -1)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "(4, -1)", "6 elements");
  kiln_node *e = kiln_input(ctx, "e", KILN_FLOAT32, 2, S(0, 3));
  ck_assert_ptr_null(kiln_reshape(e, 2, S(0, -1)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "(0, -1)", "0 elements");
  ck_assert_ptr_null(kiln_reshape(x, 1, S(INT64_MAX / 2 + 1)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  ck_assert_ptr_null(kiln_reshape(x, 2, S(INT64_MAX / 2, 4)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "overflow");
  ck_assert_ptr_null(kiln_reshape(x, 2, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  /* flatten: ndim outside 1..rank */
  ck_assert_ptr_null(kiln_flatten(x, 0));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "flatten", "ndim 0", "1..2", "'x'");
  ck_assert_ptr_null(kiln_flatten(x, 3));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  /* NULL inputs stay quiet: the first error stays */
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_transpose(NULL, 0, NULL));
  ck_assert_ptr_null(kiln_reshape(NULL, 1, S(-1)));
  ck_assert_ptr_null(kiln_flatten(NULL, 1));
  ck_assert_ptr_null(kiln_dimshuffle(NULL, 0, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_OK);
  kiln_ctx_free(ctx);
}
END_TEST

/* A reshape whose sizes do not fit at call time: KILN_SHAPE naming the
** reshape, its line and both shapes; shared variables stay bit-identical. */
START_TEST(errors_call) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_name(kiln_input(ctx, "x", KILN_FLOAT64, 2, S(D, 3)), "x");
  double w0[2] = {0.25, -1.5};
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, S(2), w0);
  int line = __LINE__ + 1;
  kiln_node *r = kiln_name(kiln_reshape(x, 2, S(2, -1)), "r");
  kiln_node *r2 = kiln_reshape(x, 2, S(4, 3));
  kiln_node *out[2] = {kiln_sum(r), kiln_sum(r2)};
  kiln_update up = {W, kiln_add(W, kiln_sum(x))};
  kiln_function *f = kiln_function_new(ctx, "f", 1, &x, 2, out, 1, &up);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *bad = ramp(KILN_FLOAT64, 2, S(3, 3), 1.0, 0.0);
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&bad, NULL), KILN_SHAPE);
  char at[64];
  snprintf(at, sizeof at, "%s:%d", THIS_FILE, line);
  MSG_HAS(ctx, "reshape: cannot reshape", "'x'", "(3, 3)", "9 elements", "(2, -1)", "'r'", at);
  double w[2];
  ck_assert_int_eq(kiln_shared_get(W, w, sizeof w), KILN_OK);
  ck_assert(memcmp(w, w0, sizeof w) == 0);
  /* (2, 3) fits r but not r2: (4, 3) */
  kiln_tensor *bad2 = ramp(KILN_FLOAT64, 2, S(2, 3), 1.0, 0.0);
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&bad2, NULL), KILN_SHAPE);
  MSG_HAS(ctx, "(2, 3)", "6 elements", "(4, 3)");
  ck_assert_int_eq(kiln_shared_get(W, w, sizeof w), KILN_OK);
  ck_assert(memcmp(w, w0, sizeof w) == 0);
  /* (4, 3) fits both; then the shapes of the failing call again */
  kiln_tensor *good = ramp(KILN_FLOAT64, 2, S(4, 3), 1.0, 0.0);
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&good, NULL), KILN_OK);
  ck_assert_int_eq(kiln_shared_get(W, w, sizeof w), KILN_OK);
  ck_assert(w[0] == 0.25 + 66.0 && w[1] == -1.5 + 66.0);
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&bad, NULL), KILN_SHAPE);
  double w2[2];
  ck_assert_int_eq(kiln_shared_get(W, w2, sizeof w2), KILN_OK);
  ck_assert(memcmp(w, w2, sizeof w) == 0);
  /* the reference evaluator fails likewise */
  kiln_tensor *ref[1];
  ck_assert_int_eq(kl_ref_run(ctx, 1, &x, (const kiln_tensor *const *)&bad, 1, &out[0], ref),
                   KILN_SHAPE);
  MSG_HAS(ctx, "cannot reshape", "(3, 3)");
  kiln_tensor_free(bad);
  kiln_tensor_free(bad2);
  kiln_tensor_free(good);
  kiln_ctx_free(ctx);
}
END_TEST

/* -------------------------------------------------------------- dumps */

static int count_of(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

/* x^T + y is one elementwise kernel reading x through permuted indices;
** reshape(x) * 2 reads x at the flat index, also one kernel. */
START_TEST(fusion_dump) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 2, S(D, D));
  kiln_node *y = kiln_input(ctx, "y", KILN_FLOAT64, 2, S(D, D));
  kiln_node *ins[2] = {x, y};
  kiln_node *o = kiln_add(kiln_transpose(x, 0, NULL), y);
  kiln_function *f = compile(ctx, "tplus", 2, ins, 1, &o, false);
  char *plan = kt_dump(f, "plan");
  ck_assert_msg(count_of(plan, "kernel ") == 1, "one kernel expected:\n%s", plan);
  ck_assert_msg(strstr(plan, "fused: %2 dimshuffle") != NULL, "transpose not fused:\n%s", plan);
  char *opt = kt_dump(f, "opt");
  ck_assert_msg(strstr(opt, "dimshuffle{1,0}") != NULL, "%s", opt);
  free(plan);
  free(opt);
  kiln_node *o2 = kiln_mul(kiln_reshape(x, 1, S(-1)), kiln_lit(ctx, 2.0));
  kiln_function *f2 = compile(ctx, "rtimes", 1, &x, 1, &o2, false);
  plan = kt_dump(f2, "plan");
  ck_assert_msg(count_of(plan, "kernel ") == 1, "one kernel expected:\n%s", plan);
  ck_assert_msg(strstr(plan, "reshape") != NULL, "%s", plan);
  opt = kt_dump(f2, "opt");
  ck_assert_msg(strstr(opt, "reshape{-1}") != NULL, "%s", opt);
  free(plan);
  free(opt);
  /* without optimization the transpose is its own kernel */
  kiln_function *f3 = compile(ctx, "tplus0", 2, ins, 1, &o, true);
  plan = kt_dump(f3, "plan");
  ck_assert_msg(count_of(plan, "kernel ") == 2, "%s", plan);
  free(plan);
  /* a reshape of a computed value stores that value, then reads it inline */
  kiln_node *o4 = kiln_sum(kiln_reshape(kiln_exp(x), 2, S(-1, 2)));
  kiln_function *f4 = compile(ctx, "rsum", 1, &x, 1, &o4, false);
  plan = kt_dump(f4, "plan");
  ck_assert_msg(count_of(plan, "kernel ") == 2, "%s", plan);
  free(plan);
  /* the flatten of a dynamic (?, 3, 4) says where its kept size comes from */
  kiln_node *z = kiln_input(ctx, "z", KILN_FLOAT64, 3, S(D, D, 4));
  kiln_node *o5 = kiln_flatten(z, 2);
  kiln_function *f5 = compile(ctx, "flat", 1, &z, 1, &o5, false);
  opt = kt_dump(f5, "opt");
  ck_assert_msg(strstr(opt, "reshape{d0,-1}") != NULL, "%s", opt);
  free(opt);
  kiln_ctx_free(ctx);
}
END_TEST

/* equal shape ops merge; different patterns do not */
START_TEST(cse_shape_ops) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 3, S(2, 3, 4));
  kiln_node *a = kiln_add(kiln_transpose(x, 0, NULL), kiln_transpose(x, 0, NULL));
  kiln_node *b = kiln_add(kiln_sum(kiln_transpose(x, 3, A(2, 0, 1))),
                          kiln_sum(kiln_transpose(x, 3, A(2, 1, 0)))); /* the same as a's */
  kiln_node *c = kiln_add(kiln_reshape(x, 2, S(4, 6)), kiln_reshape(x, 2, S(-1, 6)));
  kiln_node *d =
      kiln_add(kiln_reshape(x, 2, S(4, 6)), kiln_transpose(kiln_reshape(x, 2, S(6, 4)), 0, NULL));
  kiln_node *outs[4] = {a, b, c, d};
  kiln_function *f = compile(ctx, "cse", 1, &x, 4, outs, false);
  char *opt = kt_dump(f, "opt");
  ck_assert_msg(count_of(opt, "dimshuffle{2,1,0}") == 1, "%s", opt);
  ck_assert_msg(count_of(opt, "dimshuffle{2,0,1}") == 1, "%s", opt);
  ck_assert_msg(count_of(opt, "reshape{4,6}") == 1, "%s", opt);
  ck_assert_msg(count_of(opt, "reshape{6,4}") == 1, "%s", opt);
  free(opt);
  kiln_tensor *xv = ramp(KILN_FLOAT64, 3, S(2, 3, 4), 0.5, -3.0);
  check_jit(ctx, "cse", 1, &x, &xv, 4, outs);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* simplify composes chains: dimshuffles always, reshapes through a static
** middle; a middle -1 keeps both (its check must stay). Values bit-exact. */
START_TEST(simplify_chains) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 3, S(D, 3, 4));
  kiln_node *s = kiln_input(ctx, "s", KILN_FLOAT64, 1, S(D));
  kiln_node *ins[2] = {x, s};
  kiln_node *t2 = kiln_transpose(kiln_transpose(x, 3, A(1, 2, 0)), 3, A(2, 0, 1)); /* x */
  kiln_node *t3 = kiln_dimshuffle(kiln_dimshuffle(x, 4, A(2, X, 0, 1)), 3, A(0, 2, 3));
  kiln_node *r2 = kiln_reshape(kiln_reshape(s, 2, S(2, 3)), 3, S(3, 1, 2));
  kiln_node *r3 = kiln_reshape(kiln_reshape(s, 2, S(-1, 2)), 1, S(-1));
  kiln_node *outs[4] = {kiln_mul(t2, kiln_lit(ctx, 2.0)), kiln_exp(t3), kiln_neg(r2), kiln_neg(r3)};
  kiln_function *f = compile(ctx, "chains", 2, ins, 4, outs, false);
  char *opt = kt_dump(f, "opt");
  ck_assert_msg(count_of(opt, "dimshuffle{") == 1, "%s", opt); /* t3 as one, t2 gone */
  ck_assert_msg(strstr(opt, "dimshuffle{2,0,1}") != NULL, "%s", opt);
  ck_assert_msg(strstr(opt, "dimshuffle(dimshuffle(x))") != NULL, "%s", opt);
  ck_assert_msg(count_of(opt, "reshape{") == 3, "%s", opt); /* r2 as one, r3 as two */
  free(opt);
  kiln_tensor *vals[2] = {gen(KILN_FLOAT64, 3, S(2, 3, 4), 8), gen(KILN_FLOAT64, 1, S(6), 9)};
  check_jit(ctx, "chains", 2, ins, vals, 4, outs);
  /* 7 elements: r2 and r3 both fail (the composed r2 checks for 6, r3 keeps (-1, 2)) */
  kiln_tensor_free(vals[1]);
  vals[1] = gen(KILN_FLOAT64, 1, S(7), 10);
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)vals, NULL), KILN_SHAPE);
  kiln_node *only_r3 = outs[3];
  kiln_function *f3 = compile(ctx, "r3", 1, &s, 1, &only_r3, false);
  ck_assert_int_eq(kiln_call(f3, (const kiln_tensor *const *)&vals[1], NULL), KILN_SHAPE);
  MSG_HAS(ctx, "(7,)", "(-1, 2)");
  kiln_tensor_free(vals[0]);
  kiln_tensor_free(vals[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* Functions whose optimized graphs differ only in a pattern must not share
** compiled code (the context's compile cache keys on src_axis). */
START_TEST(cache_patterns) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 3, S(2, 2, 2));
  kiln_node *a = kiln_neg(kiln_transpose(x, 3, A(1, 2, 0)));
  kiln_node *b = kiln_neg(kiln_transpose(x, 3, A(2, 0, 1)));
  kiln_function *fa = compile(ctx, "a", 1, &x, 1, &a, false);
  kiln_function *fb = compile(ctx, "b", 1, &x, 1, &b, false);
  kiln_tensor *xv = ramp(KILN_FLOAT64, 3, S(2, 2, 2), 1.0, 0.0);
  const kiln_tensor *oa, *ob;
  ck_assert_int_eq(kiln_call(fa, (const kiln_tensor *const *)&xv, &oa), KILN_OK);
  ck_assert_int_eq(kiln_call(fb, (const kiln_tensor *const *)&xv, &ob), KILN_OK);
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++)
      for (int k = 0; k < 2; k++) {
        double xe = (i * 2 + j) * 2 + k;                            /* x[i][j][k] */
        ck_assert(kiln_tensor_get(oa, (j * 2 + k) * 2 + i) == -xe); /* a[j][k][i] */
        ck_assert(kiln_tensor_get(ob, (k * 2 + i) * 2 + j) == -xe); /* b[k][i][j] */
      }
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* --------------------------------------------------- allocation failure */

/* Builds, differentiates, compiles and calls a graph of shape ops with the
** k-th allocation failing: every run ends in a clean status (ASan checks
** for leaks). */
static kiln_status shape_once(void) {
  kiln_ctx *ctx = kiln_ctx_new();
  if (!ctx) return KILN_NOMEM;
  kiln_status st = KILN_OK;
  kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT64, 2, S(D, 4));
  kiln_node *t = kiln_dimshuffle(x, 3, A(1, X, 0));
  kiln_node *r = kiln_flatten(kiln_reshape(kiln_exp(x), 3, S(-1, 2, 2)), 2);
  kiln_node *cost = kiln_add(kiln_sum(kiln_sqr(t)), kiln_sum(r));
  kiln_node *g = NULL;
  if (!cost || kiln_grad(cost, 1, &x, &g, 0) != KILN_OK) {
    st = kiln_errcode(ctx) ? kiln_errcode(ctx) : KILN_NOMEM;
    kiln_ctx_free(ctx);
    return st;
  }
  kiln_node *outs[2] = {cost, g};
  kiln_function *f = kiln_function_new(ctx, "f", 1, &x, 2, outs, 0, NULL);
  kiln_tensor *xv = kiln_tensor_new(KILN_FLOAT64, 2, S(3, 4), NULL);
  if (!f || !xv) {
    st = f ? KILN_NOMEM : kiln_errcode(ctx);
  } else {
    const kiln_tensor *o[2];
    st = kiln_call(f, (const kiln_tensor *const *)&xv, o);
    if (st == KILN_OK) ck_assert(kiln_tensor_dim(o[1], 0) == 3);
  }
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
  return st;
}

START_TEST(allocation_failures) {
  long k;
  int failed = 0;
  for (k = 1; k < 100000; k++) {
    long n0 = kl_mem_count();
    kl_mem_fail_at(k);
    kiln_status st = shape_once();
    long used = kl_mem_count() - n0;
    kl_mem_fail_at(0);
    if (used < k) {
      ck_assert_msg(st == KILN_OK, "run %ld hit no failure but ended in %s", k,
                    kiln_status_str(st));
      break;
    }
    if (st != KILN_OK) {
      ck_assert_msg(st == KILN_NOMEM, "run %ld: %s", k, kiln_status_str(st));
      failed++;
    }
  }
  ck_assert(k < 100000);
  ck_assert_int_gt(failed, 10);
}
END_TEST

static void teardown(void) { kl_mem_fail_at(0); }

static Suite *suite(void) {
  Suite *s = suite_create("shape");
  TCase *tc = tcase_create("values");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, hand_dimshuffle, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, hand_transpose, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, hand_reshape, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, hand_flatten, 0, KILN_N_DTYPES);
  suite_add_tcase(s, tc);
  tc = tcase_create("jit");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, jit_compositions, 0, KILN_N_DTYPES);
  tcase_add_test(tc, jit_shared_uses);
  tcase_add_test(tc, update_through_transpose);
  suite_add_tcase(s, tc);
  tc = tcase_create("grad");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, grad_fd);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_set_timeout(tc, 600);
  tcase_add_checked_fixture(tc, NULL, teardown);
  tcase_add_test(tc, errors_build);
  tcase_add_test(tc, errors_call);
  tcase_add_test(tc, fusion_dump);
  tcase_add_test(tc, cse_shape_ops);
  tcase_add_test(tc, simplify_chains);
  tcase_add_test(tc, cache_patterns);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return kt_run(suite()); }
