/*
** kmath_ir.c -- compiler/ops/kmath.c in LLVM IR. Each function is the same
** sequence of IEEE operations as its C twin, step for step (the step numbers
** in the comments are kmath.c's), so compiled code and the reference
** evaluator give the same bits. Branches of the C code are selects here and
** there, which is what lets the loop vectorizer widen a kernel that calls
** them: the functions are internal and always-inline, so after LLVM's
** inliner no call is left.
**
** No instruction carries fast-math flags: LLVM may only apply rewrites that
** keep IEEE results, which is why constant folding cannot disagree either.
** The constants are written as float bit patterns to leave no doubt about
** their value; kmath.c has them as hex float literals.
*/
#include "compiler/llvm/kmath_ir.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* A function body under construction. */
typedef struct kb {
  LLVMModuleRef m;
  LLVMContextRef c;
  LLVMBuilderRef b;
  LLVMTypeRef f32, i32;
} kb;

static LLVMValueRef fc(kb *k, float v) { return LLVMConstReal(k->f32, (double)v); }
static LLVMValueRef ic(kb *k, uint32_t v) { return LLVMConstInt(k->i32, v, 0); }
static LLVMValueRef fadd(kb *k, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFAdd(k->b, a, b, "");
}
static LLVMValueRef fsub(kb *k, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFSub(k->b, a, b, "");
}
static LLVMValueRef fmul(kb *k, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFMul(k->b, a, b, "");
}
static LLVMValueRef fdiv(kb *k, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFDiv(k->b, a, b, "");
}
static LLVMValueRef fcmp(kb *k, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFCmp(k->b, p, a, b, "");
}
static LLVMValueRef sel(kb *k, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(k->b, c, a, b, "");
}
static LLVMValueRef to_bits(kb *k, LLVMValueRef x) { return LLVMBuildBitCast(k->b, x, k->i32, ""); }
static LLVMValueRef to_float(kb *k, LLVMValueRef u) {
  return LLVMBuildBitCast(k->b, u, k->f32, "");
}
/* p = p * v + c, two roundings, one Horner step */
static LLVMValueRef horner(kb *k, LLVMValueRef p, LLVMValueRef v, float c) {
  return fadd(k, fmul(k, p, v), fc(k, c));
}
/* x != x ? x : res -- a NaN argument is the result */
static LLVMValueRef nan_passes(kb *k, LLVMValueRef x, LLVMValueRef res) {
  return sel(k, fcmp(k, LLVMRealUNO, x, x), x, res);
}

static LLVMValueRef call1(kb *k, LLVMValueRef f, LLVMValueRef x) {
  LLVMTypeRef ft = LLVMFunctionType(k->f32, &k->f32, 1, 0);
  return LLVMBuildCall2(k->b, ft, f, &x, 1, "");
}

/* ------------------------------------------------------------------ exp */

static void body_expf(kb *k, LLVMValueRef x) {
  /* 1. clamp, NaN -> 89 */
  LLVMValueRef xc = sel(k, fcmp(k, LLVMRealOLT, x, fc(k, 89.0f)), x, fc(k, 89.0f));
  xc = sel(k, fcmp(k, LLVMRealOGT, xc, fc(k, -104.0f)), xc, fc(k, -104.0f));
  /* 2. k = round(x / ln2) */
  LLVMValueRef t = fmul(k, xc, fc(k, 0x1.715476p+0f));
  t = fadd(k, t, fc(k, 0x1.8p23f));
  LLVMValueRef kf = fsub(k, t, fc(k, 0x1.8p23f));
  LLVMValueRef ki = LLVMBuildFPToSI(k->b, kf, k->i32, "");
  /* 3. r = x - k ln2 */
  LLVMValueRef r = fsub(k, xc, fmul(k, kf, fc(k, 0x1.62e4p-1f)));
  r = fsub(k, r, fmul(k, kf, fc(k, 0x1.7f7d1cp-20f)));
  /* 4. e^r */
  LLVMValueRef p = fc(k, 0x1.a12a42p-13f);
  p = horner(k, p, r, 0x1.6d492p-10f);
  p = horner(k, p, r, 0x1.1110ep-7f);
  p = horner(k, p, r, 0x1.5554e4p-5f);
  p = horner(k, p, r, 0x1.555556p-3f);
  p = horner(k, p, r, 0x1p-1f);
  LLVMValueRef r2 = fmul(k, r, r);
  LLVMValueRef y = fadd(k, r, fmul(k, r2, p));
  LLVMValueRef er = fadd(k, fc(k, 1.0f), y);
  /* 5. times 2^k1 * 2^k2, k1 = k / 2 truncated (C's division) */
  LLVMValueRef k1 = LLVMBuildSDiv(k->b, ki, ic(k, 2), "");
  LLVMValueRef k2 = LLVMBuildSub(k->b, ki, k1, "");
  LLVMValueRef s1 =
      to_float(k, LLVMBuildShl(k->b, LLVMBuildAdd(k->b, k1, ic(k, 127), ""), ic(k, 23), ""));
  LLVMValueRef s2 =
      to_float(k, LLVMBuildShl(k->b, LLVMBuildAdd(k->b, k2, ic(k, 127), ""), ic(k, 23), ""));
  LLVMValueRef res = fmul(k, fmul(k, er, s1), s2);
  /* 6. */
  LLVMBuildRet(k->b, nan_passes(k, x, res));
}

