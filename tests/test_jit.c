/*
** test_jit.c -- the LLVM driver (compiler/llvm/jit.c) on modules built by
** hand with the LLVM C API: results of JITed code, the kept stage texts, IEEE
** arithmetic without contraction, errors that must not end the process
** (verifier, missing symbols, unresolvable calls, inline asm that does not
** assemble), resource trackers (many codes, redefinition after free), two
** JITs at once, threads, and every out-of-memory path of jit.c.
*/
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "compiler/llvm/jit.h"
#include "runtime/rt.h"

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef double (*fn_dd_d)(double, double);
typedef double (*fn_ddd_d)(double, double, double);
typedef double (*fn_d_d)(double);
typedef float (*fn_ff_f)(float, float);
typedef float (*fn_f_f)(float);
typedef int64_t (*fn_pi_i)(const int64_t *, int64_t);
typedef int64_t (*fn_v_i)(void);

/* ISO C has no conversion from void * to a function pointer; copy the bits. */
#define AS_FN(type, p) as_fn_##type(p)
#define DEFINE_AS_FN(type)                                                                         \
  static type as_fn_##type(void *p) {                                                              \
    type f;                                                                                        \
    memcpy(&f, &p, sizeof f);                                                                      \
    return f;                                                                                      \
  }
DEFINE_AS_FN(fn_dd_d)
DEFINE_AS_FN(fn_ddd_d)
DEFINE_AS_FN(fn_d_d)
DEFINE_AS_FN(fn_ff_f)
DEFINE_AS_FN(fn_f_f)
DEFINE_AS_FN(fn_pi_i)
DEFINE_AS_FN(fn_v_i)

static char err[2048];

static kl_jit *new_jit(void) {
  kl_jit *jit = NULL;
  kiln_status st = kl_jit_new(&jit, err, sizeof err);
  ck_assert_msg(st == KILN_OK, "kl_jit_new: %d %s", (int)st, err);
  ck_assert_ptr_nonnull(jit);
  return jit;
}

static kl_llmod new_mod(kl_jit *jit, const char *name) {
  kl_llmod m;
  kiln_status st = kl_llmod_new(jit, &m, name, err, sizeof err);
  ck_assert_msg(st == KILN_OK, "kl_llmod_new: %s", err);
  return m;
}

/* Adds a function to m and positions a builder at its entry. */
static LLVMValueRef add_fn(kl_llmod *m, const char *name, LLVMTypeRef ret, LLVMTypeRef *params,
                           unsigned n, LLVMBuilderRef *b) {
  LLVMTypeRef ty = LLVMFunctionType(ret, params, n, 0);
  LLVMValueRef f = LLVMAddFunction(m->mod, name, ty);
  *b = LLVMCreateBuilderInContext(m->ctx);
  LLVMPositionBuilderAtEnd(*b, LLVMAppendBasicBlockInContext(m->ctx, f, "entry"));
  return f;
}

/* double name(double a, double b) { return a*b + 1.0; } */
static kl_llmod build_muladd1(kl_jit *jit, const char *name) {
  kl_llmod m = new_mod(jit, "muladd1");
  LLVMTypeRef d = LLVMDoubleTypeInContext(m.ctx);
  LLVMBuilderRef b;
  LLVMValueRef f = add_fn(&m, name, d, (LLVMTypeRef[]){d, d}, 2, &b);
  LLVMValueRef p = LLVMBuildFMul(b, LLVMGetParam(f, 0), LLVMGetParam(f, 1), "p");
  LLVMBuildRet(b, LLVMBuildFAdd(b, p, LLVMConstReal(d, 1.0), "r"));
  LLVMDisposeBuilder(b);
  return m;
}

/* double name(double a, double b, double c) { return a*b + c; } */
static kl_llmod build_muladd(kl_jit *jit, const char *name) {
  kl_llmod m = new_mod(jit, "muladd");
  LLVMTypeRef d = LLVMDoubleTypeInContext(m.ctx);
  LLVMBuilderRef b;
  LLVMValueRef f = add_fn(&m, name, d, (LLVMTypeRef[]){d, d, d}, 3, &b);
  LLVMValueRef p = LLVMBuildFMul(b, LLVMGetParam(f, 0), LLVMGetParam(f, 1), "p");
  LLVMBuildRet(b, LLVMBuildFAdd(b, p, LLVMGetParam(f, 2), "r"));
  LLVMDisposeBuilder(b);
  return m;
}

