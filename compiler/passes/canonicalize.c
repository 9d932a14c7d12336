/*
** canonicalize.c -- puts equivalent expressions into one form so that CSE
** and the simplifier see them alike.
** Needs: a sorted graph. Does: constants to the right of commutative ops
** (add, mul, eq, ne), x - c -> x + (-c) for a constant c (IEEE subtraction is
** defined as adding the negation, so this is exact). Guarantees: values are
** unchanged bit for bit.
*/
#include "compiler/passes/passes.h"

#include <string.h>

static bool commutative(int op) {
  return op == KL_OP_ADD || op == KL_OP_MUL || op == KL_OP_EQ || op == KL_OP_NE;
}

bool kl_pass_canonicalize(kl_fgraph *g) {
  bool changed = false;
  int n = g->n;
  for (int i = 0; i < n; i++) {
    kiln_node *v = g->nodes[i];
    if (commutative(v->op) && v->in[0]->op == KL_OP_CONST && v->in[1]->op != KL_OP_CONST) {
      kiln_node *t = v->in[0];
      v->in[0] = v->in[1];
      v->in[1] = t;
      changed = true;
    }
    if (v->op == KL_OP_SUB && v->in[1]->op == KL_OP_CONST) {
      kiln_node *c = v->in[1];
      int64_t size = kl_type_static_size(&c->type);
      kiln_dtype dt = (kiln_dtype)c->type.dtype;
      size_t es = kiln_dtype_size(dt);
      unsigned char *neg = kl_malloc((size_t)size * es + 1);
      if (!neg) {
        kl_error(g->ctx, KILN_NOMEM, "out of memory in canonicalize");
        return changed;
      }
      for (int64_t j = 0; j < size; j++) {
        if (dt == KILN_FLOAT64) {
          double x = -((const double *)c->data)[j];
          memcpy(neg + j * es, &x, es);
        } else if (dt == KILN_FLOAT32) {
          float x = -((const float *)c->data)[j];
          memcpy(neg + j * es, &x, es);
        } else {
          int64_t x = (int64_t)(0 - (uint64_t)kl_load_i64(dt, c->data, j));
          kl_convert(dt, neg, j, KILN_INT64, &x, 0);
        }
      }
      g->rule = "canonicalize: x - c -> x + (-c)";
      kiln_node *nc = kl_fg_const(g, &c->type, neg, c);
      kl_free(neg);
      kiln_node *in[2] = {v->in[0], nc};
      kiln_node *add = nc ? kl_fg_add(g, KL_OP_ADD, 2, in, &v->type, NULL, v) : NULL;
      g->rule = NULL;
      if (!add) return changed;
      kl_fg_replace(g, v, add);
      changed = true;
    }
  }
  if (changed) kl_fg_sort(g);
  return changed;
}
