/*
** function.h -- from a graph to a compiled function. The function graph
** (kl_fgraph) is the list of nodes reachable from the outputs and updates,
** in topological order, with the buffer each node's value lives in. It
** exists only while compiling; the function keeps the runtime plan, the
** JIT code and the text of its stages.
*/
#ifndef KILN_FUNCTION_H
#define KILN_FUNCTION_H

#include "compiler/graph.h"
#include "runtime/plan.h"

typedef struct kl_copy {
  int32_t node; /* local node whose value is copied */
  int32_t buf;  /* into this buffer */
} kl_copy;

typedef struct kl_fgraph {
  kiln_ctx *ctx;
  int n;
  kiln_node **nodes; /* topological order */
  int32_t *home;     /* buffer of each node; -1 for a rank-0 constant (inlined) */
  int32_t *local;    /* ctx node id -> local index, or -1 */
  int n_copies;
  kl_copy *copies;
  kl_plan *plan; /* shape program and buffer table */
} kl_fgraph;

/* Local index of v's input k. */
static inline int kl_fg_in(const kl_fgraph *g, const kiln_node *v, int k) {
  return g->local[v->in[k]->id];
}

struct kiln_function {
  uint32_t magic;
  kiln_ctx *ctx;
  char *name;
  kl_plan *plan;
  struct kl_jit_code *code;
  char *graph_text;
};

/* The LLVM side (compiler/llvm/backend.c); no LLVM types cross this line. */
kiln_status kl_backend_compile(kiln_ctx *ctx, const kl_fgraph *g, const char *symbol,
                               struct kl_jit_code **out_code, void **out_fn);
const char *kl_backend_text(struct kl_jit_code *code, kiln_stage stage, kiln_status *st,
                            char *err, size_t errn);
void kl_backend_code_free(struct kl_jit_code *code);
void kl_ctx_jit_free(kiln_ctx *ctx);

/* The function graph as text, one node per line (KILN_STAGE_GRAPH). */
char *kl_fgraph_text(const kl_fgraph *g);

#endif
