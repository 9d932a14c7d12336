/*
** test_givens.c -- kiln_options.givens (Theano's givens): values worked out
** by hand, the update rule for a replaced shared variable, type and shape
** errors naming both nodes, the compile cache, allocation failures, and the
** size of version 0.1.0's kiln_options still accepted.
*/
#include "runtime/rt.h"
#include "tests/testutil.h"

#include <check.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

static kiln_options opts(int n, const kiln_given *g) {
  return (kiln_options){.size = sizeof(kiln_options), .n_givens = n, .givens = g};
}

static kiln_tensor *vec(int n, const double *v) {
  return kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){n}, v);
}

static void msg_has(kiln_ctx *ctx, const char *a, const char *b, const char *c) {
  const char *m = kiln_errmsg(ctx);
  ck_assert_msg(strstr(m, a) && strstr(m, b) && strstr(m, c), "message lacks '%s'/'%s'/'%s': %s", a,
                b, c, m);
}

/* The minibatch idiom: a shared variable of static shape (3,) replaced by an
** input of dynamic shape; the consumers become dynamic (sizes 3 and 5). */
START_TEST(shared_replaced_by_input) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *D = kiln_shared(ctx, "D", KILN_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3});
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *y = kiln_sum(kiln_mul(D, D));
  kiln_options o = opts(1, &(kiln_given){D, x});
  kiln_function *f = kiln_function_new_opts(ctx, "f", 1, &x, 1, &y, 0, NULL, &o);
  kiln_function *plain = kiln_function_new(ctx, "plain", 0, NULL, 1, &y, 0, NULL);
  ck_assert_msg(f && plain, "%s", kiln_errmsg(ctx));
  const kiln_tensor *r;
  kiln_tensor *v = vec(3, (double[]){0.5, -2, 4});
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&v, &r), KILN_OK);
  ck_assert(kiln_tensor_get(r, 0) == 0.25 + 4 + 16);
  kiln_tensor_free(v);
  v = vec(5, (double[]){1, 1, 1, 1, 3});
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&v, &r), KILN_OK);
  ck_assert(kiln_tensor_get(r, 0) == 13);
  ck_assert_int_eq(kiln_call(plain, NULL, &r), KILN_OK); /* the graph itself is untouched */
  ck_assert(kiln_tensor_get(r, 0) == 14);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* An input replaced by an expression of other inputs: y = 2a + 1 with
** a := b * c; a stays an argument of kiln_call, its value unused. */
START_TEST(input_replaced_by_expression) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *a = kiln_dvector(ctx, "a"), *b = kiln_dvector(ctx, "b"), *c = kiln_dscalar(ctx, "c");
  kiln_node *y = kiln_add(kiln_mul(a, kiln_lit(ctx, 2.0)), kiln_lit(ctx, 1.0));
  kiln_options o = opts(1, &(kiln_given){a, kiln_mul(b, c)});
  kiln_function *f =
      kiln_function_new_opts(ctx, "f", 3, (kiln_node *[]){a, b, c}, 1, &y, 0, NULL, &o);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *v[3] = {vec(2, (double[]){100, 100}), vec(2, (double[]){1.5, -3}),
                       kiln_tensor_new(KILN_FLOAT64, 0, NULL, (double[]){4})};
  const kiln_tensor *r;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)v, &r), KILN_OK);
  ck_assert(kiln_tensor_get(r, 0) == 13 && kiln_tensor_get(r, 1) == -23);
  for (int k = 0; k < 3; k++)
    kiln_tensor_free(v[k]);
  kiln_ctx_free(ctx);
}
END_TEST

/* A replaced shared variable that is also updated: the function reads the
** replacement, the update still writes the variable (Theano's rule):
** W <- W + 1 with W := x writes x + 1 into W. */
START_TEST(updated_shared_replaced) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){2}, (double[]){10, 20});
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *y = kiln_sum(W);
  kiln_update u = {W, kiln_add(W, kiln_lit(ctx, 1.0))};
  kiln_options o = opts(1, &(kiln_given){W, x});
  kiln_function *f = kiln_function_new_opts(ctx, "f", 1, &x, 1, &y, 1, &u, &o);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *v = vec(2, (double[]){1, 2});
  const kiln_tensor *r;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&v, &r), KILN_OK);
  ck_assert(kiln_tensor_get(r, 0) == 3);
  double w[2];
  ck_assert_int_eq(kiln_shared_get(W, w, sizeof w), KILN_OK);
  ck_assert(w[0] == 2 && w[1] == 3);
  /* a size the variable cannot take: a shape error at call time, W kept */
  kiln_tensor_free(v);
  v = vec(3, (double[]){1, 2, 3});
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&v, &r), KILN_SHAPE);
  ck_assert_int_eq(kiln_shared_get(W, w, sizeof w), KILN_OK);
  ck_assert(w[0] == 2 && w[1] == 3);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* Simultaneous substitution: with a := b and b := a the two swap. */
