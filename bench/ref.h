/* ref.h -- hand-written C references for the benchmarks (ref.c is built
** with -O3 -march=native -ffp-contract=off). */
#ifndef KILN_BENCH_REF_H
#define KILN_BENCH_REF_H

#include <stdint.h>

/* The seed step: y = sum(x*W) in float64 from float32 x; W -= 0.1 * grad. */
double ref_seed_step(const float *x, float t, double *W, int n);
/* linreg in float32: y = sum(x*W) (16 accumulators), W -= lr * (-2 (t - y)) x. */
float ref_linreg_step(const float *x, float t, float *W, int64_t n, float lr);
/* Its two passes over elements lo..hi-1: the 16-accumulator dot, and
** W -= g x. */
float ref_dot16(const float *x, const float *W, int64_t lo, int64_t hi);
void ref_update(const float *x, float *W, float g, int64_t lo, int64_t hi);

/* The linreg step by hand on two threads (ref_team.c): the caller and one
** helper thread each take half of both passes. A team's helper spins for
** about a millisecond after each step, then sleeps. NULL: no memory or no
** thread. */
typedef struct ref_team ref_team;
ref_team *ref_team_new(void);
void ref_team_free(ref_team *t);
float ref_linreg_step2(ref_team *t, const float *x, float tv, float *W, int64_t n, float lr);

/* One SGD step of a 64 -> 128 tanh -> 10 softmax-crossentropy MLP on a
** batch of b rows (plain loops, libm tanhf); returns the mean loss. */
float ref_mlp_step(const float *x, const float *y, int b, float *W1, float *b1, float *W2,
                   float *b2, float lr, float *scratch);

#endif
