/*
** test_passes.c -- the optimizer, pass by pass, through its dumps.
**
** Each pass gets a small graph whose text before and after the pass shows
** the rewrite (lines that appear or disappear, operands that change);
** values are always checked too, against the unoptimized build
** (no_optimize=1: no rewrites, each node its own loop) and the reference
** evaluator (kl_ref_run), never against the optimized code alone. Then: the
** seed's plan, LLVM IR and node counts; fast-math-only rules; the verifier;
** KILN_DUMP_DIR and the stage enumeration; and constant folding of every op
** and dtype pair, bit for bit against the same op computed at run time.
*/
#define _POSIX_C_SOURCE 200809L

#include "compiler/function.h"
#include "compiler/refeval.h"
#include "tests/testutil.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */

static const kiln_options OPT = {.size = sizeof(kiln_options)};
static const kiln_options NOOPT = {.size = sizeof(kiln_options), .no_optimize = 1};
static const kiln_options FAST = {.size = sizeof(kiln_options), .fast_math = 1};

static kiln_function *compile(kiln_ctx *ctx, const char *name, int n_in, kiln_node *const *in,
                              int n_out, kiln_node *const *out, int n_upd, const kiln_update *upd,
                              const kiln_options *o) {
  kiln_function *f = kiln_function_new_opts(ctx, name, n_in, in, n_out, out, n_upd, upd, o);
  ck_assert_msg(f != NULL, "compiling %s failed: %s", name, kiln_errmsg(ctx));
  return f;
}

/* The name of the first stage "pass.NN.<pass>", or NULL. */
static const char *pass_stage(kiln_function *f, const char *pass) {
  for (int i = 0; i < kiln_function_n_dumps(f); i++) {
    const char *nm = kiln_function_dump_name(f, i);
    size_t ln = strlen(nm), lp = strlen(pass);
    if (strncmp(nm, "pass.", 5) == 0 && ln > lp + 1 && strcmp(nm + ln - lp, pass) == 0 &&
        nm[ln - lp - 1] == '.')
      return nm;
  }
  return NULL;
}

static char *dump_pass(kiln_function *f, const char *pass) {
  const char *nm = pass_stage(f, pass);
  ck_assert_msg(nm != NULL, "no stage pass.NN.%s: the pass changed nothing", pass);
  return kt_dump(f, nm);
}

/* Copy of line number k (0-based) of text, or NULL. */
static char *nth_line(const char *text, int k) {
  const char *p = text;
  for (; k > 0 && p; k--) {
    p = strchr(p, '\n');
    if (p) p++;
  }
  if (!p || !*p) return NULL;
  const char *e = strchr(p, '\n');
  size_t n = e ? (size_t)(e - p) : strlen(p);
  char *s = malloc(n + 1);
  memcpy(s, p, n);
  s[n] = 0;
  return s;
}

/* Number of lines containing sub (prefix: only those starting with it). */
static int count_lines(const char *text, const char *sub, int prefix) {
  int n = 0;
  char *ln;
  for (int k = 0; (ln = nth_line(text, k)) != NULL; k++) {
    if (prefix ? strncmp(ln, sub, strlen(sub)) == 0 : strstr(ln, sub) != NULL) n++;
    free(ln);
  }
  return n;
}

static int n_nodes(const char *text) { return count_lines(text, "%", 1); }

/* The first line containing sub (malloc'ed), or NULL. */
static char *line_with(const char *text, const char *sub) {
  char *ln;
  for (int k = 0; (ln = nth_line(text, k)) != NULL; k++) {
    if (strstr(ln, sub)) return ln;
    free(ln);
  }
  return NULL;
}

/* The id of the node whose line contains sub; fails if there is none. */
static int node_id(const char *text, const char *sub) {
  char *ln = line_with(text, sub);
  ck_assert_msg(ln != NULL, "no line with '%s' in:\n%s", sub, text);
  int id = -1;
  ck_assert_msg(sscanf(ln, "%%%d =", &id) == 1, "not a node line: %s", ln);
  free(ln);
  return id;
}

/* Checks that every node of a graph text is used: by a later node (value or
** shape operand), an output or an update. */
static void check_no_dead_nodes(const char *text, const char *stage) {
  int n = n_nodes(text);
  int *used = calloc((size_t)n + 1, sizeof *used);
  char *ln;
  for (int k = 0; (ln = nth_line(text, k)) != NULL; k++) {
    const char *p = NULL;
    int id;
    if (ln[0] == '%') {
      p = strchr(ln, '(');
    } else if (sscanf(ln, "output %*d = %%%d", &id) == 1 && id >= 0 && id < n) {
      used[id] = 1;
    } else if ((p = strstr(ln, "<- %")) != NULL && sscanf(p, "<- %%%d", &id) == 1 && id < n) {
      used[id] = 1;
      p = NULL;
    }
    const char *close = p ? strchr(p, ')') : NULL;
    for (const char *q = p; q && q < close; q++)
      if (*q == '%' && sscanf(q, "%%%d", &id) == 1 && id >= 0 && id < n) used[id] = 1;
    free(ln);
  }
  for (int i = 0; i < n; i++) {
    char *l = nth_line(text, i);
    /* inputs the outputs do not reach are not copied into the graph */
    ck_assert_msg(used[i], "stage %s: node %%%d is dead: %s\n%s", stage, i, l, text);
    free(l);
  }
  free(used);
}

static kiln_tensor *copy_tensor(const kiln_tensor *t) {
  int64_t shape[KILN_MAX_RANK];
  for (int d = 0; d < kiln_tensor_rank(t); d++)
    shape[d] = kiln_tensor_dim(t, d);
  kiln_tensor *c =
      kiln_tensor_new(kiln_tensor_dtype(t), kiln_tensor_rank(t), shape, kiln_tensor_data(t));
  ck_assert_ptr_nonnull(c);
  return c;
}

/* Calls f and stores copies of its n_out outputs in out[]. */
static void run(kiln_ctx *ctx, kiln_function *f, const kiln_tensor *const *in, int n_out,
                kiln_tensor **out) {
  const kiln_tensor *res[16];
  ck_assert_int_le(n_out, 16);
  kiln_status st = kiln_call(f, in, res);
  ck_assert_msg(st == KILN_OK, "kiln_call: %s", kiln_errmsg(ctx));
  for (int k = 0; k < n_out; k++)
    out[k] = copy_tensor(res[k]);
}

/* Frees several malloc'ed strings / tensors at once. */
#define FREE(...)                                                                                  \
  free_strs((char *[]){__VA_ARGS__}, sizeof((char *[]){__VA_ARGS__}) / sizeof(char *))
#define TFREE(...)                                                                                 \
  free_all((int)(sizeof((kiln_tensor *[]){__VA_ARGS__}) / sizeof(kiln_tensor *)),                  \
           (kiln_tensor *[]){__VA_ARGS__})
static void free_strs(char **p, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(p[i]);
}

static void free_all(int n, kiln_tensor **t) {
  for (int k = 0; k < n; k++)
    kiln_tensor_free(t[k]);
}

static const char *show(const kiln_tensor *t, char *buf, size_t n) {
  if (!t) return "(null)";
  int len = snprintf(buf, n, "%s ", kiln_dtype_name(kiln_tensor_dtype(t)));
  if (len < 0 || (size_t)len >= n) return buf;
  /* the numpy text hides NaN signs and float32 digits: add the raw bits */
  kiln_tensor_sprint(t, buf + len, n - (size_t)len);
  size_t at = strlen(buf);
  size_t es = kiln_dtype_size(kiln_tensor_dtype(t));
  const unsigned char *d = kiln_tensor_data(t);
  for (int64_t i = 0; i < kiln_tensor_size(t) && i < 32 && at + 24 < n; i++) {
    uint64_t bits = 0;
    memcpy(&bits, d + (size_t)i * es, es);
    at +=
        (size_t)snprintf(buf + at, n - at, "%s%llx", i ? " " : " bits: ", (unsigned long long)bits);
  }
  return buf;
}

/* Asserts a and b hold the same bits, naming what is compared. */
static void same_bits(const kiln_tensor *a, const kiln_tensor *b, const char *what) {
  char sa[2048], sb[2048];
  ck_assert_msg(a && b && kt_same_bits(a, b), "%s differ:\n  %s\n  %s", what,
                show(a, sa, sizeof sa), show(b, sb, sizeof sb));
}

/* Compiles outputs optimized (with o) and unoptimized, runs both and the
** reference on the same inputs and asserts all three agree bit for bit. */
static void check_values(kiln_ctx *ctx, int n_in, kiln_node *const *in,
                         const kiln_tensor *const *vals, int n_out, kiln_node *const *out,
                         const kiln_options *o) {
  kiln_function *fo = compile(ctx, "opt", n_in, in, n_out, out, 0, NULL, o);
  kiln_function *fn = compile(ctx, "noopt", n_in, in, n_out, out, 0, NULL, &NOOPT);
  kiln_tensor *ro[16], *rn[16], *rr[16];
  run(ctx, fo, vals, n_out, ro);
  run(ctx, fn, vals, n_out, rn);
  ck_assert_msg(kl_ref_run(ctx, n_in, in, vals, n_out, out, rr) == KILN_OK, "ref: %s",
                kiln_errmsg(ctx));
  for (int k = 0; k < n_out; k++) {
    char what[64];
    snprintf(what, sizeof what, "output %d: optimized and unoptimized", k);
    same_bits(ro[k], rn[k], what);
    snprintf(what, sizeof what, "output %d: unoptimized and reference", k);
    same_bits(rn[k], rr[k], what);
  }
  free_all(n_out, ro);
  free_all(n_out, rn);
  free_all(n_out, rr);
  kiln_function_free(fo);
  kiln_function_free(fn);
}

static const double SPECIAL[] = {1.5, -2.0, 0.0, -0.0, NAN, INFINITY, -INFINITY, 3.0};
#define N_SPECIAL 8

/* ------------------------------------------------------------- the seed */

typedef struct seed_graph {
  kiln_node *x, *target, *W, *y, *W_updated;
} seed_graph;

/* examples/seed.c, node for node. */
static seed_graph build_seed(kiln_ctx *ctx) {
  seed_graph s;
  s.x = kiln_fvector(ctx, "x");
  s.target = kiln_fscalar(ctx, "target");
  s.W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){4}, (double[]){0.1, 0.25, 0.15, 0.3});
  s.y = kiln_sum(kiln_mul(s.x, s.W));
  kiln_node *cost = kiln_sqr(kiln_sub(s.target, s.y));
  kiln_node *g[1];
  ck_assert_int_eq(kiln_grad(cost, 1, &s.W, g, 0), KILN_OK);
  s.W_updated = kiln_sub(s.W, kiln_mul(kiln_lit(ctx, 0.1), g[0]));
  ck_assert_ptr_nonnull(s.W_updated);
  return s;
}

static kiln_function *compile_seed(kiln_ctx *ctx, seed_graph *s, const char *name,
                                   const kiln_options *o) {
  *s = build_seed(ctx);
  kiln_update u = {s->W, s->W_updated};
  return compile(ctx, name, 2, (kiln_node *[]){s->x, s->target}, 1, &s->y, 1, &u, o);
}

/* --------------------------------------------------------- canonicalize */

