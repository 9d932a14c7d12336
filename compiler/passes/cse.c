/*
** cse.c -- common subexpression elimination by structural hashing (Theano's
** "merge"): two nodes with the same op, parameters, type and inputs, or two
** constants with the same type and bytes, are one node.
** Needs: a sorted graph. Does: keeps the first of each class, points every
** use of the others at it. Guarantees: values unchanged.
*/
#include "compiler/passes/passes.h"

#include <string.h>

bool kl_same_type(const kl_type *a, const kl_type *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return false;
  for (int d = 0; d < a->rank; d++)
    if (a->dims[d] != b->dims[d]) return false;
  return true;
}

static size_t const_bytes(const kiln_node *v) {
  return (size_t)kl_type_static_size(&v->type) * kiln_dtype_size(v->type.dtype);
}

static uint64_t mix(uint64_t h, uint64_t x) {
  h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

static uint64_t hash_node(const kiln_node *v) {
  uint64_t h = mix(v->op, v->type.dtype);
  h = mix(h, v->type.rank);
  for (int d = 0; d < v->type.rank; d++)
    h = mix(h, (uint64_t)v->type.dims[d]);
  h = mix(h, v->p.axes);
  h = mix(h, (uint64_t)(v->p.ta | v->p.tb << 1 | v->p.keepdims << 2));
  for (int d = 0; d < KILN_MAX_RANK; d++)
    h = mix(h, (uint64_t)(uint8_t)v->p.src_axis[d]);
  if (kl_ops[v->op].kind == KL_INDEX) h = mix(h, kl_index_params_hash(v));
  for (int k = 0; k < v->n_in; k++)
    h = mix(h, v->in[k]->id);
  if (v->op == KL_OP_CONST) {
    const unsigned char *p = v->data;
    size_t n = const_bytes(v);
    for (size_t j = 0; j < n; j++)
      h = mix(h, p[j]);
  }
  return h;
}

static bool equal(const kiln_node *a, const kiln_node *b) {
  if (a->op != b->op || a->n_in != b->n_in || !kl_same_type(&a->type, &b->type)) return false;
  if (a->p.axes != b->p.axes || a->p.ta != b->p.ta || a->p.tb != b->p.tb) return false;
  if (a->p.keepdims != b->p.keepdims) return false;
  if (memcmp(a->p.src_axis, b->p.src_axis, sizeof a->p.src_axis) != 0) return false;
  if (kl_ops[a->op].kind == KL_INDEX && !kl_index_same_params(a, b)) return false;
  for (int k = 0; k < a->n_in; k++)
    if (a->in[k] != b->in[k]) return false;
  if (a->op == KL_OP_CONST) return memcmp(a->data, b->data, const_bytes(a)) == 0;
  return true;
}

bool kl_pass_cse(kl_fgraph *g) {
  size_t cap = 16;
  while (cap < (size_t)g->n * 2)
    cap *= 2;
  kiln_node **table = kl_calloc(cap, sizeof *table);
  if (!table) {
    kl_error(g->ctx, KILN_NOMEM, "out of memory in cse");
    return false;
  }
  bool changed = false;
  for (int i = 0; i < g->n; i++) {
    kiln_node *v = g->nodes[i];
    if (v->op == KL_OP_INPUT || v->op == KL_OP_SHARED) continue; /* identities, not values */
    /* inputs were already replaced by their representatives: hash by them */
    size_t s = hash_node(v) & (cap - 1);
    while (table[s] && !equal(table[s], v))
      s = (s + 1) & (cap - 1);
    if (!table[s]) {
      table[s] = v;
    } else {
      kl_fg_replace(g, v, table[s]);
      changed = true;
    }
  }
  kl_free(table);
  if (changed) kl_fg_sort(g);
  return changed;
}