/* int64_t name(const int64_t *p, int64_t n): sum of p[0..n-1], in order. */
static kl_llmod build_sum(kl_jit *jit, const char *name) {
  kl_llmod m = new_mod(jit, "sum");
  LLVMTypeRef i64 = LLVMInt64TypeInContext(m.ctx);
  LLVMTypeRef ptr = LLVMPointerTypeInContext(m.ctx, 0);
  LLVMBuilderRef b;
  LLVMValueRef f = add_fn(&m, name, i64, (LLVMTypeRef[]){ptr, i64}, 2, &b);
  LLVMBasicBlockRef entry = LLVMGetInsertBlock(b);
  LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(m.ctx, f, "head");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(m.ctx, f, "body");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(m.ctx, f, "done");
  LLVMValueRef zero = LLVMConstInt(i64, 0, 0);
  LLVMBuildBr(b, head);

  LLVMPositionBuilderAtEnd(b, head);
  LLVMValueRef i = LLVMBuildPhi(b, i64, "i");
  LLVMValueRef acc = LLVMBuildPhi(b, i64, "acc");
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, i, LLVMGetParam(f, 1), "more"), body, done);

  LLVMPositionBuilderAtEnd(b, body);
  LLVMValueRef at = LLVMBuildGEP2(b, i64, LLVMGetParam(f, 0), &i, 1, "at");
  LLVMValueRef acc2 = LLVMBuildAdd(b, acc, LLVMBuildLoad2(b, i64, at, "x"), "acc2");
  LLVMValueRef i2 = LLVMBuildAdd(b, i, LLVMConstInt(i64, 1, 0), "i2");
  LLVMBuildBr(b, head);

  LLVMAddIncoming(i, (LLVMValueRef[]){zero, i2}, (LLVMBasicBlockRef[]){entry, body}, 2);
  LLVMAddIncoming(acc, (LLVMValueRef[]){zero, acc2}, (LLVMBasicBlockRef[]){entry, body}, 2);
  LLVMPositionBuilderAtEnd(b, done);
  LLVMBuildRet(b, acc);
  LLVMDisposeBuilder(b);
  return m;
}

typedef LLVMTypeRef (*type_of)(LLVMContextRef);

/* t name(t x[, t y]) { return callee(x[, y]); } with callee only declared. */
static kl_llmod build_call(kl_jit *jit, const char *name, const char *callee, type_of ty,
                           unsigned nargs) {
  kl_llmod m = new_mod(jit, "call");
  LLVMTypeRef t = ty(m.ctx);
  LLVMTypeRef params[2] = {t, t};
  LLVMTypeRef fty = LLVMFunctionType(t, params, nargs, 0);
  LLVMValueRef decl = LLVMAddFunction(m.mod, callee, fty);
  LLVMBuilderRef b;
  LLVMValueRef f = add_fn(&m, name, t, params, nargs, &b);
  LLVMValueRef args[2] = {LLVMGetParam(f, 0), nargs > 1 ? LLVMGetParam(f, 1) : NULL};
  LLVMBuildRet(b, LLVMBuildCall2(b, fty, decl, args, nargs, "r"));
  LLVMDisposeBuilder(b);
  return m;
}

/* int64_t name(void) { return v; } */
static kl_llmod build_const(kl_jit *jit, const char *name, int64_t v) {
  kl_llmod m = new_mod(jit, "const");
  LLVMTypeRef i64 = LLVMInt64TypeInContext(m.ctx);
  LLVMBuilderRef b;
  add_fn(&m, name, i64, NULL, 0, &b);
  LLVMBuildRet(b, LLVMConstInt(i64, (unsigned long long)v, 1));
  LLVMDisposeBuilder(b);
  return m;
}

/* A function whose only block has no terminator: the verifier refuses it. */
static kl_llmod build_invalid(kl_jit *jit, const char *name) {
  kl_llmod m = new_mod(jit, "invalid");
  LLVMTypeRef i64 = LLVMInt64TypeInContext(m.ctx);
  LLVMBuilderRef b;
  LLVMValueRef f = add_fn(&m, name, i64, (LLVMTypeRef[]){i64}, 1, &b);
  LLVMBuildAdd(b, LLVMGetParam(f, 0), LLVMGetParam(f, 0), "x");
  LLVMDisposeBuilder(b);
  return m;
}

/* void name(void) { asm volatile("<text>"); } */
static kl_llmod build_inline_asm(kl_jit *jit, const char *name, const char *text) {
  kl_llmod m = new_mod(jit, "asm");
  LLVMTypeRef v = LLVMVoidTypeInContext(m.ctx);
  LLVMTypeRef aty = LLVMFunctionType(v, NULL, 0, 0);
  LLVMValueRef a =
      LLVMGetInlineAsm(aty, (char *)text, strlen(text), "", 0, 1, 0, LLVMInlineAsmDialectATT, 0);
  LLVMBuilderRef b;
  add_fn(&m, name, v, NULL, 0, &b);
  LLVMBuildCall2(b, aty, a, NULL, 0, "");
  LLVMBuildRetVoid(b);
  LLVMDisposeBuilder(b);
  return m;
}

static kl_jit_code *add_ok(kl_jit *jit, kl_llmod *m, const char *symbol, int level, void **fn) {
  kl_jit_code *code = NULL;
  kl_jit_opts o = {.opt_level = level};
  kiln_status st = kl_jit_add(jit, m, symbol, &o, &code, fn, err, sizeof err);
  ck_assert_msg(st == KILN_OK, "kl_jit_add(%s): %d %s", symbol, (int)st, err);
  ck_assert_ptr_nonnull(code);
  ck_assert_ptr_nonnull(*fn);
  ck_assert_ptr_null(m->mod);
  ck_assert_ptr_null(m->tsc);
  return code;
}

/* Asks for the three LLVM texts (made from the kept bitcode on request);
** the assembly, or NULL with *st the first failure. */
static const char *all_texts(kl_jit_code *code, kiln_status *st) {
  const char *t = NULL;
  for (int s = KILN_STAGE_LLVM_IR; s <= KILN_STAGE_ASM; s++)
    if (!(t = kl_jit_code_text(code, (kiln_stage)s, st, err, sizeof err))) return NULL;
  return t;
}

