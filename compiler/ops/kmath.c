/*
** kmath.c -- Kiln's float32 exp, log and tanh, written so that every step is
** one correctly rounded IEEE operation (+, -, *, /, compare-and-select) or an
** exact bit manipulation: no fma (the build passes -ffp-contract=off), no
** libm, no branches that a vector select could not express. The LLVM backend
** emits exactly these operations in exactly this order (kmath_ir.c numbers
** its steps as this file does), so the JIT's results equal these
** bit for bit, and a loop calling them vectorizes. Change one, change both:
** tests/test_kmath.c compares the two on every special value and on random
** and strided inputs.
**
** Accuracy, measured against libm's double exp/log/tanh rounded to float
** (tests/test_kmath.c; every float with KILN_KMATH_STRIDE=1):
**
**   function  max error, all 2^32 inputs   NaN where libm's is   monotone
**   kl_expf   1 ulp                         exactly               yes
**   kl_logf   1 ulp                         exactly               yes
**   kl_tanhf  1 ulp                         exactly               yes
**
** Special values:
**   kl_expf   NaN -> NaN, +inf -> +inf, -inf -> +0, x >= 0x1.62e43p+6 (88.7228) -> +inf,
**             x < -103.972 -> +0, results below 2^-126 are denormals
**             (rounded once), exp(+-0) = 1
**   kl_logf   NaN -> NaN, x < 0 (and -inf) -> NaN, +-0 -> -inf, +inf -> +inf,
**             denormal inputs scaled by 2^23 (exactly) first, log(1) = +0
**   kl_tanhf  NaN -> NaN, +-inf -> +-1, odd (tanh(-x) = -tanh(x) bitwise, so
**             tanh(-0) = -0), tiny x -> x
** NaN results carry no particular sign or payload (docs/ARCHITECTURE.md).
**
** The polynomial coefficients come from scripts/fit_kmath.py (Chebyshev
** fits in 60-digit arithmetic, rounded to float; it prints their error).
*/
#include "compiler/ops/kmath.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static uint32_t bits_of(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

