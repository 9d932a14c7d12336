/*
** dce.c -- dead-code elimination: drops every node that no output and no
** update reaches. Needs: nothing. Guarantees: a sorted graph.
*/
#include "compiler/passes/passes.h"

bool kl_pass_dce(kl_fgraph *g) {
  int before = g->n;
  kl_fg_sort(g);
  return g->n != before;
}
