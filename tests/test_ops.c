/*
** test_ops.c -- every op on every dtype where it is defined, JIT against the
** reference evaluator (kl_ref_run) bit for bit, over broadcast patterns,
** reductions over every axis, dot products, mixed dtypes and literals; then
** values worked out by hand from numpy's semantics, independent of both;
** and the stage dumps of kiln_function_dump.
**
** Inputs come from a fixed-seed generator chosen per dtype: floats mix NaN,
** +-inf, -0.0, subnormal, huge and ordinary values; integers mix the type's
** limits (so arithmetic wraps), small values and the full range.
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

static const char *dn(int dt) { return kiln_dtype_name((kiln_dtype)dt); }
static bool is_float(int dt) { return dt == KILN_FLOAT32 || dt == KILN_FLOAT64; }

static kiln_ctx *new_ctx(void) {
  kiln_ctx *ctx = kiln_ctx_new();
  ck_assert_ptr_nonnull(ctx);
  return ctx;
}

/* ------------------------------------------------------------- values */

typedef enum gen_kind {
  GEN_ANY,      /* specials (NaN, inf, limits) mixed with random values */
  GEN_EXPONENT, /* small exponents for pow, with some specials */
  GEN_FINITE,   /* finite floats of wide magnitude (reductions, dot) */
  GEN_UNARY     /* GEN_ANY plus a NaN with the sign bit set */
} gen_kind;

static uint64_t rand_u64(uint64_t *s) {
  uint64_t hi = (uint64_t)(kt_rand(s) * 4294967296.0);
  uint64_t lo = (uint64_t)(kt_rand(s) * 4294967296.0);
  return hi << 32 | lo;
}

static int64_t int_special(kiln_dtype dt, gen_kind k, int j, int *n) {
  int64_t lo = kt_int_lo[dt], hi = kt_int_hi[dt];
  const int64_t any[] = {lo, lo + 1, hi, hi - 1, 0, 1, -1, 2, hi / 2 + 1, lo / 2, 100, -100};
  const int64_t ex[] = {0, 1, 2, -1, -2, 3, 7, 8, 15, 16, 31, 32, 63, 64, lo, hi};
  const int64_t *l = k == GEN_EXPONENT ? ex : any;
  *n = k == GEN_EXPONENT ? (int)(sizeof ex / sizeof *ex) : (int)(sizeof any / sizeof *any);
  return l[j % *n];
}

static double float_special(kiln_dtype dt, gen_kind k, int j, int *n) {
  const double f64[] = {NAN,     INFINITY, -INFINITY, 0.0,    -0.0, 1.0, -1.0,   5e-324,
                        DBL_MIN, -3e-310,  DBL_MAX,   -1e300, 0.5,  3.0, 1e-300, -NAN};
  const double f32[] = {NAN,     INFINITY, -INFINITY, 0.0,   -0.0, 1.0, -1.0,  1e-45,
                        FLT_MIN, -3e-40,   FLT_MAX,   -3e38, 0.5,  3.0, 1e-30, -NAN};
  const double ex[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 0.5, -0.5, 2.0, 3.0, -3.0, 1e10};
  const double *l = k == GEN_EXPONENT ? ex : dt == KILN_FLOAT32 ? f32 : f64;
  int count = k == GEN_EXPONENT ? (int)(sizeof ex / sizeof *ex) : 16;
  if (k != GEN_UNARY && k != GEN_EXPONENT) count = 15; /* no -NaN: see the note at gen() */
  *n = count;
  return l[j % count];
}

/* A random finite or infinite double in the range of dtype dt. */
static double rand_float(kiln_dtype dt, gen_kind k, uint64_t *s) {
  double r = kt_rand(s), sign = kt_rand(s) < 0.5 ? -1.0 : 1.0;
  if (k == GEN_EXPONENT) return r < 0.5 ? floor(kt_rand(s) * 12 - 4) : kt_rand(s) * 10 - 5;
  if (k == GEN_FINITE) return sign * ldexp(0.5 + kt_rand(s), (int)(kt_rand(s) * 40) - 10);
  if (r < 0.45) return kt_rand(s) * 20 - 10;
  if (r < 0.7) return floor(kt_rand(s) * 21 - 10);
  int emin = dt == KILN_FLOAT32 ? -150 : -1075, emax = dt == KILN_FLOAT32 ? 128 : 1024;
  return sign * ldexp(0.5 + kt_rand(s), emin + (int)(kt_rand(s) * (emax - emin)));
}

static int64_t rand_int(kiln_dtype dt, gen_kind k, uint64_t *s) {
  if (dt == KILN_BOOL) return kt_rand(s) < 0.5;
  if (k == GEN_EXPONENT) return (int64_t)(kt_rand(s) * 24) - 3;
  if (kt_rand(s) < 0.5) {
    int64_t v = (int64_t)(kt_rand(s) * 41) - 20;
    return dt == KILN_UINT8 ? v + 20 : v;
  }
  return (int64_t)rand_u64(s); /* wraps into the full range of dt */
}

/* A tensor of dtype dt and shape, deterministic in seed. Every other
** element (while they last) is one of the dtype's special values, starting
** at an offset taken from the seed so two operands pair different specials.
** Only GEN_UNARY makes a NaN with the sign bit set: with two NaN operands
** IEEE leaves open which one an operation returns. */
static kiln_tensor *gen(kiln_dtype dt, int rank, const int64_t *shape, uint64_t seed, gen_kind k) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
  if (!s) s = 1;
  kiln_tensor *t = kiln_tensor_new(dt, rank, shape, NULL);
  ck_assert_ptr_nonnull(t);
  void *p = kiln_tensor_data(t);
  int64_t size = kiln_tensor_size(t);
  int n = 1;
  if (is_float(dt))
    float_special(dt, k, 0, &n);
  else
    int_special(dt, k, 0, &n);
  int off = (int)(rand_u64(&s) % (uint64_t)n);
  for (int64_t i = 0; i < size; i++) {
    bool special = k != GEN_FINITE && i % 2 == 0 && i / 2 < n;
    int j = (int)(i / 2) + off;
    if (dt == KILN_FLOAT64) {
      ((double *)p)[i] = special ? float_special(dt, k, j, &n) : rand_float(dt, k, &s);
    } else if (dt == KILN_FLOAT32) {
      ((float *)p)[i] = (float)(special ? float_special(dt, k, j, &n) : rand_float(dt, k, &s));
    } else {
      int64_t v = special && dt != KILN_BOOL ? int_special(dt, k, j, &n) : rand_int(dt, k, &s);
      kt_put_int(dt, p, i, v);
    }
  }
  return t;
}

/* A tensor whose element i is special value i (cyclically) of dtype dt's
** list for kind k: (n,1) against (1,n) meets every pair. */
static kiln_tensor *gen_specials(kiln_dtype dt, int rank, const int64_t *shape, gen_kind k) {
  kiln_tensor *t = kiln_tensor_new(dt, rank, shape, NULL);
  ck_assert_ptr_nonnull(t);
  int n = 1;
  for (int64_t i = 0; i < kiln_tensor_size(t); i++) {
    if (dt == KILN_FLOAT64)
      ((double *)t->data)[i] = float_special(dt, k, (int)i, &n);
    else if (dt == KILN_FLOAT32)
      ((float *)t->data)[i] = (float)float_special(dt, k, (int)i, &n);
    else
      kt_put_int(dt, t->data, i, dt == KILN_BOOL ? i % 2 : int_special(dt, k, (int)i, &n));
  }
  return t;
}

/* ------------------------------------------------------------ comparing */

