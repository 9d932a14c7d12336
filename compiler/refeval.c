/*
** refeval.c -- the reference evaluator: runs a graph node by node with the
** op table's plain-C evaluations (compiler/ops/eval.c). It is the oracle the
** JIT is tested against, and knows nothing of plans, buffers or LLVM.
*/
#include "compiler/graph.h"
#include "compiler/refeval.h"

#include <stdio.h>
#include <string.h>

kiln_status kl_ref_run(kiln_ctx *ctx, int n_in, kiln_node *const *inputs,
                       const kiln_tensor *const *values, int n_out, kiln_node *const *outputs,
                       kiln_tensor **results) {
  for (int k = 0; k < n_out; k++)
    results[k] = NULL;
  if (!kl_ctx_ok(ctx)) return KILN_MISUSE;
  uint32_t top = 0;
  for (int k = 0; k < n_out; k++) {
    if (!kl_node_ok(outputs[k]) || outputs[k]->ctx != ctx)
      return kl_error(ctx, KILN_MISUSE, "ref: output %d is not a node of this context", k);
    if (outputs[k]->id + 1 > top) top = outputs[k]->id + 1;
  }
  kiln_tensor **val = kl_calloc(top ? top : 1, sizeof *val);
  bool *need = kl_calloc(top ? top : 1, sizeof *need);
  kiln_status st = KILN_OK;
  char err[512] = "";
  if (!val || !need) {
    st = kl_error(ctx, KILN_NOMEM, "ref: out of memory");
    goto done;
  }
  for (int k = 0; k < n_out; k++)
    need[outputs[k]->id] = true;
  for (uint32_t id = top; id-- > 0;)
    if (need[id])
      for (int j = 0; j < ctx->nodes[id]->n_in; j++)
        need[ctx->nodes[id]->in[j]->id] = true;
  for (uint32_t id = 0; id < top && st == KILN_OK; id++) {
    if (!need[id]) continue;
    kiln_node *v = ctx->nodes[id];
    if (v->op == KL_OP_INPUT || v->op == KL_OP_SHARED) {
      const kiln_tensor *src = v->op == KL_OP_SHARED ? v->value : NULL;
      for (int j = 0; j < n_in && !src; j++)
        if (inputs[j] == v) src = values[j];
      if (!kl_tensor_ok(src)) {
        char lb[256];
        st = kl_error(ctx, KILN_MISUSE, "ref: no value for %s", kl_node_label(v, lb, sizeof lb));
        break;
      }
      val[id] = kiln_tensor_new((kiln_dtype)src->dtype, src->rank, src->shape, src->data);
      if (!val[id]) st = kl_error(ctx, KILN_NOMEM, "ref: out of memory");
      continue;
    }
    const kiln_tensor *in[3] = {NULL, NULL, NULL};
    for (int j = 0; j < v->n_in && j < 3; j++)
      in[j] = val[v->in[j]->id];
    val[id] = kiln_tensor_new((kiln_dtype)v->type.dtype, 0, NULL, NULL);
    if (!val[id]) {
      st = kl_error(ctx, KILN_NOMEM, "ref: out of memory");
      break;
    }
    st = kl_eval_node(v, in, val[id], err, sizeof err);
    if (st != KILN_OK) {
      char lb[256];
      kl_error(ctx, st, "ref: %s: %s", kl_node_label(v, lb, sizeof lb), err);
    }
  }
  for (int k = 0; k < n_out && st == KILN_OK; k++) {
    const kiln_tensor *t = val[outputs[k]->id];
    results[k] = kiln_tensor_new((kiln_dtype)t->dtype, t->rank, t->shape, t->data);
    if (!results[k]) st = kl_error(ctx, KILN_NOMEM, "ref: out of memory");
  }
  if (st != KILN_OK)
    for (int k = 0; k < n_out; k++) {
      kiln_tensor_free(results[k]);
      results[k] = NULL;
    }
done:
  for (uint32_t id = 0; val && id < top; id++)
    kiln_tensor_free(val[id]);
  kl_free(val);
  kl_free(need);
  return st;
}
