/*
** test_grad_reduce.c -- gradients of the reductions of kiln_reduce, held to
** central finite differences in float64 (and float32, loosely).
**
** Each case builds out = reduction(x), the cost sum(out * R) with R a fixed
** random constant of out's shape (so every output element matters), asks
** kiln_grad for d cost / d x, checks the JIT's cost and gradient against
** the reference evaluator bit for bit, then every gradient element against
** the central difference of the JIT's cost. Inputs avoid ties for max/min
** (distinct values far apart) and zeros for prod where the formula is not
** the point; zeros in prod are tested on purpose too (prod is multilinear,
** so its finite differences are exact there). Then gradient values worked
** out by hand (ties, NaN, zeros, softmax), and argmax/argmin on a gradient
** path: KILN_NOGRAD naming them.
*/
#include "compiler/graph.h"
#include "compiler/refeval.h"
#include "tests/testutil.h"

#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define D KILN_DYN
#define A(...) ((int[]){__VA_ARGS__})
#define S(...) ((int64_t[]){__VA_ARGS__})
#define V(...) ((double[]){__VA_ARGS__})

/* ------------------------------------------------------------- values */

typedef enum vkind {
  VK_DISTINCT, /* a shuffled ladder k * 0.37 + noise: no ties, gaps >= 0.3 */
  VK_NONZERO,  /* [0.5, 1.5] with random signs */
  VK_WIDE,     /* [-3, 3], then shifted by +-40 per element parity */
} vkind;

static void fill(double *v, int64_t n, vkind k, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 77;
  if (k == VK_DISTINCT) {
    int64_t perm[256];
    ck_assert_int_le(n, 256);
    for (int64_t i = 0; i < n; i++)
      perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)(kt_rand(&s) * (double)(i + 1)), t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    for (int64_t i = 0; i < n; i++)
      v[i] = (double)(perm[i] - n / 2) * 0.37 + 0.02 * kt_rand(&s);
  } else if (k == VK_NONZERO) {
    for (int64_t i = 0; i < n; i++)
      v[i] = (0.5 + kt_rand(&s)) * (kt_rand(&s) < 0.5 ? -1 : 1);
  } else {
    for (int64_t i = 0; i < n; i++)
      v[i] = 6 * kt_rand(&s) - 3 + (i % 2 ? 40 : -40);
  }
}

/* ------------------------------------------------------------ the check */

typedef kiln_node *(*mk_fn)(kiln_node *x, const void *arg);

static kiln_tensor *copy_out(const kiln_tensor *t) {
  int64_t shape[KILN_MAX_RANK];
  for (int i = 0; i < kiln_tensor_rank(t); i++)
    shape[i] = kiln_tensor_dim(t, i);
  kiln_tensor *c =
      kiln_tensor_new(kiln_tensor_dtype(t), kiln_tensor_rank(t), shape, kiln_tensor_data(t));
  ck_assert_ptr_nonnull(c);
  return c;
}

static void set_elem(kiln_tensor *t, int64_t i, double v) {
  if (kiln_tensor_dtype(t) == KILN_FLOAT64)
    ((double *)kiln_tensor_data(t))[i] = v;
  else
    ((float *)kiln_tensor_data(t))[i] = (float)v;
}

static double cost_of(kiln_ctx *ctx, kiln_function *f, kiln_tensor *x) {
  const kiln_tensor *o[2];
  ck_assert_msg(kiln_call(f, (const kiln_tensor *const *)&x, o) == KILN_OK, "call: %s",
                kiln_errmsg(ctx));
  return kiln_tensor_get(o[0], 0);
}

