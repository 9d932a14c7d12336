/*
** jit.c -- Kiln's driver of LLVM: verification, LLVM's new pass manager,
** ORC LLJIT, and the kept text of every stage of a compiled module.
**
** Design
**  - One kl_jit wraps one LLJIT for the host, plus one host TargetMachine of
**    our own. That TargetMachine runs LLVMRunPasses (so the optimizer knows
**    the real CPU: vector widths, costs), compiles the parts of a split
**    module and prints the assembly stage; the LLJIT builds its own
**    TargetMachine for code generation from a template made the same way
**    (host CPU and features, KL_CODEGEN_LEVEL). kl_jit_new checks that both
**    agree on the data layout. The LLJIT is created on a thread of its own,
**    while the first module is built and optimized; every use of it first
**    waits (jit_ready).
**  - Every module lives in its own ThreadSafeContext and is added under its
**    own ResourceTracker, so freeing a kl_jit_code gives back exactly its
**    machine code and its symbol (the name can then be defined again).
**  - LLVM must never end the process. Modules are verified with
**    LLVMReturnStatusAction before LLVM sees them. Every LLVMContext gets a
**    diagnostic handler: without one, LLVMContext::diagnose prints an
**    error-severity diagnostic and calls exit(1) (inline asm that does not
**    assemble is one way to get there). The ExecutionSession gets an error
**    reporter, so linker failures are kept for the message instead of being
**    printed to stderr. Every LLVMErrorRef goes through take_error().
**  - IEEE arithmetic: nothing here sets fast-math flags, and the host
**    TargetMachines keep LLVM's default FPOpFusion::Standard, under which the
**    backend fuses fmul+fadd into an fma only when the IR says `contract` (or
**    calls llvm.fmuladd). Kiln's IR never does, so a*b+c stays two roundings.
**    The vectorizers are on at O2/O3 as in clang; without `reassoc` they
**    never reorder a floating-point reduction, so sums keep their order.
**  - Texts: KILN_STAGE_LLVM_IR and KILN_STAGE_LLVM_OPT are printed while the
**    module is still ours (the JIT frees the module once it is compiled).
**    KILN_STAGE_ASM is made on request by parsing the optimized text again in
**    a throw-away LLVMContext, so compiling never pays for it.
**
** Lifetimes: a kl_jit_code must be freed before its kl_jit. kl_jit_free
** frees whatever codes are left (the header promises it), after which their
** handles are dangling, so kl_jit_code_free on them is not allowed.
**
** Thread safety: targets are initialized once per process (pthread_once).
** Otherwise a kl_jit, its modules and its codes are used by one thread at a
** time; different kl_jits are independent and may run in parallel.
*/
#include "compiler/llvm/jit.h"

#include "runtime/rt.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Error.h>
#include <llvm-c/IRReader.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <pthread.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Error-severity diagnostics of one LLVM context, kept for the message. */
typedef struct diag_log {
  int n_errors;
  char first[256];
} diag_log;

struct kl_jit {
  /* The LLJIT is created on a thread of its own while the first module is
  ** built and optimized (about 1 ms of a first compile); jit_ready() waits
  ** for it before its first use. */
  LLVMOrcLLJITRef lljit;
  pthread_t lljit_thread;
  bool lljit_pending; /* the thread has not been joined */
  kiln_status lljit_st;
  char lljit_err[256];
  LLVMTargetMachineRef tm; /* ours: passes and the assembly stage */
  /* One more per extra thread of a split compile (a TargetMachine is used
  ** by one thread at a time), made on first need. */
  LLVMTargetMachineRef aux_tm[KL_JIT_MAX_PARTS - 1];
  char *triple;
  char *layout;
  kl_jit_code *codes;    /* live codes, so kl_jit_free can free what is left */
  char session_err[256]; /* first error the ExecutionSession reported since reset */
};

struct kl_jit_code {
  kl_jit *jit;
  kl_jit_code *prev, *next;
  LLVMOrcResourceTrackerRef rt;
  /* The module's context reports here; the context may outlive kl_jit_add
  ** inside the JIT (until compiled or removed), so the log lives with the code. */
  diag_log diag;
  /* The module before LLVM's passes and each part after them, as bitcode:
  ** writing it costs a fraction of printing, and the texts are made from it
  ** only when asked for (a split compile's parts one after the other). */
  LLVMMemoryBufferRef bc_ir;
  LLVMMemoryBufferRef bc_opt[KL_JIT_MAX_PARTS];
  int n_parts;
  char *text[KILN_N_STAGES];
  bool from_object; /* linked from the on-disk cache: no stage texts */
};

/* ---------------------------------------------------------------- messages */

/* Writes a message into err (if there is room), without trailing newlines:
** LLVM's messages often end with one. */
static void set_err(char *err, size_t errn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errn, const char *fmt, ...) {
  if (!err || errn == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errn, fmt, ap);
  va_end(ap);
  size_t n = strlen(err);
  while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
    err[--n] = '\0';
}

/* Appends "; <more>" to a message already in err. */
static void append_err(char *err, size_t errn, const char *more) {
  if (!err || errn == 0 || !more || !*more) return;
  size_t n = strlen(err);
  if (n + 1 >= errn) return;
  set_err(err + n, errn - n, "; %s", more);
}

/* The one place an LLVMErrorRef is consumed: NULL (success) gives KILN_OK,
** anything else KILN_LLVM with "<what>: <LLVM's message>" in err. */
static kiln_status take_error(LLVMErrorRef e, const char *what, char *err, size_t errn) {
  if (!e) return KILN_OK;
  char *msg = LLVMGetErrorMessage(e); /* consumes e */
  set_err(err, errn, "%s: %s", what, msg ? msg : "unknown LLVM error");
  if (msg) LLVMDisposeErrorMessage(msg);
  return KILN_LLVM;
}

/* Copies a string LLVM allocated (LLVMDisposeMessage kind) into Kiln memory
** and gives LLVM's copy back. NULL when out of memory. */
static char *take_message(char *s) {
  char *copy = kl_strdup(s ? s : "");
  if (s) LLVMDisposeMessage(s);
  return copy;
}

/* ---------------------------------------------------------------- handlers */

