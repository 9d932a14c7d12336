/*
** test_ops_elem.c -- the elementwise ops beyond arithmetic: sign, log1p,
** expm1, tanh, sigmoid, softplus, relu, clip, the comparisons, logical
** and/or/not, where, isnan/isinf and cast.
**
** First the JIT against the reference evaluator (kl_ref_run) bit for bit
** (any NaN equals any NaN), for every op on every dtype where it is defined,
** over broadcast patterns and special values (NaN, +-inf, +-0, subnormals,
** the magnitudes where tanh, sigmoid and softplus saturate, the dtype
** limits), compiled both optimized (fused, constant folded) and with
** no_optimize. Then values worked out by hand from numpy's semantics and
** from the formulas documented in kiln.h, independent of both; then types,
** errors and fusion of the cheap ops.
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

#define MAXOUT 12
#define D KILN_DYN
#define LN2 0.69314718055994530942
#define E_1 1.7182818284590452354 /* e - 1 */

static const char *dn(int dt) { return kiln_dtype_name((kiln_dtype)dt); }
static bool is_float(int dt) { return dt == KILN_FLOAT32 || dt == KILN_FLOAT64; }

static kiln_ctx *new_ctx(void) {
  kiln_ctx *ctx = kiln_ctx_new();
  ck_assert_ptr_nonnull(ctx);
  return ctx;
}

/* ------------------------------------------------------------- values */

/* Special float64 values: the usual suspects, then where tanh (19, 20),
** sigmoid and softplus (37, 40, 709..800) saturate or under/overflow, then
** values casts care about (truncation, saturation at each integer dtype). */
static const double F64S[] = {
    NAN,     INFINITY, -INFINITY,    0.0,           -0.0,       1.0,     -1.0,    0.5,
    -0.5,    2.0,      -2.0,         1e-10,         -1e-10,     5e-324,  -3e-310, DBL_MIN,
    DBL_MAX, -DBL_MAX, 1e300,        -1e300,        19.0,       -19.0,   20.0,    -20.0,
    37.0,    -37.0,    40.0,         -40.0,         709.0,      -709.0,  710.0,   -710.0,
    745.0,   -745.0,   800.0,        -800.0,        -0.9999999, 300.0,   -1.5,    255.5,
    127.9,   -128.9,   2147483647.5, -2147483649.0, 9.3e18,     -9.3e18, -NAN};
static const double F32S[] = {
    NAN,   INFINITY, -INFINITY,    0.0,           -0.0,   1.0,     -1.0,    0.5,      -0.5, 2.0,
    -2.0,  1e-10,    -1e-10,       1e-45,         -3e-40, FLT_MIN, FLT_MAX, -FLT_MAX, 3e38, -3e38,
    9.0,   -9.0,     10.0,         -10.0,         17.0,   -17.0,   20.0,    -20.0,    88.0, -88.0,
    89.0,  -89.0,    104.0,        -104.0,        110.0,  -110.0,  -0.9999, 300.0,    -1.5, 255.5,
    127.9, -128.9,   2147483647.0, -2147483904.0, 9.3e18, -9.3e18, -NAN};
#define N_FS ((int)(sizeof F64S / sizeof *F64S))

static int64_t int_special(kiln_dtype dt, int j, int *n) {
  int64_t lo = kt_int_lo[dt], hi = kt_int_hi[dt];
  const int64_t l[] = {lo,  lo + 1, hi,  hi - 1, 0,   1,   -1,  2,   -2,
                       100, -100,   127, 128,    255, 256, 300, -129};
  *n = (int)(sizeof l / sizeof *l);
  return l[j % *n];
}

static int n_specials(kiln_dtype dt) {
  int n = N_FS;
  if (!is_float(dt)) int_special(dt, 0, &n);
  if (dt == KILN_BOOL) n = 2;
  return n;
}

/* Special value j of dtype dt into element i of t. */
static void put_special(kiln_tensor *t, int64_t i, int j) {
  kiln_dtype dt = (kiln_dtype)t->dtype;
  int n;
  j %= n_specials(dt);
  if (dt == KILN_FLOAT64)
    ((double *)t->data)[i] = F64S[j];
  else if (dt == KILN_FLOAT32)
    ((float *)t->data)[i] = (float)F32S[j];
  else if (dt == KILN_BOOL)
    ((uint8_t *)t->data)[i] = (uint8_t)j;
  else
    kt_put_int(dt, t->data, i, int_special(dt, j, &n));
}

static uint64_t rand_u64(uint64_t *s) {
  uint64_t hi = (uint64_t)(kt_rand(s) * 4294967296.0);
  uint64_t lo = (uint64_t)(kt_rand(s) * 4294967296.0);
  return hi << 32 | lo;
}

static void put_random(kiln_tensor *t, int64_t i, uint64_t *s) {
  kiln_dtype dt = (kiln_dtype)t->dtype;
  if (is_float(dt)) {
    double r = kt_rand(s), sign = kt_rand(s) < 0.5 ? -1.0 : 1.0, v;
    if (r < 0.4)
      v = kt_rand(s) * 20 - 10;
    else if (r < 0.55)
      v = floor(kt_rand(s) * 21 - 10);
    else if (r < 0.8)
      v = kt_rand(s) * 200 - 100;
    else if (r < 0.9)
      v = sign * ldexp(0.5 + kt_rand(s), -(int)(kt_rand(s) * 60)); /* small: log1p, expm1 */
    else {
      int emin = dt == KILN_FLOAT32 ? -150 : -1075, emax = dt == KILN_FLOAT32 ? 128 : 1024;
      v = sign * ldexp(0.5 + kt_rand(s), emin + (int)(kt_rand(s) * (emax - emin)));
    }
    if (dt == KILN_FLOAT64)
      ((double *)t->data)[i] = v;
    else
      ((float *)t->data)[i] = (float)v;
  } else if (dt == KILN_BOOL) {
    ((uint8_t *)t->data)[i] = kt_rand(s) < 0.5;
  } else {
    int64_t v = kt_rand(s) < 0.5 ? (int64_t)(kt_rand(s) * 41) - 20 : (int64_t)rand_u64(s);
    kt_put_int(dt, t->data, i, v);
  }
}

/* A tensor of dtype dt and shape: every other element (while they last) is
** one of the dtype's special values, from an offset the seed picks; the
** others are random. Deterministic in seed. */
static kiln_tensor *gen(kiln_dtype dt, int rank, const int64_t *shape, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
  kiln_tensor *t = kiln_tensor_new(dt, rank, shape, NULL);
  ck_assert_ptr_nonnull(t);
  int n = n_specials(dt), off = (int)(rand_u64(&s) % (uint64_t)n);
  for (int64_t i = 0; i < t->size; i++) {
    if (i % 2 == 0 && i / 2 < n)
      put_special(t, i, (int)(i / 2) + off);
    else
      put_random(t, i, &s);
  }
  return t;
}

/* A tensor whose element i is special value i (cyclically; at most lim of
** them): (n,1) against (1,n) meets every pair. */
static kiln_tensor *gen_grid(kiln_dtype dt, int rank, const int64_t *shape) {
  kiln_tensor *t = kiln_tensor_new(dt, rank, shape, NULL);
  ck_assert_ptr_nonnull(t);
  for (int64_t i = 0; i < t->size; i++)
    put_special(t, i, (int)i);
  return t;
}

/* ------------------------------------------------------------ comparing */

static double at(const kiln_tensor *t, int64_t i) {
  return kl_load_f64((kiln_dtype)t->dtype, t->data, i);
}

enum { OPT = 1, NOOPT = 2, BOTH = 3 }; /* which compilations run_sets makes */

/* Compiles outs[] over ins[] -- optimized (fused, constant folded) and/or
** with no_optimize, as modes says -- and calls each compiled function with
** every value set vals[s][0..n_in-1] (the first set twice, so reused
** buffers are checked too), asserting every output equals kl_ref_run's bit
** for bit. keep (may be NULL) receives copies of the outputs of the last
** call with the first set. */
static void run_sets(kiln_ctx *ctx, const char *what, int n_in, kiln_node *const *ins, int n_sets,
                     kiln_tensor *const *const *vals, int n_out, kiln_node *const *outs, int modes,
                     kiln_tensor **keep) {
  ck_assert(n_out <= MAXOUT);
  for (int k = 0; k < n_out; k++)
    ck_assert_msg(outs[k] != NULL, "%s: output %d did not build: %s", what, k, kiln_errmsg(ctx));
  for (int mode = 0; mode < 2; mode++) {
    if (!(modes >> mode & 1)) continue;
    kiln_options o = {.size = sizeof o, .no_optimize = mode};
    kiln_function *f = kiln_function_new_opts(ctx, what, n_in, ins, n_out, outs, 0, NULL, &o);
    ck_assert_msg(f != NULL, "%s: function_new: %s", what, kiln_errmsg(ctx));
    for (int call = 0; call <= n_sets; call++) {
      int set = call == 0 ? 0 : call - 1;
      kiln_tensor *ref[MAXOUT];
      kiln_status st =
          kl_ref_run(ctx, n_in, ins, (const kiln_tensor *const *)vals[set], n_out, outs, ref);
      ck_assert_msg(st == KILN_OK, "%s: reference: %s", what, kiln_errmsg(ctx));
      const kiln_tensor *got[MAXOUT];
      st = kiln_call(f, (const kiln_tensor *const *)vals[set], got);
      ck_assert_msg(st == KILN_OK, "%s: call: %s", what, kiln_errmsg(ctx));
      for (int k = 0; k < n_out; k++) {
        if (kt_same_bits(got[k], ref[k])) continue;
        char d[512];
        kt_describe_diff(got[k], ref[k], d, sizeof d);
        ck_abort_msg("%s: output %d (%s, value set %d): JIT differs from reference: %s", what, k,
                     mode ? "no_optimize" : "optimized", set, d);
      }
      if (keep && call == 1)
        for (int k = 0; k < n_out; k++) {
          kiln_tensor_free(keep[k]);
          keep[k] = kt_clone(got[k]);
        }
      for (int k = 0; k < n_out; k++)
        kiln_tensor_free(ref[k]);
    }
    kiln_function_free(f);
  }
}