/* Gradient of sum(mk(x) * R) at x = vals, checked as described above.
** With dyn the input's dimensions are dynamic. Returns the JIT gradient
** (free it) for further checks. */
static kiln_tensor *fd_case(const char *what, kiln_dtype dt, int rank, const int64_t *shape,
                            const double *vals, bool dyn, mk_fn mk, const void *arg) {
  kiln_ctx *ctx = kiln_ctx_new();
  ck_assert_ptr_nonnull(ctx);
  int64_t dims[KILN_MAX_RANK];
  for (int d = 0; d < rank; d++)
    dims[d] = dyn ? KILN_DYN : shape[d];
  kiln_node *x = kiln_input(ctx, "x", dt, rank, dims);
  kiln_node *out = mk(x, arg);
  ck_assert_msg(out != NULL, "%s: build: %s", what, kiln_errmsg(ctx));
  kiln_tensor *xv = kt_tensor(dt, rank, shape, vals);
  /* R of out's run-time shape, values in +-[0.5, 1.5] */
  kiln_tensor *ov;
  ck_assert_int_eq(kl_ref_run(ctx, 1, &x, (const kiln_tensor *const *)&xv, 1, &out, &ov), KILN_OK);
  double rv[256];
  int64_t rshape[KILN_MAX_RANK];
  for (int d = 0; d < kiln_tensor_rank(ov); d++)
    rshape[d] = kiln_tensor_dim(ov, d);
  ck_assert_int_le(kiln_tensor_size(ov), 256);
  fill(rv, kiln_tensor_size(ov), VK_NONZERO, (uint64_t)strlen(what));
  kiln_tensor *rt = kt_tensor(kiln_node_dtype(out), kiln_tensor_rank(ov), rshape, rv);
  kiln_node *R =
      kiln_const(ctx, kiln_node_dtype(out), kiln_tensor_rank(ov), rshape, kiln_tensor_data(rt));
  kiln_tensor_free(rt);
  kiln_tensor_free(ov);
  kiln_node *cost = kiln_name(kiln_sum(kiln_mul(out, R)), "cost");
  kiln_node *g = NULL;
  ck_assert_msg(kiln_grad(cost, 1, &x, &g, 0) == KILN_OK, "%s: grad: %s", what, kiln_errmsg(ctx));
  ck_assert_int_eq(kiln_node_dtype(g), dt);
  ck_assert_int_eq(kiln_node_rank(g), rank);
  kiln_node *outs[2] = {cost, g};
  kiln_function *f = kiln_function_new(ctx, "gradred", 1, &x, 2, outs, 0, NULL);
  ck_assert_msg(f != NULL, "%s: function: %s", what, kiln_errmsg(ctx));
  const kiln_tensor *o[2];
  ck_assert_msg(kiln_call(f, (const kiln_tensor *const *)&xv, o) == KILN_OK, "%s: %s", what,
                kiln_errmsg(ctx));
  kiln_tensor *jg = copy_out(o[1]), *jc = copy_out(o[0]);
  kiln_tensor *ref[2];
  ck_assert_int_eq(kl_ref_run(ctx, 1, &x, (const kiln_tensor *const *)&xv, 2, outs, ref), KILN_OK);
  ck_assert_msg(kt_same_bits(jc, ref[0]), "%s: JIT and reference costs differ", what);
  ck_assert_msg(kt_same_bits(jg, ref[1]), "%s: JIT and reference gradients differ", what);
  for (int d = 0; d < rank; d++)
    ck_assert_int_eq(kiln_tensor_dim(jg, d), shape[d]);
  bool f32 = dt == KILN_FLOAT32;
  double eps = f32 ? 1e-3 : 1e-6, atol = f32 ? 2e-3 : 1e-5, rtol = f32 ? 2e-2 : 1e-3;
  for (int64_t e = 0; e < kiln_tensor_size(xv); e++) {
    double x0 = kiln_tensor_get(xv, e);
    set_elem(xv, e, x0 + eps);
    double xp = kiln_tensor_get(xv, e), cp = cost_of(ctx, f, xv);
    set_elem(xv, e, x0 - eps);
    double xm = kiln_tensor_get(xv, e), cm = cost_of(ctx, f, xv);
    set_elem(xv, e, x0);
    double fd = (cp - cm) / (xp - xm), a = kiln_tensor_get(jg, e);
    ck_assert_msg(fabs(a - fd) <= atol + rtol * fabs(fd),
                  "%s: d cost / d x[%lld]: gradient %.17g, finite difference %.17g", what,
                  (long long)e, a, fd);
  }
  kiln_tensor_free(ref[0]);
  kiln_tensor_free(ref[1]);
  kiln_tensor_free(jc);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
  return jg;
}

/* ------------------------------------------------- reductions vs FD */

typedef struct rarg {
  kiln_reduce_op op;
  int n;
  int ax[3];
  int keep;
} rarg;

static kiln_node *mk_reduce(kiln_node *x, const void *p) {
  const rarg *r = p;
  return kiln_reduce(x, r->op, r->n, r->n ? r->ax : NULL, r->keep);
}