START_TEST(canonicalize_constant_right) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *ya = kiln_add(kiln_scalar(ctx, KILN_FLOAT64, 2.0), x);
  kiln_node *ym = kiln_mul(kiln_scalar(ctx, KILN_FLOAT64, 3.0), x);
  kiln_node *out[] = {kiln_name(ya, "ya"), kiln_name(ym, "ym")};
  kiln_function *f = compile(ctx, "f", 1, &x, 2, out, 0, NULL, &OPT);
  char *before = kt_dump(f, "graph"), *after = dump_pass(f, "canonicalize");
  int xb = node_id(before, "'x'"), c2 = node_id(before, "const{2.0}"),
      c3 = node_id(before, "const{3.0}");
  char want[64];
  snprintf(want, sizeof want, "add(%%%d, %%%d)", c2, xb);
  ck_assert_msg(strstr(before, want), "graph has no '%s':\n%s", want, before);
  snprintf(want, sizeof want, "mul(%%%d, %%%d)", c3, xb);
  ck_assert_msg(strstr(before, want), "graph has no '%s':\n%s", want, before);
  int xa = node_id(after, "'x'"), a2 = node_id(after, "const{2.0}"),
      a3 = node_id(after, "const{3.0}");
  snprintf(want, sizeof want, "add(%%%d, %%%d)", xa, a2);
  ck_assert_msg(strstr(after, want), "no '%s' after canonicalize:\n%s", want, after);
  snprintf(want, sizeof want, "mul(%%%d, %%%d)", xa, a3);
  ck_assert_msg(strstr(after, want), "no '%s' after canonicalize:\n%s", want, after);
  ck_assert_int_eq(n_nodes(before), n_nodes(after));
  FREE(before, after);
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){N_SPECIAL}, SPECIAL);
  check_values(ctx, 1, &x, (const kiln_tensor *[]){xv}, 2, out, &OPT);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(canonicalize_sub_constant) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *y = kiln_name(kiln_sub(x, kiln_scalar(ctx, KILN_FLOAT64, 5.0)), "y");
  kiln_function *f = compile(ctx, "f", 1, &x, 1, &y, 0, NULL, &OPT);
  char *before = kt_dump(f, "graph"), *after = dump_pass(f, "canonicalize");
  ck_assert_int_eq(count_lines(before, "= sub(", 0), 1);
  ck_assert_int_eq(count_lines(after, "= sub(", 0), 0);
  int xa = node_id(after, "'x'"), m5 = node_id(after, "const{-5.0}");
  char want[64];
  snprintf(want, sizeof want, "add(%%%d, %%%d)", xa, m5);
  char *ln = line_with(after, want);
  ck_assert_msg(ln != NULL, "no '%s' after canonicalize:\n%s", want, after);
  ck_assert_msg(strstr(ln, "'y'") && strstr(ln, "[canonicalize: x - c -> x + (-c)]"),
                "the add keeps the name and records its rule: %s", ln);
  ck_assert_int_eq(count_lines(after, "const{5.0}", 0), 0);
  FREE(ln, before, after);
  /* 5 - 5 is +0.0 both ways; -0.0 - 5, NaN, infinities */
  kiln_tensor *xv =
      kt_tensor(KILN_FLOAT64, 1, (int64_t[]){5}, (double[]){5.0, -0.0, NAN, INFINITY, -INFINITY});
  check_values(ctx, 1, &x, (const kiln_tensor *[]){xv}, 1, &y, &OPT);
  kiln_function *fo = compile(ctx, "g", 1, &x, 1, &y, 0, NULL, &OPT);
  const kiln_tensor *r;
  ck_assert_int_eq(kiln_call(fo, (const kiln_tensor *[]){xv}, &r), KILN_OK);
  const double *d = kiln_tensor_data(r);
  ck_assert(d[0] == 0.0 && !signbit(d[0]));
  ck_assert(d[1] == -5.0 && isnan(d[2]) && d[3] == INFINITY && d[4] == -INFINITY);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* x - c for integers wraps like x + (-c): int8 1 - (-128) = -127, uint8 3 - 5 = 254. */
START_TEST(canonicalize_sub_integer_wraps) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *b = kiln_bvector(ctx, "b");
  kiln_node *u = kiln_input(ctx, "u", KILN_UINT8, 1, NULL);
  kiln_node *out[] = {kiln_sub(b, kiln_scalar(ctx, KILN_INT8, -128)),
                      kiln_sub(u, kiln_scalar(ctx, KILN_UINT8, 5))};
  kiln_function *f = compile(ctx, "f", 2, (kiln_node *[]){b, u}, 2, out, 0, NULL, &OPT);
  char *after = kt_dump(f, "opt");
  ck_assert_msg(count_lines(after, "= sub(", 0) == 0 && count_lines(after, "const{-128}", 0) == 1 &&
                    count_lines(after, "const{251}", 0) == 1,
                "both subs become adds of the negation:\n%s", after);
  free(after);
  kiln_tensor *bv = kt_tensor(KILN_INT8, 1, (int64_t[]){4}, (double[]){1, 0, -1, 127});
  kiln_tensor *uv = kt_tensor(KILN_UINT8, 1, (int64_t[]){4}, (double[]){3, 5, 0, 255});
  const kiln_tensor *in[] = {bv, uv};
  check_values(ctx, 2, (kiln_node *[]){b, u}, in, 2, out, &OPT);
  const kiln_tensor *r[2];
  ck_assert_int_eq(kiln_call(f, in, r), KILN_OK);
  const int8_t *rb = kiln_tensor_data(r[0]);
  const uint8_t *ru = kiln_tensor_data(r[1]);
  /* numpy: int8 [1, 0, -1, 127] - (-128) = [-127, -128, 127, -1]; uint8 [3, 5, 0, 255] - 5 */
  ck_assert(rb[0] == -127 && rb[1] == -128 && rb[2] == 127 && rb[3] == -1);
  ck_assert(ru[0] == 254 && ru[1] == 0 && ru[2] == 251 && ru[3] == 250);
  TFREE(bv, uv);
  kiln_ctx_free(ctx);
}
END_TEST

/* -------------------------------------------------------- constant_fold */

START_TEST(constant_fold_subgraph) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  /* 2 + exp(0) folds to 3; the mul with x stays */
  kiln_node *c =
      kiln_add(kiln_scalar(ctx, KILN_FLOAT64, 2.0), kiln_exp(kiln_scalar(ctx, KILN_FLOAT64, 0.0)));
  kiln_node *y = kiln_mul(x, c);
  kiln_function *f = compile(ctx, "f", 1, &x, 1, &y, 0, NULL, &OPT);
  char *before = kt_dump(f, "graph"), *after = dump_pass(f, "constant_fold");
  ck_assert_int_eq(n_nodes(before), 6); /* x, 2, 0, exp, add, mul */
  ck_assert_int_eq(count_lines(before, "= exp(", 0), 1);
  ck_assert_int_eq(n_nodes(after), 3); /* x, 3, mul */
  ck_assert_int_eq(count_lines(after, "= exp(", 0), 0);
  ck_assert_int_eq(count_lines(after, "= add(", 0), 0);
  ck_assert_int_eq(count_lines(after, "= const", 0), 1);
  char *ln = line_with(after, "const{3.0}");
  ck_assert_msg(ln && strstr(ln, "[constant_fold"), "folded constant with its rule:\n%s", after);
  int xa = node_id(after, "'x'"), k = node_id(after, "const{3.0}");
  char want[64];
  snprintf(want, sizeof want, "mul(%%%d, %%%d)", xa, k);
  ck_assert_msg(strstr(after, want), "no '%s':\n%s", want, after);
  FREE(ln, before, after);
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){N_SPECIAL}, SPECIAL);
  check_values(ctx, 1, &x, (const kiln_tensor *[]){xv}, 1, &y, &OPT);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ cse */

START_TEST(cse_merges_separate_builds) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *a = kiln_exp(x);
  kiln_node *b = kiln_exp(x); /* a second builder call: a distinct node */
  ck_assert_ptr_ne(a, b);
  /* two constants 2.0 built separately, each in a mul by x */
  kiln_node *m1 = kiln_mul(x, kiln_scalar(ctx, KILN_FLOAT64, 2.0));
  kiln_node *m2 = kiln_mul(x, kiln_scalar(ctx, KILN_FLOAT64, 2.0));
  kiln_node *y = kiln_add(kiln_add(a, b), kiln_add(m1, m2));
  kiln_function *f = compile(ctx, "f", 1, &x, 1, &y, 0, NULL, &OPT);
  char *before = kt_dump(f, "graph"), *after = dump_pass(f, "cse");
  ck_assert_int_eq(count_lines(before, "= exp(", 0), 2);
  ck_assert_int_eq(count_lines(before, "= mul(", 0), 2);
  ck_assert_int_eq(count_lines(before, "const{2.0}", 0), 2);
  ck_assert_int_eq(n_nodes(before), 10);
  ck_assert_int_eq(count_lines(after, "= exp(", 0), 1);
  ck_assert_int_eq(count_lines(after, "= mul(", 0), 1);
  ck_assert_int_eq(count_lines(after, "const{2.0}", 0), 1);
  ck_assert_int_eq(n_nodes(after), 7); /* x, exp, 2, mul, add, add, add */
  int e = node_id(after, "= exp("), m = node_id(after, "= mul(");
  char want[64];
  snprintf(want, sizeof want, "add(%%%d, %%%d)", e, e);
  ck_assert_msg(strstr(after, want), "no '%s':\n%s", want, after);
  snprintf(want, sizeof want, "add(%%%d, %%%d)", m, m);
  ck_assert_msg(strstr(after, want), "no '%s':\n%s", want, after);
  FREE(before, after);
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){N_SPECIAL}, SPECIAL);
  check_values(ctx, 1, &x, (const kiln_tensor *[]){xv}, 1, &y, &OPT);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* Same op and inputs but different types or parameters are not merged. */
START_TEST(cse_keeps_different_nodes) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dmatrix(ctx, "x");
  kiln_node *s0 = kiln_sum_axis(x, 0), *s1 = kiln_sum_axis(x, 1);
  kiln_node *c1 = kiln_mul(x, kiln_scalar(ctx, KILN_FLOAT64, 2.0));
  kiln_node *c2 = kiln_mul(x, kiln_scalar(ctx, KILN_FLOAT64, -2.0));
  kiln_node *out[] = {s0, s1, c1, c2};
  kiln_function *f = compile(ctx, "f", 1, &x, 4, out, 0, NULL, &OPT);
  char *after = kt_dump(f, "opt");
  ck_assert_int_eq(count_lines(after, "= sum{", 0), 2);
  ck_assert_int_eq(count_lines(after, "= mul(", 0), 2);
  free(after);
  double v[6] = {1, 2, 3, -0.0, NAN, 6};
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 2, (int64_t[]){2, 3}, v);
  check_values(ctx, 1, &x, (const kiln_tensor *[]){xv}, 4, out, &OPT);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------- simplify */

typedef enum rule_case {
  R_MUL1,
  R_DIV1,
  R_ADDNEG0,
  R_NEGNEG,
  R_POW1,
  R_MAX,
  R_MIN,
  R_SUM0,
  R_N
} rule_case;

static kiln_node *rule_expr(kiln_ctx *ctx, rule_case r, kiln_node *x) {
  switch (r) {
  case R_MUL1: return kiln_mul(x, kiln_lit(ctx, 1.0));
  case R_DIV1: return kiln_div(x, kiln_lit(ctx, 1));
  case R_ADDNEG0: return kiln_add(x, kiln_scalar(ctx, kiln_node_dtype(x), -0.0));
  case R_NEGNEG: return kiln_neg(kiln_neg(x));
  case R_POW1: return kiln_pow(x, kiln_lit(ctx, 1));
  case R_MAX: return kiln_maximum(x, x);
  case R_MIN: return kiln_minimum(x, x);
  case R_SUM0: return kiln_sum(x); /* on a scalar: a sum over no axes */
  default: return NULL;
  }
}

static const char *const rule_op[R_N] = {"= mul(", "= div(",     "= add(",     "= neg(",
                                         "= pow(", "= maximum(", "= minimum(", "= sum{"};