/* The helper every test goes through: compiles outs[] over ins[], calls the
** function with vals[] (twice, so reused buffers are checked too), runs
** kl_ref_run on the same nodes and values, and asserts every output is
** bit-identical. If keep is not NULL, keep[k] receives a copy of JIT output
** k (free with kiln_tensor_free). */
static kiln_function *compile(kiln_ctx *ctx, const char *what, int n_in, kiln_node *const *ins,
                              int n_out, kiln_node *const *outs) {
  ck_assert(n_out <= MAXOUT);
  for (int k = 0; k < n_out; k++)
    ck_assert_msg(outs[k] != NULL, "%s: output %d did not build: %s", what, k, kiln_errmsg(ctx));
  kiln_function *f = kiln_function_new(ctx, what, n_in, ins, n_out, outs, 0, NULL);
  ck_assert_msg(f != NULL, "%s: function_new: %s", what, kiln_errmsg(ctx));
  return f;
}

static void run_both(kiln_ctx *ctx, const char *what, int n_in, kiln_node *const *ins,
                     kiln_tensor *const *vals, int n_out, kiln_node *const *outs,
                     kiln_tensor **keep) {
  kiln_function *f = compile(ctx, what, n_in, ins, n_out, outs);
  kt_check_calls(ctx, f, what, n_in, ins, vals, n_out, outs, 2, keep);
  kiln_function_free(f);
}

static bool has_nan(const kiln_tensor *t) {
  for (int64_t i = 0; i < t->size; i++)
    if (isnan(kl_load_f64((kiln_dtype)t->dtype, t->data, i))) return true;
  return false;
}

/* -------------------------------------------------------- binary ops */

typedef kiln_node *(*bin_fn)(kiln_node *, kiln_node *, const char *, int);
typedef kiln_node *(*un_fn)(kiln_node *, const char *, int);

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_MAX, OP_MIN, N_BIN };
static const struct {
  const char *name;
  bin_fn fn;
  bool no_bool; /* KILN_TYPE when both operands are bool */
} BIN[N_BIN] = {
    {"add", kiln_add_at, false},         {"sub", kiln_sub_at, true},
    {"mul", kiln_mul_at, false},         {"div", kiln_div_at, false},
    {"pow", kiln_pow_at, true},          {"maximum", kiln_maximum_at, false},
    {"minimum", kiln_minimum_at, false},
};

#define D KILN_DYN
typedef struct bpat {
  const char *name;
  int ra, rb;
  int64_t sa[3], sb[3]; /* static dims, KILN_DYN where dynamic */
  int64_t ca[3], cb[3]; /* shapes given at call time */
  bool spec;            /* every pair of special values instead of random ones */
} bpat;

static const bpat BPATS[] = {
    {"(2,3)+(2,3)", 2, 2, {2, 3}, {2, 3}, {2, 3}, {2, 3}, false},
    {"(2,3)+(3,)", 2, 1, {2, 3}, {3}, {2, 3}, {3}, false},
    {"(3,)+(2,3)", 1, 2, {3}, {2, 3}, {3}, {2, 3}, false},
    {"(2,1)+(1,3)", 2, 2, {2, 1}, {1, 3}, {2, 1}, {1, 3}, false},
    {"()+(2,3)", 0, 2, {0}, {2, 3}, {0}, {2, 3}, false},
    {"(2,3)+()", 2, 0, {2, 3}, {0}, {2, 3}, {0}, false},
    {"(?,)+(?,) given 1 and 5", 1, 1, {D}, {D}, {1}, {5}, false},
    {"(?,)+(?,) given 5 and 1", 1, 1, {D}, {D}, {5}, {1}, false},
    {"(2,1,4)+(3,1)", 3, 2, {2, 1, 4}, {3, 1}, {2, 1, 4}, {3, 1}, false},
    {"(?,?)+(?,?) given (3,1) and (1,4)", 2, 2, {D, D}, {D, D}, {3, 1}, {1, 4}, false},
    /* dynamic sizes of 1 that do not stretch: the fast step */
    {"(?,?)+(?,?) given (1,4) and (1,4)", 2, 2, {D, D}, {D, D}, {1, 4}, {1, 4}, false},
    {"(?,?)+(1,4) given (1,4)", 2, 2, {D, D}, {1, 4}, {1, 4}, {1, 4}, false},
    {"(?,1)+(?,?) given (1,1) and (1,5)", 2, 2, {D, 1}, {D, D}, {1, 1}, {1, 5}, false},
    {"(4,33)+(33,)", 2, 1, {4, 33}, {33}, {4, 33}, {33}, false},
    {"(0,3)+(3,)", 2, 1, {0, 3}, {3}, {0, 3}, {3}, false},
    {"(16,1)+(1,16) special pairs", 2, 2, {16, 1}, {1, 16}, {16, 1}, {1, 16}, true},
    {"(?,)+(?,) given 67 and 67", 1, 1, {D}, {D}, {67}, {67}, false}, /* last: coverage checks */
};
#define N_BPATS ((int)(sizeof BPATS / sizeof *BPATS))

/* True if a op b overflows dtype dt (integers), computed exactly. */
static bool int_wraps(int op, kiln_dtype dt, int64_t a, int64_t b) {
  int64_t r;
  bool ovf = op == OP_ADD   ? __builtin_add_overflow(a, b, &r)
             : op == OP_SUB ? __builtin_sub_overflow(a, b, &r)
                            : __builtin_mul_overflow(a, b, &r);
  return ovf || r < kt_int_lo[dt] || r > kt_int_hi[dt];
}

static void check_binary(int op, kiln_dtype dt) {
  kiln_ctx *ctx = new_ctx();
  if (BIN[op].no_bool && dt == KILN_BOOL) {
    kiln_node *a = kiln_input(ctx, "a", dt, 1, NULL), *b = kiln_input(ctx, "b", dt, 1, NULL);
    ck_assert_ptr_null(BIN[op].fn(a, b, __FILE__, __LINE__));
    ck_assert_msg(kiln_errcode(ctx) == KILN_TYPE, "%s(bool, bool): %s", BIN[op].name,
                  kiln_errmsg(ctx));
    kiln_ctx_free(ctx);
    return;
  }
  for (int p = 0; p < N_BPATS; p++) {
    const bpat *bp = &BPATS[p];
    char what[160];
    snprintf(what, sizeof what, "%s %s %s", BIN[op].name, dn(dt), bp->name);
    kiln_node *a = kiln_input(ctx, "a", dt, bp->ra, bp->sa);
    kiln_node *b = kiln_input(ctx, "b", dt, bp->rb, bp->sb);
    kiln_node *y = BIN[op].fn(a, b, __FILE__, __LINE__);
    ck_assert_msg(y != NULL, "%s: %s", what, kiln_errmsg(ctx));
    uint64_t seed = (uint64_t)(op * 1000 + dt * 100 + p) * 2 + 1;
    gen_kind kb = op == OP_POW ? GEN_EXPONENT : GEN_ANY;
    kiln_tensor *v[2];
    if (bp->spec) {
      v[0] = gen_specials(dt, bp->ra, bp->ca, GEN_ANY);
      v[1] = gen_specials(dt, bp->rb, bp->cb, kb);
    } else {
      v[0] = gen(dt, bp->ra, bp->ca, seed, GEN_ANY);
      v[1] = gen(dt, bp->rb, bp->cb, seed + 7777, kb);
    }
    kiln_node *ins[2] = {a, b};
    kiln_tensor *got = NULL;
    run_both(ctx, what, 2, ins, v, 1, &y, &got);
    if (p == N_BPATS - 1) {
      /* the inputs did exercise the interesting cases */
      if (is_float(dt)) ck_assert_msg(has_nan(got), "%s: no NaN in the result", what);
      if (kl_dtype_is_int(dt) && (op == OP_ADD || op == OP_SUB || op == OP_MUL)) {
        int wraps = 0;
        for (int64_t i = 0; i < got->size; i++) {
          int64_t x = kl_load_i64(dt, v[0]->data, i), z = kl_load_i64(dt, v[1]->data, i);
          if (int_wraps(op, dt, x, z)) {
            wraps++;
            /* the result is the exact one modulo 2^bits */
            uint64_t e = op == OP_ADD   ? (uint64_t)x + (uint64_t)z
                         : op == OP_SUB ? (uint64_t)x - (uint64_t)z
                                        : (uint64_t)x * (uint64_t)z;
            int64_t buf[1];
            kt_put_int(dt, buf, 0, (int64_t)e);
            int64_t want = kl_load_i64(dt, buf, 0);
            ck_assert_msg(kl_load_i64(dt, got->data, i) == want, "%s: element %lld", what,
                          (long long)i);
          }
        }
        ck_assert_msg(wraps > 0, "%s: nothing wrapped", what);
      }
    }
    kiln_tensor_free(got);
    kiln_tensor_free(v[0]);
    kiln_tensor_free(v[1]);
  }
  kiln_ctx_free(ctx);
}