/* One value set, both compilations. */
static void run_both(kiln_ctx *ctx, const char *what, int n_in, kiln_node *const *ins,
                     kiln_tensor *const *vals, int n_out, kiln_node *const *outs,
                     kiln_tensor **keep) {
  if (keep)
    for (int k = 0; k < n_out; k++)
      keep[k] = NULL;
  run_sets(ctx, what, n_in, ins, 1, &vals, n_out, outs, BOTH, keep);
}

/* ------------------------------------------------------------ unary ops */

typedef kiln_node *(*un_fn)(kiln_node *, const char *, int);
typedef kiln_node *(*bin_fn)(kiln_node *, kiln_node *, const char *, int);

enum {
  U_SIGN,
  U_LOG1P,
  U_EXPM1,
  U_TANH,
  U_SIGMOID,
  U_SOFTPLUS,
  U_RELU,
  U_NOT,
  U_ISNAN,
  U_ISINF,
  N_U
};
static const struct {
  const char *name;
  un_fn fn;
  int out; /* 0: the operand's dtype, 1: float (as exp), 2: bool */
} UN[N_U] = {
    {"sign", kiln_sign_at, 0},       {"log1p", kiln_log1p_at, 1},
    {"expm1", kiln_expm1_at, 1},     {"tanh", kiln_tanh_at, 1},
    {"sigmoid", kiln_sigmoid_at, 1}, {"softplus", kiln_softplus_at, 1},
    {"relu", kiln_relu_at, 0},       {"logical_not", kiln_logical_not_at, 2},
    {"isnan", kiln_isnan_at, 2},     {"isinf", kiln_isinf_at, 2},
};

static kiln_dtype want_dtype(int out, kiln_dtype dt) {
  if (out == 2) return KILN_BOOL;
  if (out == 1) return kl_float_of(dt);
  return dt;
}

/* Shapes for the dynamic (?,?) operand of check_unary, one value set each. */
static const int64_t USHAPES[][2] = {{1, 97}, {1, 5}, {0, 3}, {7, 33}, {3, 1}};
#define N_USHAPES ((int)(sizeof USHAPES / sizeof *USHAPES))

/* op on static (2,3), rank-0 and static (2,3,4) operands and on a dynamic
** (?,?) one given several shapes (the first: every special value); the
** dynamic one also twice in one kernel (two uses: cheap ops are recomputed
** in place) and after a sum, as a rank-0 scalar in straight-line code. */
static void check_unary(int op, kiln_dtype dt) {
  kiln_ctx *ctx = new_ctx();
  if (op == U_SIGN && dt == KILN_BOOL) {
    ck_assert_ptr_null(kiln_sign(kiln_input(ctx, "a", dt, 1, NULL)));
    ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
    kiln_ctx_free(ctx);
    return;
  }
  kiln_node *in[4] = {
      kiln_input(ctx, "a23", dt, 2, (int64_t[]){2, 3}), kiln_input(ctx, "a0", dt, 0, NULL),
      kiln_input(ctx, "a234", dt, 3, (int64_t[]){2, 3, 4}), kiln_input(ctx, "ad", dt, 2, NULL)};
  kiln_node *outs[6];
  for (int k = 0; k < 4; k++)
    outs[k] = UN[op].fn(in[k], __FILE__, __LINE__);
  outs[4] = kiln_add(kiln_cast(outs[3], KILN_FLOAT64), kiln_cast(outs[3], KILN_FLOAT64));
  outs[5] = UN[op].fn(kiln_sum(in[3]), __FILE__, __LINE__);
  for (int k = 0; k < 4; k++)
    ck_assert_msg(outs[k] && kiln_node_dtype(outs[k]) == want_dtype(UN[op].out, dt), "%s %s: %s",
                  UN[op].name, dn(dt), kiln_errmsg(ctx));
  kiln_tensor *v[N_USHAPES][4];
  kiln_tensor *const *sets[N_USHAPES];
  for (int p = 0; p < N_USHAPES; p++) {
    uint64_t seed = (uint64_t)(op * 1000 + dt * 100 + p * 10);
    v[p][0] = gen(dt, 2, (int64_t[]){2, 3}, seed + 1);
    v[p][1] = gen(dt, 0, NULL, seed + 2);
    v[p][2] = gen(dt, 3, (int64_t[]){2, 3, 4}, seed + 3);
    v[p][3] = gen(dt, 2, USHAPES[p], seed + 4);
    sets[p] = v[p];
  }
  char what[64];
  snprintf(what, sizeof what, "%s %s", UN[op].name, dn(dt));
  kiln_tensor *got[6] = {NULL};
  run_sets(ctx, what, 4, in, N_USHAPES, sets, 6, outs, BOTH, got);
  /* the inputs did exercise the interesting cases (set 0: (1,97)) */
  int n_nan = 0, n_true = 0;
  for (int64_t i = 0; i < got[3]->size; i++) {
    n_nan += is_float(got[3]->dtype) && isnan(at(got[3], i));
    n_true += got[3]->dtype == KILN_BOOL && ((uint8_t *)got[3]->data)[i];
  }
  if (is_float(dt) && UN[op].out != 2) ck_assert_msg(n_nan > 0, "%s: no NaN in the result", what);
  if ((op == U_ISNAN || op == U_ISINF) && is_float(dt))
    ck_assert_msg(n_true >= 2, "%s: %d true", what, n_true);
  if ((op == U_ISNAN || op == U_ISINF) && !is_float(dt))
    ck_assert_msg(n_true == 0, "%s: %d true", what, n_true);
  for (int k = 0; k < 6; k++)
    kiln_tensor_free(got[k]);
  for (int p = 0; p < N_USHAPES; p++)
    for (int k = 0; k < 4; k++)
      kiln_tensor_free(v[p][k]);
  kiln_ctx_free(ctx);
}

START_TEST(un_sign) { check_unary(U_SIGN, (kiln_dtype)_i); }
END_TEST
START_TEST(un_log1p) { check_unary(U_LOG1P, (kiln_dtype)_i); }
END_TEST
START_TEST(un_expm1) { check_unary(U_EXPM1, (kiln_dtype)_i); }
END_TEST
START_TEST(un_tanh) { check_unary(U_TANH, (kiln_dtype)_i); }
END_TEST
START_TEST(un_sigmoid) { check_unary(U_SIGMOID, (kiln_dtype)_i); }
END_TEST
START_TEST(un_softplus) { check_unary(U_SOFTPLUS, (kiln_dtype)_i); }
END_TEST
START_TEST(un_relu) { check_unary(U_RELU, (kiln_dtype)_i); }
END_TEST
START_TEST(un_not) { check_unary(U_NOT, (kiln_dtype)_i); }
END_TEST
START_TEST(un_isnan) { check_unary(U_ISNAN, (kiln_dtype)_i); }
END_TEST
START_TEST(un_isinf) { check_unary(U_ISINF, (kiln_dtype)_i); }
END_TEST

/* ----------------------------------------- comparisons and logical ops */

enum { B_LT, B_LE, B_GT, B_GE, B_EQ, B_NE, B_AND, B_OR, N_B };
static const struct {
  const char *name;
  bin_fn fn;
} BIN[N_B] = {{"lt", kiln_lt_at},
              {"le", kiln_le_at},
              {"gt", kiln_gt_at},
              {"ge", kiln_ge_at},
              {"eq", kiln_eq_at},
              {"ne", kiln_ne_at},
              {"logical_and", kiln_logical_and_at},
              {"logical_or", kiln_logical_or_at}};

/* Shapes of a and b given to the dynamic (?,?) operands of compare_logical. */
static const int64_t BSHAPES[][2][2] = {
    {{2, 3}, {1, 3}},   {{1, 1}, {2, 3}}, {{3, 1}, {1, 4}},
    {{1, 67}, {1, 67}}, {{0, 3}, {1, 3}}, {{5, 1}, {5, 1}},
};
#define N_BSHAPES ((int)(sizeof BSHAPES / sizeof *BSHAPES))