/* Installed on every LLVMContext Kiln creates. Being installed is what keeps
** LLVM from printing an error diagnostic and exiting; ctx may be NULL, then
** nothing is recorded (a module still being built cannot fail codegen). */
static void on_diagnostic(LLVMDiagnosticInfoRef di, void *ctx) {
  diag_log *log = ctx;
  if (!log || LLVMGetDiagInfoSeverity(di) != LLVMDSError) return;
  if (log->n_errors++ == 0) {
    char *desc = LLVMGetDiagInfoDescription(di);
    set_err(log->first, sizeof log->first, "%s", desc ? desc : "unknown diagnostic");
    if (desc) LLVMDisposeMessage(desc);
  }
}

/* ORC delivers failures it cannot return to a caller (a symbol the linker
** cannot resolve, say) here; the lookup then only says "failed to
** materialize", so this is the useful half of the message. */
static void on_session_error(void *ctx, LLVMErrorRef e) {
  kl_jit *jit = ctx;
  if (jit->session_err[0] == '\0') {
    take_error(e, "JIT session", jit->session_err, sizeof jit->session_err);
  } else {
    take_error(e, "JIT session", NULL, 0); /* keep the first, which caused the rest */
  }
}

/* ---------------------------------------------------------------- targets */

static pthread_once_t targets_once = PTHREAD_ONCE_INIT;
static bool targets_ok; /* published to other threads by pthread_once */

/* Three of code generation's options are set once per process (they are
** command-line options of LLVM; nothing else reaches them), each measured on
** the W3 MLP's compile with every step's speed checked against it:
**  - -disable-lsr: loop strength reduction and the IV users it needs were a
**    fifth of code generation (llc -time-passes: 24 of 120 ms; in Kiln
**    182 -> 162 ms, bench 210 -> 175 ms); W1, W2, W3 the same, the blocked
**    dot within 3%. Kiln's loops index with one counter per axis already.
**  - -fast-isel: instruction selection goes through FastISel, which falls
**    back to SelectionDAG for what it cannot select (our vector code).
**    llc on the MLP: 46 -> 36 ms; fresh-process compile 60.2 -> 56.6 ms
**    (medians of 11 alternating runs). The seed's step differs by one
**    instruction (x * 2 is a multiply, not x + x), W2's loop not at all,
**    W3 and the dot measured the same or faster.
**  - -enable-misched=false: no pre-register-allocation machine scheduler;
**    56.6 -> 53.7 ms (same runs). The seed's and W2's assembly are
**    identical with and without it; W3 and the dot measured the same. */
static void init_targets(void) {
  const char *const argv[] = {"kiln", "-disable-lsr", "-fast-isel", "-enable-misched=false"};
  LLVMParseCommandLineOptions((int)(sizeof argv / sizeof argv[0]), argv, NULL);
  targets_ok = !LLVMInitializeNativeTarget() && !LLVMInitializeNativeAsmPrinter() &&
               !LLVMInitializeNativeAsmParser();
}

/* ---------------------------------------------------------------- the JIT */

/* Code generation's optimization level: Less, not the Default of clang's
** -O2. Measured on the W3 MLP: compile 65.5 -> 61.6 ms (medians of 5), and
** W1, W2, W3 and the blocked dot ran at the same speed within noise. */
#define KL_CODEGEN_LEVEL LLVMCodeGenLevelLess

/* A TargetMachine for the host (CPU name and features of the host), for
** our passes and objects, and as the template of the LLJIT's own. */
static kiln_status new_host_tm(LLVMTargetMachineRef *out, char *err, size_t errn) {
  *out = NULL;
  char *triple = LLVMGetDefaultTargetTriple();
  char *norm = LLVMNormalizeTargetTriple(triple);
  LLVMDisposeMessage(triple);
  LLVMTargetRef target = NULL;
  char *msg = NULL;
  if (LLVMGetTargetFromTriple(norm, &target, &msg)) {
    set_err(err, errn, "no LLVM target for host triple %s: %s", norm, msg ? msg : "?");
    LLVMDisposeMessage(msg);
    LLVMDisposeMessage(norm);
    return KILN_LLVM;
  }
  char *cpu = LLVMGetHostCPUName();
  char *features = LLVMGetHostCPUFeatures();
  /* Default TargetOptions: FPOpFusion::Standard, no unsafe FP math (see top). */
  *out = LLVMCreateTargetMachine(target, norm, cpu, features, KL_CODEGEN_LEVEL, LLVMRelocDefault,
                                 LLVMCodeModelJITDefault);
  kiln_status st = KILN_OK;
  if (!*out) {
    set_err(err, errn, "cannot create a target machine for %s (cpu %s)", norm, cpu);
    st = KILN_LLVM;
  }
  LLVMDisposeMessage(features);
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(norm);
  return st;
}

/* Creates the LLJIT (on its own thread, with LLVM's allocator only): it
** compiles with a TargetMachine like ours (same CPU, features and code
** generation level), made from a template it takes, and must agree with our
** data layout. The outcome goes to lljit_st and lljit_err. */
static void *create_lljit(void *arg) {
  kl_jit *jit = arg;
  char *err = jit->lljit_err;
  size_t errn = sizeof jit->lljit_err;
  LLVMTargetMachineRef template = NULL;
  kiln_status st = new_host_tm(&template, err, errn);
  if (st == KILN_OK) {
    LLVMOrcJITTargetMachineBuilderRef jtmb =
        LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(template); /* takes template */
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb); /* builder owns jtmb */
    /* LLVMOrcCreateLLJIT owns builder from here, even when it fails. */
    st = take_error(LLVMOrcCreateLLJIT(&jit->lljit, builder), "creating the LLJIT", err, errn);
    if (st != KILN_OK) jit->lljit = NULL;
  }
  if (st == KILN_OK) {
    LLVMOrcExecutionSessionSetErrorReporter(LLVMOrcLLJITGetExecutionSession(jit->lljit),
                                            on_session_error, jit);
    /* Generated code calls libm (expf, exp, logf, powf, ...): let the main
    ** JITDylib resolve anything the process itself can dlsym. */
    LLVMOrcDefinitionGeneratorRef gen = NULL;
    st = take_error(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
                        &gen, LLVMOrcLLJITGetGlobalPrefix(jit->lljit), NULL, NULL),
                    "creating the process symbol generator", err, errn);
    if (st == KILN_OK)
      LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(jit->lljit), gen); /* JD owns gen */
  }
  /* Passes given a TargetMachine that disagrees with the JIT's layout would
  ** optimize for the wrong ABI; better to refuse, once. */
  if (st == KILN_OK && strcmp(LLVMOrcLLJITGetDataLayoutStr(jit->lljit), jit->layout) != 0) {
    set_err(err, errn, "host target machine's data layout %s differs from the JIT's %s",
            jit->layout, LLVMOrcLLJITGetDataLayoutStr(jit->lljit));
    st = KILN_LLVM;
  }
  jit->lljit_st = st;
  return NULL;
}