/* kl_jit_add of a module build(jit, symbol) makes, then its three texts,
** with Kiln's k-th allocation failing. Either fails cleanly (KILN_NOMEM:
** the module taken, no text, the code freed) or gives KILN_OK with *code
** and *fn set; anything else fails the test. */
static kiln_status add_failing_at(kl_jit *jit, long k, kl_llmod (*build)(kl_jit *, const char *),
                                  const char *symbol, kl_jit_code **code, void **fn) {
  kl_llmod m = build(jit, symbol);
  *code = NULL;
  *fn = NULL;
  kl_mem_fail_at(k);
  kiln_status st = kl_jit_add(jit, &m, symbol, NULL, code, fn, err, sizeof err);
  const char *as = st == KILN_OK ? all_texts(*code, &st) : NULL;
  kl_mem_fail_at(0);
  ck_assert_ptr_null(m.mod);
  if (st == KILN_NOMEM) {
    ck_assert_ptr_null(as);
    kl_jit_code_free(*code); /* NULL, or the code whose text failed */
    *code = NULL;
    return st;
  }
  ck_assert_msg(st == KILN_OK, "%d %s", (int)st, err);
  ck_assert_ptr_nonnull(as);
  return st;
}

static const char *text_ok(kl_jit_code *code, kiln_stage stage) {
  kiln_status st = KILN_ERROR;
  const char *t = kl_jit_code_text(code, stage, &st, err, sizeof err);
  ck_assert_msg(st == KILN_OK && t, "stage %d: %d %s", (int)stage, (int)st, err);
  return t;
}

/* ---------------------------------------------------------------- tests */

START_TEST(test_muladd1) {
  kl_jit *jit = new_jit();
  kl_llmod m = build_muladd1(jit, "kiln_t_muladd1");
  void *p;
  kl_jit_code *code = add_ok(jit, &m, "kiln_t_muladd1", 2, &p);
  fn_dd_d f = AS_FN(fn_dd_d, p);
  ck_assert(f(2.0, 3.0) == 7.0);
  ck_assert(f(-0.5, 4.0) == -1.0);
  const char *ir = text_ok(code, KILN_STAGE_LLVM_IR);
  const char *opt = text_ok(code, KILN_STAGE_LLVM_OPT);
  ck_assert_ptr_nonnull(strstr(ir, "define double @kiln_t_muladd1("));
  ck_assert_ptr_nonnull(strstr(opt, "define double @kiln_t_muladd1("));
  ck_assert_ptr_nonnull(strstr(ir, "fmul double"));
  /* Kept strings: the same pointer every time. */
  ck_assert_ptr_eq(text_ok(code, KILN_STAGE_LLVM_IR), ir);
  kl_jit_code_free(code);
  kl_jit_free(jit);
}
END_TEST

/* a*b+c with a = b = 1+2^-30 and c = -(1+2^-29): the product rounds to
** 1+2^-29 and the sum is exactly 0; an fma would give 2^-60. */
START_TEST(test_no_contraction) {
  kl_jit *jit = new_jit();
  for (int level = 0; level <= 3; level++) {
    kl_llmod m = build_muladd(jit, "kiln_t_mad");
    void *p;
    kl_jit_code *code = add_ok(jit, &m, "kiln_t_mad", level, &p);
    fn_ddd_d f = AS_FN(fn_ddd_d, p);
    volatile double a = 1.0 + ldexp(1.0, -30), c = -(1.0 + ldexp(1.0, -29));
    double r = f(a, a, c);
    ck_assert_msg(r == 0.0, "O%d: a*b+c = %a, contracted into an fma?", level, r);
    const char *opt = text_ok(code, KILN_STAGE_LLVM_OPT);
    ck_assert_ptr_null(strstr(opt, "fma"));
    ck_assert_ptr_null(strstr(opt, "fmuladd"));
    ck_assert_ptr_null(strstr(opt, "contract"));
    ck_assert_ptr_null(strstr(opt, "fast"));
    const char *as = text_ok(code, KILN_STAGE_ASM);
    ck_assert_ptr_nonnull(strstr(as, "kiln_t_mad"));
    ck_assert_ptr_null(strstr(as, "vfmadd"));
    ck_assert_ptr_null(strstr(as, "fmadd"));
    ck_assert_ptr_eq(text_ok(code, KILN_STAGE_ASM), as); /* made once, then kept */
    kl_jit_code_free(code);
  }
  kl_jit_free(jit);
}
END_TEST

START_TEST(test_sum_loop) {
  kl_jit *jit = new_jit();
  kl_llmod m = build_sum(jit, "kiln_t_sum");
  void *p;
  kl_jit_code *code = add_ok(jit, &m, "kiln_t_sum", 3, &p);
  fn_pi_i f = AS_FN(fn_pi_i, p);
  enum { N = 1001 };
  static int64_t a[N];
  int64_t want = 0;
  for (int64_t i = 0; i < N; i++) {
    a[i] = i * i - 7 * i + (i % 3 == 0 ? INT64_C(1) << 40 : 0);
    want += a[i];
  }
  ck_assert_int_eq(f(a, N), want);
  ck_assert_int_eq(f(a, 0), 0);
  ck_assert_int_eq(f(a, 1), a[0]);
  ck_assert_int_eq(f(a + 5, 3), a[5] + a[6] + a[7]);
  ck_assert_ptr_nonnull(strstr(text_ok(code, KILN_STAGE_LLVM_OPT), "@kiln_t_sum("));
  kl_jit_code_free(code);
  kl_jit_free(jit);
}
END_TEST