/* ------------------------------------------------------------------ log */

static void body_logf(kb *k, LLVMValueRef x) {
  /* 1. denormals (and everything below 2^-126) scaled by 2^23 */
  LLVMValueRef tiny = fcmp(k, LLVMRealOLT, x, fc(k, 0x1p-126f));
  LLVMValueRef xs = sel(k, tiny, fmul(k, x, fc(k, 0x1p23f)), x);
  LLVMValueRef eadj = sel(k, tiny, ic(k, (uint32_t)-23), ic(k, 0));
  /* 2. x = 2^e m */
  LLVMValueRef ix = LLVMBuildAdd(k->b, to_bits(k, xs), ic(k, 0x004afb0du), "");
  LLVMValueRef e = LLVMBuildAnd(k->b, LLVMBuildLShr(k->b, ix, ic(k, 23), ""), ic(k, 0xffu), "");
  e = LLVMBuildAdd(k->b, LLVMBuildSub(k->b, e, ic(k, 127), ""), eadj, "");
  LLVMValueRef m = to_float(
      k, LLVMBuildAdd(k->b, LLVMBuildAnd(k->b, ix, ic(k, 0x7fffffu), ""), ic(k, 0x3f3504f3u), ""));
  LLVMValueRef ef = LLVMBuildSIToFP(k->b, e, k->f32, "");
  /* 3. log(m) */
  LLVMValueRef f = fsub(k, m, fc(k, 1.0f));
  LLVMValueRef s = fdiv(k, f, fadd(k, fc(k, 2.0f), f));
  LLVMValueRef z = fmul(k, s, s);
  LLVMValueRef p = fc(k, 0x1.de0b02p-3f);
  p = horner(k, p, z, 0x1.245b28p-2f);
  p = horner(k, p, z, 0x1.9999eep-2f);
  p = horner(k, p, z, 0x1.555556p-1f);
  LLVMValueRef R = fmul(k, z, p);
  LLVMValueRef hfsq = fmul(k, fmul(k, fc(k, 0.5f), f), f);
  /* 4. e ln2 + log(m) */
  LLVMValueRef lo = fmul(k, s, fadd(k, hfsq, R));
  lo = fadd(k, lo, fmul(k, ef, fc(k, 0x1.7f7d1cp-20f)));
  LLVMValueRef res = fsub(k, hfsq, lo);
  res = fsub(k, res, f);
  res = fsub(k, fmul(k, ef, fc(k, 0x1.62e4p-1f)), res);
  /* 5. special values */
  LLVMValueRef zero = fc(k, 0.0f), inf = fc(k, INFINITY);
  float qnan;
  memcpy(&qnan, &(uint32_t){0x7fc00000u}, sizeof qnan);
  res = sel(k, fcmp(k, LLVMRealOLT, x, zero), fc(k, qnan), res);
  res = sel(k, fcmp(k, LLVMRealOEQ, x, zero), fc(k, -INFINITY), res);
  res = sel(k, fcmp(k, LLVMRealOEQ, x, inf), inf, res);
  LLVMBuildRet(k->b, nan_passes(k, x, res));
}

/* ----------------------------------------------------------------- tanh */

static LLVMValueRef get_fn(kb *k, const char *name, void (*body)(kb *, LLVMValueRef));

static void body_tanhf(kb *k, LLVMValueRef x) {
  /* 1. |x| and the sign bit */
  LLVMValueRef xb = to_bits(k, x);
  LLVMValueRef sign = LLVMBuildAnd(k->b, xb, ic(k, 0x80000000u), "");
  LLVMValueRef a = to_float(k, LLVMBuildAnd(k->b, xb, ic(k, 0x7fffffffu), ""));
  /* 2. small |x| */
  LLVMValueRef z = fmul(k, a, a);
  LLVMValueRef p = fc(k, 0x1.460e8p-9f);
  p = horner(k, p, z, -0x1.1680dcp-7f);
  p = horner(k, p, z, 0x1.655dcp-6f);
  p = horner(k, p, z, -0x1.ba12d8p-5f);
  p = horner(k, p, z, 0x1.111102p-3f);
  p = horner(k, p, z, -0x1.555556p-2f);
  LLVMValueRef q = fmul(k, z, p);
  LLVMValueRef small = fadd(k, a, fmul(k, a, q));
  /* 3. large |x| */
  LLVMValueRef e = call1(k, get_fn(k, "kiln.expf", body_expf), fadd(k, a, a));
  LLVMValueRef large = fsub(k, fc(k, 1.0f), fdiv(k, fc(k, 2.0f), fadd(k, e, fc(k, 1.0f))));
  LLVMValueRef res = sel(k, fcmp(k, LLVMRealOLT, a, fc(k, 0x1.2p-1f)), small, large);
  LLVMBuildRet(k->b, to_float(k, LLVMBuildOr(k->b, to_bits(k, res), sign, "")));
}

