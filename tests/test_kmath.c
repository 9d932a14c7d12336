/*
** test_kmath.c -- Kiln's float32 exp, log, tanh (compiler/ops/kmath.c) and
** their IR twins (compiler/llvm/kmath_ir.c):
**  - accuracy against libm's double functions rounded to float, in ulps,
**    over a strided sweep of all 2^32 bit patterns plus dense windows where
**    the algorithms switch (thresholds, denormals); NaN exactly where the
**    reference is NaN. KILN_KMATH_STRIDE=1 sweeps every float (about 4e9
**    evaluations per function, minutes) and also checks monotonicity over
**    all of them;
**  - special values, exactly;
**  - the JIT (through the public API, fvector kernels that LLVM vectorizes,
**    and constant folding) against the C functions, bit for bit;
**  - that the optimized IR of a tanh kernel is vector code with no calls.
*/
#define _POSIX_C_SOURCE 200809L /* open_memstream */
#include "compiler/ops/kmath.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The accuracy stated in kmath.c: measured over every float32 input. */
#define MAX_ULP 1

typedef float (*f32_fn)(float);
typedef double (*f64_fn)(double);

static const struct {
  const char *name;
  f32_fn f;
  f64_fn ref;
} FNS[] = {{"exp", kl_expf, exp}, {"log", kl_logf, log}, {"tanh", kl_tanhf, tanh}};
#define NF ((int)(sizeof FNS / sizeof *FNS))

