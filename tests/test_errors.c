/*
** test_errors.c -- every status code provoked through the public API, with
** its message: bad calls (shape, dtype, rank, NULL and foreign arguments),
** bad function declarations (updates, unlisted inputs), NULL and foreign
** handles everywhere, borrowed tensors, chained builders that keep the first
** error, and a loop that fails every allocation of building, compiling and
** calling the seed in turn. A failed call must leave shared variables
** bit-identical, and nothing here may end the process: the suite also runs
** with CK_FORK=no.
*/
#include "tests/testutil.h"
#include "runtime/rt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IN_ARGS(...) ((const kiln_tensor *const[]){__VA_ARGS__})
#define THIS_FILE "test_errors.c"

static void teardown(void) { kl_mem_fail_at(0); }

/* The context's message must contain every one of the strings. */
#define MSG_HAS(ctx, ...) msg_has((ctx), #__VA_ARGS__, (const char *[]){__VA_ARGS__, NULL})
static void msg_has(const kiln_ctx *ctx, const char *list, const char **needles) {
  const char *m = kiln_errmsg(ctx);
  ck_assert_ptr_nonnull(m);
  for (int i = 0; needles[i]; i++)
    ck_assert_msg(strstr(m, needles[i]) != NULL, "message lacks \"%s\" (wanted %s): %s", needles[i],
                  list, m);
}

/* Asserts a status and the context's recorded status. */
#define EXPECT(ctx, expr, want)                                                                    \
  do {                                                                                             \
    kiln_status st_ = (expr);                                                                      \
    ck_assert_msg(st_ == (want), "%s: got %s, want %s (%s)", #expr, kiln_status_str(st_),          \
                  kiln_status_str(want), kiln_errmsg(ctx));                                        \
    ck_assert_msg(kiln_errcode(ctx) == (want), "%s: context holds %s, want %s", #expr,             \
                  kiln_status_str(kiln_errcode(ctx)), kiln_status_str(want));                      \
  } while (0)

/* ------------------------------------------------------------- the seed */

typedef struct seed {
  kiln_ctx *ctx;
  kiln_node *x, *target, *W, *y;
  kiln_function *f;
  kiln_tensor *xt, *tt; /* the tutorial's arguments */
} seed;

static const double W0[4] = {0.1, 0.25, 0.15, 0.3};
/* numpy's W after one step (SEED.md) */
static const double W1[4] = {19.940000000000005, 20.090000000000003, 19.990000000000002,
                             20.140000000000004};

static void seed_build(seed *s) {
  kiln_ctx *ctx = s->ctx = kiln_ctx_new();
  ck_assert_ptr_nonnull(ctx);
  s->x = kiln_fvector(ctx, "x");
  s->target = kiln_fscalar(ctx, "target");
  s->W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){4}, W0);
  s->y = kiln_sum(kiln_mul(s->x, s->W));
  kiln_node *cost = kiln_sqr(kiln_sub(s->target, s->y));
  kiln_node *g[1];
  ck_assert_msg(kiln_grad(cost, 1, &s->W, g, 0) == KILN_OK, "%s", kiln_errmsg(ctx));
  kiln_update up = {s->W, kiln_sub(s->W, kiln_mul(kiln_lit(ctx, 0.1), g[0]))};
  kiln_node *ins[] = {s->x, s->target};
  s->f = kiln_function_new(ctx, "f", 2, ins, 1, &s->y, 1, &up);
  ck_assert_msg(s->f != NULL, "%s", kiln_errmsg(ctx));
  float xv[] = {1, 1, 1, 1}, tv = 100;
  s->xt = kiln_tensor_new(KILN_FLOAT32, 1, (int64_t[]){4}, xv);
  s->tt = kiln_tensor_new(KILN_FLOAT32, 0, NULL, &tv);
  ck_assert(s->xt && s->tt);
}

static void seed_free(seed *s) {
  kiln_tensor_free(s->xt);
  kiln_tensor_free(s->tt);
  kiln_ctx_free(s->ctx);
}

static void w_bytes(const kiln_node *W, double out[4]) {
  ck_assert_int_eq(kiln_shared_get(W, out, 4 * sizeof(double)), KILN_OK);
}

#define W_UNCHANGED(s, before)                                                                     \
  do {                                                                                             \
    double now_[4];                                                                                \
    w_bytes((s)->W, now_);                                                                         \
    ck_assert_msg(memcmp(now_, (before), sizeof now_) == 0, "W changed by a failed call");         \
  } while (0)

/* --------------------------------------------------------- call errors */

START_TEST(call_wrong_length) {
  seed s;
  seed_build(&s);
  double before[4];
  w_bytes(s.W, before);
  ck_assert_mem_eq(before, W0, sizeof before);
  kiln_tensor *x3 = kiln_tensor_new(KILN_FLOAT32, 1, (int64_t[]){3}, (float[]){1, 1, 1});
  const kiln_tensor *out = (const kiln_tensor *)&before; /* sentinel: must stay */
  EXPECT(s.ctx, kiln_call(s.f, IN_ARGS(x3, s.tt), &out), KILN_SHAPE);
  ck_assert_ptr_eq(out, (const kiln_tensor *)&before);
  MSG_HAS(s.ctx, "'x'", "'W'", "(3,)", "(4,)", THIS_FILE);
  W_UNCHANGED(&s, before);
  /* again, then a good call proceeds from the untouched W */
  EXPECT(s.ctx, kiln_call(s.f, IN_ARGS(x3, s.tt), NULL), KILN_SHAPE);
  W_UNCHANGED(&s, before);
  ck_assert_int_eq(kiln_call(s.f, IN_ARGS(s.xt, s.tt), &out), KILN_OK);
  ck_assert_int_eq(kiln_errcode(s.ctx), KILN_OK);
  ck_assert_str_eq(kiln_errmsg(s.ctx), "not an error");
  ck_assert(kiln_tensor_get(out, 0) == 0.8);
  double w[4];
  w_bytes(s.W, w);
  ck_assert_mem_eq(w, W1, sizeof w);
  /* a failure after a successful step leaves the new W alone too */
  EXPECT(s.ctx, kiln_call(s.f, IN_ARGS(x3, s.tt), NULL), KILN_SHAPE);
  W_UNCHANGED(&s, W1);
  kiln_tensor *x0 = kiln_tensor_new(KILN_FLOAT32, 1, (int64_t[]){0}, NULL);
  EXPECT(s.ctx, kiln_call(s.f, IN_ARGS(x0, s.tt), NULL), KILN_SHAPE);
  MSG_HAS(s.ctx, "'x'", "'W'", "(0,)", "(4,)");
  W_UNCHANGED(&s, W1);
  ck_assert_int_eq(kiln_call(s.f, IN_ARGS(s.xt, s.tt), &out), KILN_OK);
  ck_assert(kiln_tensor_get(out, 0) == 80.16000000000001);
  kiln_tensor_free(x3);
  kiln_tensor_free(x0);
  seed_free(&s);
}
END_TEST

