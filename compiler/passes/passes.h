/*
** passes.h -- the optimizer's passes, one file each. A pass returns true
** when it changed the graph; errors (out of memory) are left in the context
** and seen by the pipeline through ctx->n_errors.
*/
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "compiler/function.h"

bool kl_pass_canonicalize(kl_fgraph *g);
bool kl_pass_stabilize(kl_fgraph *g);
bool kl_pass_constant_fold(kl_fgraph *g);
bool kl_pass_cse(kl_fgraph *g);
bool kl_pass_simplify(kl_fgraph *g);
bool kl_pass_dce(kl_fgraph *g);
bool kl_pass_fuse_elemwise(kl_fgraph *g);
bool kl_pass_fuse_reduce(kl_fgraph *g);
bool kl_pass_inplace(kl_fgraph *g);

/* Shared by the two fusion passes (fuse.c). */
/* fuse=false: no node is fused (each its own kernel), for unoptimized code. */
bool kl_fuse(kl_fgraph *g, bool fuse, bool into_reductions);
/* Two types are the same (dtype, rank, every dim). */
bool kl_same_type(const kl_type *a, const kl_type *b);
/* A rank-0 constant's value as double (0 if v is not one). */
bool kl_is_scalar_const(const kiln_node *v, double *out);

#endif
