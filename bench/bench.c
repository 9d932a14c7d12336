/*
** bench.c -- Kiln against hand-written C, in the same process, alternating.
** Each figure is the median of several repeats of a timed batch; the ratio
** is Kiln / reference (lower is better for Kiln).
**
**   W1 seed        the seed training step (4 float32 features, float64 W)
**   W2 linreg      the same graph in float32 with n = 2^20 features, and its
**                  scaling over n = 2^10 .. 2^24; then Kiln on 2 threads
**                  (kiln_ctx_set_threads) against the same one-thread C,
**                  and beside it the reference by hand on 2 threads (what
**                  the machine allows: ref_team.c)
**   W3 mlp         64 -> 128 tanh -> 10 softmax crossentropy, batch 64,
**                  float32, one SGD step (the reference is plain loops with
**                  libm tanhf: OpenBLAS is not a dependency of Kiln)
**   W4 compile     kiln_function_new -> callable step for the seed and the
**                  W3 function, measured in a fresh process (this program
**                  re-executes itself), with the in-memory cache hit, and in
**                  a fresh process linking from the on-disk cache
**                  (KILN_CACHE_DIR, filled by the first child); the step
**                  kiln_function_new compiles assumes no dynamic size of 1
**                  stretches, so a last line times the W3 function's first
**                  call with a batch of 1 (which it serves) and with y of
**                  1 row against x of 64 (which compiles the general step)
** Usage: bench [quick]   (quick: fewer repeats, for CI smoke runs)
*/
#define _POSIX_C_SOURCE 200809L
#include "bench/ref.h"

#include <kiln.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int repeats = 9;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(kiln_ctx *ctx, const char *what) {
  fprintf(stderr, "bench: %s: %s\n", what, kiln_errmsg(ctx));
  exit(1);
}

/* ------------------------------------------------------------------- W1 */

typedef struct seed {
  kiln_ctx *ctx;
  kiln_node *W;
  kiln_function *f;
  kiln_tensor *in[2];
} seed;

/* The seed step over n features of dtype wdt for W (x and target float32). */
static void seed_build(seed *s, kiln_dtype wdt, int64_t n, double lr, int threads) {
  s->ctx = kiln_ctx_new();
  if (kiln_ctx_set_threads(s->ctx, threads) != KILN_OK) die(s->ctx, "set_threads");
  kiln_node *x = kiln_fvector(s->ctx, "x"), *t = kiln_fscalar(s->ctx, "target");
  s->W = kiln_shared(s->ctx, "W", wdt, 1, &n, NULL);
  kiln_node *y = kiln_sum(kiln_mul(x, s->W)), *g;
  if (kiln_grad(kiln_sqr(kiln_sub(t, y)), 1, &s->W, &g, 0) != KILN_OK) die(s->ctx, "grad");
  kiln_update u = {s->W, kiln_sub(s->W, kiln_mul(kiln_lit(s->ctx, lr), g))};
  s->f = kiln_function_new(s->ctx, "seed", 2, (kiln_node *[]){x, t}, 1, &y, 1, &u);
  if (!s->f) die(s->ctx, "function");
  s->in[0] = kiln_tensor_new(KILN_FLOAT32, 1, &n, NULL);
  float tv = 100.0f;
  s->in[1] = kiln_tensor_new(KILN_FLOAT32, 0, NULL, &tv);
  float *xv = kiln_tensor_data(s->in[0]);
  for (int64_t i = 0; i < n; i++)
    xv[i] = 1.0f / (float)(1 + i % 7);
}

static void seed_free(seed *s) {
  kiln_tensor_free(s->in[0]);
  kiln_tensor_free(s->in[1]);
  kiln_ctx_free(s->ctx);
}

static void w1(void) {
  seed s;
  seed_build(&s, KILN_FLOAT64, 4, 0.1, 1);
  double W[4] = {0.1, 0.25, 0.15, 0.3};
  const float *x = kiln_tensor_data(s.in[0]);
  const int N = 200000;
  double tk[64], tr[64];
  volatile double sink = 0;
  for (int r = 0; r < repeats; r++) {
    double t0 = now();
    for (int i = 0; i < N; i++)
      kiln_call(s.f, (const kiln_tensor *const *)s.in, NULL);
    double t1 = now();
    for (int i = 0; i < N; i++)
      sink += ref_seed_step(x, 100.0f, W, 4);
    double t2 = now();
    tk[r] = (t1 - t0) / N;
    tr[r] = (t2 - t1) / N;
  }
  double k = median(tk, repeats), c = median(tr, repeats);
  printf("W1 seed step           kiln %8.1f ns   C %8.1f ns   ratio %5.2f   (goal <= 1.2)\n",
         k * 1e9, c * 1e9, k / c);
  (void)sink;
  seed_free(&s);
}

