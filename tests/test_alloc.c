/*
** test_alloc.c -- a compiled function allocates nothing per call once it
** has seen its shapes: Kiln's allocation counter (every allocation of the
** library goes through runtime/mem.c) does not move across many calls,
** also when its large kernels run on a context's thread pool.
*/
#include "runtime/pool.h"
#include "runtime/rt.h"
#include "tests/testutil.h"

/* After a first call, `calls` more calls with the same inputs allocate nothing. */
static void calls_allocate_nothing(kiln_function *f, kiln_tensor *const *in, int calls) {
  const kiln_tensor *out;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)in, &out), KILN_OK);
  long before = kl_mem_count();
  for (int i = 0; i < calls; i++)
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)in, &out), KILN_OK);
  ck_assert_int_eq(kl_mem_count() - before, 0);
}

START_TEST(seed_calls_allocate_nothing) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_fvector(ctx, "x"), *t = kiln_fscalar(ctx, "t");
  kiln_node *W =
      kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){4}, (double[]){0.1, 0.25, 0.15, 0.3});
  kiln_node *y = kiln_sum(kiln_mul(x, W)), *g;
  ck_assert_int_eq(kiln_grad(kiln_sqr(kiln_sub(t, y)), 1, &W, &g, 0), KILN_OK);
  kiln_update u = {W, kiln_sub(W, kiln_mul(kiln_lit(ctx, 0.1), g))};
  kiln_function *f = kiln_function_new(ctx, "f", 2, (kiln_node *[]){x, t}, 1, &y, 1, &u);
  ck_assert_ptr_nonnull(f);
  float xv[4] = {1, 1, 1, 1}, tv = 100;
  kiln_tensor *in[2] = {kiln_tensor_new(KILN_FLOAT32, 1, (int64_t[]){4}, xv),
                        kiln_tensor_new(KILN_FLOAT32, 0, NULL, &tv)};
  calls_allocate_nothing(f, in, 1000);
  kiln_tensor_free(in[0]);
  kiln_tensor_free(in[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* Shapes that shrink and come back never allocate again; a larger shape
** grows the workspace once. */
START_TEST(changing_shapes_allocate_only_to_grow) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *a = kiln_dvector(ctx, "a"), *b = kiln_dvector(ctx, "b");
  kiln_node *outs[2] = {kiln_exp(kiln_mul(a, b)), kiln_sum(kiln_add(a, b))};
  kiln_function *f = kiln_function_new(ctx, "f", 2, (kiln_node *[]){a, b}, 2, outs, 0, NULL);
  ck_assert_ptr_nonnull(f);
  kiln_tensor *big[2], *small[2];
  for (int k = 0; k < 2; k++) {
    big[k] = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){1000}, NULL);
    small[k] = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){10}, NULL);
  }
  const kiln_tensor *o[2];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)big, o), KILN_OK);
  long before = kl_mem_count();
  for (int i = 0; i < 100; i++) {
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)small, o), KILN_OK);
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)big, o), KILN_OK);
  }
  ck_assert_int_eq(kl_mem_count() - before, 0);
  for (int k = 0; k < 2; k++) {
    kiln_tensor_free(big[k]);
    kiln_tensor_free(small[k]);
  }
  kiln_ctx_free(ctx);
}
END_TEST

/* The seed step at a size whose sum and update run on the pool (2 and 3
** threads): the pool's jobs allocate nothing either. */
START_TEST(threaded_calls_allocate_nothing) {
  for (int th = 2; th <= 3; th++) {
    kiln_ctx *ctx = kiln_ctx_new();
    ck_assert_int_eq(kiln_ctx_set_threads(ctx, th), KILN_OK);
    int64_t n = 4 * KL_SUM_CHUNK + 3;
    kiln_node *x = kiln_fvector(ctx, "x"), *t = kiln_fscalar(ctx, "t");
    kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT32, 1, &n, NULL);
    kiln_node *y = kiln_sum(kiln_mul(x, W)), *g;
    ck_assert_int_eq(kiln_grad(kiln_sqr(kiln_sub(t, y)), 1, &W, &g, 0), KILN_OK);
    kiln_update u = {W, kiln_sub(W, kiln_mul(kiln_lit(ctx, 1e-6), g))};
    kiln_function *f = kiln_function_new(ctx, "f", 2, (kiln_node *[]){x, t}, 1, &y, 1, &u);
    ck_assert_ptr_nonnull(f);
    float tv = 100;
    kiln_tensor *in[2] = {kiln_tensor_new(KILN_FLOAT32, 1, &n, NULL),
                          kiln_tensor_new(KILN_FLOAT32, 0, NULL, &tv)};
    float *xv = kiln_tensor_data(in[0]);
    for (int64_t i = 0; i < n; i++)
      xv[i] = 1.0f / (float)(1 + i % 7);
    calls_allocate_nothing(f, in, 300);
    kiln_tensor_free(in[0]);
    kiln_tensor_free(in[1]);
    kiln_ctx_free(ctx);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("alloc");
  TCase *tc = tcase_create("alloc");
  tcase_add_test(tc, seed_calls_allocate_nothing);
  tcase_add_test(tc, changing_shapes_allocate_only_to_grow);
  tcase_add_test(tc, threaded_calls_allocate_nothing);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