START_TEST(bin_add) { check_binary(OP_ADD, (kiln_dtype)_i); }
END_TEST
START_TEST(bin_sub) { check_binary(OP_SUB, (kiln_dtype)_i); }
END_TEST
START_TEST(bin_mul) { check_binary(OP_MUL, (kiln_dtype)_i); }
END_TEST
START_TEST(bin_div) { check_binary(OP_DIV, (kiln_dtype)_i); }
END_TEST
START_TEST(bin_pow) { check_binary(OP_POW, (kiln_dtype)_i); }
END_TEST
START_TEST(bin_maximum) { check_binary(OP_MAX, (kiln_dtype)_i); }
END_TEST
START_TEST(bin_minimum) { check_binary(OP_MIN, (kiln_dtype)_i); }
END_TEST

/* Every op on operands of two different dtypes (promotion casts lowered). */
START_TEST(bin_mixed_dtypes) {
  kiln_dtype da = (kiln_dtype)(_i / KILN_N_DTYPES), db = (kiln_dtype)(_i % KILN_N_DTYPES);
  kiln_ctx *ctx = new_ctx();
  static const bpat pats[] = {
      {"(2,3)+(3,)", 2, 1, {2, 3}, {3}, {2, 3}, {3}, false},
      {"(?,)+(?,) given 40 and 40", 1, 1, {D}, {D}, {40}, {40}, false},
  };
  for (int p = 0; p < 2; p++) {
    kiln_node *a = kiln_input(ctx, "a", da, pats[p].ra, pats[p].sa);
    kiln_node *b = kiln_input(ctx, "b", db, pats[p].rb, pats[p].sb);
    kiln_node *outs[N_BIN];
    int n = 0;
    for (int op = 0; op < N_BIN; op++)
      if (!(BIN[op].no_bool && da == KILN_BOOL && db == KILN_BOOL))
        outs[n++] = BIN[op].fn(a, b, __FILE__, __LINE__);
    kiln_tensor *v[2] = {gen(da, pats[p].ra, pats[p].ca, (uint64_t)_i * 3 + 1, GEN_ANY),
                         gen(db, pats[p].rb, pats[p].cb, (uint64_t)_i * 5 + 2, GEN_ANY)};
    kiln_node *ins[2] = {a, b};
    char what[128];
    snprintf(what, sizeof what, "%s op %s %s", dn(da), dn(db), pats[p].name);
    run_both(ctx, what, 2, ins, v, n, outs, NULL);
    kiln_tensor_free(v[0]);
    kiln_tensor_free(v[1]);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* Weak literals and explicit constants meeting a tensor of each dtype. */
START_TEST(bin_literals) {
  kiln_dtype dt = (kiln_dtype)_i;
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, 2, NULL);
  kiln_node *outs[MAXOUT];
  int n = 0;
  outs[n++] = kiln_add(x, kiln_lit(ctx, 3));
  outs[n++] = kiln_mul(kiln_lit(ctx, 2.5), x);
  outs[n++] = kiln_maximum(x, kiln_lit(ctx, 0));
  outs[n++] = kiln_minimum(kiln_lit(ctx, 1), x);
  outs[n++] = kiln_pow(x, kiln_lit(ctx, 2));
  outs[n++] = kiln_pow(kiln_lit(ctx, 2), x);
  outs[n++] = kiln_sub(x, kiln_lit(ctx, 1));
  outs[n++] = kiln_div(x, kiln_lit(ctx, 4));
  outs[n++] = kiln_mul(kiln_scalar(ctx, dt, 5), x);
  uint8_t cdata[3 * 8];
  for (int i = 0; i < 3; i++)
    kt_put_int(KILN_INT64, cdata, i, (int64_t)(i * 7 - 5));
  kiln_node *c = kiln_const(ctx, KILN_INT64, 1, (int64_t[]){3}, cdata);
  outs[n++] = kiln_add(x, c);
  outs[n++] = kiln_add(kiln_lit(ctx, 0.25), kiln_lit(ctx, 0.5)); /* literals only */
  ck_assert(n == MAXOUT - 1);
  outs[n++] = c; /* a constant as an output */
  kiln_tensor *v = gen(dt, 2, (int64_t[]){4, 3}, 4242 + (uint64_t)_i, GEN_ANY);
  char what[64];
  snprintf(what, sizeof what, "literals with %s", dn(dt));
  run_both(ctx, what, 1, &x, &v, n, outs, NULL);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* --------------------------------------------------------- unary ops */

enum { OP_NEG, OP_SQR, OP_SQRT, OP_EXP, OP_LOG, OP_ABS, N_UN };
static const struct {
  const char *name;
  un_fn fn;
} UN[N_UN] = {{"neg", kiln_neg_at}, {"sqr", kiln_sqr_at}, {"sqrt", kiln_sqrt_at},
              {"exp", kiln_exp_at}, {"log", kiln_log_at}, {"abs", kiln_abs_at}};

typedef struct upat {
  const char *name;
  int r;
  int64_t s[3], c[3];
} upat;

static const upat UPATS[] = {
    {"(2,3)", 2, {2, 3}, {2, 3}},
    {"()", 0, {0}, {0}},
    {"(2,3,4)", 3, {2, 3, 4}, {2, 3, 4}},
    {"(?,?) given (1,5)", 2, {D, D}, {1, 5}},
    {"(0,3)", 2, {0, 3}, {0, 3}},
    {"(?,) given 67", 1, {D}, {67}}, /* last: coverage checks */
};
#define N_UPATS ((int)(sizeof UPATS / sizeof *UPATS))

static void check_unary(int op, kiln_dtype dt) {
  kiln_ctx *ctx = new_ctx();
  if (op == OP_NEG && dt == KILN_BOOL) {
    ck_assert_ptr_null(kiln_neg(kiln_input(ctx, "a", dt, 1, NULL)));
    ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
    kiln_ctx_free(ctx);
    return;
  }
  for (int p = 0; p < N_UPATS; p++) {
    const upat *up = &UPATS[p];
    char what[128];
    snprintf(what, sizeof what, "%s %s %s", UN[op].name, dn(dt), up->name);
    kiln_node *a = kiln_input(ctx, "a", dt, up->r, up->s);
    kiln_node *y = UN[op].fn(a, __FILE__, __LINE__);
    kiln_tensor *v = gen(dt, up->r, up->c, (uint64_t)(op * 100 + dt * 10 + p) + 99, GEN_UNARY);
    kiln_tensor *got = NULL;
    run_both(ctx, what, 1, &a, &v, 1, &y, &got);
    bool signed_input = dt != KILN_BOOL && dt != KILN_UINT8;
    if (p == N_UPATS - 1 && (op == OP_SQRT || op == OP_LOG) && signed_input)
      ck_assert_msg(has_nan(got), "%s: no NaN in the result", what);
    if (p == N_UPATS - 1 && (op == OP_NEG || op == OP_ABS) && kl_dtype_is_int(dt) && signed_input) {
      /* the minimum is among the inputs and stays itself: -(-128) wraps */
      bool seen = false;
      for (int64_t i = 0; i < v->size; i++)
        if (kl_load_i64(dt, v->data, i) == kt_int_lo[dt]) {
          seen = true;
          ck_assert_int_eq(kl_load_i64(dt, got->data, i), kt_int_lo[dt]);
        }
      ck_assert_msg(seen, "%s: the minimum is not among the inputs", what);
    }
    kiln_tensor_free(got);
    kiln_tensor_free(v);
  }
  kiln_ctx_free(ctx);
}

START_TEST(un_neg) { check_unary(OP_NEG, (kiln_dtype)_i); }
END_TEST
START_TEST(un_sqr) { check_unary(OP_SQR, (kiln_dtype)_i); }
END_TEST
START_TEST(un_sqrt) { check_unary(OP_SQRT, (kiln_dtype)_i); }
END_TEST
START_TEST(un_exp) { check_unary(OP_EXP, (kiln_dtype)_i); }
END_TEST
START_TEST(un_log) { check_unary(OP_LOG, (kiln_dtype)_i); }
END_TEST
START_TEST(un_abs) { check_unary(OP_ABS, (kiln_dtype)_i); }
END_TEST

/* -------------------------------------------------------- reductions */

typedef struct rpat {
  const char *name;
  int64_t s[3], c[3];
  gen_kind k;
} rpat;

static const rpat RPATS[] = {
    {"(2,3,4)", {2, 3, 4}, {2, 3, 4}, GEN_ANY},
    {"(2,3,4) finite", {2, 3, 4}, {2, 3, 4}, GEN_FINITE},
    {"(?,?,?) given (5,7,9)", {D, D, D}, {5, 7, 9}, GEN_FINITE},
    {"(?,?,?) given (3,1,40)", {D, D, D}, {3, 1, 40}, GEN_ANY},
    {"(2,0,3)", {2, 0, 3}, {2, 0, 3}, GEN_ANY},
};
#define N_RPATS ((int)(sizeof RPATS / sizeof *RPATS))

/* which: 0 sum, 1 sum_axis, 2 mean, 3 mean_axis. Rank-3 inputs reduced
** over every axis (and axis -1) and over all axes. */
static void check_reduce(int which, kiln_dtype dt) {
  static const char *const names[] = {"sum", "sum_axis", "mean", "mean_axis"};
  kiln_ctx *ctx = new_ctx();
  for (int p = 0; p < N_RPATS; p++) {
    const rpat *rp = &RPATS[p];
    kiln_node *x = kiln_input(ctx, "x", dt, 3, rp->s);
    kiln_node *outs[5];
    int n = 0;
    if (which == 0) outs[n++] = kiln_sum(x);
    if (which == 2) outs[n++] = kiln_mean(x);
    for (int ax = -1; ax < 3 && (which == 1 || which == 3); ax++)
      outs[n++] = which == 1 ? kiln_sum_axis(x, ax) : kiln_mean_axis(x, ax);
    /* the rank-2 result of a reduction reduced again: a chain of reductions */
    if (which == 0) outs[n++] = kiln_sum(kiln_sum_axis(x, 1));
    if (which == 2) outs[n++] = kiln_mean(kiln_sum_axis(x, 0));
    kiln_tensor *v = gen(dt, 3, rp->c, (uint64_t)(which * 100 + dt * 10 + p) + 5, rp->k);
    char what[128];
    snprintf(what, sizeof what, "%s %s %s", names[which], dn(dt), rp->name);
    kiln_tensor *got[5];
    run_both(ctx, what, 1, &x, &v, n, outs, got);
    kiln_dtype want =
        which < 2 ? (is_float(dt) ? dt : KILN_INT64) : (is_float(dt) ? dt : KILN_FLOAT64);
    for (int k = 0; k < n; k++) {
      ck_assert_msg(got[k]->dtype == want, "%s: output %d is %s", what, k, dn(got[k]->dtype));
      kiln_tensor_free(got[k]);
    }
    kiln_tensor_free(v);
  }
  kiln_ctx_free(ctx);
}

START_TEST(red_sum) { check_reduce(0, (kiln_dtype)_i); }
END_TEST
START_TEST(red_sum_axis) { check_reduce(1, (kiln_dtype)_i); }
END_TEST
START_TEST(red_mean) { check_reduce(2, (kiln_dtype)_i); }
END_TEST
START_TEST(red_mean_axis) { check_reduce(3, (kiln_dtype)_i); }
END_TEST

/* --------------------------------------------------------------- dot */

typedef struct dpat {
  const char *name;
  int ra, rb;
  int64_t sa[2], sb[2], ca[2], cb[2];
} dpat;

static const dpat DPATS[] = {
    {"(5,).(5,)", 1, 1, {5}, {5}, {5}, {5}},
    {"(3,5).(5,)", 2, 1, {3, 5}, {5}, {3, 5}, {5}},
    {"(5,).(5,4)", 1, 2, {5}, {5, 4}, {5}, {5, 4}},
    {"(3,5).(5,4)", 2, 2, {3, 5}, {5, 4}, {3, 5}, {5, 4}},
    {"(0,5).(5,4)", 2, 2, {0, 5}, {5, 4}, {0, 5}, {5, 4}},
    {"(3,0).(0,4)", 2, 2, {3, 0}, {0, 4}, {3, 0}, {0, 4}},
    {"(?,?).(?,?) given (3,5) and (5,4)", 2, 2, {D, D}, {D, D}, {3, 5}, {5, 4}},
    {"(?,).(?,) given 100", 1, 1, {D}, {D}, {100}, {100}},
    {"(7,33).(33,6)", 2, 2, {7, 33}, {33, 6}, {7, 33}, {33, 6}},
};
#define N_DPATS ((int)(sizeof DPATS / sizeof *DPATS))

START_TEST(dot_all) {
  kiln_dtype dt = (kiln_dtype)_i;
  kiln_ctx *ctx = new_ctx();
  if (dt == KILN_BOOL) {
    kiln_node *a = kiln_input(ctx, "a", dt, 1, NULL), *b = kiln_input(ctx, "b", dt, 1, NULL);
    ck_assert_ptr_null(kiln_dot(a, b));
    ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
    kiln_ctx_free(ctx);
    return;
  }
  for (int p = 0; p < N_DPATS; p++) {
    for (int kind = 0; kind < 2; kind++) {
      const dpat *dp = &DPATS[p];
      kiln_node *a = kiln_input(ctx, "a", dt, dp->ra, dp->sa);
      kiln_node *b = kiln_input(ctx, "b", dt, dp->rb, dp->sb);
      kiln_node *y = kiln_dot(a, b);
      gen_kind k = kind ? GEN_ANY : GEN_FINITE;
      uint64_t seed = (uint64_t)(dt * 100 + p * 2 + kind) + 31;
      kiln_tensor *v[2] = {gen(dt, dp->ra, dp->ca, seed, k), gen(dt, dp->rb, dp->cb, seed + 1, k)};
      kiln_node *ins[2] = {a, b};
      char what[128];
      snprintf(what, sizeof what, "dot %s %s%s", dn(dt), dp->name, kind ? " specials" : "");
      run_both(ctx, what, 2, ins, v, 1, &y, NULL);
      kiln_tensor_free(v[0]);
      kiln_tensor_free(v[1]);
    }
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* pow with a constant exponent (a weak literal or an explicit scalar) is
** libm's pow, as with a run-time exponent: not x*x for 2, sqrt for 0.5 or 1/x
** for -1, which round differently from pow for some x. */
START_TEST(pow_const_exponent) {
  static const double exps[] = {2.0, 0.5, -1.0, 3.0, 1.0, 0.0};
  for (int k = 0; k < 2; k++) {
    kiln_dtype dt = k ? KILN_FLOAT32 : KILN_FLOAT64;
    enum { N = 24 };
    double xs[N];
    int n = 0;
    uint64_t s = 12345;
    /* values where libm's pow differs from the shortcut, when there are any */
    for (int e = 0; e < 3; e++) {
      int found = 0;
      for (int i = 0; i < 2000000 && found < 4; i++) {
        double x = ldexp(0.5 + kt_rand(&s), (int)(kt_rand(&s) * 40) - 20);
        volatile double ve = exps[e];
        bool differs;
        if (dt == KILN_FLOAT64) {
          double p = pow(x, ve), q = e == 0 ? x * x : e == 1 ? sqrt(x) : 1.0 / x;
          differs = p != q;
        } else {
          float xf = (float)x, vf = (float)ve;
          float p = powf(xf, vf), q = e == 0 ? xf * xf : e == 1 ? sqrtf(xf) : 1.0f / xf;
          differs = p != q;
        }
        if (differs) xs[n + found++] = x;
      }
      n += found;
    }
    for (; n < N; n++)
      xs[n] = (double)n * 0.37 - 3.0;
    kiln_ctx *ctx = new_ctx();
    kiln_node *x = kiln_input(ctx, "x", dt, 1, NULL);
    kiln_node *outs[12];
    for (int e = 0; e < 6; e++) {
      outs[2 * e] = kiln_pow(x, kiln_lit(ctx, exps[e]));
      outs[2 * e + 1] = kiln_pow(x, kiln_scalar(ctx, dt, exps[e]));
    }
    kiln_tensor *v = kt_tensor(dt, 1, (int64_t[]){N}, xs);
    kiln_tensor *got[12];
    run_both(ctx, dt == KILN_FLOAT32 ? "pow float32 const" : "pow float64 const", 1, &x, &v, 12,
             outs, got);
    for (int o = 0; o < 12; o++) {
      for (int i = 0; i < N; i++) {
        double xi = kl_load_f64(dt, v->data, i), want;
        volatile double ve = exps[o / 2];
        if (dt == KILN_FLOAT64)
          want = pow(xi, ve);
        else
          want = powf((float)xi, (float)ve);
        double g = kl_load_f64(dt, got[o]->data, i);
        ck_assert_msg(g == want || (isnan(g) && isnan(want)), "%s pow(%a, %g) = %a, libm %a",
                      dn(dt), xi, exps[o / 2], g, want);
      }
      kiln_tensor_free(got[o]);
    }
    kiln_tensor_free(v);
    kiln_ctx_free(ctx);
  }
}
END_TEST

/* ---------------------------------------------------- composite graphs */

/* Ops feeding ops, outputs that are inputs, constants or repeated, and one
** function called with shapes that grow, shrink, hit zero and broadcast. */
START_TEST(composite) {
  kiln_dtype dt = (kiln_dtype)_i;
  kiln_ctx *ctx = new_ctx();
  kiln_node *a = kiln_input(ctx, "a", dt, 2, NULL);
  kiln_node *b = kiln_input(ctx, "b", dt, 2, (int64_t[]){KILN_DYN, 1});
  kiln_node *c = kiln_input(ctx, "c", dt, 1, NULL);
  kiln_node *outs[MAXOUT];
  int n = 0;
  outs[n++] = kiln_sum_axis(kiln_add(kiln_maximum(kiln_mul(a, b), c), a), 0);
  outs[n++] = kiln_mean(kiln_sqr(kiln_add(a, c)));
  outs[n++] = kiln_dot(kiln_add(a, kiln_lit(ctx, 1)), c);
  outs[n++] = kiln_div(kiln_sqrt(kiln_add(kiln_abs(a), b)), kiln_add(b, kiln_lit(ctx, 1)));
  outs[n++] = a;
  outs[n++] = outs[0];
  outs[n++] = kiln_lit(ctx, 7);
  outs[n++] = kiln_sum(kiln_scalar(ctx, dt, 3));
  outs[n++] = kiln_minimum(kiln_exp(c), kiln_log(kiln_sum_axis(a, 0)));
  outs[n++] = kiln_mean_axis(kiln_mul(kiln_minimum(a, b), kiln_scalar(ctx, dt, 2)), -1);
  outs[n++] = dt == KILN_BOOL ? kiln_mul(a, b) : kiln_pow(kiln_sub(a, b), kiln_lit(ctx, 2));
  outs[n++] = kiln_dot(kiln_sum_axis(kiln_mul(a, b), 1), kiln_neg(kiln_mul(a, kiln_lit(ctx, 3))));
  kiln_node *ins[3] = {a, b, c};
  char what[64];
  snprintf(what, sizeof what, "composite %s", dn(dt));
  kiln_function *f = compile(ctx, what, 3, ins, n, outs);
  static const int64_t shapes[][2] = {{3, 4}, {20, 37}, {1, 4},   {6, 2}, {0, 3},
                                      {2, 0}, {6, 1},   {40, 41}, {2, 3}};
  for (int k = 0; k < (int)(sizeof shapes / sizeof *shapes); k++) {
    int64_t r = shapes[k][0], q = shapes[k][1];
    gen_kind g = k % 2 ? GEN_FINITE : GEN_ANY;
    uint64_t seed = (uint64_t)(_i * 100 + k * 3) + 17;
    kiln_tensor *v[3] = {gen(dt, 2, (int64_t[]){r, q}, seed, g),
                         gen(dt, 2, (int64_t[]){r, 1}, seed + 1, g),
                         gen(dt, 1, (int64_t[]){q}, seed + 2, g)};
    char w2[96];
    snprintf(w2, sizeof w2, "%s a=(%lld,%lld)", what, (long long)r, (long long)q);
    kt_check_calls(ctx, f, w2, 3, ins, v, n, outs, 1, NULL);
    for (int j = 0; j < 3; j++)
      kiln_tensor_free(v[j]);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* ----------------------------------------------- numpy semantics by hand */

/* f(a, b) for two rank-1 inputs of dtype dt built from doubles (converted as
** a C cast); returns a copy of the (checked) JIT result. */
static kiln_tensor *bin_vals(int op, kiln_dtype dt, int n, const double *a, const double *b) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, 1, NULL), *y = kiln_input(ctx, "y", dt, 1, NULL);
  kiln_node *z = BIN[op].fn(x, y, __FILE__, __LINE__);
  kiln_tensor *v[2] = {kt_tensor(dt, 1, (int64_t[]){n}, a), kt_tensor(dt, 1, (int64_t[]){n}, b)};
  kiln_node *ins[2] = {x, y};
  kiln_tensor *got = NULL;
  char what[64];
  snprintf(what, sizeof what, "%s %s", BIN[op].name, dn(dt));
  run_both(ctx, what, 2, ins, v, 1, &z, &got);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
  return got;
}

static kiln_tensor *bin_raw(int op, kiln_dtype dt, int n, const void *a, const void *b) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, 1, NULL), *y = kiln_input(ctx, "y", dt, 1, NULL);
  kiln_node *z = BIN[op].fn(x, y, __FILE__, __LINE__);
  kiln_tensor *v[2] = {kiln_tensor_new(dt, 1, (int64_t[]){n}, a),
                       kiln_tensor_new(dt, 1, (int64_t[]){n}, b)};
  kiln_node *ins[2] = {x, y};
  kiln_tensor *got = NULL;
  run_both(ctx, BIN[op].name, 2, ins, v, 1, &z, &got);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
  return got;
}

static void expect_ints(const kiln_tensor *t, kiln_dtype dt, int n, const int64_t *want,
                        const char *what) {
  ck_assert_msg(t->dtype == dt, "%s: dtype %s, want %s", what, dn(t->dtype), dn(dt));
  ck_assert_int_eq(t->size, n);
  for (int i = 0; i < n; i++)
    ck_assert_msg(kl_load_i64(dt, t->data, i) == want[i], "%s: element %d is %lld, want %lld", what,
                  i, (long long)kl_load_i64(dt, t->data, i), (long long)want[i]);
}

START_TEST(hand_int_wrapping) {
  kiln_tensor *t =
      bin_vals(OP_ADD, KILN_INT8, 3, (double[]){127, -128, 100}, (double[]){1, -1, 100});
  expect_ints(t, KILN_INT8, 3, (int64_t[]){-128, 127, -56}, "int8 add");
  kiln_tensor_free(t);
  t = bin_vals(OP_SUB, KILN_UINT8, 3, (double[]){0, 5, 0}, (double[]){1, 10, 255});
  expect_ints(t, KILN_UINT8, 3, (int64_t[]){255, 251, 1}, "uint8 sub");
  kiln_tensor_free(t);
  t = bin_vals(OP_MUL, KILN_UINT8, 2, (double[]){16, 15}, (double[]){16, 17});
  expect_ints(t, KILN_UINT8, 2, (int64_t[]){0, 255}, "uint8 mul");
  kiln_tensor_free(t);
  t = bin_vals(OP_ADD, KILN_INT16, 2, (double[]){32767, -32768}, (double[]){1, -1});
  expect_ints(t, KILN_INT16, 2, (int64_t[]){-32768, 32767}, "int16 add");
  kiln_tensor_free(t);
  t = bin_vals(OP_MUL, KILN_INT32, 2, (double[]){65536, -2147483648.0}, (double[]){65536, -1});
  expect_ints(t, KILN_INT32, 2, (int64_t[]){0, INT32_MIN}, "int32 mul");
  kiln_tensor_free(t);
  int64_t a64[] = {INT64_MAX, INT64_MIN, INT64_MIN}, b64[] = {1, -1, -1};
  t = bin_raw(OP_ADD, KILN_INT64, 3, a64, b64);
  expect_ints(t, KILN_INT64, 3, (int64_t[]){INT64_MIN, INT64_MAX, INT64_MAX}, "int64 add");
  kiln_tensor_free(t);
  /* uint8 max/min compare unsigned: 200 > 100 */
  t = bin_vals(OP_MAX, KILN_UINT8, 2, (double[]){200, 0}, (double[]){100, 255});
  expect_ints(t, KILN_UINT8, 2, (int64_t[]){200, 255}, "uint8 maximum");
  kiln_tensor_free(t);
  t = bin_vals(OP_MIN, KILN_INT8, 2, (double[]){-128, 5}, (double[]){127, -5});
  expect_ints(t, KILN_INT8, 2, (int64_t[]){-128, -5}, "int8 minimum");
  kiln_tensor_free(t);
  /* bool add is logical or, mul logical and */
  t = bin_vals(OP_ADD, KILN_BOOL, 4, (double[]){0, 0, 1, 1}, (double[]){0, 1, 0, 1});
  expect_ints(t, KILN_BOOL, 4, (int64_t[]){0, 1, 1, 1}, "bool add");
  ck_assert_int_eq(((const uint8_t *)t->data)[3], 1); /* stored as 1, not 2 */
  kiln_tensor_free(t);
  t = bin_vals(OP_MUL, KILN_BOOL, 4, (double[]){0, 0, 1, 1}, (double[]){0, 1, 0, 1});
  expect_ints(t, KILN_BOOL, 4, (int64_t[]){0, 0, 0, 1}, "bool mul");
  kiln_tensor_free(t);
}
END_TEST

START_TEST(hand_int_unary) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_bvector(ctx, "x");
  kiln_node *outs[] = {kiln_neg(x), kiln_abs(x), kiln_sqr(x)};
  kiln_tensor *v = kt_tensor(KILN_INT8, 1, (int64_t[]){4}, (double[]){-128, -12, 16, 127});
  kiln_tensor *got[3];
  run_both(ctx, "int8 unary", 1, &x, &v, 3, outs, got);
  expect_ints(got[0], KILN_INT8, 4, (int64_t[]){-128, 12, -16, -127}, "neg");
  expect_ints(got[1], KILN_INT8, 4, (int64_t[]){-128, 12, 16, 127}, "abs");
  expect_ints(got[2], KILN_INT8, 4, (int64_t[]){0, -112, 0, 1}, "sqr"); /* 144-256, 256, 16129 */
  for (int k = 0; k < 3; k++)
    kiln_tensor_free(got[k]);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

static uint64_t bits_of(const kiln_tensor *t, int64_t i) {
  uint64_t b = 0;
  size_t es = kiln_dtype_size((kiln_dtype)t->dtype);
  memcpy(&b, (const char *)t->data + i * es, es);
  return b;
}

/* maximum/minimum: NaN from either side; between 0.0 and -0.0 the first. */
START_TEST(hand_max_min_nan_zero) {
  const double a[] = {1, NAN, 0.0, -0.0, -INFINITY, NAN, 2};
  const double b[] = {NAN, 1, -0.0, 0.0, NAN, -INFINITY, -3};
  for (int k = 0; k < 2; k++) {
    kiln_dtype dt = k ? KILN_FLOAT32 : KILN_FLOAT64;
    kiln_tensor *mx = bin_vals(OP_MAX, dt, 7, a, b);
    kiln_tensor *mn = bin_vals(OP_MIN, dt, 7, a, b);
    const char *w = dn(dt);
    for (int i = 0; i < 7; i++) {
      bool nan_in = isnan(a[i]) || isnan(b[i]);
      double xm = kl_load_f64(dt, mx->data, i), xn = kl_load_f64(dt, mn->data, i);
      if (nan_in) {
        ck_assert_msg(isnan(xm), "%s maximum(%g, %g) = %g", w, a[i], b[i], xm);
        ck_assert_msg(isnan(xn), "%s minimum(%g, %g) = %g", w, a[i], b[i], xn);
      }
    }
    /* maximum(0.0, -0.0) is +0.0 and maximum(-0.0, 0.0) is -0.0: the first wins */
    ck_assert_msg(!signbit(kl_load_f64(dt, mx->data, 2)), "%s maximum(0.0, -0.0) is -0.0", w);
    ck_assert_msg(signbit(kl_load_f64(dt, mx->data, 3)), "%s maximum(-0.0, 0.0) is +0.0", w);
    ck_assert_msg(!signbit(kl_load_f64(dt, mn->data, 2)), "%s minimum(0.0, -0.0) is -0.0", w);
    ck_assert_msg(signbit(kl_load_f64(dt, mn->data, 3)), "%s minimum(-0.0, 0.0) is +0.0", w);
    ck_assert(bits_of(mx, 2) == 0 && bits_of(mn, 2) == 0);
    ck_assert(kl_load_f64(dt, mx->data, 6) == 2.0 && kl_load_f64(dt, mn->data, 6) == -3.0);
    kiln_tensor_free(mx);
    kiln_tensor_free(mn);
  }
}
END_TEST

/* Integer power: exact by squaring, wrapping; negative exponents truncate. */
START_TEST(hand_int_pow) {
  const double a[] = {2, 2, -1, -1, 1, 0, 0, 3, -2, 5, -5};
  const double b[] = {10, -1, -3, -2, -7, -1, 0, 4, 3, 0, -1};
  const int64_t want[] = {1024, 0, -1, 1, 1, 0, 1, 81, -8, 1, 0};
  for (int dt = KILN_INT16; dt <= KILN_INT64; dt++) {
    kiln_tensor *t = bin_vals(OP_POW, (kiln_dtype)dt, 11, a, b);
    expect_ints(t, (kiln_dtype)dt, 11, want, dn(dt));
    kiln_tensor_free(t);
  }
  kiln_tensor *t = bin_vals(OP_POW, KILN_INT8, 4, (double[]){2, -2, 3, 2}, (double[]){7, 7, 5, 8});
  expect_ints(t, KILN_INT8, 4, (int64_t[]){-128, -128, -13, 0}, "int8 pow"); /* 243-256 */
  kiln_tensor_free(t);
  t = bin_vals(OP_POW, KILN_UINT8, 3, (double[]){2, 3, 255}, (double[]){8, 5, 2});
  expect_ints(t, KILN_UINT8, 3, (int64_t[]){0, 243, 1}, "uint8 pow"); /* 65025 mod 256 */
  kiln_tensor_free(t);
  /* 3**40 in int64 wraps; computed here by repeated multiplication */
  uint64_t p = 1;
  for (int i = 0; i < 40; i++)
    p *= 3u;
  int64_t base[] = {3, 7}, ex[] = {40, 0};
  t = bin_raw(OP_POW, KILN_INT64, 2, base, ex);
  expect_ints(t, KILN_INT64, 2, (int64_t[]){(int64_t)p, 1}, "int64 3**40");
  ck_assert(((const int64_t *)t->data)[0] < 0); /* 3**40 > 2**63 */
  kiln_tensor_free(t);
}
END_TEST

/* A function of one input built by mk; returns the JIT output copy. */
typedef kiln_node *(*mk_fn)(kiln_node *);
static kiln_node *mk_sum(kiln_node *x) { return kiln_sum(x); }
static kiln_node *mk_mean(kiln_node *x) { return kiln_mean(x); }
static kiln_node *mk_sum0(kiln_node *x) { return kiln_sum_axis(x, 0); }
static kiln_node *mk_mean1(kiln_node *x) { return kiln_mean_axis(x, 1); }

static kiln_tensor *un_vals(mk_fn mk, kiln_dtype dt, int rank, const int64_t *shape,
                            const double *vals) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, rank, NULL);
  kiln_node *y = mk(x);
  kiln_tensor *v = kt_tensor(dt, rank, shape, vals);
  kiln_tensor *got = NULL;
  run_both(ctx, dn(dt), 1, &x, &v, 1, &y, &got);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
  return got;
}