/* Waits for the LLJIT; its creation's status (and message in err). */
static kiln_status jit_ready(kl_jit *jit, char *err, size_t errn) {
  if (jit->lljit_pending) {
    pthread_join(jit->lljit_thread, NULL);
    jit->lljit_pending = false;
  }
  if (jit->lljit_st != KILN_OK) set_err(err, errn, "%s", jit->lljit_err);
  return jit->lljit_st;
}

kiln_status kl_jit_new(kl_jit **out, char *err, size_t errn) {
  if (!out) {
    set_err(err, errn, "kl_jit_new: out is NULL");
    return KILN_MISUSE;
  }
  *out = NULL;
  pthread_once(&targets_once, init_targets);
  if (!targets_ok) {
    set_err(err, errn, "cannot initialize LLVM's native target, asm printer or asm parser");
    return KILN_LLVM;
  }
  kl_jit *jit = kl_calloc(1, sizeof *jit);
  if (!jit) {
    set_err(err, errn, "out of memory creating the JIT");
    return KILN_NOMEM;
  }
  kiln_status st = new_host_tm(&jit->tm, err, errn);
  if (st != KILN_OK) goto fail;
  char *triple = LLVMGetTargetMachineTriple(jit->tm);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(jit->tm);
  char *dl = LLVMCopyStringRepOfTargetData(td);
  LLVMDisposeTargetData(td);
  jit->triple = kl_strdup(triple);
  jit->layout = kl_strdup(dl);
  LLVMDisposeMessage(triple);
  LLVMDisposeMessage(dl);
  if (!jit->triple || !jit->layout) {
    set_err(err, errn, "out of memory creating the JIT");
    st = KILN_NOMEM;
    goto fail;
  }
  jit->lljit_pending = pthread_create(&jit->lljit_thread, NULL, create_lljit, jit) == 0;
  if (!jit->lljit_pending) create_lljit(jit); /* no thread to be had: here */
  *out = jit;
  return KILN_OK;

fail:
  kl_jit_free(jit);
  return st;
}

void kl_jit_free(kl_jit *jit) {
  if (!jit) return;
  jit_ready(jit, NULL, 0);
  /* Resource trackers hold on to the ExecutionSession: release them first. */
  while (jit->codes)
    kl_jit_code_free(jit->codes);
  if (jit->tm) LLVMDisposeTargetMachine(jit->tm);
  for (int i = 0; i < KL_JIT_MAX_PARTS - 1; i++)
    if (jit->aux_tm[i]) LLVMDisposeTargetMachine(jit->aux_tm[i]);
  if (jit->lljit) take_error(LLVMOrcDisposeLLJIT(jit->lljit), "disposing the LLJIT", NULL, 0);
  kl_free(jit->triple);
  kl_free(jit->layout);
  kl_free(jit);
}

/* ---------------------------------------------------------------- modules */

kiln_status kl_llmod_new(kl_jit *jit, kl_llmod *m, const char *name, char *err, size_t errn) {
  if (!m) {
    set_err(err, errn, "kl_llmod_new: module is NULL");
    return KILN_MISUSE;
  }
  memset(m, 0, sizeof *m);
  if (!jit) {
    set_err(err, errn, "kl_llmod_new: JIT is NULL");
    return KILN_MISUSE;
  }
  m->tsc = LLVMOrcCreateNewThreadSafeContext();
  m->ctx = LLVMOrcThreadSafeContextGetContext(m->tsc);
  /* Nothing to record yet; kl_jit_add points the handler at the code's log. */
  LLVMContextSetDiagnosticHandler(m->ctx, on_diagnostic, NULL);
  m->mod = LLVMModuleCreateWithNameInContext(name ? name : "kiln", m->ctx);
  LLVMSetTarget(m->mod, jit->triple);
  LLVMSetDataLayout(m->mod, jit->layout);
  return KILN_OK;
}

/* The module needs its context alive to be destroyed: module first. */
static void dispose_parts(LLVMModuleRef mod, LLVMOrcThreadSafeContextRef tsc) {
  if (mod) LLVMDisposeModule(mod);
  if (tsc) LLVMOrcDisposeThreadSafeContext(tsc);
}

void kl_llmod_dispose(kl_llmod *m) {
  if (!m) return;
  dispose_parts(m->mod, m->tsc);
  memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- adding */

static bool verify(LLVMModuleRef mod, const char *when, char *err, size_t errn) {
  char *msg = NULL;
  bool broken = LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg);
  if (broken) set_err(err, errn, "internal: LLVM verifier: %s%s", when, msg ? msg : "");
  LLVMDisposeMessage(msg); /* allocated even when the module is fine */
  return !broken;
}

static kiln_status run_passes(LLVMTargetMachineRef tm, LLVMModuleRef mod, int level, char *err,
                              size_t errn) {
  char pipeline[32];
  snprintf(pipeline, sizeof pipeline, "default<O%d>", level);
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(po, level >= 2);
  LLVMPassBuilderOptionsSetSLPVectorization(po, level >= 2);
  kiln_status st =
      take_error(LLVMRunPasses(mod, pipeline, tm, po), "running LLVM's passes", err, errn);
  LLVMDisposePassBuilderOptions(po);
  return st;
}

double kl_jit_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The module as bitcode, kept for its text; NULL (with a message) if LLVM
** cannot write it. */
static LLVMMemoryBufferRef keep_bitcode(LLVMModuleRef mod, char *err, size_t errn) {
  LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(mod);
  if (!bc) set_err(err, errn, "cannot write an LLVM module as bitcode");
  return bc;
}

