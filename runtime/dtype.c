/*
** dtype.c -- element types: names, sizes, numpy promotion, and conversion
** with the exact semantics the JIT's casts have.
*/
#include "runtime/rt.h"

#include <math.h>
#include <string.h>

static const char *const dt_names[KILN_N_DTYPES] = {"bool",  "int8",  "int16",   "int32",
                                                    "int64", "uint8", "float32", "float64"};
static const size_t dt_sizes[KILN_N_DTYPES] = {1, 1, 2, 4, 8, 1, 4, 8};

bool kl_dtype_valid(int dt) { return dt >= 0 && dt < KILN_N_DTYPES; }
const char *kiln_dtype_name(kiln_dtype dt) { return kl_dtype_valid(dt) ? dt_names[dt] : "?"; }
size_t kiln_dtype_size(kiln_dtype dt) { return kl_dtype_valid(dt) ? dt_sizes[dt] : 0; }
bool kl_dtype_is_float(kiln_dtype dt) { return dt == KILN_FLOAT32 || dt == KILN_FLOAT64; }
bool kl_dtype_is_int(kiln_dtype dt) { return dt >= KILN_INT8 && dt <= KILN_UINT8; }

double kl_load_f64(kiln_dtype dt, const void *p, int64_t i) {
  switch (dt) {
  case KILN_BOOL: return ((const uint8_t *)p)[i] != 0;
  case KILN_INT8: return ((const int8_t *)p)[i];
  case KILN_INT16: return ((const int16_t *)p)[i];
  case KILN_INT32: return ((const int32_t *)p)[i];
  case KILN_INT64: return (double)((const int64_t *)p)[i];
  case KILN_UINT8: return ((const uint8_t *)p)[i];
  case KILN_FLOAT32: return ((const float *)p)[i];
  case KILN_FLOAT64: return ((const double *)p)[i];
  default: return NAN;
  }
}

int64_t kl_load_i64(kiln_dtype dt, const void *p, int64_t i) {
  switch (dt) {
  case KILN_BOOL: return ((const uint8_t *)p)[i] != 0;
  case KILN_INT8: return ((const int8_t *)p)[i];
  case KILN_INT16: return ((const int16_t *)p)[i];
  case KILN_INT32: return ((const int32_t *)p)[i];
  case KILN_INT64: return ((const int64_t *)p)[i];
  case KILN_UINT8: return ((const uint8_t *)p)[i];
  default: return 0;
  }
}

/* Saturating float -> integer in [lo, hi], NaN -> 0, as llvm.fptosi.sat. */
static int64_t sat(double x, double lo, double hi) {
  if (x != x) return 0;
  if (x <= lo) return (int64_t)lo;
  if (x >= hi) return (int64_t)hi;
  return (int64_t)x;
}

static int64_t sat64(double x) {
  if (x != x) return 0;
  if (x <= -9223372036854775808.0) return INT64_MIN;
  if (x >= 9223372036854775808.0) return INT64_MAX;
  return (int64_t)x;
}

static void store_int(kiln_dtype dt, void *dst, int64_t j, int64_t v) {
  /* Narrowing wraps modulo 2^n: go through the unsigned type of the width. */
  switch (dt) {
  case KILN_BOOL: ((uint8_t *)dst)[j] = v != 0; break;
  case KILN_INT8: ((int8_t *)dst)[j] = (int8_t)(uint8_t)(uint64_t)v; break;
  case KILN_INT16: ((int16_t *)dst)[j] = (int16_t)(uint16_t)(uint64_t)v; break;
  case KILN_INT32: ((int32_t *)dst)[j] = (int32_t)(uint32_t)(uint64_t)v; break;
  case KILN_INT64: ((int64_t *)dst)[j] = v; break;
  case KILN_UINT8: ((uint8_t *)dst)[j] = (uint8_t)(uint64_t)v; break;
  default: break;
  }
}

void kl_convert(kiln_dtype ddt, void *dst, int64_t j, kiln_dtype sdt, const void *src, int64_t i) {
  if (kl_dtype_is_float(sdt)) {
    double x = sdt == KILN_FLOAT32 ? (double)((const float *)src)[i] : ((const double *)src)[i];
    switch (ddt) {
    case KILN_FLOAT32:
      ((float *)dst)[j] = sdt == KILN_FLOAT32 ? ((const float *)src)[i] : (float)x;
      return;
    case KILN_FLOAT64: ((double *)dst)[j] = x; return;
    case KILN_BOOL: ((uint8_t *)dst)[j] = x != 0.0; return; /* NaN != 0 is true */
    case KILN_INT8: store_int(ddt, dst, j, sat(x, -128.0, 127.0)); return;
    case KILN_INT16: store_int(ddt, dst, j, sat(x, -32768.0, 32767.0)); return;
    case KILN_INT32: store_int(ddt, dst, j, sat(x, -2147483648.0, 2147483647.0)); return;
    case KILN_INT64: store_int(ddt, dst, j, sat64(x)); return;
    case KILN_UINT8: store_int(ddt, dst, j, sat(x, 0.0, 255.0)); return;
    default: return;
    }
  }
  int64_t v = kl_load_i64(sdt, src, i);
  switch (ddt) {
  case KILN_FLOAT32: ((float *)dst)[j] = (float)v; return; /* rounds once, as sitofp */
  case KILN_FLOAT64: ((double *)dst)[j] = (double)v; return;
  default: store_int(ddt, dst, j, v); return;
  }
}

/* numpy's promotion table for arrays, restricted to Kiln's dtypes. */
kiln_dtype kiln_promote(kiln_dtype a, kiln_dtype b) {
  if (!kl_dtype_valid(a) || !kl_dtype_valid(b)) return KILN_N_DTYPES;
  if (a == b) return a;
  if (a == KILN_BOOL) return b;
  if (b == KILN_BOOL) return a;
  if (kl_dtype_is_float(a) || kl_dtype_is_float(b)) {
    if (a == KILN_FLOAT64 || b == KILN_FLOAT64) return KILN_FLOAT64;
    kiln_dtype other = a == KILN_FLOAT32 ? b : a; /* an integer */
    return (other == KILN_INT32 || other == KILN_INT64) ? KILN_FLOAT64 : KILN_FLOAT32;
  }
  /* two different integers */
  if (a == KILN_UINT8 || b == KILN_UINT8) {
    kiln_dtype s = a == KILN_UINT8 ? b : a; /* signed */
    return s == KILN_INT8 ? KILN_INT16 : s;
  }
  return a > b ? a : b; /* signed ints are ordered by width in the enum */
}