START_TEST(hand_reductions) {
  kiln_tensor *t = un_vals(mk_sum, KILN_INT8, 1, (int64_t[]){2}, (double[]){100, 100});
  ck_assert_int_eq(t->dtype, KILN_INT64);
  ck_assert_int_eq(((const int64_t *)t->data)[0], 200);
  kiln_tensor_free(t);
  t = un_vals(mk_sum, KILN_UINT8, 1, (int64_t[]){3}, (double[]){255, 255, 255});
  ck_assert_int_eq(t->dtype, KILN_INT64);
  ck_assert_int_eq(((const int64_t *)t->data)[0], 765);
  kiln_tensor_free(t);
  t = un_vals(mk_sum, KILN_BOOL, 1, (int64_t[]){4}, (double[]){1, 1, 0, 1});
  ck_assert_int_eq(t->dtype, KILN_INT64);
  ck_assert_int_eq(((const int64_t *)t->data)[0], 3);
  kiln_tensor_free(t);
  t = un_vals(mk_mean, KILN_INT32, 1, (int64_t[]){2}, (double[]){1, 2});
  ck_assert_int_eq(t->dtype, KILN_FLOAT64);
  ck_assert(((const double *)t->data)[0] == 1.5);
  kiln_tensor_free(t);
  t = un_vals(mk_mean, KILN_BOOL, 1, (int64_t[]){4}, (double[]){1, 0, 0, 0});
  ck_assert_int_eq(t->dtype, KILN_FLOAT64);
  ck_assert(((const double *)t->data)[0] == 0.25);
  kiln_tensor_free(t);
  /* int16 sums do not wrap at 16 bits: 2 * 32767 */
  t = un_vals(mk_sum0, KILN_INT16, 2, (int64_t[]){2, 2}, (double[]){32767, -32768, 32767, -32768});
  ck_assert_int_eq(t->dtype, KILN_INT64);
  ck_assert_int_eq(((const int64_t *)t->data)[0], 65534);
  ck_assert_int_eq(((const int64_t *)t->data)[1], -65536);
  kiln_tensor_free(t);
  /* mean over axis 1 of int8 [[1, 2, 4], [-1, -2, -4]] */
  t = un_vals(mk_mean1, KILN_INT8, 2, (int64_t[]){2, 3}, (double[]){1, 2, 4, -1, -2, -4});
  ck_assert_int_eq(t->dtype, KILN_FLOAT64);
  ck_assert(((const double *)t->data)[0] == 7.0 / 3.0);
  ck_assert(((const double *)t->data)[1] == -7.0 / 3.0);
  kiln_tensor_free(t);
  /* empty: the sum is 0, the mean 0/0 */
  t = un_vals(mk_sum, KILN_FLOAT32, 1, (int64_t[]){0}, NULL);
  ck_assert(bits_of(t, 0) == 0);
  kiln_tensor_free(t);
  t = un_vals(mk_mean, KILN_FLOAT64, 1, (int64_t[]){0}, NULL);
  ck_assert(isnan(((const double *)t->data)[0]));
  kiln_tensor_free(t);
  /* a sum of -0.0s starts from +0.0: +0.0 + -0.0 = +0.0 */
  t = un_vals(mk_sum, KILN_FLOAT64, 1, (int64_t[]){2}, (double[]){-0.0, -0.0});
  ck_assert(bits_of(t, 0) == 0);
  kiln_tensor_free(t);
}
END_TEST

