/*
** backend.c -- lowers a function graph to one LLVM module with one exported
** step function, then hands it to the JIT (jit.c).
**
**   i64 kiln_step_N(ptr %bufs, ptr %dims, ptr %err, ptr %pool)   (0, or 1: see emit_index)
**
** %bufs[b] is buffer b of the plan, %dims the dimensions the runtime computed
** for every node. Static dimensions are emitted as constants, dynamic ones
** are loaded from %dims. The schedule (compiler/passes/fuse.c) says how each
** node is computed: rank-0 nodes in straight-line code with their values in
** registers; every kernel root as one loop nest that evaluates the nodes
** fused into it inline; elementwise kernels loop over their output with
** broadcast strides (0 where an operand's size is 1); reductions add every
** source element into the output in increasing index order (a rank-0 sum
** in a register); dot runs a register-blocked kernel vectorized across
** output columns (see "dot" below), in the reference's summation order.
** Large elementwise kernels and blocked sums run in fixed chunks on the
** thread pool %pool (see "chunks" below). Loop
** counters and accumulators are allocas in the entry block; LLVM's mem2reg
** turns them into SSA values. Arithmetic carries no fast-math flags, so LLVM
** neither reassociates nor contracts into fma.
*/
#include "compiler/function.h"
#include "compiler/llvm/jit.h"
#include "compiler/llvm/kmath_ir.h"
#include "runtime/pool.h"

#include <llvm-c/DebugInfo.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct em {
  LLVMContextRef c;
  LLVMModuleRef m;
  LLVMBuilderRef b;  /* code */
  LLVMBuilderRef ab; /* allocas and buffer loads, at the end of the entry block */
  LLVMValueRef fn, dims;
  LLVMTypeRef i1, i8, i16, i32, i64, f32, f64, ptr, vd;
  const kl_fgraph *g;
  LLVMValueRef *base;                /* per buffer: its pointer, loaded in the entry block */
  LLVMValueRef ipow;                 /* internal i64 ipow(i64, i64), made on first use */
  LLVMValueRef *reg;                 /* per node: its value in a register (rank 0), or NULL */
  LLVMValueRef (*st)[KILN_MAX_RANK]; /* per node: broadcast strides, once computed */
  bool *has_st;
  LLVMValueRef (*st_fast)[KILN_MAX_RANK]; /* the same, assuming no dynamic size is 1 */
  bool fast;                              /* emitting the version that uses st_fast */
  bool collect;                           /* prepare() gathers the condition for the fast version */
  LLVMValueRef kcond;                     /* that condition: every dynamic size read is not 1 */
  LLVMValueRef *memo;                     /* per node: its value in the current loop body */
  int (*memo_map)[KILN_MAX_RANK];
  LLVMValueRef idx[KILN_MAX_RANK + 1];     /* the current loop indices; [KL_IDX_ZERO] is 0 */
  LLVMBasicBlockRef join, other, fast_end; /* emit_kernel's versions */
  LLVMValueRef fast_reg;
  bool cold;              /* emitting a general version: its loops stay scalar */
  bool general;           /* the general step: general versions beside the fast ones */
  bool narrow;            /* the kernel's last axis is short and static: outer loops stay scalar */
  int cur;                /* the node whose kernel is being emitted (block names) */
  LLVMMetadataRef no_vec; /* loop metadata saying so, made on first use */
  LLVMMetadataRef no_rt;  /* the fast loops' metadata (no runtime unrolling) */
  LLVMMetadataRef no_un;  /* the other fast loops' (no unrolling) */
  LLVMValueRef errp;      /* the step's error record (indexing: an index out of range) */
  LLVMValueRef ix_out;    /* indexing: where a rank-0 result is built */
  LLVMValueRef dot_fn[4]; /* the blocked dot functions: [float64][packed], made on first use */
  /* threads (see "chunks" below) */
  const char *symbol;      /* the step's name; chunk functions are <symbol>_k<n> */
  int n_outlined;          /* chunk functions made so far */
  LLVMValueRef bufs, pool; /* the step's first and fourth arguments */
  LLVMValueRef cap;        /* in a chunk function: its cap argument, else NULL */
  LLVMValueRef *outer_reg; /* in a chunk function: the step's registers */
  int n_cap, *cap_nodes;   /* the step's registers the chunk function reads */
  LLVMValueRef *alt_reg;   /* spare per-node arrays for a chunk function */
  LLVMValueRef (*alt_st)[KILN_MAX_RANK], (*alt_st_fast)[KILN_MAX_RANK];
  bool *alt_has_st;
  LLVMValueRef *alt_base;
} em;

/* ----------------------------------------------------------------- types */

static LLVMTypeRef lty(em *e, int dt) {
  switch (dt) {
  case KILN_BOOL:
  case KILN_INT8:
  case KILN_UINT8: return e->i8;
  case KILN_INT16: return e->i16;
  case KILN_INT32: return e->i32;
  case KILN_INT64: return e->i64;
  case KILN_FLOAT32: return e->f32;
  default: return e->f64;
  }
}

static LLVMValueRef ci64(em *e, int64_t v) {
  return LLVMConstInt(e->i64, (unsigned long long)v, 1);
}

static bool is_unsigned(int dt) { return dt == KILN_BOOL || dt == KILN_UINT8; }

/* --------------------------------------------------------------- values */

static const kiln_node *node(const em *e, int i) { return e->g->nodes[i]; }

/* Size of dimension d of local node i: a constant when static. */
static LLVMValueRef dim(em *e, int i, int d) {
  const kiln_node *v = node(e, i);
  if (v->type.dims[d] != KILN_DYN) return ci64(e, v->type.dims[d]);
  int idx = e->g->plan->shape[i].dims_base + d;
  LLVMValueRef p = LLVMBuildGEP2(e->b, e->i64, e->dims, (LLVMValueRef[]){ci64(e, idx)}, 1, "");
  return LLVMBuildLoad2(e->b, e->i64, p, "");
}

/* Contiguous strides of node i; with bcast, 0 where the size is 1. */
static void strides(em *e, int i, bool bcast, LLVMValueRef *st) {
  const kiln_node *v = node(e, i);
  LLVMValueRef s = ci64(e, 1);
  for (int d = v->type.rank - 1; d >= 0; d--) {
    LLVMValueRef n = dim(e, i, d);
    if (!bcast || v->type.dims[d] > 1)
      st[d] = s;
    else if (v->type.dims[d] == 1)
      st[d] = ci64(e, 0);
    else
      st[d] = LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, n, ci64(e, 1), ""), ci64(e, 0),
                              s, "");
    s = LLVMBuildMul(e->b, s, n, "");
  }
}

static LLVMValueRef const_of(em *e, const kiln_node *v) {
  int dt = v->type.dtype;
  if (kl_dtype_is_float((kiln_dtype)dt))
    return LLVMConstReal(lty(e, dt), kl_load_f64((kiln_dtype)dt, v->data, 0));
  return LLVMConstInt(lty(e, dt), (unsigned long long)kl_load_i64((kiln_dtype)dt, v->data, 0), 1);
}

static LLVMValueRef elem_ptr(em *e, int buf, int dt, LLVMValueRef off) {
  return LLVMBuildGEP2(e->b, lty(e, dt), e->base[buf], &off, 1, "");
}

/* Element at offset off of local node i's value. */
static LLVMValueRef load_node(em *e, int i, LLVMValueRef off) {
  const kiln_node *v = node(e, i);
  int h = e->g->home[i];
  if (h < 0) return const_of(e, v);
  return LLVMBuildLoad2(e->b, lty(e, v->type.dtype), elem_ptr(e, h, v->type.dtype, off), "");
}

/* Node j's value in a register, or NULL. In a chunk function a register of
** the step is captured: the step stores it into slot CAP_REGS + c of the
** cap block it passes, and the chunk function loads it once, on entry. */
#define CAP_REGS 1 /* slot 0 of cap: a sum's partials */
static LLVMValueRef reg_of(em *e, int j) {
  if (e->reg[j] || !e->cap || !e->outer_reg[j]) return e->reg[j];
  int c = e->n_cap++;
  e->cap_nodes[c] = j;
  LLVMTypeRef t = LLVMTypeOf(e->outer_reg[j]);
  LLVMValueRef slot =
      LLVMBuildGEP2(e->ab, e->i64, e->cap, (LLVMValueRef[]){ci64(e, CAP_REGS + c)}, 1, "");
  return e->reg[j] = LLVMBuildLoad2(e->ab, t, slot, "cap");
}

/* ---------------------------------------------------------------- loops */

/* Loops of at most this many iterations, known when lowering, may be
** unrolled fully by LLVM; see no_unroll_md. */
#define SHORT_LOOP 16

typedef struct loop {
  bool plain;        /* not to be vectorized nor unrolled (no_vec_md) */
  bool short_static; /* a constant trip count LLVM may unroll fully */
  LLVMValueRef var;
  LLVMBasicBlockRef cond, body, exit;
} loop;

static LLVMValueRef alloca_of(em *e, LLVMTypeRef t) { return LLVMBuildAlloca(e->ab, t, ""); }

/* An enum attribute of f, at an index (LLVMAttributeFunctionIndex, or a
** parameter from 1). */
static void add_attr(em *e, LLVMValueRef f, unsigned at, const char *name) {
  LLVMAddAttributeAtIndex(
      f, at, LLVMCreateEnumAttribute(e->c, LLVMGetEnumAttributeKindForName(name, strlen(name)), 0));
}

/* Blocks are named after the node whose kernel they belong to (%12.loop),
** so the IR dumps can be read against the plan. */
static LLVMBasicBlockRef new_block(em *e, const char *what) {
  char nm[48];
  snprintf(nm, sizeof nm, "n%d.%s", e->cur, what);
  return LLVMAppendBasicBlockInContext(e->c, e->fn, nm);
}

static LLVMValueRef loop_begin(em *e, loop *l, LLVMValueRef n) {
  l->plain = false;
  l->short_static = LLVMIsAConstantInt(n) && LLVMConstIntGetSExtValue(n) <= SHORT_LOOP;
  l->var = alloca_of(e, e->i64);
  LLVMBuildStore(e->b, ci64(e, 0), l->var);
  l->cond = new_block(e, "loop");
  l->body = new_block(e, "body");
  l->exit = new_block(e, "done");
  LLVMBuildBr(e->b, l->cond);
  LLVMPositionBuilderAtEnd(e->b, l->cond);
  LLVMValueRef i = LLVMBuildLoad2(e->b, e->i64, l->var, "i");
  LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, i, n, ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(e->b, l->body);
  return LLVMBuildLoad2(e->b, e->i64, l->var, "i");
}

/* Loop metadata asking LLVM to leave a loop as it is: no vectorizing, no
** interleaving, no unrolling:
** !{self, !{"llvm.loop.vectorize.enable", false},
**   !{"llvm.loop.interleave.count", 1}, !{"llvm.loop.unroll.disable"}}.
** General (broadcasting) kernel versions are the rare path; vectorizing
** their strided accesses only made gathers and scatters, and unrolling them
** (runtime unrolling, or fully when sizes are static) made a quarter of the
** MLP step's optimized IR: both only cost compile time. */
static LLVMMetadataRef no_vec_md(em *e) {
  if (e->no_vec) return e->no_vec;
  LLVMMetadataRef f = LLVMValueAsMetadata(LLVMConstInt(e->i1, 0, 0));
  LLVMMetadataRef one = LLVMValueAsMetadata(LLVMConstInt(e->i32, 1, 0));
  LLVMMetadataRef vec[2] = {LLVMMDStringInContext2(e->c, "llvm.loop.vectorize.enable", 26), f};
  LLVMMetadataRef il[2] = {LLVMMDStringInContext2(e->c, "llvm.loop.interleave.count", 26), one};
  LLVMMetadataRef un[1] = {LLVMMDStringInContext2(e->c, "llvm.loop.unroll.disable", 24)};
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(e->c, NULL, 0);
  LLVMMetadataRef ops[4] = {tmp, LLVMMDNodeInContext2(e->c, vec, 2),
                            LLVMMDNodeInContext2(e->c, il, 2), LLVMMDNodeInContext2(e->c, un, 1)};
  LLVMMetadataRef id = LLVMMDNodeInContext2(e->c, ops, 4);
  LLVMMetadataReplaceAllUsesWith(tmp, id); /* the loop id refers to itself */
  return e->no_vec = id;
}

/* A loop id with one property: !{self, !{"<name>"}}. */
static LLVMMetadataRef one_property_md(em *e, const char *name) {
  LLVMMetadataRef prop[1] = {LLVMMDStringInContext2(e->c, name, strlen(name))};
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(e->c, NULL, 0);
  LLVMMetadataRef ops[2] = {tmp, LLVMMDNodeInContext2(e->c, prop, 1)};
  LLVMMetadataRef id = LLVMMDNodeInContext2(e->c, ops, 2);
  LLVMMetadataReplaceAllUsesWith(tmp, id); /* the loop id refers to itself */
  return id;
}

/* Fast versions' short static loops: !{self,
** !{"llvm.loop.unroll.runtime.disable"}}. The vectorizer still interleaves
** and static trip counts still unroll fully; what goes is unrolling by a
** run-time count, which on this CPU's
** cost model doubled many vector loops and their remainders for no
** measured gain (MLP step 27.7 -> 27.4 us; its compile ~50 ms shorter). */
static LLVMMetadataRef no_rt_md(em *e) {
  if (!e->no_rt) e->no_rt = one_property_md(e, "llvm.loop.unroll.runtime.disable");
  return e->no_rt;
}

/* The other fast loops: !{self, !{"llvm.loop.unroll.disable"}}. LLVM's
** partial unrolling (of loops with a static trip count, and of vector
** bodies the vectorizer already interleaved) cost the W3 MLP's compile
** about 8 of 85 ms and bought no step time (W1, W2, W3 measured equal). The
** vectorizer still interleaves; short static loops (the seed's 4 weights)
** still unroll fully. */
static LLVMMetadataRef no_unroll_md(em *e) {
  if (!e->no_un) e->no_un = one_property_md(e, "llvm.loop.unroll.disable");
  return e->no_un;
}

static void loop_end(em *e, loop *l) {
  LLVMValueRef i = LLVMBuildLoad2(e->b, e->i64, l->var, "");
  LLVMBuildStore(e->b, LLVMBuildNUWAdd(e->b, i, ci64(e, 1), ""), l->var);
  LLVMValueRef br = LLVMBuildBr(e->b, l->cond);
  if (e->cold || l->plain)
    LLVMSetMetadata(br, LLVMGetMDKindIDInContext(e->c, "llvm.loop", 9),
                    LLVMMetadataAsValue(e->c, no_vec_md(e)));
  else if (!l->short_static)
    LLVMSetMetadata(br, LLVMGetMDKindIDInContext(e->c, "llvm.loop", 9),
                    LLVMMetadataAsValue(e->c, no_unroll_md(e)));
  else
    LLVMSetMetadata(br, LLVMGetMDKindIDInContext(e->c, "llvm.loop", 9),
                    LLVMMetadataAsValue(e->c, no_rt_md(e)));
  LLVMPositionBuilderAtEnd(e->b, l->exit);
}

static LLVMValueRef zero_of(em *e, int dt) {
  return kl_dtype_is_float((kiln_dtype)dt) ? LLVMConstReal(lty(e, dt), 0.0)
                                           : LLVMConstInt(lty(e, dt), 0, 0);
}

/* ------------------------------------------------------------ scalar ops */

static LLVMValueRef intrinsic(em *e, const char *name, LLVMTypeRef *tys, int nt, LLVMValueRef *args,
                              int na) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(e->m, id, tys, (size_t)nt);
  LLVMTypeRef ft = LLVMIntrinsicGetType(e->c, id, tys, (size_t)nt);
  return LLVMBuildCall2(e->b, ft, f, args, (unsigned)na, "");
}

