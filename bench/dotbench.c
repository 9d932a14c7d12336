/*
** dotbench.c -- the dot kernel alone: a (64, 64) . (64, 128) float32 product
** (W3's first layer) in Kiln against two plain C loops compiled with -O3
** -march=native -ffp-contract=off (this file's flags): the textbook i-j-p
** triple loop with a register accumulator, and the i-p-j order that GCC
** vectorizes across j. All three add the products for each output in
** increasing p from 0, so all three agree bit for bit (checked). Also the
** transposed forms the gradients use (built through kiln_grad).
** Figures are medians of 9 repeats of a timed batch.
** Usage: dotbench [M K N]
*/
#define _POSIX_C_SOURCE 200809L
#include <kiln.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void c_ijp(const float *a, const float *b, float *c, int m, int k, int n) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      float acc = 0.0f;
      for (int p = 0; p < k; p++)
        acc = acc + a[i * k + p] * b[p * n + j];
      c[i * n + j] = acc;
    }
}

static void c_ipj(const float *a, const float *b, float *c, int m, int k, int n) {
  for (int i = 0; i < m; i++) {
    for (int j = 0; j < n; j++)
      c[i * n + j] = 0.0f;
    for (int p = 0; p < k; p++)
      for (int j = 0; j < n; j++)
        c[i * n + j] = c[i * n + j] + a[i * k + p] * b[p * n + j];
  }
}

#define REPEATS 9

static double time_it(void (*fn)(void *), void *arg, int iters) {
  double t[REPEATS];
  for (int r = 0; r < REPEATS; r++) {
    double t0 = now();
    for (int i = 0; i < iters; i++)
      fn(arg);
    t[r] = (now() - t0) / iters;
  }
  qsort(t, REPEATS, sizeof *t, cmp_double);
  return t[REPEATS / 2];
}

typedef struct job {
  kiln_function *f;
  kiln_tensor **in;
  const float *a, *b;
  float *c;
  int m, k, n;
} job;

static void run_kiln(void *p) {
  job *j = p;
  kiln_call(j->f, (const kiln_tensor *const *)j->in, NULL);
}
static void run_ijp(void *p) {
  job *j = p;
  c_ijp(j->a, j->b, j->c, j->m, j->k, j->n);
}
static void run_ipj(void *p) {
  job *j = p;
  c_ipj(j->a, j->b, j->c, j->m, j->k, j->n);
}

static void die(kiln_ctx *ctx, const char *what) {
  fprintf(stderr, "dotbench: %s: %s\n", what, kiln_errmsg(ctx));
  exit(1);
}

int main(int argc, char **argv) {
  int m = 64, k = 64, n = 128;
  if (argc == 4) m = atoi(argv[1]), k = atoi(argv[2]), n = atoi(argv[3]);
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *A = kiln_input(ctx, "A", KILN_FLOAT32, 2, (int64_t[]){m, k});
  kiln_node *B = kiln_input(ctx, "B", KILN_FLOAT32, 2, (int64_t[]){k, n});
  kiln_node *C = kiln_dot(A, B);
  kiln_function *f = kiln_function_new(ctx, "dot", 2, (kiln_node *[]){A, B}, 1, &C, 0, NULL);
  if (!f) die(ctx, "function");
  kiln_tensor *in[2] = {kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){m, k}, NULL),
                        kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){k, n}, NULL)};
  float *a = kiln_tensor_data(in[0]), *b = kiln_tensor_data(in[1]);
  for (int i = 0; i < m * k; i++)
    a[i] = (float)((i * 7919) % 101 - 50) / 37.0f;
  for (int i = 0; i < k * n; i++)
    b[i] = (float)((i * 104729) % 103 - 51) / 41.0f;
  float *c1 = calloc((size_t)m * n + 1, 4), *c2 = calloc((size_t)m * n + 1, 4);
  const kiln_tensor *out;
  if (kiln_call(f, (const kiln_tensor *const *)in, &out) != KILN_OK) die(ctx, "call");
  c_ijp(a, b, c1, m, k, n);
  c_ipj(a, b, c2, m, k, n);
  if (memcmp(kiln_tensor_data(out), c1, (size_t)m * n * 4) != 0 ||
      memcmp(c1, c2, (size_t)m * n * 4) != 0) {
    fprintf(stderr, "dotbench: results differ\n");
    return 1;
  }
  job j = {f, in, a, b, c1, m, k, n};
  int iters = (int)(2e7 / ((double)m * k * n + 1)) + 1;
  double tk = time_it(run_kiln, &j, iters), t1 = time_it(run_ijp, &j, iters),
         t2 = time_it(run_ipj, &j, iters);
  printf("dot (%d,%d).(%d,%d) float32: kiln %8.2f us   C i-j-p %8.2f us   C i-p-j %8.2f us\n", m, k,
         k, n, tk * 1e6, t1 * 1e6, t2 * 1e6);
  /* the gradient forms: sum(C * R) with respect to A (tb) and B (ta) */
  kiln_node *R = kiln_input(ctx, "R", KILN_FLOAT32, 2, (int64_t[]){m, n});
  kiln_node *cost = kiln_sum(kiln_mul(C, R)), *g[2];
  if (kiln_grad(cost, 2, (kiln_node *[]){A, B}, g, 0) != KILN_OK) die(ctx, "grad");
  kiln_tensor *rt = kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){m, n}, NULL);
  kiln_tensor *gin[3] = {in[0], in[1], rt};
  for (int w = 0; w < 2; w++) {
    kiln_function *fg =
        kiln_function_new(ctx, w ? "gB" : "gA", 3, (kiln_node *[]){A, B, R}, 1, &g[w], 0, NULL);
    if (!fg) die(ctx, "grad function");
    job jg = {fg, gin, 0, 0, 0, m, k, n};
    printf("  gradient wrt %s (%s): kiln %8.2f us\n", w ? "B" : "A",
           w ? "dot{ta}: A^T . G" : "dot{tb}: G . B^T", time_it(run_kiln, &jg, iters) * 1e6);
  }
  kiln_tensor_free(rt);
  free(c1), free(c2);
  kiln_tensor_free(in[0]);
  kiln_tensor_free(in[1]);
  kiln_ctx_free(ctx);
  return 0;
}
