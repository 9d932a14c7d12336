/*
** test_stab.c -- the stability rewrites (compiler/passes/stabilize.c) and
** the binary cross-entropy builders.
**
** Each rule: the dump before ("graph") and after the first stabilize pass
** shows the pattern replaced; the rewritten function agrees with the
** reference evaluator run on the graph as built, on moderate inputs where
** the textbook form is accurate. Then the stability cases, with
** values worked out by hand (Python's math module, numpy's formulas): logits
** scaled by 1e3, a -inf logit, an all -inf row (NaN: the documented
** policy). Every case says which mode it tests: optimized (the pass runs),
** no_optimize (the graph as written), or both; gradients are stable in
** both modes because kiln_grad differentiates the stable form.
*/
#define _POSIX_C_SOURCE 200809L

#include "compiler/refeval.h"
#include "tests/testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const kiln_options OPT = {.size = sizeof(kiln_options)};
static const kiln_options NOOPT = {.size = sizeof(kiln_options), .no_optimize = 1};
static const kiln_options NOSTAB = {.size = sizeof(kiln_options), .no_stabilize = 1};

static kiln_function *compile(kiln_ctx *ctx, int n_in, kiln_node *const *in, int n_out,
                              kiln_node *const *out, const kiln_options *o) {
  kiln_function *f = kiln_function_new_opts(ctx, "f", n_in, in, n_out, out, 0, NULL, o);
  ck_assert_msg(f != NULL, "compiling failed: %s", kiln_errmsg(ctx));
  return f;
}

/* The first "pass.NN.stabilize" stage, or NULL. */
static const char *stab_stage(kiln_function *f) {
  for (int i = 0; i < kiln_function_n_dumps(f); i++) {
    const char *nm = kiln_function_dump_name(f, i);
    size_t n = strlen(nm);
    if (strncmp(nm, "pass.", 5) == 0 && n > 10 && strcmp(nm + n - 10, ".stabilize") == 0) return nm;
  }
  return NULL;
}

static int count(const char *text, const char *sub) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, sub)); p += strlen(sub))
    n++;
  return n;
}

static kiln_tensor *vec(int n, const double *v) {
  return kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){n}, v);
}
static kiln_tensor *mat(int r, int c, const double *v) {
  return kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){r, c}, v);
}

/* |got - want| within a few ulps (any NaN equals NaN, infinities exactly). */
static void near(double got, double want, const char *what, int i) {
  if (isnan(want)) {
    ck_assert_msg(isnan(got), "%s[%d]: got %.17g, want nan", what, i, got);
    return;
  }
  if (isinf(want)) {
    ck_assert_msg(got == want, "%s[%d]: got %.17g, want %g", what, i, got, want);
    return;
  }
  ck_assert_msg(fabs(got - want) <= 1e-300 + 4e-15 * fabs(want) + 1e-15,
                "%s[%d]: got %.17g, want %.17g", what, i, got, want);
}

/* ------------------------------------------------------------ the rules */

typedef struct rule_case {
  const char *name;
  const char *tag;   /* part of the rule's description, recorded on the nodes it makes (NULL:
                        the rule makes none, log(exp(x)) -> x) */
  const char *op;    /* a line the rule makes disappear or appear */
  int before, after; /* how many such lines in "graph" and after stabilize */
  const char *op2;   /* a second check, or NULL */
  int before2, after2;
} rule_case;

enum {
  C_LOG_SOFTMAX,
  C_LOG_SIG,
  C_LOG_1MSIG,
  C_LOG_1PEXP,
  C_LOG_EXP1P,
  C_LOG1P_EXP,
  C_NAIVE_SM,
  C_LOG_NAIVE_SM,
  C_BCE_SIG,
  N_CASES
};