/* libm's pow/powf as an opaque call (nobuiltin), the function the reference
** evaluator calls: llvm.pow with a constant exponent would be rewritten
** (x**2 -> x*x, x**0.5 -> sqrt, x**-1 -> 1/x), which rounds differently. */
static LLVMValueRef libm_pow(em *e, int dt, LLVMValueRef *args) {
  const char *name = dt == KILN_FLOAT32 ? "powf" : "pow";
  LLVMTypeRef t = lty(e, dt), ft = LLVMFunctionType(t, (LLVMTypeRef[]){t, t}, 2, 0);
  LLVMValueRef f = LLVMGetNamedFunction(e->m, name);
  if (!f) f = LLVMAddFunction(e->m, name, ft);
  LLVMValueRef call = LLVMBuildCall2(e->b, ft, f, args, 2, "");
  unsigned nb = LLVMGetEnumAttributeKindForName("nobuiltin", 9);
  LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(e->c, nb, 0));
  return call;
}

/* A one-argument libm function (log1p, expm1, tanh, or their f variants),
** opaque to LLVM like libm_pow, so the JIT calls exactly what the
** reference evaluator calls. */
static LLVMValueRef libm1(em *e, int dt, const char *name64, LLVMValueRef x) {
  char name[32];
  snprintf(name, sizeof name, "%s%s", name64, dt == KILN_FLOAT32 ? "f" : "");
  LLVMTypeRef t = lty(e, dt), ft = LLVMFunctionType(t, &t, 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(e->m, name);
  if (!f) f = LLVMAddFunction(e->m, name, ft);
  LLVMValueRef call = LLVMBuildCall2(e->b, ft, f, &x, 1, "");
  unsigned nb = LLVMGetEnumAttributeKindForName("nobuiltin", 9);
  LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(e->c, nb, 0));
  return call;
}

/* i64 ipow(i64 x, i64 y): kl_ipow in IR, internal to the module. */
static LLVMValueRef ipow_fn(em *e) {
  if (e->ipow) return e->ipow;
  LLVMTypeRef ft = LLVMFunctionType(e->i64, (LLVMTypeRef[]){e->i64, e->i64}, 2, 0);
  LLVMValueRef f = LLVMAddFunction(e->m, "kiln_ipow", ft);
  LLVMSetLinkage(f, LLVMInternalLinkage);
  LLVMBuilderRef b = LLVMCreateBuilderInContext(e->c);
  LLVMValueRef x = LLVMGetParam(f, 0), y = LLVMGetParam(f, 1);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(e->c, f, "entry");
  LLVMBasicBlockRef neg = LLVMAppendBasicBlockInContext(e->c, f, "neg");
  LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(e->c, f, "head");
  LLVMBasicBlockRef step = LLVMAppendBasicBlockInContext(e->c, f, "step");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->c, f, "done");
  LLVMPositionBuilderAtEnd(b, entry);
  LLVMValueRef zero = LLVMConstInt(e->i64, 0, 0), one = LLVMConstInt(e->i64, 1, 0);
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, y, zero, ""), neg, head);
  /* y < 0: 1 for x == 1; +-1 for x == -1 by y's parity; else 0 */
  LLVMPositionBuilderAtEnd(b, neg);
  LLVMValueRef odd = LLVMBuildICmp(b, LLVMIntNE, LLVMBuildAnd(b, y, one, ""), zero, "");
  LLVMValueRef m1 =
      LLVMBuildSelect(b, odd, LLVMConstInt(e->i64, (unsigned long long)-1, 1), one, "");
  LLVMValueRef r_neg = LLVMBuildSelect(
      b, LLVMBuildICmp(b, LLVMIntEQ, x, one, ""), one,
      LLVMBuildSelect(
          b, LLVMBuildICmp(b, LLVMIntEQ, x, LLVMConstInt(e->i64, (unsigned long long)-1, 1), ""),
          m1, zero, ""),
      "");
  LLVMBuildRet(b, r_neg);
  /* square and multiply, wrapping */
  LLVMPositionBuilderAtEnd(b, head);
  LLVMValueRef r = LLVMBuildPhi(b, e->i64, "r"), bb = LLVMBuildPhi(b, e->i64, "b"),
               yy = LLVMBuildPhi(b, e->i64, "y");
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntEQ, yy, zero, ""), done, step);
  LLVMPositionBuilderAtEnd(b, step);
  LLVMValueRef bit = LLVMBuildICmp(b, LLVMIntNE, LLVMBuildAnd(b, yy, one, ""), zero, "");
  LLVMValueRef r2 = LLVMBuildSelect(b, bit, LLVMBuildMul(b, r, bb, ""), r, "");
  LLVMValueRef b2 = LLVMBuildMul(b, bb, bb, "");
  LLVMValueRef y2 = LLVMBuildLShr(b, yy, one, "");
  LLVMBuildBr(b, head);
  LLVMAddIncoming(r, (LLVMValueRef[]){one, r2}, (LLVMBasicBlockRef[]){entry, step}, 2);
  LLVMAddIncoming(bb, (LLVMValueRef[]){x, b2}, (LLVMBasicBlockRef[]){entry, step}, 2);
  LLVMAddIncoming(yy, (LLVMValueRef[]){y, y2}, (LLVMBasicBlockRef[]){entry, step}, 2);
  LLVMPositionBuilderAtEnd(b, done);
  LLVMBuildRet(b, r);
  LLVMDisposeBuilder(b);
  return e->ipow = f;
}

static LLVMValueRef emit_cast(em *e, LLVMValueRef x, int from, int to) {
  LLVMTypeRef tt = lty(e, to), ft = lty(e, from);
  bool ff = kl_dtype_is_float((kiln_dtype)from), tf = kl_dtype_is_float((kiln_dtype)to);
  if (from == to) return x;
  if (to == KILN_BOOL) {
    LLVMValueRef c = ff ? LLVMBuildFCmp(e->b, LLVMRealUNE, x, LLVMConstReal(ft, 0.0), "")
                        : LLVMBuildICmp(e->b, LLVMIntNE, x, LLVMConstInt(ft, 0, 0), "");
    return LLVMBuildZExt(e->b, c, e->i8, "");
  }
  if (ff && tf)
    return to == KILN_FLOAT64 ? LLVMBuildFPExt(e->b, x, tt, "") : LLVMBuildFPTrunc(e->b, x, tt, "");
  if (!ff && tf)
    return is_unsigned(from) ? LLVMBuildUIToFP(e->b, x, tt, "") : LLVMBuildSIToFP(e->b, x, tt, "");
  if (ff) /* float -> int saturates, NaN -> 0 */
    return intrinsic(e, to == KILN_UINT8 ? "llvm.fptoui.sat" : "llvm.fptosi.sat",
                     (LLVMTypeRef[]){tt, ft}, 2, &x, 1);
  return LLVMBuildIntCast2(e->b, x, tt, !is_unsigned(from), "");
}

static LLVMValueRef emit_cmp(em *e, kl_opcode op, int dt, LLVMValueRef a, LLVMValueRef b) {
  LLVMValueRef c;
  if (kl_dtype_is_float((kiln_dtype)dt)) {
    static const LLVMRealPredicate fp[] = {LLVMRealOLT, LLVMRealOLE, LLVMRealOGT,
                                           LLVMRealOGE, LLVMRealOEQ, LLVMRealUNE};
    c = LLVMBuildFCmp(e->b, fp[op - KL_OP_LT], a, b, "");
  } else {
    static const LLVMIntPredicate sp[] = {LLVMIntSLT, LLVMIntSLE, LLVMIntSGT,
                                          LLVMIntSGE, LLVMIntEQ,  LLVMIntNE};
    static const LLVMIntPredicate up[] = {LLVMIntULT, LLVMIntULE, LLVMIntUGT,
                                          LLVMIntUGE, LLVMIntEQ,  LLVMIntNE};
    c = LLVMBuildICmp(e->b, (is_unsigned(dt) ? up : sp)[op - KL_OP_LT], a, b, "");
  }
  return LLVMBuildZExt(e->b, c, e->i8, "");
}

/* One element of an elementwise op; x[] are the operands, in the op's input
** dtype dt (all equal after promotion, where's condition apart). */
static LLVMValueRef emit_scalar(em *e, const kiln_node *v, int dt, LLVMValueRef *x) {
  kl_opcode op = (kl_opcode)v->op;
  LLVMTypeRef t = lty(e, dt);
  LLVMValueRef a = x[0], b = x[1];
  if (op == KL_OP_CAST) return emit_cast(e, a, dt, v->type.dtype);
  if (op == KL_OP_STOPGRAD) return a;
  if (op >= KL_OP_LT && op <= KL_OP_NE) return emit_cmp(e, op, dt, a, b);
  if (op == KL_OP_ISNAN || op == KL_OP_ISINF) {
    if (!kl_dtype_is_float((kiln_dtype)dt)) return LLVMConstInt(e->i8, 0, 0);
    LLVMValueRef c = op == KL_OP_ISNAN
                         ? LLVMBuildFCmp(e->b, LLVMRealUNO, a, a, "")
                         : LLVMBuildFCmp(e->b, LLVMRealOEQ, intrinsic(e, "llvm.fabs", &t, 1, &a, 1),
                                         LLVMConstReal(t, 1.0 / 0.0), "");
    return LLVMBuildZExt(e->b, c, e->i8, "");
  }
  if (op == KL_OP_WHERE)
    return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntNE, a, LLVMConstInt(e->i8, 0, 0), ""),
                           b, x[2], "");
  if (kl_dtype_is_float((kiln_dtype)dt)) {
    switch (op) {
    case KL_OP_NEG: return LLVMBuildFNeg(e->b, a, "");
    case KL_OP_SQR: return LLVMBuildFMul(e->b, a, a, "");
    case KL_OP_SQRT: return intrinsic(e, "llvm.sqrt", &t, 1, &a, 1);
    case KL_OP_LOG1P: return libm1(e, dt, "log1p", a);
    case KL_OP_EXPM1: return libm1(e, dt, "expm1", a);
    case KL_OP_TANH:
      if (dt == KILN_FLOAT32) return kl_ir_tanhf(e->m, e->b, a);
      return libm1(e, dt, "tanh", a);
    case KL_OP_SIGMOID: { /* the reference's formula, both sides, then select */
      if (dt == KILN_FLOAT32) return kl_ir_sigmoidf(e->m, e->b, a);
      LLVMValueRef one = LLVMConstReal(t, 1.0);
      LLVMValueRef en =
          intrinsic(e, "llvm.exp", &t, 1, (LLVMValueRef[]){LLVMBuildFNeg(e->b, a, "")}, 1);
      LLVMValueRef ep = intrinsic(e, "llvm.exp", &t, 1, &a, 1);
      LLVMValueRef pos = LLVMBuildFDiv(e->b, one, LLVMBuildFAdd(e->b, one, en, ""), "");
      LLVMValueRef neg = LLVMBuildFDiv(e->b, ep, LLVMBuildFAdd(e->b, one, ep, ""), "");
      return LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOGE, a, LLVMConstReal(t, 0.0), ""),
                             pos, neg, "");
    }
    case KL_OP_SOFTPLUS: {
      if (dt == KILN_FLOAT32) return kl_ir_softplusf(e->m, e->b, a);
      LLVMValueRef en =
          intrinsic(e, "llvm.exp", &t, 1, (LLVMValueRef[]){LLVMBuildFNeg(e->b, a, "")}, 1);
      LLVMValueRef ep = intrinsic(e, "llvm.exp", &t, 1, &a, 1);
      LLVMValueRef pos = LLVMBuildFAdd(e->b, a, libm1(e, dt, "log1p", en), "");
      LLVMValueRef neg = libm1(e, dt, "log1p", ep);
      return LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOGT, a, LLVMConstReal(t, 0.0), ""),
                             pos, neg, "");
    }
    case KL_OP_RELU: {
      LLVMValueRef c = LLVMBuildFCmp(e->b, LLVMRealOGE, a, LLVMConstReal(t, 0.0), "");
      c = LLVMBuildOr(e->b, c, LLVMBuildFCmp(e->b, LLVMRealUNO, a, a, ""), "");
      return LLVMBuildSelect(e->b, c, a, LLVMConstReal(t, 0.0), "");
    }
    /* float32: Kiln's own functions, inline and vectorizable (kmath_ir.c);
    ** float64: libm's, which llvm.exp/llvm.log become */
    case KL_OP_EXP:
      if (dt == KILN_FLOAT32) return kl_ir_expf(e->m, e->b, a);
      return intrinsic(e, "llvm.exp", &t, 1, &a, 1);
    case KL_OP_LOG:
      if (dt == KILN_FLOAT32) return kl_ir_logf(e->m, e->b, a);
      return intrinsic(e, "llvm.log", &t, 1, &a, 1);
    case KL_OP_ABS: return intrinsic(e, "llvm.fabs", &t, 1, &a, 1);
    case KL_OP_SIGN: {
      LLVMValueRef z = LLVMConstReal(t, 0.0);
      LLVMValueRef lt = LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOLT, a, z, ""),
                                        LLVMConstReal(t, -1.0), a, "");
      return LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOGT, a, z, ""),
                             LLVMConstReal(t, 1.0), lt, "");
    }
    case KL_OP_ADD: return LLVMBuildFAdd(e->b, a, b, "");
    case KL_OP_SUB: return LLVMBuildFSub(e->b, a, b, "");
    case KL_OP_MUL: return LLVMBuildFMul(e->b, a, b, "");
    case KL_OP_DIV: return LLVMBuildFDiv(e->b, a, b, "");
    case KL_OP_POW: return libm_pow(e, dt, x);
    case KL_OP_MAX:
    case KL_OP_MIN: {
      /* (a >= b || a is NaN) ? a : b -- NaN from either side propagates */
      LLVMValueRef c = LLVMBuildFCmp(e->b, op == KL_OP_MAX ? LLVMRealOGE : LLVMRealOLE, a, b, "");
      c = LLVMBuildOr(e->b, c, LLVMBuildFCmp(e->b, LLVMRealUNO, a, a, ""), "");
      return LLVMBuildSelect(e->b, c, a, b, "");
    }
    default: break;
    }
  } else if (dt == KILN_BOOL) {
    switch (op) {
    case KL_OP_ADD:
    case KL_OP_MAX: return LLVMBuildOr(e->b, a, b, "");
    case KL_OP_MUL:
    case KL_OP_MIN: return LLVMBuildAnd(e->b, a, b, "");
    case KL_OP_SQR:
    case KL_OP_ABS:
    case KL_OP_SIGN:
    case KL_OP_RELU: return a;
    case KL_OP_AND: return LLVMBuildAnd(e->b, a, b, "");
    case KL_OP_OR: return LLVMBuildOr(e->b, a, b, "");
    case KL_OP_NOT: return LLVMBuildXor(e->b, a, LLVMConstInt(e->i8, 1, 0), "");
    default: break;
    }
  } else {
    LLVMValueRef z = LLVMConstInt(t, 0, 0);
    bool u = is_unsigned(dt);
    switch (op) {
    case KL_OP_NEG: return LLVMBuildSub(e->b, z, a, "");
    case KL_OP_SQR: return LLVMBuildMul(e->b, a, a, "");
    case KL_OP_ABS:
      if (u) return a;
      return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, a, z, ""),
                             LLVMBuildSub(e->b, z, a, ""), a, "");
    case KL_OP_SIGN: {
      LLVMValueRef one = LLVMConstInt(t, 1, 0), m1 = LLVMConstInt(t, (unsigned long long)-1, 1);
      LLVMValueRef lt =
          u ? z : LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, a, z, ""), m1, z, "");
      return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, u ? LLVMIntUGT : LLVMIntSGT, a, z, ""), one,
                             lt, "");
    }
    case KL_OP_ADD: return LLVMBuildAdd(e->b, a, b, "");
    case KL_OP_SUB: return LLVMBuildSub(e->b, a, b, "");
    case KL_OP_MUL: return LLVMBuildMul(e->b, a, b, "");
    case KL_OP_RELU:
      if (u) return a;
      return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSGE, a, z, ""), a, z, "");
    case KL_OP_MAX:
    case KL_OP_MIN: {
      LLVMIntPredicate p =
          op == KL_OP_MAX ? (u ? LLVMIntUGE : LLVMIntSGE) : (u ? LLVMIntULE : LLVMIntSLE);
      return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, p, a, b, ""), a, b, "");
    }
    case KL_OP_INTDIV:
    case KL_OP_MOD: {
      /* in i64, with a divisor that cannot trap: 0 and -1 are handled by
      ** selects (x // 0 = x % 0 = 0; x // -1 = -x wrapping, x % -1 = 0) */
      LLVMValueRef x = LLVMBuildIntCast2(e->b, a, e->i64, !u, ""),
                   y = LLVMBuildIntCast2(e->b, b, e->i64, !u, "");
      LLVMValueRef z64 = ci64(e, 0), one = ci64(e, 1), m1 = ci64(e, -1);
      LLVMValueRef y0 = LLVMBuildICmp(e->b, LLVMIntEQ, y, z64, ""),
                   ym1 = LLVMBuildICmp(e->b, LLVMIntEQ, y, m1, "");
      LLVMValueRef safe = LLVMBuildSelect(e->b, LLVMBuildOr(e->b, y0, ym1, ""), one, y, "");
      LLVMValueRef q = LLVMBuildSDiv(e->b, x, safe, ""), r = LLVMBuildSRem(e->b, x, safe, "");
      LLVMValueRef adj =
          LLVMBuildAnd(e->b, LLVMBuildICmp(e->b, LLVMIntNE, r, z64, ""),
                       LLVMBuildICmp(e->b, LLVMIntNE, LLVMBuildICmp(e->b, LLVMIntSLT, r, z64, ""),
                                     LLVMBuildICmp(e->b, LLVMIntSLT, safe, z64, ""), ""),
                       "");
      LLVMValueRef res;
      if (op == KL_OP_INTDIV) {
        res = LLVMBuildSelect(e->b, adj, LLVMBuildSub(e->b, q, one, ""), q, "");
        res = LLVMBuildSelect(e->b, ym1, LLVMBuildSub(e->b, z64, x, ""), res, "");
      } else {
        res = LLVMBuildSelect(e->b, adj, LLVMBuildAdd(e->b, r, safe, ""), r, "");
        res = LLVMBuildSelect(e->b, ym1, z64, res, "");
      }
      res = LLVMBuildSelect(e->b, y0, z64, res, "");
      return LLVMBuildTrunc(e->b, res, t, "");
    }
    case KL_OP_POW: {
      LLVMValueRef f = ipow_fn(e);
      LLVMTypeRef ft = LLVMFunctionType(e->i64, (LLVMTypeRef[]){e->i64, e->i64}, 2, 0);
      LLVMValueRef args[2] = {LLVMBuildIntCast2(e->b, a, e->i64, !u, ""),
                              LLVMBuildIntCast2(e->b, b, e->i64, !u, "")};
      return LLVMBuildTrunc(e->b, LLVMBuildCall2(e->b, ft, f, args, 2, ""), t, "");
    }
    default: break;
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------- kernels */
/*
** A kernel is a loop nest computing one root node. The nodes fused into it
** are evaluated inline at each iteration (eval), each at an "index map":
** which loop index drives each of its axes. Materialized operands (leaves,
** earlier kernels' results) are loaded with broadcast strides (0 where their
** size is 1); scalars come from registers. Strides are computed once, in
** straight-line code before the first loop that needs them.
*/