/* Sums run in increasing index order: float32 [1e8, 1, -1e8, 1] gives
** ((1e8 + 1) + -1e8) + 1 = (1e8 + -1e8) + 1 = 1 (1e8 + 1 rounds to 1e8,
** the float32 spacing there being 8). A pairwise sum would give 0. */
START_TEST(hand_sum_order) {
  volatile float big = 1e8f;
  ck_assert(big + 1.0f == big); /* the premise */
  kiln_tensor *t = un_vals(mk_sum, KILN_FLOAT32, 1, (int64_t[]){4}, (double[]){1e8, 1, -1e8, 1});
  ck_assert_int_eq(t->dtype, KILN_FLOAT32);
  ck_assert_msg(((const float *)t->data)[0] == 1.0f, "sum = %a", ((const float *)t->data)[0]);
  kiln_tensor_free(t);
  t = un_vals(mk_mean, KILN_FLOAT32, 1, (int64_t[]){4}, (double[]){1e8, 1, -1e8, 1});
  ck_assert(((const float *)t->data)[0] == 0.25f);
  kiln_tensor_free(t);
  /* along axis 0 of (4, 2): each column in the same order */
  t = un_vals(mk_sum0, KILN_FLOAT32, 2, (int64_t[]){4, 2},
              (double[]){1e8, 1, 1, 1e8, -1e8, 1, 1, -1e8});
  ck_assert(((const float *)t->data)[0] == 1.0f); /* 1e8, 1, -1e8, 1 */
  ck_assert(((const float *)t->data)[1] == 0.0f); /* 1, 1e8, 1, -1e8: (1e8+1)... = 0 */
  kiln_tensor_free(t);
  /* float64: 1e17 has spacing 16 */
  t = un_vals(mk_sum, KILN_FLOAT64, 1, (int64_t[]){4}, (double[]){1e17, 1, -1e17, 1});
  ck_assert(((const double *)t->data)[0] == 1.0);
  kiln_tensor_free(t);
  /* dot accumulates the same way */
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_fvector(ctx, "x"), *y = kiln_fvector(ctx, "y");
  kiln_node *z = kiln_dot(x, y);
  kiln_tensor *v[2] = {kt_tensor(KILN_FLOAT32, 1, (int64_t[]){4}, (double[]){1e8, 1, -1e8, 1}),
                       kt_tensor(KILN_FLOAT32, 1, (int64_t[]){4}, (double[]){1, 1, 1, 1})};
  kiln_node *ins[2] = {x, y};
  run_both(ctx, "float32 dot order", 2, ins, v, 1, &z, &t);
  ck_assert(((const float *)t->data)[0] == 1.0f);
  kiln_tensor_free(t);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
}
END_TEST

