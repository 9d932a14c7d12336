/*
** backend.c -- lowers a function graph to one LLVM module with one exported
** step function, then hands it to the JIT (jit.c).
**
**   void kiln_step_N(ptr %bufs, ptr %dims)
**
** %bufs[b] is buffer b of the plan, %dims the dimensions the runtime computed
** for every node. Static dimensions are emitted as constants, dynamic ones
** are loaded from %dims. Each computed node becomes one loop nest (fusion is
** a later pass's business): elementwise nodes loop over their output with
** broadcast strides (0 where an operand's dimension is 1), reductions zero
** their output and then add every input element into it in increasing index
** order, dot runs a triple loop with a register accumulator. Loop counters
** and accumulators are allocas in the entry block; LLVM's mem2reg turns them
** into SSA values. Arithmetic carries no fast-math flags, so LLVM neither
** reassociates nor contracts into fma.
*/
#include "compiler/function.h"
#include "compiler/llvm/jit.h"

#include <stdio.h>
#include <string.h>

typedef struct em {
  LLVMContextRef c;
  LLVMModuleRef m;
  LLVMBuilderRef b;  /* code */
  LLVMBuilderRef ab; /* allocas and buffer loads, at the end of the entry block */
  LLVMValueRef fn, dims;
  LLVMTypeRef i1, i8, i16, i32, i64, f32, f64, ptr, vd;
  const kl_fgraph *g;
  LLVMValueRef *base; /* per buffer: its pointer, loaded in the entry block */
  LLVMValueRef ipow;  /* internal i64 ipow(i64, i64), made on first use */
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

static LLVMValueRef ci64(em *e, int64_t v) { return LLVMConstInt(e->i64, (unsigned long long)v, 1); }

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
      st[d] = LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, n, ci64(e, 1), ""), ci64(e, 0), s, "");
    s = LLVMBuildMul(e->b, s, n, "");
  }
}