/* A module in one piece, after verify and keep_bitcode: optimize, verify
** again, keep the optimized bitcode. */
static kiln_status prepare(kl_jit *jit, kl_jit_code *code, LLVMModuleRef mod, int level,
                           double *secs, char *err, size_t errn) {
  double t1 = kl_jit_now();
  kiln_status st = run_passes(jit->tm, mod, level, err, errn);
  double t2 = kl_jit_now();
  secs[1] = t2 - t1;
  if (st != KILN_OK) return st;
  if (code->diag.n_errors) {
    set_err(err, errn, "LLVM error while optimizing: %s", code->diag.first);
    return KILN_LLVM;
  }
  if (!verify(mod, "after LLVM's passes: ", err, errn)) return KILN_INTERNAL;
  if (!(code->bc_opt[0] = keep_bitcode(mod, err, errn))) return KILN_LLVM;
  code->n_parts = 1;
  secs[0] += kl_jit_now() - t2;
  return KILN_OK;
}

/* Frees a code that may or may not hold a resource tracker and may or may
** not be linked into its JIT's list. Removing the tracker drops the code,
** the symbol and any not yet compiled module (with its context). */
static void destroy_code(kl_jit_code *code) {
  if (code->rt) {
    take_error(LLVMOrcResourceTrackerRemove(code->rt), "removing code", NULL, 0);
    LLVMOrcReleaseResourceTracker(code->rt);
  }
  for (int i = 0; i < KILN_N_STAGES; i++)
    kl_free(code->text[i]);
  if (code->bc_ir) LLVMDisposeMemoryBuffer(code->bc_ir);
  for (int k = 0; k < KL_JIT_MAX_PARTS; k++)
    if (code->bc_opt[k]) LLVMDisposeMemoryBuffer(code->bc_opt[k]);
  kl_free(code);
}

static kiln_status look_up(kl_jit *jit, kl_jit_code *code, const char *symbol,
                           kl_jit_code **out_code, void **out_fn, char *err, size_t errn);

/* ---------------------------------------------------------- split compile */

/* LLVM compiles one module on one thread. A large module (the W3 MLP's step
** with its chunk and dot functions) is cut into parts along its functions
** and each part is optimized and compiled on a thread of its own, in an
** LLVMContext of its own, to an object file; the JIT links the objects
** together under the code's one resource tracker.
**
** The functions cut along are the roots: the step and every noinline
** function (chunk functions, dot kernels). Helper functions (kmath, pow)
** go, as copies, with every part that calls them. Roots are dealt largest
** first (by instruction count) to the part with the fewest instructions;
** the step is in part 0, the caller's module. A root called from another
** part gets external linkage and a name that starts with the step's symbol
** (so it is unique in the JIT); one called only from its own part stays
** internal, so IPSCCP can still specialize it for constant sizes. Each part
** is made from the whole module written to bitcode and read back into a new
** context; the other parts' roots are then declarations (or gone). */

/* Modules with fewer instructions than this compile in one piece: a part
** costs a context, a thread and LLVM's fixed cost per module (the seed's
** step, about 400 instructions, takes 8 ms of which little is its size;
** the W3 MLP's fast step, about 2,900, takes 120 ms in one piece and 74 ms
** in two). */
#define KL_SPLIT_MIN 1000

/* How many parts at most: the caller's count, else KILN_COMPILE_THREADS if
** it is 1..KL_JIT_MAX_PARTS, else the online CPUs (at most KL_JIT_MAX_PARTS). */
static int compile_threads(int asked) {
  if (asked >= 1 && asked <= KL_JIT_MAX_PARTS) return asked;
  const char *env = getenv("KILN_COMPILE_THREADS");
  if (env && *env) {
    char *end = NULL;
    long v = strtol(env, &end, 10);
    if (*end == '\0' && v >= 1 && v <= KL_JIT_MAX_PARTS) return (int)v;
  }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 1) return 1;
  return cpus < KL_JIT_MAX_PARTS ? (int)cpus : KL_JIT_MAX_PARTS;
}

typedef struct split_root {
  LLVMValueRef fn; /* in the caller's module */
  char *name;      /* kl_malloc'd, the final name */
  long weight;     /* instructions */
  int part;
} split_root;

typedef struct split_part {
  int index;
  /* parts other than 0 read the module from this bitcode on their thread,
  ** then keep only their roots */
  LLVMMemoryBufferRef whole;
  const split_root *roots;
  int n_roots;
  LLVMTargetMachineRef tm; /* borrowed */
  LLVMContextRef ctx;      /* owned, except part 0's */
  LLVMModuleRef mod;       /* owned, except part 0's */
  int level;
  diag_log own_diag;
  diag_log *diag; /* &own_diag, or the code's for part 0 */
  /* Results, made on the part's thread with LLVM's allocator only (so the
  ** allocation countdown of the tests stays on the calling thread). */
  LLVMMemoryBufferRef bc; /* the optimized part */
  LLVMMemoryBufferRef obj;
  kiln_status st;
  char err[256];
  double passes; /* seconds */
} split_part;

static long count_instructions(LLVMValueRef f) {
  long n = 0;
  for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b))
    for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i))
      n++;
  return n;
}

static bool is_root(LLVMValueRef f, const char *symbol, unsigned noinline) {
  if (LLVMIsDeclaration(f)) return false;
  size_t len = 0;
  const char *name = LLVMGetValueName2(f, &len);
  if (strcmp(name, symbol) == 0) return true;
  return LLVMGetEnumAttributeAtIndex(f, LLVMAttributeFunctionIndex, noinline) != NULL;
}

/* The part of the root that is (or contains) v's function; -1 if v is not
** an instruction of a root (a helper's call, a constant expression). */
static int part_of_user(LLVMValueRef user, const split_root *roots, int n) {
  if (!LLVMIsAInstruction(user)) return -1;
  LLVMValueRef f = LLVMGetBasicBlockParent(LLVMGetInstructionParent(user));
  for (int r = 0; r < n; r++)
    if (roots[r].fn == f) return roots[r].part;
  return -1;
}

