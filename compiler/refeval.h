/* refeval.h -- the reference evaluator (see refeval.c). */
#ifndef KILN_REFEVAL_H
#define KILN_REFEVAL_H

#include "kiln.h"

/* Evaluates outputs[0..n_out-1] with the plain-C reference evaluation of
** each op. inputs[j] takes values[j]; shared variables read their current
** value. results[k] receive new tensors (free with kiln_tensor_free); all
** NULL on error, with the message in ctx. */
kiln_status kl_ref_run(kiln_ctx *ctx, int n_in, kiln_node *const *inputs,
                       const kiln_tensor *const *values, int n_out, kiln_node *const *outputs,
                       kiln_tensor **results);

#endif