static LLVMValueRef const_of(em *e, const kiln_node *v) {
  int dt = v->type.dtype;
  if (kl_dtype_is_float((kiln_dtype)dt)) return LLVMConstReal(lty(e, dt), kl_load_f64((kiln_dtype)dt, v->data, 0));
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

/* ---------------------------------------------------------------- loops */

typedef struct loop {
  LLVMValueRef var;
  LLVMBasicBlockRef cond, body, exit;
} loop;

static LLVMValueRef alloca_of(em *e, LLVMTypeRef t) { return LLVMBuildAlloca(e->ab, t, ""); }

static LLVMValueRef loop_begin(em *e, loop *l, LLVMValueRef n) {
  l->var = alloca_of(e, e->i64);
  LLVMBuildStore(e->b, ci64(e, 0), l->var);
  l->cond = LLVMAppendBasicBlockInContext(e->c, e->fn, "loop");
  l->body = LLVMAppendBasicBlockInContext(e->c, e->fn, "body");
  l->exit = LLVMAppendBasicBlockInContext(e->c, e->fn, "done");
  LLVMBuildBr(e->b, l->cond);
  LLVMPositionBuilderAtEnd(e->b, l->cond);
  LLVMValueRef i = LLVMBuildLoad2(e->b, e->i64, l->var, "i");
  LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, i, n, ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(e->b, l->body);
  return LLVMBuildLoad2(e->b, e->i64, l->var, "i");
}

static void loop_end(em *e, loop *l) {
  LLVMValueRef i = LLVMBuildLoad2(e->b, e->i64, l->var, "");
  LLVMBuildStore(e->b, LLVMBuildNUWAdd(e->b, i, ci64(e, 1), ""), l->var);
  LLVMBuildBr(e->b, l->cond);
  LLVMPositionBuilderAtEnd(e->b, l->exit);
}

/* A loop nest over R dims D[]; operand k's offset advances by S[k][d] per
** step of dimension d. body() gets the K offsets. */
typedef void (*body_fn)(em *e, void *ud, LLVMValueRef *off);

static void nest(em *e, int R, LLVMValueRef *D, int K, LLVMValueRef (*S)[KILN_MAX_RANK],
                 body_fn body, void *ud) {
  loop l[KILN_MAX_RANK];
  LLVMValueRef off[4];
  for (int k = 0; k < K; k++) off[k] = ci64(e, 0);
  for (int d = 0; d < R; d++) {
    LLVMValueRef i = loop_begin(e, &l[d], D[d]);
    for (int k = 0; k < K; k++) off[k] = LLVMBuildAdd(e->b, off[k], LLVMBuildMul(e->b, i, S[k][d], ""), "");
  }
  body(e, ud, off);
  for (int d = R; d-- > 0;) loop_end(e, &l[d]);
}

/* Strides of operand j (right-aligned, broadcasting) in the iteration of node i. */
static void operand_strides(em *e, int i, int j, LLVMValueRef *S) {
  int R = node(e, i)->type.rank, r = node(e, j)->type.rank;
  LLVMValueRef st[KILN_MAX_RANK];
  strides(e, j, true, st);
  for (int d = 0; d < R; d++) S[d] = d - (R - r) >= 0 ? st[d - (R - r)] : ci64(e, 0);
}

/* ------------------------------------------------------------ scalar ops */

static LLVMValueRef intrinsic(em *e, const char *name, LLVMTypeRef *tys, int nt,
                              LLVMValueRef *args, int na) {
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
  LLVMValueRef m1 = LLVMBuildSelect(b, odd, LLVMConstInt(e->i64, (unsigned long long)-1, 1), one, "");
  LLVMValueRef r_neg = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, x, one, ""), one,
      LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, x, LLVMConstInt(e->i64, (unsigned long long)-1, 1), ""), m1, zero, ""), "");
  LLVMBuildRet(b, r_neg);
  /* square and multiply, wrapping */
  LLVMPositionBuilderAtEnd(b, head);
  LLVMValueRef r = LLVMBuildPhi(b, e->i64, "r"), bb = LLVMBuildPhi(b, e->i64, "b"), yy = LLVMBuildPhi(b, e->i64, "y");
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
  if (ff && tf) return to == KILN_FLOAT64 ? LLVMBuildFPExt(e->b, x, tt, "") : LLVMBuildFPTrunc(e->b, x, tt, "");
  if (!ff && tf) return is_unsigned(from) ? LLVMBuildUIToFP(e->b, x, tt, "") : LLVMBuildSIToFP(e->b, x, tt, "");
  if (ff) /* float -> int saturates, NaN -> 0 */
    return intrinsic(e, to == KILN_UINT8 ? "llvm.fptoui.sat" : "llvm.fptosi.sat",
                     (LLVMTypeRef[]){tt, ft}, 2, &x, 1);
  return LLVMBuildIntCast2(e->b, x, tt, !is_unsigned(from), "");
}