/* Decides the parts: returns how many (1: compile in one piece) and fills
** *out_roots (kl_malloc'd, *out_n of them) with each root's part and final
** name; roots called across parts are made external here, in mod. */
static int plan_split(LLVMModuleRef mod, const char *symbol, int max_parts, split_root **out_roots,
                      int *out_n) {
  *out_roots = NULL;
  *out_n = 0;
  if (max_parts < 2) return 1;
  unsigned noinline = LLVMGetEnumAttributeKindForName("noinline", 8);
  int n = 0, cap = 0;
  long total = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
    if (!LLVMIsDeclaration(f)) total += count_instructions(f);
    if (is_root(f, symbol, noinline)) cap++;
  }
  if (cap < 2 || total < KL_SPLIT_MIN) return 1;
  split_root *roots = kl_calloc((size_t)cap, sizeof *roots);
  if (!roots) return 1; /* one piece needs no memory of ours */
  for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
    if (!is_root(f, symbol, noinline)) continue;
    size_t len = 0;
    bool step = strcmp(LLVMGetValueName2(f, &len), symbol) == 0;
    roots[n] = (split_root){.fn = f, .weight = count_instructions(f), .part = step ? 0 : -1};
    n++;
  }
  int parts = max_parts < n ? max_parts : n;
  long load[KL_JIT_MAX_PARTS] = {0};
  for (int r = 0; r < n; r++)
    if (roots[r].part == 0) load[0] += roots[r].weight;
  for (;;) { /* the heaviest unplaced root to the lightest part */
    int best = -1;
    for (int r = 0; r < n; r++)
      if (roots[r].part < 0 && (best < 0 || roots[r].weight > roots[best].weight)) best = r;
    if (best < 0) break;
    int light = 0;
    for (int p = 1; p < parts; p++)
      if (load[p] < load[light]) light = p;
    roots[best].part = light;
    load[light] += roots[best].weight;
  }
  int used = 0;
  for (int p = 0; p < parts; p++)
    used += load[p] > 0;
  if (used < 2) {
    kl_free(roots);
    return 1;
  }
  /* Renumber so that the parts in use are 0..used-1 (part 0 stays 0). */
  int map[KL_JIT_MAX_PARTS], next = 0;
  for (int p = 0; p < parts; p++)
    map[p] = load[p] > 0 ? next++ : -1;
  for (int r = 0; r < n; r++)
    roots[r].part = map[roots[r].part];

  bool ok = true;
  for (int r = 0; r < n && ok; r++) {
    LLVMValueRef f = roots[r].fn;
    size_t len = 0;
    const char *name = LLVMGetValueName2(f, &len);
    bool cross = false;
    for (LLVMUseRef u = LLVMGetFirstUse(f); u && !cross; u = LLVMGetNextUse(u))
      cross = part_of_user(LLVMGetUser(u), roots, n) != roots[r].part;
    LLVMLinkage lk = LLVMGetLinkage(f);
    if (cross && (lk == LLVMInternalLinkage || lk == LLVMPrivateLinkage)) {
      size_t sl = strlen(symbol);
      if (strncmp(name, symbol, sl) != 0) {
        char *nm = kl_malloc(sl + 1 + len + 1);
        if (!nm) {
          ok = false;
          break;
        }
        snprintf(nm, sl + 1 + len + 1, "%s.%s", symbol, name);
        LLVMSetValueName2(f, nm, strlen(nm));
        kl_free(nm);
      }
      LLVMSetLinkage(f, LLVMExternalLinkage);
      LLVMSetVisibility(f, LLVMDefaultVisibility);
      name = LLVMGetValueName2(f, &len);
    }
    roots[r].name = kl_strdup(name);
    ok = roots[r].name != NULL;
  }
  if (!ok) {
    /* Out of memory midway: some roots may be external already, which is
    ** still a correct module; compile it in one piece. */
    for (int r = 0; r < n; r++)
      kl_free(roots[r].name);
    kl_free(roots);
    return 1;
  }
  *out_roots = roots;
  *out_n = n;
  return used;
}

static void free_roots(split_root *roots, int n) {
  for (int r = 0; r < n; r++)
    kl_free(roots[r].name);
  kl_free(roots);
}

/* Keeps only part k's roots defined in mod: the others become declarations
** (their callers in part k call them in another part's object) or, when
** nothing calls them, go. */
static void keep_part(LLVMModuleRef mod, const split_root *roots, int n, int k) {
  for (int r = 0; r < n; r++) {
    if (roots[r].part == k) continue;
    LLVMValueRef f = LLVMGetNamedFunction(mod, roots[r].name);
    if (!f) continue;
    LLVMValueRef d = LLVMAddFunction(mod, "", LLVMGlobalGetValueType(f));
    LLVMSetFunctionCallConv(d, LLVMGetFunctionCallConv(f));
    LLVMReplaceAllUsesWith(f, d);
    LLVMDeleteFunction(f);
    LLVMSetValueName2(d, roots[r].name, strlen(roots[r].name));
  }
}

/* On its own thread: (read the module and keep the part's roots,) optimize,
** verify, keep, compile to an object. */
static void *compile_part(void *arg) {
  split_part *p = arg;
  if (p->index > 0) {
    p->ctx = LLVMContextCreate();
    LLVMContextSetDiagnosticHandler(p->ctx, on_diagnostic, p->diag);
    if (LLVMParseBitcodeInContext2(p->ctx, p->whole, &p->mod)) {
      set_err(p->err, sizeof p->err, "cannot read the module's bitcode back: %s",
              p->diag->n_errors ? p->diag->first : "?");
      p->mod = NULL;
      p->st = KILN_LLVM;
      return NULL;
    }
    keep_part(p->mod, p->roots, p->n_roots, p->index);
  }
  double t0 = kl_jit_now();
  p->st = run_passes(p->tm, p->mod, p->level, p->err, sizeof p->err);
  p->passes = kl_jit_now() - t0;
  if (p->st != KILN_OK) return NULL;
  if (p->diag->n_errors) {
    set_err(p->err, sizeof p->err, "LLVM error while optimizing: %s", p->diag->first);
    p->st = KILN_LLVM;
    return NULL;
  }
  if (!verify(p->mod, "after LLVM's passes: ", p->err, sizeof p->err)) {
    p->st = KILN_INTERNAL;
    return NULL;
  }
  if (!(p->bc = keep_bitcode(p->mod, p->err, sizeof p->err))) {
    p->st = KILN_LLVM;
    return NULL;
  }
  char *msg = NULL;
  if (LLVMTargetMachineEmitToMemoryBuffer(p->tm, p->mod, LLVMObjectFile, &msg, &p->obj) ||
      p->diag->n_errors) {
    set_err(p->err, sizeof p->err, "cannot emit an object file: %s", msg ? msg : p->diag->first);
    p->st = KILN_LLVM;
  }
  if (msg) LLVMDisposeMessage(msg);
  return NULL;
}

static void dispose_part(split_part *p, bool own) {
  if (p->bc) LLVMDisposeMemoryBuffer(p->bc);
  if (p->obj) LLVMDisposeMemoryBuffer(p->obj);
  if (own) {
    if (p->mod) LLVMDisposeModule(p->mod);
    if (p->ctx) LLVMContextDispose(p->ctx);
  }
}