/* Each exact rule removes its op; the consumer (exp) then reads x itself. */
START_TEST(simplify_exact_rules) {
  for (int r = 0; r < R_N; r++)
    for (int fl = 0; fl < 2; fl++) {
      kiln_ctx *ctx = kiln_ctx_new();
      /* a float sum starts from +0.0 (-0.0 becomes +0.0), so "sum over no
      ** axes -> x" is exact for integers only */
      kiln_dtype dt = r == R_SUM0 ? KILN_INT64 : fl ? KILN_FLOAT32 : KILN_FLOAT64;
      kiln_node *x =
          r == R_SUM0 ? kiln_input(ctx, "x", dt, 0, NULL) : kiln_input(ctx, "x", dt, 1, NULL);
      /* exp would convert the integer case to float first: neg keeps int64 */
      kiln_node *y = r == R_SUM0 ? kiln_neg(rule_expr(ctx, (rule_case)r, x))
                                 : kiln_exp(rule_expr(ctx, (rule_case)r, x));
      ck_assert_msg(y != NULL, "rule %d: %s", r, kiln_errmsg(ctx));
      kiln_function *f = compile(ctx, "f", 1, &x, 1, &y, 0, NULL, &OPT);
      char *before = kt_dump(f, "graph"), *after = dump_pass(f, "simplify"),
           *opt = kt_dump(f, "opt");
      ck_assert_msg(count_lines(before, rule_op[r], 0) >= 1, "rule %d: graph lacks %s:\n%s", r,
                    rule_op[r], before);
      ck_assert_msg(count_lines(after, rule_op[r], 0) == 0, "rule %d: %s survives simplify:\n%s", r,
                    rule_op[r], after);
      char want[64];
      snprintf(want, sizeof want, "= %s(%%%d)", r == R_SUM0 ? "neg" : "exp", node_id(after, "'x'"));
      ck_assert_msg(strstr(after, want), "rule %d: the consumer does not read x:\n%s", r, after);
      ck_assert_int_eq(n_nodes(opt), 2); /* x and exp (neg) */
      FREE(before, after, opt);
      int64_t n = r == R_SUM0 ? 0 : N_SPECIAL;
      kiln_tensor *xv =
          kt_tensor(dt, r == R_SUM0 ? 0 : 1, &n, r == R_SUM0 ? (double[]){-0.0} : SPECIAL);
      check_values(ctx, 1, &x, (const kiln_tensor *[]){xv}, 1, &y, &OPT);
      kiln_tensor_free(xv);
      /* without the exp: the output is x itself */
      kiln_node *z = rule_expr(ctx, (rule_case)r, x);
      xv = kt_tensor(dt, r == R_SUM0 ? 0 : 1, &n, r == R_SUM0 ? (double[]){-7} : SPECIAL);
      check_values(ctx, 1, &x, (const kiln_tensor *[]){xv}, 1, &z, &OPT);
      kiln_tensor_free(xv);
      kiln_ctx_free(ctx);
    }
}
END_TEST

/* Rules that are not IEEE-exact stay off by default: x + 0.0 (-0.0 + 0.0 is
** +0.0), x * 0 (NaN, inf), x - x (NaN, inf); a rule that would change the
** type (x * ones((1, 1))) never fires. */
/* where(c, x, x) -> x: the rule fires when c cannot change x's shape; a
** condition whose dynamic size broadcasts x still gives numpy's shape, and
** one that does not fit is still a shape error. */
START_TEST(simplify_where_same_operands) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *c3 = kiln_input(ctx, "c3", KILN_BOOL, 1, (int64_t[]){3});
  kiln_node *xs = kiln_input(ctx, "xs", KILN_FLOAT64, 1, (int64_t[]){3});
  kiln_node *y = kiln_exp(kiln_where(c3, xs, xs));
  kiln_function *f = compile(ctx, "f", 2, (kiln_node *[]){c3, xs}, 1, &y, 0, NULL, &OPT);
  char *g = kt_dump(f, "graph"), *opt = kt_dump(f, "opt");
  ck_assert_int_eq(count_lines(g, "= where(", 0), 1);
  ck_assert_msg(count_lines(opt, "= where(", 0) == 0, "where(c, x, x) stays:\n%s", opt);
  char want[32];
  snprintf(want, sizeof want, "= exp(%%%d)", node_id(opt, "'xs'"));
  ck_assert_msg(strstr(opt, want), "exp does not read x:\n%s", opt);
  FREE(g, opt);
  kiln_tensor *cv = kt_tensor(KILN_BOOL, 1, (int64_t[]){3}, (double[]){1, 0, 1});
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){3}, (double[]){-0.0, NAN, 2});
  check_values(ctx, 2, (kiln_node *[]){c3, xs}, (const kiln_tensor *[]){cv, xv}, 1, &y, &OPT);
  TFREE(cv, xv);
  /* a dynamic condition: numpy.where([1, 0, 1], [7.], [7.]) is [7., 7., 7.] */
  kiln_node *c = kiln_input(ctx, "c", KILN_BOOL, 1, NULL);
  kiln_node *w = kiln_where(c, x, x);
  cv = kt_tensor(KILN_BOOL, 1, (int64_t[]){3}, (double[]){1, 0, 1});
  xv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){1}, (double[]){7});
  kiln_function *fw = compile(ctx, "w", 2, (kiln_node *[]){c, x}, 1, &w, 0, NULL, &OPT);
  const kiln_tensor *r;
  ck_assert_int_eq(kiln_call(fw, (const kiln_tensor *[]){cv, xv}, &r), KILN_OK);
  char buf[128];
  kiln_tensor_sprint(r, buf, sizeof buf);
  ck_assert_msg(
      kiln_tensor_rank(r) == 1 && kiln_tensor_dim(r, 0) == 3,
      "where(c, x, x) with c of shape (3,) and x of shape (1,) gives %s, numpy [7. 7. 7.]", buf);
  check_values(ctx, 2, (kiln_node *[]){c, x}, (const kiln_tensor *[]){cv, xv}, 1, &w, &OPT);
  kiln_tensor_free(xv);
  /* sizes that do not broadcast: a shape error, optimized or not */
  xv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){2}, (double[]){1, 2});
  ck_assert_int_eq(kiln_call(fw, (const kiln_tensor *[]){cv, xv}, &r), KILN_SHAPE);
  TFREE(cv, xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* x + 0.0 -> x only where x cannot be -0.0 (-0.0 + 0.0 is +0.0): after a
** sum, exp, or another + 0.0 it goes; after an input or neg(exp(x)) (which
** is -0.0 at x = -inf) it stays. Values against the unoptimized function
** and the reference with -0.0, +-inf and NaN among the inputs. */
START_TEST(simplify_add_zero_exact) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *zero = kiln_lit(ctx, 0.0);
  struct {
    kiln_node *y;
    int adds; /* adds left after the pipeline */
  } cases[] = {
      {kiln_add(kiln_exp(x), zero), 0},
      {kiln_add(kiln_sum(x), zero), 0},
      {kiln_add(kiln_add(x, zero), zero), 1},
      {kiln_add(kiln_add(kiln_exp(x), x), zero), 1},
      {kiln_add(x, zero), 1},
      {kiln_add(kiln_neg(kiln_exp(x)), zero), 1},
  };
  int n = (int)(sizeof cases / sizeof cases[0]);
  int64_t len = N_SPECIAL;
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 1, &len, SPECIAL);
  for (int c = 0; c < n; c++) {
    kiln_function *f = compile(ctx, "f", 1, &x, 1, &cases[c].y, 0, NULL, &OPT);
    char *opt = kt_dump(f, "opt");
    ck_assert_msg(count_lines(opt, "= add(", 0) == cases[c].adds, "case %d: want %d adds:\n%s", c,
                  cases[c].adds, opt);
    free(opt);
    check_values(ctx, 1, &x, (const kiln_tensor *[]){xv}, 1, &cases[c].y, &OPT);
    kiln_function_free(f);
  }
  /* -0.0 + 0.0 is +0.0: the add of case 4 is needed */
  kiln_function *f = compile(ctx, "g", 1, &x, 1, &cases[4].y, 0, NULL, &OPT);
  const kiln_tensor *r;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *[]){xv}, &r), KILN_OK);
  double z = kiln_tensor_get(r, 3); /* SPECIAL[3] is -0.0 */
  ck_assert_msg(z == 0.0 && !signbit(z), "-0.0 + 0.0 gave %g", z);
  kiln_function_free(f);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* sum_like(g, like) goes when g provably has like's shape: in a dense
** layer's gradient, dot(x, W) + b gives the gradient of the dot a sum_like
** to dot's own shape (the add could have broadcast a dynamic size), which
** the sizes' descriptions show to be a copy. b's gradient (rows summed) and
** a sum_like whose operand was broadcast against another input's dynamic
** size stay. Values agree with the unoptimized function and the reference
** for a batch of 5, and of 1 (where every broadcast of size 1 happens). */
START_TEST(simplify_sum_like_same_shape) {
  kiln_ctx *ctx = kiln_ctx_new();
  float wv[12], bv[4] = {0.5f, -0.25f, 0.125f, 1.0f};
  for (int i = 0; i < 12; i++)
    wv[i] = 0.1f * (float)(i % 5) - 0.2f;
  kiln_node *x = kiln_fmatrix(ctx, "x");
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT32, 2, (int64_t[]){3, 4}, wv);
  kiln_node *b = kiln_shared(ctx, "b", KILN_FLOAT32, 1, (int64_t[]){4}, bv);
  kiln_node *h = kiln_tanh(kiln_add(kiln_dot(x, W), b));
  kiln_node *cost = kiln_sum(kiln_mul(h, h)), *g[2];
  ck_assert_int_eq(kiln_grad(cost, 2, (kiln_node *[]){W, b}, g, 0), KILN_OK);
  kiln_function *f = compile(ctx, "f", 1, &x, 2, g, 0, NULL, &OPT);
  char *gr = kt_dump(f, "graph"), *opt = kt_dump(f, "opt");
  int before = count_lines(gr, "= sum_like(", 0), after = count_lines(opt, "= sum_like(", 0);
  ck_assert_msg(before >= 3, "expected the gradient to build sum_likes:\n%s", gr);
  ck_assert_msg(after == 1, "%d sum_likes left (b's gradient should be the only one):\n%s", after,
                opt);
  FREE(gr, opt);
  for (int rows = 5; rows >= 1; rows -= 4) {
    double xv[15];
    for (int i = 0; i < rows * 3; i++)
      xv[i] = 0.3 * (i % 7) - 0.9;
    kiln_tensor *t = kt_tensor(KILN_FLOAT32, 2, (int64_t[]){rows, 3}, xv);
    check_values(ctx, 1, &x, (const kiln_tensor *[]){t}, 2, g, &OPT);
    kiln_tensor_free(t);
  }
  kiln_function_free(f);
  /* a * c with both dynamic: c's gradient is sum_like(c * 0 + a, c), which
  ** sums rows when c has one row and a has four: it stays */
  kiln_node *a = kiln_dmatrix(ctx, "a"), *c = kiln_dmatrix(ctx, "c"), *gc;
  ck_assert_int_eq(kiln_grad(kiln_sum(kiln_mul(a, c)), 1, &c, &gc, 0), KILN_OK);
  f = compile(ctx, "ac", 2, (kiln_node *[]){a, c}, 1, &gc, 0, NULL, &OPT);
  opt = kt_dump(f, "opt");
  ck_assert_msg(count_lines(opt, "= sum_like(", 0) == 1, "the sum_like must stay:\n%s", opt);
  free(opt);
  kiln_tensor *av =
      kt_tensor(KILN_FLOAT64, 2, (int64_t[]){4, 2}, (double[]){1, 2, 3, 4, 5, 6, 7, 8});
  kiln_tensor *cv = kt_tensor(KILN_FLOAT64, 2, (int64_t[]){1, 2}, (double[]){9, 9});
  const kiln_tensor *r;
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *[]){av, cv}, &r), KILN_OK);
  /* numpy: the gradient of sum(a * c) wrt c of shape (1, 2) is a.sum(0, keepdims) = [[16, 20]] */
  ck_assert_int_eq(kiln_tensor_rank(r), 2);
  ck_assert_int_eq(kiln_tensor_dim(r, 0), 1);
  ck_assert(kiln_tensor_get(r, 0) == 16.0 && kiln_tensor_get(r, 1) == 20.0);
  check_values(ctx, 2, (kiln_node *[]){a, c}, (const kiln_tensor *[]){av, cv}, 1, &gc, &OPT);
  TFREE(av, cv);
  kiln_function_free(f);
  kiln_ctx_free(ctx);
}
END_TEST