static float of_bits(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

static uint32_t bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

/* Floats in order as integers: ulp distance is a difference (-0 == +0). */
static int64_t ordinal(float x) {
  uint32_t u = bits(x);
  return u & 0x80000000u ? -(int64_t)(u & 0x7fffffffu) : (int64_t)u;
}

typedef struct sweep {
  int64_t worst;
  float worst_x;
  uint64_t n, nan_mismatch;
} sweep;

/* Checks f(x) against libm and returns it. */
static float check_one(int fn, float x, sweep *s) {
  float got = FNS[fn].f(x), want = (float)FNS[fn].ref((double)x);
  s->n++;
  if (isnan(got) || isnan(want)) {
    if (isnan(got) != isnan(want) && s->nan_mismatch++ < 5)
      fprintf(stderr, "%s(%a): got %a, libm %a\n", FNS[fn].name, x, got, want);
    return got;
  }
  int64_t d = llabs(ordinal(got) - ordinal(want));
  if (d > s->worst) s->worst = d, s->worst_x = x;
  return got;
}

static void report(int fn, const char *what, const sweep *s) {
  fprintf(stderr, "kmath: %-4s %-28s %11llu inputs, max %lld ulp (at %a)\n", FNS[fn].name, what,
          (unsigned long long)s->n, (long long)s->worst, s->worst_x);
  ck_assert_msg(s->nan_mismatch == 0, "%s: %llu inputs NaN on one side only", FNS[fn].name,
                (unsigned long long)s->nan_mismatch);
  ck_assert_msg(s->worst <= MAX_ULP, "%s: %lld ulp at %a", FNS[fn].name, (long long)s->worst,
                s->worst_x);
}

static uint64_t stride(void) {
  const char *s = getenv("KILN_KMATH_STRIDE");
  long v = s ? atol(s) : 0;
  /* odd, so every residue of the low mantissa bits is visited */
  return v >= 1 ? (uint64_t)v : 61;
}

/* Every stride-th bit pattern, both signs, NaNs and infinities included. */
START_TEST(ulp_sweep) {
  int fn = _i;
  uint64_t st = stride();
  sweep s = {0};
  float prev = NAN;
  uint64_t non_monotone = 0;
  for (uint64_t u = 0; u < (1ull << 32); u += st) {
    float x = of_bits((uint32_t)u), y = check_one(fn, x, &s);
    /* with stride 1 the positive floats come in increasing order, then the
    ** negative ones in decreasing order: each function is non-decreasing
    ** (NaNs, in or out, are skipped) */
    if (st == 1 && u != 0x80000000u && !isnan(y) && !isnan(prev)) {
      bool ok = u < 0x80000000u ? y >= prev : y <= prev;
      if (!ok && non_monotone++ < 5)
        fprintf(stderr, "%s not monotone at %a: %a after %a\n", FNS[fn].name, x, y, prev);
    }
    prev = y;
  }
  char what[40];
  snprintf(what, sizeof what, "every %llu%s float", (unsigned long long)st, st == 1 ? "st" : "th");
  report(fn, what, &s);
  ck_assert_uint_eq(non_monotone, 0);
}
END_TEST

/* Every float in [lo, hi]: where the algorithms change regime. */
static void window(int fn, float lo, float hi, sweep *s) {
  for (float x = lo; x <= hi; x = nextafterf(x, INFINITY))
    check_one(fn, x, s);
}

/* Dense windows, each also checked for monotonicity (one assertion at the
** end: Check writes to a pipe for every assertion it passes). */
static void monotone_window(f32_fn f, float lo, float hi) {
  float prev = f(lo), bad = NAN;
  for (float x = nextafterf(lo, INFINITY); x <= hi; x = nextafterf(x, INFINITY)) {
    float y = f(x);
    if (y < prev && isnan(bad)) bad = x;
    prev = y;
  }
  ck_assert_msg(isnan(bad), "not monotone at %a: %a after %a", bad, f(bad),
                f(nextafterf(bad, -INFINITY)));
}

START_TEST(ulp_windows) {
  sweep s = {0};
  /* exp: overflow, denormal results, underflow to 0, near 0; every
  ** reduction interval boundary (k + 1/2) ln2 for k in [-150, 128] */
  window(0, 88.0f, 89.5f, &s);
  window(0, -104.5f, -87.0f, &s);
  window(0, 0x1p-24f, 0x1p-23f, &s);
  window(0, -0x1p-23f, -0x1p-24f, &s);
  for (int k = -150; k <= 128; k++) {
    float c = (float)((k + 0.5) * 0.69314718055994530942);
    window(0, c - 0x1p-12f * fabsf(c), c + 0x1p-12f * fabsf(c), &s);
  }
  report(0, "windows", &s);
  monotone_window(kl_expf, -104.5f, -87.0f);
  monotone_window(kl_expf, 88.0f, 89.5f);
  monotone_window(kl_expf, -0.5f, -0x1p-6f);
  monotone_window(kl_expf, 0x1p-6f, 0.5f);

  s = (sweep){0};
  /* log: every positive denormal and the smallest normals; around 1,
  ** sqrt(1/2) and sqrt(2) (where the mantissa is renormalized) */
  window(1, of_bits(1), 0x1p-125f, &s);
  window(1, 0.5f, 2.0f, &s);
  window(1, 0x1.6ap-2f, 0x1.6bp-2f, &s);
  window(1, 0x1.6ap+0f, 0x1.6bp+0f, &s);
  report(1, "windows", &s);
  monotone_window(kl_logf, of_bits(1), 0x1p-125f);
  monotone_window(kl_logf, 0.5f, 2.0f);

  s = (sweep){0};
  /* tanh: near 0 and the switch to the exp formula (0.5625); where it
  ** reaches 1 */
  window(2, 0x1p-12f, 0x1p-10f, &s);
  window(2, 0.5f, 0.625f, &s);
  window(2, -0.625f, -0.5f, &s);
  window(2, 8.0f, 10.0f, &s);
  report(2, "windows", &s);
  monotone_window(kl_tanhf, 0.25f, 1.0f);
  monotone_window(kl_tanhf, -1.0f, -0.25f);
  monotone_window(kl_tanhf, 8.0f, 10.0f);
}
END_TEST

/* Equal, with any NaN equal to any NaN and the sign of zero significant. */
static bool same(float a, float b) { return (isnan(a) && isnan(b)) || bits(a) == bits(b); }

/* Within MAX_ULP of libm's value rounded to float (both finite). */
#define NEAR(f, x, want)                                                                           \
  ck_assert_msg(isfinite(f(x)) && llabs(ordinal(f(x)) - ordinal(want)) <= MAX_ULP,                 \
                "%s(%a) = %a, libm %a", #f, (double)(x), (double)f(x), (double)(want))

#define EXPECT(f, x, want)                                                                         \
  ck_assert_msg(same(f(x), want), "%s(%a) = %a, want %a", #f, (double)(x), (double)f(x),           \
                (double)(want))

START_TEST(special_values) {
  float dmin = of_bits(1); /* 2^-149 */
  EXPECT(kl_expf, 0.0f, 1.0f);
  EXPECT(kl_expf, -0.0f, 1.0f);
  EXPECT(kl_expf, INFINITY, INFINITY);
  EXPECT(kl_expf, -INFINITY, 0.0f);
  EXPECT(kl_expf, NAN, NAN);
  NEAR(kl_expf, 1.0f, 0x1.5bf0a8p+1f);
  NEAR(kl_expf, 88.72f, 0x1.fe8c9p+127f);          /* finite, just below FLT_MAX */
  NEAR(kl_expf, 0x1.62e42ep+6f, 0x1.ffff08p+127f); /* the last x below ln(FLT_MAX) */
  EXPECT(kl_expf, 0x1.62e430p+6f, INFINITY);       /* the first above */
  EXPECT(kl_expf, 88.73f, INFINITY);
  EXPECT(kl_expf, 1000.0f, INFINITY);
  NEAR(kl_expf, -87.0f, 0x1.666d0ep-126f); /* normal */
  NEAR(kl_expf, -88.0f, 0x1.07b71p-127f);  /* denormal */
  EXPECT(kl_expf, -103.97f, dmin);         /* the smallest denormal */
  EXPECT(kl_expf, -104.0f, 0.0f);
  EXPECT(kl_expf, -1000.0f, 0.0f);
  EXPECT(kl_expf, dmin, 1.0f);
  EXPECT(kl_expf, -dmin, 1.0f);

  EXPECT(kl_logf, 1.0f, 0.0f);
  EXPECT(kl_logf, 0.0f, -INFINITY);
  EXPECT(kl_logf, -0.0f, -INFINITY);
  EXPECT(kl_logf, INFINITY, INFINITY);
  EXPECT(kl_logf, -INFINITY, NAN);
  EXPECT(kl_logf, -1.0f, NAN);
  EXPECT(kl_logf, -dmin, NAN);
  EXPECT(kl_logf, NAN, NAN);
  NEAR(kl_logf, 2.0f, 0x1.62e43p-1f);
  NEAR(kl_logf, dmin, -0x1.9d1dap+6f); /* -149 ln2 */
  NEAR(kl_logf, 0x1p-126f, -0x1.5d58ap+6f);
  NEAR(kl_logf, 0x1.fffffep+127f, 0x1.62e43p+6f);

  EXPECT(kl_tanhf, 0.0f, 0.0f);
  EXPECT(kl_tanhf, -0.0f, -0.0f);
  EXPECT(kl_tanhf, INFINITY, 1.0f);
  EXPECT(kl_tanhf, -INFINITY, -1.0f);
  EXPECT(kl_tanhf, NAN, NAN);
  EXPECT(kl_tanhf, dmin, dmin);
  EXPECT(kl_tanhf, -dmin, -dmin);
  EXPECT(kl_tanhf, 0x1p-100f, 0x1p-100f);
  EXPECT(kl_tanhf, 10.0f, 1.0f);
  EXPECT(kl_tanhf, -10.0f, -1.0f);
  EXPECT(kl_tanhf, 1e30f, 1.0f);

  EXPECT(kl_sigmoidf, 0.0f, 0.5f);
  EXPECT(kl_sigmoidf, -1000.0f, 0.0f);
  EXPECT(kl_sigmoidf, 1000.0f, 1.0f);
  EXPECT(kl_sigmoidf, INFINITY, 1.0f);
  EXPECT(kl_sigmoidf, -INFINITY, 0.0f);
  EXPECT(kl_sigmoidf, NAN, NAN);
  EXPECT(kl_softplusf, 1000.0f, 1000.0f);
  EXPECT(kl_softplusf, -1000.0f, 0.0f);
  EXPECT(kl_softplusf, NAN, NAN);

  /* odd and symmetric: the sign is put back exactly */
  for (float x = 1e-6f; x < 20.0f; x *= 1.37f)
    ck_assert(bits(kl_tanhf(-x)) == (bits(kl_tanhf(x)) | 0x80000000u));
}
END_TEST

/* ------------------------------------------------ the JIT against the C */

static const float SPECIAL[] = {0.0f,        -0.0f,      1.0f,          -1.0f,    0.5625f,
                                -0.5625f,    88.72f,     88.73f,        -103.97f, -104.0f,
                                -87.5f,      1e-45f,     -1e-45f,       1e-39f,   0x1p-126f,
                                INFINITY,    -INFINITY,  NAN,           9.0f,     -9.0f,
                                0.70710677f, 1.4142135f, 3.4028235e38f, 1e-20f,   -1e-20f};
#define N_SPECIAL ((int)(sizeof SPECIAL / sizeof *SPECIAL))

typedef kiln_node *(*op_fn)(kiln_node *);
static kiln_node *b_exp(kiln_node *x) { return kiln_exp(x); }
static kiln_node *b_log(kiln_node *x) { return kiln_log(x); }
static kiln_node *b_tanh(kiln_node *x) { return kiln_tanh(x); }
static kiln_node *b_sigmoid(kiln_node *x) { return kiln_sigmoid(x); }
static kiln_node *b_softplus(kiln_node *x) { return kiln_softplus(x); }

static const struct {
  const char *name;
  op_fn build;
  f32_fn c;
} OPS[] = {{"exp", b_exp, kl_expf},
           {"log", b_log, kl_logf},
           {"tanh", b_tanh, kl_tanhf},
           {"sigmoid", b_sigmoid, kl_sigmoidf},
           {"softplus", b_softplus, kl_softplusf}};
#define N_OPS ((int)(sizeof OPS / sizeof *OPS))

/* An fvector of n elements: the specials, then random bit patterns (every
** kind of float, NaNs too) and random values of moderate size, where most
** of the interesting results are. n is not a multiple of 16, so the vector
** loop and its scalar remainder both run. */
static float *inputs(int64_t n, uint64_t seed) {
  float *v = malloc((size_t)n * sizeof *v);
  uint64_t st = seed;
  for (int64_t i = 0; i < n; i++) {
    if (i < N_SPECIAL)
      v[i] = SPECIAL[i];
    else if (i % 2)
      v[i] = of_bits((uint32_t)(kt_rand(&st) * 4294967296.0));
    else
      v[i] = (float)((kt_rand(&st) - 0.5) * 240.0);
  }
  return v;
}

START_TEST(jit_equals_c) {
  int op = _i;
  enum { N = 100003 };
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_fvector(ctx, "x"), *y = OPS[op].build(x);
  kiln_function *f = kiln_function_new(ctx, OPS[op].name, 1, &x, 1, &y, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  float *v = inputs(N, 77 + (uint64_t)op);
  kiln_tensor *in = kiln_tensor_new(KILN_FLOAT32, 1, (int64_t[]){N}, v);
  const kiln_tensor *out;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&in, &out), KILN_OK);
  const float *r = kiln_tensor_data(out);
  int bad = 0;
  for (int64_t i = 0; i < N; i++)
    if (!same(r[i], OPS[op].c(v[i])) && bad++ < 5)
      fprintf(stderr, "%s(%a): jit %a, c %a\n", OPS[op].name, v[i], r[i], OPS[op].c(v[i]));
  ck_assert_msg(bad == 0, "%s: %d elements differ", OPS[op].name, bad);
  /* a rank-0 input: the scalar (straight-line) lowering */
  kiln_node *s = kiln_input(ctx, "s", KILN_FLOAT32, 0, NULL), *ys = OPS[op].build(s);
  kiln_function *fs = kiln_function_new(ctx, "scalar", 1, &s, 1, &ys, 0, NULL);
  ck_assert_ptr_nonnull(fs);
  for (int i = 0; i < N_SPECIAL; i++) {
    kiln_tensor *t = kiln_tensor_new(KILN_FLOAT32, 0, NULL, &SPECIAL[i]);
    ck_assert_int_eq(kiln_call(fs, (const kiln_tensor *const *)&t, &out), KILN_OK);
    float got = *(const float *)kiln_tensor_data(out);
    ck_assert_msg(same(got, OPS[op].c(SPECIAL[i])), "%s(%a) scalar: jit %a, c %a", OPS[op].name,
                  SPECIAL[i], got, OPS[op].c(SPECIAL[i]));
    kiln_tensor_free(t);
  }
  kiln_tensor_free(in);
  free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* Constants are folded by the reference evaluation (constant_fold): the
** result must be the C function's, and so what the JIT would compute. */
START_TEST(folded_equals_c) {
  int op = _i;
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *c = kiln_const(ctx, KILN_FLOAT32, 1, (int64_t[]){N_SPECIAL}, SPECIAL);
  kiln_node *y = OPS[op].build(c);
  kiln_function *f = kiln_function_new(ctx, "folded", 0, NULL, 1, &y, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  const kiln_tensor *out;
  ck_assert_int_eq(kiln_call(f, NULL, &out), KILN_OK);
  const float *r = kiln_tensor_data(out);
  for (int i = 0; i < N_SPECIAL; i++)
    ck_assert_msg(same(r[i], OPS[op].c(SPECIAL[i])), "%s(%a) folded: %a, c %a", OPS[op].name,
                  SPECIAL[i], r[i], OPS[op].c(SPECIAL[i]));
  kiln_ctx_free(ctx);
}
END_TEST

/* The point of the exercise: a float32 tanh kernel is vector code with no
** call left (llvm.* intrinsics such as fabs are instructions, not calls).
** The kernel's body is a chunk function (@kiln_step_N_kK) the step hands
** to the thread pool (call %run) or calls itself when small: those calls
** are the only others allowed. */
START_TEST(tanh_kernel_vectorizes) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_fvector(ctx, "x"), *y = kiln_tanh(x);
  kiln_function *f = kiln_function_new(ctx, "t", 1, &x, 1, &y, 0, NULL);
  ck_assert_ptr_nonnull(f);
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  ck_assert_int_eq(kiln_function_dump_named(f, "opt.ll", mem), KILN_OK);
  fclose(mem);
  ck_assert_msg(strstr(text, "<16 x float>") || strstr(text, "<8 x float>") ||
                    strstr(text, "<4 x float>"),
                "no float vector in the optimized IR");
  for (const char *p = text; (p = strstr(p, "call ")) != NULL; p += 5) {
    if (strncmp(p, "call void %run", 14) == 0) continue;
    const char *at = strchr(p, '@');
    ck_assert_msg(at && (strncmp(at, "@llvm.", 6) == 0 || strncmp(at, "@kiln_step_", 11) == 0),
                  "a call is left: %.60s", p);
  }
  free(text);
  kiln_ctx_free(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("kmath");
  TCase *tc = tcase_create("kmath");
  tcase_set_timeout(tc, stride() == 1 ? 36000 : 600);
  tcase_add_loop_test(tc, ulp_sweep, 0, NF);
  tcase_add_test(tc, ulp_windows);
  tcase_add_test(tc, special_values);
  tcase_add_loop_test(tc, jit_equals_c, 0, N_OPS);
  tcase_add_loop_test(tc, folded_equals_c, 0, N_OPS);
  tcase_add_test(tc, tanh_kernel_vectorizes);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