/* Compiles mod (verified, its IR text kept) in n parts as plan_split
** decided, links the objects and looks symbol up. Takes mod and tsc. */
static kiln_status add_split(kl_jit *jit, kl_jit_code *code, LLVMModuleRef mod,
                             LLVMOrcThreadSafeContextRef tsc, split_root *roots, int n_roots, int n,
                             int level, const char *symbol, double *secs, kl_jit_code **out_code,
                             void **out_fn, char *err, size_t errn) {
  split_part parts[KL_JIT_MAX_PARTS];
  memset(parts, 0, sizeof parts);
  kiln_status st = KILN_OK;
  double t0 = kl_jit_now(), prep = 0;
  for (int k = 1; k < n && st == KILN_OK; k++)
    if (!jit->aux_tm[k - 1]) st = new_host_tm(&jit->aux_tm[k - 1], err, errn);
  for (int k = 0; k < n && st == KILN_OK; k++) {
    split_part *p = &parts[k];
    *p = (split_part){.index = k,
                      .whole = code->bc_ir,
                      .roots = roots,
                      .n_roots = n_roots,
                      .tm = k ? jit->aux_tm[k - 1] : jit->tm,
                      .mod = k ? NULL : mod,
                      .level = level,
                      .diag = k ? &p->own_diag : &code->diag};
  }
  if (st == KILN_OK) {
    pthread_t th[KL_JIT_MAX_PARTS];
    bool started[KL_JIT_MAX_PARTS] = {false};
    for (int k = 1; k < n; k++)
      started[k] = pthread_create(&th[k], NULL, compile_part, &parts[k]) == 0;
    keep_part(mod, roots, n_roots, 0);
    prep = kl_jit_now() - t0;
    secs[0] += prep;
    compile_part(&parts[0]);
    for (int k = 1; k < n; k++) {
      if (started[k])
        pthread_join(th[k], NULL);
      else
        compile_part(&parts[k]); /* no thread to be had: here, after part 0 */
    }
    secs[1] = 0;
    for (int k = 0; k < n; k++) {
      if (parts[k].passes > secs[1]) secs[1] = parts[k].passes;
      if (parts[k].st != KILN_OK && st == KILN_OK) {
        st = parts[k].st;
        set_err(err, errn, "%s (part %d of %d of '%s')", parts[k].err, k + 1, n, symbol);
      }
    }
  }
  free_roots(roots, n_roots);

  if (st == KILN_OK) st = jit_ready(jit, err, errn);
  if (st == KILN_OK) {
    for (int k = 0; k < n; k++) {
      code->bc_opt[k] = parts[k].bc;
      parts[k].bc = NULL;
    }
    code->n_parts = n;
    code->rt = LLVMOrcJITDylibCreateResourceTracker(LLVMOrcLLJITGetMainJITDylib(jit->lljit));
    jit->session_err[0] = '\0';
    for (int k = 0; k < n && st == KILN_OK; k++) {
      LLVMMemoryBufferRef obj = parts[k].obj;
      parts[k].obj = NULL; /* the JIT owns it from this call on */
      st = take_error(LLVMOrcLLJITAddObjectFileWithRT(jit->lljit, code->rt, obj),
                      "adding an object file to the JIT", err, errn);
    }
  }
  for (int k = 0; k < n; k++)
    dispose_part(&parts[k], k > 0);
  dispose_parts(mod, tsc);
  if (st != KILN_OK) {
    destroy_code(code);
    return st;
  }
  st = look_up(jit, code, symbol, out_code, out_fn, err, errn);
  secs[2] = kl_jit_now() - t0 - prep - secs[1];
  if (secs[2] < 0) secs[2] = 0;
  return st;
}

