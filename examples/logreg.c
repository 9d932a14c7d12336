/*
** logreg.c -- logistic regression on the Wisconsin breast cancer data
** (examples/data/breast_cancer.csv: 569 samples, 30 features, label 0/1).
**
** A fixed split (seeded shuffle, 455 train / 114 test), features
** standardized with the training set's mean and deviation, full-batch
** gradient descent on the binary cross-entropy of the logits z = X w + b,
** written in its stable form mean(max(z, 0) - z*y + log(1 + exp(-|z|))).
** A training function updates w and b; a separate prediction function
** reads the same shared weights, as Theano programs do. Exit status 1 if
** the test accuracy is below 0.95.
**   ./logreg [path/to/breast_cancer.csv]
*/
#include <kiln.h>
#include <kiln_util.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KILN_DATA_DIR
#define KILN_DATA_DIR "examples/data"
#endif

static void die(kiln_ctx *ctx, const char *what) {
  fprintf(stderr, "logreg: %s: %s\n", what, kiln_errmsg(ctx));
  exit(1);
}

/* Fraction of rows whose logit has the label's sign. */
static double accuracy(const kiln_tensor *z, const double *labels, int n) {
  int right = 0;
  for (int i = 0; i < n; i++)
    right += (kiln_tensor_get(z, i) > 0) == (labels[i] > 0.5);
  return (double)right / n;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : KILN_DATA_DIR "/breast_cancer.csv";
  char err[512];
  kiln_tensor *data;
  if (kiln_csv_load(path, 1, KILN_FLOAT64, &data, err, sizeof err) != KILN_OK) {
    fprintf(stderr, "logreg: %s\n", err);
    return 1;
  }
  const int n = (int)kiln_tensor_dim(data, 0), d = (int)kiln_tensor_dim(data, 1) - 1;
  const int n_train = n * 4 / 5, n_test = n - n_train;
  const double *raw = kiln_tensor_data(data);

  /* a fixed split, then standardization with the training statistics */
  kiln_rng rng;
  kiln_rng_seed(&rng, 7);
  int64_t *perm = malloc(sizeof *perm * (size_t)n);
  for (int i = 0; i < n; i++)
    perm[i] = i;
  kiln_shuffle(&rng, perm, n);
  double *X = malloc(sizeof *X * (size_t)(n * d)), *y = malloc(sizeof *y * (size_t)n);
  for (int i = 0; i < n; i++) {
    memcpy(X + (size_t)i * d, raw + perm[i] * (d + 1), sizeof *X * (size_t)d);
    y[i] = raw[perm[i] * (d + 1) + d];
  }
  for (int j = 0; j < d; j++) {
    double mu = 0, var = 0;
    for (int i = 0; i < n_train; i++)
      mu += X[i * d + j];
    mu /= n_train;
    for (int i = 0; i < n_train; i++)
      var += (X[i * d + j] - mu) * (X[i * d + j] - mu);
    double sd = sqrt(var / n_train);
    for (int i = 0; i < n; i++)
      X[i * d + j] = (X[i * d + j] - mu) / (sd > 0 ? sd : 1);
  }

  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_dmatrix(ctx, "X"), *t = kiln_dvector(ctx, "y");
  kiln_node *w = kiln_shared(ctx, "w", KILN_FLOAT64, 1, (int64_t[]){d}, NULL);
  kiln_node *b = kiln_shared(ctx, "b", KILN_FLOAT64, 0, NULL, NULL);
  kiln_node *z = kiln_name(kiln_add(kiln_dot(x, w), b), "z");
  /* binary cross-entropy with logits, stable for any z */
  kiln_node *bce =
      kiln_add(kiln_sub(kiln_maximum(z, kiln_lit(ctx, 0.0)), kiln_mul(z, t)),
               kiln_log(kiln_add(kiln_lit(ctx, 1.0), kiln_exp(kiln_neg(kiln_abs(z))))));
  kiln_node *loss = kiln_name(kiln_mean(bce), "loss");
  kiln_node *g[2];
  if (kiln_grad(loss, 2, (kiln_node *[]){w, b}, g, 0) != KILN_OK) die(ctx, "grad");
  kiln_node *lr = kiln_lit(ctx, 0.5);
  kiln_update upd[2] = {{w, kiln_sub(w, kiln_mul(lr, g[0]))}, {b, kiln_sub(b, kiln_mul(lr, g[1]))}};
  kiln_function *train = kiln_function_new(ctx, "train", 2, (kiln_node *[]){x, t}, 2,
                                           (kiln_node *[]){loss, z}, 2, upd);
  kiln_function *predict = kiln_function_new(ctx, "predict", 1, &x, 1, &z, 0, NULL);
  if (!train || !predict) die(ctx, "function");

  kiln_tensor *tr[2] = {kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){n_train, d}, X),
                        kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){n_train}, y)};
  kiln_tensor *te =
      kiln_tensor_new(KILN_FLOAT64, 2, (int64_t[]){n_test, d}, X + (size_t)n_train * d);
  const kiln_tensor *out[2];
  for (int epoch = 1; epoch <= 200; epoch++) {
    /* z comes from the weights before this step's update */
    if (kiln_call(train, (const kiln_tensor *const *)tr, out) != KILN_OK) die(ctx, "train");
    if (epoch % 20 == 0 || epoch == 1) {
      double loss_v = kiln_tensor_get(out[0], 0), acc_tr = accuracy(out[1], y, n_train);
      const kiln_tensor *zt;
      if (kiln_call(predict, (const kiln_tensor *const *)&te, &zt) != KILN_OK) die(ctx, "predict");
      printf("epoch %3d  loss %.6f  train accuracy %.4f  test accuracy %.4f\n", epoch, loss_v,
             acc_tr, accuracy(zt, y + n_train, n_test));
    }
  }
  const kiln_tensor *zt;
  if (kiln_call(predict, (const kiln_tensor *const *)&te, &zt) != KILN_OK) die(ctx, "predict");
  double acc = accuracy(zt, y + n_train, n_test);
  printf("final: %d train / %d test samples, test accuracy %.4f\n", n_train, n_test, acc);
  kiln_tensor_free(tr[0]);
  kiln_tensor_free(tr[1]);
  kiln_tensor_free(te);
  kiln_tensor_free(data);
  free(perm);
  free(X);
  free(y);
  kiln_ctx_free(ctx);
  return acc >= 0.95 ? 0 : 1;
}