static void prepare(em *e, int j);

/* Strides of a materialized node, computed at the current (top-level) point. */
static void need_strides(em *e, int j) {
  const kiln_node *v = node(e, j);
  if (v->type.rank == 0 || e->reg[j]) return;
  if (!e->has_st[j]) {
    strides(e, j, true, e->st[j]);
    /* with no dynamic size equal to 1, a dynamic dimension never broadcasts */
    LLVMValueRef s = ci64(e, 1);
    for (int d = v->type.rank - 1; d >= 0; d--) {
      e->st_fast[j][d] = v->type.dims[d] == 1 ? ci64(e, 0) : s;
      s = LLVMBuildMul(e->b, s, dim(e, j, d), "");
    }
    e->has_st[j] = true;
  }
  if (e->collect)
    for (int d = 0; d < v->type.rank; d++) {
      if (v->type.dims[d] != KILN_DYN) continue;
      LLVMValueRef c = LLVMBuildICmp(e->b, LLVMIntNE, dim(e, j, d), ci64(e, 1), "");
      e->kcond = e->kcond ? LLVMBuildAnd(e->b, e->kcond, c, "") : c;
    }
}

/* Before a kernel's loops: strides of everything its root will load. */
static void prepare(em *e, int j) {
  const kiln_node *v = node(e, j);
  if (e->g->sched[j] != KL_S_FUSED || kl_ops[v->op].kind == KL_RESHAPE) {
    /* a fused reshape reads its stored operand with its own shape's strides */
    need_strides(e, j);
    return;
  }
  for (int k = 0; k < v->n_in; k++)
    if (kl_reads_value(v, k)) prepare(e, (int)v->in[k]->id);
}

static void prepare_operands(em *e, int j) {
  const kiln_node *v = node(e, j);
  if (kl_ops[v->op].kind == KL_RESHAPE) {
    need_strides(e, j);
    return;
  }
  for (int k = 0; k < v->n_in; k++)
    if (kl_reads_value(v, k)) prepare(e, (int)v->in[k]->id);
}

static LLVMValueRef eval(em *e, int j, const int *m);

/* The index map of operand k of v, given v's map m. */
static void operand_map(const kiln_node *v, int k, const int *m, int *mk) {
  const kiln_node *x = v->in[k];
  if (v->op == KL_OP_BCAST) {
    for (int d = 0, t = 0; d < v->type.rank; d++)
      if (!(v->p.axes >> d & 1u)) mk[t++] = m[d];
  } else if (v->op == KL_OP_DIMSHUFFLE) { /* a permutation; dropped axes at 0 */
    for (int a = 0; a < x->type.rank; a++)
      mk[a] = KL_IDX_ZERO;
    for (int d = 0; d < v->type.rank; d++)
      if (v->p.src_axis[d] >= 0) mk[v->p.src_axis[d]] = m[d];
  } else {
    for (int a = 0; a < x->type.rank; a++)
      mk[a] = m[a + v->type.rank - x->type.rank];
  }
}

/* Reshape j at the element map m designates: its stored operand read at
** the same flat (C order) position, that is with j's own strides (0 where
** j's size is 1, so it broadcasts like any stored operand). */
static LLVMValueRef view_load(em *e, int j, const int *m) {
  const kiln_node *v = node(e, j);
  int x = (int)v->in[0]->id;
  const kiln_node *xv = node(e, x);
  if (reg_of(e, x)) return e->reg[x];
  if (e->g->home[x] < 0) return const_of(e, xv); /* an inlined rank-0 constant */
  LLVMValueRef off = ci64(e, 0);
  for (int a = 0; a < v->type.rank; a++)
    off = LLVMBuildAdd(
        e->b, off, LLVMBuildMul(e->b, e->idx[m[a]], (e->fast ? e->st_fast : e->st)[j][a], ""), "");
  return LLVMBuildLoad2(e->b, lty(e, xv->type.dtype),
                        elem_ptr(e, e->g->home[x], xv->type.dtype, off), "");
}

/* v's own operation at the element its map m designates. */
static LLVMValueRef compute(em *e, int j, const int *m) {
  const kiln_node *v = node(e, j);
  if (kl_ops[v->op].kind == KL_RESHAPE) return view_load(e, j, m);
  LLVMValueRef x[3] = {NULL, NULL, NULL};
  for (int k = 0; k < v->n_in && k < 3; k++) {
    if (!kl_reads_value(v, k)) continue;
    int mk[KILN_MAX_RANK];
    operand_map(v, k, m, mk);
    x[k] = eval(e, (int)v->in[k]->id, mk);
  }
  if (v->op == KL_OP_BCAST || v->op == KL_OP_DIMSHUFFLE) return x[0];
  return emit_scalar(e, v, v->in[v->n_in - 1]->type.dtype, x);
}

static LLVMValueRef eval(em *e, int j, const int *m) {
  const kiln_node *v = node(e, j);
  if (reg_of(e, j)) return e->reg[j];
  if (v->op == KL_OP_CONST && v->type.rank == 0) return const_of(e, v);
  if (e->g->sched[j] == KL_S_FUSED) {
    int r = v->type.rank;
    if (e->memo[j] && memcmp(e->memo_map[j], m, (size_t)r * sizeof *m) == 0) return e->memo[j];
    LLVMValueRef val = compute(e, j, m);
    e->memo[j] = val;
    memcpy(e->memo_map[j], m, (size_t)r * sizeof *m);
    return val;
  }
  LLVMValueRef off = ci64(e, 0);
  for (int a = 0; a < v->type.rank; a++)
    off = LLVMBuildAdd(
        e->b, off, LLVMBuildMul(e->b, e->idx[m[a]], (e->fast ? e->st_fast : e->st)[j][a], ""), "");
  return LLVMBuildLoad2(e->b, lty(e, v->type.dtype), elem_ptr(e, e->g->home[j], v->type.dtype, off),
                        "");
}

/* Opens loops over dims D[0..R-1], setting e->idx; a fresh body for memo. */
static void open_loops(em *e, loop *l, int R, const LLVMValueRef *D) {
  for (int d = 0; d < R; d++) {
    e->idx[d] = loop_begin(e, &l[d], D[d]);
    l[d].plain = e->narrow && d < R - 1;
  }
  memset(e->memo, 0, (size_t)e->g->n * sizeof *e->memo);
}

static void close_loops(em *e, loop *l, int R) {
  for (int d = R; d-- > 0;)
    loop_end(e, &l[d]);
  memset(e->memo, 0, (size_t)e->g->n * sizeof *e->memo);
}

static LLVMValueRef flat_offset(em *e, int R, const LLVMValueRef *st) {
  LLVMValueRef off = ci64(e, 0);
  for (int d = 0; d < R; d++)
    off = LLVMBuildAdd(e->b, off, LLVMBuildMul(e->b, e->idx[d], st[d], ""), "");
  return off;
}

static const int identity[KILN_MAX_RANK] = {0, 1, 2, 3, 4, 5, 6, 7};

static void store_home(em *e, int i, LLVMValueRef val, LLVMValueRef off) {
  const kiln_node *v = node(e, i);
  LLVMBuildStore(e->b, val, elem_ptr(e, e->g->home[i], v->type.dtype, off));
}

/* ----------------------------------------------------------------- chunks */
/*
** Large kernels run on the context's thread pool (runtime/pool.h). The
** kernel's body is outlined into an internal function of the module,
**
**   void <symbol>_k<n>(ptr bufs, ptr dims, ptr cap, i64 lo, i64 hi)
**
** which computes the kernel's chunks lo..hi-1, and the step calls the
** pool's run function (the first field of the step's pool argument) with
** it; with one thread that is one direct call for all the chunks. Chunk
** boundaries depend only on the shapes (runtime/pool.h: KL_ELEM_CHUNK,
** KL_SUM_CHUNK), so the thread count never changes a result. Registers of
** the step that the body reads (scalars computed earlier, such as the
** seed's y) are handed over in the cap block (reg_of). Only the fast
** (vectorized) version of a kernel is outlined; small kernels stay inline.
*/
typedef struct outl {
  LLVMValueRef fn, dims, *base, *reg, (*st)[KILN_MAX_RANK], (*st_fast)[KILN_MAX_RANK];
  bool *has_st;
  LLVMBuilderRef b, ab;
  LLVMBasicBlockRef start;
  LLVMValueRef made;
} outl;

/* Starts a chunk function; until outline_end, e emits into it. */
static void outline_begin(em *e, outl *o, LLVMValueRef *lo, LLVMValueRef *hi) {
  *o = (outl){.fn = e->fn,
              .dims = e->dims,
              .base = e->base,
              .reg = e->reg,
              .st = e->st,
              .st_fast = e->st_fast,
              .has_st = e->has_st,
              .b = e->b,
              .ab = e->ab};
  char nm[200];
  snprintf(nm, sizeof nm, "%s_k%d", e->symbol, e->n_outlined++);
  LLVMTypeRef ft =
      LLVMFunctionType(e->vd, (LLVMTypeRef[]){e->ptr, e->ptr, e->ptr, e->i64, e->i64}, 5, 0);
  LLVMValueRef f = LLVMAddFunction(e->m, nm, ft);
  LLVMSetLinkage(f, LLVMInternalLinkage);
  add_attr(e, f, LLVMAttributeFunctionIndex, "nounwind");
  /* the step also calls it directly (one thread, or a size below the
  ** threshold): inlined there, the kernel's code would be compiled twice */
  add_attr(e, f, LLVMAttributeFunctionIndex, "noinline");
  for (unsigned a = 1; a <= 3; a++) {
    add_attr(e, f, a, "noalias");
    add_attr(e, f, a, "nocapture");
    add_attr(e, f, a, "readonly");
  }
  o->made = e->fn = f;
  e->dims = LLVMGetParam(f, 1);
  e->cap = LLVMGetParam(f, 2);
  *lo = LLVMGetParam(f, 3);
  *hi = LLVMGetParam(f, 4);
  size_t n = (size_t)(e->g->n ? e->g->n : 1);
  memset(e->alt_reg, 0, n * sizeof *e->alt_reg);
  memset(e->alt_has_st, 0, n * sizeof *e->alt_has_st);
  memset(e->memo, 0, n * sizeof *e->memo);
  e->outer_reg = e->reg;
  e->reg = e->alt_reg;
  e->st = e->alt_st;
  e->st_fast = e->alt_st_fast;
  e->has_st = e->alt_has_st;
  e->base = e->alt_base;
  e->n_cap = 0;
  e->b = LLVMCreateBuilderInContext(e->c);
  e->ab = LLVMCreateBuilderInContext(e->c);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(e->c, f, "entry");
  o->start = LLVMAppendBasicBlockInContext(e->c, f, "start");
  LLVMPositionBuilderAtEnd(e->ab, entry);
  LLVMValueRef bufs = LLVMGetParam(f, 0);
  for (int b = 0; b < e->g->plan->n_bufs; b++)
    e->base[b] = LLVMBuildLoad2(
        e->ab, e->ptr, LLVMBuildGEP2(e->ab, e->ptr, bufs, (LLVMValueRef[]){ci64(e, b)}, 1, ""), "");
  LLVMPositionBuilderAtEnd(e->b, o->start);
}

/* Ends the chunk function and returns it; back in the step, *cap is a new
** cap block holding the registers the function reads. */
static LLVMValueRef outline_end(em *e, outl *o, LLVMValueRef *cap) {
  LLVMBuildRetVoid(e->b);
  LLVMBuildBr(e->ab, o->start);
  LLVMDisposeBuilder(e->b);
  LLVMDisposeBuilder(e->ab);
  e->fn = o->fn;
  e->dims = o->dims;
  e->base = o->base;
  e->reg = o->reg;
  e->st = o->st;
  e->st_fast = o->st_fast;
  e->has_st = o->has_st;
  e->b = o->b;
  e->ab = o->ab;
  e->cap = NULL;
  e->outer_reg = NULL;
  memset(e->memo, 0, (size_t)(e->g->n ? e->g->n : 1) * sizeof *e->memo);
  *cap = LLVMBuildAlloca(e->ab, LLVMArrayType2(e->i64, (uint64_t)(CAP_REGS + e->n_cap)), "cap");
  for (int c = 0; c < e->n_cap; c++)
    LLVMBuildStore(
        e->b, e->reg[e->cap_nodes[c]],
        LLVMBuildGEP2(e->b, e->i64, *cap, (LLVMValueRef[]){ci64(e, CAP_REGS + c)}, 1, ""));
  return o->made;
}

/* The pool runs chunks lo..hi-1 of fn. */
static void pool_call(em *e, LLVMValueRef fn, LLVMValueRef cap, LLVMValueRef lo, LLVMValueRef hi) {
  LLVMTypeRef ft = LLVMFunctionType(
      e->vd, (LLVMTypeRef[]){e->ptr, e->ptr, e->ptr, e->ptr, e->ptr, e->i64, e->i64}, 7, 0);
  LLVMValueRef run = LLVMBuildLoad2(e->b, e->ptr, e->pool, "run");
  LLVMBuildCall2(e->b, ft, run, (LLVMValueRef[]){e->pool, fn, e->bufs, e->dims, cap, lo, hi}, 7,
                 "");
}

