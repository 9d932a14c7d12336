/*
** test_pool.c -- threads: kiln_ctx_set_threads and its errors (bad counts,
** allocation failures, a pthread_create that fails), and the promise that
** results do not depend on the thread count: large sums and elementwise
** kernels, float32 and float64, static and dynamic shapes, in-place updates
** of shared variables, run on 1, 2 and 3 threads, are bit-identical to each
** other and to the reference evaluator (kl_ref_run, plain C), and a step
** that fails at an index out of range leaves every shared variable as it
** was, whatever the thread count.
*/
#define _POSIX_C_SOURCE 200809L
#include "compiler/refeval.h"
#include "runtime/pool.h"
#include "runtime/rt.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define D KILN_DYN
#define C KL_SUM_CHUNK

static const char *dn(int dt) { return kiln_dtype_name((kiln_dtype)dt); }

/* Values of mixed sign and magnitude, so the order of a sum shows in its bits. */
static void fill(kiln_tensor *t, uint64_t seed) {
  uint64_t h = 0x9e3779b97f4a7c15u * (seed + 1);
  for (int64_t i = 0; i < t->size; i++) {
    h ^= h << 13, h ^= h >> 7, h ^= h << 17;
    double v = ldexp((double)(int64_t)(h % 2001) - 1000.0, (int)(h >> 40) % 24 - 12);
    if (t->dtype == KILN_FLOAT32)
      ((float *)t->data)[i] = (float)v;
    else
      ((double *)t->data)[i] = v;
  }
}

static kiln_ctx *ctx_threads(int n) {
  kiln_ctx *ctx = kiln_ctx_new();
  ck_assert_ptr_nonnull(ctx);
  ck_assert_int_eq(kiln_ctx_set_threads(ctx, n), KILN_OK);
  ck_assert_int_eq(kiln_ctx_threads(ctx), n);
  return ctx;
}

START_TEST(set_threads_errors) {
  ck_assert_int_eq(kiln_ctx_set_threads(NULL, 2), KILN_MISUSE);
  ck_assert_int_eq(kiln_ctx_threads(NULL), -1);
  kiln_ctx *ctx = kiln_ctx_new();
  unsetenv("KILN_THREADS");
  kiln_ctx_free(ctx);
  ctx = kiln_ctx_new();
  ck_assert_int_eq(kiln_ctx_threads(ctx), 1);
  static const int bad[] = {0, -1, -100, 257, 1 << 30};
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    ck_assert_int_eq(kiln_ctx_set_threads(ctx, bad[k]), KILN_MISUSE);
    ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
    ck_assert_msg(strstr(kiln_errmsg(ctx), "must be 1 to 256"), "%s", kiln_errmsg(ctx));
    ck_assert_int_eq(kiln_ctx_threads(ctx), 1);
  }
  ck_assert_int_eq(kiln_ctx_set_threads(ctx, 3), KILN_OK);
  ck_assert_int_eq(kiln_ctx_threads(ctx), 3);
  ck_assert_int_eq(kiln_ctx_set_threads(ctx, 0), KILN_MISUSE);
  ck_assert_int_eq(kiln_ctx_threads(ctx), 3); /* unchanged */
  ck_assert_int_eq(kiln_ctx_set_threads(ctx, 2), KILN_OK);
  ck_assert_int_eq(kiln_ctx_threads(ctx), 2);
  ck_assert_int_eq(kiln_ctx_set_threads(ctx, 1), KILN_OK);
  ck_assert_int_eq(kiln_ctx_threads(ctx), 1);
  kiln_ctx_free(ctx);
  /* a freed context's pool goes with it (ASan's leak check) */
  ctx = ctx_threads(4);
  kiln_ctx_free(ctx);
}
END_TEST

/* KILN_THREADS sets the count of new contexts; bad values are ignored. */
START_TEST(env_threads) {
  static const struct {
    const char *val;
    int want;
  } cases[] = {{"2", 2}, {"3", 3}, {"1", 1}, {"0", 1}, {"-2", 1}, {"x", 1}, {"2x", 1}, {"999", 1}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    setenv("KILN_THREADS", cases[k].val, 1);
    kiln_ctx *ctx = kiln_ctx_new();
    ck_assert_msg(kiln_ctx_threads(ctx) == cases[k].want, "KILN_THREADS=%s: %d threads",
                  cases[k].val, kiln_ctx_threads(ctx));
    ck_assert_int_eq(kiln_errcode(ctx), KILN_OK);
    kiln_ctx_free(ctx);
  }
  unsetenv("KILN_THREADS");
}
END_TEST