/* All eight ops on a of dtype da and b of dtype db: every pair of special
** values ((47,1) against (1,47), static), then dynamic (?,?) operands given
** several shapes that broadcast at call time, and a rank-0 operand. */
START_TEST(compare_logical) {
  kiln_dtype da = (kiln_dtype)(_i / KILN_N_DTYPES), db = (kiln_dtype)(_i % KILN_N_DTYPES);
  kiln_ctx *ctx = new_ctx();
  char what[128];
  /* the grid */
  kiln_node *a = kiln_input(ctx, "a", da, 2, (int64_t[]){47, 1});
  kiln_node *b = kiln_input(ctx, "b", db, 2, (int64_t[]){1, 47});
  kiln_node *outs[MAXOUT];
  for (int op = 0; op < N_B; op++) {
    outs[op] = BIN[op].fn(a, b, __FILE__, __LINE__);
    ck_assert_msg(outs[op] && kiln_node_dtype(outs[op]) == KILN_BOOL, "%s: %s", BIN[op].name,
                  kiln_errmsg(ctx));
  }
  kiln_tensor *v[2] = {gen_grid(da, 2, (int64_t[]){47, 1}), gen_grid(db, 2, (int64_t[]){1, 47})};
  kiln_node *ins[3] = {a, b, NULL};
  snprintf(what, sizeof what, "%s ~ %s special pairs", dn(da), dn(db));
  kiln_tensor *got[MAXOUT] = {NULL};
  run_sets(ctx, what, 2, ins, 1, (kiln_tensor *const *const[]){v}, N_B, outs, da == db ? BOTH : OPT,
           got);
  for (int op = 0; op < N_B; op++) { /* both truth values occur in every result */
    int n1 = 0;
    for (int64_t i = 0; i < got[op]->size; i++)
      n1 += ((uint8_t *)got[op]->data)[i] != 0;
    ck_assert_msg(n1 > 0 && n1 < got[op]->size, "%s %s: %d of %lld true", what, BIN[op].name, n1,
                  (long long)got[op]->size);
    kiln_tensor_free(got[op]);
  }
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  /* dynamic shapes */
  ins[0] = kiln_input(ctx, "a", da, 2, NULL);
  ins[1] = kiln_input(ctx, "b", db, 2, NULL);
  ins[2] = kiln_input(ctx, "s", db, 0, NULL);
  for (int op = 0; op < N_B; op++)
    outs[op] = BIN[op].fn(ins[0], ins[1], __FILE__, __LINE__);
  outs[N_B] = kiln_lt(ins[2], ins[0]);
  outs[N_B + 1] = kiln_logical_or(ins[0], ins[2]);
  kiln_tensor *vs[N_BSHAPES][3];
  kiln_tensor *const *sets[N_BSHAPES];
  for (int p = 0; p < N_BSHAPES; p++) {
    uint64_t seed = (uint64_t)_i * 31 + (uint64_t)p * 3;
    vs[p][0] = gen(da, 2, BSHAPES[p][0], seed);
    vs[p][1] = gen(db, 2, BSHAPES[p][1], seed + 1);
    vs[p][2] = gen(db, 0, NULL, seed + 2);
    sets[p] = vs[p];
  }
  snprintf(what, sizeof what, "%s ~ %s dynamic", dn(da), dn(db));
  run_sets(ctx, what, 3, ins, N_BSHAPES, sets, N_B + 2, outs, OPT, NULL);
  for (int p = 0; p < N_BSHAPES; p++)
    for (int k = 0; k < 3; k++)
      kiln_tensor_free(vs[p][k]);
  kiln_ctx_free(ctx);
}
END_TEST

/* Comparisons and logical ops with weak literals on either side. */
START_TEST(compare_literals) {
  kiln_dtype dt = (kiln_dtype)_i;
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, 2, NULL);
  kiln_node *outs[] = {
      kiln_lt(x, kiln_lit(ctx, 1)),          kiln_ge(kiln_lit(ctx, 0), x),
      kiln_eq(x, kiln_lit(ctx, 0.5)),        kiln_ne(kiln_lit(ctx, 2.5), x),
      kiln_gt(x, kiln_lit(ctx, -0.0)),       kiln_le(x, kiln_lit(ctx, 1e300)),
      kiln_logical_and(x, kiln_lit(ctx, 1)), kiln_logical_or(kiln_lit(ctx, 0.0), x),
      kiln_logical_not(kiln_lit(ctx, 3)),    kiln_eq(x, x),
  };
  kiln_tensor *v = gen(dt, 2, (int64_t[]){8, 9}, 777 + (uint64_t)_i);
  char what[64];
  snprintf(what, sizeof what, "comparisons with literals, %s", dn(dt));
  run_both(ctx, what, 1, &x, &v, (int)(sizeof outs / sizeof *outs), outs, NULL);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- where */

/* where(c, a, b) with c of dtype dc, a of da, b of da (and of another
** dtype): static shapes where all three broadcast, then dynamic (?,?)
** operands given several shapes. */
START_TEST(where_all) {
  kiln_dtype dc = (kiln_dtype)(_i / KILN_N_DTYPES), da = (kiln_dtype)(_i % KILN_N_DTYPES);
  kiln_dtype db = (kiln_dtype)((da + 3) % KILN_N_DTYPES);
  static const int64_t shapes[][3][2] = {
      {{2, 1}, {1, 3}, {1, 1}}, /* first: the static shapes */
      {{2, 3}, {2, 3}, {2, 3}}, {{1, 61}, {1, 1}, {1, 61}},
      {{1, 9}, {9, 1}, {9, 9}}, {{0, 2}, {1, 2}, {0, 1}},
  };
  enum { NS = (int)(sizeof shapes / sizeof *shapes) };
  kiln_ctx *ctx = new_ctx();
  kiln_tensor *v[NS][4];
  kiln_tensor *const *sets[NS];
  for (int p = 0; p < NS; p++) {
    uint64_t seed = (uint64_t)_i * 17 + (uint64_t)p * 5;
    v[p][0] = gen(dc, 2, shapes[p][0], seed);
    v[p][1] = gen(da, 2, shapes[p][1], seed + 1);
    v[p][2] = gen(da, 2, shapes[p][2], seed + 2);
    v[p][3] = gen(db, 2, shapes[p][2], seed + 3);
    sets[p] = v[p];
  }
  for (int dyn = 0; dyn < 2; dyn++) {
    const char *nm[4] = {"c", "a", "b", "b2"};
    kiln_dtype dts[4] = {dc, da, da, db};
    kiln_node *in[4];
    for (int k = 0; k < 4; k++)
      in[k] = kiln_input(ctx, nm[k], dts[k], 2, dyn ? NULL : shapes[0][k < 3 ? k : 2]);
    kiln_node *outs[] = {kiln_where(in[0], in[1], in[2]), kiln_where(in[0], in[1], in[3]),
                         kiln_where(in[0], kiln_lit(ctx, 2), in[1]),
                         kiln_where(kiln_logical_not(in[0]), in[2], kiln_lit(ctx, 0.5))};
    ck_assert_msg(outs[0] && kiln_node_dtype(outs[0]) == da, "%s", kiln_errmsg(ctx));
    ck_assert_msg(outs[1] && kiln_node_dtype(outs[1]) == kiln_promote(da, db), "%s",
                  kiln_errmsg(ctx));
    char what[128];
    snprintf(what, sizeof what, "where(%s, %s, %s|%s) %s", dn(dc), dn(da), dn(da), dn(db),
             dyn ? "dynamic" : "static");
    run_sets(ctx, what, 4, in, dyn ? NS : 1, sets, 4, outs, !dyn && dc == KILN_BOOL ? BOTH : OPT,
             NULL);
  }
  for (int p = 0; p < NS; p++)
    for (int k = 0; k < 4; k++)
      kiln_tensor_free(v[p][k]);
  kiln_ctx_free(ctx);
}
END_TEST

/* ----------------------------------------------------------------- clip */