START_TEST(call_wrong_dtype_rank_null) {
  seed s;
  seed_build(&s);
  double before[4];
  w_bytes(s.W, before);
  /* float64 x: dtype must match exactly */
  kiln_tensor *xd = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){4}, (double[]){1, 1, 1, 1});
  EXPECT(s.ctx, kiln_call(s.f, IN_ARGS(xd, s.tt), NULL), KILN_TYPE);
  MSG_HAS(s.ctx, "'x'", "float32", "float64", THIS_FILE);
  W_UNCHANGED(&s, before);
  /* float64 target */
  kiln_tensor *td = kiln_tensor_new(KILN_FLOAT64, 0, NULL, (double[]){100});
  EXPECT(s.ctx, kiln_call(s.f, IN_ARGS(s.xt, td), NULL), KILN_TYPE);
  MSG_HAS(s.ctx, "'target'", "float32", "float64");
  W_UNCHANGED(&s, before);
  /* rank 2 x */
  kiln_tensor *xm = kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){1, 4}, NULL);
  EXPECT(s.ctx, kiln_call(s.f, IN_ARGS(xm, s.tt), NULL), KILN_TYPE);
  MSG_HAS(s.ctx, "'x'", "(1, 4)");
  W_UNCHANGED(&s, before);
  /* rank 1 target */
  kiln_tensor *t1 = kiln_tensor_new(KILN_FLOAT32, 1, (int64_t[]){1}, (float[]){100});
  EXPECT(s.ctx, kiln_call(s.f, IN_ARGS(s.xt, t1), NULL), KILN_TYPE);
  MSG_HAS(s.ctx, "'target'");
  W_UNCHANGED(&s, before);
  /* NULL inputs array, NULL element, a foreign pointer as a tensor */
  EXPECT(s.ctx, kiln_call(s.f, NULL, NULL), KILN_MISUSE);
  W_UNCHANGED(&s, before);
  EXPECT(s.ctx, kiln_call(s.f, IN_ARGS(s.xt, NULL), NULL), KILN_MISUSE);
  MSG_HAS(s.ctx, "'target'");
  EXPECT(s.ctx, kiln_call(s.f, IN_ARGS((const kiln_tensor *)(const void *)s.x, s.tt), NULL),
         KILN_MISUSE);
  MSG_HAS(s.ctx, "'x'");
  W_UNCHANGED(&s, before);
  /* still works */
  const kiln_tensor *out;
  ck_assert_int_eq(kiln_call(s.f, IN_ARGS(s.xt, s.tt), &out), KILN_OK);
  ck_assert(kiln_tensor_get(out, 0) == 0.8);
  kiln_tensor_free(xd);
  kiln_tensor_free(td);
  kiln_tensor_free(xm);
  kiln_tensor_free(t1);
  seed_free(&s);
}
END_TEST

START_TEST(call_static_dim_and_update_shape) {
  kiln_ctx *ctx = kiln_ctx_new();
  double a0[] = {1, 2, 3, 4}, b0[] = {-1, -2, -3, -4};
  kiln_node *A = kiln_shared(ctx, "A", KILN_FLOAT64, 1, (int64_t[]){4}, a0);
  kiln_node *B = kiln_shared(ctx, "B", KILN_FLOAT64, 1, (int64_t[]){4}, b0);
  kiln_node *s4 = kiln_input(ctx, "s4", KILN_FLOAT64, 1, (int64_t[]){4});
  kiln_node *x = kiln_dvector(ctx, "x");
  /* A <- A + s4 would be fine; B <- x fails when x is not of length 4 */
  kiln_update ups[] = {{A, kiln_add(A, s4)}, {B, x}};
  kiln_node *ins[] = {s4, x};
  kiln_node *y = kiln_sum(A);
  kiln_function *f = kiln_function_new(ctx, "f", 2, ins, 1, &y, 2, ups);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *v4 = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){4}, (double[]){1, 1, 1, 1});
  kiln_tensor *v3 = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){3}, (double[]){5, 6, 7});
  /* a static dimension */
  EXPECT(ctx, kiln_call(f, IN_ARGS(v3, v4), NULL), KILN_SHAPE);
  MSG_HAS(ctx, "'s4'", "(4,)", "(3,)");
  /* the update's shape, known only at call time */
  EXPECT(ctx, kiln_call(f, IN_ARGS(v4, v3), NULL), KILN_SHAPE);
  MSG_HAS(ctx, "'B'", "(3,)", "(4,)");
  double a[4], b[4];
  ck_assert_int_eq(kiln_shared_get(A, a, sizeof a), KILN_OK);
  ck_assert_int_eq(kiln_shared_get(B, b, sizeof b), KILN_OK);
  ck_assert_mem_eq(a, a0, sizeof a); /* not committed: the other update failed */
  ck_assert_mem_eq(b, b0, sizeof b);
  const kiln_tensor *out;
  ck_assert_int_eq(kiln_call(f, IN_ARGS(v4, v4), &out), KILN_OK);
  ck_assert(kiln_tensor_get(out, 0) == 10.0);
  ck_assert_int_eq(kiln_shared_get(A, a, sizeof a), KILN_OK);
  ck_assert_int_eq(kiln_shared_get(B, b, sizeof b), KILN_OK);
  ck_assert(a[0] == 2 && a[1] == 3 && a[2] == 4 && a[3] == 5);
  ck_assert(b[0] == 1 && b[1] == 1 && b[2] == 1 && b[3] == 1);
  kiln_tensor_free(v4);
  kiln_tensor_free(v3);
  kiln_ctx_free(ctx);
}
END_TEST