/* A thread that cannot be started: an error, and the count stays. */
START_TEST(thread_create_fails) {
  kiln_ctx *ctx = kiln_ctx_new();
  for (int k = 1; k <= 2; k++) { /* the first or the second worker */
    kl_pool_fail_create_at(k);
    ck_assert_int_eq(kiln_ctx_set_threads(ctx, 3), KILN_NOMEM);
    kl_pool_fail_create_at(0);
    ck_assert_msg(strstr(kiln_errmsg(ctx),
                         k == 1 ? "cannot start thread 2 of 3" : "cannot start thread 3 of 3"),
                  "%s", kiln_errmsg(ctx));
    ck_assert_int_eq(kiln_ctx_threads(ctx), 1);
  }
  ck_assert_int_eq(kiln_ctx_set_threads(ctx, 2), KILN_OK);
  kl_pool_fail_create_at(1);
  ck_assert_int_eq(kiln_ctx_set_threads(ctx, 3), KILN_NOMEM);
  kl_pool_fail_create_at(0);
  ck_assert_int_eq(kiln_ctx_threads(ctx), 2); /* the old pool still works */
  kiln_ctx_free(ctx);
}
END_TEST

/* Every allocation of set_threads may fail: KILN_NOMEM, nothing changes. */
START_TEST(set_threads_out_of_memory) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_status st = KILN_NOMEM;
  int k = 1;
  for (; st != KILN_OK && k < 50; k++) {
    kl_mem_fail_at(k);
    st = kiln_ctx_set_threads(ctx, 2);
    kl_mem_fail_at(0);
    if (st != KILN_OK) {
      ck_assert_int_eq(st, KILN_NOMEM);
      ck_assert_int_eq(kiln_ctx_threads(ctx), 1);
    }
  }
  ck_assert_int_eq(st, KILN_OK);
  ck_assert_int_gt(k, 2); /* at least one allocation failed first */
  ck_assert_int_eq(kiln_ctx_threads(ctx), 2);
  kiln_ctx_free(ctx);
}
END_TEST

/* Outputs of one function built and called on n threads (2 calls, each
** checked against the reference evaluator); copies in keep. */
typedef kiln_function *(*build_fn)(kiln_ctx *ctx, int dt, const int64_t *shape, bool dyn,
                                   kiln_node **ins, kiln_node **outs, int *n_out);

static void run_threads(build_fn build, int dt, int rank, const int64_t *shape, bool dyn,
                        const char *what) {
  enum { MAXO = 4 };
  kiln_tensor *first[MAXO] = {NULL};
  int n_first = 0;
  for (int th = 1; th <= 3; th++) {
    kiln_ctx *ctx = ctx_threads(th);
    kiln_node *ins[2], *outs[MAXO];
    int n_out = 0;
    kiln_function *f = build(ctx, dt, shape, dyn, ins, outs, &n_out);
    ck_assert_msg(f != NULL, "%s: %s", what, kiln_errmsg(ctx));
    kiln_tensor *vals[2];
    for (int k = 0; k < 2; k++) {
      vals[k] = kiln_tensor_new((kiln_dtype)dt, rank, shape, NULL);
      fill(vals[k], (uint64_t)(17 * k + rank));
    }
    char msg[200];
    snprintf(msg, sizeof msg, "%s %s, %d threads", what, dn(dt), th);
    kiln_tensor *keep[MAXO];
    kt_check_calls(ctx, f, msg, 2, ins, vals, n_out, outs, 2, keep);
    for (int k = 0; k < n_out; k++) {
      if (th == 1) {
        first[k] = keep[k];
        continue;
      }
      ck_assert_msg(kt_same_bits(keep[k], first[k]), "%s: output %d differs from 1 thread", msg, k);
      kiln_tensor_free(keep[k]);
    }
    if (th == 1) n_first = n_out;
    for (int k = 0; k < 2; k++)
      kiln_tensor_free(vals[k]);
    kiln_ctx_free(ctx);
  }
  for (int k = 0; k < n_first; k++)
    kiln_tensor_free(first[k]);
}