static const rule_case CASES[N_CASES] = {
    {"log(softmax(x))", NULL, "= log(", 2, 1, "= exp(", 2, 1},
    {"log(sigmoid(x))", "log(sigmoid(x))", "= sigmoid(", 1, 0, "= softplus(", 0, 1},
    {"log(1 - sigmoid(x))", "log(1 - sigmoid(x))", "= sigmoid(", 1, 0, "= softplus(", 0, 1},
    {"log(1 + exp(x))", "softplus(x)", "= exp(", 1, 0, "= softplus(", 0, 1},
    {"log(exp(x) + 1)", "softplus(x)", "= exp(", 1, 0, "= softplus(", 0, 1},
    {"log1p(exp(x))", "softplus(x)", "= exp(", 1, 0, "= softplus(", 0, 1},
    {"exp(x) / sum(exp(x))", "exp(x) / sum(exp(x))", "= div(", 1, 0, "= max{", 0, 1},
    {"log(exp(x) / sum(exp(x)))", "exp(x) / sum(exp(x))", "= div(", 1, 0, "= max{", 0, 1},
    {"binary_crossentropy(sigmoid(z), t)", "sigmoid(x)", "= log(", 2, 0, "= softplus(", 0, 2},
};

static kiln_node *build_case(kiln_ctx *ctx, int c, kiln_node *x, kiln_node *t) {
  kiln_node *one = kiln_lit(ctx, 1.0);
  switch (c) {
  case C_LOG_SOFTMAX: return kiln_log(kiln_softmax(x));
  case C_LOG_SIG: return kiln_log(kiln_sigmoid(x));
  case C_LOG_1MSIG: return kiln_log(kiln_sub(one, kiln_sigmoid(x)));
  case C_LOG_1PEXP: return kiln_log(kiln_add(one, kiln_exp(x)));
  case C_LOG_EXP1P: return kiln_log(kiln_add(kiln_exp(x), one));
  case C_LOG1P_EXP: return kiln_log1p(kiln_exp(x));
  case C_NAIVE_SM: return kiln_div(kiln_exp(x), kiln_sum(kiln_exp(x)));
  case C_LOG_NAIVE_SM: {
    kiln_node *e = kiln_exp(x);
    return kiln_log(kiln_div(e, kiln_sum_axis(e, -1)));
  }
  case C_BCE_SIG: return kiln_binary_crossentropy(kiln_sigmoid(x), t);
  }
  return NULL;
}

static const double XS[6] = {-3.0, -0.5, 0.0, 0.7, 2.5, 4.0};
static const double TS[6] = {0.0, 1.0, 0.3, 1.0, 0.0, 0.8};

/* Optimized: the dump before and after the stabilize pass. */
START_TEST(rule_dumps) {
  const rule_case *rc = &CASES[_i];
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *t = kiln_dvector(ctx, "t");
  kiln_node *y = build_case(ctx, _i, x, t);
  kiln_function *f = compile(ctx, 2, (kiln_node *[]){x, t}, 1, &y, &OPT);
  char *before = kt_dump(f, "graph");
  const char *st = stab_stage(f);
  ck_assert_msg(st != NULL, "%s: the stabilize pass changed nothing", rc->name);
  char *after = kt_dump(f, st);
  ck_assert_msg(count(before, rc->op) == rc->before && count(after, rc->op) == rc->after,
                "%s: '%s' lines %d -> %d, want %d -> %d\n%s---\n%s", rc->name, rc->op,
                count(before, rc->op), count(after, rc->op), rc->before, rc->after, before, after);
  ck_assert_msg(count(before, rc->op2) == rc->before2 && count(after, rc->op2) == rc->after2,
                "%s: '%s' lines %d -> %d, want %d -> %d\n%s---\n%s", rc->name, rc->op2,
                count(before, rc->op2), count(after, rc->op2), rc->before2, rc->after2, before,
                after);
  ck_assert_msg((!rc->tag || strstr(after, rc->tag)) && !strstr(before, "[stabilize"),
                "%s: the rule '%s' is not recorded\n%s", rc->name, rc->tag, after);
  free(before);
  free(after);
  /* with no_stabilize the rest of the optimizer runs, this pass does not */
  kiln_function *g = compile(ctx, 2, (kiln_node *[]){x, t}, 1, &y, &NOSTAB);
  ck_assert_ptr_null(stab_stage(g));
  kiln_ctx_free(ctx);
}
END_TEST