/* Chunks lo..hi-1 of fn, here. */
static void direct_call(em *e, LLVMValueRef fn, LLVMValueRef cap, LLVMValueRef lo,
                        LLVMValueRef hi) {
  LLVMTypeRef ft =
      LLVMFunctionType(e->vd, (LLVMTypeRef[]){e->ptr, e->ptr, e->ptr, e->i64, e->i64}, 5, 0);
  LLVMBuildCall2(e->b, ft, fn, (LLVMValueRef[]){e->bufs, e->dims, cap, lo, hi}, 5, "");
}

static LLVMValueRef min64(em *e, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, a, b, ""), a, b, "");
}

/* Rows of axis 0 per chunk of an elementwise kernel of dims D: about
** KL_ELEM_CHUNK elements, at least one row. */
static LLVMValueRef rows_per_chunk(em *e, int R, const LLVMValueRef *D) {
  LLVMValueRef inner = ci64(e, 1);
  for (int d = 1; d < R; d++)
    inner = LLVMBuildMul(e->b, inner, D[d], "");
  LLVMValueRef one = ci64(e, 1);
  inner = LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, inner, one, ""), one, inner, "");
  LLVMValueRef rpc = LLVMBuildSDiv(e->b, ci64(e, KL_ELEM_CHUNK), inner, "");
  return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, rpc, one, ""), one, rpc, "");
}

/* Is elementwise kernel i (fast version) worth the pool? Static sizes
** decide now; dynamic ones at run time (emit_par_elem). */
static bool par_elem_ok(em *e, int i) {
  const kiln_node *v = node(e, i);
  if (v->type.rank == 0) return false;
  int64_t n = kl_type_static_size(&v->type);
  return n < 0 || n >= KL_PAR_MIN;
}

/* An elementwise kernel in chunks of whole rows of axis 0. */
static void emit_par_elem(em *e, int i) {
  const kiln_node *v = node(e, i);
  int R = v->type.rank;
  LLVMValueRef D[KILN_MAX_RANK], ost[KILN_MAX_RANK], lo, hi, cap;
  loop l[KILN_MAX_RANK];
  outl o;
  outline_begin(e, &o, &lo, &hi);
  prepare_operands(e, i);
  for (int d = 0; d < R; d++)
    D[d] = dim(e, i, d);
  LLVMValueRef rpc = rows_per_chunk(e, R, D);
  LLVMValueRef r0 = LLVMBuildMul(e->b, lo, rpc, "");
  LLVMValueRef r1 = min64(e, LLVMBuildMul(e->b, hi, rpc, ""), D[0]);
  strides(e, i, false, ost);
  LLVMValueRef it = loop_begin(e, &l[0], LLVMBuildSub(e->b, r1, r0, ""));
  e->idx[0] = LLVMBuildAdd(e->b, r0, it, "");
  for (int d = 1; d < R; d++)
    e->idx[d] = loop_begin(e, &l[d], D[d]);
  for (int d = 0; d < R - 1; d++) /* as open_loops: a short last axis keeps the others scalar */
    l[d].plain = e->narrow;
  memset(e->memo, 0, (size_t)e->g->n * sizeof *e->memo);
  store_home(e, i, compute(e, i, identity), flat_offset(e, R, ost));
  close_loops(e, l, R);
  LLVMValueRef fn = outline_end(e, &o, &cap);
  /* the step: as many chunks as rows of rpc fit in axis 0 */
  LLVMValueRef total = ci64(e, 1);
  for (int d = 0; d < R; d++)
    total = LLVMBuildMul(e->b, total, D[d] = dim(e, i, d), "");
  rpc = rows_per_chunk(e, R, D);
  LLVMValueRef nch = LLVMBuildSDiv(
      e->b, LLVMBuildSub(e->b, LLVMBuildAdd(e->b, D[0], rpc, ""), ci64(e, 1), ""), rpc, "");
  if (kl_type_static_size(&v->type) >= 0) {
    pool_call(e, fn, cap, ci64(e, 0), nch);
    return;
  }
  LLVMBasicBlockRef par = new_block(e, "par"), seq = new_block(e, "seq"),
                    done = new_block(e, "par.done");
  LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSGE, total, ci64(e, KL_PAR_MIN), ""), par, seq);
  LLVMPositionBuilderAtEnd(e->b, par);
  pool_call(e, fn, cap, ci64(e, 0), nch);
  LLVMBuildBr(e->b, done);
  LLVMPositionBuilderAtEnd(e->b, seq);
  direct_call(e, fn, cap, ci64(e, 0), nch);
  LLVMBuildBr(e->b, done);
  LLVMPositionBuilderAtEnd(e->b, done);
}

/* An elementwise kernel (or a materialized broadcast): out[i] = root(i). */
static void emit_elem_kernel(em *e, int i) {
  const kiln_node *v = node(e, i);
  int R = v->type.rank;
  LLVMValueRef D[KILN_MAX_RANK] = {0}, ost[KILN_MAX_RANK];
  loop l[KILN_MAX_RANK];
  prepare_operands(e, i);
  for (int d = 0; d < R; d++)
    D[d] = dim(e, i, d);
  strides(e, i, false, ost);
  open_loops(e, l, R, D);
  store_home(e, i, compute(e, i, identity), flat_offset(e, R, ost));
  close_loops(e, l, R);
}

static LLVMValueRef add_of(em *e, int dt, LLVMValueRef a, LLVMValueRef b) {
  if (kl_dtype_is_float((kiln_dtype)dt)) return LLVMBuildFAdd(e->b, a, b, "");
  return dt == KILN_BOOL ? LLVMBuildOr(e->b, a, b, "") : LLVMBuildAdd(e->b, a, b, "");
}

/* A float sum down to one value, in the blocked order of compiler/ops/eval.c
** (blocked_sum): outer axes in C order; along the last axis element k below
** cut = n - n % LANES goes to lane k % LANES, the rest to a tail sum; a
** row's blocked part longer than KL_SUM_CHUNK is added in chunks whose
** partial lanes start at +0.0 and are added to the running lanes in chunk
** order; then a fixed tree and lanes[0] + tail. The lanes are one
** <LANES x t> vector register: the elements are computed CHUNK at a time
** into a stack buffer (a plain loop LLVM vectorizes like any elementwise
** kernel) and added to the lanes one whole vector at a time. Lane j still
** adds its elements in increasing k, so the result is the reference's bit
** for bit; left to scalar lanes, LLVM's SLP vectorizer made 2-wide adds.
** The chunks of KL_SUM_CHUNK are what the thread pool shares out: in the
** fast version, when rows are that long, a chunk function computes each
** chunk's partial lanes into its slot of the workspace's partials area, all
** chunks in one pool job, and the step adds them to the lanes in chunk
** order. */
#define LANES KL_SUM_LANES
#define CHUNK (LANES * 16)

/* Adds elements k0..k0+kn-1 (kn a multiple of LANES) of the current row of
** src (its last axis; the outer indices are set) into the vector at acc,
** CHUNK at a time through buf. (Interleaving several chunks' add chains
** bought nothing: a row this long streams from L3 at the core's bandwidth,
** and streams 2^14 elements apart made 4K-aliasing stalls.) */
static void sum_range(em *e, int src, int R, int dt, LLVMValueRef buf, LLVMValueRef acc,
                      LLVMValueRef k0, LLVMValueRef kn) {
  LLVMTypeRef t = lty(e, dt), vt = LLVMVectorType(t, LANES);
  loop lc, lf, la;
  LLVMValueRef nc =
      LLVMBuildSDiv(e->b, LLVMBuildAdd(e->b, kn, ci64(e, CHUNK - 1), ""), ci64(e, CHUNK), "");
  LLVMValueRef c0 =
      LLVMBuildAdd(e->b, k0, LLVMBuildMul(e->b, loop_begin(e, &lc, nc), ci64(e, CHUNK), ""), "");
  LLVMValueRef cn =
      min64(e, LLVMBuildSub(e->b, LLVMBuildAdd(e->b, k0, kn, ""), c0, ""), ci64(e, CHUNK));
  LLVMValueRef k = loop_begin(e, &lf, cn);
  e->idx[R - 1] = LLVMBuildAdd(e->b, c0, k, "");
  memset(e->memo, 0, (size_t)e->g->n * sizeof *e->memo);
  LLVMValueRef x = eval(e, src, identity);
  LLVMBuildStore(e->b, x, LLVMBuildGEP2(e->b, t, buf, &k, 1, ""));
  loop_end(e, &lf);
  LLVMValueRef q = loop_begin(e, &la, LLVMBuildSDiv(e->b, cn, ci64(e, LANES), ""));
  LLVMValueRef at = LLVMBuildMul(e->b, q, ci64(e, LANES), "");
  LLVMValueRef xv = LLVMBuildLoad2(e->b, vt, LLVMBuildGEP2(e->b, t, buf, &at, 1, ""), "");
  LLVMSetAlignment(xv, 64);
  LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, vt, acc, ""), xv, ""), acc);
  loop_end(e, &la);
  loop_end(e, &lc);
}

static LLVMValueRef sum_buf(em *e, LLVMTypeRef t) {
  LLVMValueRef buf = alloca_of(e, LLVMArrayType2(t, CHUNK));
  LLVMSetAlignment(buf, 64);
  return buf;
}

static LLVMValueRef n_sum_chunks(em *e, LLVMValueRef cut) {
  return LLVMBuildSDiv(e->b, LLVMBuildAdd(e->b, cut, ci64(e, KL_SUM_CHUNK - 1), ""),
                       ci64(e, KL_SUM_CHUNK), "");
}

/* The chunked part of a blocked sum (every row's cut > KL_SUM_CHUNK) on
** the pool: chunk g is chunk g % nch of row g / nch; its partial lanes go
** to slot g of the partials area the cap block points to. */
static void emit_sum_par(em *e, int src, int R, const LLVMValueRef *D, LLVMValueRef cut,
                         LLVMValueRef lanes) {
  int dt = node(e, src)->type.dtype;
  LLVMTypeRef t = lty(e, dt), vt = LLVMVectorType(t, LANES);
  LLVMValueRef lo, hi, cap, Dk[KILN_MAX_RANK];
  outl o;
  loop lg, lq;
  outline_begin(e, &o, &lo, &hi);
  prepare(e, src);
  for (int d = 0; d < R; d++)
    Dk[d] = dim(e, src, d);
  LLVMValueRef cutk =
      LLVMBuildMul(e->b, LLVMBuildSDiv(e->b, Dk[R - 1], ci64(e, LANES), ""), ci64(e, LANES), "");
  LLVMValueRef nchk = n_sum_chunks(e, cutk), bufk = sum_buf(e, t), part = alloca_of(e, vt);
  LLVMValueRef parts = LLVMBuildLoad2(e->b, e->ptr, e->cap, "partials");
  LLVMValueRef gg = LLVMBuildAdd(e->b, lo, loop_begin(e, &lg, LLVMBuildSub(e->b, hi, lo, "")), "");
  LLVMValueRef row = LLVMBuildUDiv(e->b, gg, nchk, "");
  LLVMValueRef k0 =
      LLVMBuildMul(e->b, LLVMBuildURem(e->b, gg, nchk, ""), ci64(e, KL_SUM_CHUNK), "");
  for (int d = R - 2; d >= 0; d--) {
    e->idx[d] = LLVMBuildURem(e->b, row, Dk[d], "");
    row = LLVMBuildUDiv(e->b, row, Dk[d], "");
  }
  LLVMBuildStore(e->b, LLVMConstNull(vt), part);
  sum_range(e, src, R, dt, bufk, part, k0,
            min64(e, LLVMBuildSub(e->b, cutk, k0, ""), ci64(e, KL_SUM_CHUNK)));
  LLVMValueRef at = LLVMBuildMul(e->b, gg, ci64(e, LANES), "");
  LLVMSetAlignment(LLVMBuildStore(e->b, LLVMBuildLoad2(e->b, vt, part, ""),
                                  LLVMBuildGEP2(e->b, t, parts, &at, 1, "")),
                   64);
  loop_end(e, &lg);
  LLVMValueRef fn = outline_end(e, &o, &cap);
  /* the step: every chunk in one pool job (so each thread keeps the part
  ** of the data it takes in the next job, as W2's update), the partials in
  ** the workspace's partials area (bufs[n_bufs], sized by kl_plan_run for
  ** this sum), then added to the lanes in chunk order */
  LLVMValueRef partials = LLVMBuildLoad2(
      e->b, e->ptr,
      LLVMBuildGEP2(e->b, e->ptr, e->bufs, (LLVMValueRef[]){ci64(e, e->g->plan->n_bufs)}, 1, ""),
      "partials");
  LLVMBuildStore(e->b, partials, cap);
  LLVMValueRef rows = ci64(e, 1);
  for (int d = 0; d < R - 1; d++)
    rows = LLVMBuildMul(e->b, rows, D[d], "");
  LLVMValueRef total = LLVMBuildMul(e->b, rows, n_sum_chunks(e, cut), "");
  pool_call(e, fn, cap, ci64(e, 0), total);
  LLVMValueRef q = LLVMBuildMul(e->b, loop_begin(e, &lq, total), ci64(e, LANES), "");
  LLVMValueRef pv = LLVMBuildLoad2(e->b, vt, LLVMBuildGEP2(e->b, t, partials, &q, 1, ""), "");
  LLVMSetAlignment(pv, 64);
  LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, vt, lanes, ""), pv, ""), lanes);
  loop_end(e, &lq);
}

static void emit_blocked_sum(em *e, int i, int src, int R, const LLVMValueRef *D) {
  int dt = node(e, i)->type.dtype;
  LLVMTypeRef t = lty(e, dt), vt = LLVMVectorType(t, LANES);
  LLVMValueRef lanes = alloca_of(e, vt), tail = alloca_of(e, t);
  LLVMBuildStore(e->b, LLVMConstNull(vt), lanes);
  LLVMBuildStore(e->b, zero_of(e, dt), tail);
  int outer = R > 0 ? R - 1 : 0;
  LLVMValueRef nl = R > 0 ? D[R - 1] : ci64(e, 1);
  LLVMValueRef cut =
      LLVMBuildMul(e->b, LLVMBuildSDiv(e->b, nl, ci64(e, LANES), ""), ci64(e, LANES), "");
  loop l[KILN_MAX_RANK], lk, lt;
  /* a static last axis shorter than LANES has only a tail */
  bool blocks = R > 0 && !(LLVMIsAConstantInt(nl) && LLVMConstIntGetSExtValue(nl) < LANES);
  /* chunked: rows whose blocked part is longer than KL_SUM_CHUNK */
  LLVMValueRef big = LLVMBuildICmp(e->b, LLVMIntSGT, cut, ci64(e, KL_SUM_CHUNK), "");
  bool is_const = LLVMIsAConstantInt(big) != NULL;
  bool never = !blocks || (is_const && LLVMConstIntGetZExtValue(big) == 0);
  bool always = blocks && is_const && LLVMConstIntGetZExtValue(big) == 1;
  LLVMBasicBlockRef seq = NULL, done = NULL;
  if (e->fast && !never) {
    LLVMBasicBlockRef par = NULL;
    if (!always) {
      par = new_block(e, "par");
      seq = new_block(e, "seq");
      done = new_block(e, "par.done");
      LLVMBuildCondBr(e->b, big, par, seq);
      LLVMPositionBuilderAtEnd(e->b, par);
    }
    emit_sum_par(e, src, R, D, cut, lanes);
    /* the tails of the rows, in C order */
    open_loops(e, l, outer, D);
    LLVMValueRef k = loop_begin(e, &lt, LLVMBuildSub(e->b, nl, cut, ""));
    e->idx[R - 1] = LLVMBuildAdd(e->b, cut, k, "");
    memset(e->memo, 0, (size_t)e->g->n * sizeof *e->memo);
    LLVMValueRef x = eval(e, src, identity);
    LLVMBuildStore(e->b, add_of(e, dt, LLVMBuildLoad2(e->b, t, tail, ""), x), tail);
    loop_end(e, &lt);
    close_loops(e, l, outer);
    if (!always) {
      LLVMBuildBr(e->b, done);
      LLVMPositionBuilderAtEnd(e->b, seq);
    }
  }
  if (!(e->fast && always)) {
    LLVMValueRef buf = blocks ? sum_buf(e, t) : NULL, part = blocks ? alloca_of(e, vt) : NULL;
    open_loops(e, l, outer, D);
    if (blocks) {
      /* chunk c of the row: from lanes when unchunked, else from +0.0 */
      LLVMValueRef k0 =
          LLVMBuildMul(e->b, loop_begin(e, &lk, n_sum_chunks(e, cut)), ci64(e, KL_SUM_CHUNK), "");
      LLVMValueRef kn = min64(e, LLVMBuildSub(e->b, cut, k0, ""), ci64(e, KL_SUM_CHUNK));
      LLVMBuildStore(
          e->b,
          LLVMBuildSelect(e->b, big, LLVMConstNull(vt), LLVMBuildLoad2(e->b, vt, lanes, ""), ""),
          part);
      sum_range(e, src, R, dt, buf, part, k0, kn);
      LLVMValueRef pv = LLVMBuildLoad2(e->b, vt, part, "");
      LLVMBuildStore(
          e->b,
          LLVMBuildSelect(e->b, big,
                          LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, vt, lanes, ""), pv, ""), pv, ""),
          lanes);
      loop_end(e, &lk);
    }
    if (R > 0) { /* the tail: k from cut to nl */
      LLVMValueRef k = loop_begin(e, &lt, LLVMBuildSub(e->b, nl, cut, ""));
      e->idx[R - 1] = LLVMBuildAdd(e->b, cut, k, "");
      memset(e->memo, 0, (size_t)e->g->n * sizeof *e->memo);
    }
    LLVMValueRef x = eval(e, src, identity);
    LLVMBuildStore(e->b, add_of(e, dt, LLVMBuildLoad2(e->b, t, tail, ""), x), tail);
    if (R > 0) loop_end(e, &lt);
    close_loops(e, l, outer);
  }
  if (done) {
    LLVMBuildBr(e->b, done);
    LLVMPositionBuilderAtEnd(e->b, done);
  }
  LLVMValueRef all = LLVMBuildLoad2(e->b, vt, lanes, ""), v[LANES];
  for (int j = 0; j < LANES; j++)
    v[j] = LLVMBuildExtractElement(e->b, all, ci64(e, j), "");
  for (int w = LANES / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; j++)
      v[j] = add_of(e, dt, v[j], v[j + w]);
  e->reg[i] = add_of(e, dt, v[0], LLVMBuildLoad2(e->b, t, tail, ""));
  if (e->g->home[i] >= 0) store_home(e, i, e->reg[i], ci64(e, 0));
}