START_TEST(clip_all) {
  kiln_dtype dt = (kiln_dtype)_i;
  static const struct {
    const char *name;
    int r[3];
    int64_t s[3][3], c[3][3];
  } pats[] = {
      {"special triples (12,1,1) (1,12,1) (1,1,12)",
       {3, 3, 3},
       {{12, 1, 1}, {1, 12, 1}, {1, 1, 12}},
       {{12, 1, 1}, {1, 12, 1}, {1, 1, 12}}},
      {"(2,3) (3,) ()", {2, 1, 0}, {{2, 3}, {3}, {0}}, {{2, 3}, {3}, {0}}},
      {"(2,1) (1,3) (2,1)", {2, 2, 2}, {{2, 1}, {1, 3}, {2, 1}}, {{2, 1}, {1, 3}, {2, 1}}},
      {"(?,) (?,) (?,) given 1, 41, 41", {1, 1, 1}, {{D}, {D}, {D}}, {{1}, {41}, {41}}},
      {"(?,?) () () given (5,20)", {2, 0, 0}, {{D, D}, {0}, {0}}, {{5, 20}, {0}, {0}}},
  };
  kiln_ctx *ctx = new_ctx();
  for (int p = 0; p < (int)(sizeof pats / sizeof *pats); p++) {
    kiln_node *in[3];
    kiln_tensor *v[3];
    for (int k = 0; k < 3; k++) {
      in[k] = kiln_input(ctx, k == 0 ? "x" : k == 1 ? "lo" : "hi", dt, pats[p].r[k], pats[p].s[k]);
      v[k] = p == 0 ? gen_grid(dt, 3, pats[p].c[k])
                    : gen(dt, pats[p].r[k], pats[p].c[k], (uint64_t)(_i * 10 + p * 3 + k));
    }
    kiln_node *outs[] = {
        kiln_clip(in[0], in[1], in[2]),
        kiln_clip(in[0], kiln_lit(ctx, 0), kiln_lit(ctx, 1)),
        kiln_clip(in[0], kiln_lit(ctx, -0.5), in[2]),
        kiln_clip(in[0], in[1], kiln_scalar(ctx, KILN_FLOAT32, 2.5)),
        kiln_relu(kiln_clip(in[0], in[2], in[1])),
    };
    ck_assert_msg(outs[0] && kiln_node_dtype(outs[0]) == dt, "%s", kiln_errmsg(ctx));
    ck_assert_msg(outs[1] && kiln_node_dtype(outs[1]) == (dt == KILN_BOOL ? KILN_INT64 : dt), "%s",
                  kiln_errmsg(ctx));
    char what[128];
    snprintf(what, sizeof what, "clip %s %s", dn(dt), pats[p].name);
    run_sets(ctx, what, 3, in, 1, (kiln_tensor *const *const[]){v}, 5, outs, p == 0 ? BOTH : OPT,
             NULL);
    for (int k = 0; k < 3; k++)
      kiln_tensor_free(v[k]);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* clip of operands of three different dtypes: they promote together. */
START_TEST(clip_mixed) {
  kiln_dtype dx = (kiln_dtype)(_i / KILN_N_DTYPES), dl = (kiln_dtype)(_i % KILN_N_DTYPES);
  kiln_dtype dh = (kiln_dtype)((dx + dl) % KILN_N_DTYPES);
  kiln_ctx *ctx = new_ctx();
  kiln_node *in[3] = {kiln_input(ctx, "x", dx, 2, (int64_t[]){D, 4}),
                      kiln_input(ctx, "lo", dl, 1, NULL), kiln_input(ctx, "hi", dh, 0, NULL)};
  kiln_node *y = kiln_clip(in[0], in[1], in[2]);
  ck_assert_msg(y != NULL, "%s", kiln_errmsg(ctx));
  ck_assert_int_eq(kiln_node_dtype(y), kiln_promote(kiln_promote(dx, dl), dh));
  kiln_tensor *v[3] = {gen(dx, 2, (int64_t[]){9, 4}, (uint64_t)_i),
                       gen(dl, 1, (int64_t[]){4}, (uint64_t)_i + 100),
                       gen(dh, 0, NULL, (uint64_t)_i + 200)};
  char what[128];
  snprintf(what, sizeof what, "clip(%s, %s, %s)", dn(dx), dn(dl), dn(dh));
  run_sets(ctx, what, 3, in, 1, (kiln_tensor *const *const[]){v}, 1, &y, OPT, NULL);
  for (int k = 0; k < 3; k++)
    kiln_tensor_free(v[k]);
  kiln_ctx_free(ctx);
}
END_TEST

/* ----------------------------------------------------------------- cast */

/* cast from every dtype to every dtype, on every special value of the
** source dtype, alone, fused into arithmetic and on a rank-0 value. */
START_TEST(cast_all) {
  kiln_dtype from = (kiln_dtype)(_i / KILN_N_DTYPES), to = (kiln_dtype)(_i % KILN_N_DTYPES);
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", from, 1, NULL), *s = kiln_input(ctx, "s", from, 0, NULL);
  kiln_node *c = kiln_cast(x, to);
  ck_assert_msg(c != NULL && kiln_node_dtype(c) == to, "%s", kiln_errmsg(ctx));
  ck_assert(from != to || c == x); /* a cast to its own dtype is the node itself */
  kiln_node *outs[] = {c, kiln_cast(kiln_cast(x, to), from),
                       kiln_eq(kiln_cast(x, to), kiln_cast(s, to)), kiln_cast(s, to),
                       kiln_cast(kiln_add(x, s), to)};
  kiln_node *ins[2] = {x, s};
  kiln_tensor *v[3][2];
  kiln_tensor *const *sets[3];
  for (int p = 0; p < 3; p++) {
    v[p][0] = gen(from, 1,
                  (int64_t[]){p == 0   ? 101
                              : p == 1 ? 7
                                       : 1},
                  (uint64_t)_i * 3 + (uint64_t)p);
    v[p][1] = gen(from, 0, NULL, (uint64_t)_i + 1000 + (uint64_t)p);
    sets[p] = v[p];
  }
  char what[96];
  snprintf(what, sizeof what, "cast %s -> %s", dn(from), dn(to));
  run_sets(ctx, what, 2, ins, 3, sets, 5, outs, BOTH, NULL);
  for (int p = 0; p < 3; p++) {
    kiln_tensor_free(v[p][0]);
    kiln_tensor_free(v[p][1]);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------- numpy semantics by hand */

/* The JIT result (checked against the reference) of op over values vals
** given as doubles (converted to dt as a C cast would; see kt_tensor). */
static kiln_tensor *un_vals(un_fn fn, kiln_dtype dt, int n, const double *vals) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, 1, NULL);
  kiln_node *y = fn(x, __FILE__, __LINE__);
  kiln_tensor *v = kt_tensor(dt, 1, (int64_t[]){n}, vals);
  kiln_tensor *got = NULL;
  run_both(ctx, dn(dt), 1, &x, &v, 1, &y, &got);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
  return got;
}

/* x == want, same sign of zero; NaN matches NaN */
static bool same(double x, double want) {
  if (isnan(want)) return isnan(x);
  return x == want && signbit(x) == signbit(want);
}

static void expect(const kiln_tensor *t, kiln_dtype dt, int n, const double *want,
                   const char *what) {
  ck_assert_msg(t->dtype == dt, "%s: dtype %s, want %s", what, dn(t->dtype), dn(dt));
  ck_assert_int_ge(t->size, n); /* the first n elements */
  for (int i = 0; i < n; i++)
    ck_assert_msg(same(at(t, i), want[i]), "%s: element %d is %a (%.17g), want %a", what, i,
                  at(t, i), at(t, i), want[i]);
}

static double ulp_diff(double a, double b) {
  return fabs(a - b) / (nextafter(fabs(b), INFINITY) - fabs(b));
}

START_TEST(hand_sigmoid) {
  double x[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 40.0, -40.0, -800.0, 800.0, 1.0, -1.0};
  kiln_tensor *t = un_vals(kiln_sigmoid_at, KILN_FLOAT64, 11, x);
  /* 0.5 exactly; 1/(1+0) = 1; 0/(1+0) = 0; 1/(1+4e-18) rounds to 1;
  ** below 0 the stable form gives t/(1+t) = exp(-40) itself, not 0 */
  expect(t, KILN_FLOAT64, 9, (double[]){0.5, 0.5, 1.0, 0.0, NAN, 1.0, exp(-40.0), 0.0, 1.0},
         "sigmoid f64");
  ck_assert(at(t, 6) > 4.2e-18 && at(t, 6) < 4.3e-18);
  /* sigmoid(1) = 0.7310585786300049, sigmoid(-1) = 0.2689414213699951 */
  ck_assert_msg(ulp_diff(at(t, 9), 0.7310585786300049) <= 1, "sigmoid(1) = %.17g", at(t, 9));
  ck_assert_msg(ulp_diff(at(t, 10), 0.2689414213699951) <= 1, "sigmoid(-1) = %.17g", at(t, 10));
  kiln_tensor_free(t);
  t = un_vals(kiln_sigmoid_at, KILN_FLOAT32, 6,
              (double[]){0.0, INFINITY, -INFINITY, 20.0, -20.0, -110.0});
  expect(t, KILN_FLOAT32, 6, (double[]){0.5, 1.0, 0.0, 1.0, (double)expf(-20.0f), 0.0},
         "sigmoid f32");
  ck_assert(at(t, 4) > 2.06e-9 && at(t, 4) < 2.07e-9);
  kiln_tensor_free(t);
  /* small integers give float32: sigmoid(int8 0) = 0.5f */
  t = un_vals(kiln_sigmoid_at, KILN_INT8, 2, (double[]){0, -128});
  expect(t, KILN_FLOAT32, 2, (double[]){0.5, (double)(expf(-128.0f) / (1.0f + expf(-128.0f)))},
         "sigmoid int8");
  kiln_tensor_free(t);
}
END_TEST

START_TEST(hand_softplus) {
  double x[] = {0.0, 800.0, -800.0, INFINITY, -INFINITY, NAN, -40.0, 40.0, 1.0};
  kiln_tensor *t = un_vals(kiln_softplus_at, KILN_FLOAT64, 9, x);
  /* softplus(0) = log(2) (numpy: logaddexp(0, 0)); large x is x itself; a
  ** naive log(1 + exp(800)) would be inf and log1p(exp(-800)) is 0 */
  ck_assert_msg(ulp_diff(at(t, 0), LN2) <= 1, "softplus(0) = %.17g", at(t, 0));
  expect(t, KILN_FLOAT64, 9,
         (double[]){at(t, 0), 800.0, 0.0, INFINITY, 0.0, NAN, exp(-40.0), 40.0, at(t, 8)},
         "softplus f64");
  ck_assert(!signbit(at(t, 2)) && !signbit(at(t, 4)));
  /* softplus(1) = log(1 + e) = 1.3132616875182228 */
  ck_assert_msg(ulp_diff(at(t, 8), 1.3132616875182228) <= 1, "softplus(1) = %.17g", at(t, 8));
  kiln_tensor_free(t);
  t = un_vals(kiln_softplus_at, KILN_FLOAT32, 4, (double[]){0.0, 100.0, -110.0, 20.0});
  ck_assert_msg(fabs(at(t, 0) - LN2) <= 6e-8, "softplus f32(0) = %.9g", at(t, 0));
  expect(t, KILN_FLOAT32, 4, (double[]){at(t, 0), 100.0, 0.0, 20.0}, "softplus f32");
  kiln_tensor_free(t);
}
END_TEST

START_TEST(hand_tanh_log1p_expm1) {
  kiln_tensor *t = un_vals(kiln_tanh_at, KILN_FLOAT64, 7,
                           (double[]){INFINITY, -INFINITY, -0.0, NAN, 20.0, -20.0, 0.5});
  expect(t, KILN_FLOAT64, 6, (double[]){1.0, -1.0, -0.0, NAN, 1.0, -1.0}, "tanh f64");
  ck_assert_msg(ulp_diff(at(t, 6), 0.46211715726000974) <= 1, "tanh(0.5) = %.17g", at(t, 6));
  kiln_tensor_free(t);
  t = un_vals(kiln_tanh_at, KILN_FLOAT32, 3, (double[]){INFINITY, 10.0, -0.0});
  expect(t, KILN_FLOAT32, 3, (double[]){1.0, 1.0, -0.0}, "tanh f32");
  kiln_tensor_free(t);
  t = un_vals(kiln_tanh_at, KILN_INT32, 2, (double[]){0, -30}); /* int32 gives float64 */
  expect(t, KILN_FLOAT64, 2, (double[]){0.0, -1.0}, "tanh int32");
  kiln_tensor_free(t);
  t = un_vals(kiln_log1p_at, KILN_FLOAT64, 7,
              (double[]){-1.0, -2.0, 1e-20, 0.0, -0.0, INFINITY, NAN});
  expect(t, KILN_FLOAT64, 7, (double[]){-INFINITY, NAN, 1e-20, 0.0, -0.0, INFINITY, NAN},
         "log1p f64");
  kiln_tensor_free(t);
  t = un_vals(kiln_log1p_at, KILN_FLOAT32, 3, (double[]){-1.0, 1e-20, 1.0});
  expect(t, KILN_FLOAT32, 2, (double[]){-INFINITY, (double)1e-20f}, "log1p f32");
  ck_assert(fabs(at(t, 2) - LN2) <= 6e-8);
  kiln_tensor_free(t);
  t = un_vals(kiln_expm1_at, KILN_FLOAT64, 7,
              (double[]){1e-20, -INFINITY, INFINITY, 800.0, -0.0, NAN, -40.0});
  expect(t, KILN_FLOAT64, 7, (double[]){1e-20, -1.0, INFINITY, INFINITY, -0.0, NAN, -1.0},
         "expm1 f64");
  kiln_tensor_free(t);
  t = un_vals(kiln_expm1_at, KILN_UINT8, 2, (double[]){0, 1}); /* uint8 gives float32 */
  expect(t, KILN_FLOAT32, 1, (double[]){0.0}, "expm1 uint8");
  ck_assert(fabs(at(t, 1) - E_1) < 3e-7);
  kiln_tensor_free(t);
}
END_TEST

START_TEST(hand_relu_sign) {
  kiln_tensor *t = un_vals(kiln_relu_at, KILN_FLOAT64, 8,
                           (double[]){-1, -0.0, 0.0, 2.5, NAN, -INFINITY, INFINITY, -5e-324});
  /* relu is maximum(x, 0): between -0.0 and 0.0 the first stays (numpy) */
  expect(t, KILN_FLOAT64, 8, (double[]){0.0, -0.0, 0.0, 2.5, NAN, 0.0, INFINITY, 0.0}, "relu f64");
  kiln_tensor_free(t);
  t = un_vals(kiln_relu_at, KILN_FLOAT32, 3, (double[]){-1, -0.0, 1e-45});
  expect(t, KILN_FLOAT32, 3, (double[]){0.0, -0.0, (double)1e-45f}, "relu f32");
  kiln_tensor_free(t);
  t = un_vals(kiln_relu_at, KILN_INT8, 5, (double[]){-128, -1, 0, 1, 127});
  expect(t, KILN_INT8, 5, (double[]){0, 0, 0, 1, 127}, "relu int8");
  kiln_tensor_free(t);
  t = un_vals(kiln_relu_at, KILN_INT64, 2, (double[]){-9.2e18, 9.2e18});
  expect(t, KILN_INT64, 2, (double[]){0, 9.2e18}, "relu int64");
  kiln_tensor_free(t);
  t = un_vals(kiln_relu_at, KILN_UINT8, 3, (double[]){0, 200, 255}); /* not -56 < 0 */
  expect(t, KILN_UINT8, 3, (double[]){0, 200, 255}, "relu uint8");
  kiln_tensor_free(t);
  t = un_vals(kiln_relu_at, KILN_BOOL, 2, (double[]){0, 1});
  expect(t, KILN_BOOL, 2, (double[]){0, 1}, "relu bool");
  kiln_tensor_free(t);
  t = un_vals(kiln_sign_at, KILN_FLOAT64, 7,
              (double[]){-0.0, 0.0, NAN, -INFINITY, 2.0, -3e-310, 5e-324});
  expect(t, KILN_FLOAT64, 7, (double[]){-0.0, 0.0, NAN, -1.0, 1.0, -1.0, 1.0}, "sign f64");
  kiln_tensor_free(t);
  t = un_vals(kiln_sign_at, KILN_INT8, 4, (double[]){-128, -1, 0, 5});
  expect(t, KILN_INT8, 4, (double[]){-1, -1, 0, 1}, "sign int8");
  kiln_tensor_free(t);
  t = un_vals(kiln_sign_at, KILN_UINT8, 3, (double[]){0, 200, 1});
  expect(t, KILN_UINT8, 3, (double[]){0, 1, 1}, "sign uint8");
  kiln_tensor_free(t);
}
END_TEST

/* f(x, lo, hi) for three rank-1 tensors of the given dtypes. */
static kiln_tensor *clip_vals(kiln_dtype dx, kiln_dtype dl, kiln_dtype dh, int n, const double *x,
                              const double *lo, const double *hi) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *in[3] = {kiln_input(ctx, "x", dx, 1, NULL), kiln_input(ctx, "lo", dl, 1, NULL),
                      kiln_input(ctx, "hi", dh, 1, NULL)};
  kiln_node *y = kiln_clip(in[0], in[1], in[2]);
  kiln_tensor *v[3] = {kt_tensor(dx, 1, (int64_t[]){n}, x), kt_tensor(dl, 1, (int64_t[]){n}, lo),
                       kt_tensor(dh, 1, (int64_t[]){n}, hi)};
  kiln_tensor *got = NULL;
  run_both(ctx, "clip", 3, in, v, 1, &y, &got);
  for (int k = 0; k < 3; k++)
    kiln_tensor_free(v[k]);
  kiln_ctx_free(ctx);
  return got;
}

START_TEST(hand_clip) {
  /* np.clip([-2, .5, 3, nan, -inf, inf, -0.], 0, 1) */
  double x[] = {-2, 0.5, 3, NAN, -INFINITY, INFINITY, -0.0, 0.0};
  double lo[] = {0, 0, 0, 0, 0, 0, 0, -0.0}, hi[] = {1, 1, 1, 1, 1, 1, 1, 1};
  kiln_tensor *t = clip_vals(KILN_FLOAT64, KILN_FLOAT64, KILN_FLOAT64, 8, x, lo, hi);
  /* ties keep the earlier operand: clip(-0.0, 0.0, 1) is -0.0 */
  expect(t, KILN_FLOAT64, 8, (double[]){0, 0.5, 1, NAN, 0, 1, -0.0, 0.0}, "clip f64");
  kiln_tensor_free(t);
  /* lo > hi gives hi; NaN bounds propagate */
  t = clip_vals(KILN_FLOAT32, KILN_FLOAT32, KILN_FLOAT32, 5, (double[]){-5, 0, 5, 1, 1},
                (double[]){2, 2, 2, NAN, 0}, (double[]){1, 1, 1, 2, NAN});
  expect(t, KILN_FLOAT32, 5, (double[]){1, 1, 1, NAN, NAN}, "clip f32 lo > hi, NaN bounds");
  kiln_tensor_free(t);
  t = clip_vals(KILN_INT8, KILN_INT8, KILN_INT8, 5, (double[]){-128, -11, 5, 11, 127},
                (double[]){-10, -10, -10, -10, -10}, (double[]){10, 10, 10, 10, 10});
  expect(t, KILN_INT8, 5, (double[]){-10, -10, 5, 10, 10}, "clip int8");
  kiln_tensor_free(t);
  /* uint8 compares unsigned: 201 > 200 (as int8 it would be -55) */
  t = clip_vals(KILN_UINT8, KILN_UINT8, KILN_UINT8, 5, (double[]){0, 9, 150, 201, 255},
                (double[]){10, 10, 10, 10, 10}, (double[]){200, 200, 200, 200, 200});
  expect(t, KILN_UINT8, 5, (double[]){10, 10, 150, 200, 200}, "clip uint8");
  kiln_tensor_free(t);
  /* int8 x with a float32 lo and an int16 hi: float32 (int16 with float32) */
  t = clip_vals(KILN_INT8, KILN_FLOAT32, KILN_INT16, 3, (double[]){-100, 3, 100},
                (double[]){-2.5, -2.5, -2.5}, (double[]){50, 50, 50});
  expect(t, KILN_FLOAT32, 3, (double[]){-2.5, 3, 50}, "clip int8/float32/int16");
  kiln_tensor_free(t);
  /* bool: maximum is or, minimum and */
  t = clip_vals(KILN_BOOL, KILN_BOOL, KILN_BOOL, 4, (double[]){0, 1, 0, 1}, (double[]){1, 0, 0, 1},
                (double[]){1, 1, 0, 0});
  expect(t, KILN_BOOL, 4, (double[]){1, 1, 0, 0}, "clip bool");
  kiln_tensor_free(t);
  /* literals: clip(int8 x, 0.5, 2.5) is float64 (a float literal meets ints) */
  kiln_ctx *ctx = new_ctx();
  kiln_node *xi = kiln_bvector(ctx, "x"), *xf = kiln_fvector(ctx, "xf");
  kiln_node *outs[] = {kiln_clip(xi, kiln_lit(ctx, 0.5), kiln_lit(ctx, 2.5)),
                       kiln_clip(xf, kiln_lit(ctx, 0), kiln_lit(ctx, 1)),
                       kiln_clip(xi, kiln_lit(ctx, -3), kiln_lit(ctx, 3))};
  ck_assert_int_eq(kiln_node_dtype(outs[0]), KILN_FLOAT64);
  ck_assert_int_eq(kiln_node_dtype(outs[1]), KILN_FLOAT32);
  ck_assert_int_eq(kiln_node_dtype(outs[2]), KILN_INT8);
  kiln_node *ins[2] = {xi, xf};
  kiln_tensor *v[2] = {kt_tensor(KILN_INT8, 1, (int64_t[]){3}, (double[]){-7, 2, 9}),
                       kt_tensor(KILN_FLOAT32, 1, (int64_t[]){3}, (double[]){-0.25, 0.75, 1.5})};
  kiln_tensor *got[3];
  run_both(ctx, "clip literals", 2, ins, v, 3, outs, got);
  expect(got[0], KILN_FLOAT64, 3, (double[]){0.5, 2, 2.5}, "clip(int8, 0.5, 2.5)");
  expect(got[1], KILN_FLOAT32, 3, (double[]){0, 0.75, 1}, "clip(float32, 0, 1)");
  expect(got[2], KILN_INT8, 3, (double[]){-3, 2, 3}, "clip(int8, -3, 3)");
  for (int k = 0; k < 3; k++)
    kiln_tensor_free(got[k]);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
}
END_TEST

static kiln_tensor *bin_vals(bin_fn fn, kiln_dtype da, int ra, const int64_t *sa, const double *a,
                             kiln_dtype db, int rb, const int64_t *sb, const double *b) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", da, ra, NULL), *y = kiln_input(ctx, "y", db, rb, NULL);
  kiln_node *z = fn(x, y, __FILE__, __LINE__);
  kiln_tensor *v[2] = {kt_tensor(da, ra, sa, a), kt_tensor(db, rb, sb, b)};
  kiln_node *ins[2] = {x, y};
  kiln_tensor *got = NULL;
  run_both(ctx, "binary", 2, ins, v, 1, &z, &got);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
  return got;
}