static float float_of(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* Cody-Waite split of ln 2: LN2_HI has 16 significant bits, so k * LN2_HI
** is exact for every |k| < 2^8 met below. */
#define LN2_HI 0x1.62e4p-1f
#define LN2_LO 0x1.7f7d1cp-20f
#define LOG2E 0x1.715476p+0f
/* Adding 1.5 * 2^23 rounds a float of magnitude < 2^22 to an integer, and
** leaves that integer in the low mantissa bits. */
#define ROUNDER 0x1.8p23f

/* exp(r) = 1 + r + r^2 P(r) for |r| <= ln2/2: P of degree 5, relative error
** of the whole 8.1e-10 (2^-30.2) with these float coefficients. */
#define E0 0x1p-1f
#define E1 0x1.555556p-3f
#define E2 0x1.5554e4p-5f
#define E3 0x1.1110ep-7f
#define E4 0x1.6d492p-10f
#define E5 0x1.a12a42p-13f

float kl_expf(float x) {
  /* 1. clamp: beyond these, exp is inf or 0 in float anyway; NaN becomes
  ** 89 here (so k below is a defined integer) and is put back in step 6 */
  float xc = x < 89.0f ? x : 89.0f;
  xc = xc > -104.0f ? xc : -104.0f;
  /* 2. k = round(x / ln2), exactly, as a float and as an integer */
  float t = xc * LOG2E;
  t = t + ROUNDER;
  float kf = t - ROUNDER;
  int32_t k = (int32_t)kf;
  /* 3. r = x - k ln2 (the first subtraction is exact) */
  float r = xc - kf * LN2_HI;
  r = r - kf * LN2_LO;
  /* 4. e^r, Horner */
  float p = E5;
  p = p * r + E4;
  p = p * r + E3;
  p = p * r + E2;
  p = p * r + E1;
  p = p * r + E0;
  float r2 = r * r;
  float y = r + r2 * p;
  float er = 1.0f + y;
  /* 5. times 2^k in two exact-power steps, so that k in [-150, 128] needs no
  ** denormal or infinite power: the first product is exact, the second
  ** rounds once (to a denormal, or to inf) */
  int32_t k1 = k / 2, k2 = k - k1;
  float s1 = float_of((uint32_t)(k1 + 127) << 23);
  float s2 = float_of((uint32_t)(k2 + 127) << 23);
  float res = er * s1;
  res = res * s2;
  /* 6. NaN in, NaN out (k is meaningless then) */
  return x != x ? x : res;
}

/* log(1+f) = f - f^2/2 + s (f^2/2 + z P(z)), s = f/(2+f), z = s^2, for
** 1+f in [sqrt(1/2), sqrt(2)): |s| <= 0.1716, P of degree 3, relative error
** 3.0e-10 (2^-31.6) with these float coefficients. */
#define L0 0x1.555556p-1f
#define L1 0x1.9999eep-2f
#define L2 0x1.245b28p-2f
#define L3 0x1.de0b02p-3f
/* bits of sqrt(1/2) rounded to float, and 1.0f minus them */
#define SQRT_HALF_BITS 0x3f3504f3u
#define ONE_MINUS_SQRT_HALF_BITS 0x004afb0du

float kl_logf(float x) {
  /* 1. denormals: scale by 2^23 (exact) and remember it in the exponent */
  int is_tiny = x < 0x1p-126f;
  float xs = is_tiny ? x * 0x1p23f : x;
  int32_t eadj = is_tiny ? -23 : 0;
  /* 2. x = 2^e m, m in [sqrt(1/2), sqrt(2)): shifting the bits by
  ** 1 - sqrt(1/2) carries into the exponent exactly when m >= sqrt(2)
  ** (only meaningful for positive finite x; the rest is selected away) */
  uint32_t ix = bits_of(xs) + ONE_MINUS_SQRT_HALF_BITS;
  int32_t e = (int32_t)((ix >> 23) & 0xffu) - 127 + eadj;
  float m = float_of((ix & 0x7fffffu) + SQRT_HALF_BITS);
  float ef = (float)e;
  /* 3. log(m), f exact (Sterbenz) */
  float f = m - 1.0f;
  float s = f / (2.0f + f);
  float z = s * s;
  float p = L3;
  p = p * z + L2;
  p = p * z + L1;
  p = p * z + L0;
  float R = z * p;
  float hfsq = 0.5f * f;
  hfsq = hfsq * f;
  /* 4. e ln2 + log(m), small terms first: e LN2_HI is exact */
  float lo = s * (hfsq + R);
  lo = lo + ef * LN2_LO;
  float res = hfsq - lo;
  res = res - f;
  res = ef * LN2_HI - res;
  /* 5. special values */
  res = x < 0.0f ? NAN : res;
  res = x == 0.0f ? -INFINITY : res;
  res = x == INFINITY ? INFINITY : res;
  return x != x ? x : res;
}

/* tanh(x) = x + x z P(z), z = x^2, for |x| < 0.5625: P of degree 5, relative
** error 3.6e-9 (2^-28.1) with these float coefficients. Beyond, tanh(x) =
** 1 - 2 / (exp(2x) + 1), which is 1 once exp(2x) overflows. */
#define T0 -0x1.555556p-2f
#define T1 0x1.111102p-3f
#define T2 -0x1.ba12d8p-5f
#define T3 0x1.655dcp-6f
#define T4 -0x1.1680dcp-7f
#define T5 0x1.460e8p-9f
#define TANH_SMALL 0x1.2p-1f /* 0.5625 */

float kl_tanhf(float x) {
  /* 1. work on |x|, put the sign back at the end (so tanh(-0) = -0) */
  uint32_t sign = bits_of(x) & 0x80000000u;
  float a = float_of(bits_of(x) & 0x7fffffffu);
  /* 2. small |x|: odd polynomial */
  float z = a * a;
  float p = T5;
  p = p * z + T4;
  p = p * z + T3;
  p = p * z + T2;
  p = p * z + T1;
  p = p * z + T0;
  float q = z * p;
  float small = a + a * q;
  /* 3. large |x| */
  float e = kl_expf(a + a);
  float large = 1.0f - 2.0f / (e + 1.0f);
  float res = a < TANH_SMALL ? small : large;
  return float_of(bits_of(res) | sign);
}

/* The reference formulas of the sigmoid and softplus ops (eval.c), with one
** exp of -|x|: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) otherwise. */
float kl_sigmoidf(float x) {
  int pos = x >= 0.0f;
  float e = kl_expf(pos ? -x : x);
  float d = 1.0f + e;
  return pos ? 1.0f / d : e / d;
}

float kl_softplusf(float x) {
  int pos = x > 0.0f;
  float e = kl_expf(pos ? -x : x);
  float l = log1pf(e);
  return pos ? x + l : l;
}