static LLVMValueRef emit_cmp(em *e, kl_opcode op, int dt, LLVMValueRef a, LLVMValueRef b) {
  LLVMValueRef c;
  if (kl_dtype_is_float((kiln_dtype)dt)) {
    static const LLVMRealPredicate fp[] = {LLVMRealOLT, LLVMRealOLE, LLVMRealOGT, LLVMRealOGE, LLVMRealOEQ, LLVMRealUNE};
    c = LLVMBuildFCmp(e->b, fp[op - KL_OP_LT], a, b, "");
  } else {
    static const LLVMIntPredicate sp[] = {LLVMIntSLT, LLVMIntSLE, LLVMIntSGT, LLVMIntSGE, LLVMIntEQ, LLVMIntNE};
    static const LLVMIntPredicate up[] = {LLVMIntULT, LLVMIntULE, LLVMIntUGT, LLVMIntUGE, LLVMIntEQ, LLVMIntNE};
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
  if (op >= KL_OP_LT && op <= KL_OP_NE) return emit_cmp(e, op, dt, a, b);
  if (op == KL_OP_WHERE)
    return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntNE, a, LLVMConstInt(e->i8, 0, 0), ""), b, x[2], "");
  if (kl_dtype_is_float((kiln_dtype)dt)) {
    switch (op) {
    case KL_OP_NEG: return LLVMBuildFNeg(e->b, a, "");
    case KL_OP_SQR: return LLVMBuildFMul(e->b, a, a, "");
    case KL_OP_SQRT: return intrinsic(e, "llvm.sqrt", &t, 1, &a, 1);
    case KL_OP_EXP: return intrinsic(e, "llvm.exp", &t, 1, &a, 1);
    case KL_OP_LOG: return intrinsic(e, "llvm.log", &t, 1, &a, 1);
    case KL_OP_ABS: return intrinsic(e, "llvm.fabs", &t, 1, &a, 1);
    case KL_OP_SIGN: {
      LLVMValueRef z = LLVMConstReal(t, 0.0);
      LLVMValueRef lt = LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOLT, a, z, ""), LLVMConstReal(t, -1.0), a, "");
      return LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOGT, a, z, ""), LLVMConstReal(t, 1.0), lt, "");
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
    case KL_OP_SIGN: return a;
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
      return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, a, z, ""), LLVMBuildSub(e->b, z, a, ""), a, "");
    case KL_OP_SIGN: {
      LLVMValueRef one = LLVMConstInt(t, 1, 0), m1 = LLVMConstInt(t, (unsigned long long)-1, 1);
      LLVMValueRef lt = u ? z : LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, a, z, ""), m1, z, "");
      return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, u ? LLVMIntUGT : LLVMIntSGT, a, z, ""), one, lt, "");
    }
    case KL_OP_ADD: return LLVMBuildAdd(e->b, a, b, "");
    case KL_OP_SUB: return LLVMBuildSub(e->b, a, b, "");
    case KL_OP_MUL: return LLVMBuildMul(e->b, a, b, "");
    case KL_OP_MAX:
    case KL_OP_MIN: {
      LLVMIntPredicate p = op == KL_OP_MAX ? (u ? LLVMIntUGE : LLVMIntSGE) : (u ? LLVMIntULE : LLVMIntSLE);
      return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, p, a, b, ""), a, b, "");
    }
    case KL_OP_POW: {
      LLVMValueRef f = ipow_fn(e);
      LLVMTypeRef ft = LLVMFunctionType(e->i64, (LLVMTypeRef[]){e->i64, e->i64}, 2, 0);
      LLVMValueRef args[2] = {LLVMBuildIntCast2(e->b, a, e->i64, !u, ""), LLVMBuildIntCast2(e->b, b, e->i64, !u, "")};
      return LLVMBuildTrunc(e->b, LLVMBuildCall2(e->b, ft, f, args, 2, ""), t, "");
    }
    default: break;
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------- kernels */

typedef struct kctx {
  int i;        /* the node */
  int n_ops;    /* operands read (offsets 0..n_ops-1), then the destination */
  int ops[3];
  int dst_buf;
} kctx;

static void elem_body(em *e, void *ud, LLVMValueRef *off) {
  kctx *k = ud;
  const kiln_node *v = node(e, k->i);
  LLVMValueRef x[3];
  for (int j = 0; j < k->n_ops; j++) x[j] = load_node(e, k->ops[j], off[j]);
  int dt = v->in[v->n_in - 1]->type.dtype;
  LLVMValueRef r = emit_scalar(e, v, dt, x);
  LLVMBuildStore(e->b, r, elem_ptr(e, k->dst_buf, v->type.dtype, off[k->n_ops]));
}

static void emit_elem(em *e, int i) {
  const kiln_node *v = node(e, i);
  kctx k = {.i = i, .n_ops = v->n_in, .dst_buf = e->g->home[i]};
  LLVMValueRef D[KILN_MAX_RANK], S[4][KILN_MAX_RANK];
  for (int d = 0; d < v->type.rank; d++) D[d] = dim(e, i, d);
  for (int j = 0; j < v->n_in; j++) {
    k.ops[j] = kl_fg_in(e->g, v, j);
    operand_strides(e, i, k.ops[j], S[j]);
  }
  strides(e, i, false, S[v->n_in]);
  nest(e, v->type.rank, D, v->n_in + 1, S, elem_body, &k);
}