/* cast(cast(x, wider), back) -> x only when the middle dtype holds every
** value of x: int16 -> float32 and bool -> float64 go, int32 -> float32
** (2^24 + 1) and float64 -> float32 (0.1) stay. */
START_TEST(simplify_cast_roundtrip) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *w = kiln_wvector(ctx, "w"), *i = kiln_ivector(ctx, "i"), *d = kiln_dvector(ctx, "d");
  kiln_node *b = kiln_input(ctx, "b", KILN_BOOL, 1, NULL);
  kiln_node *out[] = {kiln_cast(kiln_cast(w, KILN_FLOAT32), KILN_INT16),
                      kiln_cast(kiln_cast(b, KILN_FLOAT64), KILN_BOOL),
                      kiln_cast(kiln_cast(i, KILN_FLOAT32), KILN_INT32),
                      kiln_cast(kiln_cast(d, KILN_FLOAT32), KILN_FLOAT64)};
  kiln_node *in[] = {w, b, i, d};
  kiln_function *f = compile(ctx, "f", 4, in, 4, out, 0, NULL, &OPT);
  char *g = kt_dump(f, "graph"), *opt = kt_dump(f, "opt");
  ck_assert_int_eq(count_lines(g, "= cast{", 0), 8);
  /* the two exact round trips are gone, the two inexact ones stay */
  ck_assert_msg(count_lines(opt, "= cast{", 0) == 4 && count_lines(opt, "= cast{int16}", 0) == 0 &&
                    count_lines(opt, "= cast{bool}", 0) == 0,
                "cast round trips:\n%s", opt);
  FREE(g, opt);
  kiln_tensor *v[] = {
      kt_tensor(KILN_INT16, 1, (int64_t[]){3}, (double[]){-32768, 32767, 7}),
      kt_tensor(KILN_BOOL, 1, (int64_t[]){2}, (double[]){1, 0}),
      kt_tensor(KILN_INT32, 1, (int64_t[]){3}, (double[]){16777217, 2147483647, -3}),
      kt_tensor(KILN_FLOAT64, 1, (int64_t[]){3}, (double[]){0.1, 1e300, -0.0})};
  check_values(ctx, 4, in, (const kiln_tensor *const *)v, 4, out, &OPT);
  kiln_tensor *r[4];
  run(ctx, f, (const kiln_tensor *const *)v, 4, r);
  same_bits(r[0], v[0], "int16 round trip and x");
  same_bits(r[1], v[1], "bool round trip and x");
  const int32_t *ri = kiln_tensor_data(r[2]);
  const double *rd = kiln_tensor_data(r[3]);
  /* numpy: float32(16777217) is 16777216; float32(2147483647) is 2^31, saturating to INT32_MAX */
  ck_assert(ri[0] == 16777216 && ri[1] == INT32_MAX && ri[2] == -3);
  ck_assert(rd[0] == (double)0.1f && rd[1] == INFINITY && rd[2] == 0.0 && signbit(rd[2]));
  free_all(4, r);
  free_all(4, v);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(simplify_leaves_inexact) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *one11 = kiln_const(ctx, KILN_FLOAT64, 2, (int64_t[]){1, 1}, (double[]){1.0});
  kiln_node *out[] = {kiln_add(x, kiln_lit(ctx, 0.0)), kiln_mul(x, kiln_lit(ctx, 0.0)),
                      kiln_sub(x, x), kiln_mul(x, one11)};
  kiln_function *f = compile(ctx, "f", 1, &x, 4, out, 0, NULL, &OPT);
  char *opt = kt_dump(f, "opt");
  ck_assert_msg(count_lines(opt, "= add(", 0) == 1 && count_lines(opt, "= mul(", 0) == 2 &&
                    count_lines(opt, "= sub(", 0) == 1,
                "inexact rewrites fired without fast math:\n%s", opt);
  ck_assert_int_eq(count_lines(opt, "fast math", 0), 0);
  free(opt);
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){N_SPECIAL}, SPECIAL);
  check_values(ctx, 1, &x, (const kiln_tensor *[]){xv}, 4, out, &OPT);
  /* hand-computed (numpy): */
  kiln_tensor *r[4];
  run(ctx, f, (const kiln_tensor *[]){xv}, 4, r);
  const double *add0 = kiln_tensor_data(r[0]), *mul0 = kiln_tensor_data(r[1]),
               *subx = kiln_tensor_data(r[2]);
  ck_assert(add0[3] == 0.0 && !signbit(add0[3]));                /* -0.0 + 0.0 = +0.0 */
  ck_assert(mul0[1] == 0.0 && signbit(mul0[1]));                 /* -2 * 0 = -0.0 */
  ck_assert(isnan(mul0[4]) && isnan(mul0[5]) && isnan(mul0[6])); /* NaN, inf, -inf times 0 */
  ck_assert(isnan(subx[4]) && isnan(subx[5]) && isnan(subx[6])); /* x - x */
  ck_assert(subx[0] == 0.0 && !signbit(subx[0]));
  ck_assert_int_eq(kiln_tensor_rank(r[3]), 2);
  ck_assert_int_eq(kiln_tensor_dim(r[3], 0), 1);
  free_all(4, r);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(simplify_fast_math) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *out[] = {kiln_name(kiln_mul(x, kiln_lit(ctx, 0.0)), "xz"),
                      kiln_name(kiln_sub(x, x), "xx"),
                      kiln_name(kiln_add(x, kiln_lit(ctx, 0.0)), "xa")};
  kiln_function *f = compile(ctx, "f", 1, &x, 3, out, 0, NULL, &FAST);
  char *opt = kt_dump(f, "opt");
  ck_assert_msg(count_lines(opt, "= mul(", 0) == 0 && count_lines(opt, "= sub(", 0) == 0 &&
                    count_lines(opt, "= add(", 0) == 0,
                "fast math leaves an op:\n%s", opt);
  free(opt);
  /* both rules fire (CSE then merges their identical zeros, keeping the first) */
  char *simp = dump_pass(f, "simplify");
  ck_assert_int_ge(count_lines(simp, "[simplify (fast math): x * 0 -> 0]", 0), 1);
  ck_assert_int_ge(count_lines(simp, "[simplify (fast math): x - x -> 0]", 0), 1);
  free(simp);
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){N_SPECIAL}, SPECIAL);
  kiln_tensor *r[3];
  run(ctx, f, (const kiln_tensor *[]){xv}, 3, r);
  const double *mz = kiln_tensor_data(r[0]), *sx = kiln_tensor_data(r[1]),
               *ax = kiln_tensor_data(r[2]);
  for (int i = 0; i < N_SPECIAL; i++) {
    ck_assert_msg(mz[i] == 0.0 && !signbit(mz[i]), "fast x*0 [%d] = %g", i, mz[i]);
    ck_assert_msg(sx[i] == 0.0 && !signbit(sx[i]), "fast x-x [%d] = %g", i, sx[i]);
    /* x + 0 -> x: the bits of x, -0.0 included */
    ck_assert_msg(memcmp(&ax[i], &SPECIAL[i], 8) == 0 || (isnan(ax[i]) && isnan(SPECIAL[i])),
                  "fast x+0 [%d] = %g", i, ax[i]);
  }
  ck_assert_int_eq(kiln_tensor_dim(r[0], 0), N_SPECIAL);
  free_all(3, r);
  /* integers: x * 0 is exact, and under fast math gives zeros of the type */
  kiln_node *i = kiln_ivector(ctx, "i");
  kiln_node *iz = kiln_mul(i, kiln_lit(ctx, 0));
  kiln_tensor *iv = kt_tensor(KILN_INT32, 1, (int64_t[]){3}, (double[]){-5, 0, 2147483647});
  check_values(ctx, 1, &i, (const kiln_tensor *[]){iv}, 1, &iz, &FAST);
  TFREE(iv, xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ dce */

START_TEST(dce_drops_unused) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *unused_in = kiln_dvector(ctx, "unused");
  kiln_node *dead = kiln_name(kiln_log(x), "dead"); /* built, never used */
  ck_assert_ptr_nonnull(dead);
  /* exp(x * 1): after simplify the mul and the constant 1 are dead */
  kiln_node *y = kiln_add(kiln_exp(kiln_mul(x, kiln_lit(ctx, 1.0))), x);
  kiln_function *f = compile(ctx, "f", 2, (kiln_node *[]){x, unused_in}, 1, &y, 0, NULL, &OPT);
  char *g = kt_dump(f, "graph"), *opt = kt_dump(f, "opt");
  ck_assert_int_eq(count_lines(g, "'dead'", 0), 0);
  ck_assert_int_eq(count_lines(g, "'unused'", 0), 0);
  ck_assert_int_eq(count_lines(g, "const{1.0}", 0), 1);
  ck_assert_int_eq(n_nodes(g), 5);
  ck_assert_int_eq(count_lines(opt, "const{1.0}", 0), 0);
  ck_assert_int_eq(count_lines(opt, "= mul(", 0), 0);
  ck_assert_int_eq(n_nodes(opt), 3);
  for (int i = 0; i < kiln_function_n_dumps(f); i++) {
    const char *nm = kiln_function_dump_name(f, i);
    if (strcmp(nm, "graph") && strcmp(nm, "opt") && strncmp(nm, "pass.", 5)) continue;
    char *t = kt_dump(f, nm);
    check_no_dead_nodes(t, nm);
    free(t);
  }
  FREE(g, opt);
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){N_SPECIAL}, SPECIAL);
  kiln_tensor *uv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){2}, (double[]){1, 2});
  check_values(ctx, 2, (kiln_node *[]){x, unused_in}, (const kiln_tensor *[]){xv, uv}, 1, &y, &OPT);
  TFREE(xv, uv);
  kiln_ctx_free(ctx);
}
END_TEST

/* --------------------------------------------------------------- fusion */

static char *line_of_node(const char *text, int id) {
  char pre[32];
  snprintf(pre, sizeof pre, "%%%d = ", id);
  char *ln;
  for (int k = 0; (ln = nth_line(text, k)) != NULL; k++) {
    if (strncmp(ln, pre, strlen(pre)) == 0) return ln;
    free(ln);
  }
  ck_abort_msg("no node %%%d in:\n%s", id, text);
  return NULL;
}

static void assert_sched(const char *text, const char *op, const char *mark) {
  int id = node_id(text, op);
  char *ln = line_of_node(text, id);
  ck_assert_msg(strstr(ln, mark), "%s should be %s: %s\n%s", op, mark, ln, text);
  free(ln);
}