START_TEST(simultaneous) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *a = kiln_dscalar(ctx, "a"), *b = kiln_dscalar(ctx, "b");
  kiln_node *y = kiln_sub(a, b);
  kiln_given g[2] = {{a, b}, {b, a}};
  kiln_options o = opts(2, g);
  kiln_function *f = kiln_function_new_opts(ctx, "f", 2, (kiln_node *[]){a, b}, 1, &y, 0, NULL, &o);
  ck_assert_msg(f != NULL, "%s", kiln_errmsg(ctx));
  kiln_tensor *v[2] = {kiln_tensor_new(KILN_FLOAT64, 0, NULL, (double[]){5}),
                       kiln_tensor_new(KILN_FLOAT64, 0, NULL, (double[]){1})};
  const kiln_tensor *r;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)v, &r), KILN_OK);
  ck_assert(kiln_tensor_get(r, 0) == -4);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* Two functions of the same graph with different givens compute their own
** values: the compile cache keys on the graph after substitution. */
START_TEST(cache_separates_givens) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *k = kiln_dscalar(ctx, "k");
  kiln_node *y = kiln_mul(x, k);
  kiln_node *two = kiln_scalar(ctx, KILN_FLOAT64, 2.0),
            *three = kiln_scalar(ctx, KILN_FLOAT64, 3.0);
  kiln_options o2 = opts(1, &(kiln_given){k, two}), o3 = opts(1, &(kiln_given){k, three});
  kiln_function *f2 = kiln_function_new_opts(ctx, "f2", 1, &x, 1, &y, 0, NULL, &o2);
  kiln_function *f3 = kiln_function_new_opts(ctx, "f3", 1, &x, 1, &y, 0, NULL, &o3);
  kiln_function *g2 = kiln_function_new_opts(ctx, "g2", 1, &x, 1, &y, 0, NULL, &o2);
  ck_assert_msg(f2 && f3 && g2, "%s", kiln_errmsg(ctx));
  kiln_tensor *v = vec(2, (double[]){1, -4});
  const kiln_tensor *r;
  ck_assert_int_eq(kiln_call(f2, (const kiln_tensor *const *)&v, &r), KILN_OK);
  ck_assert(kiln_tensor_get(r, 0) == 2 && kiln_tensor_get(r, 1) == -8);
  ck_assert_int_eq(kiln_call(f3, (const kiln_tensor *const *)&v, &r), KILN_OK);
  ck_assert(kiln_tensor_get(r, 0) == 3 && kiln_tensor_get(r, 1) == -12);
  ck_assert_int_eq(kiln_call(g2, (const kiln_tensor *const *)&v, &r), KILN_OK);
  ck_assert(kiln_tensor_get(r, 0) == 2 && kiln_tensor_get(r, 1) == -8);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(errors) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){3}, NULL);
  int line_w = __LINE__ - 1;
  kiln_node *xf = kiln_fvector(ctx, "xf");
  int line_xf = __LINE__ - 1;
  kiln_node *xm = kiln_dmatrix(ctx, "xm");
  kiln_node *x4 = kiln_input(ctx, "x4", KILN_FLOAT64, 1, (int64_t[]){4});
  kiln_node *x = kiln_dvector(ctx, "x"), *hidden = kiln_dvector(ctx, "hidden");
  kiln_node *y = kiln_sum(W);
  char lw[64], lxf[64];
  snprintf(lw, sizeof lw, "test_givens.c:%d", line_w);
  snprintf(lxf, sizeof lxf, "test_givens.c:%d", line_xf);
  kiln_options o = opts(1, &(kiln_given){W, xf}); /* dtype */
  ck_assert_ptr_null(kiln_function_new_opts(ctx, "f", 1, &xf, 1, &y, 0, NULL, &o));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  msg_has(ctx, "'W'", "'xf'", lw);
  msg_has(ctx, lxf, "float32", "float64");
  o = opts(1, &(kiln_given){W, xm}); /* rank */
  ck_assert_ptr_null(kiln_function_new_opts(ctx, "f", 1, &xm, 1, &y, 0, NULL, &o));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_TYPE);
  msg_has(ctx, "'W'", "'xm'", "given 0");
  o = opts(1, &(kiln_given){W, x4}); /* static sizes 3 and 4 */
  ck_assert_ptr_null(kiln_function_new_opts(ctx, "f", 1, &x4, 1, &y, 0, NULL, &o));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_SHAPE);
  msg_has(ctx, "'W'", "'x4'", "(4,)");
  kiln_given twice[2] = {{W, x}, {W, x}};
  o = opts(2, twice);
  ck_assert_ptr_null(kiln_function_new_opts(ctx, "f", 1, &x, 1, &y, 0, NULL, &o));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  msg_has(ctx, "'W'", "twice", "givens 0 and 1");
  o = opts(1, &(kiln_given){W, NULL});
  ck_assert_ptr_null(kiln_function_new_opts(ctx, "f", 1, &x, 1, &y, 0, NULL, &o));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  o = opts(1, NULL);
  ck_assert_ptr_null(kiln_function_new_opts(ctx, "f", 1, &x, 1, &y, 0, NULL, &o));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_ctx *other = kiln_ctx_new();
  kiln_node *ox = kiln_dvector(other, "ox");
  o = opts(1, &(kiln_given){W, ox});
  ck_assert_ptr_null(kiln_function_new_opts(ctx, "f", 1, &x, 1, &y, 0, NULL, &o));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_ctx_free(other);
  /* the replacement uses an input the function does not list */
  o = opts(1, &(kiln_given){W, hidden});
  ck_assert_ptr_null(kiln_function_new_opts(ctx, "f", 1, &x, 1, &y, 0, NULL, &o));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  msg_has(ctx, "'hidden'", "not among the inputs", "test_givens.c");
  /* version 0.1.0's struct size is accepted, any other is not */
  o = (kiln_options){.size = offsetof(kiln_options, no_stabilize), .no_optimize = 1};
  ck_assert_ptr_nonnull(kiln_function_new_opts(ctx, "old", 0, NULL, 1, &y, 0, NULL, &o));
  o.size = sizeof o + 8;
  ck_assert_ptr_null(kiln_function_new_opts(ctx, "f", 0, NULL, 1, &y, 0, NULL, &o));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  kiln_ctx_free(ctx);
}
END_TEST

