/*
** table.c -- the op table's metadata row per op, expanded from ops.def.
*/
#include "compiler/graph.h"

#include <assert.h>

#define LEAF KL_LEAF
#define ELEM KL_ELEM
#define BCAST KL_BCAST
#define REDUCE KL_REDUCE
#define LIKE KL_LIKE
#define DOT KL_DOT
#define COUNT KL_COUNT
#define SHUFFLE KL_SHUFFLE
#define RESHAPE KL_RESHAPE
#define INDEX KL_INDEX
const kl_opinfo kl_ops[KL_N_OPS] = {
#define OP(id, nm, ar, kd, gr) [KL_OP_##id] = {.name = nm, .arity = ar, .kind = kd, .has_grad = gr},
#include "compiler/ops/ops.def"
#undef OP
};
static_assert(sizeof kl_ops / sizeof kl_ops[0] == KL_N_OPS, "one row per op");