static void copy_body(em *e, void *ud, LLVMValueRef *off) {
  kctx *k = ud;
  const kiln_node *v = node(e, k->i);
  LLVMBuildStore(e->b, load_node(e, k->ops[0], off[0]), elem_ptr(e, k->dst_buf, v->type.dtype, off[1]));
}

/* Copies node i (or, with axes, node src placed into i's shape) to dst. */
static void emit_copy(em *e, int i, int src, uint32_t bcast_axes, int dst) {
  const kiln_node *v = node(e, i);
  kctx k = {.i = i, .n_ops = 1, .ops = {src}, .dst_buf = dst};
  LLVMValueRef D[KILN_MAX_RANK], S[2][KILN_MAX_RANK], st[KILN_MAX_RANK];
  for (int d = 0; d < v->type.rank; d++) D[d] = dim(e, i, d);
  strides(e, src, true, st);
  for (int d = 0, s = 0; d < v->type.rank; d++)
    S[0][d] = (bcast_axes >> d & 1u) ? ci64(e, 0) : st[s++];
  strides(e, i, false, S[1]);
  nest(e, v->type.rank, D, 2, S, copy_body, &k);
}

static LLVMValueRef zero_of(em *e, int dt) {
  return kl_dtype_is_float((kiln_dtype)dt) ? LLVMConstReal(lty(e, dt), 0.0) : LLVMConstInt(lty(e, dt), 0, 0);
}

static void zero_body(em *e, void *ud, LLVMValueRef *off) {
  kctx *k = ud;
  int dt = node(e, k->i)->type.dtype;
  LLVMBuildStore(e->b, zero_of(e, dt), elem_ptr(e, k->dst_buf, dt, off[0]));
}

static void acc_body(em *e, void *ud, LLVMValueRef *off) {
  kctx *k = ud;
  int dt = node(e, k->i)->type.dtype;
  LLVMValueRef p = elem_ptr(e, k->dst_buf, dt, off[1]);
  LLVMValueRef cur = LLVMBuildLoad2(e->b, lty(e, dt), p, "");
  LLVMValueRef x = load_node(e, k->ops[0], off[0]);
  LLVMValueRef s = kl_dtype_is_float((kiln_dtype)dt) ? LLVMBuildFAdd(e->b, cur, x, "")
                   : dt == KILN_BOOL ? LLVMBuildOr(e->b, cur, x, "") : LLVMBuildAdd(e->b, cur, x, "");
  LLVMBuildStore(e->b, s, p);
}

/* out = 0; for every element of the source in C order: out[...] += x. The
** destination offset uses dst_st[d] per source dimension (0 when summed). */
static void emit_accumulate(em *e, int i, int src, LLVMValueRef *dst_st) {
  const kiln_node *v = node(e, i), *x = node(e, src);
  kctx k = {.i = i, .n_ops = 1, .ops = {src}, .dst_buf = e->g->home[i]};
  LLVMValueRef D[KILN_MAX_RANK], S[2][KILN_MAX_RANK];
  for (int d = 0; d < v->type.rank; d++) D[d] = dim(e, i, d);
  strides(e, i, false, S[0]);
  nest(e, v->type.rank, D, 1, S, zero_body, &k);
  for (int d = 0; d < x->type.rank; d++) D[d] = dim(e, src, d);
  strides(e, src, false, S[0]);
  for (int d = 0; d < x->type.rank; d++) S[1][d] = dst_st[d];
  nest(e, x->type.rank, D, 2, S, acc_body, &k);
}

static void emit_reduce(em *e, int i) {
  const kiln_node *v = node(e, i);
  int src = kl_fg_in(e->g, v, 0);
  LLVMValueRef ost[KILN_MAX_RANK], dst[KILN_MAX_RANK];
  strides(e, i, false, ost);
  for (int d = 0, o = 0; d < node(e, src)->type.rank; d++)
    dst[d] = (v->p.axes >> d & 1u) ? ci64(e, 0) : ost[o++];
  emit_accumulate(e, i, src, dst);
}