/* Failing the k-th allocation of a compile with givens ends in KILN_NOMEM
** and leaks nothing (the ASan build checks), until one succeeds. */
START_TEST(allocation_failures) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3});
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *y = kiln_sum(kiln_mul(W, W));
  kiln_update u = {W, kiln_add(W, kiln_lit(ctx, 1.0))};
  kiln_options o = opts(1, &(kiln_given){W, kiln_mul(x, kiln_lit(ctx, 2.0))});
  int failures = 0;
  kiln_function *f = NULL;
  for (long k = 1; k < 100000 && !f; k++) {
    kl_mem_fail_at(k);
    f = kiln_function_new_opts(ctx, "f", 1, &x, 1, &y, 1, &u, &o);
    kl_mem_fail_at(0);
    if (!f) {
      failures++;
      ck_assert_msg(kiln_errcode(ctx) == KILN_NOMEM, "k=%ld: %s", k, kiln_errmsg(ctx));
    }
  }
  ck_assert_ptr_nonnull(f);
  ck_assert_int_gt(failures, 3);
  kiln_tensor *v = vec(3, (double[]){1, 2, 3});
  const kiln_tensor *r;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&v, &r), KILN_OK);
  ck_assert(kiln_tensor_get(r, 0) == 4 + 16 + 36);
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("givens");
  TCase *tc = tcase_create("givens");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, shared_replaced_by_input);
  tcase_add_test(tc, input_replaced_by_expression);
  tcase_add_test(tc, updated_shared_replaced);
  tcase_add_test(tc, simultaneous);
  tcase_add_test(tc, cache_separates_givens);
  tcase_add_test(tc, errors);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