static kiln_function *build_sums(kiln_ctx *ctx, int dt, const int64_t *shape, bool dyn,
                                 kiln_node **ins, kiln_node **outs, int *n_out) {
  int64_t shp[2] = {dyn ? D : shape[0], dyn ? D : shape[1]};
  ins[0] = kiln_input(ctx, "x", (kiln_dtype)dt, 2, shp);
  ins[1] = kiln_input(ctx, "y", (kiln_dtype)dt, 2, shp);
  outs[0] = kiln_sum(kiln_mul(ins[0], ins[1]));
  outs[1] = kiln_sum(ins[0]);
  /* keepdims: the same blocked sum with a (1, 1) result */
  outs[2] = kiln_reduce(kiln_sub(ins[1], ins[0]), KILN_SUM, 0, NULL, 1);
  *n_out = 3;
  return kiln_function_new(ctx, "sums", 2, ins, 3, outs, 0, NULL);
}

/* run_threads for every (rows, cols) shape, float32 and float64, static and
** dynamic sizes; kind names the case in messages. */
static void each_shape(build_fn build, const char *kind, const int64_t (*shapes)[2], size_t n) {
  for (int dt = KILN_FLOAT32; dt <= KILN_FLOAT64; dt++)
    for (size_t s = 0; s < n; s++)
      for (int dyn = 0; dyn < 2; dyn++) {
        char what[80];
        snprintf(what, sizeof what, "%s (%lld, %lld) %s", kind, (long long)shapes[s][0],
                 (long long)shapes[s][1], dyn ? "dynamic" : "static");
        run_threads(build, dt, 2, shapes[s], dyn, what);
      }
}

/* Sums down to one value around and above the chunk of the sum order
** (KL_SUM_CHUNK), one row and several. */
START_TEST(sums_same_bits) {
  static const int64_t shapes[][2] = {{1, C - 1},       {1, C},          {1, C + 1},
                                      {1, C + 16},      {1, 3 * C + 17}, {3, C + 1},
                                      {2, 2 * C + 100}, {1, 70 * C + 3}, {5, 3000}};
  each_shape(build_sums, "sums", shapes, sizeof shapes / sizeof *shapes);
}
END_TEST

static kiln_function *build_elem(kiln_ctx *ctx, int dt, const int64_t *shape, bool dyn,
                                 kiln_node **ins, kiln_node **outs, int *n_out) {
  int64_t shp[2] = {dyn ? D : shape[0], dyn ? D : shape[1]};
  ins[0] = kiln_input(ctx, "x", (kiln_dtype)dt, 2, shp);
  ins[1] = kiln_input(ctx, "y", (kiln_dtype)dt, 2, shp);
  kiln_node *x = ins[0], *y = ins[1];
  outs[0] = kiln_sub(kiln_mul(kiln_tanh(kiln_mul(x, kiln_lit(ctx, 0.01))), y),
                     kiln_div(x, kiln_add(kiln_abs(y), kiln_lit(ctx, 3))));
  outs[1] = kiln_add(kiln_mul(x, x), y);
  *n_out = 2;
  return kiln_function_new(ctx, "elem", 2, ins, 2, outs, 0, NULL);
}

/* Elementwise kernels above the pool's threshold (KL_PAR_MIN), rows short
** and long, and one below it. */
START_TEST(elementwise_same_bits) {
  static const int64_t shapes[][2] = {{1, 100003}, {300, 257}, {3, 50001},
                                      {40000, 1},  {7, 5},     {2, KL_PAR_MIN / 2}};
  each_shape(build_elem, "elementwise", shapes, sizeof shapes / sizeof *shapes);
}
END_TEST

