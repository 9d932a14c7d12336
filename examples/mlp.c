/*
** mlp.c -- a multilayer perceptron on the UCI digits (examples/data/
** digits.csv.gz: 1797 8x8 images, pixels 0..16, label 0..9).
**
** 64 -> 64 tanh -> 10, softmax crossentropy, minibatch SGD (batch 32)
** with the training set reshuffled every epoch from a fixed seed, Glorot
** initial weights. A training function updates the shared weights; a
** separate prediction function reads them, as Theano programs do. A fixed
** held-out split (20%) measures accuracy; the trained weights are saved as
** .npy files. Exit status 1 if the test accuracy is below 0.95.
**   ./mlp [path/to/digits.csv.gz [output directory for the .npy files]]
*/
#include <kiln.h>
#include <kiln_util.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KILN_DATA_DIR
#define KILN_DATA_DIR "examples/data"
#endif

enum { IN = 64, HID = 64, OUT = 10, BATCH = 32, EPOCHS = 30 };

static void die(kiln_ctx *ctx, const char *what) {
  fprintf(stderr, "mlp: %s: %s\n", what, kiln_errmsg(ctx));
  exit(1);
}

/* Share of rows whose largest logit is at the label. */
static double accuracy(const kiln_tensor *z, const int *labels, int n) {
  const float *p = kiln_tensor_data(z);
  int right = 0;
  for (int i = 0; i < n; i++) {
    int best = 0;
    for (int k = 1; k < OUT; k++)
      if (p[i * OUT + k] > p[i * OUT + best]) best = k;
    right += best == labels[i];
  }
  return (double)right / n;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : KILN_DATA_DIR "/digits.csv.gz";
  const char *outdir = argc > 2 ? argv[2] : ".";
  char err[512];
  kiln_tensor *data;
  if (kiln_csv_load(path, 0, KILN_FLOAT32, &data, err, sizeof err) != KILN_OK) {
    fprintf(stderr, "mlp: %s\n", err);
    return 1;
  }
  const int n = (int)kiln_tensor_dim(data, 0), n_train = n * 4 / 5, n_test = n - n_train;
  const float *raw = kiln_tensor_data(data);
  kiln_rng rng;
  kiln_rng_seed(&rng, 42);
  int64_t *perm = malloc(sizeof *perm * (size_t)n);
  for (int i = 0; i < n; i++)
    perm[i] = i;
  kiln_shuffle(&rng, perm, n);
  float *X = malloc(sizeof *X * (size_t)n * IN), *Y = calloc((size_t)n * OUT, sizeof *Y);
  int *label = malloc(sizeof *label * (size_t)n);
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < IN; j++)
      X[i * IN + j] = raw[perm[i] * (IN + 1) + j] / 16.0f;
    label[i] = (int)raw[perm[i] * (IN + 1) + IN];
    Y[i * OUT + label[i]] = 1.0f;
  }

  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *x = kiln_fmatrix(ctx, "x"), *y = kiln_fmatrix(ctx, "y");
  kiln_node *W1 = kiln_shared(ctx, "W1", KILN_FLOAT32, 2, (int64_t[]){IN, HID}, NULL);
  kiln_node *b1 = kiln_shared(ctx, "b1", KILN_FLOAT32, 1, (int64_t[]){HID}, NULL);
  kiln_node *W2 = kiln_shared(ctx, "W2", KILN_FLOAT32, 2, (int64_t[]){HID, OUT}, NULL);
  kiln_node *b2 = kiln_shared(ctx, "b2", KILN_FLOAT32, 1, (int64_t[]){OUT}, NULL);
  if (kiln_init_glorot_uniform(W1, &rng) || kiln_init_glorot_uniform(W2, &rng)) die(ctx, "init");
  kiln_node *h = kiln_tanh(kiln_add(kiln_dot(x, W1), b1));
  kiln_node *z = kiln_name(kiln_add(kiln_dot(h, W2), b2), "logits");
  kiln_node *loss = kiln_name(kiln_mean(kiln_crossentropy(z, y)), "loss");
  kiln_node *params[4] = {W1, b1, W2, b2}, *g[4];
  if (kiln_grad(loss, 4, params, g, 0) != KILN_OK) die(ctx, "grad");
  kiln_update upd[4];
  for (int k = 0; k < 4; k++)
    upd[k] = (kiln_update){params[k], kiln_sub(params[k], kiln_mul(kiln_lit(ctx, 0.2), g[k]))};
  kiln_function *train =
      kiln_function_new(ctx, "train", 2, (kiln_node *[]){x, y}, 1, &loss, 4, upd);
  kiln_function *predict = kiln_function_new(ctx, "predict", 1, &x, 1, &z, 0, NULL);
  if (!train || !predict) die(ctx, "function");

  kiln_tensor *bx = kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){BATCH, IN}, NULL);
  kiln_tensor *by = kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){BATCH, OUT}, NULL);
  kiln_tensor *tx =
      kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){n_test, IN}, X + (size_t)n_train * IN);
  kiln_tensor *trx = kiln_tensor_new(KILN_FLOAT32, 2, (int64_t[]){n_train, IN}, X);
  int64_t *order = malloc(sizeof *order * (size_t)n_train);
  for (int i = 0; i < n_train; i++)
    order[i] = i;
  const kiln_tensor *out;
  double acc = 0;
  for (int epoch = 1; epoch <= EPOCHS; epoch++) {
    kiln_shuffle(&rng, order, n_train);
    double total = 0;
    int batches = 0;
    for (int s = 0; s + BATCH <= n_train; s += BATCH, batches++) {
      float *pxb = kiln_tensor_data(bx), *pyb = kiln_tensor_data(by);
      for (int r = 0; r < BATCH; r++) {
        memcpy(pxb + r * IN, X + order[s + r] * IN, sizeof *pxb * IN);
        memcpy(pyb + r * OUT, Y + order[s + r] * OUT, sizeof *pyb * OUT);
      }
      if (kiln_call(train, (const kiln_tensor *const *)(kiln_tensor *[]){bx, by}, &out))
        die(ctx, "train");
      total += kiln_tensor_get(out, 0);
    }
    if (kiln_call(predict, (const kiln_tensor *const *)&trx, &out)) die(ctx, "predict");
    double acc_tr = accuracy(out, label, n_train);
    if (kiln_call(predict, (const kiln_tensor *const *)&tx, &out)) die(ctx, "predict");
    acc = accuracy(out, label + n_train, n_test);
    if (epoch % 5 == 0 || epoch == 1)
      printf("epoch %2d  loss %.5f  train accuracy %.4f  test accuracy %.4f\n", epoch,
             total / batches, acc_tr, acc);
  }
  printf("final: %d train / %d test digits, test accuracy %.4f\n", n_train, n_test, acc);
  const char *names[4] = {"W1", "b1", "W2", "b2"};
  for (int k = 0; k < 4; k++) {
    char file[1024];
    snprintf(file, sizeof file, "%s/mlp_%s.npy", outdir, names[k]);
    if (kiln_npy_save(file, kiln_shared_value(params[k]), err, sizeof err) != KILN_OK) {
      fprintf(stderr, "mlp: %s\n", err);
      return 1;
    }
  }
  printf("weights saved as %s/mlp_{W1,b1,W2,b2}.npy\n", outdir);
  kiln_tensor_free(bx);
  kiln_tensor_free(by);
  kiln_tensor_free(tx);
  kiln_tensor_free(trx);
  kiln_tensor_free(data);
  free(perm);
  free(order);
  free(X);
  free(Y);
  free(label);
  kiln_ctx_free(ctx);
  return acc >= 0.95 ? 0 : 1;
}