START_TEST(fusion_marks) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x"), *s = kiln_dscalar(ctx, "s");
  /* exp(x + 1): add fused into the exp kernel; s * 2: a scalar; sum(sqr(x)): sqr fused into the
   * reduction */
  kiln_node *out[] = {kiln_exp(kiln_add(x, kiln_lit(ctx, 1.0))), kiln_mul(s, kiln_lit(ctx, 2.0)),
                      kiln_sum(kiln_sqr(x))};
  kiln_function *f = compile(ctx, "f", 2, (kiln_node *[]){x, s}, 3, out, 0, NULL, &OPT);
  char *g = kt_dump(f, "graph"), *fe = dump_pass(f, "fuse_elemwise"),
       *fr = dump_pass(f, "fuse_reduce"), *opt = kt_dump(f, "opt"), *plan = kt_dump(f, "plan");
  ck_assert_int_eq(count_lines(g, "<", 0), 0); /* no schedule yet */
  assert_sched(opt, "= add(", "<fused>");
  assert_sched(opt, "= exp(", "<kernel>");
  assert_sched(opt, "= mul(", "<scalar>");
  assert_sched(opt, "= sqr(", "<fused>");
  assert_sched(opt, "= sum{", "<kernel>");
  /* leaves carry no mark */
  char *xl = line_of_node(opt, node_id(opt, "'x'"));
  ck_assert_msg(!strchr(xl, '<'), "a leaf is marked: %s", xl);
  free(xl);
  /* the elementwise pass leaves the reduction's producer as its own kernel */
  assert_sched(fe, "= sqr(", "<kernel>");
  assert_sched(fr, "= sqr(", "<fused>");
  ck_assert_int_eq(count_lines(plan, "kernel ", 1), 2);
  ck_assert_int_eq(count_lines(plan, "scalar ", 1), 1);
  FREE(g, fe, fr, opt, plan);
  /* unoptimized: nothing fused, every rank>0 node its own kernel */
  kiln_function *fn = compile(ctx, "n", 2, (kiln_node *[]){x, s}, 3, out, 0, NULL, &NOOPT);
  opt = kt_dump(fn, "opt");
  plan = kt_dump(fn, "plan");
  ck_assert_int_eq(count_lines(opt, "<fused>", 0), 0);
  ck_assert_int_eq(count_lines(opt, "<kernel>", 0), 4); /* add exp sqr sum */
  ck_assert_int_eq(count_lines(plan, "kernel ", 1), 4);
  ck_assert_int_eq(kiln_function_n_dumps(fn),
                   7 + 1); /* graph, pass.01.schedule, opt, plan, dot, ll, opt.ll, s */
  ck_assert_ptr_nonnull(pass_stage(fn, "schedule"));
  FREE(opt, plan);
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){N_SPECIAL}, SPECIAL);
  kiln_tensor *sv = kt_tensor(KILN_FLOAT64, 0, NULL, (double[]){-0.0});
  check_values(ctx, 2, (kiln_node *[]){x, s}, (const kiln_tensor *[]){xv, sv}, 3, out, &OPT);
  TFREE(xv, sv);
  kiln_ctx_free(ctx);
}
END_TEST

/* A cheap node used twice is recomputed in both kernels; an expensive one is stored. */
START_TEST(fusion_multi_use) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *a = kiln_name(kiln_add(x, kiln_lit(ctx, 1.0)), "cheap");
  kiln_node *e = kiln_name(kiln_exp(x), "costly");
  kiln_node *out[] = {kiln_mul(a, e), kiln_sub(a, e)};
  kiln_function *f = compile(ctx, "f", 1, &x, 2, out, 0, NULL, &OPT);
  char *opt = kt_dump(f, "opt");
  assert_sched(opt, "'cheap'", "<fused>");
  assert_sched(opt, "'costly'", "<kernel>");
  free(opt);
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){N_SPECIAL}, SPECIAL);
  check_values(ctx, 1, &x, (const kiln_tensor *[]){xv}, 2, out, &OPT);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* -------------------------------------------------------------- inplace */

START_TEST(inplace_seed_update) {
  kiln_ctx *ctx = kiln_ctx_new();
  seed_graph s;
  kiln_function *f = compile_seed(ctx, &s, "f", &OPT);
  char *before = dump_pass(f, "fuse_reduce"), *after = dump_pass(f, "inplace"),
       *plan = kt_dump(f, "plan");
  ck_assert_int_eq(count_lines(before, "in place", 0), 0);
  ck_assert_int_eq(count_lines(after, "<kernel, in place>", 0), 1);
  /* it is the update's node */
  char *upd = line_with(after, "update 'W' <- %");
  int id = -1;
  ck_assert(upd && sscanf(strstr(upd, "<- %"), "<- %%%d", &id) == 1);
  char *ln = line_of_node(after, id);
  ck_assert_msg(strstr(ln, "= sub(") && strstr(ln, "<kernel, in place>"), "update node: %s", ln);
  ck_assert_int_eq(count_lines(plan, "-> in place into 'W'", 0), 1);
  ck_assert_int_eq(count_lines(plan, "(in place)", 0), 1);
  FREE(upd, ln, before, after, plan);
  kiln_ctx_free(ctx);
}
END_TEST

/* Is the update of the variable named var marked in place in the text? */
static int update_in_place(const char *text, const char *var) {
  char pre[64];
  snprintf(pre, sizeof pre, "update '%s' <- %%", var);
  char *u = line_with(text, pre);
  int id = -1;
  ck_assert_msg(u && sscanf(strstr(u, "<- %"), "<- %%%d", &id) == 1, "no update of %s:\n%s", var,
                text);
  char *ln = line_of_node(text, id);
  int r = strstr(ln, "in place") != NULL;
  FREE(ln, u);
  return r;
}

/* An update value that is also an output, or read by a later kernel, is not
** written in place; none is without optimization. Values stay right. */
START_TEST(inplace_refused) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dvector(ctx, "x");
  kiln_node *A = kiln_shared(ctx, "A", KILN_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3});
  kiln_node *B = kiln_shared(ctx, "B", KILN_FLOAT64, 1, (int64_t[]){3}, (double[]){4, 5, 6});
  kiln_node *C = kiln_shared(ctx, "C", KILN_FLOAT64, 1, (int64_t[]){3}, (double[]){7, 8, 9});
  kiln_node *na = kiln_add(A, x);                  /* also an output */
  kiln_node *nb = kiln_mul(B, kiln_lit(ctx, 2.0)); /* B is read after: by sum(B) */
  kiln_node *nc =
      kiln_sub(C, kiln_sum(kiln_mul(C, x))); /* C read by an earlier reduction only: ok */
  kiln_node *out[] = {na, kiln_add(kiln_sum(nb), kiln_sum(B))};
  kiln_update u[] = {{A, na}, {B, nb}, {C, nc}};
  kiln_tensor *xv = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){3}, (double[]){0.5, -1, 2});
  const kiln_tensor *in[] = {xv};
  kiln_node *sh[] = {A, B, C};
  kiln_tensor *init[3], *ref[5];
  for (int k = 0; k < 3; k++)
    init[k] = copy_tensor(kiln_shared_value(sh[k]));
  kiln_node *refout[] = {out[0], out[1], na, nb, nc};
  ck_assert_int_eq(kl_ref_run(ctx, 1, &x, in, 5, refout, ref), KILN_OK);
  for (int pass = 0; pass < 2; pass++) {
    for (int k = 0; k < 3; k++)
      ck_assert_int_eq(kiln_shared_set(sh[k], init[k]), KILN_OK);
    kiln_function *f = compile(ctx, "f", 1, &x, 2, out, 3, u, pass ? &NOOPT : &OPT);
    char *opt = kt_dump(f, "opt");
    if (pass)
      ck_assert_int_eq(count_lines(opt, "in place", 0), 0);
    else {
      ck_assert_msg(!update_in_place(opt, "A"), "A's new value is an output:\n%s", opt);
      ck_assert_msg(update_in_place(opt, "C"), "C's update should be in place:\n%s", opt);
    }
    free(opt);
    kiln_tensor *r[2];
    run(ctx, f, in, 2, r);
    same_bits(r[0], ref[0], "output 0 and reference");
    same_bits(r[1], ref[1], "output 1 and reference");
    for (int k = 0; k < 3; k++)
      same_bits(kiln_shared_value(sh[k]), ref[2 + k], "update and reference");
    free_all(2, r);
  }
  free_all(3, init);
  free_all(5, ref);
  kiln_tensor_free(xv);
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- seed */

START_TEST(seed_plan_two_kernels) {
  kiln_ctx *ctx = kiln_ctx_new();
  seed_graph s;
  kiln_function *f = compile_seed(ctx, &s, "f", &OPT);
  char *plan = kt_dump(f, "plan");
  int kernels = count_lines(plan, "kernel ", 1), scalars = count_lines(plan, "scalar ", 1);
  int other = count_lines(plan, "", 1) - kernels - scalars - count_lines(plan, "buf ", 1) -
              count_lines(plan, "update ", 1);
  ck_assert_msg(kernels == 2 && scalars == 4 && other == 0,
                "seed plan: %d kernels, %d scalars, %d other lines:\n%s", kernels, scalars, other,
                plan);
  ck_assert_int_eq(count_lines(plan, "reduce loop", 0), 1);
  ck_assert_int_eq(count_lines(plan, "elementwise loop", 0), 1);
  free(plan);
  kiln_ctx_free(ctx);
}
END_TEST

static int count_substr(const char *text, const char *sub) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, sub)) != NULL; p += strlen(sub))
    n++;
  return n;
}

/* Lines that are basic-block labels named nK.loop, nK.loop2, ... (K: the
** node whose kernel the loop belongs to) */
static int loop_headers(const char *ir) {
  int n = 0;
  char *ln;
  for (int k = 0; (ln = nth_line(ir, k)) != NULL; k++) {
    const char *q = ln;
    if (*q == 'n') {
      q++;
      while (*q >= '0' && *q <= '9')
        q++;
      q = *q == '.' ? q + 1 : ln;
    }
    if (q != ln && strncmp(q, "loop", 4) == 0) {
      const char *p = q + 4;
      while (*p >= '0' && *p <= '9')
        p++;
      if (*p == ':') n++;
    }
    free(ln);
  }
  return n;
}

