/*
** linreg.c -- linear regression on synthetic data, trained by full-batch
** gradient descent, checked against the closed-form least-squares answer.
**
** 256 samples of 5 features drawn from a seeded generator, targets
** y = X w_true + b_true + noise. The model pred = dot(X, w) + b is trained
** on mean((pred - y)^2); the exact minimizer solves the normal equations
** [X 1]^T [X 1] [w; b] = [X 1]^T y, computed here in plain C. The program
** fails (exit 1) unless the trained weights match it to 1e-6.
*/
#include <kiln.h>
#include <kiln_util.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define N 256
#define D 5

static void die(kiln_ctx *ctx, const char *what) {
  fprintf(stderr, "linreg: %s: %s\n", what, kiln_errmsg(ctx));
  exit(1);
}

/* Solves the (D+1)x(D+1) system A z = r by Gaussian elimination with
** partial pivoting (A and r are overwritten). */
static void solve(double A[D + 1][D + 1], double *r, double *z) {
  int n = D + 1;
  for (int c = 0; c < n; c++) {
    int p = c;
    for (int i = c + 1; i < n; i++)
      if (fabs(A[i][c]) > fabs(A[p][c])) p = i;
    for (int j = 0; j < n; j++) {
      double t = A[c][j];
      A[c][j] = A[p][j];
      A[p][j] = t;
    }
    double t = r[c];
    r[c] = r[p];
    r[p] = t;
    for (int i = c + 1; i < n; i++) {
      double f = A[i][c] / A[c][c];
      for (int j = c; j < n; j++)
        A[i][j] -= f * A[c][j];
      r[i] -= f * r[c];
    }
  }
  for (int i = n - 1; i >= 0; i--) {
    double s = r[i];
    for (int j = i + 1; j < n; j++)
      s -= A[i][j] * z[j];
    z[i] = s / A[i][i];
  }
}

int main(void) {
  kiln_rng rng;
  kiln_rng_seed(&rng, 2024);
  static double X[N][D], y[N];
  const double w_true[D] = {1.5, -2.0, 0.5, 3.0, -1.0}, b_true = 0.7;
  for (int i = 0; i < N; i++) {
    y[i] = b_true + 0.1 * kiln_rng_normal(&rng);
    for (int j = 0; j < D; j++) {
      X[i][j] = kiln_rng_normal(&rng);
      y[i] += w_true[j] * X[i][j];
    }
  }

  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dmatrix(ctx, "X"), *t = kiln_dvector(ctx, "y");
  kiln_node *w = kiln_shared(ctx, "w", KILN_FLOAT64, 1, (int64_t[]){D}, NULL);
  kiln_node *b = kiln_shared(ctx, "b", KILN_FLOAT64, 0, NULL, NULL);
  kiln_node *pred = kiln_add(kiln_dot(x, w), b);
  kiln_node *loss = kiln_mean(kiln_sqr(kiln_sub(pred, t)));
  kiln_node *g[2];
  if (kiln_grad(loss, 2, (kiln_node *[]){w, b}, g, 0) != KILN_OK) die(ctx, "grad");
  kiln_node *lr = kiln_lit(ctx, 0.1);
  kiln_update upd[2] = {{w, kiln_sub(w, kiln_mul(lr, g[0]))}, {b, kiln_sub(b, kiln_mul(lr, g[1]))}};
  kiln_function *train =
      kiln_function_new(ctx, "train", 2, (kiln_node *[]){x, t}, 1, &loss, 2, upd);
  if (!train) die(ctx, "function");

  kiln_tensor *in[2] = {kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){N, D}, X),
                        kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){N}, y)};
  const kiln_tensor *out;
  for (int epoch = 0; epoch < 300; epoch++) {
    if (kiln_call(train, (const kiln_tensor *const *)in, &out) != KILN_OK) die(ctx, "call");
    if (epoch % 50 == 0 || epoch == 299)
      printf("epoch %3d  loss %.8f\n", epoch, kiln_tensor_get(out, 0));
  }

  /* the closed-form answer */
  double A[D + 1][D + 1] = {{0}}, r[D + 1] = {0}, z[D + 1];
  for (int i = 0; i < N; i++) {
    double row[D + 1];
    for (int j = 0; j < D; j++)
      row[j] = X[i][j];
    row[D] = 1.0;
    for (int p = 0; p <= D; p++) {
      r[p] += row[p] * y[i];
      for (int q = 0; q <= D; q++)
        A[p][q] += row[p] * row[q];
    }
  }
  solve(A, r, z);
  double wk[D], bk, worst = 0;
  kiln_shared_get(w, wk, sizeof wk);
  kiln_shared_get(b, &bk, sizeof bk);
  printf("%-8s %12s %12s\n", "", "kiln", "closed form");
  for (int j = 0; j < D; j++) {
    printf("w[%d]     %12.8f %12.8f\n", j, wk[j], z[j]);
    worst = fmax(worst, fabs(wk[j] - z[j]));
  }
  printf("b        %12.8f %12.8f\n", bk, z[D]);
  worst = fmax(worst, fabs(bk - z[D]));
  printf("max |kiln - closed form| = %.3g\n", worst);
  kiln_tensor_free(in[0]);
  kiln_tensor_free(in[1]);
  kiln_ctx_free(ctx);
  if (!(worst < 1e-6)) {
    fprintf(stderr, "linreg: gradient descent did not reach the least-squares solution\n");
    return 1;
  }
  return 0;
}