/* KILN_NOMEM at call time: the workspace and outputs must grow. Every
** allocation of that call fails in turn; each failure is clean. */
START_TEST(call_out_of_memory) {
  kiln_ctx *ctx = kiln_ctx_new();
  double c0 = 0.5;
  kiln_node *C = kiln_shared(ctx, "C", KILN_FLOAT64, 0, NULL, &c0);
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *y = kiln_add(kiln_mul(x, kiln_lit(ctx, 2.0)), kiln_lit(ctx, 1.0));
  kiln_update up = {C, kiln_add(C, kiln_sum(kiln_sqr(x)))};
  kiln_function *f = kiln_function_new(ctx, "f", 1, &x, 1, &y, 1, &up);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *small = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){2}, (double[]){1, 2});
  enum { N = 1000 };
  kiln_tensor *big = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){N}, NULL);
  double *bd = kiln_tensor_data(big);
  for (int i = 0; i < N; i++)
    bd[i] = i * 0.5;
  ck_assert_int_eq(kiln_call(f, IN_ARGS(small), NULL), KILN_OK);
  double c, want_c = 0.5 + ((0.0 + 1.0) + 4.0);
  ck_assert_int_eq(kiln_shared_get(C, &c, sizeof c), KILN_OK);
  ck_assert(c == want_c);
  int failures = 0;
  for (long k = 1; k < 100; k++) {
    long n0 = kl_mem_count();
    kl_mem_fail_at(k);
    const kiln_tensor *out = NULL;
    kiln_status st = kiln_call(f, IN_ARGS(big), &out);
    long used = kl_mem_count() - n0;
    kl_mem_fail_at(0);
    if (st == KILN_OK) {
      ck_assert_msg(used < k, "call succeeded although allocation %ld of %ld failed", k, used);
      break;
    }
    failures++;
    ck_assert_int_eq(st, KILN_NOMEM);
    ck_assert_int_eq(kiln_errcode(ctx), KILN_NOMEM);
    MSG_HAS(ctx, "out of memory");
    ck_assert_int_eq(kiln_shared_get(C, &c, sizeof c), KILN_OK);
    ck_assert_msg(c == want_c, "C changed by a failed call");
  }
  ck_assert_int_gt(failures, 0);
  /* the successful call computed from the old C */
  double s = 0.0;
  for (int i = 0; i < N; i++)
    s = s + bd[i] * bd[i];
  want_c = want_c + s;
  ck_assert_int_eq(kiln_shared_get(C, &c, sizeof c), KILN_OK);
  ck_assert(c == want_c);
  kiln_tensor_free(small);
  kiln_tensor_free(big);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------- declaration errors */

