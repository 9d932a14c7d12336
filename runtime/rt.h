/*
** rt.h -- Kiln's runtime, shared between its files. The runtime knows
** tensors, memory and how to run a compiled plan; it never includes LLVM or
** the graph (compiler/ depends on runtime/, not the reverse).
*/
#ifndef KILN_RT_H
#define KILN_RT_H

#include "kiln.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KL_ALIGN 64

/* ---- memory: every allocation of Kiln goes through these, so tests can
** make the k-th one fail and prove every out-of-memory path is clean. */
void *kl_malloc(size_t n);
void *kl_calloc(size_t count, size_t size);
void *kl_realloc(void *p, size_t n);
void kl_free(void *p);
/* 64-byte aligned block, zero-filled; n may be 0 (then a valid unique pointer). */
void *kl_aligned_alloc(size_t n);
void kl_aligned_free(void *p);
char *kl_strdup(const char *s); /* NULL in, NULL out */
/* Test hook: the k-th allocation from now fails (k >= 1); 0 turns it off. */
void kl_mem_fail_at(long k);
/* Number of allocations made since start (for the allocation tests). */
long kl_mem_count(void);

/* Writes a message into err (size errn; either may be 0) and returns st:
** the error reporting of runtime functions that have no context. */
kiln_status kl_fail(char *err, size_t errn, kiln_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- dtypes */
bool kl_dtype_valid(int dt);
bool kl_dtype_is_float(kiln_dtype dt);
bool kl_dtype_is_int(kiln_dtype dt); /* integers, not bool */
/* Reads element i of an array of dtype dt as double / as int64. */
double kl_load_f64(kiln_dtype dt, const void *p, int64_t i);
int64_t kl_load_i64(kiln_dtype dt, const void *p, int64_t i);
/* Converts element i of src (dtype sdt) to dtype ddt at dst[j], with Kiln's
** cast semantics: float->int saturates and NaN gives 0 (LLVM's fptosi.sat),
** int->narrower int wraps, ->bool is != 0 (NaN is true). */
void kl_convert(kiln_dtype ddt, void *dst, int64_t j, kiln_dtype sdt, const void *src, int64_t i);

/* ---- tensors */
#define KL_MAGIC_TENSOR 0x4b4c5453u /* "KLTS" */
struct kiln_tensor {
  uint32_t magic;
  uint8_t dtype;
  uint8_t rank;
  bool borrowed; /* owned by a function or shared variable: kiln_tensor_free refuses */
  int64_t shape[KILN_MAX_RANK];
  int64_t size; /* product of shape */
  size_t cap;   /* bytes allocated at data */
  void *data;   /* KL_ALIGN-aligned */
};

static inline bool kl_tensor_ok(const kiln_tensor *t) { return t && t->magic == KL_MAGIC_TENSOR; }
size_t kl_tensor_nbytes(const kiln_tensor *t);
/* Initializes t in place (not borrowed) as an empty rank-0 holder. */
void kl_tensor_init(kiln_tensor *t, kiln_dtype dt);
/* Gives t the dtype and shape, growing its buffer if needed (contents
** unspecified afterwards). KILN_NOMEM leaves t unchanged. */
kiln_status kl_tensor_reshape(kiln_tensor *t, kiln_dtype dt, int rank, const int64_t *shape);
void kl_tensor_release(kiln_tensor *t); /* frees t's buffer only */
/* Product of shape[0..rank-1]; -1 if it overflows int64 / size_t bytes. */
int64_t kl_shape_size(int rank, const int64_t *shape, size_t elem);
/* "(3, 4)" / "()" / "(5,)" into buf, numpy style; dynamic dims print '?'. */
const char *kl_shape_str(char *buf, size_t n, int rank, const int64_t *shape);

/* ---- indexing (runtime/index.c) */
/* numpy's rules for one axis of a basic slice on an axis of size n: the
** first index and the length of the result, or for KILN_SLICE_INDEX the
** index (wrapped) and *len = -1. False if an integer index is outside
** [-n, n). The builder (static sizes), the shape program (dynamic ones)
** and the reference evaluator all call this one function. */
bool kl_slice_norm(int64_t n, const kiln_slice *s, int64_t *start, int64_t *len);

/* ---- printing (runtime/print.c) */
/* numpy str() of an array: malloc'ed (kl_malloc) text, NULL when out of memory. */
char *kl_array_str(kiln_dtype dt, int rank, const int64_t *shape, const void *data);

#endif