static void emit_sum_like(em *e, int i) {
  const kiln_node *v = node(e, i);
  int src = kl_fg_in(e->g, v, 0);
  int R = node(e, src)->type.rank, r = v->type.rank;
  LLVMValueRef ost[KILN_MAX_RANK], dst[KILN_MAX_RANK];
  strides(e, i, true, ost); /* 0 where the target's size is 1: summed */
  for (int d = 0; d < R; d++) dst[d] = d - (R - r) >= 0 ? ost[d - (R - r)] : ci64(e, 0);
  emit_accumulate(e, i, src, dst);
}

static void emit_count(em *e, int i) {
  const kiln_node *v = node(e, i);
  int src = kl_fg_in(e->g, v, 0);
  LLVMValueRef n = ci64(e, 1);
  for (int d = 0; d < node(e, src)->type.rank; d++)
    if (v->p.axes >> d & 1u) n = LLVMBuildMul(e->b, n, dim(e, src, d), "");
  LLVMValueRef x = emit_cast(e, n, KILN_INT64, v->type.dtype);
  LLVMBuildStore(e->b, x, elem_ptr(e, e->g->home[i], v->type.dtype, ci64(e, 0)));
}

static void emit_dot(em *e, int i) {
  const kiln_node *v = node(e, i);
  int ia = kl_fg_in(e->g, v, 0), ib = kl_fg_in(e->g, v, 1);
  const kiln_node *a = node(e, ia), *b = node(e, ib);
  int dt = v->type.dtype;
  bool ta = v->p.ta, tb = v->p.tb, fl = kl_dtype_is_float((kiln_dtype)dt);
  LLVMValueRef one = ci64(e, 1), zero = ci64(e, 0);
  /* a as (m, k), b as (k, n); memory strides of each index */
  LLVMValueRef m = a->type.rank == 2 ? dim(e, ia, ta ? 1 : 0) : one;
  LLVMValueRef kk = a->type.rank == 2 ? dim(e, ia, ta ? 0 : 1) : dim(e, ia, 0);
  LLVMValueRef n = b->type.rank == 2 ? dim(e, ib, tb ? 0 : 1) : one;
  LLVMValueRef as_i = a->type.rank == 2 ? (ta ? one : dim(e, ia, 1)) : zero;
  LLVMValueRef as_p = a->type.rank == 2 ? (ta ? dim(e, ia, 1) : one) : one;
  LLVMValueRef bs_p = b->type.rank == 2 ? (tb ? one : dim(e, ib, 1)) : one;
  LLVMValueRef bs_j = b->type.rank == 2 ? (tb ? dim(e, ib, 1) : one) : zero;
  LLVMValueRef acc = alloca_of(e, lty(e, dt));
  loop li, lj, lp;
  LLVMValueRef ii = loop_begin(e, &li, m);
  LLVMValueRef jj = loop_begin(e, &lj, n);
  LLVMBuildStore(e->b, zero_of(e, dt), acc);
  LLVMValueRef pp = loop_begin(e, &lp, kk);
  LLVMValueRef oa = LLVMBuildAdd(e->b, LLVMBuildMul(e->b, ii, as_i, ""), LLVMBuildMul(e->b, pp, as_p, ""), "");
  LLVMValueRef ob = LLVMBuildAdd(e->b, LLVMBuildMul(e->b, pp, bs_p, ""), LLVMBuildMul(e->b, jj, bs_j, ""), "");
  LLVMValueRef x = load_node(e, ia, oa), y = load_node(e, ib, ob);
  LLVMValueRef cur = LLVMBuildLoad2(e->b, lty(e, dt), acc, "");
  LLVMValueRef s = fl ? LLVMBuildFAdd(e->b, cur, LLVMBuildFMul(e->b, x, y, ""), "")
                      : LLVMBuildAdd(e->b, cur, LLVMBuildMul(e->b, x, y, ""), "");
  LLVMBuildStore(e->b, s, acc);
  loop_end(e, &lp);
  LLVMValueRef o = LLVMBuildAdd(e->b, LLVMBuildMul(e->b, ii, n, ""), jj, "");
  LLVMBuildStore(e->b, LLVMBuildLoad2(e->b, lty(e, dt), acc, ""), elem_ptr(e, e->g->home[i], dt, o));
  loop_end(e, &lj);
  loop_end(e, &li);
}