/* The value a reduction starts from: 0 for sum, 1 for prod; for max and
** min (and argmax/argmin) the lowest (highest) value of the dtype, -inf
** (+inf) for floats. maximum(lowest, x) is x bit for bit for every x,
** NaN and -inf included, so starting there is starting from the first
** element, as the reference evaluator does; an empty max never runs (the
** shape program rejects it). */
static LLVMValueRef reduce_start(em *e, int op, int dt) {
  static const int64_t lo[] = {0, INT8_MIN, INT16_MIN, INT32_MIN, INT64_MIN, 0};
  static const int64_t hi[] = {1, INT8_MAX, INT16_MAX, INT32_MAX, INT64_MAX, UINT8_MAX};
  bool fl = kl_dtype_is_float((kiln_dtype)dt);
  LLVMTypeRef t = lty(e, dt);
  switch (op) {
  case KL_OP_PROD: return fl ? LLVMConstReal(t, 1.0) : LLVMConstInt(t, 1, 0);
  case KL_OP_RMAX:
  case KL_OP_ARGMAX:
    return fl ? LLVMConstReal(t, -HUGE_VAL) : LLVMConstInt(t, (unsigned long long)lo[dt], 1);
  case KL_OP_RMIN:
  case KL_OP_ARGMIN:
    return fl ? LLVMConstReal(t, HUGE_VAL) : LLVMConstInt(t, (unsigned long long)hi[dt], 1);
  default: return zero_of(e, dt);
  }
}

/* acc combined with x: add for sums, and for prod, max and min exactly the
** elementwise mul, maximum and minimum (NaN propagates, the first of equal
** values stays: acc is the first operand). */
static LLVMValueRef reduce_combine(em *e, int op, int dt, LLVMValueRef acc, LLVMValueRef x) {
  if (op != KL_OP_PROD && op != KL_OP_RMAX && op != KL_OP_RMIN) return add_of(e, dt, acc, x);
  kiln_node elem = {.op = (uint16_t)(op == KL_OP_PROD   ? KL_OP_MUL
                                     : op == KL_OP_RMAX ? KL_OP_MAX
                                                        : KL_OP_MIN)};
  elem.type.dtype = (uint8_t)dt;
  LLVMValueRef xs[3] = {acc, x, NULL};
  return emit_scalar(e, &elem, dt, xs);
}

/* argmax/argmin: a loop nest over the source's kept axes (outside, in
** order) with the reduced axes inside, so each output element's running
** extreme, its index and the position within the reduced axes live in
** registers. x replaces the extreme when it is strictly greater (smaller),
** or is the first NaN: ties keep the first index, as numpy. The index is
** the row-major position within the reduced axes (one axis, or all axes:
** numpy's flattened index). */
static void emit_arg_kernel(em *e, int i) {
  const kiln_node *v = node(e, i);
  int src = (int)v->in[0]->id, R = node(e, src)->type.rank, r = v->type.rank;
  int xdt = node(e, src)->type.dtype;
  bool is_max = v->op == KL_OP_ARGMAX, fl = kl_dtype_is_float((kiln_dtype)xdt);
  LLVMTypeRef xt = lty(e, xdt);
  LLVMValueRef D[KILN_MAX_RANK], ost[KILN_MAX_RANK];
  loop l[KILN_MAX_RANK];
  prepare(e, src);
  for (int d = 0; d < R; d++)
    D[d] = dim(e, src, d);
  strides(e, i, false, ost);
  LLVMValueRef acc = alloca_of(e, xt), best = alloca_of(e, e->i64), pos = alloca_of(e, e->i64);
  int nl = 0, n_kept;
  for (int d = 0; d < R; d++)
    if (!(v->p.axes >> d & 1u)) e->idx[d] = loop_begin(e, &l[nl++], D[d]);
  n_kept = nl;
  LLVMBuildStore(e->b, reduce_start(e, v->op, xdt), acc);
  LLVMBuildStore(e->b, ci64(e, 0), best);
  LLVMBuildStore(e->b, ci64(e, 0), pos);
  for (int d = 0; d < R; d++)
    if (v->p.axes >> d & 1u) e->idx[d] = loop_begin(e, &l[nl++], D[d]);
  memset(e->memo, 0, (size_t)e->g->n * sizeof *e->memo);
  LLVMValueRef x = eval(e, src, identity);
  LLVMValueRef a = LLVMBuildLoad2(e->b, xt, acc, ""), p = LLVMBuildLoad2(e->b, e->i64, pos, "");
  LLVMValueRef take;
  if (fl) {
    take = LLVMBuildFCmp(e->b, is_max ? LLVMRealOGT : LLVMRealOLT, x, a, "");
    LLVMValueRef first_nan = LLVMBuildAnd(e->b, LLVMBuildFCmp(e->b, LLVMRealUNO, x, x, ""),
                                          LLVMBuildFCmp(e->b, LLVMRealORD, a, a, ""), "");
    take = LLVMBuildOr(e->b, take, first_nan, "");
  } else {
    bool u = is_unsigned(xdt);
    take = LLVMBuildICmp(
        e->b, is_max ? (u ? LLVMIntUGT : LLVMIntSGT) : (u ? LLVMIntULT : LLVMIntSLT), x, a, "");
  }
  LLVMBuildStore(e->b, LLVMBuildSelect(e->b, take, x, a, ""), acc);
  LLVMBuildStore(e->b, LLVMBuildSelect(e->b, take, p, LLVMBuildLoad2(e->b, e->i64, best, ""), ""),
                 best);
  LLVMBuildStore(e->b, LLVMBuildNUWAdd(e->b, p, ci64(e, 1), ""), pos);
  memset(e->memo, 0, (size_t)e->g->n * sizeof *e->memo);
  while (nl > n_kept)
    loop_end(e, &l[--nl]);
  if (r > 0) {
    LLVMValueRef off = ci64(e, 0);
    for (int d = 0, o = 0; d < R; d++) {
      bool red = v->p.axes >> d & 1u;
      if (!red) off = LLVMBuildAdd(e->b, off, LLVMBuildMul(e->b, e->idx[d], ost[o], ""), "");
      if (!red || v->p.keepdims) o++;
    }
    store_home(e, i, LLVMBuildLoad2(e->b, e->i64, best, ""), off);
  }
  while (nl > 0)
    loop_end(e, &l[--nl]);
  if (r == 0) {
    e->reg[i] = LLVMBuildLoad2(e->b, e->i64, best, "");
    if (e->g->home[i] >= 0) store_home(e, i, e->reg[i], ci64(e, 0));
  }
}

/* Reductions and sum_like: loop over the source in C order combining each
** element into the output at dst offsets (0 along reduced axes), after
** setting every output element to the op's start value. A rank-0 result is
** accumulated in a register. argmax/argmin have their own loop nest. */
static void emit_reduce_kernel(em *e, int i) {
  const kiln_node *v = node(e, i);
  if (v->op == KL_OP_ARGMAX || v->op == KL_OP_ARGMIN) {
    emit_arg_kernel(e, i);
    return;
  }
  int src = (int)v->in[0]->id, R = node(e, src)->type.rank, r = v->type.rank, dt = v->type.dtype;
  int op = v->op;
  LLVMValueRef D[KILN_MAX_RANK], dst[KILN_MAX_RANK], ost[KILN_MAX_RANK];
  loop l[KILN_MAX_RANK];
  prepare(e, src);
  for (int d = 0; d < R; d++)
    D[d] = dim(e, src, d);
  /* a float sum over every axis (with or without keepdims) is blocked */
  if (kl_is_blocked_sum(v)) {
    emit_blocked_sum(e, i, src, R, D);
    return;
  }
  if (r == 0) {
    LLVMValueRef acc = alloca_of(e, lty(e, dt));
    LLVMBuildStore(e->b, reduce_start(e, op, dt), acc);
    open_loops(e, l, R, D);
    LLVMValueRef x = eval(e, src, identity);
    LLVMBuildStore(e->b, reduce_combine(e, op, dt, LLVMBuildLoad2(e->b, lty(e, dt), acc, ""), x),
                   acc);
    close_loops(e, l, R);
    e->reg[i] = LLVMBuildLoad2(e->b, lty(e, dt), acc, "");
    if (e->g->home[i] >= 0) store_home(e, i, e->reg[i], ci64(e, 0));
    return;
  }
  if (op != KL_OP_SUM_LIKE) { /* with keepdims the output has every axis, reduced ones of size 1 */
    strides(e, i, false, ost);
    for (int d = 0, o = 0; d < R; d++) {
      bool red = v->p.axes >> d & 1u;
      dst[d] = red ? ci64(e, 0) : ost[o];
      if (!red || v->p.keepdims) o++;
    }
  } else { /* sum_like: 0 where the target's size is 1, and on leading axes */
    strides(e, i, true, ost);
    for (int d = 0; d < R; d++)
      dst[d] = d - (R - r) >= 0 ? ost[d - (R - r)] : ci64(e, 0);
  }
  LLVMValueRef od[KILN_MAX_RANK] = {0}, cst[KILN_MAX_RANK];
  for (int d = 0; d < r; d++)
    od[d] = dim(e, i, d);
  strides(e, i, false, cst);
  open_loops(e, l, r, od);
  store_home(e, i, reduce_start(e, op, dt), flat_offset(e, r, cst));
  close_loops(e, l, r);
  open_loops(e, l, R, D);
  LLVMValueRef x = eval(e, src, identity);
  LLVMValueRef p = elem_ptr(e, e->g->home[i], dt, flat_offset(e, R, dst));
  LLVMBuildStore(e->b, reduce_combine(e, op, dt, LLVMBuildLoad2(e->b, lty(e, dt), p, ""), x), p);
  close_loops(e, l, R);
}

/* ------------------------------------------------------------------- dot */
/*
** A product C = A . B (per batch element of stacks) where A is viewed as
** (m, k) and B as (k, n) through strides, so the transposed flags ta/tb only
** change strides. Every output element accumulates a[i, p] * b[p, j] for
** p = 0..k-1 in increasing order starting from 0 -- the reference's order
** (compiler/ops/eval.c) -- with a separate fmul and fadd (no contraction).
**
** Floats with a matrix B use a register-blocked kernel that vectorizes
** across output columns j, never across p, so each vector lane performs
** exactly the reference's sequence for its own element:
**
**   for each block of DOT_R rows i0..i0+R-1, and each block of columns
**   j0..j0+V*W-1 (W lanes per vector, V vectors):
**     acc[r][v] = 0
**     for p = 0..k-1:  bv[v] = B[p, j0+v*W ..+W]        (a load; from a packed copy for tb)
**                      acc[r][v] = acc[r][v] + splat(A[i0+r, p]) * bv[v]
**     C[i0+r, j0+v*W ..+W] = acc[r][v]
**
** Column tails run with V = 1 and a masked last vector, row tails with R = 1.
** The R*V accumulators stay in registers over the whole p loop. Integers
** and matrix.vector products use the plain triple loop.
*/
#define DOT_R 4 /* rows per register block */
#define DOT_V 2 /* vectors per register block */

typedef struct dotk {
  int dt, W;
  LLVMTypeRef t, vt;
  LLVMValueRef a, b, c; /* base pointers */
  LLVMValueRef k, n, as_i, as_p, bs_p, bs_j;
  LLVMValueRef ldc;   /* C's row stride (n, or the whole C's n for a tb panel) */
  LLVMValueRef accum; /* i1: continue from the sums stored in C, else start at 0 */
} dotk;

static LLVMValueRef splat(em *e, LLVMTypeRef vt, int W, LLVMValueRef x) {
  LLVMValueRef v =
      LLVMBuildInsertElement(e->b, LLVMGetUndef(vt), x, LLVMConstInt(e->i32, 0, 0), "");
  LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(e->i32, (unsigned)W));
  return LLVMBuildShuffleVector(e->b, v, LLVMGetUndef(vt), zeros, "");
}

/* <W x i1>: lane l < rem */
static LLVMValueRef lane_mask(em *e, int W, LLVMValueRef rem) {
  LLVMValueRef lanes[64];
  for (int l = 0; l < W; l++)
    lanes[l] = ci64(e, l);
  LLVMValueRef iota = LLVMConstVector(lanes, (unsigned)W);
  return LLVMBuildICmp(e->b, LLVMIntSLT, iota,
                       splat(e, LLVMVectorType(e->i64, (unsigned)W), W, rem), "");
}

/* W elements of B from row p, columns j..j+W-1 (only lanes in mask if any),
** where they are contiguous (B itself, or a tb panel). */
static LLVMValueRef load_bvec(em *e, const dotk *d, LLVMValueRef p, LLVMValueRef j,
                              LLVMValueRef mask) {
  unsigned al = (unsigned)kiln_dtype_size((kiln_dtype)d->dt);
  LLVMValueRef off = LLVMBuildAdd(e->b, LLVMBuildMul(e->b, p, d->bs_p, ""), j, "");
  LLVMValueRef ptr = LLVMBuildGEP2(e->b, d->t, d->b, &off, 1, "");
  if (!mask) {
    LLVMValueRef x = LLVMBuildLoad2(e->b, d->vt, ptr, "");
    LLVMSetAlignment(x, al);
    return x;
  }
  LLVMTypeRef tys[2] = {d->vt, e->ptr};
  return intrinsic(e, "llvm.masked.load", tys, 2,
                   (LLVMValueRef[]){ptr, LLVMConstInt(e->i32, al, 0), mask, LLVMConstNull(d->vt)},
                   4);
}

