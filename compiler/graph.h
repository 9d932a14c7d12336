/*
** graph.h -- the symbolic graph: contexts, nodes, types, and the op table's
** metadata. Nodes live in the context's arena and are immutable once built;
** a node's inputs are built before it, so node ids are a topological order.
*/
#ifndef KILN_GRAPH_H
#define KILN_GRAPH_H

#include "kiln.h"
#include "runtime/rt.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum kl_opcode {
#define OP(id, name, arity, kind, grad) KL_OP_##id,
#include "compiler/ops/ops.def"
#undef OP
  KL_N_OPS
} kl_opcode;

typedef enum kl_opkind {
  KL_LEAF,
  KL_ELEM,
  KL_BCAST,
  KL_REDUCE,
  KL_LIKE,
  KL_DOT,
  KL_COUNT,
  KL_SHUFFLE,
  KL_RESHAPE,
  KL_INDEX /* slicing, take, one_hot, concatenate (compiler/index.c) */
} kl_opkind;

typedef struct kl_opinfo {
  const char *name;
  int arity;
  kl_opkind kind;
  bool has_grad;
} kl_opinfo;
extern const kl_opinfo kl_ops[KL_N_OPS];

/* A tensor type. dims[i] is a static size >= 0 or KILN_DYN. A weak type is
** a number literal's (or an expression of literals only). */
typedef struct kl_type {
  uint8_t dtype;
  uint8_t rank;
  bool weak;
  int64_t dims[KILN_MAX_RANK];
} kl_type;

/* Op parameters (only those of the node's op are meaningful). */
typedef struct kl_params {
  uint32_t axes; /* REDUCE/COUNT: reduced axes of the input; BCAST: axes of
                    the output that input 0 lacks */
  bool ta, tb;   /* DOT: transpose a / b */
  bool keepdims; /* REDUCE: the reduced axes stay, with size 1 (numpy's keepdims) */
  /* SHUFFLE: the input axis each output axis is, -1 for an inserted size-1
  ** axis. RESHAPE: the axis of the last input whose run-time size a dynamic
  ** output axis has, -1 for a static size or the one inferred size. */
  int8_t src_axis[KILN_MAX_RANK];
  /* INDEX ops (compiler/index.c) */
  const kiln_slice *slices; /* SLICE, SLICE_INC: one per axis of the sliced tensor (arena) */
  int8_t axis;              /* TAKE, TAKE_INC, CONCAT, CONCAT_PART */
  uint8_t lacks;            /* CONCAT: bit k: operand k lacks the axis (stack); CONCAT_PART:
                               1 if the part lacks it */
  uint8_t part;             /* CONCAT_PART: 0 the leading part of the axis, 1 the trailing */
  int64_t n;                /* ONE_HOT: number of classes */
} kl_params;

#define KL_MAGIC_NODE 0x4b4c4e44u /* "KLND" */
#define KL_MAGIC_CTX 0x4b4c4358u  /* "KLCX" */
#define KL_MAGIC_FN 0x4b4c464eu   /* "KLFN" */

struct kiln_node {
  uint32_t magic;
  uint32_t id; /* index in ctx->nodes: inputs always have smaller ids */
  kiln_ctx *ctx;
  uint16_t op;
  uint16_t n_in;
  kiln_node **in;
  kl_type type;
  kl_params p;
  const char *name; /* user's name or NULL (arena) */
  const char *file; /* where the builder was called (the user's string literal) */
  int line;
  const char *origin; /* which rule made it ("grad of 'cost'"), or NULL (arena) */
  void *data;         /* CONST: the value, C order, type.dtype (arena) */
  kiln_tensor *value; /* SHARED: its storage (owned by the context) */
};

/* The chunked arena of a context: nodes, names, constants. */
typedef struct kl_arena {
  struct kl_chunk *head;
} kl_arena;
void *kl_arena_alloc(kl_arena *a, size_t n); /* zeroed, 16-aligned; NULL if out of memory */
void kl_arena_free(kl_arena *a);
char *kl_arena_strdup(kl_arena *a, const char *s);

