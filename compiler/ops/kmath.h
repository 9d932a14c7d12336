/*
** kmath.h -- Kiln's own float32 exp, log and tanh (see kmath.c).
**
** The JIT computes the same functions inline (compiler/llvm/kmath_ir.c) with
** the same sequence of IEEE operations, so the reference evaluator, the
** constant folder and compiled code agree bit for bit, and loops that use
** them vectorize.
*/
#ifndef KILN_KMATH_H
#define KILN_KMATH_H

float kl_expf(float x);
float kl_logf(float x);
float kl_tanhf(float x);

/* The formulas of the sigmoid and softplus ops, built on kl_expf (and libm's
** log1pf for softplus). */
float kl_sigmoidf(float x);
float kl_softplusf(float x);

#endif
