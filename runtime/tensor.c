/*
** tensor.c -- dense C-ordered arrays with 64-byte aligned data. Buffers
** only grow, so a tensor reused for outputs stops allocating once it has
** seen its largest shape.
*/
#include "runtime/rt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int64_t kl_shape_size(int rank, const int64_t *shape, size_t elem) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (shape[i] < 0) return -1;
    if (shape[i] && n > INT64_MAX / shape[i]) return -1;
    n *= shape[i];
  }
  if (elem && (uint64_t)n > SIZE_MAX / 2 / elem) return -1;
  return n;
}

const char *kl_shape_str(char *buf, size_t n, int rank, const int64_t *shape) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, k < n ? n - k : 0, "(");
  for (int i = 0; i < rank; i++) {
    if (shape[i] < 0)
      k += (size_t)snprintf(buf + k, k < n ? n - k : 0, "?");
    else
      k += (size_t)snprintf(buf + k, k < n ? n - k : 0, "%lld", (long long)shape[i]);
    if (i + 1 < rank || rank == 1)
      k += (size_t)snprintf(buf + k, k < n ? n - k : 0, rank == 1 ? "," : ", ");
  }
  snprintf(buf + k, k < n ? n - k : 0, ")");
  return buf;
}

size_t kl_tensor_nbytes(const kiln_tensor *t) {
  return (size_t)t->size * kiln_dtype_size((kiln_dtype)t->dtype);
}

void kl_tensor_init(kiln_tensor *t, kiln_dtype dt) {
  memset(t, 0, sizeof *t);
  t->magic = KL_MAGIC_TENSOR;
  t->dtype = (uint8_t)dt;
  t->size = 1;
}

kiln_status kl_tensor_reshape(kiln_tensor *t, kiln_dtype dt, int rank, const int64_t *shape) {
  int64_t n = kl_shape_size(rank, shape, kiln_dtype_size(dt));
  if (n < 0) return KILN_SHAPE;
  size_t bytes = (size_t)n * kiln_dtype_size(dt);
  if (!t->data || bytes > t->cap) {
    void *p = kl_aligned_alloc(bytes);
    if (!p) return KILN_NOMEM;
    kl_aligned_free(t->data);
    t->data = p;
    t->cap = bytes;
  }
  t->dtype = (uint8_t)dt;
  t->rank = (uint8_t)rank;
  for (int i = 0; i < rank; i++)
    t->shape[i] = shape[i];
  t->size = n;
  return KILN_OK;
}

void kl_tensor_release(kiln_tensor *t) {
  if (!t) return;
  kl_aligned_free(t->data);
  t->data = NULL;
  t->cap = 0;
}

kiln_tensor *kiln_tensor_new(kiln_dtype dtype, int rank, const int64_t *shape, const void *data) {
  if (!kl_dtype_valid(dtype) || rank < 0 || rank > KILN_MAX_RANK || (rank > 0 && !shape))
    return NULL;
  kiln_tensor *t = kl_malloc(sizeof *t);
  if (!t) return NULL;
  kl_tensor_init(t, dtype);
  if (kl_tensor_reshape(t, dtype, rank, shape) != KILN_OK) {
    kl_free(t);
    return NULL;
  }
  if (data) memcpy(t->data, data, kl_tensor_nbytes(t));
  return t;
}

void kiln_tensor_free(kiln_tensor *t) {
  if (!kl_tensor_ok(t) || t->borrowed) return;
  kl_tensor_release(t);
  t->magic = 0;
  kl_free(t);
}

kiln_dtype kiln_tensor_dtype(const kiln_tensor *t) {
  return kl_tensor_ok(t) ? (kiln_dtype)t->dtype : KILN_N_DTYPES;
}
int kiln_tensor_rank(const kiln_tensor *t) { return kl_tensor_ok(t) ? t->rank : -1; }
int64_t kiln_tensor_dim(const kiln_tensor *t, int i) {
  return kl_tensor_ok(t) && i >= 0 && i < t->rank ? t->shape[i] : -1;
}
int64_t kiln_tensor_size(const kiln_tensor *t) { return kl_tensor_ok(t) ? t->size : -1; }
void *kiln_tensor_data(const kiln_tensor *t) { return kl_tensor_ok(t) ? t->data : NULL; }

double kiln_tensor_get(const kiln_tensor *t, int64_t i) {
  if (!kl_tensor_ok(t) || i < 0 || i >= t->size) return NAN;
  return kl_load_f64((kiln_dtype)t->dtype, t->data, i);
}

int kiln_tensor_sprint(const kiln_tensor *t, char *buf, size_t n) {
  if (!kl_tensor_ok(t) || (!buf && n)) return -1;
  char *s = kl_array_str((kiln_dtype)t->dtype, t->rank, t->shape, t->data);
  if (!s) return -1;
  int len = snprintf(buf, n, "%s", s);
  kl_free(s);
  return len;
}

int kiln_tensor_print(const kiln_tensor *t, FILE *out) {
  if (!kl_tensor_ok(t) || !out) return -1;
  char *s = kl_array_str((kiln_dtype)t->dtype, t->rank, t->shape, t->data);
  if (!s) return -1;
  size_t len = strlen(s);
  size_t w = fwrite(s, 1, len, out);
  kl_free(s);
  return w == len ? (int)len : -1;
}