struct kl_jit;
struct kiln_ctx {
  uint32_t magic;
  kiln_status status;
  unsigned n_errors; /* errors recorded so far: lets a caller see if a callee failed */
  char msg[1024];
  kl_arena arena;
  kiln_node **nodes;
  uint32_t n_nodes, cap_nodes;
  kiln_tensor **shared; /* storage of shared variables, owned */
  int n_shared, cap_shared;
  struct kiln_function **fns; /* live functions, owned */
  int n_fns, cap_fns;
  struct kl_jit *jit;            /* created with the first function */
  const char *origin;            /* set while kiln_grad builds nodes */
  int n_funcs_made;              /* to name step symbols uniquely */
  struct kl_cache_entry **cache; /* compiled steps, shared by equal functions (cache.c) */
  int n_cache, cap_cache;
  struct kl_pool *pool; /* the steps' thread pool (runtime/pool.c); NULL: one thread */
  int compile_threads;  /* kiln_ctx_set_compile_threads: 0 automatic, else the count */
};

/* ---- errors (compiler/ctx.c) */
/* Records an error, replacing the previous one (builders given a NULL
** input record nothing, so along a chain the first error stays). Returns st. */
kiln_status kl_error(kiln_ctx *ctx, kiln_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline bool kl_ctx_ok(const kiln_ctx *ctx) { return ctx && ctx->magic == KL_MAGIC_CTX; }
/* kiln_clear_error's work on a context known valid (inline: kiln_call's hot path). */
static inline void kl_ctx_clear(kiln_ctx *ctx) {
  ctx->status = KILN_OK;
  ctx->msg[0] = 0;
}
bool kl_node_ok(const kiln_node *v);
const char *kl_basename(const char *file); /* "dir/seed.c" -> "seed.c" */
/* "'x' (input built at seed.c:10)" or "mul #12 (built at seed.c:15)". */
const char *kl_node_label(const kiln_node *v, char *buf, size_t n);
const char *kl_type_str(const kl_type *t, char *buf, size_t n); /* "float32 (?, 4)" */

/* ---- nodes (compiler/ctx.c) */
/* A new node of op with the given inputs and type, or NULL (error set). */
kiln_node *kl_node_new(kiln_ctx *ctx, kl_opcode op, int n_in, kiln_node *const *in,
                       const kl_type *type, const kl_params *p, const char *file, int line);
/* A constant node; data (type's dtype, C order) is copied. */
kiln_node *kl_const_new(kiln_ctx *ctx, const kl_type *type, const void *data, const char *file,
                        int line);
/* A rank-0 constant of dtype dt holding v (converted as kl_convert does). */
kiln_node *kl_scalar_const(kiln_ctx *ctx, kiln_dtype dt, double v, const char *file, int line);

/* ---- types (compiler/types.c) */
kiln_dtype kl_promote(kiln_dtype a, kiln_dtype b);
/* dtype of sqrt/exp/log results: floats stay, small ints -> float32, others float64
** (div is true division: integers divide as float64). */
kiln_dtype kl_float_of(kiln_dtype dt);
/* numpy broadcast of two static types' dims into out; false if they cannot. */
bool kl_broadcast_dims(const kl_type *a, const kl_type *b, kl_type *out);
int64_t kl_type_static_size(const kl_type *t); /* -1 if any dim is dynamic */

/* ---- internal builders (compiler/build.c): the public ones minus file/line
** bookkeeping, used by grad rules. */
kiln_node *kl_elem(kl_opcode op, int n, kiln_node *const *in, const char *file, int line);
kiln_node *kl_cast(kiln_node *x, kiln_dtype dt, const char *file, int line);
/* The context shared by the n operands of builder what, or NULL: quietly if
** an operand is NULL (an earlier builder failed), with KILN_MISUSE if a
** handle is bad or the operands belong to different contexts. */
kiln_ctx *kl_common_ctx(const char *what, int n, kiln_node *const *in);
kiln_node *kl_reduce(kl_opcode op, kiln_node *x, uint32_t axes, const char *file, int line);
/* kl_reduce with numpy's keepdims: the reduced axes stay with size 1. */
kiln_node *kl_reduce_kd(kl_opcode op, kiln_node *x, uint32_t axes, bool keepdims, const char *file,
                        int line);
/* Reductions without an identity (max, min, argmax, argmin): reducing an
** axis of size 0 is a KILN_SHAPE error, at build time for static sizes and
** from the shape program at call time. */
bool kl_reduce_needs_elements(int op);
/* A float sum down to one value (sum over every axis, with or without
** keepdims, or sum_like to rank 0): the backend sums it in the blocked,
** chunked order (backend.c, emit_blocked_sum), and the plan reserves the
** partials area for it when its rows are long (KL_SHF_PARTIALS). */
bool kl_is_blocked_sum(const kiln_node *v);
kiln_node *kl_bcast(kiln_node *g, kiln_node *like, uint32_t axes, const char *file, int line);
kiln_node *kl_sum_like(kiln_node *g, kiln_node *like, const char *file, int line);
kiln_node *kl_dot(kiln_node *a, kiln_node *b, bool ta, bool tb, const char *file, int line);
kiln_node *kl_zeros_like(kiln_node *x, const char *file, int line);
/* Shape ops. kl_dimshuffle: output axis a is x's axis src[a], or a new
** size-1 axis where src[a] is -1; the caller checked the pattern, and axes
** left out must have size 1 at run time (the gradient drops axes its
** dimshuffle inserted, whose static size a gradient may have lost). The
** identity returns x. kl_reshape_like: g, with like's element count, in
** like's shape (the gradient of a reshape). */
kiln_node *kl_dimshuffle(kiln_node *x, int n, const int *src, const char *file, int line);
kiln_node *kl_reshape_like(kiln_node *g, kiln_node *like, const char *file, int line);
/* True if a value of type from may need summing to reach type to (not
** provably the same shape). */
bool kl_needs_sum_like(const kl_type *from, const kl_type *to);

/* ---- stability rewrites (compiler/passes/stabilize.c) */
/* The cost with the stability rewrites applied (new nodes in ctx; cost
** itself when none fires), for kiln_grad to differentiate. The keep nodes
** (the wrt) are neither rewritten nor looked through. NULL on error. */
kiln_node *kl_stabilize_cost(kiln_ctx *ctx, kiln_node *cost, int n_keep, kiln_node *const *keep);
/* ---- indexing (compiler/index.c): internal builders of the gradients */
/* zeros of like's shape with g written into the region slices selects */
kiln_node *kl_slice_inc(kiln_node *g, kiln_node *like, const kiln_slice *slices, const char *file,
                        int line);
/* take along axis, and zeros of like's shape with g added at the indices */
kiln_node *kl_take(kiln_node *x, kiln_node *idx, int axis, const char *file, int line);
kiln_node *kl_take_inc(kiln_node *g, kiln_node *idx, kiln_node *like, int axis, const char *file,
                       int line);
/* the part of g (a concatenation's gradient) that belongs to operand like */
kiln_node *kl_concat_part(kiln_node *g, kiln_node *like, int axis, int part, bool lacks,
                          const char *file, int line);
/* Can v fail at run time, inside the step (take, inc_take, one_hot)? */
bool kl_index_can_fail(const kiln_node *v);
/* Is input k of v read only for its shape (the like operands)? */
bool kl_index_shape_only(const kiln_node *v, int k);
/* The parameters of an INDEX node as text for dumps: "1:3,::-1,2", "axis=0". */
const char *kl_index_params_text(const kiln_node *v, char *buf, size_t n);
/* Do two INDEX nodes of the same op and inputs have the same parameters?
** And a hash of them (CSE, the compile cache). */
bool kl_index_same_params(const kiln_node *a, const kiln_node *b);
uint64_t kl_index_params_hash(const kiln_node *v);
/* Reference evaluation of the INDEX ops (compiler/ops/eval_index.c). */
kiln_status kl_eval_index(const kiln_node *v, const kiln_tensor *const *in, kiln_tensor *out,
                          char *err, size_t errn);

/* ---- reference evaluation (compiler/ops/eval.c) */
/* Evaluates node v's op on concrete input tensors, writing out (reshaped
** as needed). The plain-C oracle for the JIT and for constant folding. */
kiln_status kl_eval_node(const kiln_node *v, const kiln_tensor *const *in, kiln_tensor *out,
                         char *err, size_t errn);

/* Integer power as the JIT computes it (compiler/ops/eval.c). */
int64_t kl_ipow(int64_t x, int64_t y);
/* Floor division (or, with want_mod, its remainder) as the JIT computes it. */
int64_t kl_floordiv(int64_t x, int64_t y, bool want_mod);

#endif
