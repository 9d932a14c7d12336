/*
** pipeline.c -- the optimizer's pass pipeline, as a table:
**
**   canonicalize -> stabilize -> constant_fold -> cse -> simplify   (repeated
**        ^                                                   |     while anything
**        +---------------------------------------------------+     changes, at
**                                                                  most 4 rounds)
**   -> dce -> fuse_elemwise -> fuse_reduce -> inplace
**
** Without optimization only the scheduling runs, fusing nothing: every
** node is its own loop nest (the baseline the differential tests compare).
** Between passes the verifier runs in debug builds or with KILN_VERIFY=1.
** After each pass that changed the graph its text is logged (the dumps of
** KILN_DUMP_DIR and kiln_function_dump). Each pass is timed.
*/
#include "compiler/passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct pass {
  const char *name;
  bool (*run)(kl_fgraph *g);
  bool repeat; /* part of the rewrite loop */
} pass;

/* Without optimization every node is its own kernel. */
static bool no_fusion(kl_fgraph *g) { return kl_fuse(g, false, false); }

static const pass pipeline[] = {
    {"canonicalize", kl_pass_canonicalize, true},
    {"stabilize", kl_pass_stabilize, true},
    {"constant_fold", kl_pass_constant_fold, true},
    {"cse", kl_pass_cse, true},
    {"simplify", kl_pass_simplify, true},
    {"dce", kl_pass_dce, false},
    {"fuse_elemwise", kl_pass_fuse_elemwise, false},
    {"fuse_reduce", kl_pass_fuse_reduce, false},
    {"inplace", kl_pass_inplace, false},
};
#define N_PASSES ((int)(sizeof pipeline / sizeof pipeline[0]))

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

kiln_status kl_log_add(kl_pipeline_log *log, const char *name, char *text) {
  if (!log) {
    kl_free(text);
    return KILN_OK;
  }
  if (!text) return KILN_NOMEM;
  if (log->n == log->cap) {
    int cap = log->cap ? log->cap * 2 : 16;
    kl_stage_text *s = kl_realloc(log->stages, (size_t)cap * sizeof *s);
    if (!s) {
      kl_free(text);
      return KILN_NOMEM;
    }
    log->stages = s;
    log->cap = cap;
  }
  char *nm = kl_strdup(name);
  if (!nm) {
    kl_free(text);
    return KILN_NOMEM;
  }
  log->stages[log->n++] = (kl_stage_text){nm, text};
  return KILN_OK;
}

void kl_log_free(kl_pipeline_log *log) {
  for (int i = 0; i < log->n; i++) {
    kl_free(log->stages[i].name);
    kl_free(log->stages[i].text);
  }
  kl_free(log->stages);
  memset(log, 0, sizeof *log);
}

static bool verify_on(void) {
#ifndef NDEBUG
  return true;
#else
  const char *e = getenv("KILN_VERIFY");
  return e && *e && strcmp(e, "0") != 0;
#endif
}

kiln_status kl_pipeline_run(kl_fgraph *g, kl_pipeline_log *log) {
  bool verify = verify_on();
  unsigned errs = g->ctx->n_errors;
  int seq = 1;
  if (log) log->n_passes = N_PASSES;
  if (kl_fg_sort(g) != KILN_OK) return KILN_NOMEM;
  if (g->no_optimize) {
    no_fusion(g);
    if (g->ctx->n_errors != errs) return g->ctx->status;
    return kl_log_add(log, "pass.01.schedule", kl_fg_text(g)) == KILN_OK
               ? KILN_OK
               : kl_error(g->ctx, KILN_NOMEM, "out of memory logging passes");
  }
  for (int p = 0; p < N_PASSES; p++) {
    int rounds = pipeline[p].repeat ? 4 : 1;
    int first = p, last = p;
    if (pipeline[p].repeat) /* the rewrite loop: run the group until nothing changes */
      while (last + 1 < N_PASSES && pipeline[last + 1].repeat)
        last++;
    for (int r = 0; r < rounds; r++) {
      bool any = false;
      for (int q = first; q <= last; q++) {
        double t0 = now();
        bool changed = pipeline[q].run(g);
        if (log) {
          log->seconds[q] += now() - t0;
          log->pass_names[q] = pipeline[q].name;
        }
        if (g->ctx->n_errors != errs) return g->ctx->status;
        if (verify && kl_fg_verify(g, pipeline[q].name) != KILN_OK) return KILN_INTERNAL;
        if (changed) {
          any = true;
          char name[64];
          snprintf(name, sizeof name, "pass.%02d.%s", seq++, pipeline[q].name);
          if (kl_log_add(log, name, kl_fg_text(g)) != KILN_OK)
            return kl_error(g->ctx, KILN_NOMEM, "out of memory logging passes");
        }
      }
      if (!any) break;
    }
    p = last;
  }
  return KILN_OK;
}