/* axis lists of a rank-3 (2,3,4) input */
static const struct {
  int n;
  int ax[3];
} AXES[] = {{1, {0}}, {1, {-1}}, {2, {0, 2}}, {2, {-2, -1}}, {3, {1, 2, 0}}, {0, {0}}};
#define N_AXES ((int)(sizeof AXES / sizeof *AXES))

static const kiln_reduce_op FD_OPS[] = {KILN_SUM, KILN_MEAN, KILN_MAX,
                                        KILN_MIN, KILN_PROD, KILN_LOGSUMEXP};
#define N_FD_OPS ((int)(sizeof FD_OPS / sizeof *FD_OPS))
static const char *const OPNAME[] = {"sum",  "mean",   "max",    "min",
                                     "prod", "argmax", "argmin", "logsumexp"};

/* _i: op x axis list x keepdims x (float64 static, float64 dynamic, float32) */
START_TEST(fd_reduction) {
  int i = _i;
  int var = i % 3;
  i /= 3;
  int keep = i % 2;
  i /= 2;
  int a = i % N_AXES;
  kiln_reduce_op op = FD_OPS[i / N_AXES];
  rarg r = {op, AXES[a].n, {AXES[a].ax[0], AXES[a].ax[1], AXES[a].ax[2]}, keep};
  double v[24];
  vkind k = op == KILN_PROD ? VK_NONZERO : op == KILN_LOGSUMEXP && var == 1 ? VK_WIDE : VK_DISTINCT;
  fill(v, 24, k, (uint64_t)_i + 1);
  char what[128];
  snprintf(what, sizeof what, "%s axes #%d keepdims %d %s", OPNAME[op], a, keep,
           var == 0   ? "float64"
           : var == 1 ? "float64 dynamic"
                      : "float32");
  kiln_tensor *g = fd_case(what, var == 2 ? KILN_FLOAT32 : KILN_FLOAT64, 3, S(2, 3, 4), v, var == 1,
                           mk_reduce, &r);
  kiln_tensor_free(g);
}
END_TEST

/* Reductions inside larger expressions: chains, keepdims results
** broadcast back against x, the reductions' gradients added to others. */
static kiln_node *mk_composite(kiln_node *x, const void *p) {
  int which = *(const int *)p;
  switch (which) {
  case 0: /* x - max(x, keepdims): the max's gradient meets the identity's */
    return kiln_sub(x, kiln_reduce(x, KILN_MAX, 1, A(-1), 1));
  case 1: /* softmax-like normalization by logsumexp */
    return kiln_exp(kiln_sub(x, kiln_reduce(x, KILN_LOGSUMEXP, 1, A(1), 1)));
  case 2: /* a chain: min over axis 0 of prod over the last axis */
    return kiln_min_axis(kiln_prod_axis(x, -1), 0);
  case 3: /* mean with keepdims times max without */
    return kiln_mul(kiln_reduce(x, KILN_MEAN, 2, A(0, 2), 1), kiln_max_axis(x, 0));
  default: /* x * prod(x) over axis 0 with keepdims, summed */
    return kiln_sum_axis(kiln_mul(x, kiln_reduce(x, KILN_PROD, 1, A(0), 1)), 2);
  }
}

START_TEST(fd_composite) {
  double v[24];
  fill(v, 24, _i == 2 || _i == 4 ? VK_NONZERO : VK_DISTINCT, (uint64_t)_i + 40);
  char what[64];
  snprintf(what, sizeof what, "composite %d", _i);
  kiln_tensor_free(fd_case(what, KILN_FLOAT64, 3, S(2, 3, 4), v, _i % 2 == 1, mk_composite, &_i));
}
END_TEST

