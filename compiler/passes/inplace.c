/*
** inplace.c -- in-place update planning. An update W <- v is written
** straight into W's storage by v's kernel when that is safe:
**   - v is the root of an elementwise kernel, not also an output;
**   - inside that kernel W is read only at the element being written (the
**     identity index map, no broadcasting);
**   - nothing that runs after the kernel reads W;
**   - no node that can fail (an index out of range) runs after it.
** Every check but the index checks of take and one_hot happens before the
** step runs, and those run before any in-place write, so a failed call
** still leaves W untouched. Needs: fusion. Guarantees: inplace[].
*/
#include "compiler/passes/passes.h"

#include <string.h>

/* Does every path from v (evaluated with index map m) reach s only with the
** identity map? Walks the nodes v evaluates inline. */
static bool identity_reads(const kl_fgraph *g, const kiln_node *v, const int *m, int R,
                           const kiln_node *s) {
  for (int k = 0; k < v->n_in; k++) {
    if (!kl_reads_value(v, k)) continue;
    const kiln_node *x = v->in[k];
    int mx[KILN_MAX_RANK];
    int r = x->type.rank;
    if (kl_ops[v->op].kind == KL_RESHAPE) {
      /* reads its (stored) operand at the flat index: not s's own element */
      if (x == s) return false;
      continue;
    }
    if (v->op == KL_OP_BCAST) {
      for (int d = 0, t = 0; d < v->type.rank; d++)
        if (!(v->p.axes >> d & 1u)) mx[t++] = m[d];
    } else if (v->op == KL_OP_DIMSHUFFLE) {
      for (int d = 0; d < r; d++)
        mx[d] = KL_IDX_ZERO;
      for (int a = 0; a < v->type.rank; a++)
        if (v->p.src_axis[a] >= 0) mx[v->p.src_axis[a]] = m[a];
    } else {
      for (int d = 0; d < r; d++)
        mx[d] = m[d + v->type.rank - r];
    }
    if (x == s) {
      if (r != R) return false;
      for (int d = 0; d < r; d++)
        if (mx[d] != d) return false;
    } else if (g->sched[x->id] == KL_S_FUSED && !identity_reads(g, x, mx, R, s)) {
      return false;
    }
  }
  return true;
}

bool kl_pass_inplace(kl_fgraph *g) {
  int n = g->n;
  int *kmax = kl_malloc((n ? n : 1) * sizeof *kmax);
  if (!kmax) {
    kl_error(g->ctx, KILN_NOMEM, "out of memory in inplace");
    return false;
  }
  /* the last kernel evaluating each fused node */
  for (int i = n; i-- > 0;) {
    kmax[i] = i;
    if (g->sched[i] != KL_S_FUSED) continue;
    kmax[i] = -1;
    for (int j = i + 1; j < n; j++)
      for (int k = 0; k < g->nodes[j]->n_in; k++)
        if (g->nodes[j]->in[k] == g->nodes[i] && kl_reads_value(g->nodes[j], k) &&
            kmax[j] > kmax[i])
          kmax[i] = kmax[j];
  }
  bool changed = false;
  for (int u = 0; u < g->n_updates; u++) {
    kiln_node *v = g->upd_value[u], *s = g->upd_shared[u];
    int vi = (int)v->id;
    kl_opkind kd = kl_ops[v->op].kind;
    if (g->sched[vi] != KL_S_ROOT || (kd != KL_ELEM && kd != KL_BCAST) || v->type.rank == 0)
      continue;
    bool ok = true;
    /* a step fails only at an index out of range (take, one_hot), and must
    ** not have written a variable by then: no node that can fail after v */
    for (int j = vi + 1; j < n && ok; j++)
      ok = !kl_index_can_fail(g->nodes[j]);
    for (int k = 0; k < g->n_outputs && ok; k++)
      ok = g->outputs[k] != v;
    for (int w = 0; w < g->n_updates && ok; w++)
      ok = w == u || g->upd_value[w] != v;
    bool s_in_graph = s->id < (uint32_t)n && g->nodes[s->id] == s;
    if (ok && s_in_graph) {
      for (int j = 0; j < n && ok; j++) {
        const kiln_node *c = g->nodes[j];
        for (int k = 0; k < c->n_in && ok; k++) {
          if (c->in[k] != s || !kl_reads_value(c, k)) continue;
          int pos = kmax[j];
          ok = pos <= vi; /* readers at vi are inside v's kernel, checked below */
        }
      }
      int id[KILN_MAX_RANK];
      for (int d = 0; d < KILN_MAX_RANK; d++)
        id[d] = d;
      ok = ok && identity_reads(g, v, id, v->type.rank, s);
    }
    if (ok) {
      g->inplace[vi] = true;
      changed = true;
    }
  }
  kl_free(kmax);
  return changed;
}
