/*
** function.h -- from a graph to a compiled function.
**
** The function graph (kl_fgraph) is the compiler's own copy of the nodes
** reachable from a function's outputs and updates, in its own arena: passes
** rewrite it freely while the user's graph stays as built. Node ids in it are
** positions in nodes[], a topological order (kl_fg_sort restores this after
** a pass). It exists only while compiling; the function keeps the runtime
** plan, the JIT code and the text of its stages.
*/
#ifndef KILN_FUNCTION_H
#define KILN_FUNCTION_H

#include "compiler/graph.h"
#include "runtime/plan.h"

#include <stdbool.h>

/* How a node of the scheduled graph is computed (compiler/passes/fuse.c). */
typedef enum kl_sched {
  KL_S_LEAF = 0, /* input, shared variable or constant: read where it lives */
  KL_S_SCALAR,   /* rank 0: computed once, kept in a register */
  KL_S_FUSED,    /* evaluated inside the loops of the kernels that use it */
  KL_S_ROOT      /* the result of a kernel (a loop nest), materialized */
} kl_sched;

/* In an index map (which loop index drives each axis of a node evaluated
** inline), the constant index 0: an axis of size 1 a dimshuffle drops. */
#define KL_IDX_ZERO KILN_MAX_RANK

typedef struct kl_copy {
  int32_t node; /* node whose value is copied */
  int32_t buf;  /* into this buffer */
} kl_copy;

typedef struct kl_fgraph {
  kiln_ctx *ctx;
  kl_arena arena;
  kiln_node **nodes; /* topological; nodes[i]->id == i */
  int n, cap;
  /* the function's interface, as nodes of this graph */
  int n_inputs, n_outputs, n_updates;
  kiln_node **inputs; /* INPUT copies, in the function's order (may be unused) */
  kiln_node **outputs;
  kiln_node **upd_shared; /* SHARED copies */
  kiln_node **upd_value;
  const char *rule;  /* the rewrite rule running now, recorded on the nodes it makes */
  bool fast_math;    /* allow rewrites that are not IEEE-exact */
  bool no_optimize;  /* only what lowering needs: no rewrites, no fusion */
  bool no_stabilize; /* no stability rewrites (stabilize.c) */
  int llvm_opt_level;
  /* schedule (fuse.c, inplace.c), indexed by node id, valid after them */
  uint8_t *sched;
  bool *inplace; /* update value written straight into its variable */
  int32_t *home; /* buffer of each node, -1 if none (fused, scalar, inlined constant) */
  int n_copies;
  kl_copy *copies;
  kl_plan *plan;
} kl_fgraph;

/* ---- compiler/fgraph.c */
/* Copies what outputs and update values reach from the user's graph. */
kiln_status kl_fg_build(kl_fgraph *g, kiln_ctx *ctx, int n_in, kiln_node *const *in, int n_out,
                        kiln_node *const *out, int n_upd, const kiln_update *upd);
void kl_fg_free(kl_fgraph *g);
/* ---- compiler/givens.c */
/* Checks the givens and replaces out[] and upd[].value by copies of what
** they compute with every given var replaced by its expr (new nodes in
** ctx). KILN_OK and nothing changed when n_givens is 0. */
kiln_status kl_givens_apply(kiln_ctx *ctx, int n_givens, const kiln_given *givens, int n_out,
                            kiln_node **out, int n_upd, kiln_update *upd);
/* A new node in g, placed at the end (kl_fg_sort puts it in order). Its
** name, file and line come from like (may be NULL); its origin is g->rule. */
kiln_node *kl_fg_add(kl_fgraph *g, kl_opcode op, int n_in, kiln_node *const *in,
                     const kl_type *type, const kl_params *p, const kiln_node *like);
/* A rank-0 or static constant node with the given data (copied). */
kiln_node *kl_fg_const(kl_fgraph *g, const kl_type *type, const void *data, const kiln_node *like);
/* Every use of old (inputs of nodes, outputs, update values) now uses new. */
void kl_fg_replace(kl_fgraph *g, kiln_node *old, kiln_node *repl);
/* Drops nodes no output or update reaches and restores topological order
** with ids = positions. Returns KILN_NOMEM or KILN_OK. */
kiln_status kl_fg_sort(kl_fgraph *g);
/* Number of value uses of each node (a BCAST's second operand and COUNT's
** operand are shape-only and not counted), written to uses[0..n-1]. */
void kl_fg_uses(const kl_fgraph *g, int *uses);
/* Is input k of v read for its values (not only its shape)? */
bool kl_reads_value(const kiln_node *v, int k);
/* The graph as text, one node per line: "%3 = mul(%1, %2) : float64 (4,) 'y' @ seed.c:12". */
char *kl_fg_text(const kl_fgraph *g);
/* Graphviz drawing of the graph. */
char *kl_fg_dot(const kl_fgraph *g, const char *name);