static kiln_tensor *dot_vals(kiln_dtype dt, int ra, const int64_t *sa, const double *a, int rb,
                             const int64_t *sb, const double *b) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_input(ctx, "x", dt, ra, NULL), *y = kiln_input(ctx, "y", dt, rb, NULL);
  kiln_node *z = kiln_dot(x, y);
  kiln_tensor *v[2] = {kt_tensor(dt, ra, sa, a), kt_tensor(dt, rb, sb, b)};
  kiln_node *ins[2] = {x, y};
  kiln_tensor *got = NULL;
  run_both(ctx, "dot", 2, ins, v, 1, &z, &got);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
  return got;
}

/* dot keeps the integer dtype and wraps, as numpy.dot does. */
START_TEST(hand_dot) {
  kiln_tensor *t = dot_vals(KILN_INT8, 1, (int64_t[]){2}, (double[]){100, 100}, 1, (int64_t[]){2},
                            (double[]){2, 1});
  expect_ints(t, KILN_INT8, 1, (int64_t[]){44}, "int8 dot"); /* 300 - 256 */
  kiln_tensor_free(t);
  t = dot_vals(KILN_UINT8, 1, (int64_t[]){2}, (double[]){200, 10}, 1, (int64_t[]){2},
               (double[]){2, 1});
  expect_ints(t, KILN_UINT8, 1, (int64_t[]){154}, "uint8 dot"); /* 410 - 256 */
  kiln_tensor_free(t);
  t = dot_vals(KILN_INT32, 1, (int64_t[]){2}, (double[]){1073741824.0, 1073741824.0}, 1,
               (int64_t[]){2}, (double[]){2, 2});
  expect_ints(t, KILN_INT32, 1, (int64_t[]){0}, "int32 dot"); /* 2**33 */
  kiln_tensor_free(t);
  /* (2,3).(3,2) int16 */
  t = dot_vals(KILN_INT16, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6}, 2, (int64_t[]){3, 2},
               (double[]){7, 8, 9, 10, 11, 12});
  expect_ints(t, KILN_INT16, 4, (int64_t[]){58, 64, 139, 154}, "int16 matmul");
  ck_assert_int_eq(t->rank, 2);
  kiln_tensor_free(t);
  /* (2,3).(3,) int64 and (3,).(3,2) */
  t = dot_vals(KILN_INT64, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6}, 1, (int64_t[]){3},
               (double[]){1, 0, -1});
  expect_ints(t, KILN_INT64, 2, (int64_t[]){-2, -2}, "int64 matvec");
  kiln_tensor_free(t);
  t = dot_vals(KILN_INT64, 1, (int64_t[]){3}, (double[]){1, 0, -1}, 2, (int64_t[]){3, 2},
               (double[]){7, 8, 9, 10, 11, 12});
  expect_ints(t, KILN_INT64, 2, (int64_t[]){-4, -4}, "int64 vecmat");
  kiln_tensor_free(t);
  /* zero inner size: zeros */
  t = dot_vals(KILN_FLOAT64, 2, (int64_t[]){2, 0}, NULL, 2, (int64_t[]){0, 3}, NULL);
  ck_assert_int_eq(t->size, 6);
  for (int i = 0; i < 6; i++)
    ck_assert(bits_of(t, i) == 0);
  kiln_tensor_free(t);
  /* zero rows: an empty (0, 4) */
  t = dot_vals(KILN_FLOAT32, 2, (int64_t[]){0, 5}, NULL, 2, (int64_t[]){5, 4},
               (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20});
  ck_assert_int_eq(t->rank, 2);
  ck_assert_int_eq(t->shape[0], 0);
  ck_assert_int_eq(t->shape[1], 4);
  kiln_tensor_free(t);
}
END_TEST