/* prod with zeros: exactly one zero in some rows, two in others, none in
** the rest. prod is linear in each element, so the central difference is
** exact up to rounding even at zeros. */
START_TEST(fd_prod_zeros) {
  double v[24];
  fill(v, 24, VK_NONZERO, 9);
  /* rows of the last axis (4 elements each): row 0 one zero, row 1 two,
  ** row 2 none, row 3 one zero at the end, row 4 one at the start, row 5
  ** none; over axes (0, 1) column 0 has two zeros, the others one each */
  v[1] = 0.0;
  v[4] = 0.0, v[6] = -0.0;
  v[15] = 0.0;
  v[16] = 0.0;
  for (int keep = 0; keep < 2; keep++) {
    rarg r = {KILN_PROD, 1, {-1}, keep};
    kiln_tensor *g =
        fd_case("prod with zeros, last axis", KILN_FLOAT64, 3, S(2, 3, 4), v, keep, mk_reduce, &r);
    /* the lone zeros get the product of the others times R; the rest 0 */
    ck_assert(kiln_tensor_get(g, 1) != 0.0 && kiln_tensor_get(g, 0) == 0.0 &&
              kiln_tensor_get(g, 2) == 0.0);
    for (int e = 4; e < 8; e++)
      ck_assert_msg(kiln_tensor_get(g, e) == 0.0, "two zeros: element %d", e);
    ck_assert(kiln_tensor_get(g, 15) != 0.0 && kiln_tensor_get(g, 12) == 0.0);
    ck_assert(kiln_tensor_get(g, 16) != 0.0);
    for (int e = 17; e < 20; e++)
      ck_assert(kiln_tensor_get(g, e) == 0.0);
    for (int e = 8; e < 12; e++)
      ck_assert(kiln_tensor_get(g, e) != 0.0);
    kiln_tensor_free(g);
  }
  rarg all = {KILN_PROD, 2, {0, 1}, 0};
  kiln_tensor_free(fd_case("prod with zeros, axes (0,1)", KILN_FLOAT64, 3, S(2, 3, 4), v, false,
                           mk_reduce, &all));
}
END_TEST

/* ------------------------------------------------- values by hand */

/* d/dx of the plain sum of mk(x) (cost = sum(out), no R) */
static kiln_tensor *grad_of(kiln_dtype dt, int rank, const int64_t *shape, const double *vals,
                            kiln_node *(*mk)(kiln_node *)) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_input(ctx, "x", dt, rank, NULL);
  kiln_node *cost = kiln_sum(mk(x)), *g = NULL;
  ck_assert_msg(kiln_grad(cost, 1, &x, &g, 0) == KILN_OK, "%s", kiln_errmsg(ctx));
  kiln_function *f = kiln_function_new(ctx, "g", 1, &x, 1, &g, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *xv = kt_tensor(dt, rank, shape, vals);
  const kiln_tensor *o[1];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&xv, o), KILN_OK);
  kiln_tensor *res = copy_out(o[0]), *ref;
  ck_assert_int_eq(kl_ref_run(ctx, 1, &x, (const kiln_tensor *const *)&xv, 1, &g, &ref), KILN_OK);
  ck_assert(kt_same_bits(res, ref));
  kiln_tensor_free(ref);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
  return res;
}

static void expect(const kiln_tensor *t, int n, const double *want, double tol, const char *what) {
  ck_assert_int_eq(kiln_tensor_size(t), n);
  for (int i = 0; i < n; i++) {
    double g = kiln_tensor_get(t, i);
    ck_assert_msg(fabs(g - want[i]) <= tol, "%s[%d] = %.17g, want %.17g", what, i, g, want[i]);
  }
}

static kiln_node *h_max(kiln_node *x) { return kiln_max(x); }
static kiln_node *h_min0(kiln_node *x) { return kiln_min_axis(x, 0); }
static kiln_node *h_max1k(kiln_node *x) { return kiln_reduce(x, KILN_MAX, 1, A(1), 1); }
static kiln_node *h_prod(kiln_node *x) { return kiln_prod(x); }
static kiln_node *h_lse(kiln_node *x) { return kiln_logsumexp(x, 0, 0); }
static kiln_node *h_lse_rows(kiln_node *x) { return kiln_logsumexp(x, -1, 1); }
static kiln_node *h_mean_k(kiln_node *x) { return kiln_reduce(x, KILN_MEAN, 1, A(0), 1); }