/* Optimized, on moderate inputs: the rewritten graph computes what the
** reference evaluator computes from the graph as built (to a few ulps: the
** stable form rounds differently). */
START_TEST(rule_values) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *t = kiln_dvector(ctx, "t");
  kiln_node *y = build_case(ctx, _i, x, t);
  kiln_node *in[2] = {x, t};
  kiln_function *f = compile(ctx, 2, in, 1, &y, &OPT);
  kiln_tensor *v[2] = {vec(6, XS), vec(6, TS)}, *want;
  const kiln_tensor *got;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)v, &got), KILN_OK);
  ck_assert_int_eq(kl_ref_run(ctx, 2, in, (const kiln_tensor *const *)v, 1, &y, &want), KILN_OK);
  ck_assert_int_eq(kiln_tensor_size(got), kiln_tensor_size(want));
  for (int i = 0; i < kiln_tensor_size(got); i++)
    near(kiln_tensor_get(got, i), kiln_tensor_get(want, i), CASES[_i].name, i);
  kiln_tensor_free(want);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------ stability */

/* Runs cost and its gradient wrt x in mode o; returns copies in out[0..1]. */
static void cost_and_grad(kiln_ctx *ctx, int n_in, kiln_node *const *in, kiln_node *x,
                          kiln_node *cost, const kiln_options *o, kiln_tensor *const *vals,
                          double *out_cost, double *out_grad, int n_grad) {
  kiln_node *g;
  ck_assert_int_eq(kiln_grad(cost, 1, &x, &g, 0), KILN_OK);
  kiln_function *f = compile(ctx, n_in, in, 2, (kiln_node *[]){cost, g}, o);
  const kiln_tensor *r[2];
  ck_assert_msg(kiln_call(f, (const kiln_tensor *const *)vals, r) == KILN_OK, "%s",
                kiln_errmsg(ctx));
  *out_cost = kiln_tensor_get(r[0], 0);
  ck_assert_int_eq(kiln_tensor_size(r[1]), n_grad);
  for (int i = 0; i < n_grad; i++)
    out_grad[i] = kiln_tensor_get(r[1], i);
  kiln_function_free(f);
}

/* log(softmax(1e3 x)) written with the builders and crossentropy written by
** hand: loss mean(-sum(t * log(softmax(1000 x)))). Rows [1 2 3] and
** [-4 .5 9], targets 0 and 1: losses 2000 and 8500; gradient
** 1000 (softmax - t) / 2 with softmax one-hot at the largest logit. */
START_TEST(huge_logits_log_softmax) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dmatrix(ctx, "x"), *t = kiln_dmatrix(ctx, "t");
  kiln_node *z = kiln_mul(x, kiln_lit(ctx, 1e3));
  kiln_node *loss = kiln_mean(kiln_neg(kiln_sum_axis(kiln_mul(t, kiln_log(kiln_softmax(z))), -1)));
  kiln_tensor *v[2] = {mat(2, 3, (double[]){1, 2, 3, -4, 0.5, 9}),
                       mat(2, 3, (double[]){1, 0, 0, 0, 1, 0})};
  const double want_g[6] = {-500, 0, 500, 0, -500, 500};
  double c, g[6];
  /* optimized: finite loss and gradient, the exact values */
  cost_and_grad(ctx, 2, (kiln_node *[]){x, t}, x, loss, &OPT, v, &c, g, 6);
  near(c, 5250.0, "loss (optimized)", 0);
  for (int i = 0; i < 6; i++)
    near(g[i], want_g[i], "gradient (optimized)", i);
  /* no_optimize: the loss as written is 0 * log(0) = NaN, the gradient,
  ** built from the stable form by kiln_grad, is still exact */
  cost_and_grad(ctx, 2, (kiln_node *[]){x, t}, x, loss, &NOOPT, v, &c, g, 6);
  ck_assert_msg(isnan(c), "no_optimize computes log(softmax) as written: %g", c);
  for (int i = 0; i < 6; i++)
    near(g[i], want_g[i], "gradient (no_optimize)", i);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* The naive softmax written by hand, -sum(t * log(exp(z) / sum(exp(z)))),