START_TEST(test_libm) {
  kl_jit *jit = new_jit();
  void *p;
  kl_llmod m = build_call(jit, "kiln_t_exp", "exp", LLVMDoubleTypeInContext, 1);
  kl_jit_code *c1 = add_ok(jit, &m, "kiln_t_exp", 2, &p);
  fn_d_d fexp = AS_FN(fn_d_d, p);
  volatile double x = 0.75;
  ck_assert(fexp(x) == exp(x));
  ck_assert(fexp(0.0) == 1.0);

  m = build_call(jit, "kiln_t_expf", "expf", LLVMFloatTypeInContext, 1);
  kl_jit_code *c2 = add_ok(jit, &m, "kiln_t_expf", 2, &p);
  volatile float xf = -1.25f;
  ck_assert(AS_FN(fn_f_f, p)(xf) == expf(xf));

  m = build_call(jit, "kiln_t_logf", "logf", LLVMFloatTypeInContext, 1);
  kl_jit_code *c3 = add_ok(jit, &m, "kiln_t_logf", 2, &p);
  ck_assert(AS_FN(fn_f_f, p)(xf * -3.0f) == logf(xf * -3.0f));

  m = build_call(jit, "kiln_t_powf", "powf", LLVMFloatTypeInContext, 2);
  kl_jit_code *c4 = add_ok(jit, &m, "kiln_t_powf", 2, &p);
  volatile float bf = 1.5f, ef = 3.25f;
  ck_assert(AS_FN(fn_ff_f, p)(bf, ef) == powf(bf, ef));
  ck_assert(AS_FN(fn_ff_f, p)(2.0f, 10.0f) == 1024.0f);

  kl_jit_code_free(c2);
  kl_jit_code_free(c1);
  kl_jit_code_free(c4);
  kl_jit_code_free(c3);
  kl_jit_free(jit);
}
END_TEST

START_TEST(test_verifier_error) {
  kl_jit *jit = new_jit();
  kl_llmod m = build_invalid(jit, "kiln_t_bad");
  /* Non-NULL on entry, so the test sees kl_jit_add clear them. */
  kl_jit_code *code = (kl_jit_code *)&code;
  void *fn = &fn;
  kiln_status st = kl_jit_add(jit, &m, "kiln_t_bad", NULL, &code, &fn, err, sizeof err);
  ck_assert_int_eq(st, KILN_INTERNAL);
  ck_assert_msg(strncmp(err, "internal: LLVM verifier: ", 25) == 0, "%s", err);
  ck_assert_ptr_nonnull(strstr(err, "verifier"));
  ck_assert_ptr_nonnull(strstr(err, "terminator"));
  ck_assert_ptr_null(code);
  ck_assert_ptr_null(fn);
  ck_assert_ptr_null(m.mod);
  ck_assert_ptr_null(m.tsc);
  /* The JIT is still fine, and the name was never defined. */
  m = build_const(jit, "kiln_t_bad", 42);
  code = add_ok(jit, &m, "kiln_t_bad", 2, &fn);
  ck_assert_int_eq(AS_FN(fn_v_i, fn)(), 42);
  kl_jit_code_free(code);
  kl_jit_free(jit);
}
END_TEST

START_TEST(test_missing_symbol) {
  kl_jit *jit = new_jit();
  kl_llmod m = build_const(jit, "kiln_t_here", 1);
  kl_jit_code *code = NULL;
  void *fn = NULL;
  kiln_status st = kl_jit_add(jit, &m, "kiln_t_nosuch", NULL, &code, &fn, err, sizeof err);
  ck_assert_int_eq(st, KILN_LLVM);
  ck_assert_msg(strstr(err, "kiln_t_nosuch") != NULL, "%s", err);
  ck_assert_ptr_null(code);
  ck_assert_ptr_null(fn);
  /* The failed add's tracker was removed, so the module's symbol is gone too. */
  m = build_const(jit, "kiln_t_here", 2);
  code = add_ok(jit, &m, "kiln_t_here", 2, &fn);
  ck_assert_int_eq(AS_FN(fn_v_i, fn)(), 2);
  kl_jit_code_free(code);
  kl_jit_free(jit);
}
END_TEST

START_TEST(test_unresolved_call) {
  kl_jit *jit = new_jit();
  kl_llmod m =
      build_call(jit, "kiln_t_calls", "kiln_t_defined_nowhere", LLVMDoubleTypeInContext, 1);
  kl_jit_code *code = NULL;
  void *fn = NULL;
  kiln_status st = kl_jit_add(jit, &m, "kiln_t_calls", NULL, &code, &fn, err, sizeof err);
  ck_assert_int_eq(st, KILN_LLVM);
  ck_assert_msg(strstr(err, "kiln_t_defined_nowhere") != NULL, "%s", err);
  ck_assert_ptr_null(code);
  m = build_muladd1(jit, "kiln_t_calls");
  code = add_ok(jit, &m, "kiln_t_calls", 2, &fn);
  ck_assert(AS_FN(fn_dd_d, fn)(3.0, 3.0) == 10.0);
  kl_jit_code_free(code);
  kl_jit_free(jit);
}
END_TEST