kiln_status kl_jit_add(kl_jit *jit, kl_llmod *m, const char *symbol, const kl_jit_opts *opts,
                       kl_jit_code **out_code, void **out_fn, char *err, size_t errn) {
  /* Module and context are ours from here on, whatever happens. */
  LLVMOrcThreadSafeContextRef tsc = NULL;
  LLVMModuleRef mod = NULL;
  if (m) {
    tsc = m->tsc;
    mod = m->mod;
    memset(m, 0, sizeof *m);
  }
  if (out_code) *out_code = NULL;
  if (out_fn) *out_fn = NULL;
  if (!jit || !mod || !tsc || !symbol || !*symbol || !out_code || !out_fn ||
      LLVMGetModuleContext(mod) != LLVMOrcThreadSafeContextGetContext(tsc)) {
    dispose_parts(mod, tsc);
    set_err(err, errn, "kl_jit_add: bad argument (NULL JIT, module, symbol or output)");
    return KILN_MISUSE;
  }
  int level = opts ? opts->opt_level : 2;
  if (level < 0 || level > 3) {
    dispose_parts(mod, tsc);
    set_err(err, errn, "kl_jit_add: opt_level %d is not 0..3", level);
    return KILN_MISUSE;
  }
  kl_jit_code *code = kl_calloc(1, sizeof *code);
  if (!code) {
    dispose_parts(mod, tsc);
    set_err(err, errn, "out of memory adding '%s' to the JIT", symbol);
    return KILN_NOMEM;
  }
  code->jit = jit;
  LLVMContextSetDiagnosticHandler(LLVMGetModuleContext(mod), on_diagnostic, &code->diag);

  double secs_local[3], *secs = opts && opts->secs ? opts->secs : secs_local;
  secs[0] = secs[1] = secs[2] = 0;
  /* Verify, then (unless it is bound for the on-disk cache, which stores one
  ** object) decide whether a large module compiles in parts on several
  ** threads, then keep the module's bitcode for its text. */
  double t0 = kl_jit_now();
  if (!verify(mod, "", err, errn)) {
    dispose_parts(mod, tsc);
    destroy_code(code);
    return KILN_INTERNAL;
  }
  split_root *roots = NULL;
  int n_roots = 0, n = 1;
  if (!(opts && opts->object))
    n = plan_split(mod, symbol, compile_threads(opts ? opts->threads : 0), &roots, &n_roots);
  code->bc_ir = keep_bitcode(mod, err, errn);
  secs[0] = kl_jit_now() - t0;
  if (!code->bc_ir) {
    free_roots(roots, n_roots);
    dispose_parts(mod, tsc);
    destroy_code(code);
    return KILN_LLVM;
  }
  if (n > 1)
    return add_split(jit, code, mod, tsc, roots, n_roots, n, level, symbol, secs, out_code, out_fn,
                     err, errn);
  kiln_status st = prepare(jit, code, mod, level, secs, err, errn);
  double t_gen = kl_jit_now();
  if (st != KILN_OK) {
    dispose_parts(mod, tsc); /* the context goes with tsc, before the log it points at */
    destroy_code(code);
    return st;
  }
  if ((st = jit_ready(jit, err, errn)) != KILN_OK) {
    dispose_parts(mod, tsc);
    destroy_code(code);
    return st;
  }

  LLVMErrorRef e;
  if (opts && opts->object) {
    /* Code generation here, by our target machine; the JIT links the object. */
    *opts->object = NULL;
    *opts->object_len = 0;
    char *msg = NULL;
    LLVMMemoryBufferRef obj = NULL;
    bool failed = LLVMTargetMachineEmitToMemoryBuffer(jit->tm, mod, LLVMObjectFile, &msg, &obj);
    if (failed || code->diag.n_errors) {
      set_err(err, errn, "cannot emit an object file for '%s': %s", symbol,
              failed && msg ? msg : code->diag.first);
      LLVMDisposeMessage(msg);
      if (obj) LLVMDisposeMemoryBuffer(obj);
      dispose_parts(mod, tsc);
      destroy_code(code);
      return KILN_LLVM;
    }
    dispose_parts(mod, tsc);
    size_t n = LLVMGetBufferSize(obj);
    unsigned char *copy = kl_malloc(n ? n : 1);
    if (!copy) {
      LLVMDisposeMemoryBuffer(obj);
      destroy_code(code);
      set_err(err, errn, "out of memory keeping the object file of '%s'", symbol);
      return KILN_NOMEM;
    }
    memcpy(copy, LLVMGetBufferStart(obj), n);
    *opts->object = copy;
    *opts->object_len = n;
    code->rt = LLVMOrcJITDylibCreateResourceTracker(LLVMOrcLLJITGetMainJITDylib(jit->lljit));
    jit->session_err[0] = '\0';
    /* The JIT owns obj from this call on. */
    e = LLVMOrcLLJITAddObjectFileWithRT(jit->lljit, code->rt, obj);
  } else {
    /* The TSM owns mod now and shares the context with our tsc handle. */
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
    code->rt = LLVMOrcJITDylibCreateResourceTracker(LLVMOrcLLJITGetMainJITDylib(jit->lljit));
    jit->session_err[0] = '\0';
    /* The JIT owns tsm from this call on, even when it fails. */
    e = LLVMOrcLLJITAddLLVMIRModuleWithRT(jit->lljit, code->rt, tsm);
    /* Our handle only: the module inside the JIT keeps the context alive. */
    LLVMOrcDisposeThreadSafeContext(tsc);
  }
  if (e) {
    st = take_error(e, "adding the module to the JIT", err, errn);
    if (opts && opts->object) {
      kl_free(*opts->object);
      *opts->object = NULL;
      *opts->object_len = 0;
    }
    destroy_code(code); /* removes the tracker: the module leaves the JIT */
    return st;
  }

  st = look_up(jit, code, symbol, out_code, out_fn, err, errn);
  secs[2] = kl_jit_now() - t_gen;
  if (st != KILN_OK && opts && opts->object) {
    kl_free(*opts->object);
    *opts->object = NULL;
    *opts->object_len = 0;
  }
  return st;
}

/* Looks symbol up (compiling what is pending), links code into the JIT's
** list and returns it; on failure removes the code. */
static kiln_status look_up(kl_jit *jit, kl_jit_code *code, const char *symbol,
                           kl_jit_code **out_code, void **out_fn, char *err, size_t errn) {
  kiln_status st;
  /* LLVMOrcLLJITLookup takes the IR name and applies the JIT's mangling
  ** (LLJIT::lookup -> mangle), so the symbol is given as in the module.
  ** Compilation happens here, on first lookup. */
  LLVMOrcExecutorAddress addr = 0;
  char what[160];
  snprintf(what, sizeof what, "looking up '%s' in the JIT", symbol);
  st = take_error(LLVMOrcLLJITLookup(jit->lljit, &addr, symbol), what, err, errn);
  if (st != KILN_OK) {
    append_err(err, errn, jit->session_err);
    goto fail;
  }
  /* Code generation reports through the context; the object may exist even
  ** though, e.g., inline asm in it did not assemble. */
  if (code->diag.n_errors) {
    set_err(err, errn, "LLVM error while compiling '%s': %s", symbol, code->diag.first);
    st = KILN_LLVM;
    goto fail;
  }
  if (addr == 0) {
    set_err(err, errn, "the JIT gave address 0 for '%s'", symbol);
    st = KILN_LLVM;
    goto fail;
  }

  code->next = jit->codes;
  if (jit->codes) jit->codes->prev = code;
  jit->codes = code;
  *out_code = code;
  *out_fn = (void *)(uintptr_t)addr;
  return KILN_OK;

fail:
  destroy_code(code); /* removes the tracker: the module leaves the JIT */
  return st;
}

kiln_status kl_jit_add_object(kl_jit *jit, const unsigned char *obj, size_t len, const char *symbol,
                              kl_jit_code **out_code, void **out_fn, char *err, size_t errn) {
  if (out_code) *out_code = NULL;
  if (out_fn) *out_fn = NULL;
  if (!jit || !obj || !symbol || !*symbol || !out_code || !out_fn) {
    set_err(err, errn, "kl_jit_add_object: bad argument");
    return KILN_MISUSE;
  }
  kiln_status ready = jit_ready(jit, err, errn);
  if (ready != KILN_OK) return ready;
  kl_jit_code *code = kl_calloc(1, sizeof *code);
  if (!code) {
    set_err(err, errn, "out of memory adding '%s' to the JIT", symbol);
    return KILN_NOMEM;
  }
  code->jit = jit;
  code->from_object = true;
  LLVMMemoryBufferRef buf =
      LLVMCreateMemoryBufferWithMemoryRangeCopy((const char *)obj, len, symbol);
  code->rt = LLVMOrcJITDylibCreateResourceTracker(LLVMOrcLLJITGetMainJITDylib(jit->lljit));
  jit->session_err[0] = '\0';
  /* The JIT owns buf from this call on. */
  kiln_status st = take_error(LLVMOrcLLJITAddObjectFileWithRT(jit->lljit, code->rt, buf),
                              "adding an object file to the JIT", err, errn);
  if (st != KILN_OK) {
    destroy_code(code);
    return st;
  }
  return look_up(jit, code, symbol, out_code, out_fn, err, errn);
}