/* Float functions of small integers are float32, and true division. */
START_TEST(hand_float_fns) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_bvector(ctx, "x");
  kiln_node *outs[] = {kiln_sqrt(x), kiln_exp(x), kiln_log(x), kiln_div(x, kiln_lit(ctx, 2))};
  kiln_tensor *v = kt_tensor(KILN_INT8, 1, (int64_t[]){3}, (double[]){4, 0, -1});
  kiln_tensor *g[4];
  run_both(ctx, "int8 float fns", 1, &x, &v, 4, outs, g);
  ck_assert_int_eq(g[0]->dtype, KILN_FLOAT32);
  const float *s = g[0]->data, *e = g[1]->data, *l = g[2]->data;
  ck_assert(s[0] == 2.0f && s[1] == 0.0f && isnan(s[2]));
  ck_assert(e[1] == 1.0f);
  ck_assert(isinf(l[1]) && l[1] < 0 && isnan(l[2]));
  ck_assert_int_eq(g[3]->dtype, KILN_FLOAT64);
  const double *q = g[3]->data;
  ck_assert(q[0] == 2.0 && q[1] == 0.0 && q[2] == -0.5);
  for (int k = 0; k < 4; k++)
    kiln_tensor_free(g[k]);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- dumps */

START_TEST(dump_stages) {
  kiln_ctx *ctx = new_ctx();
  kiln_node *x = kiln_fvector(ctx, "x"), *y = kiln_fvector(ctx, "y");
  kiln_node *z = kiln_name(kiln_sum(kiln_mul(x, y)), "total");
  kiln_node *ins[] = {x, y};
  kiln_function *f = kiln_function_new(ctx, "dotlike", 2, ins, 1, &z, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  char *opt = kt_dump_stage(f, KILN_STAGE_LLVM_OPT);
  ck_assert_msg(strstr(opt, "define") != NULL, "%s", opt);
  ck_assert_msg(strstr(opt, "@kiln_step_") != NULL, "no step function: %s", opt);
  char *graph = kt_dump_stage(f, KILN_STAGE_GRAPH);
  ck_assert_msg(strlen(graph) > 0, "empty graph dump");
  ck_assert_msg(strstr(graph, "mul") && strstr(graph, "sum") && strstr(graph, "'total'"), "%s",
                graph);
  char *ir = kt_dump_stage(f, KILN_STAGE_LLVM_IR);
  ck_assert_msg(strlen(ir) > 0 && strstr(ir, "define") && strstr(ir, "fmul float"), "%s", ir);
  char *as = kt_dump_stage(f, KILN_STAGE_ASM);
  ck_assert_msg(strlen(as) > 0 && strstr(as, "kiln_step_"), "%s", as);
  /* the same step function name in every LLVM stage */
  const char *p = strstr(opt, "@kiln_step_");
  char sym[64];
  size_t k = 0;
  for (p++; k + 1 < sizeof sym &&
            (p[k] == '_' || (p[k] >= 'a' && p[k] <= 'z') || (p[k] >= '0' && p[k] <= '9'));
       k++)
    sym[k] = p[k];
  sym[k] = 0;
  ck_assert_msg(strstr(ir, sym) && strstr(as, sym), "%s not in every stage", sym);
  ck_assert_int_eq(kiln_function_dump(f, KILN_N_STAGES, stdout), KILN_MISUSE);
  ck_assert_int_eq(kiln_function_dump(f, KILN_STAGE_GRAPH, NULL), KILN_MISUSE);
  ck_assert_int_eq(kiln_function_dump(NULL, KILN_STAGE_GRAPH, stdout), KILN_MISUSE);
  free(opt);
  free(graph);
  free(ir);
  free(as);
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- main */

int main(void) {
  Suite *s = suite_create("ops");
  TCase *tc = tcase_create("binary");
  tcase_add_loop_test(tc, bin_add, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, bin_sub, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, bin_mul, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, bin_div, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, bin_pow, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, bin_maximum, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, bin_minimum, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, bin_mixed_dtypes, 0, KILN_N_DTYPES * KILN_N_DTYPES);
  tcase_add_loop_test(tc, bin_literals, 0, KILN_N_DTYPES);
  tcase_add_test(tc, pow_const_exponent);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);

  tc = tcase_create("unary");
  tcase_add_loop_test(tc, un_neg, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_sqr, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_sqrt, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_exp, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_log, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, un_abs, 0, KILN_N_DTYPES);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);

  tc = tcase_create("reduce");
  tcase_add_loop_test(tc, red_sum, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, red_sum_axis, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, red_mean, 0, KILN_N_DTYPES);
  tcase_add_loop_test(tc, red_mean_axis, 0, KILN_N_DTYPES);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);

  tc = tcase_create("dot");
  tcase_add_loop_test(tc, dot_all, 0, KILN_N_DTYPES);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);

  tc = tcase_create("composite");
  tcase_add_loop_test(tc, composite, 0, KILN_N_DTYPES);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);

  tc = tcase_create("numpy");
  tcase_add_test(tc, hand_int_wrapping);
  tcase_add_test(tc, hand_int_unary);
  tcase_add_test(tc, hand_max_min_nan_zero);
  tcase_add_test(tc, hand_int_pow);
  tcase_add_test(tc, hand_reductions);
  tcase_add_test(tc, hand_sum_order);
  tcase_add_test(tc, hand_dot);
  tcase_add_test(tc, hand_float_fns);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);

  tc = tcase_create("dump");
  tcase_add_test(tc, dump_stages);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