/* ------------------------------------------------------------------- W2 */

static void w2_at(int64_t n, int verbose, int threads) {
  seed s;
  seed_build(&s, KILN_FLOAT32, n, 1e-9, threads);
  float *W = calloc((size_t)n, sizeof *W), *W2 = calloc((size_t)n, sizeof *W2);
  ref_team *team = threads == 2 ? ref_team_new() : NULL;
  if (!W || !W2 || (threads == 2 && !team)) {
    fprintf(stderr, "bench: W2: no memory or no thread\n");
    exit(1);
  }
  const float *x = kiln_tensor_data(s.in[0]);
  int N = (int)(4000000 / n) + 1;
  double tk[64], tr[64], t2[64];
  volatile float sink = 0;
  /* On 2 threads, Kiln's pool and the hand-written team each have a helper
  ** that spins for a while after a step (2 ms and 1 ms): on two cores one
  ** would take a core from the other. So each 2-thread batch starts after
  ** a 3 ms pause (the other side's helper is asleep by then) with three
  ** untimed steps that wake its own helper and settle which core holds
  ** which part of the data, as in a training loop. */
  const struct timespec pause = {0, 3000000};
  enum { WARM = 3 };
  for (int r = 0; r < repeats; r++) {
    if (team) {
      nanosleep(&pause, NULL);
      for (int i = 0; i < WARM; i++)
        kiln_call(s.f, (const kiln_tensor *const *)s.in, NULL);
    }
    double a = now();
    for (int i = 0; i < N; i++)
      kiln_call(s.f, (const kiln_tensor *const *)s.in, NULL);
    double b = now();
    for (int i = 0; i < N; i++)
      sink += ref_linreg_step(x, 100.0f, W, n, 1e-9f);
    double c = now();
    tk[r] = (b - a) / N;
    tr[r] = (c - b) / N;
    t2[r] = 0;
    if (team) {
      nanosleep(&pause, NULL);
      for (int i = 0; i < WARM; i++)
        sink += ref_linreg_step2(team, x, 100.0f, W2, n, 1e-9f);
      double d = now();
      for (int i = 0; i < N; i++)
        sink += ref_linreg_step2(team, x, 100.0f, W2, n, 1e-9f);
      t2[r] = (now() - d) / N;
    }
  }
  double k = median(tk, repeats), c = median(tr, repeats), c2 = median(t2, repeats);
  if (verbose && threads == 1)
    printf("W2 linreg n=2^20       kiln %8.1f us   C %8.1f us   ratio %5.2f   (goal <= 1.15)\n",
           k * 1e6, c * 1e6, k / c);
  else if (verbose)
    printf(
        "W2 n=2^20 2 threads    kiln %8.1f us   C %8.1f us   ratio %5.2f   (goal <= 0.6; C on 1 "
        "thread)\n"
        "                       C by hand on 2 threads %8.1f us   ratio to C on 1 thread %5.2f\n",
        k * 1e6, c * 1e6, k / c, c2 * 1e6, c2 / c);
  else if (team)
    printf("   n=%-9lld          kiln %10.2f us   C %10.2f us   ratio %5.2f   C on 2 threads "
           "%5.2f\n",
           (long long)n, k * 1e6, c * 1e6, k / c, c2 / c);
  else
    printf("   n=%-9lld          kiln %10.2f us   C %10.2f us   ratio %5.2f\n", (long long)n,
           k * 1e6, c * 1e6, k / c);
  (void)sink;
  ref_team_free(team);
  free(W);
  free(W2);
  seed_free(&s);
}

/* ------------------------------------------------------------------- W3 */

enum { B = 64, I = 64, H = 128, O = 10 };