char *kl_jit_host_id(void) {
  unsigned maj = 0, min = 0, pat = 0;
  LLVMGetVersion(&maj, &min, &pat);
  char *triple = LLVMGetDefaultTargetTriple(), *cpu = LLVMGetHostCPUName();
  char *features = LLVMGetHostCPUFeatures();
  size_t n = strlen(triple) + strlen(cpu) + strlen(features) + 64;
  char *id = kl_malloc(n);
  if (id) snprintf(id, n, "llvm %u.%u.%u|%s|%s|%s", maj, min, pat, triple, cpu, features);
  LLVMDisposeMessage(triple);
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(features);
  return id;
}

/* ---------------------------------------------------------------- texts */

/* Reads kept bitcode into a throw-away context (*ctx, to dispose after the
** module) and gives the module; NULL with a message on failure. */
static LLVMModuleRef read_bitcode(LLVMMemoryBufferRef bc, LLVMContextRef *ctx, diag_log *log,
                                  char *err, size_t errn) {
  *ctx = LLVMContextCreate();
  LLVMContextSetDiagnosticHandler(*ctx, on_diagnostic, log);
  LLVMModuleRef mod = NULL;
  if (LLVMParseBitcodeInContext2(*ctx, bc, &mod)) {
    set_err(err, errn, "cannot read a kept module back: %s", log->n_errors ? log->first : "?");
    return NULL;
  }
  return mod;
}

/* One piece of a stage's text (kl_malloc'd): kept bitcode printed as IR,
** or compiled to host assembly. */
static kiln_status text_of(kl_jit_code *code, LLVMMemoryBufferRef bc, bool assembly, char **out,
                           char *err, size_t errn) {
  diag_log log = {0};
  LLVMContextRef ctx;
  LLVMModuleRef mod = read_bitcode(bc, &ctx, &log, err, errn);
  kiln_status st = mod ? KILN_OK : KILN_LLVM;
  *out = NULL;
  if (mod && !assembly) {
    *out = take_message(LLVMPrintModuleToString(mod));
  } else if (mod) {
    LLVMMemoryBufferRef buf = NULL;
    char *msg = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(code->jit->tm, mod, LLVMAssemblyFile, &msg, &buf)) {
      set_err(err, errn, "cannot emit assembly: %s", msg ? msg : "?");
      st = KILN_LLVM;
    } else if (log.n_errors) {
      set_err(err, errn, "LLVM error while emitting assembly: %s", log.first);
      st = KILN_LLVM;
    } else if ((*out = kl_malloc(LLVMGetBufferSize(buf) + 1)) != NULL) {
      memcpy(*out, LLVMGetBufferStart(buf), LLVMGetBufferSize(buf));
      (*out)[LLVMGetBufferSize(buf)] = '\0';
    }
    if (buf) LLVMDisposeMemoryBuffer(buf);
    if (msg) LLVMDisposeMessage(msg);
  }
  if (st == KILN_OK && !*out) {
    set_err(err, errn, "out of memory making the text of an LLVM module");
    st = KILN_NOMEM;
  }
  if (mod) LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  return st;
}

/* Makes text[stage] from the kept bitcode: the module before LLVM's passes,
** or after them (a split compile's parts one after the other), or its host
** assembly. */
static kiln_status make_text(kl_jit_code *code, kiln_stage stage, char *err, size_t errn) {
  bool before = stage == KILN_STAGE_LLVM_IR;
  int n = before ? 1 : code->n_parts;
  char *piece[KL_JIT_MAX_PARTS] = {NULL};
  kiln_status st = KILN_OK;
  size_t total = 1;
  for (int k = 0; k < n && st == KILN_OK; k++) {
    st = text_of(code, before ? code->bc_ir : code->bc_opt[k], stage == KILN_STAGE_ASM, &piece[k],
                 err, errn);
    if (st == KILN_OK) total += strlen(piece[k]) + 64;
  }
  char *text = st == KILN_OK ? kl_malloc(total) : NULL;
  if (st == KILN_OK && !text) {
    set_err(err, errn, "out of memory keeping the text of an LLVM module");
    st = KILN_NOMEM;
  }
  size_t len = 0;
  for (int k = 0; k < n; k++) {
    if (text && n > 1)
      len += (size_t)snprintf(text + len, total - len, "%s ---- kiln: part %d of %d ----\n",
                              stage == KILN_STAGE_ASM ? "#" : ";", k + 1, n);
    if (text) len += (size_t)snprintf(text + len, total - len, "%s", piece[k]);
    kl_free(piece[k]);
  }
  if (text) code->text[stage] = text;
  return st;
}

const char *kl_jit_code_text(kl_jit_code *code, kiln_stage stage, kiln_status *st, char *err,
                             size_t errn) {
  kiln_status s = KILN_OK;
  const char *text = NULL;
  if (!code) {
    set_err(err, errn, "kl_jit_code_text: code is NULL");
    s = KILN_MISUSE;
  } else if (stage != KILN_STAGE_LLVM_IR && stage != KILN_STAGE_LLVM_OPT &&
             stage != KILN_STAGE_ASM) {
    set_err(err, errn, "kl_jit_code_text: stage %d is not kept by the JIT", (int)stage);
    s = KILN_MISUSE;
  } else if (code->from_object) {
    set_err(err, errn,
            "the step was loaded from the on-disk cache (KILN_CACHE_DIR), which keeps no LLVM "
            "texts; with KILN_DUMP_DIR set, or without KILN_CACHE_DIR, it is compiled afresh");
    s = KILN_MISUSE;
  } else {
    if (!code->text[stage]) s = make_text(code, stage, err, errn);
    text = code->text[stage];
  }
  if (st) *st = s;
  return text;
}

/* Allowed only while the code's kl_jit is alive (see the top of the file). */
void kl_jit_code_free(kl_jit_code *code) {
  if (!code) return;
  if (code->prev) {
    code->prev->next = code->next;
  } else {
    code->jit->codes = code->next;
  }
  if (code->next) code->next->prev = code->prev;
  destroy_code(code);
}