START_TEST(seed_llvm_ir) {
  kiln_ctx *ctx = kiln_ctx_new();
  seed_graph s;
  kiln_function *f = compile_seed(ctx, &s, "f", &OPT);
  char *ll = kt_dump(f, "ll"), *opt = kt_dump(f, "opt.ll");
  /* The fast step has each of the two kernels' loop nests once (contiguous:
  ** it runs only while x's size is not 1), the sum, along a static axis
  ** shorter than its 16 lanes, as a tail loop alone: 2 loop headers before
  ** LLVM. W has a static size of 4, so LLVM unrolls them all: no loop is
  ** left after LLVM's passes (at most two may be). */
  ck_assert_msg(loop_headers(ll) == 2, "pre-LLVM IR has %d loop headers:\n%s", loop_headers(ll),
                ll);
  ck_assert_msg(count_substr(opt, "!llvm.loop") <= 2, "more than two loops after LLVM:\n%s", opt);
  ck_assert_int_eq(count_lines(opt, "define ", 1), 1);
  ck_assert_int_eq(count_lines(opt, "define noundef i64 @kiln_step_", 1), 1);
  ck_assert_msg(count_substr(opt, "call") == 0, "a call in the optimized IR:\n%s", opt);
  ck_assert_msg(count_substr(opt, "alloca") == 0, "an alloca in the optimized IR:\n%s", opt);
  ck_assert_msg(count_substr(opt, "malloc") == 0, "malloc in the optimized IR:\n%s", opt);
  ck_assert_int_eq(count_lines(opt, "declare ", 1), 0);
  FREE(ll, opt);
  /* A call with x of size 1 (it broadcasts against W) needs the general
  ** step, compiled then: its text follows the fast step's, with each kernel
  ** twice (the broadcasting version besides): 4 loop headers. By hand:
  ** y = 2 * (0.1 + 0.25 + 0.15 + 0.3) = 1.6, the gradient of (1 - y)^2 is
  ** -2 * (1 - 1.6) * 2 = 2.4 for every W[i], so W loses 0.24. */
  kiln_tensor *in[2] = {kiln_tensor_new(KILN_FLOAT32, 1, (int64_t[]){1}, (float[]){2}),
                        kiln_tensor_new(KILN_FLOAT32, 0, NULL, (float[]){1})};
  const kiln_tensor *out[1];
  ck_assert_int_eq(kiln_call(f, (const kiln_tensor *const *)in, out), KILN_OK);
  ck_assert_double_eq_tol(((const double *)kiln_tensor_data(out[0]))[0], 1.6, 1e-12);
  const double *w = kiln_tensor_data(kiln_shared_value(s.W));
  const double w0[4] = {0.1, 0.25, 0.15, 0.3};
  for (int i = 0; i < 4; i++)
    ck_assert_double_eq_tol(w[i], w0[i] - 0.24, 1e-12);
  ll = kt_dump(f, "ll");
  const char *general = strstr(ll, "; ---- kiln: the general step");
  ck_assert_msg(general != NULL, "no general step after a call with x of size 1:\n%s", ll);
  ck_assert_int_eq(loop_headers(general), 4);
  ck_assert_int_eq(loop_headers(ll), 6);
  kiln_tensor_free(in[0]);
  kiln_tensor_free(in[1]);
  free(ll);
  /* unoptimized: one loop nest per rank>0 kernel: cast, mul, sum, broadcast, mul, cast, mul, sub */
  kiln_function *fn = compile_seed(ctx, &s, "n", &NOOPT);
  char *plan = kt_dump(fn, "plan");
  ll = kt_dump(fn, "ll");
  int k = count_lines(plan, "kernel ", 1);
  ck_assert_int_gt(k, 2);
  /* every kernel is a rank-1 loop nest (the fast step has one version of each) */
  ck_assert_int_ge(loop_headers(ll), k);
  FREE(plan, ll);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(seed_node_counts) {
  kiln_ctx *ctx = kiln_ctx_new();
  seed_graph s;
  kiln_function *f = compile_seed(ctx, &s, "f", &OPT);
  char *g = kt_dump(f, "graph"), *opt = kt_dump(f, "opt");
  int before = n_nodes(g), after = n_nodes(opt);
  printf("seed step: %d nodes as built (stage graph), %d after the pipeline (stage opt)\n", before,
         after);
  fflush(stdout);
  /* as built: x, target, W, cast, mul, sum, cast, sub, grad: 1.0, mul, 2.0,
  ** mul, neg, broadcast, mul, 0.1, mul, sub = 18. The pipeline removes the
  ** gradient seed's 1.0 * (target - y) (simplify, after canonicalize moves
  ** the 1.0 right) and with it the constant: 16. */
  ck_assert_int_eq(before, 18);
  ck_assert_int_eq(after, 16);
  ck_assert_int_eq(count_lines(g, "const{1.0}", 0), 1);
  ck_assert_int_eq(count_lines(opt, "const{1.0}", 0), 0);
  for (int i = 0; i < kiln_function_n_dumps(f); i++) { /* no stage has a dead node */
    const char *nm = kiln_function_dump_name(f, i);
    if (strcmp(nm, "graph") && strcmp(nm, "opt") && strncmp(nm, "pass.", 5)) continue;
    char *t = kt_dump(f, nm);
    check_no_dead_nodes(t, nm);
    free(t);
  }
  FREE(g, opt);
  kiln_ctx_free(ctx);
}
END_TEST

/* Ten steps of the seed: optimized, unoptimized and reference agree on
** every output and on W after each step. */
START_TEST(seed_steps_agree) {
  kiln_ctx *ctx = kiln_ctx_new();
  seed_graph so, sn;
  kiln_function *fo = compile_seed(ctx, &so, "fo", &OPT);
  kiln_function *fn = compile_seed(ctx, &sn, "fn", &NOOPT);
  kiln_tensor *xv = kt_tensor(KILN_FLOAT32, 1, (int64_t[]){4}, (double[]){1, 1, 1, 1});
  kiln_tensor *tv = kt_tensor(KILN_FLOAT32, 0, NULL, (double[]){100});
  const kiln_tensor *in[] = {xv, tv};
  for (int i = 0; i < 10; i++) {
    kiln_tensor *ref[2];
    ck_assert_int_eq(kl_ref_run(ctx, 2, (kiln_node *[]){so.x, so.target}, in, 2,
                                (kiln_node *[]){so.y, so.W_updated}, ref),
                     KILN_OK);
    kiln_tensor *ro, *rn;
    run(ctx, fo, in, 1, &ro);
    run(ctx, fn, in, 1, &rn);
    same_bits(ro, rn, "seed output, optimized and unoptimized");
    same_bits(ro, ref[0], "seed output, optimized and reference");
    same_bits(kiln_shared_value(so.W), kiln_shared_value(sn.W), "W, optimized and unoptimized");
    same_bits(kiln_shared_value(so.W), ref[1], "W, optimized and reference");
    TFREE(ro, rn);
    free_all(2, ref);
  }
  TFREE(xv, tv);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------- verifier */

START_TEST(verifier_clean) {
  ck_assert_int_eq(setenv("KILN_VERIFY", "1", 1), 0);
  kiln_ctx *ctx = kiln_ctx_new();
  seed_graph s;
  kiln_function *f = compile_seed(ctx, &s, "f", &OPT);
  ck_assert_ptr_nonnull(f);
  ck_assert_ptr_nonnull(compile_seed(ctx, &s, "g", &FAST));
  kiln_node *x = kiln_dmatrix(ctx, "x");
  kiln_node *y = kiln_sub(kiln_mul(x, kiln_lit(ctx, 0.0)), kiln_sub(x, x));
  kiln_node *out[] = {y, kiln_mean_axis(kiln_add(y, kiln_scalar(ctx, KILN_FLOAT64, 3.0)), 1)};
  ck_assert_ptr_nonnull(compile(ctx, "h", 1, &x, 2, out, 0, NULL, &FAST));
  ck_assert_ptr_nonnull(compile(ctx, "i", 1, &x, 2, out, 0, NULL, &OPT));
  ck_assert_int_eq(kiln_errcode(ctx), KILN_OK);
  /* the verifier can fail: on a graph whose order is broken */
  kl_fgraph g;
  kiln_node *z = kiln_exp(kiln_add(x, kiln_lit(ctx, 1.0)));
  ck_assert_int_eq(kl_fg_build(&g, ctx, 1, &x, 1, &z, 0, NULL), KILN_OK);
  ck_assert_int_eq(kl_fg_sort(&g), KILN_OK);
  ck_assert_int_eq(kl_fg_verify(&g, "test"), KILN_OK);
  kiln_node *t = g.nodes[0];
  g.nodes[0] = g.nodes[g.n - 1];
  g.nodes[g.n - 1] = t;
  ck_assert_int_eq(kl_fg_verify(&g, "test"), KILN_INTERNAL);
  ck_assert_msg(strstr(kiln_errmsg(ctx), "internal: graph invalid after test"), "%s",
                kiln_errmsg(ctx));
  kl_fg_free(&g);
  kiln_clear_error(ctx);
  unsetenv("KILN_VERIFY");
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- dumps */

static void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

START_TEST(dump_dir_files) {
  char dir[] = "/tmp/kiln_dumps_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  ck_assert_int_eq(setenv("KILN_DUMP_DIR", dir, 1), 0);
  kiln_ctx *ctx = kiln_ctx_new();
  seed_graph s;
  kiln_function *f = compile_seed(ctx, &s, "step", &OPT);
  unsetenv("KILN_DUMP_DIR");
  static const char *const want[] = {"graph", "opt", "plan", "ll", "opt.ll", "s", "dot"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    char p[4096];
    snprintf(p, sizeof p, "%s/step.%s", dir, want[i]);
    char *text = kt_read_file(p);
    ck_assert_msg(text != NULL, "%s was not written", p);
    ck_assert_msg(strlen(text) > 10, "%s is empty", p);
    char *mine = kt_dump(f, want[i]);
    ck_assert_msg(strcmp(text, mine) == 0, "%s differs from kiln_function_dump_named", p);
    FREE(mine, text);
  }
  int passes = 0, files = 0;
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    files++;
    if (strncmp(e->d_name, "step.pass.", 10) == 0) passes++;
  }
  closedir(d);
  ck_assert_int_ge(passes, 1);
  ck_assert_int_eq(files, 7 + passes);
  ck_assert_int_eq(files, kiln_function_n_dumps(f));
  /* the graph file shows the seed */
  char p[4096];
  snprintf(p, sizeof p, "%s/step.graph", dir);
  char *g = kt_read_file(p);
  ck_assert_msg(strstr(g, "'W'") && strstr(g, "update 'W' <- %"), "%s", g);
  free(g);
  snprintf(p, sizeof p, "%s/step.dot", dir);
  g = kt_read_file(p);
  ck_assert_msg(strncmp(g, "digraph \"step\"", 14) == 0, "%s", g);
  free(g);
  rm_tree(dir);
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(dump_names) {
  kiln_ctx *ctx = kiln_ctx_new();
  seed_graph s;
  kiln_function *f = compile_seed(ctx, &s, "f", &OPT);
  int n = kiln_function_n_dumps(f);
  static const char *const fixed[] = {"graph", "opt", "plan", "dot", "ll", "opt.ll", "s"};
  int seen[7] = {0}, passes = 0;
  for (int i = 0; i < n; i++) {
    const char *nm = kiln_function_dump_name(f, i);
    ck_assert_ptr_nonnull(nm);
    int known = 0;
    for (int k = 0; k < 7; k++)
      if (!strcmp(nm, fixed[k])) seen[k]++, known = 1;
    if (!known) {
      /* pass.NN.<name>, numbered from 01 in order */
      int num = -1;
      char pass[64];
      ck_assert_msg(sscanf(nm, "pass.%2d.%63s", &num, pass) == 2, "unexpected stage '%s'", nm);
      ck_assert_int_eq(num, ++passes);
      static const char *const pn[] = {"canonicalize", "constant_fold", "cse",         "simplify",
                                       "dce",          "fuse_elemwise", "fuse_reduce", "inplace"};
      int ok = 0;
      for (size_t k = 0; k < sizeof pn / sizeof pn[0]; k++)
        ok |= !strcmp(pass, pn[k]);
      ck_assert_msg(ok, "unknown pass in '%s'", nm);
    }
    char *t = kt_dump(f, nm);
    ck_assert_msg(strlen(t) > 0, "stage %s is empty", nm);
    free(t);
  }
  for (int k = 0; k < 7; k++)
    ck_assert_msg(seen[k] == 1, "stage %s listed %d times", fixed[k], seen[k]);
  ck_assert_int_eq(n, 7 + passes);
  ck_assert_int_eq(passes, 5); /* canonicalize, simplify, fuse_elemwise, fuse_reduce, inplace */
  ck_assert_ptr_null(kiln_function_dump_name(f, n));
  ck_assert_ptr_null(kiln_function_dump_name(f, -1));
  /* the enum and the names show the same text */
  static const char *const by_enum[KILN_N_STAGES] = {"graph", "ll",   "opt.ll", "s",
                                                     "opt",   "plan", "dot"};
  for (int k = 0; k < KILN_N_STAGES; k++) {
    char *buf = NULL, *named = kt_dump(f, by_enum[k]);
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    ck_assert_int_eq(kiln_function_dump(f, (kiln_stage)k, m), KILN_OK);
    fclose(m);
    ck_assert_str_eq(buf, named);
    FREE(buf, named);
  }
  /* unknown or bad names */
  FILE *null = fopen("/dev/null", "w");
  ck_assert_int_eq(kiln_function_dump_named(f, "pass.99.nothing", null), KILN_MISUSE);
  ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  ck_assert_msg(strstr(kiln_errmsg(ctx), "pass.99.nothing"), "%s", kiln_errmsg(ctx));
  ck_assert_int_eq(kiln_function_dump_named(f, "", null), KILN_MISUSE);
  ck_assert_int_eq(kiln_function_dump_named(f, "Graph", null), KILN_MISUSE);
  ck_assert_int_eq(kiln_function_dump_named(f, NULL, null), KILN_MISUSE);
  ck_assert_int_eq(kiln_function_dump(f, KILN_N_STAGES, null), KILN_MISUSE);
  ck_assert_int_eq(kiln_function_dump_named(f, "graph", null), KILN_OK);
  fclose(null);
  kiln_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------- constant folding */

/* Test values for each dtype, as raw elements. */
static const double F_VALS[] = {0.0, -0.0,     1.0,       -1.0,  2.5,      -3.75, 0.5,   3.0,
                                NAN, INFINITY, -INFINITY, 1e308, 4.9e-324, 710.0, -745.5};
static const float F32_VALS[] = {0.0f, -0.0f,    1.0f,      -1.0f, 2.5f,   -3.75f, 0.5f,   3.0f,
                                 NAN,  INFINITY, -INFINITY, 3e38f, 1e-45f, 89.0f,  -104.0f};
static const int8_t I8_VALS[] = {0, 1, -1, 2, -2, 3, 5, -7, 100, 127, -128};
static const int16_t I16_VALS[] = {0, 1, -1, 2, -3, 7, 181, 255, 32767, -32768};
static const int32_t I32_VALS[] = {0, 1, -1, 2, -3, 7, 46341, 65536, INT32_MAX, INT32_MIN};
static const int64_t I64_VALS[] = {0,         1,        -1, 2, -3, 7, 3037000500LL, 4294967296LL,
                                   INT64_MAX, INT64_MIN};
static const uint8_t U8_VALS[] = {0, 1, 2, 3, 7, 16, 127, 128, 200, 255};
static const uint8_t B_VALS[] = {0, 1};

static const void *vals_of(kiln_dtype dt, int *n) {
#define V(a) (*n = (int)(sizeof a / sizeof a[0]), (const void *)a)
  switch (dt) {
  case KILN_BOOL: return V(B_VALS);
  case KILN_INT8: return V(I8_VALS);
  case KILN_INT16: return V(I16_VALS);
  case KILN_INT32: return V(I32_VALS);
  case KILN_INT64: return V(I64_VALS);
  case KILN_UINT8: return V(U8_VALS);
  case KILN_FLOAT32: return V(F32_VALS);
  default: return V(F_VALS);
  }
#undef V
}

/* Values of dt, n of them, cycling through the test values from start. */
static void *cycle(kiln_dtype dt, int n, int start) {
  int nv;
  const unsigned char *v = vals_of(dt, &nv);
  size_t es = kiln_dtype_size(dt);
  unsigned char *d = malloc((size_t)n * es + 1);
  for (int i = 0; i < n; i++)
    memcpy(d + (size_t)i * es, v + (size_t)((start + i) % nv) * es, es);
  return d;
}

/* Every node of the text is a constant, at least one made by the folder, and
** there are no more of them than outputs. */
static void assert_all_folded(const char *opt, int n_out, const char *what) {
  int n = n_nodes(opt), consts = count_lines(opt, "= const", 0);
  ck_assert_msg(n == consts && n >= 1 && n <= n_out, "%s: not everything folded:\n%s", what, opt);
  ck_assert_msg(count_lines(opt, "[constant_fold", 0) >= 1, "%s: no folded constant:\n%s", what,
                opt);
}

/* The outputs computed twice: folded (from kiln_const leaves, default
** options) and at run time (from kiln_input leaves, no_optimize). */
typedef kiln_node *(*build_fn)(kiln_ctx *ctx, kiln_node *const *leaf, int k);

typedef struct leafspec {
  kiln_dtype dt;
  int rank;
  int64_t shape[2];
  int start;
} leafspec;

/* Mismatches are collected over a whole test, so one bug does not hide the others. */
static int fold_bad;
static char fold_log[8192];

static void fold_mismatch(const char *what, const char *op, const kiln_tensor *a,
                          const kiln_tensor *b) {
  fold_bad++;
  size_t at = strlen(fold_log), es = kiln_dtype_size(kiln_tensor_dtype(a));
  int64_t first = -1;
  uint64_t ba = 0, bb = 0;
  for (int64_t i = 0; i < kiln_tensor_size(a) && i < kiln_tensor_size(b) && first < 0; i++)
    if (memcmp((const char *)kiln_tensor_data(a) + i * es,
               (const char *)kiln_tensor_data(b) + i * es, es)) {
      first = i;
      memcpy(&ba, (const char *)kiln_tensor_data(a) + i * es, es);
      memcpy(&bb, (const char *)kiln_tensor_data(b) + i * es, es);
    }
  if (at < sizeof fold_log - 300)
    snprintf(fold_log + at, sizeof fold_log - at,
             "  %s, %s: %s; first differing element %lld: folded %llx, run time %llx\n", what, op,
             kiln_dtype_name(kiln_tensor_dtype(a)), (long long)first, (unsigned long long)ba,
             (unsigned long long)bb);
}

static int fold_compare(int n_leaf, const leafspec *ls, int n_ops, build_fn build,
                        const char *const *names, const char *what) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *cl[4], *il[4], *fo[64], *fi[64];
  int opk[64];
  kiln_tensor *vals[4];
  for (int j = 0; j < n_leaf; j++) {
    int64_t size = 1;
    for (int d = 0; d < ls[j].rank; d++)
      size *= ls[j].shape[d];
    void *data = cycle(ls[j].dt, (int)size, ls[j].start);
    cl[j] = kiln_const(ctx, ls[j].dt, ls[j].rank, ls[j].shape, data);
    il[j] = kiln_input(ctx, "in", ls[j].dt, ls[j].rank, ls[j].shape);
    vals[j] = kiln_tensor_new(ls[j].dt, ls[j].rank, ls[j].shape, data);
    free(data);
  }
  int n = 0;
  for (int k = 0; k < n_ops; k++) {
    kiln_node *a = build(ctx, cl, k);
    if (!a) { /* not defined for these dtypes: the run-time build must agree */
      kiln_status st = kiln_errcode(ctx);
      ck_assert_msg(st == KILN_TYPE, "%s, %s: %s", what, names[k], kiln_errmsg(ctx));
      kiln_clear_error(ctx);
      ck_assert_msg(build(ctx, il, k) == NULL, "%s, %s: built on inputs, not on constants", what,
                    names[k]);
      kiln_clear_error(ctx);
      continue;
    }
    kiln_node *b = build(ctx, il, k);
    ck_assert_msg(b != NULL, "%s, %s: %s", what, names[k], kiln_errmsg(ctx));
    fo[n] = a;
    fi[n] = b;
    opk[n++] = k;
  }
  if (n == 0) {
    for (int j = 0; j < n_leaf; j++)
      kiln_tensor_free(vals[j]);
    kiln_ctx_free(ctx);
    return 0;
  }
  kiln_function *ff = compile(ctx, "folded", 0, NULL, n, fo, 0, NULL, &OPT);
  kiln_function *fr = compile(ctx, "runtime", n_leaf, il, n, fi, 0, NULL, &NOOPT);
  char *opt = kt_dump(ff, "opt");
  assert_all_folded(opt, n, what);
  free(opt);
  const kiln_tensor *ro[64], *rr[64];
  ck_assert_msg(kiln_call(ff, NULL, ro) == KILN_OK, "%s: %s", what, kiln_errmsg(ctx));
  kiln_tensor *keep[64];
  for (int k = 0; k < n; k++)
    keep[k] = copy_tensor(ro[k]);
  ck_assert_msg(kiln_call(fr, (const kiln_tensor *const *)vals, rr) == KILN_OK, "%s: %s", what,
                kiln_errmsg(ctx));
  for (int k = 0; k < n; k++)
    if (!kt_same_bits(keep[k], rr[k])) fold_mismatch(what, names[opk[k]], keep[k], rr[k]);
  free_all(n, keep);
  for (int j = 0; j < n_leaf; j++)
    kiln_tensor_free(vals[j]);
  kiln_ctx_free(ctx);
  return n;
}

static kiln_node *bin_op(kiln_node *a, kiln_node *b, int k) {
  switch (k) {
  case 0: return kiln_add(a, b);
  case 1: return kiln_sub(a, b);
  case 2: return kiln_mul(a, b);
  case 3: return kiln_div(a, b);
  case 4: return kiln_pow(a, b);
  case 5: return kiln_maximum(a, b);
  case 6: return kiln_minimum(a, b);
  case 7: return kiln_intdiv(a, b);
  case 8: return kiln_mod(a, b);
  default: return NULL;
  }
}

static kiln_node *binary_ops(kiln_ctx *ctx, kiln_node *const *l, int k) {
  if (k < 9) return bin_op(l[0], l[1], k);
  switch (k) {
  case 9: return kiln_dot(l[2], l[3]);  /* (3, 5) . (5,) */
  case 10: return kiln_dot(l[3], l[3]); /* vector . vector */
  default: return NULL;
  }
}
#define N_BINARY 11
static const char *const BINARY_NAMES[N_BINARY] = {
    "add",          "sub",     "mul",    "div", "pow",
    "maximum",      "minimum", "intdiv", "mod", "dot (3, 5).(5,)",
    "dot (5,).(5,)"};

/* Every binary op on every pair of dtypes (64 pairs: the mixed ones go
** through promotion casts, folded too), over the cross product of the test
** values: a column (n, 1) against a row (1, m). */
START_TEST(fold_binary_all_dtypes) {
  int total = 0;
  for (int a = 0; a < KILN_N_DTYPES; a++)
    for (int b = 0; b < KILN_N_DTYPES; b++) {
      int na, nb;
      vals_of((kiln_dtype)a, &na);
      vals_of((kiln_dtype)b, &nb);
      leafspec ls[4] = {{(kiln_dtype)a, 2, {na, 1}, 0},
                        {(kiln_dtype)b, 2, {1, nb}, 0},
                        {(kiln_dtype)a, 2, {3, 5}, 2},
                        {(kiln_dtype)b, 1, {5, 0}, 1}};
      char what[64];
      snprintf(what, sizeof what, "%s with %s", kiln_dtype_name((kiln_dtype)a),
               kiln_dtype_name((kiln_dtype)b));
      total += fold_compare(4, ls, N_BINARY, binary_ops, BINARY_NAMES, what);
    }
  printf("constant folding: %d binary op/dtype-pair outputs compared, %d differ\n", total,
         fold_bad);
  ck_assert_int_gt(total, 400);
  ck_assert_msg(fold_bad == 0,
                "%d folded outputs differ from the same op computed at run time:\n%s", fold_bad,
                fold_log);
}
END_TEST

static kiln_node *unary_ops(kiln_ctx *ctx, kiln_node *const *l, int k) {
  kiln_node *v = l[0], *m = l[1];
  switch (k) {
  case 0: return kiln_neg(v);
  case 1: return kiln_sqr(v);
  case 2: return kiln_sqrt(v);
  case 3: return kiln_exp(v);
  case 4: return kiln_log(v);
  case 5: return kiln_abs(v);
  case 6: return kiln_sum(v);
  case 7: return kiln_mean(v);
  case 8: return kiln_sum_axis(m, 0);
  case 9: return kiln_sum_axis(m, -1);
  case 10: return kiln_mean_axis(m, 0);
  case 11: return kiln_mean(m);
  case 12: return kiln_sum(l[2]); /* the finite values only */
  case 13: return kiln_mean(l[2]);
  case 14: return kiln_dot(m, l[3]);                       /* (3, 4) . (4, 2) */
  case 15: return kiln_dot(l[2], l[2]);                    /* finite vector . itself */
  case 16: return kiln_sum(kiln_sub(v, kiln_lit(ctx, 1))); /* a weak literal */
  case 17: return kiln_mul(m, kiln_lit(ctx, 0.5));
  default: return NULL;
  }
}
#define N_UNARY 18
/* clang-format off */
static const char *const UNARY_NAMES[N_UNARY] = {
    "neg", "sqr", "sqrt", "exp", "log", "abs", "sum", "mean", "sum_axis 0", "sum_axis -1",
    "mean_axis 0", "mean (matrix)", "sum (finite)", "mean (finite)", "dot (3, 4).(4, 2)",
    "dot (finite).(finite)", "sum(x - 1)", "x * 0.5"};
/* clang-format on */

START_TEST(fold_unary_reductions_all_dtypes) {
  int total = 0;
  for (int a = 0; a < KILN_N_DTYPES; a++) {
    int na;
    vals_of((kiln_dtype)a, &na);
    /* "finite": for floats, the test values before NaN */
    int nf = kl_dtype_is_float((kiln_dtype)a) ? 8 : na;
    leafspec ls[4] = {{(kiln_dtype)a, 1, {na, 0}, 0},
                      {(kiln_dtype)a, 2, {3, 4}, 3},
                      {(kiln_dtype)a, 1, {nf, 0}, 0},
                      {(kiln_dtype)a, 2, {4, 2}, 5}};
    total += fold_compare(4, ls, N_UNARY, unary_ops, UNARY_NAMES, kiln_dtype_name((kiln_dtype)a));
  }
  printf("constant folding: %d unary/reduction/dot outputs compared, %d differ\n", total, fold_bad);
  ck_assert_int_gt(total, 100);
  ck_assert_msg(fold_bad == 0,
                "%d folded outputs differ from the same op computed at run time:\n%s", fold_bad,
                fold_log);
}
END_TEST

/* One op on two scalar constants folds to exactly one constant line. */
START_TEST(fold_single_const) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *y = kiln_pow(kiln_scalar(ctx, KILN_INT32, -2), kiln_scalar(ctx, KILN_INT8, 3));
  kiln_function *f = compile(ctx, "f", 0, NULL, 1, &y, 0, NULL, &OPT);
  char *g = kt_dump(f, "graph"), *opt = kt_dump(f, "opt");
  ck_assert_int_eq(count_lines(g, "= pow(", 0), 1);
  ck_assert_int_eq(count_lines(g, "= cast{int32}(", 0), 1);
  ck_assert_int_eq(n_nodes(opt), 1);
  char *ln = nth_line(opt, 0);
  ck_assert_msg(strstr(ln, "= const{-8}() : int32 ()") && strstr(ln, "[constant_fold"), "%s", ln);
  FREE(ln, g, opt);
  const kiln_tensor *r;
  ck_assert_int_eq(kiln_call(f, NULL, &r), KILN_OK);
  ck_assert_int_eq(*(const int32_t *)kiln_tensor_data(r), -8);
  kiln_ctx_free(ctx);
}
END_TEST

/* Hand-computed numpy results, folded and at run time. */
typedef struct hand_case {
  const char *what;
  kiln_dtype a_dt, b_dt, out_dt;
  int op; /* index into binary_ops */
  int n;
  double a[8], b[8], want[8];
} hand_case;

/* clang-format off */
static const hand_case HAND[] = {
  {"int8 127 + 1 wraps", KILN_INT8, KILN_INT8, KILN_INT8, 0, 3, {127, -128, 100}, {1, -1, 100}, {-128, 127, -56}},
  {"uint8 0 - 1 wraps", KILN_UINT8, KILN_UINT8, KILN_UINT8, 1, 2, {0, 255}, {1, 255}, {255, 0}},
  {"int16 * wraps", KILN_INT16, KILN_INT16, KILN_INT16, 2, 2, {256, -32768}, {256, -1}, {0, -32768}},
  {"int pow, negative exponents", KILN_INT32, KILN_INT32, KILN_INT32, 4, 8,
   {2, -1, -1, 1, 0, -2, 3, 0}, {-1, -3, -4, -5, -1, -2, 2, 0}, {0, -1, 1, 1, 0, 0, 9, 1}},
  {"int8 pow wraps", KILN_INT8, KILN_INT8, KILN_INT8, 4, 3, {2, 3, -2}, {7, 5, 7}, {-128, -13, -128}},
  {"int / 0 is inf or nan", KILN_INT32, KILN_INT32, KILN_FLOAT64, 3, 4, {1, -1, 0, 7}, {0, 0, 0, 2},
   {INFINITY, -INFINITY, NAN, 3.5}},
  {"int8 / int8 is float64 (numpy true division)", KILN_INT8, KILN_INT8, KILN_FLOAT64, 3, 2,
   {1, -128}, {3, 0}, {1.0 / 3.0, -INFINITY}},
  {"int32 // (floor, by 0 gives 0, INT_MIN // -1 wraps)", KILN_INT32, KILN_INT32, KILN_INT32, 7, 6,
   {-2147483648.0, 7, -7, 7, -7, 5}, {-1, 0, 2, -2, -2, 0}, {-2147483648.0, 0, -4, -4, 3, 0}},
  {"int32 % (sign of divisor)", KILN_INT32, KILN_INT32, KILN_INT32, 8, 6,
   {-2147483648.0, 7, -7, 7, -7, 5}, {-1, 0, 2, -2, -2, 0}, {0, 0, 1, -1, -1, 0}},
  {"int8 -128 // -1 wraps", KILN_INT8, KILN_INT8, KILN_INT8, 7, 2, {-128, -128}, {-1, 3}, {-128, -43}},
  {"int64 minimum // -1 wraps", KILN_INT64, KILN_INT64, KILN_INT64, 7, 3,
   {-9223372036854775808.0, -9223372036854775808.0, -1}, {-1, 1, -9223372036854775808.0},
   {-9223372036854775808.0, -9223372036854775808.0, 0}},
  {"int64 % at the minimum", KILN_INT64, KILN_INT64, KILN_INT64, 8, 3,
   {-9223372036854775808.0, -9223372036854775808.0, -1}, {-1, 1, -9223372036854775808.0}, {0, 0, -1}},
  {"float maximum propagates NaN, first of equal zeros", KILN_FLOAT64, KILN_FLOAT64, KILN_FLOAT64, 5, 4,
   {NAN, 1, 0.0, -0.0}, {1, NAN, -0.0, 0.0}, {NAN, NAN, 0.0, -0.0}},
  {"float minimum", KILN_FLOAT32, KILN_FLOAT32, KILN_FLOAT32, 6, 4,
   {NAN, 1, 0.0, -0.0}, {1, NAN, -0.0, 0.0}, {NAN, NAN, 0.0, -0.0}},
  {"bool + bool is or", KILN_BOOL, KILN_BOOL, KILN_BOOL, 0, 3, {1, 1, 0}, {1, 0, 0}, {1, 1, 0}},
};
/* clang-format on */

START_TEST(fold_hand_computed) {
  const hand_case *h = &HAND[_i];
  kiln_ctx *ctx = kiln_ctx_new();
  int64_t n = h->n;
  kiln_tensor *av = kt_tensor(h->a_dt, 1, &n, h->a), *bv = kt_tensor(h->b_dt, 1, &n, h->b);
  kiln_tensor *want = kt_tensor(h->out_dt, 1, &n, h->want);
  kiln_node *ca = kiln_const(ctx, h->a_dt, 1, &n, kiln_tensor_data(av));
  kiln_node *cb = kiln_const(ctx, h->b_dt, 1, &n, kiln_tensor_data(bv));
  kiln_node *ia = kiln_input(ctx, "a", h->a_dt, 1, &n), *ib = kiln_input(ctx, "b", h->b_dt, 1, &n);
  kiln_node *fy = bin_op(ca, cb, h->op), *ry = bin_op(ia, ib, h->op);
  ck_assert_msg(fy && ry, "%s: %s", h->what, kiln_errmsg(ctx));
  kiln_function *ff = compile(ctx, "folded", 0, NULL, 1, &fy, 0, NULL, &OPT);
  kiln_function *fr = compile(ctx, "runtime", 2, (kiln_node *[]){ia, ib}, 1, &ry, 0, NULL, &NOOPT);
  char *opt = kt_dump(ff, "opt");
  ck_assert_msg(n_nodes(opt) == 1 && count_lines(opt, "[constant_fold", 0) == 1, "%s:\n%s", h->what,
                opt);
  free(opt);
  const kiln_tensor *r1, *r2;
  ck_assert_int_eq(kiln_call(ff, NULL, &r1), KILN_OK);
  kiln_tensor *folded = copy_tensor(r1);
  ck_assert_int_eq(kiln_call(fr, (const kiln_tensor *[]){av, bv}, &r2), KILN_OK);
  same_bits(folded, r2, h->what);
  ck_assert_int_eq(kiln_tensor_dtype(folded), h->out_dt);
  for (int i = 0; i < h->n; i++) {
    double got = kiln_tensor_get(folded, i), w = kiln_tensor_get(want, i);
    ck_assert_msg((isnan(w) && isnan(got)) || (got == w && signbit(got) == signbit(w)),
                  "%s: element %d is %.17g, numpy gives %.17g", h->what, i, got, w);
  }
  TFREE(folded, av, bv, want);
  kiln_ctx_free(ctx);
}
END_TEST

/* ----------------------------------------------------------------- main */

int main(void) {
  Suite *s = suite_create("passes");
  TCase *tc = tcase_create("passes");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, canonicalize_constant_right);
  tcase_add_test(tc, canonicalize_sub_constant);
  tcase_add_test(tc, canonicalize_sub_integer_wraps);
  tcase_add_test(tc, constant_fold_subgraph);
  tcase_add_test(tc, cse_merges_separate_builds);
  tcase_add_test(tc, cse_keeps_different_nodes);
  tcase_add_test(tc, simplify_exact_rules);
  tcase_add_test(tc, simplify_where_same_operands);
  tcase_add_test(tc, simplify_sum_like_same_shape);
  tcase_add_test(tc, simplify_add_zero_exact);
  tcase_add_test(tc, simplify_cast_roundtrip);
  tcase_add_test(tc, simplify_leaves_inexact);
  tcase_add_test(tc, simplify_fast_math);
  tcase_add_test(tc, dce_drops_unused);
  tcase_add_test(tc, fusion_marks);
  tcase_add_test(tc, fusion_multi_use);
  tcase_add_test(tc, inplace_seed_update);
  tcase_add_test(tc, inplace_refused);
  tcase_add_test(tc, seed_plan_two_kernels);
  tcase_add_test(tc, seed_llvm_ir);
  tcase_add_test(tc, seed_node_counts);
  tcase_add_test(tc, seed_steps_agree);
  tcase_add_test(tc, verifier_clean);
  tcase_add_test(tc, dump_dir_files);
  tcase_add_test(tc, dump_names);
  tcase_add_test(tc, fold_single_const);
  tcase_add_loop_test(tc, fold_hand_computed, 0, (int)(sizeof HAND / sizeof HAND[0]));
  tcase_add_test(tc, fold_binary_all_dtypes);
  tcase_add_test(tc, fold_unary_reductions_all_dtypes);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