/* The W3 training function: returns it and the time kiln_function_new took. */
static kiln_function *mlp_build(kiln_ctx *ctx, double *compile) {
  kiln_node *x = kiln_fmatrix(ctx, "x"), *y = kiln_fmatrix(ctx, "y");
  kiln_node *W1 = kiln_shared(ctx, "W1", KILN_FLOAT32, 2, (int64_t[]){I, H}, NULL);
  kiln_node *b1 = kiln_shared(ctx, "b1", KILN_FLOAT32, 1, (int64_t[]){H}, NULL);
  kiln_node *W2 = kiln_shared(ctx, "W2", KILN_FLOAT32, 2, (int64_t[]){H, O}, NULL);
  kiln_node *b2 = kiln_shared(ctx, "b2", KILN_FLOAT32, 1, (int64_t[]){O}, NULL);
  kiln_node *h = kiln_tanh(kiln_add(kiln_dot(x, W1), b1));
  kiln_node *loss = kiln_mean(kiln_crossentropy(kiln_add(kiln_dot(h, W2), b2), y));
  kiln_node *params[4] = {W1, b1, W2, b2}, *g[4];
  if (kiln_grad(loss, 4, params, g, 0) != KILN_OK) die(ctx, "grad");
  kiln_update upd[4];
  for (int k = 0; k < 4; k++)
    upd[k] = (kiln_update){params[k], kiln_sub(params[k], kiln_mul(kiln_lit(ctx, 0.01), g[k]))};
  double t0 = now();
  kiln_function *f = kiln_function_new(ctx, "mlp", 2, (kiln_node *[]){x, y}, 1, &loss, 4, upd);
  *compile = now() - t0;
  if (!f) die(ctx, "function");
  return f;
}

static void w3(void) {
  kiln_ctx *ctx = kiln_ctx_new();
  double compile;
  kiln_function *f = mlp_build(ctx, &compile);
  kiln_tensor *in[2] = {kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){B, I}, NULL),
                        kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){B, O}, NULL)};
  float *px = kiln_tensor_data(in[0]), *py = kiln_tensor_data(in[1]);
  for (int i = 0; i < B * I; i++)
    px[i] = (float)(i % 17) / 16.0f;
  for (int r = 0; r < B; r++)
    py[r * O + r % O] = 1.0f;
  float *W1r = calloc(I * H, 4), *b1r = calloc(H, 4), *W2r = calloc(H * O, 4), *b2r = calloc(O, 4);
  for (int i = 0; i < I * H; i++)
    W1r[i] = 0.01f * (float)(i % 13 - 6);
  for (int i = 0; i < H * O; i++)
    W2r[i] = 0.01f * (float)(i % 11 - 5);
  float *scratch = malloc(sizeof(float) * (B * H * 2 + B * O + I * H + H * O));
  const int N = 200;
  double tk[64], tr[64];
  volatile float sink = 0;
  for (int r = 0; r < repeats; r++) {
    double a = now();
    for (int i = 0; i < N; i++)
      kiln_call(f, (const kiln_tensor *const *)in, NULL);
    double b = now();
    for (int i = 0; i < N; i++)
      sink += ref_mlp_step(px, py, B, W1r, b1r, W2r, b2r, 0.01f, scratch);
    double c = now();
    tk[r] = (b - a) / N;
    tr[r] = (c - b) / N;
  }
  double k = median(tk, repeats), c = median(tr, repeats);
  printf(
      "W3 mlp step (batch 64) kiln %8.1f us   C %8.1f us   ratio %5.2f   (goal <= 0.5, <= 60 us)\n",
      k * 1e6, c * 1e6, k / c);
  (void)sink;
  free(W1r), free(b1r), free(W2r), free(b2r), free(scratch);
  kiln_tensor_free(in[0]);
  kiln_tensor_free(in[1]);
  kiln_ctx_free(ctx);
}

/* ------------------------------------------------------------------- W4 */

/* In a fresh process: time of the first kiln_function_new of the seed step
** (JIT creation included), or of the W3 function, or (mlp-general) of the
** W3 function's first call with a batch of 1 (mlp-batch1) or with a
** broadcasting y (mlp-general). */
static void w4_child(const char *which) {
  if (!strcmp(which, "seed")) {
    double t0 = now();
    seed s;
    seed_build(&s, KILN_FLOAT64, 4, 0.1, 1);
    printf("%.6f\n", now() - t0);
    seed_free(&s);
  } else {
    kiln_ctx *ctx = kiln_ctx_new();
    double t;
    kiln_function *f = mlp_build(ctx, &t);
    if (strcmp(which, "mlp")) {
      /* a call at batch 64 first; then, timed, a batch of 1 (the fast step
      ** serves it: nothing stretches), or (mlp-general) x of 64 rows with y
      ** of 1 row, whose dynamic size of 1 stretches: that call compiles the
      ** general step */
      int64_t rows[2][2] = {{B, B}, {1, 1}};
      if (!strcmp(which, "mlp-general")) rows[1][0] = B;
      for (int c = 0; c < 2; c++) {
        kiln_tensor *in[2] = {kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){rows[c][0], I}, NULL),
                              kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){rows[c][1], O}, NULL)};
        double t0 = now();
        if (kiln_call(f, (const kiln_tensor *const *)in, NULL) != KILN_OK) die(ctx, "call");
        t = now() - t0;
        kiln_tensor_free(in[0]);
        kiln_tensor_free(in[1]);
      }
    }
    printf("%.6f\n", t);
    kiln_ctx_free(ctx);
  }
}

