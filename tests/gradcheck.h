/* gradcheck.h -- the finite-difference gradient harness shared by the
** gradient suites (test_grad.c, test_grad_elem.c): leaves with random values
** (ispec), a builder callback (gcase), and check_grad(), which makes the cost
** sum(out * R) with R a fixed random constant, asks kiln_grad for the
** gradients, evaluates cost and gradients by the JIT and by the reference
** evaluator (they must agree bit for bit), and holds the JIT gradient to the
** central difference of the JIT cost for every element of every wrt. The
** lower-level pieces (world, compile, run_jit, run_ref, ...) serve the
** suites' own cases. */
#ifndef KILN_GRADCHECK_H
#define KILN_GRADCHECK_H

#include "compiler/refeval.h"
#include "tests/testutil.h"

#include <check.h>
#include <stdbool.h>
#include <stdint.h>

#define MAXIN 4
#define MAXR 4

/* flags of a leaf */
#define F_WRT 1u    /* differentiate wrt this leaf */
#define F_SHARED 2u /* a shared variable, not an input */
#define F_SIGN 4u   /* random sign: values in [-hi, -lo] U [lo, hi] */

typedef struct ispec {
  const char *name;
  kiln_dtype dt;
  int rank;
  int64_t shape[MAXR]; /* call-time shape */
  unsigned dyn;        /* bit d: dimension d is KILN_DYN in the node's type */
  double lo, hi;       /* values in [lo, hi] */
  double step;         /* > 0: values lo + k*step only (keeps operands apart) */
  unsigned flags;
} ispec;

typedef kiln_node *(*build_fn)(kiln_ctx *ctx, kiln_node *const *in, int arg);

typedef struct gcase {
  const char *what;
  int n_in;
  ispec in[MAXIN];
  build_fn build;
  int arg;
  bool r32; /* R is float32 (keeps an all-float32 cost float32) */
} gcase;

/* The leaves of one graph with their current values. Shared variables keep
** their value in the context too; val[] mirrors it. */
typedef struct world {
  kiln_ctx *ctx;
  int n;
  kiln_node *node[MAXIN];
  kiln_tensor *val[MAXIN];
  unsigned flags[MAXIN];
  int n_fin; /* the function's inputs: leaves that are not shared */
  kiln_node *fin[MAXIN];
  const kiln_tensor *fval[MAXIN];
} world;

bool has(const char *msg, const char *part);
kiln_tensor *copy_tensor(const kiln_tensor *t);
void set_elem(kiln_tensor *t, int64_t i, double v);
double rand_value(const ispec *s, uint64_t *rng);
kiln_tensor *rand_tensor(const ispec *s, uint64_t *rng);
kiln_node *rand_const(kiln_ctx *ctx, kiln_dtype dt, int rank, const int64_t *shape, uint64_t seed);
void world_init(world *w, int n, const ispec *in, uint64_t seed);
void world_free(world *w);
void world_push(world *w, int k);
kiln_function *compile(world *w, int n_out, kiln_node *const *outs);
void run_jit(world *w, kiln_function *f, int n_out, kiln_tensor **res);
void run_ref(world *w, int n_out, kiln_node *const *outs, kiln_tensor **res);
double jit_cost(world *w, kiln_function *f);
void fd_check(world *w, kiln_function *f, int k, const kiln_tensor *grad, bool loose,
              const char *what);
kiln_tensor *ref_value(world *w, kiln_node *out);
void check_grad(const gcase *c);

#define IN(nm, dt_, r, s0, s1, s2, dy, l, h, st, fl)                                               \
  {                                                                                                \
    .name = (nm), .dt = (dt_), .rank = (r), .shape = {(s0), (s1), (s2), 0}, .dyn = (dy),           \
    .lo = (l), .hi = (h), .step = (st), .flags = (fl)                                              \
  }
#define D64 KILN_FLOAT64
#define F32 KILN_FLOAT32
#define I32 KILN_INT32

#endif
