/* testutil.c -- helpers for the Check suites (no main: each suite has its own). */
#define _POSIX_C_SOURCE 200809L /* open_memstream */
#include "tests/testutil.h"
#include "compiler/refeval.h"
#include "runtime/rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kt_run(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}

kiln_tensor *kt_tensor(kiln_dtype dt, int rank, const int64_t *shape, const double *vals) {
  kiln_tensor *t = kiln_tensor_new(dt, rank, shape, NULL);
  if (!t) return NULL;
  for (int64_t i = 0; i < kiln_tensor_size(t); i++)
    kl_convert(dt, kiln_tensor_data(t), i, KILN_FLOAT64, vals, i);
  return t;
}

int kt_same_bits(const kiln_tensor *a, const kiln_tensor *b) {
  if (kiln_tensor_dtype(a) != kiln_tensor_dtype(b) || kiln_tensor_rank(a) != kiln_tensor_rank(b))
    return 0;
  for (int i = 0; i < kiln_tensor_rank(a); i++)
    if (kiln_tensor_dim(a, i) != kiln_tensor_dim(b, i)) return 0;
  kiln_dtype dt = kiln_tensor_dtype(a);
  size_t es = kiln_dtype_size(dt);
  const unsigned char *pa = kiln_tensor_data(a), *pb = kiln_tensor_data(b);
  for (int64_t i = 0; i < kiln_tensor_size(a); i++) {
    if (memcmp(pa + i * es, pb + i * es, es) == 0) continue;
    /* IEEE 754 leaves a NaN's sign and payload open: x86 makes negative
    ** NaNs, LLVM's constant folder positive ones. Any NaN equals any NaN. */
    if ((dt == KILN_FLOAT32 || dt == KILN_FLOAT64) &&
        kiln_tensor_get(a, i) != kiln_tensor_get(a, i) &&
        kiln_tensor_get(b, i) != kiln_tensor_get(b, i))
      continue;
    return 0;
  }
  return 1;
}

double kt_rand(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

char *kt_read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
    free(s);
    s = NULL;
  }
  if (s) s[n] = 0;
  fclose(f);
  return s;
}

/* A description of how a (JIT) and b (reference) differ. */
void kt_describe_diff(const kiln_tensor *a, const kiln_tensor *b, char *buf, size_t n) {
  char sa[128], sb[128];
  kl_shape_str(sa, sizeof sa, a->rank, a->shape);
  kl_shape_str(sb, sizeof sb, b->rank, b->shape);
  if (a->dtype != b->dtype || strcmp(sa, sb) != 0) {
    snprintf(buf, n, "jit %s %s, reference %s %s", kiln_dtype_name((kiln_dtype)a->dtype), sa,
             kiln_dtype_name((kiln_dtype)b->dtype), sb);
    return;
  }
  size_t es = kiln_dtype_size((kiln_dtype)a->dtype);
  for (int64_t i = 0; i < a->size; i++) {
    if (memcmp((char *)a->data + i * es, (char *)b->data + i * es, es) == 0) continue;
    if ((a->dtype == KILN_FLOAT32 || a->dtype == KILN_FLOAT64)) {
      uint64_t ba = 0, bb = 0;
      memcpy(&ba, (char *)a->data + i * es, es);
      memcpy(&bb, (char *)b->data + i * es, es);
      snprintf(buf, n, "%s %s: element %lld: jit %a (0x%llx), reference %a (0x%llx)",
               kiln_dtype_name((kiln_dtype)a->dtype), sa, (long long)i,
               kl_load_f64((kiln_dtype)a->dtype, a->data, i), (unsigned long long)ba,
               kl_load_f64((kiln_dtype)b->dtype, b->data, i), (unsigned long long)bb);
    } else {
      snprintf(buf, n, "%s %s: element %lld: jit %lld, reference %lld",
               kiln_dtype_name((kiln_dtype)a->dtype), sa, (long long)i,
               (long long)kl_load_i64((kiln_dtype)a->dtype, a->data, i),
               (long long)kl_load_i64((kiln_dtype)b->dtype, b->data, i));
    }
    return;
  }
  snprintf(buf, n, "no difference");
}

kiln_tensor *kt_clone(const kiln_tensor *t) {
  kiln_tensor *c = kiln_tensor_new((kiln_dtype)t->dtype, t->rank, t->shape, t->data);
  ck_assert_ptr_nonnull(c);
  return c;
}

/* The text kiln_function_dump_named (stage given, name NULL) or
** kiln_function_dump writes, in memory; asserts the dump succeeds. */
static char *dump_to_string(kiln_function *f, kiln_stage stage, const char *name) {
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  ck_assert_ptr_nonnull(m);
  kiln_status st = name ? kiln_function_dump_named(f, name, m) : kiln_function_dump(f, stage, m);
  ck_assert_int_eq(fclose(m), 0);
  ck_assert_msg(st == KILN_OK, "dump of stage '%s' (%d) failed: %s", name ? name : "", (int)stage,
                kiln_status_str(st));
  ck_assert_ptr_nonnull(buf);
  return buf;
}

char *kt_dump(kiln_function *f, const char *stage) {
  return dump_to_string(f, KILN_STAGE_GRAPH, stage);
}

char *kt_dump_stage(kiln_function *f, kiln_stage stage) { return dump_to_string(f, stage, NULL); }

void kt_check_calls(kiln_ctx *ctx, kiln_function *f, const char *what, int n_in,
                    kiln_node *const *ins, kiln_tensor *const *vals, int n_out,
                    kiln_node *const *outs, int calls, kiln_tensor **keep) {
  enum { MAX = 32 };
  ck_assert_msg(n_out <= MAX, "%s: %d outputs, kt_check_calls takes %d", what, n_out, MAX);
  kiln_tensor *ref[MAX];
  kiln_status st = kl_ref_run(ctx, n_in, ins, (const kiln_tensor *const *)vals, n_out, outs, ref);
  ck_assert_msg(st == KILN_OK, "%s: reference: %s", what, kiln_errmsg(ctx));
  for (int round = 0; round < calls; round++) {
    const kiln_tensor *got[MAX];
    st = kiln_call(f, (const kiln_tensor *const *)vals, got);
    ck_assert_msg(st == KILN_OK, "%s: call: %s", what, kiln_errmsg(ctx));
    for (int k = 0; k < n_out; k++) {
      if (kt_same_bits(got[k], ref[k])) continue;
      char d[512];
      kt_describe_diff(got[k], ref[k], d, sizeof d);
      ck_abort_msg("%s: output %d (call %d): JIT differs from reference: %s", what, k, round + 1,
                   d);
    }
    if (keep && round == calls - 1)
      for (int k = 0; k < n_out; k++)
        keep[k] = kt_clone(got[k]);
  }
  for (int k = 0; k < n_out; k++)
    kiln_tensor_free(ref[k]);
}

const int64_t kt_int_lo[] = {0, INT8_MIN, INT16_MIN, INT32_MIN, INT64_MIN, 0};
const int64_t kt_int_hi[] = {1, INT8_MAX, INT16_MAX, INT32_MAX, INT64_MAX, UINT8_MAX};

void kt_put_int(kiln_dtype dt, void *p, int64_t i, int64_t v) {
  kl_convert(dt, p, i, KILN_INT64, &v, 0);
}