/* Without a diagnostic handler LLVM prints this error and calls exit(1). */
START_TEST(test_codegen_diagnostic) {
  kl_jit *jit = new_jit();
  kl_llmod m = build_inline_asm(jit, "kiln_t_asm", "kiln_no_such_instruction %eax");
  kl_jit_code *code = NULL;
  void *fn = NULL;
  kiln_status st = kl_jit_add(jit, &m, "kiln_t_asm", NULL, &code, &fn, err, sizeof err);
  ck_assert_int_eq(st, KILN_LLVM);
  ck_assert_msg(strstr(err, "kiln_no_such_instruction") != NULL, "%s", err);
  ck_assert_ptr_null(code);
  ck_assert_ptr_null(fn);
  m = build_inline_asm(jit, "kiln_t_asm", "nop");
  code = add_ok(jit, &m, "kiln_t_asm", 2, &fn);
  ck_assert_ptr_nonnull(strstr(text_ok(code, KILN_STAGE_ASM), "nop"));
  kl_jit_code_free(code);
  kl_jit_free(jit);
}
END_TEST

START_TEST(test_duplicate_symbol) {
  kl_jit *jit = new_jit();
  void *fn;
  kl_llmod m = build_const(jit, "kiln_t_dup", 1);
  kl_jit_code *first = add_ok(jit, &m, "kiln_t_dup", 2, &fn);
  m = build_const(jit, "kiln_t_dup", 2);
  kl_jit_code *code = NULL;
  void *fn2 = NULL;
  kiln_status st = kl_jit_add(jit, &m, "kiln_t_dup", NULL, &code, &fn2, err, sizeof err);
  ck_assert_int_eq(st, KILN_LLVM);
  ck_assert_msg(strstr(err, "kiln_t_dup") != NULL, "%s", err);
  ck_assert_int_eq(AS_FN(fn_v_i, fn)(), 1);
  /* Freeing a code removes its symbol: the name can be defined again. */
  kl_jit_code_free(first);
  m = build_const(jit, "kiln_t_dup", 3);
  code = add_ok(jit, &m, "kiln_t_dup", 2, &fn);
  ck_assert_int_eq(AS_FN(fn_v_i, fn)(), 3);
  kl_jit_code_free(code);
  kl_jit_free(jit);
}
END_TEST

START_TEST(test_many_codes) {
  enum { N = 200 };
  kl_jit *jit = new_jit();
  static kl_jit_code *codes[N];
  static void *fns[N];
  char name[32];
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof name, "kiln_t_many_%d", i);
    kl_llmod m = build_const(jit, name, 1000 + i);
    codes[i] = add_ok(jit, &m, name, 2, &fns[i]);
  }
  for (int i = 0; i < N; i++)
    ck_assert_int_eq(AS_FN(fn_v_i, fns[i])(), 1000 + i);
  /* Free the even ones, the others must still run; then the rest. */
  for (int i = 0; i < N; i += 2)
    kl_jit_code_free(codes[i]);
  for (int i = 1; i < N; i += 2)
    ck_assert_int_eq(AS_FN(fn_v_i, fns[i])(), 1000 + i);
  for (int i = N - 1; i > 0; i -= 2)
    kl_jit_code_free(codes[i]);
  /* Create and free, one at a time, under one name. */
  for (int i = 0; i < N; i++) {
    kl_llmod m = build_const(jit, "kiln_t_again", i);
    void *fn;
    kl_jit_code *code = add_ok(jit, &m, "kiln_t_again", 1, &fn);
    ck_assert_int_eq(AS_FN(fn_v_i, fn)(), i);
    kl_jit_code_free(code);
  }
  kl_jit_free(jit);
}
END_TEST

START_TEST(test_two_jits) {
  kl_jit *a = new_jit(), *b = new_jit();
  void *fa, *fb;
  kl_llmod ma = build_const(a, "kiln_t_same", 11);
  kl_llmod mb = build_const(b, "kiln_t_same", 22);
  kl_jit_code *ca = add_ok(a, &ma, "kiln_t_same", 2, &fa);
  kl_jit_code *cb = add_ok(b, &mb, "kiln_t_same", 2, &fb);
  ck_assert_ptr_ne(fa, fb);
  ck_assert_int_eq(AS_FN(fn_v_i, fa)(), 11);
  ck_assert_int_eq(AS_FN(fn_v_i, fb)(), 22);
  kl_jit_code_free(ca);
  kl_jit_free(a);
  ck_assert_int_eq(AS_FN(fn_v_i, fb)(), 22);
  kl_jit_code_free(cb);
  kl_jit_free(b);
}
END_TEST

/* kl_jit_free frees the codes still alive (ASan reports a leak otherwise). */
START_TEST(test_free_with_live_codes) {
  kl_jit *jit = new_jit();
  void *fn;
  for (int i = 0; i < 3; i++) {
    char name[32];
    snprintf(name, sizeof name, "kiln_t_live_%d", i);
    kl_llmod m = build_muladd1(jit, name);
    kl_jit_code *code = add_ok(jit, &m, name, 2, &fn);
    text_ok(code, KILN_STAGE_ASM);
  }
  kl_llmod unused = build_sum(jit, "kiln_t_unused");
  kl_llmod_dispose(&unused);
  ck_assert_ptr_null(unused.mod);
  kl_llmod_dispose(&unused); /* twice is fine: it was cleared */
  kl_jit_free(jit);
}
END_TEST

START_TEST(test_free_null) {
  kl_jit_free(NULL);
  kl_jit_code_free(NULL);
  kl_llmod_dispose(NULL);
  kl_llmod m = {0};
  kl_llmod_dispose(&m);
}
END_TEST