/* The seed step over n features (W of dtype dt, shared, updated in place),
** three calls on 1, 2 and 3 threads: y and W after every call are the
** reference evaluator's, computed before the call from the same W. */
START_TEST(inplace_update_same_bits) {
  const int64_t n = 3 * C + 21;
  for (int dt = KILN_FLOAT32; dt <= KILN_FLOAT64; dt++) {
    kiln_tensor *w_first = NULL;
    for (int th = 1; th <= 3; th++) {
      kiln_ctx *ctx = ctx_threads(th);
      kiln_tensor *w0 = kiln_tensor_new((kiln_dtype)dt, 1, &n, NULL);
      fill(w0, 5);
      kiln_node *x = kiln_input(ctx, "x", (kiln_dtype)dt, 1, (int64_t[]){D});
      kiln_node *t = kiln_input(ctx, "t", (kiln_dtype)dt, 0, NULL);
      kiln_node *W = kiln_shared(ctx, "W", (kiln_dtype)dt, 1, &n, w0->data);
      kiln_node *y = kiln_sum(kiln_mul(x, W)), *g;
      ck_assert_int_eq(kiln_grad(kiln_sqr(kiln_sub(t, y)), 1, &W, &g, 0), KILN_OK);
      kiln_node *wnew = kiln_sub(W, kiln_mul(kiln_lit(ctx, 1e-3), g));
      kiln_update u = {W, wnew};
      kiln_function *f = kiln_function_new(ctx, "seed", 2, (kiln_node *[]){x, t}, 1, &y, 1, &u);
      ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
      char *plan = kt_dump(f, "plan");
      ck_assert_msg(strstr(plan, "in place"), "the update is not in place:\n%s", plan);
      free(plan);
      kiln_tensor *in[2] = {kiln_tensor_new((kiln_dtype)dt, 1, &n, NULL),
                            kt_tensor((kiln_dtype)dt, 0, NULL, (double[]){3.5})};
      fill(in[0], 9);
      for (int call = 0; call < 3; call++) {
        kiln_tensor *ref[2];
        ck_assert_int_eq(kl_ref_run(ctx, 2, (kiln_node *[]){x, t}, (const kiln_tensor *const *)in,
                                    2, (kiln_node *[]){y, wnew}, ref),
                         KILN_OK);
        const kiln_tensor *out;
        ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)in, &out), KILN_OK);
        ck_assert_msg(kt_same_bits(out, ref[0]), "%s y, call %d, %d threads", dn(dt), call, th);
        ck_assert_msg(kt_same_bits(kiln_shared_value(W), ref[1]), "%s W, call %d, %d threads",
                      dn(dt), call, th);
        kiln_tensor_free(ref[0]);
        kiln_tensor_free(ref[1]);
      }
      if (th == 1)
        w_first = kt_clone(kiln_shared_value(W));
      else
        ck_assert(kt_same_bits(kiln_shared_value(W), w_first));
      kiln_tensor_free(in[0]);
      kiln_tensor_free(in[1]);
      kiln_tensor_free(w0);
      kiln_ctx_free(ctx);
    }
    kiln_tensor_free(w_first);
  }
}
END_TEST

/* An index out of range in a step with large threaded kernels: the call
** fails and the shared variables keep every bit; a good call then works. */
START_TEST(index_error_keeps_shared) {
  const int64_t n = 2 * C + 7;
  for (int th = 1; th <= 3; th++) {
    kiln_ctx *ctx = ctx_threads(th);
    kiln_tensor *w0 = kiln_tensor_new(KILN_FLOAT32, 1, &n, NULL);
    fill(w0, 11);
    kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT32, 1, (int64_t[]){D});
    kiln_node *idx = kiln_input(ctx, "i", KILN_INT64, 1, (int64_t[]){D});
    kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT32, 1, &n, w0->data);
    kiln_node *V = kiln_shared(ctx, "V", KILN_FLOAT32, 1, &n, w0->data);
    kiln_node *s = kiln_sum(kiln_mul(x, W));
    kiln_node *picked = kiln_sum(kiln_take(x, idx, 0));
    kiln_update u[2] = {{W, kiln_add(kiln_mul(W, kiln_lit(ctx, 0.5)), x)},
                        {V, kiln_sub(V, kiln_mul(s, x))}};
    kiln_function *f = kiln_function_new(ctx, "f", 2, (kiln_node *[]){x, idx}, 1, &picked, 2, u);
    ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
    kiln_tensor *xv = kiln_tensor_new(KILN_FLOAT32, 1, &n, NULL);
    fill(xv, 12);
    kiln_tensor *bad = kt_tensor(KILN_INT64, 1, (int64_t[]){3}, (double[]){0, 5, (double)n});
    kiln_tensor *good = kt_tensor(KILN_INT64, 1, (int64_t[]){3}, (double[]){0, 5, (double)n - 1});
    for (int call = 0; call < 2; call++) {
      kiln_tensor *w_before = kt_clone(kiln_shared_value(W)),
                  *v_before = kt_clone(kiln_shared_value(V));
      ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)(kiln_tensor *[]){xv, bad}, NULL),
                       KILN_SHAPE);
      ck_assert(kt_same_bits(kiln_shared_value(W), w_before));
      ck_assert(kt_same_bits(kiln_shared_value(V), v_before));
      kiln_tensor *ref[2];
      ck_assert_int_eq(kl_ref_run(ctx, 2, (kiln_node *[]){x, idx},
                                  (const kiln_tensor *const *)(kiln_tensor *[]){xv, good}, 2,
                                  (kiln_node *[]){u[0].value, u[1].value}, ref),
                       KILN_OK);
      ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)(kiln_tensor *[]){xv, good}, NULL),
                       KILN_OK);
      ck_assert_msg(kt_same_bits(kiln_shared_value(W), ref[0]), "W, %d threads", th);
      ck_assert_msg(kt_same_bits(kiln_shared_value(V), ref[1]), "V, %d threads", th);
      kiln_tensor_free(ref[0]);
      kiln_tensor_free(ref[1]);
      kiln_tensor_free(w_before);
      kiln_tensor_free(v_before);
    }
    kiln_tensor_free(xv);
    kiln_tensor_free(bad);
    kiln_tensor_free(good);
    kiln_tensor_free(w0);
    kiln_ctx_free(ctx);
  }
}
END_TEST

