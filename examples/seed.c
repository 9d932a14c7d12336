/*
** seed.c -- Theano's "trivial training example", line for line in C.
**
** The Python original (../shared/SEED.md, and README.md) is shown in the
** comments; each C statement below does what the Python line above it does.
*/
#include <kiln.h>

#include <stdio.h>
#include <stdlib.h>

static void die(kiln_ctx *ctx, const char *what) {
  fprintf(stderr, "seed: %s: %s\n", what, kiln_errmsg(ctx));
  exit(1);
}

/* print(label, value) as Python prints a numpy array */
static void show(const char *label, const kiln_tensor *t) {
  printf("%s ", label);
  kiln_tensor_print(t, stdout);
  printf("\n");
}

int main(void) {
  kiln_ctx *ctx = kiln_ctx_new();
  if (!ctx) return 1;

  /* x = tensor.fvector('x'); target = tensor.fscalar('target') */
  kiln_node *x = kiln_fvector(ctx, "x");
  kiln_node *target = kiln_fscalar(ctx, "target");

  /* W = theano.shared(numpy.asarray([0.1, 0.25, 0.15, 0.3]), 'W') */
  double w0[] = {0.1, 0.25, 0.15, 0.3};
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){4}, w0);

  /* print("Weights: ", W.get_value()) */
  show("Weights: ", kiln_shared_value(W));

  /* y = (x * W).sum() */
  kiln_node *y = kiln_sum(kiln_mul(x, W));

  /* cost = tensor.sqr(target - y) */
  kiln_node *cost = kiln_sqr(kiln_sub(target, y));

  /* gradients = tensor.grad(cost, [W]) */
  kiln_node *gradients[1];
  if (kiln_grad(cost, 1, &W, gradients, 0) != KILN_OK) die(ctx, "grad");

  /* W_updated = W - (0.1 * gradients[0]) */
  kiln_node *W_updated = kiln_sub(W, kiln_mul(kiln_lit(ctx, 0.1), gradients[0]));

  /* updates = [(W, W_updated)] */
  kiln_update updates[] = {{W, W_updated}};

  /* f = function([x, target], y, updates=updates) */
  kiln_node *inputs[] = {x, target};
  kiln_function *f = kiln_function_new(ctx, "f", 2, inputs, 1, &y, 1, updates);
  if (!f) die(ctx, "function");

  float xv[] = {1.0f, 1.0f, 1.0f, 1.0f}, tv = 100.0f;
  kiln_tensor *args[] = {kiln_tensor_new(KILN_FLOAT32, 1, (int64_t[]){4}, xv),
                         kiln_tensor_new(KILN_FLOAT32, 0, NULL, &tv)};
  if (!args[0] || !args[1]) return 1;

  /* for i in range(10): */
  for (int i = 0; i < 10; i++) {
    /* output = f([1.0, 1.0, 1.0, 1.0], 100.0) */
    const kiln_tensor *output;
    if (kiln_call(f, (const kiln_tensor *const *)args, &output) != KILN_OK) die(ctx, "call");
    /* print("iteration: ", i) */
    printf("iteration:  %d\n", i);
    /* print("Modified Weights: ", W.get_value()) */
    show("Modified Weights: ", kiln_shared_value(W));
    /* print("Output: ", output) */
    show("Output: ", output);
  }

  kiln_tensor_free(args[0]);
  kiln_tensor_free(args[1]);
  kiln_ctx_free(ctx);
  return 0;
}