START_TEST(test_misuse) {
  kl_jit *jit = new_jit();
  kl_jit_code *code = NULL;
  void *fn = NULL;
  kiln_status st = KILN_OK;
  ck_assert_int_eq(kl_jit_new(NULL, err, sizeof err), KILN_MISUSE);
  ck_assert_int_eq(kl_llmod_new(jit, NULL, "x", err, sizeof err), KILN_MISUSE);
  kl_llmod m;
  ck_assert_int_eq(kl_llmod_new(NULL, &m, "x", err, sizeof err), KILN_MISUSE);
  ck_assert_ptr_null(m.mod);
  /* Every failing kl_jit_add still takes the module (ASan checks it is freed). */
  m = build_const(jit, "kiln_t_m", 1);
  ck_assert_int_eq(kl_jit_add(NULL, &m, "kiln_t_m", NULL, &code, &fn, err, sizeof err),
                   KILN_MISUSE);
  ck_assert_ptr_null(m.mod);
  m = build_const(jit, "kiln_t_m", 1);
  ck_assert_int_eq(kl_jit_add(jit, &m, NULL, NULL, &code, &fn, NULL, 0), KILN_MISUSE);
  m = build_const(jit, "kiln_t_m", 1);
  ck_assert_int_eq(kl_jit_add(jit, &m, "kiln_t_m", NULL, NULL, &fn, err, sizeof err), KILN_MISUSE);
  ck_assert_int_eq(kl_jit_add(jit, NULL, "kiln_t_m", NULL, &code, &fn, err, sizeof err),
                   KILN_MISUSE);
  for (int level = -1; level <= 4; level += 5) {
    m = build_const(jit, "kiln_t_m", 1);
    kl_jit_opts o = {.opt_level = level};
    st = kl_jit_add(jit, &m, "kiln_t_m", &o, &code, &fn, err, sizeof err);
    ck_assert_int_eq(st, KILN_MISUSE);
    ck_assert_ptr_nonnull(strstr(err, "opt_level"));
    ck_assert_ptr_null(m.mod);
  }
  /* A NULL err is fine everywhere. */
  m = build_invalid(jit, "kiln_t_m");
  ck_assert_int_eq(kl_jit_add(jit, &m, "kiln_t_m", NULL, &code, &fn, NULL, 0), KILN_INTERNAL);

  m = build_const(jit, "kiln_t_m", 5);
  code = add_ok(jit, &m, "kiln_t_m", 0, &fn);
  ck_assert_int_eq(AS_FN(fn_v_i, fn)(), 5);
  st = KILN_OK;
  ck_assert_ptr_null(kl_jit_code_text(code, KILN_STAGE_GRAPH, &st, err, sizeof err));
  ck_assert_int_eq(st, KILN_MISUSE);
  ck_assert_ptr_null(kl_jit_code_text(code, KILN_N_STAGES, NULL, NULL, 0));
  ck_assert_ptr_null(kl_jit_code_text(NULL, KILN_STAGE_ASM, &st, err, sizeof err));
  ck_assert_int_eq(st, KILN_MISUSE);
  ck_assert_ptr_nonnull(kl_jit_code_text(code, KILN_STAGE_ASM, NULL, NULL, 0));
  kl_jit_code_free(code);
  kl_jit_free(jit);
}
END_TEST

/* Fails Kiln's k-th allocation for k = 1, 2, ... until a run needs fewer:
** each run must end in KILN_OK or KILN_NOMEM, with nothing leaked. */
START_TEST(test_out_of_memory) {
  int nomem = 0;
  for (long k = 1; k < 100; k++) {
    kl_jit *jit = NULL;
    kl_mem_fail_at(k);
    kiln_status st = kl_jit_new(&jit, err, sizeof err);
    kl_mem_fail_at(0);
    if (st == KILN_NOMEM) {
      ck_assert_ptr_null(jit);
      nomem++;
      continue;
    }
    ck_assert_msg(st == KILN_OK, "%d %s", (int)st, err);
    kl_jit_free(jit);
    break;
  }
  ck_assert_int_gt(nomem, 0);

  kl_jit *jit = new_jit();
  nomem = 0;
  for (long k = 1; k < 100; k++) {
    kl_jit_code *code;
    void *fn;
    if (add_failing_at(jit, k, build_muladd1, "kiln_t_oom", &code, &fn) == KILN_NOMEM) {
      nomem++;
      continue;
    }
    ck_assert(AS_FN(fn_dd_d, fn)(1.0, 2.0) == 3.0);
    kl_jit_code_free(code);
    break;
  }
  ck_assert_int_ge(nomem, 7); /* code; each text and its piece */
  kl_jit_free(jit);
}
END_TEST

/* ------------------------------------------------------------ split compile */

enum { SPLIT_ROOTS = 6, SPLIT_CHAIN = 180 };

/* The helper every root calls (not noinline: each part gets a copy). */
static uint64_t split_h(uint64_t x) { return x ^ (x >> 7); }

/* Root k: SPLIT_CHAIN rounds of x = (x * 3 + k + i) ^ (x >> 3), wrapping. */
static uint64_t split_root(uint64_t x, int k) {
  x = split_h(x);
  for (int i = 0; i < SPLIT_CHAIN; i++)
    x = (x * 3 + (uint64_t)(k + i)) ^ (x >> 3);
  return x;
}

