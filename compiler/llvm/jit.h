/*
** jit.h -- Kiln's driver of LLVM: a module under construction, verification,
** LLVM's optimization pipeline, ORC LLJIT, and the text of every stage.
** Only files in compiler/llvm/ include llvm-c headers.
**
** Ownership: a kl_llmod owns its thread-safe context and module until it is
** given to kl_jit_add(), which takes both whatever it returns. Each compiled
** function gets its own resource tracker; kl_jit_code_free() removes its code
** from the JIT.
*/
#ifndef KILN_JIT_H
#define KILN_JIT_H

#include "kiln.h"

#include <llvm-c/Core.h>
#include <llvm-c/Orc.h>
#include <llvm-c/TargetMachine.h>

#include <stddef.h>

/* A large module is compiled in up to this many parts on as many threads
** (see kl_jit_add). */
#define KL_JIT_MAX_PARTS KILN_MAX_COMPILE_THREADS

/* One JIT per Kiln context. */
typedef struct kl_jit kl_jit;

/* A module being built, in its own thread-safe LLVM context. */
typedef struct kl_llmod {
  LLVMOrcThreadSafeContextRef tsc;
  LLVMContextRef ctx; /* borrowed from tsc */
  LLVMModuleRef mod;  /* owned until kl_jit_add */
} kl_llmod;

/* The code of one function, and the text of its stages. */
typedef struct kl_jit_code kl_jit_code;

typedef struct kl_jit_opts {
  int opt_level; /* 0..3: LLVM pipeline default<On>; 2 if 0 is not wanted */
  /* When set, the module is compiled to an object file by Kiln's own host
  ** target machine (the same CPU, features and code generation level as the
  ** JIT's), the object is what the JIT links, and its bytes are returned
  ** here (kl_malloc'd, the caller frees) for the on-disk cache. */
  unsigned char **object;
  size_t *object_len;
  /* Parts a large module may be compiled in: 1..KL_JIT_MAX_PARTS, or 0 for
  ** KILN_COMPILE_THREADS if set, else the online CPUs (at most the max). */
  int threads;
  /* When set, receives the seconds spent verifying and printing the module
  ** (its texts), in LLVM's passes, and in code generation and linking. */
  double *secs;
} kl_jit_opts;

/* A monotonic clock in seconds, for those timings. */
double kl_jit_now(void);

/* Creates the JIT for the host CPU (targets are initialized once per process,
** thread-safely). On failure returns KILN_LLVM or KILN_NOMEM with a message in
** err (size errn). */
kiln_status kl_jit_new(kl_jit **out, char *err, size_t errn);
void kl_jit_free(kl_jit *jit); /* NULL is a no-op; frees all its code */

/* A fresh module named name with the JIT's target triple and data layout,
** in a fresh thread-safe context. */
kiln_status kl_llmod_new(kl_jit *jit, kl_llmod *m, const char *name, char *err, size_t errn);
/* Frees a module that was never given to kl_jit_add. */
void kl_llmod_dispose(kl_llmod *m);

/* Verifies the module (LLVMReturnStatusAction; a failure is KILN_INTERNAL
** with LLVM's message), keeps its text as stage KILN_STAGE_LLVM_IR, runs
** LLVM's passes (LLVMRunPasses "default<O{opt_level}>" with the host target
** machine), keeps the text as KILN_STAGE_LLVM_OPT, adds it to the JIT under a
** new resource tracker and looks up symbol. Takes m's module and context in
** every case (m is cleared). On success *out_code and *out_fn are set. */
kiln_status kl_jit_add(kl_jit *jit, kl_llmod *m, const char *symbol, const kl_jit_opts *opts,
                       kl_jit_code **out_code, void **out_fn, char *err, size_t errn);

/* Links an object file made by kl_jit_add (opts->object) into the JIT under
** a new resource tracker and looks up symbol. The code keeps no stage texts
** (kl_jit_code_text says so). The bytes are copied. */
kiln_status kl_jit_add_object(kl_jit *jit, const unsigned char *obj, size_t len, const char *symbol,
                              kl_jit_code **out_code, void **out_fn, char *err, size_t errn);

/* A description of the host as code generation sees it (LLVM version, target
** triple, CPU name and features), for keys of the on-disk cache. kl_malloc'd. */
char *kl_jit_host_id(void);

/* Text of a stage: KILN_STAGE_LLVM_IR, KILN_STAGE_LLVM_OPT, or KILN_STAGE_ASM
** (made on first request from the optimized IR, with the host target
** machine, then kept). NULL if unavailable; *st (may be NULL) gets a status
** and err a message. The string is owned by the code. */
const char *kl_jit_code_text(kl_jit_code *code, kiln_stage stage, kiln_status *st, char *err,
                             size_t errn);
/* Removes the code from the JIT (through its resource tracker) and frees it. */
void kl_jit_code_free(kl_jit_code *code);

#endif
