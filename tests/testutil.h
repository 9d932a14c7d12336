/* testutil.h -- small helpers shared by the Check suites. */
#ifndef KILN_TESTUTIL_H
#define KILN_TESTUTIL_H

#include "kiln.h"

#include <check.h>
#include <stdint.h>

/* Runs one suite (fork mode as CK_FORK says) and returns the exit status. */
int kt_run(Suite *s);
/* A tensor from doubles converted to dt (as kl_convert does). */
kiln_tensor *kt_tensor(kiln_dtype dt, int rank, const int64_t *shape, const double *vals);
/* Bit-exact comparison of two tensors' dtype, shape and data, except that
** any NaN equals any NaN (IEEE 754 leaves NaN sign and payload open). */
int kt_same_bits(const kiln_tensor *a, const kiln_tensor *b);
/* xorshift64* in [0, 1), seeded. */
double kt_rand(uint64_t *state);
/* Reads a whole file into malloc'ed memory (NUL-terminated); NULL on error. */
char *kt_read_file(const char *path);

/* How a (JIT) and b (reference) differ: dtype or shape, else the first
** differing element with its bits; "no difference" when none. */
void kt_describe_diff(const kiln_tensor *a, const kiln_tensor *b, char *buf, size_t n);
/* The lowest and highest value of each integer dtype (and bool), by dtype. */
extern const int64_t kt_int_lo[], kt_int_hi[];
/* Stores v into element i of an array of dtype dt, converted as kl_convert
** does (integers wrap, bool is v != 0). */
void kt_put_int(kiln_dtype dt, void *p, int64_t i, int64_t v);
/* A copy of t (asserts on allocation failure). */
kiln_tensor *kt_clone(const kiln_tensor *t);

/* A function's stage as a malloc'ed string, by name (kiln_function_dump_named:
** "opt", "plan", "pass.NN.<pass>", "ll", ...) or by kiln_stage; asserts the
** dump succeeds. */
char *kt_dump(kiln_function *f, const char *stage);
char *kt_dump_stage(kiln_function *f, kiln_stage stage);

/* Calls f (compiled from ins/outs) with vals `calls` times and checks every
** output against the reference evaluator (kl_ref_run) bit for bit, any NaN
** equal to any NaN; keep (may be NULL) receives copies of the last call's
** outputs. At most 32 outputs. */
void kt_check_calls(kiln_ctx *ctx, kiln_function *f, const char *what, int n_in,
                    kiln_node *const *ins, kiln_tensor *const *vals, int n_out,
                    kiln_node *const *outs, int calls, kiln_tensor **keep);

#endif