/* One register block: rows i0..i0+R-1, V vectors of columns from j0;
** mask[v] (NULL: all lanes) limits vector v's loads of C and B and its
** stores. */
static void dot_block(em *e, const dotk *d, int R, int V, LLVMValueRef i0, LLVMValueRef j0,
                      LLVMValueRef const *mask) {
  unsigned al = (unsigned)kiln_dtype_size((kiln_dtype)d->dt);
  LLVMValueRef acc[DOT_R][DOT_V], cptr[DOT_R][DOT_V];
  LLVMTypeRef tys[2] = {d->vt, e->ptr};
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) {
      LLVMValueRef o =
          LLVMBuildAdd(e->b, LLVMBuildMul(e->b, LLVMBuildAdd(e->b, i0, ci64(e, r), ""), d->ldc, ""),
                       LLVMBuildAdd(e->b, j0, ci64(e, (int64_t)v * d->W), ""), "");
      cptr[r][v] = LLVMBuildGEP2(e->b, d->t, d->c, &o, 1, "");
      acc[r][v] = alloca_of(e, d->vt);
      /* a later chunk of p (tb) continues from the stored sums, exactly */
      LLVMValueRef zero = LLVMConstNull(d->vt), prev;
      if (!mask[v]) {
        prev = LLVMBuildLoad2(e->b, d->vt, cptr[r][v], "");
        LLVMSetAlignment(prev, al);
      } else {
        prev =
            intrinsic(e, "llvm.masked.load", tys, 2,
                      (LLVMValueRef[]){cptr[r][v], LLVMConstInt(e->i32, al, 0), mask[v], zero}, 4);
      }
      LLVMBuildStore(e->b, LLVMBuildSelect(e->b, d->accum, prev, zero, ""), acc[r][v]);
    }
  loop lp;
  LLVMValueRef p = loop_begin(e, &lp, d->k), pa = p;
  LLVMValueRef bv[DOT_V];
  for (int v = 0; v < V; v++)
    bv[v] = load_bvec(e, d, p, LLVMBuildAdd(e->b, j0, ci64(e, (int64_t)v * d->W), ""), mask[v]);
  for (int r = 0; r < R; r++) {
    LLVMValueRef oa =
        LLVMBuildAdd(e->b, LLVMBuildMul(e->b, LLVMBuildAdd(e->b, i0, ci64(e, r), ""), d->as_i, ""),
                     LLVMBuildMul(e->b, pa, d->as_p, ""), "");
    LLVMValueRef x = LLVMBuildLoad2(e->b, d->t, LLVMBuildGEP2(e->b, d->t, d->a, &oa, 1, ""), "");
    LLVMValueRef xs = splat(e, d->vt, d->W, x);
    for (int v = 0; v < V; v++) {
      LLVMValueRef cur = LLVMBuildLoad2(e->b, d->vt, acc[r][v], "");
      LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, cur, LLVMBuildFMul(e->b, xs, bv[v], ""), ""),
                     acc[r][v]);
    }
  }
  loop_end(e, &lp);
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) {
      LLVMValueRef val = LLVMBuildLoad2(e->b, d->vt, acc[r][v], "");
      if (!mask[v])
        LLVMSetAlignment(LLVMBuildStore(e->b, val, cptr[r][v]), al);
      else
        intrinsic(e, "llvm.masked.store", tys, 2,
                  (LLVMValueRef[]){val, cptr[r][v], LLVMConstInt(e->i32, al, 0), mask[v]}, 4);
    }
}

static LLVMValueRef const NOMASK[DOT_V];

/* All columns of the rows i0..i0+R-1. */
static void dot_rows(em *e, const dotk *d, int R, LLVMValueRef i0) {
  LLVMValueRef wide = ci64(e, (int64_t)DOT_V * d->W), w = ci64(e, d->W);
  loop lj, lc;
  LLVMValueRef nbig = LLVMBuildUDiv(e->b, d->n, wide, "");
  LLVMValueRef jb = loop_begin(e, &lj, nbig);
  dot_block(e, d, R, DOT_V, i0, LLVMBuildMul(e->b, jb, wide, ""), NOMASK);
  loop_end(e, &lj);
  LLVMValueRef done = LLVMBuildMul(e->b, nbig, wide, "");
  LLVMValueRef nvec = LLVMBuildUDiv(e->b, LLVMBuildSub(e->b, d->n, done, ""), w, "");
  LLVMValueRef jc = loop_begin(e, &lc, nvec);
  dot_block(e, d, R, 1, i0, LLVMBuildAdd(e->b, done, LLVMBuildMul(e->b, jc, w, ""), ""), NOMASK);
  loop_end(e, &lc);
  LLVMValueRef j0 = LLVMBuildAdd(e->b, done, LLVMBuildMul(e->b, nvec, w, ""), "");
  LLVMValueRef rem = LLVMBuildSub(e->b, d->n, j0, "");
  LLVMBasicBlockRef tail = LLVMAppendBasicBlockInContext(e->c, e->fn, "dot.tail");
  LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(e->c, e->fn, "dot.after");
  LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSGT, rem, ci64(e, 0), ""), tail, after);
  LLVMPositionBuilderAtEnd(e->b, tail);
  LLVMValueRef mk[1] = {lane_mask(e, d->W, rem)};
  dot_block(e, d, R, 1, i0, j0, mk);
  LLVMBuildBr(e->b, after);
  LLVMPositionBuilderAtEnd(e->b, after);
}

static void dot_blocked(em *e, dotk *d, LLVMValueRef m) {
  loop li, lt;
  LLVMValueRef nr = LLVMBuildUDiv(e->b, m, ci64(e, DOT_R), "");
  LLVMValueRef ib = loop_begin(e, &li, nr);
  dot_rows(e, d, DOT_R, LLVMBuildMul(e->b, ib, ci64(e, DOT_R), ""));
  loop_end(e, &li);
  LLVMValueRef done = LLVMBuildMul(e->b, nr, ci64(e, DOT_R), "");
  LLVMValueRef it = loop_begin(e, &lt, LLVMBuildSub(e->b, m, done, ""));
  dot_rows(e, d, 1, LLVMBuildAdd(e->b, done, it, ""));
  loop_end(e, &lt);
}

/* tb: B[p, j] = b[j, p] has its columns strided, so panels of DOT_V * W
** columns and up to DOT_KC rows are first copied into a stack buffer and
** the kernel runs over each panel (B = the panel, C = its columns of C). A
** chunk of p after the first continues from the sums stored in C: storing
** and reloading is exact, so each element still adds p = 0..k-1 in order. */
#define DOT_KC 256
static void dot_packed(em *e, const dotk *d, LLVMValueRef m, LLVMValueRef kernel) {
  int NP = DOT_V * d->W;
  LLVMValueRef np = ci64(e, NP), kcmax = ci64(e, DOT_KC);
  LLVMValueRef panel = LLVMBuildAlloca(e->ab, LLVMArrayType(e->i8, 64u * DOT_V * DOT_KC), "panel");
  LLVMSetAlignment(panel, 64);
  loop lj, lc, lpj, lpp;
  LLVMValueRef n_panels =
      LLVMBuildUDiv(e->b, LLVMBuildAdd(e->b, d->n, ci64(e, NP - 1), ""), np, "");
  LLVMValueRef jb = loop_begin(e, &lj, n_panels);
  LLVMValueRef j0 = LLVMBuildMul(e->b, jb, np, "");
  LLVMValueRef left = LLVMBuildSub(e->b, d->n, j0, "");
  LLVMValueRef ncols =
      LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSGE, left, np, ""), np, left, "");
  /* at least one chunk, so an empty inner dimension still writes zeros */
  LLVMValueRef n_chunks =
      LLVMBuildUDiv(e->b, LLVMBuildAdd(e->b, d->k, ci64(e, DOT_KC - 1), ""), kcmax, "");
  n_chunks = LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, n_chunks, ci64(e, 0), ""),
                             ci64(e, 1), n_chunks, "");
  LLVMValueRef pc = loop_begin(e, &lc, n_chunks);
  LLVMValueRef p0 = LLVMBuildMul(e->b, pc, kcmax, "");
  LLVMValueRef krest = LLVMBuildSub(e->b, d->k, p0, "");
  LLVMValueRef kc =
      LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, krest, kcmax, ""), krest, kcmax, "");
  /* panel[pp][jj] = B[p0 + pp, j0 + jj] = b[j0 + jj, p0 + pp] */
  LLVMValueRef jj = loop_begin(e, &lpj, ncols);
  LLVMValueRef pp = loop_begin(e, &lpp, kc);
  LLVMValueRef src =
      LLVMBuildAdd(e->b, LLVMBuildMul(e->b, LLVMBuildAdd(e->b, j0, jj, ""), d->bs_j, ""),
                   LLVMBuildMul(e->b, LLVMBuildAdd(e->b, p0, pp, ""), d->bs_p, ""), "");
  LLVMValueRef x = LLVMBuildLoad2(e->b, d->t, LLVMBuildGEP2(e->b, d->t, d->b, &src, 1, ""), "");
  LLVMValueRef dst = LLVMBuildAdd(e->b, LLVMBuildMul(e->b, pp, np, ""), jj, "");
  LLVMBuildStore(e->b, x, LLVMBuildGEP2(e->b, d->t, panel, &dst, 1, ""));
  loop_end(e, &lpp);
  loop_end(e, &lpj);
  LLVMValueRef a0 =
      LLVMBuildGEP2(e->b, d->t, d->a, (LLVMValueRef[]){LLVMBuildMul(e->b, p0, d->as_p, "")}, 1, "");
  LLVMValueRef c0 = LLVMBuildGEP2(e->b, d->t, d->c, &j0, 1, "");
  LLVMValueRef args[12] = {
      a0,      panel,   c0, m,          kc,   ncols,
      d->as_i, d->as_p, np, ci64(e, 1), d->n, LLVMBuildICmp(e->b, LLVMIntNE, pc, ci64(e, 0), "")};
  LLVMBuildCall2(e->b, LLVMGlobalGetValueType(kernel), kernel, args, 12, "");
  loop_end(e, &lc);
  loop_end(e, &lj);
}

/* The blocked kernel as an internal function of the module, one per dtype,
** called by every float dot of the step:
**   void kiln.dot.<dt>(ptr a, ptr b, ptr c, i64 m, k, n, as_i, as_p, bs_p, bs_j,
**                      i64 ldc, i1 accum)
** and for tb (B's columns strided) a second function that packs panels of B
** and calls the first on each:
**   void kiln.dot.<dt>.packed(ptr a, ptr b, ptr c, i64 m, k, n, as_i, as_p, bs_p, bs_j)
** Sizes and strides are arguments, so a step with five dots (a dense
** layer's forward and backward passes) compiles the ~600 lines of IR of the
** kernel once, not five times: LLVM's time grows with the IR (the packed
** function had its own copy of the kernel until the MLP's compile showed it
** as a sixth of the module). The pointers are noalias (c is never an
** operand's buffer; a and b are only read), as the step's own buffers are. */
static LLVMValueRef dot_function(em *e, int dt, bool packed) {
  int slot = (dt == KILN_FLOAT64) * 2 + packed;
  if (e->dot_fn[slot]) return e->dot_fn[slot];
  LLVMValueRef kernel = packed ? dot_function(e, dt, false) : NULL;
  LLVMTypeRef ps[12] = {e->ptr, e->ptr, e->ptr, e->i64, e->i64, e->i64,
                        e->i64, e->i64, e->i64, e->i64, e->i64, e->i1};
  char nm[40];
  snprintf(nm, sizeof nm, "kiln.dot.%s%s", kiln_dtype_name((kiln_dtype)dt),
           packed ? ".packed" : "");
  LLVMValueRef f = LLVMAddFunction(e->m, nm, LLVMFunctionType(e->vd, ps, packed ? 10 : 12, 0));
  LLVMSetLinkage(f, LLVMInternalLinkage);
  add_attr(e, f, LLVMAttributeFunctionIndex, "nounwind");
  add_attr(e, f, LLVMAttributeFunctionIndex, "noinline");
  for (unsigned i = 1; i <= 3; i++)
    add_attr(e, f, i, "noalias");
  /* emit its body with the emitter pointed at it, then come back */
  LLVMValueRef fn0 = e->fn;
  LLVMBasicBlockRef at0 = LLVMGetInsertBlock(e->b), aat0 = LLVMGetInsertBlock(e->ab);
  bool cold0 = e->cold;
  e->fn = f;
  e->cold = false;
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(e->c, f, "entry");
  LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(e->c, f, "start");
  LLVMPositionBuilderAtEnd(e->ab, entry);
  LLVMPositionBuilderAtEnd(e->b, start);
  LLVMTypeRef t = lty(e, dt);
  int W = 64 / (int)kiln_dtype_size((kiln_dtype)dt);
  dotk d = {.dt = dt,
            .W = W,
            .t = t,
            .vt = LLVMVectorType(t, (unsigned)W),
            .a = LLVMGetParam(f, 0),
            .b = LLVMGetParam(f, 1),
            .c = LLVMGetParam(f, 2),
            .k = LLVMGetParam(f, 4),
            .n = LLVMGetParam(f, 5),
            .as_i = LLVMGetParam(f, 6),
            .as_p = LLVMGetParam(f, 7),
            .bs_p = LLVMGetParam(f, 8),
            .bs_j = LLVMGetParam(f, 9),
            .ldc = packed ? NULL : LLVMGetParam(f, 10),
            .accum = packed ? NULL : LLVMGetParam(f, 11)};
  if (packed)
    dot_packed(e, &d, LLVMGetParam(f, 3), kernel);
  else
    dot_blocked(e, &d, LLVMGetParam(f, 3));
  LLVMBuildRetVoid(e->b);
  LLVMPositionBuilderAtEnd(e->ab, entry);
  LLVMBuildBr(e->ab, start);
  e->fn = fn0;
  e->cold = cold0;
  LLVMPositionBuilderAtEnd(e->b, at0);
  LLVMPositionBuilderAtEnd(e->ab, aat0);
  return e->dot_fn[slot] = f;
}

/* The plain triple loop with a register accumulator (integers, vectors). */
static void dot_plain(em *e, int dt, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c, LLVMValueRef m,
                      LLVMValueRef kk, LLVMValueRef n, LLVMValueRef as_i, LLVMValueRef as_p,
                      LLVMValueRef bs_p, LLVMValueRef bs_j, bool to_reg, LLVMValueRef *out_reg) {
  bool fl = kl_dtype_is_float((kiln_dtype)dt);
  LLVMTypeRef t = lty(e, dt);
  LLVMValueRef acc = alloca_of(e, t);
  loop li, lj, lp;
  LLVMValueRef ii = loop_begin(e, &li, m);
  LLVMValueRef jj = loop_begin(e, &lj, n);
  LLVMBuildStore(e->b, zero_of(e, dt), acc);
  LLVMValueRef pp = loop_begin(e, &lp, kk);
  LLVMValueRef oa =
      LLVMBuildAdd(e->b, LLVMBuildMul(e->b, ii, as_i, ""), LLVMBuildMul(e->b, pp, as_p, ""), "");
  LLVMValueRef ob =
      LLVMBuildAdd(e->b, LLVMBuildMul(e->b, pp, bs_p, ""), LLVMBuildMul(e->b, jj, bs_j, ""), "");
  LLVMValueRef x = LLVMBuildLoad2(e->b, t, LLVMBuildGEP2(e->b, t, a, &oa, 1, ""), "");
  LLVMValueRef y = LLVMBuildLoad2(e->b, t, LLVMBuildGEP2(e->b, t, b, &ob, 1, ""), "");
  LLVMValueRef cur = LLVMBuildLoad2(e->b, t, acc, "");
  LLVMValueRef s = fl ? LLVMBuildFAdd(e->b, cur, LLVMBuildFMul(e->b, x, y, ""), "")
                      : LLVMBuildAdd(e->b, cur, LLVMBuildMul(e->b, x, y, ""), "");
  LLVMBuildStore(e->b, s, acc);
  loop_end(e, &lp);
  if (!to_reg) {
    LLVMValueRef o = LLVMBuildAdd(e->b, LLVMBuildMul(e->b, ii, n, ""), jj, "");
    LLVMBuildStore(e->b, LLVMBuildLoad2(e->b, t, acc, ""), LLVMBuildGEP2(e->b, t, c, &o, 1, ""));
  }
  loop_end(e, &lj);
  loop_end(e, &li);
  if (to_reg) *out_reg = LLVMBuildLoad2(e->b, t, acc, "");
}