START_TEST(hand_gradients) {
  kiln_tensor *g;
  /* max: every maximal element gets the whole gradient (Theano) */
  g = grad_of(KILN_FLOAT64, 1, S(4), V(1, 3, 3, 2), h_max);
  expect(g, 4, V(0, 1, 1, 0), 0, "d max([1,3,3,2])");
  kiln_tensor_free(g);
  /* -0.0 equals 0.0: both are maximal */
  g = grad_of(KILN_FLOAT64, 1, S(3), V(-0.0, 0.0, -1), h_max);
  expect(g, 3, V(1, 1, 0), 0, "d max([-0.0,0.0,-1])");
  kiln_tensor_free(g);
  /* a NaN maximum passes no gradient (NaN == NaN is false) */
  g = grad_of(KILN_FLOAT64, 1, S(3), V(1, NAN, 2), h_max);
  expect(g, 3, V(0, 0, 0), 0, "d max([1,nan,2])");
  kiln_tensor_free(g);
  /* min over axis 0, per column */
  g = grad_of(KILN_FLOAT32, 2, S(2, 3), V(1, 5, 2, 4, 5, -1), h_min0);
  expect(g, 6, V(1, 1, 0, 0, 1, 1), 0, "d min([[1,5,2],[4,5,-1]], axis 0)");
  kiln_tensor_free(g);
  g = grad_of(KILN_FLOAT64, 2, S(2, 2), V(1, 5, 4, 2), h_max1k);
  expect(g, 4, V(0, 1, 1, 0), 0, "d max([[1,5],[4,2]], axis 1, keepdims)");
  kiln_tensor_free(g);
  /* prod: no zero, one zero, two zeros */
  g = grad_of(KILN_FLOAT64, 1, S(2), V(2, 4), h_prod);
  expect(g, 2, V(4, 2), 0, "d prod([2,4])");
  kiln_tensor_free(g);
  g = grad_of(KILN_FLOAT64, 1, S(3), V(2, 0, 3), h_prod);
  expect(g, 3, V(0, 6, 0), 0, "d prod([2,0,3])");
  kiln_tensor_free(g);
  g = grad_of(KILN_FLOAT64, 1, S(3), V(0, 0, 3), h_prod);
  expect(g, 3, V(0, 0, 0), 0, "d prod([0,0,3])");
  kiln_tensor_free(g);
  g = grad_of(KILN_FLOAT64, 1, S(3), V(-0.0, 5, -2), h_prod);
  expect(g, 3, V(-10, 0, 0), 0, "d prod([-0.0,5,-2])");
  kiln_tensor_free(g);
  /* logsumexp: softmax */
  g = grad_of(KILN_FLOAT64, 1, S(2), V(0, log(3.0)), h_lse);
  expect(g, 2, V(0.25, 0.75), 1e-15, "d logsumexp([0,log 3])");
  kiln_tensor_free(g);
  g = grad_of(KILN_FLOAT64, 1, S(2), V(1000, 1000), h_lse);
  expect(g, 2, V(0.5, 0.5), 1e-15, "d logsumexp([1000,1000])");
  kiln_tensor_free(g);
  g = grad_of(KILN_FLOAT64, 2, S(2, 3), V(0, 0, 0, -1e3, 5, -1e3), h_lse_rows);
  expect(g, 6, V(1.0 / 3, 1.0 / 3, 1.0 / 3, 0, 1, 0), 1e-15, "d logsumexp(rows, keepdims)");
  kiln_tensor_free(g);
  /* mean with keepdims: 1/n each */
  g = grad_of(KILN_FLOAT64, 2, S(4, 2), V(1, 2, 3, 4, 5, 6, 7, 8), h_mean_k);
  expect(g, 8, V(0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25), 0, "d mean(axis 0, keepdims)");
  kiln_tensor_free(g);
}
END_TEST

/* --------------------------------------------- argmax: no gradient */

static void expect_nograd(kiln_node *cost, kiln_node *wrt, unsigned flags, const char *op) {
  kiln_ctx *ctx = kiln_node_ctx(cost);
  kiln_node *g = cost;
  ck_assert_int_eq(kiln_grad(cost, 1, &wrt, &g, flags), KILN_NOGRAD);
  ck_assert_ptr_null(g);
  ck_assert_int_eq(kiln_errcode(ctx), KILN_NOGRAD);
  char want[64];
  snprintf(want, sizeof want, "%s #", op);
  ck_assert_msg(strstr(kiln_errmsg(ctx), want) && strstr(kiln_errmsg(ctx), "has no gradient") &&
                    strstr(kiln_errmsg(ctx), "'cost'"),
                "%s", kiln_errmsg(ctx));
  kiln_clear_error(ctx);
}

