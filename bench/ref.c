/*
** ref.c -- what a good C programmer writes by hand for each benchmark:
** contiguous loops the compiler vectorizes, a reduction with several
** accumulators, no fma contraction (built -O3 -march=native
** -ffp-contract=off, like Kiln's IEEE default).
*/
#include "bench/ref.h"

double ref_seed_step(const float *x, float t, double *W, int n) {
  double y = 0.0;
  for (int i = 0; i < n; i++) y += (double)x[i] * W[i];
  double g = -2.0 * ((double)t - y);
  for (int i = 0; i < n; i++) W[i] = W[i] - 0.1 * (g * (double)x[i]);
  return y;
}

float ref_linreg_step(const float *x, float t, float *W, int64_t n, float lr) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) acc[j] += x[i + j] * W[i + j];
  float y = 0.0f;
  for (int j = 0; j < 16; j++) y += acc[j];
  for (; i < n; i++) y += x[i] * W[i];
  float g = -2.0f * (t - y) * lr;
  for (int64_t k = 0; k < n; k++) W[k] = W[k] - g * x[k];
  return y;
}
