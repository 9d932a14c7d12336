/*
** plan.h -- what a compiled function keeps to run: the native step, the
** shape program that computes every node's dimensions from the inputs'
** (checking them, with messages that name the user's nodes), and the buffer
** table the step receives. No pointer into a graph survives here.
**
** The step's signature is
**   int64_t step(void **bufs, const int64_t *dims, int64_t *err, kl_pool *pool)
** bufs[b] points at buffer b (see kl_buf); dims holds, for node i, its
** dimensions at dims[shape[i].dims_base ...]; large kernels run their
** chunks through pool (runtime/pool.h), never NULL.
*/
#ifndef KILN_PLAN_H
#define KILN_PLAN_H

#include "runtime/pool.h"
#include "runtime/rt.h"

/* Returns 0, or 1 after writing an error record into err (see kl_plan.step_err):
** the one way a step fails, an index out of range (take, one_hot). */
typedef int64_t (*kl_step_fn)(void **bufs, const int64_t *dims, int64_t *err, kl_pool *pool);

/* How a node's shape is found at call time. */
typedef enum kl_shape_kind {
  KL_SH_INPUT,  /* from input tensor src */
  KL_SH_FIXED,  /* static dims (constants, shared variables) */
  KL_SH_ELEM,   /* numpy broadcast of inputs in[0..n_in-1] */
  KL_SH_BCAST,  /* in[1]'s shape; in[0] must fit it without the axes in mask */
  KL_SH_REDUCE, /* in[0]'s shape without the axes in mask (flags: KL_SHF_KEEPDIMS:
                   with them, size 1; KL_SHF_NONEMPTY: each must have size > 0) */
  KL_SH_LIKE,   /* in[1]'s shape; in[0] must be summable to it */
  KL_SH_DOT,    /* matrix/vector product of in[0], in[1], rank 3 = a stack of matrices
                   (flags: 1 = ta, 2 = tb, KL_SHF_OUTER: outer product) */
  KL_SH_SCALAR, /* rank 0 */
  /* axis a is in[0]'s axis src_axis[a], or 1 where that is -1; in[0]'s other
  ** axes must have size 1 */
  KL_SH_SHUFFLE,
  /* fixed[a] where static, else the size of axis src_axis[a] of the last
  ** input, or (-1) inferred; the element count must be in[0]'s */
  KL_SH_RESHAPE,
  /* indexing (runtime/index.c); a slice's node also stores, after its own
  ** dims, the first index along each axis of the sliced tensor */
  KL_SH_SLICE,     /* in[0] sliced by slices[] */
  KL_SH_SLICE_INC, /* in[1]'s shape; in[0] must have the shape of in[1] sliced */
  KL_SH_TAKE,      /* in[0] along axis mask indexed by in[1] */
  KL_SH_TAKE_INC,  /* in[2]'s shape; in[0] must be its take along mask by in[1] */
  KL_SH_ONEHOT,    /* in[0]'s shape + (fixed[rank - 1],) */
  KL_SH_CONCAT,    /* in[0], in[1] joined along axis mask (flags bit k: in[k] lacks it) */
  KL_SH_PART       /* in[1]'s shape; in[0] along axis mask must be at least as long */
} kl_shape_kind;

/* kl_shape_op.flags of reductions (1 and 2 are dot's transposes) */
#define KL_SHF_KEEPDIMS 4u /* the reduced axes stay, with size 1 */
#define KL_SHF_NONEMPTY                                                                            \
  8u /* no identity (max, argmax...): a reduced axis of size 0 is an error                         \
      */

/* kl_shape_op.flags of KL_SH_DOT besides the transposes */
#define KL_SHF_OUTER 16u /* the outer product of two vectors */

/* kl_shape_op.flags of a float sum down to one value (KL_SH_REDUCE over
** every axis, KL_SH_LIKE to rank 0): when its rows are long, the step's
** pool computes the chunks' partial lanes into the workspace's partials
** area, which kl_plan_run sizes for it and passes as bufs[n_bufs] */
#define KL_SHF_PARTIALS 32u

typedef struct kl_shape_op {
  uint8_t kind, rank, n_in, flags;
  uint32_t mask;
  int32_t in[3];
  int32_t src;                  /* KL_SH_INPUT: input index */
  int32_t dims_base;            /* where this node's dims go in the dims array */
  int64_t fixed[KILN_MAX_RANK]; /* static dims (KILN_DYN where dynamic) */
  char *label;                  /* "mul #5 (built at seed.c:14)" for messages */
  const char *opname;
  /* KL_SH_SHUFFLE, KL_SH_RESHAPE: the source axis of each axis (kl_params) */
  int8_t src_axis[KILN_MAX_RANK];
  kiln_slice *slices; /* KL_SH_SLICE, KL_SH_SLICE_INC: one per axis (owned) */
} kl_shape_op;

