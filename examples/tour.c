/*
** tour.c -- a guided tour of what Kiln does to a function. It builds the
** seed's training step (examples/seed.c), compiles it, and prints every
** stage with a few words on what changed: the graph as built, the graph
** after each optimizer pass that changed it, the kernel plan, the LLVM IR
** before and after LLVM's passes, and the assembly.
**
**   ./tour            all stages
**   ./tour plan       one stage by name (see kiln_function_dump_name)
*/
#include <kiln.h>

#include <stdio.h>
#include <string.h>

static const char *explain(const char *stage) {
  if (!strcmp(stage, "graph"))
    return "The function graph as built: one node per line, with dtype, shape ('?' is\n"
           "known only at call time), the name you gave it and where it was built.\n"
           "Promotion added the casts (float32 x and target meet float64 W); kiln_grad\n"
           "added the nodes marked [grad of ...].";
  if (!strncmp(stage, "pass.", 5))
    return "The graph after this pass, which changed it. Nodes a rewrite made say which\n"
           "rule made them, in brackets.";
  if (!strcmp(stage, "opt"))
    return "The optimized graph with its schedule: <scalar> nodes are computed once in\n"
           "registers, <fused> nodes inside the loop of each kernel that uses them,\n"
           "<kernel> nodes are loop nests; 'in place' writes W's storage directly.";
  if (!strcmp(stage, "plan"))
    return "The kernel plan: two loops (the sum for y, the update of W), the scalar\n"
           "arithmetic between them, and the buffers the step function receives.";
  if (!strcmp(stage, "dot")) return "A Graphviz drawing of the optimized graph (dot -Tpng).";
  if (!strcmp(stage, "ll"))
    return "LLVM IR as Kiln emits it: one exported step function, loops with counters in\n"
           "allocas, no fast-math flags.";
  if (!strcmp(stage, "opt.ll"))
    return "LLVM IR after LLVM's -O2 pipeline: this is what runs. W has a static size of\n"
           "4, so LLVM unrolled both loops completely.";
  if (!strcmp(stage, "s")) return "The host assembly.";
  return "";
}

int main(int argc, char **argv) {
  kiln_ctx *ctx = kiln_ctx_new();
  if (!ctx) return 1;
  kiln_node *x = kiln_fvector(ctx, "x");
  kiln_node *target = kiln_fscalar(ctx, "target");
  kiln_node *W =
      kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){4}, (double[]){0.1, 0.25, 0.15, 0.3});
  kiln_node *y = kiln_name(kiln_sum(kiln_mul(x, W)), "y");
  kiln_node *cost = kiln_name(kiln_sqr(kiln_sub(target, y)), "cost");
  kiln_node *gW;
  if (kiln_grad(cost, 1, &W, &gW, 0) != KILN_OK) goto fail;
  kiln_update upd = {W, kiln_sub(W, kiln_mul(kiln_lit(ctx, 0.1), gW))};
  kiln_function *f =
      kiln_function_new(ctx, "seed_step", 2, (kiln_node *[]){x, target}, 1, &y, 1, &upd);
  if (!f) goto fail;
  for (int i = 0; i < kiln_function_n_dumps(f); i++) {
    const char *stage = kiln_function_dump_name(f, i);
    if (argc > 1 && strcmp(argv[1], stage) != 0) continue;
    printf("==== stage %s ====\n%s\n\n", stage, explain(stage));
    if (kiln_function_dump_named(f, stage, stdout) != KILN_OK) goto fail;
    printf("\n");
  }
  kiln_ctx_free(ctx);
  return 0;
fail:
  fprintf(stderr, "tour: %s\n", kiln_errmsg(ctx));
  kiln_ctx_free(ctx);
  return 1;
}
