/*
** kmath_ir.h -- Kiln's float32 exp, log, tanh, sigmoid and softplus as LLVM
** IR (see kmath_ir.c), the twins of compiler/ops/kmath.c.
*/
#ifndef KILN_KMATH_IR_H
#define KILN_KMATH_IR_H

#include <llvm-c/Core.h>

/* Each builds, at b's position, a call of an internal always-inline function
** of module m (defined on first use) that computes the function of the float
** x exactly as compiler/ops/kmath.c does. LLVM inlines it; no call is left.
** softplus also calls libm's log1pf (opaque, nobuiltin) like kl_softplusf. */
LLVMValueRef kl_ir_expf(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef kl_ir_logf(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef kl_ir_tanhf(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef kl_ir_sigmoidf(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef kl_ir_softplusf(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);

#endif