** z = 1000 x, x = [1 2 3], t = [1 0 0]: loss 2000, gradient
** 1000 (softmax - t) = [-1000 0 1000]. Optimized (the loss) and both modes
** (the gradient). */
START_TEST(huge_logits_naive_softmax) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *t = kiln_dvector(ctx, "t");
  kiln_node *e = kiln_exp(kiln_mul(x, kiln_lit(ctx, 1e3)));
  kiln_node *loss = kiln_neg(kiln_sum(kiln_mul(t, kiln_log(kiln_div(e, kiln_sum(e))))));
  kiln_tensor *v[2] = {vec(3, (double[]){1, 2, 3}), vec(3, (double[]){1, 0, 0})};
  const double want_g[3] = {-1000, 0, 1000};
  double c, g[3];
  cost_and_grad(ctx, 2, (kiln_node *[]){x, t}, x, loss, &OPT, v, &c, g, 3);
  near(c, 2000.0, "loss (optimized)", 0);
  for (int i = 0; i < 3; i++)
    near(g[i], want_g[i], "gradient (optimized)", i);
  cost_and_grad(ctx, 2, (kiln_node *[]){x, t}, x, loss, &NOOPT, v, &c, g, 3);
  ck_assert(!isfinite(c)); /* inf / inf as written */
  for (int i = 0; i < 3; i++)
    near(g[i], want_g[i], "gradient (no_optimize)", i);
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
}
END_TEST

/* crossentropy (the builder, stable in every mode) with a -inf logit and an
** all -inf row. Row [0 -inf 1], target 0: loss 1 + log1p(e^-1), gradient
** softmax - t = [e^-1/(1+e^-1) - 1, 0, 1/(1+e^-1)]. Row [-inf -inf -inf]:
** NaN loss and NaN gradient (the documented policy: no distribution). */
START_TEST(inf_logits_both_modes) {
  const kiln_options *modes[2] = {&OPT, &NOOPT};
  for (int m = 0; m < 2; m++) {
    kiln_ctx *ctx = kiln_ctx_new();
    kiln_node *z = kiln_dmatrix(ctx, "z"), *t = kiln_dmatrix(ctx, "t");
    kiln_node *per_row = kiln_crossentropy(z, t), *cost = kiln_sum(per_row);
    kiln_node *in[2] = {z, t};
    kiln_tensor *v[2] = {mat(1, 3, (double[]){0, -INFINITY, 1}), mat(1, 3, (double[]){1, 0, 0})};
    double c, g[3];
    cost_and_grad(ctx, 2, in, z, cost, modes[m], v, &c, g, 3);
    near(c, 1.3132616875182228, m ? "loss (no_optimize)" : "loss (optimized)", 0);
    near(g[0], 0.2689414213699951 - 1.0, "gradient", 0);
    ck_assert(g[1] == 0.0);
    near(g[2], 0.7310585786300049, "gradient", 2);
    kiln_tensor_free(v[0]);
    v[0] = mat(1, 3, (double[]){-INFINITY, -INFINITY, -INFINITY});
    cost_and_grad(ctx, 2, in, z, cost, modes[m], v, &c, g, 3);
    ck_assert_msg(isnan(c), "all -inf row: loss %g, want nan", c);
    for (int i = 0; i < 3; i++)
      ck_assert_msg(isnan(g[i]), "all -inf row: gradient %g, want nan", g[i]);
    kiln_tensor_free(v[0]);
    kiln_tensor_free(v[1]);
    kiln_ctx_free(ctx);
  }
}
END_TEST

/* log(sigmoid(x)) and log(1 - sigmoid(x)) at x = -1000 .. 1000: optimized,
** -softplus(-x) and -softplus(x) exactly; the gradients sigmoid(-x) and
** -sigmoid(x) in both modes. */
START_TEST(log_sigmoid_extremes) {
  static const double xs[5] = {-1000, -30, 0, 30, 1000};
  static const double ls[5] = {-1000.0, -30.000000000000092, -0.6931471805599453,
                               -9.357622968839737e-14, -0.0};
  static const double sgm[5] = {1.0, 0.9999999999999065, 0.5, 9.3576229688393e-14, 0.0};
  for (int m = 0; m < 2; m++)
    for (int which = 0; which < 2; which++) {
      kiln_ctx *ctx = kiln_ctx_new();
      kiln_node *x = kiln_dvector(ctx, "x");
      kiln_node *s = kiln_sigmoid(x);
      kiln_node *y = which ? kiln_log(kiln_sub(kiln_lit(ctx, 1.0), s)) : kiln_log(s), *g;
      ck_assert_int_eq(kiln_grad(kiln_sum(y), 1, &x, &g, 0), KILN_OK);
      kiln_function *f = compile(ctx, 1, &x, 2, (kiln_node *[]){y, g}, m ? &NOOPT : &OPT);
      kiln_tensor *v = vec(5, xs);
      const kiln_tensor *r[2];
      ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&v, r), KILN_OK);
      for (int i = 0; i < 5; i++) {
        int j = which ? 4 - i : i; /* log(1 - sigmoid(x)) = log(sigmoid(-x)) */
        if (m == 0) near(kiln_tensor_get(r[0], i), ls[j], "value (optimized)", i);
        near(kiln_tensor_get(r[1], i), which ? -sgm[j] : sgm[j], "gradient", i);
      }
      if (m == 1) /* as written: sigmoid(-1000) is 0 */
        ck_assert(kiln_tensor_get(r[0], which ? 4 : 0) == -INFINITY);
      kiln_tensor_free(v);
      kiln_ctx_free(ctx);
    }
}
END_TEST

