/*
** verify.c -- the graph verifier, run between passes in debug builds (and
** whenever KILN_VERIFY=1): ids are positions, inputs come before their
** users, arities match the op table, elementwise operands share a dtype,
** sinks are in the graph, and a scheduled graph has no fused sink.
*/
#include "compiler/passes/passes.h"

#include <stdio.h>

static kiln_status bad(kl_fgraph *g, const char *after, const kiln_node *v, const char *what) {
  char lb[256];
  return kl_error(g->ctx, KILN_INTERNAL, "internal: graph invalid after %s: %s: %s (%s:%d)", after,
                  v ? kl_node_label(v, lb, sizeof lb) : "graph", what, __FILE__, __LINE__);
}

static bool in_graph(const kl_fgraph *g, const kiln_node *v) {
  return v && v->id < (uint32_t)g->n && g->nodes[v->id] == v;
}

kiln_status kl_fg_verify(kl_fgraph *g, const char *after) {
  for (int i = 0; i < g->n; i++) {
    const kiln_node *v = g->nodes[i];
    if (v->id != (uint32_t)i) return bad(g, after, v, "id is not its position");
    if (kl_ops[v->op].arity >= 0 && v->n_in != kl_ops[v->op].arity)
      return bad(g, after, v, "wrong number of inputs");
    for (int k = 0; k < v->n_in; k++)
      if (!in_graph(g, v->in[k]) || v->in[k]->id >= (uint32_t)i)
        return bad(g, after, v, "an input is missing or comes later");
    if (kl_ops[v->op].kind == KL_ELEM && v->op != KL_OP_CAST)
      for (int k = v->op == KL_OP_WHERE ? 2 : 1; k < v->n_in; k++)
        if (v->in[k]->type.dtype != v->in[v->op == KL_OP_WHERE ? 1 : 0]->type.dtype)
          return bad(g, after, v, "operands of different dtypes");
    if (v->op == KL_OP_CONST && !v->data) return bad(g, after, v, "constant without data");
    if (g->sched && kl_ops[v->op].kind == KL_LEAF && g->sched[i] != KL_S_LEAF)
      return bad(g, after, v, "a leaf scheduled as computed");
  }
  for (int k = 0; k < g->n_outputs; k++) {
    if (!in_graph(g, g->outputs[k])) return bad(g, after, NULL, "an output is not in the graph");
    if (g->sched && g->sched[g->outputs[k]->id] == KL_S_FUSED)
      return bad(g, after, g->outputs[k], "an output is fused");
  }
  for (int u = 0; u < g->n_updates; u++) {
    const kiln_node *v = g->upd_value[u];
    if (!in_graph(g, v)) return bad(g, after, NULL, "an update value is not in the graph");
    if (g->sched && g->sched[v->id] == KL_S_FUSED)
      return bad(g, after, v, "an update value is fused");
    if (v->type.dtype != g->upd_shared[u]->type.dtype ||
        v->type.rank != g->upd_shared[u]->type.rank)
      return bad(g, after, v, "an update value's type changed");
  }
  return KILN_OK;
}
