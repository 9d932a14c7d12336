/*
** ref.c -- what a good C programmer writes by hand for each benchmark:
** contiguous loops the compiler vectorizes, a reduction with several
** accumulators, no fma contraction (built -O3 -march=native
** -ffp-contract=off, like Kiln's IEEE default).
*/
#include "bench/ref.h"

double ref_seed_step(const float *x, float t, double *W, int n) {
  double y = 0.0;
  for (int i = 0; i < n; i++)
    y += (double)x[i] * W[i];
  double g = -2.0 * ((double)t - y);
  for (int i = 0; i < n; i++)
    W[i] = W[i] - 0.1 * (g * (double)x[i]);
  return y;
}

float ref_dot16(const float *x, const float *W, int64_t lo, int64_t hi) {
  float acc[16] = {0};
  int64_t i = lo;
  for (; i + 16 <= hi; i += 16)
    for (int j = 0; j < 16; j++)
      acc[j] += x[i + j] * W[i + j];
  float y = 0.0f;
  for (int j = 0; j < 16; j++)
    y += acc[j];
  for (; i < hi; i++)
    y += x[i] * W[i];
  return y;
}

void ref_update(const float *x, float *W, float g, int64_t lo, int64_t hi) {
  for (int64_t k = lo; k < hi; k++)
    W[k] = W[k] - g * x[k];
}

float ref_linreg_step(const float *x, float t, float *W, int64_t n, float lr) {
  float y = ref_dot16(x, W, 0, n);
  ref_update(x, W, -2.0f * (t - y) * lr, 0, n);
  return y;
}

#include <math.h>

float ref_mlp_step(const float *x, const float *y, int b, float *W1, float *b1, float *W2,
                   float *b2, float lr, float *s) {
  enum { I = 64, H = 128, O = 10 };
  float *h = s, *p = h + b * H, *dh = p + b * O, *gW1 = dh + b * H, *gW2 = gW1 + I * H;
  float loss = 0;
  for (int r = 0; r < b; r++) {
    for (int j = 0; j < H; j++)
      h[r * H + j] = b1[j];
    for (int k = 0; k < I; k++)
      for (int j = 0; j < H; j++)
        h[r * H + j] += x[r * I + k] * W1[k * H + j];
    for (int j = 0; j < H; j++)
      h[r * H + j] = tanhf(h[r * H + j]);
    float m = -INFINITY, z[O];
    for (int o = 0; o < O; o++) {
      z[o] = b2[o];
      for (int j = 0; j < H; j++)
        z[o] += h[r * H + j] * W2[j * O + o];
      m = z[o] > m ? z[o] : m;
    }
    float sum = 0;
    for (int o = 0; o < O; o++)
      sum += expf(z[o] - m);
    for (int o = 0; o < O; o++) {
      float ls = z[o] - m - logf(sum);
      loss -= y[r * O + o] * ls;
      p[r * O + o] = (expf(ls) - y[r * O + o]) / (float)b; /* d loss / d z */
    }
  }
  for (int i = 0; i < H * O; i++)
    gW2[i] = 0;
  for (int r = 0; r < b; r++)
    for (int j = 0; j < H; j++) {
      float d = 0;
      for (int o = 0; o < O; o++) {
        gW2[j * O + o] += h[r * H + j] * p[r * O + o];
        d += p[r * O + o] * W2[j * O + o];
      }
      dh[r * H + j] = d * (1 - h[r * H + j] * h[r * H + j]);
    }
  for (int i = 0; i < I * H; i++)
    gW1[i] = 0;
  for (int r = 0; r < b; r++)
    for (int k = 0; k < I; k++)
      for (int j = 0; j < H; j++)
        gW1[k * H + j] += x[r * I + k] * dh[r * H + j];
  for (int o = 0; o < O; o++) {
    float g = 0;
    for (int r = 0; r < b; r++)
      g += p[r * O + o];
    b2[o] -= lr * g;
  }
  for (int j = 0; j < H; j++) {
    float g = 0;
    for (int r = 0; r < b; r++)
      g += dh[r * H + j];
    b1[j] -= lr * g;
  }
  for (int i = 0; i < I * H; i++)
    W1[i] -= lr * gW1[i];
  for (int i = 0; i < H * O; i++)
    W2[i] -= lr * gW2[i];
  return loss / (float)b;
}