/* The thread count may change after a function was compiled: its calls
** follow (the old pool is gone: ASan would see a call through it), with
** the same bits. */
START_TEST(threads_change_after_compile) {
  kiln_ctx *ctx = ctx_threads(2);
  kiln_node *ins[2], *outs[4];
  int n_out;
  const int64_t shape[2] = {2, 2 * C + 48};
  kiln_function *f = build_sums(ctx, KILN_FLOAT32, shape, true, ins, outs, &n_out);
  ck_assert_ptr_nonnull(f);
  kiln_tensor *vals[2];
  for (int k = 0; k < 2; k++) {
    vals[k] = kiln_tensor_new(KILN_FLOAT32, 2, shape, NULL);
    fill(vals[k], (uint64_t)k + 40);
  }
  static const int counts[] = {2, 1, 3, 1, 2};
  for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
    ck_assert_int_eq(kiln_ctx_set_threads(ctx, counts[i]), KILN_OK);
    char what[40];
    snprintf(what, sizeof what, "after set_threads(%d)", counts[i]);
    kt_check_calls(ctx, f, what, 2, ins, vals, n_out, outs, 2, NULL);
  }
  for (int k = 0; k < 2; k++)
    kiln_tensor_free(vals[k]);
  kiln_ctx_free(ctx);
}
END_TEST

/* The step's IR: a large kernel's body is a chunk function the step hands
** to the pool; a small one stays inline (no chunk function at all). */
START_TEST(chunk_functions_in_ir) {
  for (int big = 0; big < 2; big++) {
    kiln_ctx *ctx = kiln_ctx_new();
    int64_t n = big ? 4 * C : 1000;
    kiln_node *x = kiln_input(ctx, "x", KILN_FLOAT32, 1, &n);
    kiln_node *outs[2] = {kiln_sum(kiln_mul(x, x)), kiln_exp(x)};
    kiln_function *f = kiln_function_new(ctx, "f", 1, &x, 2, outs, 0, NULL);
    ck_assert_ptr_nonnull(f);
    char *ir = kt_dump_stage(f, KILN_STAGE_LLVM_IR);
    ck_assert_msg((strstr(ir, "_k0(") != NULL) == big, "%s", ir);
    ck_assert_msg((strstr(ir, "_k1(") != NULL) == big, "%s", ir);
    free(ir);
    kiln_ctx_free(ctx);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("pool");
  TCase *tc = tcase_create("pool");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, set_threads_errors);
  tcase_add_test(tc, env_threads);
  tcase_add_test(tc, thread_create_fails);
  tcase_add_test(tc, set_threads_out_of_memory);
  tcase_add_test(tc, sums_same_bits);
  tcase_add_test(tc, elementwise_same_bits);
  tcase_add_test(tc, inplace_update_same_bits);
  tcase_add_test(tc, index_error_keeps_shared);
  tcase_add_test(tc, threads_change_after_compile);
  tcase_add_test(tc, chunk_functions_in_ir);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