/* Median time of the child for which, with KILN_CACHE_DIR set to dir (or
** unset when dir is NULL). */
static double fresh(const char *self, const char *which, const char *dir) {
  double t[64];
  for (int r = 0; r < repeats; r++) {
    char cmd[4096];
    if (dir)
      snprintf(cmd, sizeof cmd, "KILN_CACHE_DIR=%s %s --w4-child %s", dir, self, which);
    else
      snprintf(cmd, sizeof cmd, "%s --w4-child %s", self, which);
    FILE *p = popen(cmd, "r");
    if (!p || fscanf(p, "%lf", &t[r]) != 1) {
      fprintf(stderr, "bench: W4 child failed\n");
      exit(1);
    }
    pclose(p);
  }
  return median(t, repeats);
}

static void w4(const char *self) {
  unsetenv("KILN_CACHE_DIR");
  double seed_fresh = fresh(self, "seed", NULL), mlp_fresh = fresh(self, "mlp", NULL);
  double mlp_batch1 = fresh(self, "mlp-batch1", NULL);
  double mlp_general = fresh(self, "mlp-general", NULL);
  /* the on-disk cache: the first child stores, the others link */
  char dir[] = "/tmp/kiln-bench-cache-XXXXXX";
  double seed_disk = -1, mlp_disk = -1;
  if (mkdtemp(dir)) {
    seed_disk = fresh(self, "seed", dir);
    mlp_disk = fresh(self, "mlp", dir);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench: cannot remove %s\n", dir);
  }
  /* in-memory cache hit: the same graph compiled again in one context */
  seed s;
  seed_build(&s, KILN_FLOAT64, 4, 0.1, 1);
  double hit[64];
  for (int r = 0; r < repeats; r++) {
    kiln_node *x = kiln_fvector(s.ctx, "x"), *t = kiln_fscalar(s.ctx, "target");
    kiln_node *y = kiln_sum(kiln_mul(x, s.W)), *g;
    kiln_grad(kiln_sqr(kiln_sub(t, y)), 1, &s.W, &g, 0);
    kiln_update u = {s.W, kiln_sub(s.W, kiln_mul(kiln_lit(s.ctx, 0.1), g))};
    double t0 = now();
    kiln_function *f = kiln_function_new(s.ctx, "again", 2, (kiln_node *[]){x, t}, 1, &y, 1, &u);
    hit[r] = now() - t0;
    if (!f) die(s.ctx, "function");
  }
  printf("W4 compile seed        fresh process %7.2f ms (goal <= 10)   in-memory hit %6.3f ms "
         "(goal <= 1)   KILN_CACHE_DIR hit %6.2f ms\n",
         seed_fresh * 1e3, median(hit, repeats) * 1e3, seed_disk * 1e3);
  printf(
      "W4 compile mlp         fresh process %7.2f ms (goal <= 60)   KILN_CACHE_DIR hit %6.2f ms\n",
      mlp_fresh * 1e3, mlp_disk * 1e3);
  printf("W4 mlp first call       batch of 1 (fast step) %.3f ms   y of 1 row against 64 (compiles "
         "the general step) %.2f ms\n",
         mlp_batch1 * 1e3, mlp_general * 1e3);
  seed_free(&s);
}

int main(int argc, char **argv) {
  if (argc > 2 && !strcmp(argv[1], "--w4-child")) {
    w4_child(argv[2]);
    return 0;
  }
  if (argc > 1 && !strcmp(argv[1], "quick")) repeats = 3;
  printf("Kiln %s benchmarks: median of %d repeats; ratio = Kiln / hand-written C\n",
         kiln_version(), repeats);
  w1();
  w2_at((int64_t)1 << 20, 1, 1);
  printf("W2 scaling with n:\n");
  for (int e = 10; e <= 24; e += 2)
    w2_at((int64_t)1 << e, 0, 1);
  w2_at((int64_t)1 << 20, 1, 2);
  printf("W2 on 2 threads, scaling with n (ratio to C on 1 thread; last column: C by hand on 2 "
         "threads, same ratio):\n");
  for (int e = 14; e <= 24; e += 2)
    w2_at((int64_t)1 << e, 0, 2);
  w3();
  w4(argv[0]);
  return 0;
}