START_TEST(update_type_mismatch) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){4}, NULL);
  kiln_node *v32 = kiln_fvector(ctx, "v32");
  kiln_update up = {W, v32};
  EXPECT(ctx, kiln_function_new(ctx, "f", 1, &v32, 0, NULL, 1, &up) ? KILN_OK : kiln_errcode(ctx),
         KILN_TYPE);
  MSG_HAS(ctx, "'W'", "'v32'", "float64", "float32", THIS_FILE);
  /* a computed float32 value, named */
  kiln_node *w32 = kiln_name(kiln_mul(v32, kiln_lit(ctx, 2.0)), "w32");
  up.value = w32;
  EXPECT(ctx, kiln_function_new(ctx, "f", 1, &v32, 0, NULL, 1, &up) ? KILN_OK : kiln_errcode(ctx),
         KILN_TYPE);
  MSG_HAS(ctx, "'W'", "'w32'");
  /* a rank mismatch */
  kiln_node *m = kiln_dmatrix(ctx, "m");
  up.value = m;
  EXPECT(ctx, kiln_function_new(ctx, "f", 1, &m, 0, NULL, 1, &up) ? KILN_OK : kiln_errcode(ctx),
         KILN_TYPE);
  MSG_HAS(ctx, "'W'", "'m'");
  /* a static shape that differs: a shape error (KILN_SHAPE: "shapes do not
  ** match"), naming both */
  kiln_node *s3 = kiln_input(ctx, "s3", KILN_FLOAT64, 1, (int64_t[]){3});
  up.value = s3;
  EXPECT(ctx, kiln_function_new(ctx, "f", 1, &s3, 0, NULL, 1, &up) ? KILN_OK : kiln_errcode(ctx),
         KILN_SHAPE);
  MSG_HAS(ctx, "'W'", "'s3'", "(3,)", "(4,)");
  /* int64 value for an int32 shared */
  kiln_node *I = kiln_shared(ctx, "I", KILN_INT32, 0, NULL, NULL);
  kiln_update ui = {I, kiln_add(I, kiln_scalar(ctx, KILN_INT64, 1))};
  EXPECT(ctx, kiln_function_new(ctx, "f", 0, NULL, 0, NULL, 1, &ui) ? KILN_OK : kiln_errcode(ctx),
         KILN_TYPE);
  MSG_HAS(ctx, "'I'", "int32", "int64");
  /* with a weak literal the dtype stays int32: fine */
  ui.value = kiln_add(I, kiln_lit(ctx, 1));
  ck_assert_msg(kiln_function_new(ctx, "ok", 0, NULL, 0, NULL, 1, &ui) != NULL, "%s",
                kiln_errmsg(ctx));
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(update_misuse) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){2}, NULL);
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *Wx = kiln_name(kiln_add(W, x), "Wx");
  /* updating an input, a computed node, a constant */
  kiln_update u1 = {x, Wx};
  EXPECT(ctx, kiln_function_new(ctx, "f", 1, &x, 0, NULL, 1, &u1) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  MSG_HAS(ctx, "'x'", "shared");
  kiln_update u2 = {Wx, W};
  EXPECT(ctx, kiln_function_new(ctx, "f", 1, &x, 0, NULL, 1, &u2) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  MSG_HAS(ctx, "'Wx'");
  kiln_update u3 = {kiln_const(ctx, KILN_FLOAT64, 1, (int64_t[]){2}, (double[]){1, 2}), W};
  EXPECT(ctx, kiln_function_new(ctx, "f", 0, NULL, 0, NULL, 1, &u3) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  /* the same shared variable twice */
  kiln_update twice[] = {{W, Wx}, {W, W}};
  EXPECT(ctx, kiln_function_new(ctx, "f", 1, &x, 0, NULL, 2, twice) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  MSG_HAS(ctx, "'W'", "twice");
  /* NULL members */
  kiln_update un = {NULL, W};
  kiln_clear_error(ctx);
  EXPECT(ctx, kiln_function_new(ctx, "f", 0, NULL, 0, NULL, 1, &un) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  un = (kiln_update){W, NULL};
  kiln_clear_error(ctx);
  EXPECT(ctx, kiln_function_new(ctx, "f", 0, NULL, 0, NULL, 1, &un) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  /* bad counts and arrays */
  EXPECT(ctx, kiln_function_new(ctx, "f", -1, NULL, 0, NULL, 0, NULL) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  EXPECT(ctx, kiln_function_new(ctx, "f", 1, NULL, 0, NULL, 0, NULL) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  EXPECT(ctx, kiln_function_new(ctx, "f", 0, NULL, 1, NULL, 0, NULL) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  EXPECT(ctx, kiln_function_new(ctx, "f", 0, NULL, 0, NULL, 1, NULL) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  /* an input that is not a kiln_input, an input listed twice */
  EXPECT(ctx, kiln_function_new(ctx, "f", 1, &W, 1, &W, 0, NULL) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  MSG_HAS(ctx, "'W'");
  kiln_node *xx[] = {x, x};
  EXPECT(ctx, kiln_function_new(ctx, "f", 2, xx, 1, &Wx, 0, NULL) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  MSG_HAS(ctx, "'x'", "twice");
  /* W unchanged by all of this */
  double w[2];
  ck_assert_int_eq(kiln_shared_get(W, w, sizeof w), KILN_OK);
  ck_assert(w[0] == 0.0 && w[1] == 0.0);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(unlisted_input) {
  seed s;
  seed_build(&s);
  kiln_ctx *ctx = s.ctx;
  /* y depends on x, which is not listed */
  EXPECT(ctx,
         kiln_function_new(ctx, "g", 1, &s.target, 1, &s.y, 0, NULL) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  MSG_HAS(ctx, "'x'", THIS_FILE);
  /* with no inputs at all */
  EXPECT(ctx, kiln_function_new(ctx, "g", 0, NULL, 1, &s.y, 0, NULL) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  MSG_HAS(ctx, "'x'");
  /* through an update value only */
  kiln_update up = {s.W, kiln_mul(s.W, s.target)};
  EXPECT(ctx, kiln_function_new(ctx, "g", 1, &s.x, 0, NULL, 1, &up) ? KILN_OK : kiln_errcode(ctx),
         KILN_MISUSE);
  MSG_HAS(ctx, "'target'");
  /* listing an extra, unused input is fine */
  kiln_node *extra = kiln_dscalar(ctx, "extra");
  kiln_node *ins[] = {s.x, extra};
  kiln_function *g = kiln_function_new(ctx, "g", 2, ins, 1, &s.y, 0, NULL);
  ck_assert_msg(g != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *e = kiln_tensor_new(KILN_FLOAT64, 0, NULL, NULL);
  const kiln_tensor *out;
  ck_assert_int_eq(kiln_call(g, IN_ARGS(s.xt, e), &out), KILN_OK);
  ck_assert(kiln_tensor_get(out, 0) == 0.8);
  kiln_tensor_free(e);
  seed_free(&s);
}
END_TEST

/* ------------------------------------------------ NULL / foreign handles */

START_TEST(null_handles) {
  char buf[64];
  /* context level */
  kiln_ctx_free(NULL);
  ck_assert_ptr_nonnull(kiln_errmsg(NULL));
  ck_assert_uint_gt(strlen(kiln_errmsg(NULL)), 0);
  ck_assert_int_eq(kiln_errcode(NULL), KILN_MISUSE);
  kiln_clear_error(NULL);
  /* tensors */
  kiln_tensor_free(NULL);
  ck_assert_int_eq(kiln_tensor_dtype(NULL), KILN_N_DTYPES);
  ck_assert_int_eq(kiln_tensor_rank(NULL), -1);
  ck_assert_int_eq(kiln_tensor_dim(NULL, 0), -1);
  ck_assert_int_eq(kiln_tensor_size(NULL), -1);
  ck_assert_ptr_null(kiln_tensor_data(NULL));
  ck_assert(isnan(kiln_tensor_get(NULL, 0)));
  ck_assert_int_eq(kiln_tensor_print(NULL, stdout), -1);
  ck_assert_int_eq(kiln_tensor_sprint(NULL, buf, sizeof buf), -1);
  ck_assert_ptr_null(kiln_tensor_new(KILN_N_DTYPES, 0, NULL, NULL));
  ck_assert_ptr_null(kiln_tensor_new(KILN_FLOAT64, 1, NULL, NULL));
  ck_assert_ptr_null(kiln_tensor_new(KILN_FLOAT64, -1, NULL, NULL));
  ck_assert_ptr_null(kiln_tensor_new(KILN_FLOAT64, KILN_MAX_RANK + 1, (int64_t[9]){0}, NULL));
  ck_assert_ptr_null(kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){-3}, NULL));
  ck_assert_str_eq(kiln_dtype_name((kiln_dtype)99), "?");
  ck_assert_uint_eq(kiln_dtype_size((kiln_dtype)99), 0);
  ck_assert_int_eq(kiln_promote((kiln_dtype)99, KILN_FLOAT32), KILN_N_DTYPES);
  /* leaves */
  ck_assert_ptr_null(kiln_fvector(NULL, "x"));
  ck_assert_ptr_null(kiln_shared(NULL, "W", KILN_FLOAT64, 0, NULL, NULL));
  ck_assert_ptr_null(kiln_const(NULL, KILN_FLOAT64, 0, NULL, (double[]){1}));
  ck_assert_ptr_null(kiln_scalar(NULL, KILN_FLOAT64, 1.0));
  ck_assert_ptr_null(kiln_lit(NULL, 1.0));
  ck_assert_ptr_null(kiln_lit(NULL, 1));
  /* nodes */
  ck_assert_ptr_null(kiln_node_ctx(NULL));
  ck_assert_int_eq(kiln_node_dtype(NULL), KILN_N_DTYPES);
  ck_assert_int_eq(kiln_node_rank(NULL), -1);
  ck_assert_int_eq(kiln_node_dim(NULL, 0), -2);
  ck_assert_ptr_null(kiln_name(NULL, "a"));
  ck_assert_ptr_null(kiln_node_name(NULL));
  ck_assert_ptr_null(kiln_shared_value(NULL));
  double d[4];
  ck_assert_int_eq(kiln_shared_get(NULL, d, sizeof d), KILN_MISUSE);
  ck_assert_int_eq(kiln_shared_set(NULL, NULL), KILN_MISUSE);
  /* ops */
  ck_assert_ptr_null(kiln_add(NULL, NULL));
  ck_assert_ptr_null(kiln_sub(NULL, NULL));
  ck_assert_ptr_null(kiln_mul(NULL, NULL));
  ck_assert_ptr_null(kiln_div(NULL, NULL));
  ck_assert_ptr_null(kiln_pow(NULL, NULL));
  ck_assert_ptr_null(kiln_maximum(NULL, NULL));
  ck_assert_ptr_null(kiln_minimum(NULL, NULL));
  ck_assert_ptr_null(kiln_neg(NULL));
  ck_assert_ptr_null(kiln_sqr(NULL));
  ck_assert_ptr_null(kiln_sqrt(NULL));
  ck_assert_ptr_null(kiln_exp(NULL));
  ck_assert_ptr_null(kiln_log(NULL));
  ck_assert_ptr_null(kiln_abs(NULL));
  ck_assert_ptr_null(kiln_sum(NULL));
  ck_assert_ptr_null(kiln_mean(NULL));
  ck_assert_ptr_null(kiln_sum_axis(NULL, 0));
  ck_assert_ptr_null(kiln_mean_axis(NULL, 0));
  ck_assert_ptr_null(kiln_dot(NULL, NULL));
  kiln_node *g[1] = {(kiln_node *)buf};
  ck_assert_int_eq(kiln_grad(NULL, 1, g, g, 0), KILN_MISUSE);
  ck_assert_ptr_null(g[0]);
  /* functions */
  ck_assert_ptr_null(kiln_function_new(NULL, "f", 0, NULL, 0, NULL, 0, NULL));
  kiln_function_free(NULL);
  ck_assert_int_eq(kiln_call(NULL, NULL, NULL), KILN_MISUSE);
  const kiln_tensor *out[1] = {NULL};
  ck_assert_int_eq(kiln_call(NULL, IN_ARGS(NULL), out), KILN_MISUSE);
  ck_assert_ptr_null(out[0]);
  ck_assert_int_eq(kiln_function_n_inputs(NULL), -1);
  ck_assert_int_eq(kiln_function_n_outputs(NULL), -1);
  for (int st = 0; st < KILN_N_STAGES; st++)
    ck_assert_int_eq(kiln_function_dump(NULL, (kiln_stage)st, stdout), KILN_MISUSE);
}
END_TEST

START_TEST(null_arguments_with_valid_handles) {
  seed s;
  seed_build(&s);
  kiln_ctx *ctx = s.ctx;
  double d[4];
  EXPECT(ctx, kiln_shared_get(s.W, NULL, sizeof d), KILN_MISUSE);
  EXPECT(ctx, kiln_shared_get(s.W, d, 3), KILN_SHAPE);
  MSG_HAS(ctx, "'W'", "32");
  EXPECT(ctx, kiln_shared_set(s.W, NULL), KILN_MISUSE);
  /* a node that is not shared */
  ck_assert_ptr_null(kiln_shared_value(s.x));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  MSG_HAS(ctx, "'x'", "shared");
  EXPECT(ctx, kiln_shared_get(s.y, d, sizeof d), KILN_MISUSE);
  EXPECT(ctx, kiln_shared_set(s.x, s.xt), KILN_MISUSE);
  /* bad leaf arguments */
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_input(ctx, "r9", KILN_FLOAT64, KILN_MAX_RANK + 1, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_input(ctx, "bad", (kiln_dtype)42, 0, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_input(ctx, "neg", KILN_FLOAT64, 1, (int64_t[]){-5}));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_shared(ctx, "S", KILN_FLOAT64, 1, NULL, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_shared(ctx, "S", KILN_FLOAT64, 1, (int64_t[]){KILN_DYN}, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_const(ctx, KILN_FLOAT64, 1, (int64_t[]){2}, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  /* function_dump: bad stage, NULL stream */
  EXPECT(ctx, kiln_function_dump(s.f, KILN_N_STAGES, stdout), KILN_MISUSE);
  EXPECT(ctx, kiln_function_dump(s.f, (kiln_stage)-1, stdout), KILN_MISUSE);
  EXPECT(ctx, kiln_function_dump(s.f, KILN_STAGE_GRAPH, NULL), KILN_MISUSE);
  /* grad: bad wrt list */
  kiln_node *g[1];
  EXPECT(ctx, kiln_grad(s.y, 1, NULL, g, 0), KILN_MISUSE);
  EXPECT(ctx, kiln_grad(s.y, 1, &s.W, NULL, 0), KILN_MISUSE);
  kiln_node *nul = NULL;
  EXPECT(ctx, kiln_grad(s.y, 1, &nul, g, 0), KILN_MISUSE);
  /* the function still works */
  const kiln_tensor *out;
  ck_assert_int_eq(kiln_call(s.f, IN_ARGS(s.xt, s.tt), &out), KILN_OK);
  ck_assert(kiln_tensor_get(out, 0) == 0.8);
  seed_free(&s);
}
END_TEST

START_TEST(foreign_handles) {
  kiln_ctx *A = kiln_ctx_new(), *B = kiln_ctx_new();
  kiln_node *a = kiln_dvector(A, "a"), *b = kiln_dvector(B, "b");
  kiln_node *WA = kiln_shared(A, "WA", KILN_FLOAT64, 1, (int64_t[]){2}, NULL);
  ck_assert(a && b && WA);
  /* mixing contexts in a builder: NULL, KILN_MISUSE in the first context */
  ck_assert_ptr_null(kiln_add(a, b));
  ck_assert_int_eq(kiln_errcode(A), KILN_MISUSE);
  MSG_HAS(A, "context");
  ck_assert_int_eq(kiln_errcode(B), KILN_OK);
  kiln_clear_error(A);
  ck_assert_ptr_null(kiln_mul(b, a));
  ck_assert_int_eq(kiln_errcode(B), KILN_MISUSE);
  ck_assert_int_eq(kiln_errcode(A), KILN_OK);
  kiln_clear_error(B);
  ck_assert_ptr_null(kiln_dot(a, b));
  ck_assert_int_eq(kiln_errcode(A), KILN_MISUSE);
  kiln_clear_error(A);
  /* a node of A in a function of B: as input, output, update */
  kiln_node *bb = kiln_mul(b, b);
  EXPECT(B, kiln_function_new(B, "f", 1, &a, 1, &bb, 0, NULL) ? KILN_OK : kiln_errcode(B),
         KILN_MISUSE);
  kiln_node *aa = kiln_mul(a, a);
  EXPECT(B, kiln_function_new(B, "f", 1, &b, 1, &aa, 0, NULL) ? KILN_OK : kiln_errcode(B),
         KILN_MISUSE);
  kiln_update up = {WA, b};
  EXPECT(B, kiln_function_new(B, "f", 1, &b, 0, NULL, 1, &up) ? KILN_OK : kiln_errcode(B),
         KILN_MISUSE);
  kiln_node *WB = kiln_shared(B, "WB", KILN_FLOAT64, 1, (int64_t[]){2}, NULL);
  up = (kiln_update){WB, a};
  EXPECT(B, kiln_function_new(B, "f", 1, &b, 0, NULL, 1, &up) ? KILN_OK : kiln_errcode(B),
         KILN_MISUSE);
  ck_assert_int_eq(kiln_errcode(A), KILN_OK);
  /* grad with a wrt of another context */
  kiln_node *cost = kiln_sum(bb), *g[1];
  EXPECT(B, kiln_grad(cost, 1, &WA, g, 0), KILN_MISUSE);
  /* a tensor passed as a node, a node as a tensor */
  kiln_tensor *t = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){2}, (double[]){1, 2});
  ck_assert_ptr_null(kiln_add(a, (kiln_node *)(void *)t));
  ck_assert_int_eq(kiln_errcode(A), KILN_MISUSE);
  ck_assert_int_eq(kiln_node_rank((kiln_node *)(void *)t), -1);
  ck_assert_ptr_null(kiln_shared_value((kiln_node *)(void *)t));
  ck_assert_int_eq(kiln_tensor_rank((kiln_tensor *)(void *)a), -1);
  kiln_tensor_free((kiln_tensor *)(void *)a); /* refused: not a tensor */
  ck_assert_int_eq(kiln_node_rank(a), 1);
  ck_assert_int_eq(kiln_call((kiln_function *)(void *)t, NULL, NULL), KILN_MISUSE);
  ck_assert_int_eq(kiln_function_n_inputs((kiln_function *)(void *)a), -1);
  kiln_function_free((kiln_function *)(void *)a); /* refused */
  kiln_ctx_free((kiln_ctx *)(void *)t);           /* refused */
  ck_assert(kiln_tensor_get(t, 1) == 2.0);
  ck_assert_ptr_nonnull(kiln_errmsg((kiln_ctx *)(void *)t));
  /* A still works */
  kiln_function *f = kiln_function_new(A, "f", 1, &a, 1, &aa, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(A));
  const kiln_tensor *o;
  ck_assert_int_eq(kiln_call(f, IN_ARGS(t), &o), KILN_OK);
  ck_assert(kiln_tensor_get(o, 0) == 1.0 && kiln_tensor_get(o, 1) == 4.0);
  kiln_tensor_free(t);
  kiln_ctx_free(B);
  kiln_ctx_free(A);
}
END_TEST

START_TEST(borrowed_tensors_refused) {
  seed s;
  seed_build(&s);
  kiln_tensor *wv = (kiln_tensor *)kiln_shared_value(s.W);
  ck_assert_ptr_nonnull(wv);
  kiln_tensor_free(wv); /* refused */
  ck_assert(kiln_tensor_get(wv, 3) == 0.3);
  double w[4];
  w_bytes(s.W, w);
  ck_assert_mem_eq(w, W0, sizeof w);
  const kiln_tensor *out = NULL;
  ck_assert_int_eq(kiln_call(s.f, IN_ARGS(s.xt, s.tt), &out), KILN_OK);
  ck_assert(kiln_tensor_get(out, 0) == 0.8);
  kiln_tensor_free((kiln_tensor *)out); /* refused */
  ck_assert(kiln_tensor_get(out, 0) == 0.8);
  ck_assert_int_eq(kiln_tensor_rank(out), 0);
  w_bytes(s.W, w);
  ck_assert_mem_eq(w, W1, sizeof w);
  ck_assert_int_eq(kiln_call(s.f, IN_ARGS(s.xt, s.tt), &out), KILN_OK);
  ck_assert(kiln_tensor_get(out, 0) == 80.16000000000001);
  /* a borrowed tensor is a valid argument to kiln_shared_set and kiln_call */
  ck_assert_int_eq(kiln_shared_set(s.W, kiln_shared_value(s.W)), KILN_OK);
  seed_free(&s);
}
END_TEST

/* --------------------------------------------------------- builder chain */

START_TEST(builder_chain_keeps_first_error) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *a = kiln_input(ctx, "a", KILN_FLOAT64, 1, (int64_t[]){3});
  kiln_node *b = kiln_input(ctx, "b", KILN_FLOAT64, 1, (int64_t[]){4});
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){3}, NULL);
  kiln_node *bad = kiln_add(a, b);
  ck_assert_ptr_null(bad);
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "'a'", "'b'", "(3,)", "(4,)", THIS_FILE);
  char first[1024];
  snprintf(first, sizeof first, "%s", kiln_errmsg(ctx));
  /* every builder on the NULL result is NULL and leaves the message */
  kiln_node *c = kiln_mul(bad, a);
  kiln_node *d = kiln_sum(c);
  kiln_node *e = kiln_exp(kiln_sqr(kiln_sub(d, kiln_lit(ctx, 1.0))));
  kiln_node *chain[] = {c,
                        d,
                        e,
                        kiln_dot(bad, bad),
                        kiln_sum_axis(bad, 7),
                        kiln_mean_axis(bad, -9),
                        kiln_mean(bad),
                        kiln_neg(bad),
                        kiln_pow(a, bad),
                        kiln_maximum(bad, kiln_lit(ctx, 0)),
                        kiln_div(kiln_lit(ctx, 1), bad),
                        kiln_name(bad, "named")};
  for (size_t i = 0; i < sizeof chain / sizeof *chain; i++) {
    ck_assert_msg(chain[i] == NULL, "chained builder %zu is not NULL", i);
    ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
    ck_assert_str_eq(kiln_errmsg(ctx), first);
  }
  kiln_node *g[1];
  ck_assert_int_ne(kiln_grad(e, 1, &W, g, 0), KILN_OK);
  ck_assert_ptr_null(g[0]);
  ck_assert_str_eq(kiln_errmsg(ctx), first);
  /* checked once, at kiln_function_new: as an output, as an update value */
  kiln_node *ins[] = {a, b};
  ck_assert_ptr_null(kiln_function_new(ctx, "f", 2, ins, 1, &e, 0, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  ck_assert_str_eq(kiln_errmsg(ctx), first);
  kiln_update up = {W, kiln_add(W, c)};
  kiln_node *ok_out = kiln_mul(a, W);
  ck_assert_ptr_nonnull(ok_out); /* a builder that works does not clear the error */
  ck_assert_ptr_null(kiln_function_new(ctx, "f", 2, ins, 1, &ok_out, 1, &up));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  ck_assert_str_eq(kiln_errmsg(ctx), first);
  /* after clearing, a NULL output is a plain misuse */
  kiln_clear_error(ctx);
  ck_assert_int_eq(kiln_errcode(ctx), KILN_OK);
  ck_assert_str_eq(kiln_errmsg(ctx), "not an error");
  ck_assert_ptr_null(kiln_function_new(ctx, "f", 2, ins, 1, &e, 0, NULL));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  MSG_HAS(ctx, "output 0");
  /* and builders work again */
  kiln_clear_error(ctx);
  kiln_function *f = kiln_function_new(ctx, "f", 1, &a, 1, &ok_out, 0, NULL);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------ builder-level statuses */

START_TEST(builder_statuses) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *flag = kiln_input(ctx, "flag", KILN_BOOL, 1, NULL);
  ck_assert_ptr_null(kiln_neg(flag));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  MSG_HAS(ctx, "'flag'", "bool", THIS_FILE);
  kiln_clear_error(ctx);
  kiln_node *t3 = kiln_dtensor3(ctx, "t3"), *v = kiln_dvector(ctx, "v");
  ck_assert_ptr_null(kiln_dot(t3, v));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  MSG_HAS(ctx, "'t3'", "'v'");
  kiln_clear_error(ctx);
  kiln_node *m34 = kiln_input(ctx, "m34", KILN_FLOAT64, 2, (int64_t[]){3, 4});
  kiln_node *v5 = kiln_input(ctx, "v5", KILN_FLOAT64, 1, (int64_t[]){5});
  ck_assert_ptr_null(kiln_dot(m34, v5));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "'m34'", "'v5'", "4", "5");
  kiln_clear_error(ctx);
  ck_assert_ptr_null(kiln_sum_axis(v, 1));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  MSG_HAS(ctx, "'v'");
  kiln_clear_error(ctx);
  kiln_node *i8 = kiln_bvector(ctx, "i8");
  ck_assert_ptr_null(kiln_add(i8, kiln_lit(ctx, 300)));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  MSG_HAS(ctx, "300", "int8");
  kiln_clear_error(ctx);
  /* KILN_NOGRAD: a non-scalar cost, a disconnected wrt */
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){2}, NULL);
  kiln_node *U = kiln_shared(ctx, "U", KILN_FLOAT64, 1, (int64_t[]){2}, NULL);
  kiln_node *g[1];
  EXPECT(ctx, kiln_grad(kiln_mul(W, v), 1, &W, g, 0), KILN_NOGRAD);
  MSG_HAS(ctx, "scalar");
  EXPECT(ctx, kiln_grad(kiln_sum(kiln_mul(W, v)), 1, &U, g, 0), KILN_NOGRAD);
  MSG_HAS(ctx, "'U'");
  kiln_clear_error(ctx);
  ck_assert_int_eq(kiln_grad(kiln_sum(kiln_mul(W, v)), 1, &U, g, KILN_GRAD_DISCONNECTED_ZERO),
                   KILN_OK);
  ck_assert_ptr_nonnull(g[0]);
  /* KILN_TYPE from grad: an integer wrt */
  kiln_node *I = kiln_shared(ctx, "I", KILN_INT32, 0, NULL, NULL);
  EXPECT(ctx, kiln_grad(kiln_sum(kiln_mul(W, I)), 1, &I, g, 0), KILN_TYPE);
  MSG_HAS(ctx, "'I'");
  kiln_ctx_free(ctx);
}
END_TEST

/* KILN_ERROR: kiln_function_dump to a stream that cannot be written. */
START_TEST(dump_write_error) {
  seed s;
  seed_build(&s);
  FILE *ro = fopen(KILN_SOURCE_DIR "/tests/test_errors.c", "r");
  ck_assert_ptr_nonnull(ro);
  EXPECT(s.ctx, kiln_function_dump(s.f, KILN_STAGE_GRAPH, ro), KILN_ERROR);
  ck_assert_uint_gt(strlen(kiln_errmsg(s.ctx)), 0);
  fclose(ro);
  FILE *tmp = tmpfile();
  ck_assert_ptr_nonnull(tmp);
  ck_assert_int_eq(kiln_function_dump(s.f, KILN_STAGE_GRAPH, tmp), KILN_OK);
  ck_assert_int_gt(ftell(tmp), 0);
  fclose(tmp);
  seed_free(&s);
}
END_TEST

START_TEST(status_strings_and_version) {
  for (int a = 0; a < KILN_N_STATUS; a++) {
    const char *sa = kiln_status_str((kiln_status)a);
    ck_assert_ptr_nonnull(sa);
    ck_assert_uint_gt(strlen(sa), 0);
    for (int b = 0; b < a; b++)
      ck_assert_msg(strcmp(sa, kiln_status_str((kiln_status)b)) != 0,
                    "statuses %d and %d share the string \"%s\"", a, b, sa);
  }
  ck_assert_str_eq(kiln_status_str(KILN_OK), "ok");
  ck_assert_ptr_nonnull(kiln_status_str(KILN_N_STATUS));
  ck_assert_ptr_nonnull(kiln_status_str((kiln_status)-1));
  ck_assert_ptr_nonnull(kiln_version());
  ck_assert_str_eq(kiln_version(), KILN_VERSION);
  ck_assert_str_eq(KILN_VERSION, "0.1.0");
  ck_assert_int_eq(KILN_VERSION_NUMBER, 0 * 1000000 + 1 * 1000 + 0);
  kiln_ctx *ctx = kiln_ctx_new();
  ck_assert_int_eq(kiln_errcode(ctx), KILN_OK);
  ck_assert_str_eq(kiln_errmsg(ctx), "not an error");
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------- allocation failure loop */

/* Builds, compiles and calls the seed once, as examples/seed.c does, with
** x of xn ones: 4, or 1, which broadcasts against W (the same values) and
** makes the call compile the general step. Every failure must be clean:
** KILN_NOMEM (or NULL with KILN_NOMEM in the context), W untouched by a
** failed call. Returns the run's status. */
static kiln_status seed_once(int64_t xn) {
  kiln_ctx *ctx = kiln_ctx_new();
  if (!ctx) return KILN_NOMEM;
  kiln_status st = KILN_OK;
  kiln_tensor *xt = NULL, *tt = NULL;
  kiln_node *x = kiln_fvector(ctx, "x");
  kiln_node *target = kiln_fscalar(ctx, "target");
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){4}, W0);
  kiln_node *y = kiln_sum(kiln_mul(x, W));
  kiln_node *cost = kiln_sqr(kiln_sub(target, y));
  kiln_node *g[1] = {NULL};
  st = kiln_grad(cost, 1, &W, g, 0);
  if (st != KILN_OK) {
    /* a NULL cost (an earlier builder failed) is KILN_MISUSE */
    ck_assert_msg(st == KILN_NOMEM || (st == KILN_MISUSE && !cost), "grad: %s: %s",
                  kiln_status_str(st), kiln_errmsg(ctx));
    ck_assert_msg(kiln_errcode(ctx) == KILN_NOMEM, "grad: context holds %s: %s",
                  kiln_status_str(kiln_errcode(ctx)), kiln_errmsg(ctx));
    st = KILN_NOMEM;
    goto done;
  }
  ck_assert_ptr_nonnull(g[0]);
  kiln_update up = {W, kiln_sub(W, kiln_mul(kiln_lit(ctx, 0.1), g[0]))};
  kiln_node *ins[] = {x, target};
  kiln_function *f = kiln_function_new(ctx, "f", 2, ins, 1, &y, 1, &up);
  if (!f) {
    ck_assert_msg(kiln_errcode(ctx) == KILN_NOMEM, "function_new: %s: %s",
                  kiln_status_str(kiln_errcode(ctx)), kiln_errmsg(ctx));
    st = KILN_NOMEM;
    goto done;
  }
  float xv[] = {1, 1, 1, 1}, tv = 100;
  xt = kiln_tensor_new(KILN_FLOAT32, 1, (int64_t[]){xn}, xv);
  tt = kiln_tensor_new(KILN_FLOAT32, 0, NULL, &tv);
  if (!xt || !tt) {
    st = KILN_NOMEM;
    goto done;
  }
  const kiln_tensor *out = NULL;
  st = kiln_call(f, IN_ARGS(xt, tt), &out);
  double w[4];
  ck_assert_int_eq(kiln_shared_get(W, w, sizeof w), KILN_OK);
  if (st != KILN_OK) {
    ck_assert_msg(st == KILN_NOMEM, "call: %s: %s", kiln_status_str(st), kiln_errmsg(ctx));
    ck_assert_int_eq(kiln_errcode(ctx), KILN_NOMEM);
    ck_assert_msg(memcmp(w, W0, sizeof w) == 0, "W changed by a failed call");
    goto done;
  }
  ck_assert(kiln_tensor_get(out, 0) == 0.8);
  ck_assert_msg(memcmp(w, W1, sizeof w) == 0, "W after the step differs from numpy");
done:
  kiln_tensor_free(xt);
  kiln_tensor_free(tt);
  kiln_ctx_free(ctx);
  return st;
}

START_TEST(allocation_failure_loop) {
  long k, failed_runs = 0, tolerated = 0;
  int64_t xn = _i == 0 ? 4 : 1;
  for (k = 1; k < 100000; k++) {
    long n0 = kl_mem_count();
    kl_mem_fail_at(k);
    kiln_status st = seed_once(xn);
    long used = kl_mem_count() - n0;
    kl_mem_fail_at(0);
    bool hit = used >= k;
    if (!hit) {
      ck_assert_msg(st == KILN_OK, "run %ld hit no failure but ended in %s", k,
                    kiln_status_str(st));
      break;
    }
    if (st == KILN_OK)
      tolerated++; /* the failed allocation was optional; results were checked */
    else
      failed_runs++;
  }
  ck_assert_msg(k < 100000, "the loop did not end");
  ck_assert_int_gt(failed_runs, 10);
  fprintf(stderr,
          "allocation_failure_loop (x of size %lld): %ld allocations, %ld failed cleanly, %ld "
          "tolerated\n",
          (long long)xn, k - 1, failed_runs, tolerated);
}
END_TEST

static Suite *errors_suite(void) {
  Suite *s = suite_create("errors");
  TCase *tc = tcase_create("call");
  tcase_set_timeout(tc, 300);
  tcase_add_checked_fixture(tc, NULL, teardown);
  tcase_add_test(tc, call_wrong_length);
  tcase_add_test(tc, call_wrong_dtype_rank_null);
  tcase_add_test(tc, call_static_dim_and_update_shape);
  tcase_add_test(tc, call_out_of_memory);
  suite_add_tcase(s, tc);
  TCase *td = tcase_create("declare");
  tcase_set_timeout(td, 300);
  tcase_add_checked_fixture(td, NULL, teardown);
  tcase_add_test(td, update_type_mismatch);
  tcase_add_test(td, update_misuse);
  tcase_add_test(td, unlisted_input);
  tcase_add_test(td, builder_chain_keeps_first_error);
  tcase_add_test(td, builder_statuses);
  suite_add_tcase(s, td);
  TCase *th = tcase_create("handles");
  tcase_set_timeout(th, 300);
  tcase_add_checked_fixture(th, NULL, teardown);
  tcase_add_test(th, null_handles);
  tcase_add_test(th, null_arguments_with_valid_handles);
  tcase_add_test(th, foreign_handles);
  tcase_add_test(th, borrowed_tensors_refused);
  tcase_add_test(th, dump_write_error);
  tcase_add_test(th, status_strings_and_version);
  suite_add_tcase(s, th);
  TCase *tm = tcase_create("nomem");
  tcase_set_timeout(tm, 600);
  tcase_add_checked_fixture(tm, NULL, teardown);
  tcase_add_loop_test(tm, allocation_failure_loop, 0, 2);
  suite_add_tcase(s, tm);
  return s;
}

int main(void) { return kt_run(errors_suite()); }