static kiln_tensor *bin_vec(bin_fn fn, kiln_dtype da, kiln_dtype db, int n, const double *a,
                            const double *b) {
  return bin_vals(fn, da, 1, (int64_t[]){n}, a, db, 1, (int64_t[]){n}, b);
}

START_TEST(hand_logical) {
  double p[] = {0, 0, 1, 1}, q[] = {0, 1, 0, 1};
  kiln_tensor *t = bin_vec(kiln_logical_and_at, KILN_BOOL, KILN_BOOL, 4, p, q);
  expect(t, KILN_BOOL, 4, (double[]){0, 0, 0, 1}, "and table");
  kiln_tensor_free(t);
  t = bin_vec(kiln_logical_or_at, KILN_BOOL, KILN_BOOL, 4, p, q);
  expect(t, KILN_BOOL, 4, (double[]){0, 1, 1, 1}, "or table");
  kiln_tensor_free(t);
  t = un_vals(kiln_logical_not_at, KILN_BOOL, 2, (double[]){0, 1});
  expect(t, KILN_BOOL, 2, (double[]){1, 0}, "not table");
  kiln_tensor_free(t);
  /* the truth of non-bool operands: x != 0, NaN true, -0.0 false */
  t = bin_vec(kiln_logical_and_at, KILN_FLOAT64, KILN_FLOAT64, 6,
              (double[]){0, -0.0, NAN, 2.5, INFINITY, 5e-324}, (double[]){1, 1, 1, 1, 1, 1});
  expect(t, KILN_BOOL, 6, (double[]){0, 0, 1, 1, 1, 1}, "and float64");
  kiln_tensor_free(t);
  t = un_vals(kiln_logical_not_at, KILN_INT8, 4, (double[]){0, -128, 1, 2});
  expect(t, KILN_BOOL, 4, (double[]){1, 0, 0, 0}, "not int8");
  kiln_tensor_free(t);
  t = un_vals(kiln_logical_not_at, KILN_FLOAT32, 3, (double[]){-0.0, NAN, 1e-45});
  expect(t, KILN_BOOL, 3, (double[]){1, 0, 0}, "not float32");
  kiln_tensor_free(t);
  /* int64 with float32; 256 is true (not truncated to a zero byte) */
  t = bin_vec(kiln_logical_or_at, KILN_INT64, KILN_FLOAT32, 4, (double[]){0, 256, 0, 0},
              (double[]){0, 0, -0.0, 0.5});
  expect(t, KILN_BOOL, 4, (double[]){0, 1, 0, 1}, "or int64 float32");
  kiln_tensor_free(t);
  /* broadcast (2,1) with (1,2): the whole table */
  t = bin_vals(kiln_logical_and_at, KILN_INT16, 2, (int64_t[]){2, 1}, (double[]){0, 7}, KILN_UINT8,
               2, (int64_t[]){1, 2}, (double[]){0, 255});
  expect(t, KILN_BOOL, 4, (double[]){0, 0, 0, 1}, "and (2,1) (1,2)");
  ck_assert_int_eq(t->rank, 2);
  kiln_tensor_free(t);
}
END_TEST