/* ---------------------------------------------------------------- module */

static kiln_status lower(const kl_fgraph *g, kl_llmod *mod, const char *symbol, char *err,
                         size_t errn) {
  em e = {.c = mod->ctx, .m = mod->mod, .g = g};
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
  e.base = kl_calloc(p->n_bufs ? p->n_bufs : 1, sizeof *e.base);
  if (!e.base) {
    snprintf(err, errn, "out of memory lowering");
    return KILN_NOMEM;
  }
  LLVMTypeRef ft = LLVMFunctionType(e.vd, (LLVMTypeRef[]){e.ptr, e.ptr}, 2, 0);
  e.fn = LLVMAddFunction(e.m, symbol, ft);
  LLVMValueRef bufs = LLVMGetParam(e.fn, 0);
  e.dims = LLVMGetParam(e.fn, 1);
  LLVMSetValueName2(bufs, "bufs", 4);
  LLVMSetValueName2(e.dims, "dims", 4);
  unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
  LLVMAddAttributeAtIndex(e.fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(e.c, nounwind, 0));
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
  kiln_status st = KILN_OK;
  for (int i = 0; i < g->n && st == KILN_OK; i++) {
    const kiln_node *v = g->nodes[i];
    switch (kl_ops[v->op].kind) {
    case KL_LEAF: break;
    case KL_ELEM: emit_elem(&e, i); break;
    case KL_BCAST: emit_copy(&e, i, kl_fg_in(g, v, 0), v->p.axes, g->home[i]); break;
    case KL_REDUCE: emit_reduce(&e, i); break;
    case KL_LIKE: emit_sum_like(&e, i); break;
    case KL_COUNT: emit_count(&e, i); break;
    case KL_DOT: emit_dot(&e, i); break;
    }
  }
  for (int c = 0; c < g->n_copies; c++) emit_copy(&e, g->copies[c].node, g->copies[c].node, 0, g->copies[c].buf);
  LLVMBuildRetVoid(e.b);
  LLVMPositionBuilderAtEnd(e.ab, entry);
  LLVMBuildBr(e.ab, start);
  LLVMDisposeBuilder(e.b);
  LLVMDisposeBuilder(e.ab);
  kl_free(e.base);
  return st;
}

/* --------------------------------------------------------------- backend */

kiln_status kl_backend_compile(kiln_ctx *ctx, const kl_fgraph *g, const char *symbol,
                               struct kl_jit_code **out_code, void **out_fn) {
  char err[1024] = "";
  kiln_status st;
  *out_code = NULL;
  *out_fn = NULL;
  if (!ctx->jit && (st = kl_jit_new(&ctx->jit, err, sizeof err)) != KILN_OK)
    return kl_error(ctx, st, "function: cannot create the JIT: %s", err);
  kl_llmod m;
  if ((st = kl_llmod_new(ctx->jit, &m, symbol, err, sizeof err)) != KILN_OK)
    return kl_error(ctx, st, "function: %s", err);
  if ((st = lower(g, &m, symbol, err, sizeof err)) != KILN_OK) {
    kl_llmod_dispose(&m);
    return kl_error(ctx, st, "function: %s", err);
  }
  kl_jit_opts opts = {.opt_level = 2};
  st = kl_jit_add(ctx->jit, &m, symbol, &opts, out_code, out_fn, err, sizeof err); /* takes m */
  if (st != KILN_OK) return kl_error(ctx, st, "function: %s", err);
  return KILN_OK;
}

const char *kl_backend_text(struct kl_jit_code *code, kiln_stage stage, kiln_status *st, char *err,
                            size_t errn) {
  return kl_jit_code_text(code, stage, st, err, errn);
}

void kl_backend_code_free(struct kl_jit_code *code) { kl_jit_code_free(code); }

void kl_ctx_jit_free(kiln_ctx *ctx) {
  kl_jit_free(ctx->jit);
  ctx->jit = NULL;
}