/* ---- compiler/passes/pipeline.c */
typedef struct kl_stage_text {
  char *name; /* "graph", "pass.01.canonicalize", "plan", ... */
  char *text;
} kl_stage_text;

typedef struct kl_pipeline_log {
  int n, cap;
  kl_stage_text *stages;
  double seconds[32]; /* per pass, in pipeline order */
  int n_passes;
  const char *pass_names[32];
} kl_pipeline_log;

/* Runs the pass pipeline over g, recording the graph as text after each pass
** that changed it (when log is not NULL). */
kiln_status kl_pipeline_run(kl_fgraph *g, kl_pipeline_log *log);
kiln_status kl_log_add(kl_pipeline_log *log, const char *name, char *text); /* takes text */
void kl_log_free(kl_pipeline_log *log);
/* Checks the graph's invariants; returns KILN_INTERNAL with a message in the
** context when one is broken. */
kiln_status kl_fg_verify(kl_fgraph *g, const char *after);

/* ---- the compiled function */
struct kiln_function {
  uint32_t magic;
  kiln_ctx *ctx;
  char *name;
  kl_plan *plan;
  struct kl_jit_code *code;         /* the fast step's (a reference in the cache) */
  struct kl_jit_code *code_general; /* the general step's once compiled (the cache's) */
  kl_fgraph *graph;                 /* kept for the general step */
  kl_pipeline_log log;              /* the text of every stage but LLVM's */
};

/* Where the time of a compile went, in seconds (shown by KILN_TIMING). */
typedef struct kl_times {
  double total;   /* from the cache lookup to a callable step */
  double jit_new; /* creating the context's JIT (its first compile only) */
  double lower;   /* building the LLVM IR */
  double text;    /* verifying the module and keeping its text, before and after the passes */
  double passes;  /* LLVM's optimization pipeline */
  double codegen; /* instruction selection, register allocation, linking */
} kl_times;

/* The LLVM side (compiler/llvm/backend.c); no LLVM types cross this line. */
/* Compiles g's step as symbol: the fast step (kernels assume no dynamic
** size is 1), or with general the general step (each kernel that reads a
** dynamic size also has its broadcasting version, chosen at run time). With
** object non-NULL the step is compiled to an object file whose bytes are
** returned too (kl_malloc'd), for the on-disk cache. */
kiln_status kl_backend_compile(kiln_ctx *ctx, const kl_fgraph *g, const char *symbol, bool general,
                               struct kl_jit_code **out_code, void **out_fn, kl_times *t,
                               unsigned char **object, size_t *object_len);
/* Links an object file from the on-disk cache; on failure only a status and
** err (the caller falls back to compiling). */
kiln_status kl_backend_load(kiln_ctx *ctx, const unsigned char *obj, size_t len, const char *symbol,
                            struct kl_jit_code **out_code, void **out_fn, char *err, size_t errn);
/* The host as code generation sees it, for on-disk cache keys (kl_malloc'd). */
char *kl_backend_host_id(void);
const char *kl_backend_text(struct kl_jit_code *code, kiln_stage stage, kiln_status *st, char *err,
                            size_t errn);
void kl_backend_code_free(struct kl_jit_code *code);
void kl_ctx_jit_free(kiln_ctx *ctx);

/* ---- compiler/cache.c: compiled steps shared by functions with equal
** optimized graphs. kl_cache_compile compiles or finds the step (a new
** reference); kl_cache_release drops one; kl_cache_free drops all. */
kiln_status kl_cache_compile(kiln_ctx *ctx, const kl_fgraph *g, struct kl_jit_code **out_code,
                             void **out_fn, kl_times *t, int *out_hit);
/* out_hit: 0 compiled, 1 found in memory, 2 linked from the on-disk cache */
/* The general step of the function whose fast step is code (compiled on the
** first call that needs it, then kept beside the fast step and shared the
** same way; same out_hit). */
kiln_status kl_cache_compile_general(kiln_ctx *ctx, const kl_fgraph *g, struct kl_jit_code *code,
                                     struct kl_jit_code **out_code, void **out_fn, kl_times *t,
                                     int *out_hit);
void kl_cache_release(kiln_ctx *ctx, struct kl_jit_code *code);
void kl_cache_free(kiln_ctx *ctx);

#endif