typedef enum kl_buf_kind {
  KL_BUF_INPUT,  /* the caller's input tensor src */
  KL_BUF_SHARED, /* a shared variable's current value (read only in the step) */
  KL_BUF_CONST,  /* data owned by the plan */
  KL_BUF_OUTPUT, /* the function's output tensor src */
  KL_BUF_WORK    /* a workspace slot sized from node's dims */
} kl_buf_kind;

typedef struct kl_buf {
  uint8_t kind, dtype;
  int32_t node;        /* whose shape sizes it */
  int32_t src;         /* input / output index */
  kiln_tensor *shared; /* KL_BUF_SHARED */
  void *data;          /* KL_BUF_CONST (owned) */
  /* KL_BUF_WORK: a slot several nodes take in turn (their lives do not
  ** overlap); it is as large as the largest of them at the call's shapes */
  int32_t n_nodes;
  int32_t *nodes; /* owned; node is nodes[0] */
} kl_buf;

typedef struct kl_input_spec {
  char *label;
  uint8_t dtype, rank;
  int64_t dims[KILN_MAX_RANK];
} kl_input_spec;

typedef struct kl_update_spec {
  kiln_tensor *target; /* the shared variable's storage */
  int32_t buf;         /* the buffer holding its new value; -1: written in place */
  int32_t node;        /* the value's node, whose shape must equal target's */
  char *label;         /* the shared variable, for messages */
} kl_update_spec;

/* kl_plan_run's answer when the call needs the general step and it is not
** compiled yet (kiln_call compiles it and runs the call again). */
#define KL_NEED_GENERAL ((kiln_status)1000)

typedef struct kl_plan {
  /* The fast step assumes no dynamic size is 1 (no dynamic dimension
  ** broadcasts); a call where one is runs the general step, compiled on the
  ** first such call (NULL until then). */
  kl_step_fn step;
  kl_step_fn step_general;
  bool use_general; /* this call's shapes (valid with warm) need step_general */
  kl_pool *pool;    /* the context's pool (kl_pool_serial for one thread), never NULL */
  int n_nodes;
  kl_shape_op *shape;
  uint8_t *shape_dtype; /* dtype of each node */
  int n_dims;
  int n_bufs;
  kl_buf *bufs;
  int n_inputs;
  kl_input_spec *inputs;
  int n_outputs;
  int32_t *output_node; /* node whose shape each output has */
  kiln_tensor *outputs; /* output values, reused across calls */
  int n_updates;
  kl_update_spec *updates;
  /* call-time state, grown as shapes grow */
  int64_t *dims;
  void **ptrs;
  size_t *offsets;
  void *work;
  size_t work_cap;
  /* the input shapes of the last successful call: when a call repeats them,
  ** every shape, buffer size and pointer but the inputs' is still valid */
  bool warm;
  int64_t *last_dims; /* n_inputs * KILN_MAX_RANK */
  int32_t *in_buf;    /* per input: the buffer it is, or -1 (unused); in last_dims's block */
  /* per input: where the step reads it (its data, or a copy when the step
  ** writes that memory: an output passed back in), and the copies */
  void **in_ptr;
  void **stage;
  size_t *stage_cap;
  /* what a failed step reports: node, bad index, axis size, kind (0 take,
  ** 1 one_hot); runtime/index.c turns it into the message */
  int64_t step_err[4];
} kl_plan;

/* Runs one call: checks inputs, computes shapes, sizes the workspace,
** runs the step, commits updates. On error writes a message into err and
** leaves every shared variable untouched. KL_NEED_GENERAL (no message) when
** the shapes need the general step and step_general is NULL: nothing ran. */
kiln_status kl_plan_run(kl_plan *p, const kiln_tensor *const *inputs, char *err, size_t errn);
void kl_plan_free(kl_plan *p); /* frees everything the plan owns, and p */

/* runtime/index.c: the shape program's indexing kinds (d: the node's dims),
** and the message of a step that failed (an index out of range). */
kiln_status kl_index_shape(kl_plan *p, const kl_shape_op *op, int64_t *d, char *err, size_t n);
kiln_status kl_index_step_error(const kl_plan *p, char *err, size_t n);

#endif