/* outer: C[i, j] = a[i] * b[j], the product alone. */
static void emit_outer(em *e, int i) {
  const kiln_node *v = node(e, i);
  int ia = (int)v->in[0]->id, ib = (int)v->in[1]->id, dt = v->type.dtype;
  LLVMValueRef m = dim(e, ia, 0), n = dim(e, ib, 0);
  loop li, lj;
  LLVMValueRef ii = loop_begin(e, &li, m);
  LLVMValueRef x = load_node(e, ia, ii);
  LLVMValueRef jj = loop_begin(e, &lj, n);
  LLVMValueRef y = load_node(e, ib, jj);
  LLVMValueRef s = kl_dtype_is_float((kiln_dtype)dt) ? LLVMBuildFMul(e->b, x, y, "")
                                                     : LLVMBuildMul(e->b, x, y, "");
  store_home(e, i, s, LLVMBuildAdd(e->b, LLVMBuildMul(e->b, ii, n, ""), jj, ""));
  loop_end(e, &lj);
  loop_end(e, &li);
}

static void emit_dot(em *e, int i) {
  const kiln_node *v = node(e, i);
  if (v->op == KL_OP_OUTER) {
    emit_outer(e, i);
    return;
  }
  int ia = (int)v->in[0]->id, ib = (int)v->in[1]->id;
  const kiln_node *a = node(e, ia), *b = node(e, ib);
  int ra = a->type.rank, rb = b->type.rank, dt = v->type.dtype;
  int oa = ra == 3, ob = rb == 3; /* first matrix axis of each operand */
  bool ta = v->p.ta, tb = v->p.tb, batched = oa || ob;
  LLVMValueRef one = ci64(e, 1), zero = ci64(e, 0);
  /* a as (m, k), b as (k, n); memory strides of each index */
  LLVMValueRef m = ra >= 2 ? dim(e, ia, oa + (ta ? 1 : 0)) : one;
  LLVMValueRef kk = ra >= 2 ? dim(e, ia, oa + (ta ? 0 : 1)) : dim(e, ia, 0);
  LLVMValueRef n = rb >= 2 ? dim(e, ib, ob + (tb ? 0 : 1)) : one;
  LLVMValueRef as_i = ra >= 2 ? (ta ? one : dim(e, ia, oa + 1)) : zero;
  LLVMValueRef as_p = ra >= 2 ? (ta ? dim(e, ia, oa + 1) : one) : one;
  LLVMValueRef bs_p = rb >= 2 ? (tb ? one : dim(e, ib, ob + 1)) : one;
  LLVMValueRef bs_j = rb >= 2 ? (tb ? dim(e, ib, ob + 1) : one) : zero;
  LLVMTypeRef t = lty(e, dt);
  LLVMValueRef pa = e->base[e->g->home[ia]], pb = e->base[e->g->home[ib]];
  LLVMValueRef pc = v->type.rank > 0 ? e->base[e->g->home[i]] : NULL;
  loop lb;
  LLVMValueRef bt = zero;
  if (batched) {
    /* a matrix operand (rank 2) is used for every element of the stack */
    bt = loop_begin(e, &lb, dim(e, i, 0));
    LLVMValueRef mk = LLVMBuildMul(e->b, m, kk, ""), mn = LLVMBuildMul(e->b, m, n, "");
    LLVMValueRef kn = LLVMBuildMul(e->b, kk, n, "");
    if (oa)
      pa = LLVMBuildGEP2(e->b, t, pa, (LLVMValueRef[]){LLVMBuildMul(e->b, bt, mk, "")}, 1, "");
    if (ob)
      pb = LLVMBuildGEP2(e->b, t, pb, (LLVMValueRef[]){LLVMBuildMul(e->b, bt, kn, "")}, 1, "");
    pc = LLVMBuildGEP2(e->b, t, pc, (LLVMValueRef[]){LLVMBuildMul(e->b, bt, mn, "")}, 1, "");
  }
  if (kl_dtype_is_float((kiln_dtype)dt) && rb >= 2) {
    LLVMValueRef f = dot_function(e, dt, tb);
    LLVMValueRef args[12] = {pa,   pb,   pc,   m,    kk, n,
                             as_i, as_p, bs_p, bs_j, n,  LLVMConstInt(e->i1, 0, 0)};
    LLVMBuildCall2(e->b, LLVMGlobalGetValueType(f), f, args, tb ? 10 : 12, "");
  } else {
    LLVMValueRef r = NULL;
    dot_plain(e, dt, pa, pb, pc, m, kk, n, as_i, as_p, bs_p, bs_j, v->type.rank == 0, &r);
    if (r) {
      e->reg[i] = r;
      if (e->g->home[i] >= 0) store_home(e, i, e->reg[i], ci64(e, 0));
    }
  }
  if (batched) loop_end(e, &lb);
}

/* A rank-0 node in straight-line code: its value stays in a register. */
static void emit_scalar_node(em *e, int i) {
  const kiln_node *v = node(e, i);
  LLVMValueRef val;
  if (v->op == KL_OP_COUNT) {
    int src = (int)v->in[0]->id;
    LLVMValueRef n = ci64(e, 1);
    for (int d = 0; d < node(e, src)->type.rank; d++)
      if (v->p.axes >> d & 1u) n = LLVMBuildMul(e->b, n, dim(e, src, d), "");
    val = emit_cast(e, n, KILN_INT64, v->type.dtype);
  } else {
    kl_opkind kd = kl_ops[v->op].kind;
    if (kd == KL_SHUFFLE || kd == KL_RESHAPE) prepare_operands(e, i); /* may load a (1, 1) */
    val = compute(e, i, identity);
  }
  e->reg[i] = val;
  if (e->g->home[i] >= 0) store_home(e, i, val, ci64(e, 0));
}

/* dst buffer <- node j's value, element by element. */
static void emit_copy(em *e, int j, int dst) {
  const kiln_node *v = node(e, j);
  int R = v->type.rank;
  LLVMValueRef D[KILN_MAX_RANK] = {0}, ost[KILN_MAX_RANK];
  loop l[KILN_MAX_RANK];
  prepare(e, j);
  for (int d = 0; d < R; d++)
    D[d] = dim(e, j, d);
  strides(e, j, false, ost);
  open_loops(e, l, R, D);
  LLVMValueRef x = eval(e, j, identity);
  LLVMBuildStore(e->b, x, elem_ptr(e, dst, v->type.dtype, flat_offset(e, R, ost)));
  close_loops(e, l, R);
}

/* Emits kernel i, in the general step, twice when it reads dynamic
** dimensions: a version with plain contiguous strides, taken when no dynamic
** size it reads is 1 (the common case, which LLVM vectorizes), and the
** general version with broadcast strides chosen at run time. Both compute
** the same values. The fast step has the first version only: it runs only
** when no dynamic size of the call is 1 (runtime/call.c). */
typedef enum kkind { K_ELEM, K_REDUCE, K_COPY } kkind;

static void emit_kernel(em *e, kkind kind, int i, int dst) {
  e->kcond = NULL;
  e->collect = true;
  if (kind == K_ELEM)
    prepare_operands(e, i);
  else if (kind == K_REDUCE)
    prepare(e, (int)node(e, i)->in[0]->id);
  else
    prepare(e, i);
  e->collect = false;
  LLVMValueRef cond = e->general ? e->kcond : NULL; /* (unused conditions are dead code) */
  /* A short static last axis (fewer than 16 elements, as a softmax over 10
  ** classes): LLVM unrolls that loop fully (and the SLP vectorizer may pack
  ** it), but vectorizing the outer loops across rows made interleaved
  ** loads and shuffles: more code, slower (MLP: compile 204 -> 150 ms,
  ** step 28.0 -> 27.2 us). Those outer loops stay scalar. */
  const kiln_node *sp = kind == K_REDUCE ? node(e, (int)node(e, i)->in[0]->id) : node(e, i);
  bool narrow = sp->type.rank > 1 && sp->type.dims[sp->type.rank - 1] != KILN_DYN &&
                sp->type.dims[sp->type.rank - 1] < 16;
  for (int version = 0; version < (cond ? 2 : 1); version++) {
    e->fast = version == 0;
    e->cold = version == 1;
    e->narrow = narrow;
    LLVMBasicBlockRef here = NULL, join = NULL, other = NULL;
    if (cond && version == 0) {
      here = new_block(e, "fast");
      other = new_block(e, "general");
      join = new_block(e, "joined");
      LLVMBuildCondBr(e->b, cond, here, other);
      LLVMPositionBuilderAtEnd(e->b, here);
      e->join = join;
      e->other = other;
    }
    if (kind == K_ELEM && e->fast && par_elem_ok(e, i))
      emit_par_elem(e, i);
    else if (kind == K_ELEM)
      emit_elem_kernel(e, i);
    else if (kind == K_REDUCE)
      emit_reduce_kernel(e, i);
    else
      emit_copy(e, i, dst);
    if (!cond) break;
    if (version == 0) {
      e->fast_reg = e->reg[i];
      e->fast_end = LLVMGetInsertBlock(e->b);
      e->reg[i] = NULL;
      LLVMBuildBr(e->b, e->join);
      LLVMPositionBuilderAtEnd(e->b, e->other);
    } else {
      LLVMValueRef slow_reg = e->reg[i];
      LLVMBasicBlockRef slow_end = LLVMGetInsertBlock(e->b);
      LLVMBuildBr(e->b, e->join);
      LLVMPositionBuilderAtEnd(e->b, e->join);
      if (slow_reg && kind != K_COPY) {
        LLVMValueRef phi = LLVMBuildPhi(e->b, LLVMTypeOf(slow_reg), "");
        LLVMAddIncoming(phi, (LLVMValueRef[]){e->fast_reg, slow_reg},
                        (LLVMBasicBlockRef[]){e->fast_end, slow_end}, 2);
        e->reg[i] = phi;
      }
    }
  }
  e->fast = false;
  e->cold = false;
  e->narrow = false;
}

/* --------------------------------------------------------------- indexing */
/*
** The INDEX ops (compiler/index.c) are never fused: each is one loop nest
** over materialized operands, which are contiguous. take, inc_take,
** concatenate and concat_part see their tensors as (P, middle, S) blocks
** (P: the product of the sizes before the axis, S: after it), as the
** reference evaluator does (compiler/ops/eval_index.c); a slice walks its
** own axes with the source's strides times the steps, from the first
** indices the shape program stored after the node's dims. take and one_hot
** check each index before using it, in the reference's order; a bad one
** writes the step's error record and returns 1 at once. The in-place pass
** never schedules a write into a variable before such a node.
*/

/* Operand j (contiguous) at flat offset off; rank-0 values from registers. */
static LLVMValueRef opnd(em *e, int j, LLVMValueRef off) {
  const kiln_node *v = node(e, j);
  if (e->reg[j]) return e->reg[j];
  if (v->op == KL_OP_CONST && v->type.rank == 0) return const_of(e, v);
  return LLVMBuildLoad2(e->b, lty(e, v->type.dtype), elem_ptr(e, e->g->home[j], v->type.dtype, off),
                        "");
}

/* Where element off of indexing node i's result goes. */
static LLVMValueRef out_ptr(em *e, int i, LLVMValueRef off) {
  const kiln_node *v = node(e, i);
  return v->type.rank == 0 ? e->ix_out : elem_ptr(e, e->g->home[i], v->type.dtype, off);
}

static LLVMValueRef dprod(em *e, int j, int from, int to) {
  LLVMValueRef n = ci64(e, 1);
  for (int d = from; d < to; d++)
    n = LLVMBuildMul(e->b, n, dim(e, j, d), "");
  return n;
}

static LLVMValueRef mad(em *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  return LLVMBuildAdd(e->b, LLVMBuildMul(e->b, a, b, ""), c, "");
}

static void zero_fill(em *e, int i, LLVMValueRef total) {
  loop l;
  LLVMValueRef t = loop_begin(e, &l, total);
  LLVMBuildStore(e->b, zero_of(e, node(e, i)->type.dtype), out_ptr(e, i, t));
  loop_end(e, &l);
}

/* If bad: record (node, value, size, kind) and return 1 from the step. */
static void fail_if(em *e, int i, LLVMValueRef bad, LLVMValueRef val, LLVMValueRef size, int kind) {
  LLVMBasicBlockRef fail = LLVMAppendBasicBlockInContext(e->c, e->fn, "index_error");
  LLVMBasicBlockRef ok = LLVMAppendBasicBlockInContext(e->c, e->fn, "index_ok");
  LLVMBuildCondBr(e->b, bad, fail, ok);
  LLVMPositionBuilderAtEnd(e->b, fail);
  LLVMValueRef rec[4] = {ci64(e, i), val, size, ci64(e, kind)};
  for (int k = 0; k < 4; k++)
    LLVMBuildStore(e->b, rec[k],
                   LLVMBuildGEP2(e->b, e->i64, e->errp, (LLVMValueRef[]){ci64(e, k)}, 1, ""));
  LLVMBuildRet(e->b, ci64(e, 1));
  LLVMPositionBuilderAtEnd(e->b, ok);
}

/* take (x, idx) and inc_take (g, idx, like) along p.axis. */
static void emit_take(em *e, int i) {
  const kiln_node *v = node(e, i);
  bool inc = v->op == KL_OP_TAKE_INC;
  int x = (int)v->in[inc ? 2 : 0]->id, ix = (int)v->in[1]->id, g = (int)v->in[0]->id;
  int a = v->p.axis, it = node(e, ix)->type.dtype;
  LLVMValueRef P = dprod(e, x, 0, a), n = dim(e, x, a);
  LLVMValueRef S = dprod(e, x, a + 1, node(e, x)->type.rank);
  LLVMValueRef M = dprod(e, ix, 0, node(e, ix)->type.rank);
  if (inc) zero_fill(e, i, LLVMBuildMul(e->b, LLVMBuildMul(e->b, P, n, ""), S, ""));
  loop lp, lj, ls;
  LLVMValueRef p = loop_begin(e, &lp, P);
  LLVMValueRef j = loop_begin(e, &lj, M);
  LLVMValueRef k = emit_cast(e, opnd(e, ix, j), it, KILN_INT64);
  LLVMValueRef kw = LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, k, ci64(e, 0), ""),
                                    LLVMBuildAdd(e->b, k, n, ""), k, "");
  fail_if(e, i, LLVMBuildICmp(e->b, LLVMIntUGE, kw, n, ""), k, n, 0); /* < 0 is huge unsigned */
  LLVMValueRef s = loop_begin(e, &ls, S);
  LLVMValueRef xo = mad(e, mad(e, p, n, kw), S, s), oo = mad(e, mad(e, p, M, j), S, s);
  if (inc) {
    LLVMValueRef ptr = out_ptr(e, i, xo);
    int dt = v->type.dtype;
    LLVMBuildStore(e->b, add_of(e, dt, LLVMBuildLoad2(e->b, lty(e, dt), ptr, ""), opnd(e, g, oo)),
                   ptr);
  } else {
    LLVMBuildStore(e->b, opnd(e, x, xo), out_ptr(e, i, oo));
  }
  loop_end(e, &ls);
  loop_end(e, &lj);
  loop_end(e, &lp);
}

static void emit_one_hot(em *e, int i) {
  const kiln_node *v = node(e, i);
  int lab = (int)v->in[0]->id, dt = v->type.dtype;
  LLVMValueRef M = dprod(e, lab, 0, node(e, lab)->type.rank), n = ci64(e, v->p.n);
  LLVMValueRef one = kl_dtype_is_float((kiln_dtype)dt) ? LLVMConstReal(lty(e, dt), 1.0)
                                                       : LLVMConstInt(lty(e, dt), 1, 0);
  loop lj, lc;
  LLVMValueRef j = loop_begin(e, &lj, M);
  LLVMValueRef k = emit_cast(e, opnd(e, lab, j), node(e, lab)->type.dtype, KILN_INT64);
  fail_if(e, i, LLVMBuildICmp(e->b, LLVMIntUGE, k, n, ""), k, n, 1);
  LLVMValueRef c = loop_begin(e, &lc, n);
  LLVMValueRef val =
      LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, c, k, ""), one, zero_of(e, dt), "");
  LLVMBuildStore(e->b, val, out_ptr(e, i, mad(e, j, n, c)));
  loop_end(e, &lc);
  loop_end(e, &lj);
}