START_TEST(argmax_no_gradient) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dmatrix(ctx, "x"), *w = kiln_dvector(ctx, "w");
  /* the cost uses the index as a number: the gradient would flow through argmax */
  kiln_node *am = kiln_argmax(x, 1);
  kiln_node *c1 = kiln_name(kiln_sum(kiln_mul(am, w)), "cost");
  expect_nograd(c1, x, 0, "argmax");
  expect_nograd(c1, x, KILN_GRAD_DISCONNECTED_ZERO, "argmax");
  /* also beside a path that has a gradient */
  kiln_node *c2 = kiln_name(kiln_add(kiln_sum(x), kiln_sum(kiln_argmin(x, 0))), "cost");
  expect_nograd(c2, x, 0, "argmin");
  /* keepdims, all axes, float32 */
  kiln_node *xf = kiln_fmatrix(ctx, "xf");
  kiln_node *i3 = kiln_sum(kiln_reduce(kiln_mul(xf, xf), KILN_ARGMAX, 0, NULL, 1));
  kiln_node *c3 = kiln_name(kiln_mul(i3, kiln_lit(ctx, 1.0)), "cost");
  expect_nograd(c3, xf, 0, "argmax");
  /* behind a logsumexp and more reductions */
  kiln_node *l4 = kiln_argmin(kiln_reduce(x, KILN_LOGSUMEXP, 1, A(0), 1), 1);
  kiln_node *c4 = kiln_name(kiln_mean(kiln_mul(kiln_max_axis(x, 1), l4)), "cost");
  expect_nograd(c4, x, 0, "argmin");
  /* the wrt w does not reach the argmax's input: fine, the index is data */
  kiln_node *gw = NULL;
  ck_assert_msg(kiln_grad(c1, 1, &w, &gw, 0) == KILN_OK, "%s", kiln_errmsg(ctx));
  ck_assert_ptr_nonnull(gw);
  /* an argmax that the cost does not use: fine */
  kiln_node *c5 = kiln_name(kiln_sum(kiln_sqr(x)), "cost"), *gx = NULL;
  kiln_node *unused = kiln_argmax(x, 0);
  (void)unused;
  ck_assert_int_eq(kiln_grad(c5, 1, &x, &gx, 0), KILN_OK);
  /* argmax of an integer cast of x: the path already passes through
  ** integers, which pass no gradient (zeros, as Theano) -- no error */
  kiln_node *c6 = kiln_sum(kiln_argmax(kiln_abs(kl_cast(x, KILN_INT32, __FILE__, __LINE__)), 0));
  kiln_node *c6f = kiln_name(kiln_mul(c6, kiln_lit(ctx, 1.0)), "cost");
  kiln_node *g6 = NULL;
  ck_assert_msg(kiln_grad(c6f, 1, &x, &g6, 0) == KILN_OK, "%s", kiln_errmsg(ctx));
  kiln_node *outs[] = {gw, g6};
  kiln_node *ins[] = {x, w};
  kiln_function *f = kiln_function_new(ctx, "ok", 2, ins, 2, outs, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 2, S(2, 3), V(1, 7, 3, 9, 2, 8));
  kiln_tensor *wv = kt_tensor(KILN_FLOAT64, 1, S(2), V(0.5, -2));
  const kiln_tensor *o[2];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)(kiln_tensor *[]){xv, wv}, o), KILN_OK);
  /* d sum(argmax(x, 1) * w) / dw = argmax(x, 1) = [1, 0] */
  ck_assert(kiln_tensor_get(o[0], 0) == 1.0 && kiln_tensor_get(o[0], 1) == 0.0);
  for (int e = 0; e < 6; e++)
    ck_assert(kiln_tensor_get(o[1], e) == 0.0);
  kiln_tensor_free(xv);
  kiln_tensor_free(wv);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ suite */

static Suite *suite(void) {
  Suite *s = suite_create("grad_reduce");
  TCase *tc = tcase_create("finite differences");
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, fd_reduction, 0, N_FD_OPS * N_AXES * 2 * 3);
  tcase_add_loop_test(tc, fd_composite, 0, 5);
  tcase_add_test(tc, fd_prod_zeros);
  suite_add_tcase(s, tc);
  tc = tcase_create("values");
  tcase_add_test(tc, hand_gradients);
  tcase_add_test(tc, argmax_no_gradient);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return kt_run(suite()); }