/* int64_t name(int64_t x): the sum of SPLIT_ROOTS internal noinline roots
** of 3 * SPLIT_CHAIN instructions each -- over KL_SPLIT_MIN, so with two
** compile threads the module is compiled in two parts. */
static kl_llmod build_split(kl_jit *jit, const char *name) {
  kl_llmod m = new_mod(jit, "split");
  LLVMTypeRef i64 = LLVMInt64TypeInContext(m.ctx);
  LLVMTypeRef fty = LLVMFunctionType(i64, &i64, 1, 0);
  unsigned noinline = LLVMGetEnumAttributeKindForName("noinline", 8);
  LLVMBuilderRef b;
  LLVMValueRef h = add_fn(&m, "h", i64, &i64, 1, &b);
  LLVMSetLinkage(h, LLVMInternalLinkage);
  LLVMValueRef hx = LLVMGetParam(h, 0);
  LLVMBuildRet(b, LLVMBuildXor(b, hx, LLVMBuildLShr(b, hx, LLVMConstInt(i64, 7, 0), ""), ""));
  LLVMDisposeBuilder(b);
  LLVMValueRef roots[SPLIT_ROOTS];
  for (int k = 0; k < SPLIT_ROOTS; k++) {
    char nm[16];
    snprintf(nm, sizeof nm, "r%d", k);
    LLVMValueRef f = roots[k] = add_fn(&m, nm, i64, &i64, 1, &b);
    LLVMSetLinkage(f, LLVMInternalLinkage);
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                            LLVMCreateEnumAttribute(m.ctx, noinline, 0));
    LLVMValueRef x = LLVMBuildCall2(b, fty, h, (LLVMValueRef[]){LLVMGetParam(f, 0)}, 1, "");
    for (int i = 0; i < SPLIT_CHAIN; i++) {
      LLVMValueRef t = LLVMBuildAdd(b, LLVMBuildMul(b, x, LLVMConstInt(i64, 3, 0), ""),
                                    LLVMConstInt(i64, (unsigned long long)(k + i), 0), "");
      x = LLVMBuildXor(b, t, LLVMBuildLShr(b, x, LLVMConstInt(i64, 3, 0), ""), "");
    }
    LLVMBuildRet(b, x);
    LLVMDisposeBuilder(b);
  }
  LLVMValueRef f = add_fn(&m, name, i64, &i64, 1, &b);
  LLVMValueRef acc = LLVMConstInt(i64, 0, 0);
  for (int k = 0; k < SPLIT_ROOTS; k++)
    acc = LLVMBuildAdd(
        b, acc, LLVMBuildCall2(b, fty, roots[k], (LLVMValueRef[]){LLVMGetParam(f, 0)}, 1, ""), "");
  LLVMBuildRet(b, acc);
  LLVMDisposeBuilder(b);
  return m;
}

static uint64_t split_expected(uint64_t x) {
  uint64_t acc = 0;
  for (int k = 0; k < SPLIT_ROOTS; k++)
    acc += split_root(x, k);
  return acc;
}

static int count_str(const char *text, const char *sub) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, sub)) != NULL; p += strlen(sub))
    n++;
  return n;
}

/* Lines that start with start and contain sub. */
static int count_lines_with(const char *text, const char *start, const char *sub) {
  int n = 0;
  size_t ls = strlen(start), lsub = strlen(sub);
  for (const char *p = text; *p;) {
    const char *end = strchr(p, '\n');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len >= ls && strncmp(p, start, ls) == 0)
      for (size_t i = 0; i + lsub <= len; i++)
        if (strncmp(p + i, sub, lsub) == 0) {
          n++;
          break;
        }
    p += len + (end != NULL);
  }
  return n;
}

typedef int64_t (*fn_i_i)(int64_t);
DEFINE_AS_FN(fn_i_i)