/* A wrt inside a pattern keeps its gradient: d log(s)/ds with s = sigmoid(x). */
START_TEST(grad_wrt_inside_pattern) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *s = kiln_sigmoid(x), *g[2];
  ck_assert_int_eq(kiln_grad(kiln_sum(kiln_log(s)), 2, (kiln_node *[]){s, x}, g, 0), KILN_OK);
  kiln_function *f = compile(ctx, 1, &x, 2, g, &OPT);
  kiln_tensor *v = vec(3, (double[]){0, 2, -1});
  const kiln_tensor *r[2];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)&v, r), KILN_OK);
  const double xs[3] = {0, 2, -1};
  for (int i = 0; i < 3; i++) {
    double sg = 1 / (1 + exp(-xs[i]));
    near(kiln_tensor_get(r[0], i), 1 / sg, "d/ds", i);
    near(kiln_tensor_get(r[1], i), 1 - sg, "d/dx", i);
  }
  kiln_tensor_free(v);
  kiln_ctx_free(ctx);
}
END_TEST

/* -------------------------------------------------- binary cross-entropy */

/* Values worked out with Python's math module (numpy's formulas), in both modes. */
START_TEST(bce_values) {
  static const double bce[4] = {0.10536051565782628, 0.6931471805599453, 0.10536051565782628,
                                0.5684994090355333};
  static const double sbce[4] = {0.1269280110429725, 0.6931471805599453, 0.048587351573742055,
                                 0.8490769841801067};
  for (int m = 0; m < 2; m++) {
    kiln_ctx *ctx = kiln_ctx_new();
    kiln_node *p = kiln_dvector(ctx, "p"), *z = kiln_dvector(ctx, "z"), *t = kiln_dvector(ctx, "t");
    kiln_node *out[2] = {kiln_binary_crossentropy(p, t), kiln_sigmoid_binary_crossentropy(z, t)};
    kiln_function *f = compile(ctx, 3, (kiln_node *[]){p, z, t}, 2, out, m ? &NOOPT : &OPT);
    kiln_tensor *v[3] = {vec(4, (double[]){0.1, 0.5, 0.9, 0.3}), vec(4, (double[]){-2, 0, 3, 0.5}),
                         vec(4, (double[]){0, 1, 1, 0.25})};
    const kiln_tensor *r[2];
    ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)v, r), KILN_OK);
    for (int i = 0; i < 4; i++) {
      near(kiln_tensor_get(r[0], i), bce[i], "binary_crossentropy", i);
      near(kiln_tensor_get(r[1], i), sbce[i], "sigmoid_binary_crossentropy", i);
    }
    for (int k = 0; k < 3; k++)
      kiln_tensor_free(v[k]);
    kiln_ctx_free(ctx);
  }
}
END_TEST

