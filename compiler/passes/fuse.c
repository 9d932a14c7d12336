/*
** fuse.c -- elementwise and reduction fusion: decides how every node is
** computed (kl_sched) and so cuts the graph into kernels.
**
**   leaf    read where it lives
**   scalar  rank 0: computed once in straight-line code, kept in a register
**   fused   not stored: recomputed inside the loop of each kernel using it
**   kernel  the root of a loop nest, stored (or, at rank 0, a register)
**
** An elementwise node (or a broadcast, a dimshuffle, a reshape: index
** remaps) is fused when all its value uses are
** inside elementwise kernels -- and, for the reduction pass, inside sum
** kernels, so the producers of a reduction run in its loop. A node with
** several uses is fused (recomputed in each) only when it is cheap and its
** own operands are stored, so duplication never cascades. A reshape reads
** its operand at the flat index, so its operand is always stored.
** Needs: a sorted graph. Guarantees: sched[] and inplace[] sized g->n.
*/
#include "compiler/passes/passes.h"

#include <string.h>

static bool cheap(int op) {
  switch (op) {
  case KL_OP_CAST:
  case KL_OP_NEG:
  case KL_OP_ABS:
  case KL_OP_SIGN:
  case KL_OP_SQR:
  case KL_OP_ADD:
  case KL_OP_SUB:
  case KL_OP_MUL:
  case KL_OP_MAX:
  case KL_OP_MIN:
  case KL_OP_BCAST:
  case KL_OP_RELU:
  case KL_OP_AND:
  case KL_OP_OR:
  case KL_OP_NOT:
  case KL_OP_ISNAN:
  case KL_OP_ISINF:
  case KL_OP_STOPGRAD:
  case KL_OP_DIMSHUFFLE:
  case KL_OP_RESHAPE:
  case KL_OP_RESHAPE_LIKE: return true;
  default: return op >= KL_OP_LT && op <= KL_OP_WHERE;
  }
}

/* Can consumer c evaluate an operand inside its loop? */
static bool evaluates_inline(const kiln_node *c, uint8_t c_sched, bool into_reductions) {
  kl_opkind kd = kl_ops[c->op].kind;
  if (c_sched != KL_S_FUSED && c_sched != KL_S_ROOT) return false;
  if (kd == KL_ELEM || kd == KL_BCAST || kd == KL_SHUFFLE) return true;
  /* a reshape reads its operand at the flat index: the operand is stored */
  return into_reductions && (kd == KL_REDUCE || kd == KL_LIKE);
}

bool kl_fuse(kl_fgraph *g, bool fuse, bool into_reductions) {
  int n = g->n;
  uint8_t *old = g->sched;
  g->sched = kl_calloc(n ? n : 1, 1);
  kl_free(g->inplace);
  g->inplace = kl_calloc(n ? n : 1, sizeof *g->inplace);
  bool *multi = kl_calloc(n ? n : 1, sizeof *multi);
  bool *sink = kl_calloc(n ? n : 1, sizeof *sink);
  if (!g->sched || !g->inplace || !multi || !sink) {
    kl_free(multi);
    kl_free(sink);
    kl_free(old);
    kl_error(g->ctx, KILN_NOMEM, "out of memory in fusion");
    return false;
  }
  for (int k = 0; k < g->n_outputs; k++)
    sink[g->outputs[k]->id] = true;
  for (int u = 0; u < g->n_updates; u++)
    sink[g->upd_value[u]->id] = true;
  for (int i = n; i-- > 0;) {
    kiln_node *v = g->nodes[i];
    kl_opkind kd = kl_ops[v->op].kind;
    uint8_t s;
    if (kd == KL_LEAF)
      s = KL_S_LEAF;
    else if (v->type.rank == 0 && (kd == KL_ELEM || kd == KL_COUNT || kd == KL_BCAST ||
                                   kd == KL_SHUFFLE || kd == KL_RESHAPE))
      s = KL_S_SCALAR;
    else if (!fuse || sink[i] ||
             (kd != KL_ELEM && kd != KL_BCAST && kd != KL_SHUFFLE && kd != KL_RESHAPE))
      s = KL_S_ROOT;
    else {
      int n_uses = 0;
      bool ok = true;
      for (int j = i + 1; j < n && ok; j++) {
        kiln_node *c = g->nodes[j];
        for (int k = 0; k < c->n_in && ok; k++) {
          if (c->in[k] != v || !kl_reads_value(c, k)) continue;
          n_uses++;
          ok = evaluates_inline(c, g->sched[j], into_reductions) && !multi[j];
        }
      }
      if (!ok || n_uses == 0)
        s = KL_S_ROOT;
      else if (n_uses == 1)
        s = KL_S_FUSED;
      else if (cheap(v->op)) {
        s = KL_S_FUSED;
        multi[i] = true;
      } else
        s = KL_S_ROOT;
    }
    g->sched[i] = s;
  }
  bool changed = !old || memcmp(old, g->sched, (size_t)n) != 0;
  kl_free(old);
  kl_free(multi);
  kl_free(sink);
  return changed;
}

bool kl_pass_fuse_elemwise(kl_fgraph *g) { return kl_fuse(g, true, false); }
bool kl_pass_fuse_reduce(kl_fgraph *g) { return kl_fuse(g, true, true); }