START_TEST(hand_isnan_isinf) {
  double x[] = {NAN, -NAN, INFINITY, -INFINITY, 0.0, -0.0, DBL_MAX, 5e-324, 1.0};
  for (int k = 0; k < 2; k++) {
    kiln_dtype dt = k ? KILN_FLOAT32 : KILN_FLOAT64;
    kiln_tensor *t = un_vals(kiln_isnan_at, dt, 9, x); /* DBL_MAX is inf in float32 */
    expect(t, KILN_BOOL, 9, (double[]){1, 1, 0, 0, 0, 0, 0, 0, 0}, "isnan");
    kiln_tensor_free(t);
    t = un_vals(kiln_isinf_at, dt, 9, x);
    expect(t, KILN_BOOL, 9, (double[]){0, 0, 1, 1, 0, 0, k, 0, 0}, "isinf");
    kiln_tensor_free(t);
  }
  for (int dt = KILN_BOOL; dt <= KILN_UINT8; dt++) {
    kiln_tensor *t = un_vals(kiln_isinf_at, (kiln_dtype)dt, 3, (double[]){-2147483648.0, 0, 1});
    expect(t, KILN_BOOL, 3, (double[]){0, 0, 0}, "isinf int");
    kiln_tensor_free(t);
    t = un_vals(kiln_isnan_at, (kiln_dtype)dt, 3, (double[]){2147483647.0, 0, 1});
    expect(t, KILN_BOOL, 3, (double[]){0, 0, 0}, "isnan int");
    kiln_tensor_free(t);
  }
}
END_TEST

START_TEST(hand_compare) {
  /* numpy promotion first: int8 -1 and uint8 255 compare as int16 */
  kiln_tensor *t =
      bin_vec(kiln_lt_at, KILN_INT8, KILN_UINT8, 2, (double[]){-1, 5}, (double[]){255, 4});
  expect(t, KILN_BOOL, 2, (double[]){1, 0}, "int8 < uint8");
  kiln_tensor_free(t);
  /* uint8 compares unsigned: 200 > 100 */
  t = bin_vec(kiln_gt_at, KILN_UINT8, KILN_UINT8, 2, (double[]){200, 100}, (double[]){100, 200});
  expect(t, KILN_BOOL, 2, (double[]){1, 0}, "uint8 > uint8");
  kiln_tensor_free(t);
  /* int64 2**53 + 1 meets float64 2**53 as float64: equal */
  kiln_ctx *ctx = new_ctx();
  kiln_node *i = kiln_lvector(ctx, "i"), *d = kiln_dvector(ctx, "d");
  kiln_node *outs[] = {kiln_eq(i, d), kiln_gt(i, d), kiln_eq(i, kiln_cast(d, KILN_INT64)),
                       kiln_gt(i, kiln_cast(d, KILN_INT64))};
  int64_t iv[] = {9007199254740993LL};
  kiln_tensor *v[2] = {kiln_tensor_new(KILN_INT64, 1, (int64_t[]){1}, iv),
                       kt_tensor(KILN_FLOAT64, 1, (int64_t[]){1}, (double[]){9007199254740992.0})};
  kiln_node *ins[2] = {i, d};
  kiln_tensor *got[4];
  run_both(ctx, "int64 ~ float64", 2, ins, v, 4, outs, got);
  expect(got[0], KILN_BOOL, 1, (double[]){1}, "int64 == float64");
  expect(got[1], KILN_BOOL, 1, (double[]){0}, "int64 > float64");
  expect(got[2], KILN_BOOL, 1, (double[]){0}, "int64 == int64");
  expect(got[3], KILN_BOOL, 1, (double[]){1}, "int64 > int64");
  for (int k = 0; k < 4; k++)
    kiln_tensor_free(got[k]);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
  /* NaN is unordered; 0.0 == -0.0 */
  double a[] = {NAN, NAN, 0.0, 1.0, -INFINITY}, b[] = {NAN, 1.0, -0.0, 1.0, -INFINITY};
  static const double want[6][5] = {
      {0, 0, 0, 0, 0}, /* lt */ {0, 0, 1, 1, 1}, /* le */ {0, 0, 0, 0, 0}, /* gt */
      {0, 0, 1, 1, 1}, /* ge */ {0, 0, 1, 1, 1}, /* eq */ {1, 1, 0, 0, 0}, /* ne */
  };
  for (int op = B_LT; op <= B_NE; op++)
    for (int k = 0; k < 2; k++) {
      kiln_dtype dt = k ? KILN_FLOAT32 : KILN_FLOAT64;
      t = bin_vec(BIN[op].fn, dt, dt, 5, a, b);
      expect(t, KILN_BOOL, 5, want[op], BIN[op].name);
      kiln_tensor_free(t);
    }
  /* a weak literal takes the tensor's dtype: float32 0.1f == 0.1 (numpy 2) */
  ctx = new_ctx();
  kiln_node *f = kiln_fvector(ctx, "f"), *n = kiln_ivector(ctx, "n");
  kiln_node *o2[] = {kiln_eq(f, kiln_lit(ctx, 0.1)),
                     kiln_eq(kiln_cast(f, KILN_FLOAT64), kiln_lit(ctx, 0.1)),
                     kiln_lt(n, kiln_lit(ctx, 2.5)), kiln_ge(n, kiln_lit(ctx, 3))};
  kiln_node *in2[2] = {f, n};
  kiln_tensor *v2[2] = {kt_tensor(KILN_FLOAT32, 1, (int64_t[]){1}, (double[]){0.1}),
                        kt_tensor(KILN_INT32, 1, (int64_t[]){1}, (double[]){2})};
  run_both(ctx, "literals", 2, in2, v2, 4, o2, got);
  expect(got[0], KILN_BOOL, 1, (double[]){1}, "float32 0.1 == 0.1");
  expect(got[1], KILN_BOOL, 1, (double[]){0}, "float64(float32 0.1) == 0.1");
  expect(got[2], KILN_BOOL, 1, (double[]){1}, "int32 2 < 2.5");
  expect(got[3], KILN_BOOL, 1, (double[]){0}, "int32 2 >= 3");
  for (int k = 0; k < 4; k++)
    kiln_tensor_free(got[k]);
  kiln_tensor_free(v2[0]);
  kiln_tensor_free(v2[1]);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(hand_where) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *c = kiln_dvector(ctx, "c"), *a = kiln_bvector(ctx, "a"), *b = kiln_fvector(ctx, "b");
  kiln_node *r = kiln_drow(ctx, "r"),
            *col = kiln_input(ctx, "col", KILN_BOOL, 2, (int64_t[]){D, 1});
  kiln_node *outs[] = {kiln_where(c, a, b), kiln_where(col, r, kiln_lit(ctx, -1)),
                       kiln_where(c, kiln_lit(ctx, 1), kiln_lit(ctx, 0))};
  ck_assert_int_eq(kiln_node_dtype(outs[0]), KILN_FLOAT32); /* int8 with float32 */
  ck_assert_int_eq(kiln_node_dtype(outs[1]), KILN_FLOAT64);
  kiln_node *ins[] = {c, a, b, r, col};
  kiln_tensor *v[] = {kt_tensor(KILN_FLOAT64, 1, (int64_t[]){4}, (double[]){0, NAN, -0.0, 2}),
                      kt_tensor(KILN_INT8, 1, (int64_t[]){4}, (double[]){1, 2, 3, 4}),
                      kt_tensor(KILN_FLOAT32, 1, (int64_t[]){4}, (double[]){-1, -2, -3, -4}),
                      kt_tensor(KILN_FLOAT64, 2, (int64_t[]){1, 3}, (double[]){10, 20, 30}),
                      kt_tensor(KILN_BOOL, 2, (int64_t[]){2, 1}, (double[]){1, 0})};
  kiln_tensor *got[3];
  run_both(ctx, "where", 5, ins, v, 3, outs, got);
  /* cond float: 0 false, NaN true, -0.0 false, 2 true */
  expect(got[0], KILN_FLOAT32, 4, (double[]){-1, 2, -3, 4}, "where(float cond)");
  expect(got[1], KILN_FLOAT64, 6, (double[]){10, 20, 30, -1, -1, -1}, "where (2,1) (1,3) literal");
  ck_assert_int_eq(got[1]->rank, 2);
  expect(got[2], KILN_INT64, 4, (double[]){0, 1, 0, 1}, "where(c, 1, 0)");
  for (int k = 0; k < 3; k++)
    kiln_tensor_free(got[k]);
  for (int k = 0; k < 5; k++)
    kiln_tensor_free(v[k]);
  kiln_ctx_free(ctx);
}
END_TEST