START_TEST(test_split_compile) {
  kl_jit *jit = new_jit();
  setenv("KILN_COMPILE_THREADS", "2", 1);
  void *fn = NULL;
  kl_llmod m = build_split(jit, "kiln_t_split");
  kl_jit_code *code = add_ok(jit, &m, "kiln_t_split", 2, &fn);
  for (int64_t x = -3; x < 1000; x += 97)
    ck_assert_msg((uint64_t)AS_FN(fn_i_i, fn)(x) == split_expected((uint64_t)x), "x = %lld",
                  (long long)x);
  const char *ir = text_ok(code, KILN_STAGE_LLVM_IR), *opt = text_ok(code, KILN_STAGE_LLVM_OPT);
  ck_assert_msg(strstr(opt, "; ---- kiln: part 1 of 2 ----\n") == opt, "%.200s", opt);
  ck_assert_int_eq(count_str(opt, "; ---- kiln: part 2 of 2 ----\n"), 1);
  /* the roots the step calls in the other part are external, under its name */
  ck_assert_int_eq(count_lines_with(ir, "define ", "@kiln_t_split.r"), SPLIT_ROOTS / 2);
  ck_assert_int_eq(count_str(ir, "define internal i64 @r"), SPLIT_ROOTS / 2);
  /* each part defines its own roots and declares the others it calls */
  const char *two = strstr(opt, "part 2 of 2");
  ck_assert_int_eq(count_lines_with(two, "define ", "@"), SPLIT_ROOTS / 2);
  ck_assert_int_eq(count_lines_with(opt, "define ", "@") - count_lines_with(two, "define ", "@"),
                   1 + SPLIT_ROOTS / 2);
  ck_assert_int_eq(count_lines_with(opt, "declare ", "@kiln_t_split.r"), SPLIT_ROOTS / 2);
  const char *as = text_ok(code, KILN_STAGE_ASM);
  ck_assert_msg(strstr(as, "kiln_t_split:") && strstr(as, "kiln_t_split.r"), "%s", as);
  /* freeing gives every name back: the same module again */
  kl_jit_code_free(code);
  m = build_split(jit, "kiln_t_split");
  code = add_ok(jit, &m, "kiln_t_split", 2, &fn);
  ck_assert((uint64_t)AS_FN(fn_i_i, fn)(5) == split_expected(5));
  kl_jit_code_free(code);

  /* one thread, or a small module: one piece */
  setenv("KILN_COMPILE_THREADS", "1", 1);
  m = build_split(jit, "kiln_t_split");
  code = add_ok(jit, &m, "kiln_t_split", 2, &fn);
  ck_assert((uint64_t)AS_FN(fn_i_i, fn)(5) == split_expected(5));
  ck_assert_ptr_null(strstr(text_ok(code, KILN_STAGE_LLVM_OPT), "; ---- kiln: part"));
  kl_jit_code_free(code);
  setenv("KILN_COMPILE_THREADS", "2", 1);
  m = build_muladd1(jit, "kiln_t_small");
  code = add_ok(jit, &m, "kiln_t_small", 2, &fn);
  ck_assert_ptr_null(strstr(text_ok(code, KILN_STAGE_LLVM_OPT), "; ---- kiln: part"));
  kl_jit_code_free(code);

  /* every allocation of a split compile fails once, cleanly */
  int nomem = 0, one_piece = 0;
  long k;
  for (k = 1; k < 1000; k++) {
    if (add_failing_at(jit, k, build_split, "kiln_t_split", &code, &fn) == KILN_NOMEM) {
      nomem++;
      continue;
    }
    ck_assert((uint64_t)AS_FN(fn_i_i, fn)(7) == split_expected(7));
    /* the split's own allocations may fail without harm: one piece then */
    bool split = strstr(text_ok(code, KILN_STAGE_LLVM_OPT), "part 2 of 2") != NULL;
    kl_jit_code_free(code);
    if (split) break;
    one_piece++;
  }
  ck_assert_int_lt(k, 1000);
  ck_assert_int_ge(nomem, 1 + 2 + 3 + 3); /* code; IR text and piece; 2 pieces and text twice */
  ck_assert_int_ge(one_piece, 1 + SPLIT_ROOTS); /* the roots' table, each root's name */
  unsetenv("KILN_COMPILE_THREADS");
  kl_jit_free(jit);
}
END_TEST

/* Different JITs in different threads, first use of the targets included. */
static void *thread_main(void *arg) {
  intptr_t id = (intptr_t)arg;
  char msg[512];
  kl_jit *jit = NULL;
  if (kl_jit_new(&jit, msg, sizeof msg) != KILN_OK) return (void *)1;
  intptr_t bad = 0;
  for (int i = 0; i < 20 && !bad; i++) {
    kl_llmod m;
    if (kl_llmod_new(jit, &m, "t", msg, sizeof msg) != KILN_OK) {
      bad = 1;
      break;
    }
    LLVMTypeRef i64 = LLVMInt64TypeInContext(m.ctx);
    LLVMValueRef f = LLVMAddFunction(m.mod, "kiln_t_thread", LLVMFunctionType(i64, NULL, 0, 0));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(m.ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(m.ctx, f, "entry"));
    LLVMBuildRet(b, LLVMConstInt(i64, (unsigned long long)(id * 100 + i), 0));
    LLVMDisposeBuilder(b);
    kl_jit_code *code = NULL;
    void *fn = NULL;
    if (kl_jit_add(jit, &m, "kiln_t_thread", NULL, &code, &fn, msg, sizeof msg) != KILN_OK ||
        AS_FN(fn_v_i, fn)() != id * 100 + i)
      bad = 1;
    kl_jit_code_free(code);
  }
  kl_jit_free(jit);
  return (void *)bad;
}

START_TEST(test_threads) {
  enum { T = 4 };
  pthread_t th[T];
  for (intptr_t i = 0; i < T; i++)
    ck_assert_int_eq(pthread_create(&th[i], NULL, thread_main, (void *)i), 0);
  for (int i = 0; i < T; i++) {
    void *r = NULL;
    ck_assert_int_eq(pthread_join(th[i], &r), 0);
    ck_assert_msg(r == NULL, "thread %d failed", i);
  }
}
END_TEST

static Suite *jit_suite(void) {
  Suite *s = suite_create("jit");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_threads); /* first: the targets get initialized by racing threads */
  tcase_add_test(tc, test_muladd1);
  tcase_add_test(tc, test_no_contraction);
  tcase_add_test(tc, test_sum_loop);
  tcase_add_test(tc, test_libm);
  tcase_add_test(tc, test_verifier_error);
  tcase_add_test(tc, test_missing_symbol);
  tcase_add_test(tc, test_unresolved_call);
  tcase_add_test(tc, test_codegen_diagnostic);
  tcase_add_test(tc, test_duplicate_symbol);
  tcase_add_test(tc, test_many_codes);
  tcase_add_test(tc, test_two_jits);
  tcase_add_test(tc, test_free_with_live_codes);
  tcase_add_test(tc, test_free_null);
  tcase_add_test(tc, test_misuse);
  tcase_add_test(tc, test_out_of_memory);
  tcase_add_test(tc, test_split_compile);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(jit_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