static void emit_concat(em *e, int i) {
  const kiln_node *v = node(e, i);
  int r = v->type.rank, ax = v->p.axis;
  LLVMValueRef P = dprod(e, i, 0, ax), S = dprod(e, i, ax + 1, r), T = dim(e, i, ax);
  LLVMValueRef nk[2], off = ci64(e, 0);
  for (int k = 0; k < 2; k++)
    nk[k] = (v->p.lacks >> k & 1u) ? ci64(e, 1) : dim(e, (int)v->in[k]->id, ax);
  loop lp, lt, ls;
  LLVMValueRef p = loop_begin(e, &lp, P);
  for (int k = 0; k < 2; k++) {
    LLVMValueRef t = loop_begin(e, &lt, nk[k]);
    LLVMValueRef s = loop_begin(e, &ls, S);
    LLVMValueRef o = mad(e, mad(e, p, T, LLVMBuildAdd(e->b, off, t, "")), S, s);
    LLVMBuildStore(e->b, opnd(e, (int)v->in[k]->id, mad(e, mad(e, p, nk[k], t), S, s)),
                   out_ptr(e, i, o));
    loop_end(e, &ls);
    loop_end(e, &lt);
    off = nk[0];
  }
  loop_end(e, &lp);
}

static void emit_concat_part(em *e, int i) {
  const kiln_node *v = node(e, i);
  int g = (int)v->in[0]->id, like = (int)v->in[1]->id, ax = v->p.axis;
  LLVMValueRef m = v->p.lacks ? ci64(e, 1) : dim(e, like, ax), ng = dim(e, g, ax);
  LLVMValueRef off = v->p.part ? LLVMBuildSub(e->b, ng, m, "") : ci64(e, 0);
  LLVMValueRef P = dprod(e, g, 0, ax), S = dprod(e, g, ax + 1, node(e, g)->type.rank);
  loop lp, lt, ls;
  LLVMValueRef p = loop_begin(e, &lp, P);
  LLVMValueRef t = loop_begin(e, &lt, m);
  LLVMValueRef s = loop_begin(e, &ls, S);
  LLVMValueRef src = mad(e, mad(e, p, ng, LLVMBuildAdd(e->b, off, t, "")), S, s);
  LLVMBuildStore(e->b, opnd(e, g, src), out_ptr(e, i, mad(e, mad(e, p, m, t), S, s)));
  loop_end(e, &ls);
  loop_end(e, &lt);
  loop_end(e, &lp);
}

/* slice (x) and inc_slice (g, like): the slice's element at loop index o
** sits in the sliced tensor at sum_d (start_d + o_d * step_d) * stride_d. */
static void emit_slice(em *e, int i) {
  const kiln_node *v = node(e, i);
  bool inc = v->op == KL_OP_SLICE_INC;
  int x = (int)v->in[inc ? 1 : 0]->id, sp = inc ? (int)v->in[0]->id : i;
  const kiln_node *xv = node(e, x);
  int xr = xv->type.rank, R = node(e, sp)->type.rank;
  LLVMValueRef xst[KILN_MAX_RANK], coef[KILN_MAX_RANK], cst[KILN_MAX_RANK], D[KILN_MAX_RANK];
  LLVMValueRef base = ci64(e, 0);
  strides(e, x, false, xst);
  for (int d = 0, o = 0; d < xr; d++) {
    const kiln_slice *s = &v->p.slices[d];
    LLVMValueRef start;
    int64_t st, len;
    if (xv->type.dims[d] != KILN_DYN && kl_slice_norm(xv->type.dims[d], s, &st, &len)) {
      start = ci64(e, st);
    } else { /* clamped at call time by the shape program */
      int at = e->g->plan->shape[i].dims_base + v->type.rank + d;
      LLVMValueRef ptr = LLVMBuildGEP2(e->b, e->i64, e->dims, (LLVMValueRef[]){ci64(e, at)}, 1, "");
      start = LLVMBuildLoad2(e->b, e->i64, ptr, "");
    }
    base = mad(e, start, xst[d], base);
    if (!(s->flags & KILN_SLICE_INDEX))
      coef[o++] = LLVMBuildMul(e->b, ci64(e, s->step), xst[d], "");
  }
  if (inc) zero_fill(e, i, dprod(e, i, 0, v->type.rank));
  strides(e, sp, false, cst);
  for (int d = 0; d < R; d++)
    D[d] = dim(e, sp, d);
  loop l[KILN_MAX_RANK];
  open_loops(e, l, R, D);
  LLVMValueRef so = base, fo = ci64(e, 0);
  for (int d = 0; d < R; d++) {
    so = mad(e, e->idx[d], coef[d], so);
    fo = mad(e, e->idx[d], cst[d], fo);
  }
  if (inc)
    LLVMBuildStore(e->b, opnd(e, sp, fo), out_ptr(e, i, so));
  else
    LLVMBuildStore(e->b, opnd(e, x, so), out_ptr(e, i, fo));
  close_loops(e, l, R);
}

static void emit_index(em *e, int i) {
  const kiln_node *v = node(e, i);
  if (v->type.rank == 0) e->ix_out = alloca_of(e, lty(e, v->type.dtype));
  switch ((kl_opcode)v->op) {
  case KL_OP_SLICE:
  case KL_OP_SLICE_INC: emit_slice(e, i); break;
  case KL_OP_TAKE:
  case KL_OP_TAKE_INC: emit_take(e, i); break;
  case KL_OP_ONE_HOT: emit_one_hot(e, i); break;
  case KL_OP_CONCAT: emit_concat(e, i); break;
  default: emit_concat_part(e, i); break;
  }
  if (v->type.rank == 0) {
    e->reg[i] = LLVMBuildLoad2(e->b, lty(e, v->type.dtype), e->ix_out, "");
    if (e->g->home[i] >= 0) store_home(e, i, e->reg[i], ci64(e, 0));
  }
}

/* ---------------------------------------------------------------- module */

static kiln_status lower(const kl_fgraph *g, kl_llmod *mod, const char *symbol, bool general,
                         char *err, size_t errn) {
  em e = {.c = mod->ctx, .m = mod->mod, .g = g, .general = general};
  e.i1 = LLVMInt1TypeInContext(e.c);
  e.i8 = LLVMInt8TypeInContext(e.c);
  e.i16 = LLVMInt16TypeInContext(e.c);
  e.i32 = LLVMInt32TypeInContext(e.c);
  e.i64 = LLVMInt64TypeInContext(e.c);
  e.f32 = LLVMFloatTypeInContext(e.c);
  e.f64 = LLVMDoubleTypeInContext(e.c);
  e.ptr = LLVMPointerTypeInContext(e.c, 0);
  e.vd = LLVMVoidTypeInContext(e.c);
  const kl_plan *p = g->plan;
  int n = g->n ? g->n : 1;
  e.base = kl_calloc(p->n_bufs ? p->n_bufs : 1, sizeof *e.base);
  e.reg = kl_calloc(n, sizeof *e.reg);
  e.st = kl_calloc(n, sizeof *e.st);
  e.has_st = kl_calloc(n, sizeof *e.has_st);
  e.st_fast = kl_calloc(n, sizeof *e.st_fast);
  e.memo = kl_calloc(n, sizeof *e.memo);
  e.memo_map = kl_calloc(n, sizeof *e.memo_map);
  e.alt_base = kl_calloc(p->n_bufs ? p->n_bufs : 1, sizeof *e.alt_base);
  e.alt_reg = kl_calloc(n, sizeof *e.alt_reg);
  e.alt_st = kl_calloc(n, sizeof *e.alt_st);
  e.alt_st_fast = kl_calloc(n, sizeof *e.alt_st_fast);
  e.alt_has_st = kl_calloc(n, sizeof *e.alt_has_st);
  e.cap_nodes = kl_calloc(n, sizeof *e.cap_nodes);
  e.symbol = symbol;
  if (!e.base || !e.reg || !e.st || !e.has_st || !e.memo || !e.memo_map || !e.st_fast ||
      !e.alt_base || !e.alt_reg || !e.alt_st || !e.alt_st_fast || !e.alt_has_st || !e.cap_nodes) {
    kl_free(e.alt_base), kl_free(e.alt_reg), kl_free(e.alt_st), kl_free(e.alt_st_fast),
        kl_free(e.alt_has_st), kl_free(e.cap_nodes);
    kl_free(e.st_fast);
    kl_free(e.base), kl_free(e.reg), kl_free(e.st), kl_free(e.has_st), kl_free(e.memo),
        kl_free(e.memo_map);
    snprintf(err, errn, "out of memory lowering");
    return KILN_NOMEM;
  }
  LLVMTypeRef ft = LLVMFunctionType(e.i64, (LLVMTypeRef[]){e.ptr, e.ptr, e.ptr, e.ptr}, 4, 0);
  e.fn = LLVMAddFunction(e.m, symbol, ft);
  LLVMValueRef bufs = e.bufs = LLVMGetParam(e.fn, 0);
  e.pool = LLVMGetParam(e.fn, 3);
  LLVMSetValueName2(e.pool, "pool", 4);
  e.dims = LLVMGetParam(e.fn, 1);
  e.errp = LLVMGetParam(e.fn, 2);
  LLVMSetValueName2(e.errp, "err", 3);
  LLVMSetValueName2(bufs, "bufs", 4);
  LLVMSetValueName2(e.dims, "dims", 4);
  static const char *const param_attrs[] = {"noalias", "nocapture", "readonly"};
  add_attr(&e, e.fn, LLVMAttributeFunctionIndex, "nounwind");
  /* the step reads pointers and sizes through its two arguments and never
  ** writes them, so stores to buffers cannot change a size: loads of dims
  ** hoist out of loops */
  for (unsigned i = 1; i <= 2; i++)
    for (size_t a = 0; a < 3; a++)
      add_attr(&e, e.fn, i, param_attrs[a]);
  for (size_t a = 0; a < 2; a++) /* the error record: written only on failure */
    add_attr(&e, e.fn, 3, param_attrs[a]);
  e.b = LLVMCreateBuilderInContext(e.c);
  e.ab = LLVMCreateBuilderInContext(e.c);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(e.c, e.fn, "entry");
  LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(e.c, e.fn, "start");
  LLVMPositionBuilderAtEnd(e.ab, entry);
  for (int b = 0; b < p->n_bufs; b++) {
    LLVMValueRef slot = LLVMBuildGEP2(e.ab, e.ptr, bufs, (LLVMValueRef[]){ci64(&e, b)}, 1, "");
    char nm[32];
    snprintf(nm, sizeof nm, "buf%d", b);
    e.base[b] = LLVMBuildLoad2(e.ab, e.ptr, slot, nm);
  }
  LLVMPositionBuilderAtEnd(e.b, start);
  e.idx[KL_IDX_ZERO] = ci64(&e, 0);
  /* rank-0 leaves are read once, before any update writes in place */
  for (int i = 0; i < g->n; i++) {
    const kiln_node *v = g->nodes[i];
    if (g->sched[i] == KL_S_LEAF && v->type.rank == 0 && g->home[i] >= 0)
      e.reg[i] = load_node(&e, i, ci64(&e, 0));
  }
  /* copies of leaves (outputs or updates that are inputs or variables) come
  ** first too, for the same reason */
  for (int c = 0; c < g->n_copies; c++)
    if (g->sched[g->copies[c].node] == KL_S_LEAF) {
      e.cur = g->copies[c].node;
      emit_kernel(&e, K_COPY, g->copies[c].node, g->copies[c].buf);
    }
  for (int i = 0; i < g->n; i++) {
    const kiln_node *v = g->nodes[i];
    e.cur = i;
    if (g->sched[i] == KL_S_SCALAR) {
      emit_scalar_node(&e, i);
      continue;
    }
    if (g->sched[i] != KL_S_ROOT) continue;
    switch (kl_ops[v->op].kind) {
    case KL_ELEM:
    case KL_BCAST:
    case KL_SHUFFLE:
    case KL_RESHAPE: emit_kernel(&e, K_ELEM, i, -1); break;
    case KL_REDUCE:
    case KL_LIKE: emit_kernel(&e, K_REDUCE, i, -1); break;
    case KL_DOT: emit_dot(&e, i); break;
    case KL_INDEX: emit_index(&e, i); break;
    default: break;
    }
  }
  for (int c = 0; c < g->n_copies; c++)
    if (g->sched[g->copies[c].node] != KL_S_LEAF) {
      e.cur = g->copies[c].node;
      emit_kernel(&e, K_COPY, g->copies[c].node, g->copies[c].buf);
    }
  LLVMBuildRet(e.b, ci64(&e, 0));
  LLVMPositionBuilderAtEnd(e.ab, entry);
  LLVMBuildBr(e.ab, start);
  LLVMDisposeBuilder(e.b);
  LLVMDisposeBuilder(e.ab);
  kl_free(e.base), kl_free(e.reg), kl_free(e.st), kl_free(e.has_st), kl_free(e.memo),
      kl_free(e.memo_map);
  kl_free(e.st_fast);
  kl_free(e.alt_base), kl_free(e.alt_reg), kl_free(e.alt_st), kl_free(e.alt_st_fast),
      kl_free(e.alt_has_st), kl_free(e.cap_nodes);
  return KILN_OK;
}

/* --------------------------------------------------------------- backend */

kiln_status kl_backend_compile(kiln_ctx *ctx, const kl_fgraph *g, const char *symbol, bool general,
                               struct kl_jit_code **out_code, void **out_fn, kl_times *t,
                               unsigned char **object, size_t *object_len) {
  char err[1024] = "";
  kiln_status st;
  double t0 = kl_jit_now();
  *out_code = NULL;
  *out_fn = NULL;
  if (!ctx->jit && (st = kl_jit_new(&ctx->jit, err, sizeof err)) != KILN_OK)
    return kl_error(ctx, st, "function: cannot create the JIT: %s", err);
  double t1 = kl_jit_now();
  kl_llmod m;
  if ((st = kl_llmod_new(ctx->jit, &m, symbol, err, sizeof err)) != KILN_OK)
    return kl_error(ctx, st, "function: %s", err);
  if ((st = lower(g, &m, symbol, general, err, sizeof err)) != KILN_OK) {
    kl_llmod_dispose(&m);
    return kl_error(ctx, st, "function: %s", err);
  }
  double t2 = kl_jit_now(), secs[3] = {0, 0, 0};
  kl_jit_opts opts = {.opt_level = g->llvm_opt_level,
                      .threads = ctx->compile_threads,
                      .object = object,
                      .object_len = object_len,
                      .secs = secs};
  st = kl_jit_add(ctx->jit, &m, symbol, &opts, out_code, out_fn, err, sizeof err); /* takes m */
  if (st != KILN_OK) return kl_error(ctx, st, "function: %s", err);
  if (t) {
    *t = (kl_times){.total = kl_jit_now() - t0,
                    .jit_new = t1 - t0,
                    .lower = t2 - t1,
                    .text = secs[0],
                    .passes = secs[1],
                    .codegen = secs[2]};
  }
  return KILN_OK;
}

const char *kl_backend_text(struct kl_jit_code *code, kiln_stage stage, kiln_status *st, char *err,
                            size_t errn) {
  return kl_jit_code_text(code, stage, st, err, errn);
}

void kl_backend_code_free(struct kl_jit_code *code) { kl_jit_code_free(code); }

kiln_status kl_backend_load(kiln_ctx *ctx, const unsigned char *obj, size_t len, const char *symbol,
                            struct kl_jit_code **out_code, void **out_fn, char *err, size_t errn) {
  kiln_status st;
  *out_code = NULL;
  *out_fn = NULL;
  if (!ctx->jit && (st = kl_jit_new(&ctx->jit, err, errn)) != KILN_OK) return st;
  return kl_jit_add_object(ctx->jit, obj, len, symbol, out_code, out_fn, err, errn);
}

char *kl_backend_host_id(void) { return kl_jit_host_id(); }

void kl_ctx_jit_free(kiln_ctx *ctx) {
  kl_jit_free(ctx->jit);
  ctx->jit = NULL;
}