/* One cast of a value given exactly as int64 or double. */
typedef struct castcase {
  kiln_dtype from, to;
  double f;    /* the value when from is a float */
  int64_t i;   /* the value when from is bool or an integer */
  double want; /* the result, as a double (exact for every case below) */
} castcase;

START_TEST(hand_cast) {
  static const castcase cs[] = {
      {KILN_FLOAT64, KILN_INT32, 1e300, 0, 2147483647.0}, /* saturates */
      {KILN_FLOAT64, KILN_INT32, -1e300, 0, -2147483648.0},
      {KILN_FLOAT64, KILN_INT32, NAN, 0, 0},   /* NaN -> 0 */
      {KILN_FLOAT64, KILN_INT32, -1.5, 0, -1}, /* truncates */
      {KILN_FLOAT64, KILN_INT32, 2147483647.9, 0, 2147483647.0},
      {KILN_FLOAT64, KILN_UINT8, 300.0, 0, 255}, /* saturates from float */
      {KILN_FLOAT64, KILN_UINT8, -5.0, 0, 0},
      {KILN_FLOAT64, KILN_UINT8, 255.9, 0, 255},
      {KILN_FLOAT32, KILN_UINT8, -0.9, 0, 0},
      {KILN_FLOAT64, KILN_INT8, INFINITY, 0, 127},
      {KILN_FLOAT32, KILN_INT8, -INFINITY, 0, -128},
      {KILN_FLOAT64, KILN_INT8, -128.9, 0, -128},
      {KILN_FLOAT64, KILN_INT16, 40000.0, 0, 32767},
      {KILN_FLOAT64, KILN_INT64, -INFINITY, 0, -9223372036854775808.0},
      {KILN_FLOAT32, KILN_INT64, 9.3e18, 0, 9223372036854775807.0}, /* as a double: 2**63 */
      {KILN_FLOAT64, KILN_INT64, NAN, 0, 0},
      {KILN_FLOAT64, KILN_BOOL, NAN, 0, 1}, /* NaN is true */
      {KILN_FLOAT64, KILN_BOOL, -0.0, 0, 0},
      {KILN_FLOAT32, KILN_BOOL, 1e-45, 0, 1},
      {KILN_FLOAT64, KILN_FLOAT32, 1e300, 0, INFINITY},
      {KILN_FLOAT64, KILN_FLOAT32, 0.1, 0, (double)0.1f},
      {KILN_FLOAT64, KILN_FLOAT32, -NAN, 0, NAN},
      {KILN_FLOAT32, KILN_FLOAT64, -0.0, 0, -0.0},
      {KILN_INT16, KILN_UINT8, 0, 300, 44}, /* wraps from an integer */
      {KILN_INT32, KILN_UINT8, 0, -1, 255},
      {KILN_UINT8, KILN_INT8, 0, 200, -56},
      {KILN_INT64, KILN_INT32, 0, 4294967297LL, 1},
      {KILN_INT8, KILN_INT64, 0, -1, -1},    /* sign extends */
      {KILN_UINT8, KILN_INT64, 0, 255, 255}, /* zero extends */
      {KILN_UINT8, KILN_FLOAT32, 0, 255, 255},
      {KILN_INT16, KILN_BOOL, 0, 256, 1}, /* != 0, not the low byte */
      {KILN_INT64, KILN_BOOL, 0, 0, 0},
      {KILN_BOOL, KILN_FLOAT64, 0, 1, 1.0},
      {KILN_BOOL, KILN_INT8, 0, 1, 1},
      {KILN_INT64, KILN_FLOAT64, 0, 9007199254740993LL, 9007199254740992.0}, /* nearest even */
      {KILN_INT64, KILN_FLOAT64, 0, 9007199254740995LL, 9007199254740996.0},
      {KILN_INT32, KILN_FLOAT32, 0, 16777217, 16777216.0},
      {KILN_INT64, KILN_FLOAT32, 0, INT64_MIN, -9223372036854775808.0},
  };
  for (size_t k = 0; k < sizeof cs / sizeof *cs; k++) {
    const castcase *c = &cs[k];
    kiln_ctx *ctx = new_ctx();
    kiln_node *x = kiln_input(ctx, "x", c->from, 1, NULL);
    kiln_node *y = kiln_cast(x, c->to);
    kiln_tensor *v = kiln_tensor_new(c->from, 1, (int64_t[]){1}, NULL);
    if (c->from == KILN_FLOAT64)
      ((double *)v->data)[0] = c->f;
    else if (c->from == KILN_FLOAT32)
      ((float *)v->data)[0] = (float)c->f;
    else
      kt_put_int(c->from, v->data, 0, c->i);
    char what[96];
    snprintf(what, sizeof what, "cast %s -> %s, case %zu", dn(c->from), dn(c->to), k);
    kiln_tensor *got = NULL;
    run_both(ctx, what, 1, &x, &v, 1, &y, &got);
    ck_assert_int_eq(got->dtype, c->to);
    if (c->to == KILN_INT64 && c->want >= 9223372036854775807.0)
      ck_assert_msg(((int64_t *)got->data)[0] == INT64_MAX, "%s: %lld", what,
                    (long long)((int64_t *)got->data)[0]);
    else
      ck_assert_msg(same(at(got, 0), c->want), "%s: %.17g, want %.17g", what, at(got, 0), c->want);
    kiln_tensor_free(got);
    kiln_tensor_free(v);
    kiln_ctx_free(ctx);
  }
}
END_TEST

/* ------------------------------------------------- types and errors */