/* ------------------------------------------------------ sigmoid, softplus */

/* pos ? -x : x, then exp: e^-|x| with NaN kept */
static LLVMValueRef exp_of_nonpos(kb *k, LLVMValueRef x, LLVMValueRef pos) {
  LLVMValueRef arg = sel(k, pos, LLVMBuildFNeg(k->b, x, ""), x);
  return call1(k, get_fn(k, "kiln.expf", body_expf), arg);
}

static void body_sigmoidf(kb *k, LLVMValueRef x) {
  LLVMValueRef pos = fcmp(k, LLVMRealOGE, x, fc(k, 0.0f));
  LLVMValueRef e = exp_of_nonpos(k, x, pos);
  LLVMValueRef d = fadd(k, fc(k, 1.0f), e);
  LLVMBuildRet(k->b, sel(k, pos, fdiv(k, fc(k, 1.0f), d), fdiv(k, e, d)));
}

/* libm's log1pf, opaque (nobuiltin) as backend.c calls it */
static LLVMValueRef log1pf_of(kb *k, LLVMValueRef x) {
  LLVMTypeRef ft = LLVMFunctionType(k->f32, &k->f32, 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(k->m, "log1pf");
  if (!f) f = LLVMAddFunction(k->m, "log1pf", ft);
  LLVMValueRef call = LLVMBuildCall2(k->b, ft, f, &x, 1, "");
  unsigned nb = LLVMGetEnumAttributeKindForName("nobuiltin", 9);
  LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(k->c, nb, 0));
  return call;
}

static void body_softplusf(kb *k, LLVMValueRef x) {
  LLVMValueRef pos = fcmp(k, LLVMRealOGT, x, fc(k, 0.0f));
  LLVMValueRef l = log1pf_of(k, exp_of_nonpos(k, x, pos));
  LLVMBuildRet(k->b, sel(k, pos, fadd(k, x, l), l));
}

/* ------------------------------------------------------------ functions */

/* The internal function `name` of k->m, defined by body on first use with
** its own builder (k->b is the caller's and is left where it was). */
static LLVMValueRef get_fn(kb *k, const char *name, void (*body)(kb *, LLVMValueRef)) {
  LLVMValueRef f = LLVMGetNamedFunction(k->m, name);
  if (f) return f;
  f = LLVMAddFunction(k->m, name, LLVMFunctionType(k->f32, &k->f32, 1, 0));
  LLVMSetLinkage(f, LLVMInternalLinkage);
  static const char *const attrs[] = {"alwaysinline", "nounwind", "willreturn"};
  for (size_t i = 0; i < sizeof attrs / sizeof *attrs; i++) {
    unsigned kind = LLVMGetEnumAttributeKindForName(attrs[i], strlen(attrs[i]));
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(k->c, kind, 0));
  }
  kb inner = *k;
  inner.b = LLVMCreateBuilderInContext(k->c);
  LLVMPositionBuilderAtEnd(inner.b, LLVMAppendBasicBlockInContext(k->c, f, "entry"));
  body(&inner, LLVMGetParam(f, 0));
  LLVMDisposeBuilder(inner.b);
  return f;
}

static LLVMValueRef emit(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x, const char *name,
                         void (*body)(kb *, LLVMValueRef)) {
  LLVMContextRef c = LLVMGetModuleContext(m);
  kb k = {m, c, b, LLVMFloatTypeInContext(c), LLVMInt32TypeInContext(c)};
  return call1(&k, get_fn(&k, name, body), x);
}

LLVMValueRef kl_ir_expf(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) {
  return emit(m, b, x, "kiln.expf", body_expf);
}
LLVMValueRef kl_ir_logf(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) {
  return emit(m, b, x, "kiln.logf", body_logf);
}
LLVMValueRef kl_ir_tanhf(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) {
  return emit(m, b, x, "kiln.tanhf", body_tanhf);
}
LLVMValueRef kl_ir_sigmoidf(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) {
  return emit(m, b, x, "kiln.sigmoidf", body_sigmoidf);
}
LLVMValueRef kl_ir_softplusf(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) {
  return emit(m, b, x, "kiln.softplusf", body_softplusf);
}