/* Central differences of sum(loss) wrt the first operand, against kiln_grad. */
static void fd_check(int which, const double *x0, const double *t0, int n) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *t = kiln_dvector(ctx, "t"), *g;
  kiln_node *l = which == 0   ? kiln_binary_crossentropy(x, t)
                 : which == 1 ? kiln_sigmoid_binary_crossentropy(x, t)
                              : kiln_binary_crossentropy(kiln_sigmoid(x), t);
  kiln_node *cost = kiln_sum(l);
  ck_assert_int_eq(kiln_grad(cost, 1, &x, &g, 0), KILN_OK);
  kiln_node *in[2] = {x, t};
  kiln_function *fc = compile(ctx, 2, in, 1, &cost, &NOOPT);
  kiln_function *fg = compile(ctx, 2, in, 1, &g, &OPT);
  kiln_tensor *v[2] = {vec(n, x0), vec(n, t0)};
  const kiln_tensor *r;
  ck_assert_int_eq(kiln_call(fg, (const kiln_tensor *const *)v, &r), KILN_OK);
  double grad[8];
  for (int i = 0; i < n; i++)
    grad[i] = kiln_tensor_get(r, i);
  double *xv = kiln_tensor_data(v[0]);
  for (int i = 0; i < n; i++) {
    double keep = xv[i], c[2];
    for (int s = 0; s < 2; s++) {
      xv[i] = keep + (s ? -1e-6 : 1e-6);
      ck_assert_int_eq(kiln_call(fc, (const kiln_tensor *const *)v, &r), KILN_OK);
      c[s] = kiln_tensor_get(r, 0);
    }
    xv[i] = keep;
    double fdv = (c[0] - c[1]) / 2e-6;
    ck_assert_msg(fabs(grad[i] - fdv) <= 1e-6 + 1e-5 * fabs(fdv),
                  "case %d element %d: %.12g vs %.12g", which, i, grad[i], fdv);
  }
  kiln_tensor_free(v[0]);
  kiln_tensor_free(v[1]);
  kiln_ctx_free(ctx);
}

START_TEST(bce_gradients) {
  fd_check(0, (double[]){0.1, 0.5, 0.9, 0.3}, (double[]){0, 1, 1, 0.25}, 4);
  fd_check(1, (double[]){-2, 0, 3, 0.5}, (double[]){0, 1, 1, 0.25}, 4);
  fd_check(2, (double[]){-2, 0, 3, 0.5}, (double[]){0, 1, 1, 0.25}, 4);
}
END_TEST

/* Logits -1000 .. 1000: sigmoid_binary_crossentropy finite in both modes
** (softplus(z) - t z: [0 50 50 0]), gradient sigmoid(z) - t = [0 -1 1 0];
** binary_crossentropy(sigmoid(z), t) the same when optimized; its gradient
** (kiln_grad's stable form) in both modes. */
START_TEST(bce_large_logits) {
  static const double want[4] = {0, 50, 50, 0}, want_g[4] = {0, -1, 1, 0};
  for (int m = 0; m < 2; m++)
    for (int which = 0; which < 2; which++) {
      kiln_ctx *ctx = kiln_ctx_new();
      kiln_node *z = kiln_dvector(ctx, "z"), *t = kiln_dvector(ctx, "t"), *g;
      kiln_node *l = which ? kiln_binary_crossentropy(kiln_sigmoid(z), t)
                           : kiln_sigmoid_binary_crossentropy(z, t);
      ck_assert_int_eq(kiln_grad(kiln_sum(l), 1, &z, &g, 0), KILN_OK);
      kiln_function *f =
          compile(ctx, 2, (kiln_node *[]){z, t}, 2, (kiln_node *[]){l, g}, m ? &NOOPT : &OPT);
      kiln_tensor *v[2] = {vec(4, (double[]){-1000, -50, 50, 1000}),
                           vec(4, (double[]){0, 1, 0, 1})};
      const kiln_tensor *r[2];
      ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)v, r), KILN_OK);
      for (int i = 0; i < 4; i++) {
        if (!(which && m)) near(kiln_tensor_get(r[0], i), want[i], "loss", i);
        near(kiln_tensor_get(r[1], i), want_g[i], "gradient", i);
      }
      kiln_tensor_free(v[0]);
      kiln_tensor_free(v[1]);
      kiln_ctx_free(ctx);
    }
}
END_TEST

int main(void) {
  Suite *s = suite_create("stab");
  TCase *tc = tcase_create("stab");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, rule_dumps, 0, N_CASES);
  tcase_add_loop_test(tc, rule_values, 0, N_CASES);
  tcase_add_test(tc, huge_logits_log_softmax);
  tcase_add_test(tc, huge_logits_naive_softmax);
  tcase_add_test(tc, inf_logits_both_modes);
  tcase_add_test(tc, log_sigmoid_extremes);
  tcase_add_test(tc, grad_wrt_inside_pattern);
  tcase_add_test(tc, bce_values);
  tcase_add_test(tc, bce_gradients);
  tcase_add_test(tc, bce_large_logits);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