START_TEST(types_and_errors) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_dvector(ctx, "x"), *b = kiln_input(ctx, "b", KILN_BOOL, 1, NULL);
  /* cast: a bad dtype is misuse; an integer literal must fit (NEP 50) */
  ck_assert_ptr_null(kiln_cast(x, (kiln_dtype)99));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  ck_assert_msg(strstr(kiln_errmsg(ctx), "cast") != NULL, "%s", kiln_errmsg(ctx));
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_cast(kiln_lit(ctx, 300), KILN_UINT8));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  ck_assert_msg(strstr(kiln_errmsg(ctx), "300") != NULL, "%s", kiln_errmsg(ctx));
  kiln_clear_error(ctx);
  kiln_node *l255 = kiln_cast(kiln_lit(ctx, 255), KILN_UINT8),
            *l27 = kiln_cast(kiln_lit(ctx, -2.7), KILN_INT8);
  ck_assert_ptr_nonnull(l255);
  ck_assert_ptr_nonnull(l27);
  ck_assert_int_eq(kiln_node_dtype(l255), KILN_UINT8);
  /* a cast literal is strong: it promotes, float32 + float64(2) is float64 */
  kiln_node *l2 = kiln_cast(kiln_lit(ctx, 2), KILN_FLOAT64);
  ck_assert_int_eq(kiln_node_dtype(kiln_add(kiln_fvector(ctx, "f"), l2)), KILN_FLOAT64);
  ck_assert_int_eq(kiln_node_dtype(kiln_add(kiln_fvector(ctx, "f"), kiln_lit(ctx, 2.0))),
                   KILN_FLOAT32);
  kiln_node *outs[] = {l255, l27};
  kiln_tensor *got[2];
  run_both(ctx, "cast literals", 0, NULL, NULL, 2, outs, got);
  ck_assert_int_eq(kl_load_i64(KILN_UINT8, got[0]->data, 0), 255);
  ck_assert_int_eq(kl_load_i64(KILN_INT8, got[1]->data, 0), -2);
  kiln_tensor_free(got[0]);
  kiln_tensor_free(got[1]);
  /* sign of bool: numpy has no such loop */
  ck_assert_ptr_null(kiln_sign(b));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  kiln_clear_error(ctx);
  /* NULL in, NULL out, the first error kept */
  ck_assert_ptr_null(kiln_cast(NULL, KILN_INT8));
  ck_assert_ptr_null(kiln_tanh(NULL));
  ck_assert_ptr_null(kiln_clip(x, NULL, x));
  ck_assert_ptr_null(kiln_where(NULL, x, x));
  ck_assert_ptr_null(kiln_logical_and(x, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_OK);
  /* shapes that do not broadcast */
  kiln_node *m23 = kiln_input(ctx, "m", KILN_FLOAT64, 2, (int64_t[]){2, 3});
  kiln_node *v4 = kiln_input(ctx, "v", KILN_FLOAT64, 1, (int64_t[]){4});
  ck_assert_ptr_null(kiln_clip(m23, kiln_lit(ctx, 0), v4));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_where(v4, m23, kiln_lit(ctx, 0)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_logical_or(v4, m23));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  kiln_clear_error(ctx);
  /* a node of another context */
  kiln_ctx *other = new_ctx();
  ck_assert_ptr_null(kiln_lt(x, kiln_dvector(other, "y")));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_clear_error(ctx);
  kiln_ctx_free(other);
  /* result types */
  static const struct {
    kiln_dtype in;
    kiln_dtype fl; /* of tanh etc. */
  } ft[] = {{KILN_BOOL, KILN_FLOAT32},    {KILN_INT8, KILN_FLOAT32},   {KILN_INT16, KILN_FLOAT32},
            {KILN_INT32, KILN_FLOAT64},   {KILN_INT64, KILN_FLOAT64},  {KILN_UINT8, KILN_FLOAT32},
            {KILN_FLOAT32, KILN_FLOAT32}, {KILN_FLOAT64, KILN_FLOAT64}};
  for (int k = 0; k < 8; k++) {
    kiln_node *y = kiln_input(ctx, "y", ft[k].in, 2, (int64_t[]){D, 3});
    for (int op = U_LOG1P; op <= U_SOFTPLUS; op++) {
      kiln_node *r = UN[op].fn(y, __FILE__, __LINE__);
      ck_assert_msg(kiln_node_dtype(r) == ft[k].fl, "%s(%s) is %s", UN[op].name, dn(ft[k].in),
                    dn(kiln_node_dtype(r)));
      ck_assert_int_eq(kiln_node_rank(r), 2);
      ck_assert_int_eq(kiln_node_dim(r, 0), KILN_DYN);
      ck_assert_int_eq(kiln_node_dim(r, 1), 3);
    }
    ck_assert_int_eq(kiln_node_dtype(kiln_relu(y)), ft[k].in);
    ck_assert_int_eq(kiln_node_dtype(kiln_isnan(y)), KILN_BOOL);
    ck_assert_int_eq(kiln_node_dtype(kiln_isinf(y)), KILN_BOOL);
    ck_assert_int_eq(kiln_node_dtype(kiln_logical_not(y)), KILN_BOOL);
    ck_assert_int_eq(kiln_node_dtype(kiln_ge(y, x)), KILN_BOOL);
    ck_assert_int_eq(kiln_node_dtype(kiln_logical_and(y, x)), KILN_BOOL);
    ck_assert_int_eq(kiln_node_dtype(kiln_clip(y, kiln_lit(ctx, 0), kiln_lit(ctx, 1))),
                     ft[k].in == KILN_BOOL ? KILN_INT64
                                           : ft[k].in); /* an int literal meets bool: int64 */
    ck_assert_int_eq(kiln_node_dtype(kiln_where(y, y, x)), kiln_promote(ft[k].in, KILN_FLOAT64));
  }
  /* broadcast shapes: (2,1) and (1,3) and () */
  kiln_node *col = kiln_input(ctx, "c", KILN_INT32, 2, (int64_t[]){2, 1});
  kiln_node *row = kiln_input(ctx, "r", KILN_FLOAT32, 2, (int64_t[]){1, 3});
  kiln_node *w = kiln_clip(col, row, kiln_lit(ctx, 1.5));
  ck_assert_int_eq(kiln_node_dtype(w), KILN_FLOAT64);
  ck_assert_int_eq(kiln_node_dim(w, 0), 2);
  ck_assert_int_eq(kiln_node_dim(w, 1), 3);
  ck_assert_int_eq(kiln_node_dim(kiln_eq(col, row), 1), 3);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------- fusion and libm calls */

/* The line of the optimized graph that names node 'name'. */
static char *line_of(const char *text, const char *name, char *buf, size_t n) {
  char key[64];
  snprintf(key, sizeof key, "'%s'", name);
  const char *p = strstr(text, key);
  ck_assert_msg(p != NULL, "%s not in the graph:\n%s", key, text);
  const char *b = p, *e = p;
  while (b > text && b[-1] != '\n')
    b--;
  while (*e && *e != '\n')
    e++;
  snprintf(buf, n, "%.*s", (int)(e - b), b);
  return buf;
}

/* A cheap op with two elementwise uses is recomputed in each (fused); an
** expensive one (tanh) is computed once, into a buffer. Bool results are
** used by two where()s, float ones by two products. */
START_TEST(cheap_ops_fuse) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_dvector(ctx, "x"), *y = kiln_dvector(ctx, "y");
  kiln_node *nodes[] = {
      kiln_name(kiln_relu(x), "n_relu"),
      kiln_name(kiln_clip(x, y, kiln_lit(ctx, 2)), "n_clip"),
      kiln_name(kiln_where(kiln_gt(x, y), x, y), "n_where"),
      kiln_name(kiln_cast(kiln_cast(x, KILN_INT32), KILN_FLOAT64), "n_cast"),
      kiln_name(kiln_tanh(x), "n_tanh"),
      kiln_name(kiln_lt(x, y), "n_lt"),
      kiln_name(kiln_logical_and(x, y), "n_and"),
      kiln_name(kiln_logical_or(x, y), "n_or"),
      kiln_name(kiln_logical_not(x), "n_not"),
      kiln_name(kiln_isnan(x), "n_isnan"),
      kiln_name(kiln_isinf(y), "n_isinf"),
  };
  int n = (int)(sizeof nodes / sizeof *nodes);
  kiln_node *outs[2] = {x, x};
  for (int k = 0; k < n; k++) { /* two uses each, in two kernels */
    bool b = kiln_node_dtype(nodes[k]) == KILN_BOOL;
    outs[0] = kiln_add(outs[0], b ? kiln_where(nodes[k], x, y) : kiln_mul(nodes[k], y));
    outs[1] = kiln_sub(outs[1], b ? kiln_where(nodes[k], y, x) : kiln_mul(nodes[k], x));
  }
  kiln_node *ins[2] = {x, y};
  kiln_function *f = kiln_function_new(ctx, "fuse", 2, ins, 2, outs, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  char *g = kt_dump_stage(f, KILN_STAGE_OPT_GRAPH);
  char line[512];
  for (int k = 0; k < n; k++) {
    const char *nm = kiln_node_name(nodes[k]);
    bool fused = strstr(line_of(g, nm, line, sizeof line), "fused") != NULL;
    ck_assert_msg(fused == (strcmp(nm, "n_tanh") != 0), "%s: %s\n%s", nm, line, g);
  }
  free(g);
  kiln_tensor *v[2] = {gen(KILN_FLOAT64, 1, (int64_t[]){45}, 1),
                       gen(KILN_FLOAT64, 1, (int64_t[]){45}, 2)};
  run_both(ctx, "fusion", 2, ins, v, 2, outs, NULL);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- main */

int main(void) {
  Suite *s = suite_create("ops_elem");
  TCase *tc = tcase_create("unary");
  tcase_add_loop_test(tc, un_sign, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_log1p, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_expm1, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_tanh, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_sigmoid, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_softplus, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_relu, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_not, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_isnan, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_isinf, 0, KILN_N_DTYPES);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);

  tc = tcase_create("binary");
  tcase_add_loop_test(tc, compare_logical, 0, KILN_N_DTYPES * KILN_N_DTYPES);
  tcase_add_loop_test(tc, compare_literals, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, where_all, 0, KILN_N_DTYPES * KILN_N_DTYPES);
  tcase_add_loop_test(tc, clip_all, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, clip_mixed, 0, KILN_N_DTYPES * KILN_N_DTYPES);
  tcase_add_loop_test(tc, cast_all, 0, KILN_N_DTYPES * KILN_N_DTYPES);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);

  tc = tcase_create("numpy");
  tcase_add_test(tc, hand_sigmoid);
  tcase_add_test(tc, hand_softplus);
  tcase_add_test(tc, hand_tanh_log1p_expm1);
  tcase_add_test(tc, hand_relu_sign);
  tcase_add_test(tc, hand_clip);
  tcase_add_test(tc, hand_logical);
  tcase_add_test(tc, hand_isnan_isinf);
  tcase_add_test(tc, hand_compare);
  tcase_add_test(tc, hand_where);
  tcase_add_test(tc, hand_cast);
  tcase_add_test(tc, types_and_errors);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);

  tc = tcase_create("compile");
  tcase_add_test(tc, cheap_ops_fuse);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
