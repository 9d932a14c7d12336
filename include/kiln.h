/*
** kiln.h -- the public interface of Kiln, a tensor-expression JIT compiler.
**
** Kiln follows Theano's programming model. You build a symbolic graph out of
** typed inputs, shared variables (state that lives between calls, such as
** weights) and constants; you ask for gradients, which are more graph; you
** declare a function with inputs, outputs and updates of shared variables;
** Kiln compiles that function through LLVM into one native step function.
**
**     kiln_ctx  *ctx = kiln_ctx_new();
**     kiln_node *x   = kiln_fvector(ctx, "x");
**     kiln_node *W   = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){4}, w0);
**     kiln_node *y   = kiln_sum(kiln_mul(x, W));
**     ...
**     kiln_function *f = kiln_function_new(ctx, "f", 1, &x, 1, &y, 0, NULL);
**     kiln_call(f, inputs, outputs);
**
** This header is the manual. Conventions that hold everywhere:
**
**  - Handles are opaque. Everything a context creates (nodes, shared
**    variables, functions) is owned by the context and freed with it.
**    Freeing NULL is a no-op.
**  - Errors. Fallible calls return a kiln_status, or NULL for constructors.
**    The message of the most recent error of a context is kiln_errmsg(ctx).
**    Messages name the node (its name and the file:line where it was built).
**  - Graph builders chain. A builder given a NULL input returns NULL and
**    leaves the first error in place, so code checks once, at
**    kiln_function_new() or kiln_call(). Every builder is a macro that records
**    __FILE__ and __LINE__ of the call, then calls the *_at function. The
**    macros are variadic, so compound literals such as (double[]){1, 2} can
**    be passed directly.
**  - Nothing a caller does makes Kiln abort or exit. Handles that are NULL
**    or belong to another context give KILN_MISUSE.
**  - Thread safety: a context and everything it owns must be used by one
**    thread at a time. Different contexts are independent.
**  - LLVM in the same process: Kiln links LLVM (libLLVM) and, once per
**    process, sets three LLVM code generation options through
**    LLVMParseCommandLineOptions: -disable-lsr (no loop strength
**    reduction), -fast-isel (FastISel instruction selection, SelectionDAG
**    where it cannot) and -enable-misched=false (no machine scheduler
**    before register allocation). Together they halve Kiln's code
**    generation time (on the W3 MLP, 59 -> 32 ms) and made no step slower. A program that uses
**    LLVM itself sees those options too.
**
** Semantics (numpy and Theano):
**  - dtypes: bool, int8, int16, int32, int64, uint8, float32, float64.
**  - A tensor type has a dtype, a rank 0..KILN_MAX_RANK and per dimension
**    either a static size or KILN_DYN (known at call time). A static size of
**    1 is "broadcastable" in Theano's sense.
**  - Broadcasting follows numpy: shapes are aligned on the right, a size of 1
**    stretches. It is checked when the graph is built where sizes are static
**    and at call time where they are dynamic.
**  - Promotion follows numpy for tensors: bool < integers < floats; two
**    signed integers give the wider; uint8 with int8 gives int16; an integer
**    of 32 or 64 bits with float32 gives float64, a smaller one float32.
**  - A number literal (kiln_lit) is "weak" (numpy 2 / NEP 50, JAX): it takes
**    the dtype of the tensor it meets, so 0.1 * a float32 vector is float32.
**    A float literal meeting an integer or bool tensor gives float64; an
**    integer literal meeting a bool tensor gives int64. A literal that meets
**    only literals stays weak; on its own it is float64 or int64.
**    Constants built with kiln_const/kiln_scalar have an explicit dtype and
**    are not weak.
**  - div is true division: integers are divided as float64 (numpy's '/').
**    sqrt, exp and log of bool/int8/int16/uint8 give float32, of
**    int32/int64 float64.
**  - sum of bool and integer tensors is int64, of floats keeps the dtype;
**    mean of bool/integers is float64. Reductions add in increasing index
**    order starting from +0.0, except a float sum down to one value, which
**    uses the blocked order described at kiln_reduce; either way the order
**    is fixed by the shapes, so results never depend on threads or vector
**    width. dot accumulates in increasing index order too.
**  - maximum/minimum propagate NaN; between equal values (0.0 and -0.0)
**    the first operand wins.
**  - Arithmetic is IEEE: no fast-math, no contraction of a*b+c into fma.
**  - A function's outputs and updates are computed from the values shared
**    variables had when the call began; updates are committed together,
**    only after the whole step succeeded. A failed call leaves every shared
**    variable bit-identical.
*/
#ifndef KILN_H
#define KILN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KILN_BUILDING) && defined(__GNUC__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

#define KILN_VERSION "0.1.0"
#define KILN_VERSION_NUMBER 1000 /* major*1000000 + minor*1000 + patch */

/* The library's version string, equal to KILN_VERSION of the build. */
KILN_API const char *kiln_version(void);

/* ---------------------------------------------------------------- status */

typedef enum kiln_status {
  KILN_OK = 0,
  KILN_ERROR,    /* generic failure */
  KILN_NOMEM,    /* an allocation failed */
  KILN_MISUSE,   /* NULL, freed or foreign handle; bad argument */
  KILN_SHAPE,    /* shapes do not match or do not broadcast */
  KILN_TYPE,     /* dtypes or ranks do not fit */
  KILN_NOGRAD,   /* no gradient: disconnected wrt, non-scalar cost, op without grad */
  KILN_LLVM,     /* LLVM refused the module or failed to compile it */
  KILN_INTERNAL, /* a bug in Kiln; the message begins with "internal:" */
  KILN_N_STATUS
} kiln_status;

/* A constant English name for a status ("ok", "shape error", ...). */
KILN_API const char *kiln_status_str(kiln_status s);

/* ---------------------------------------------------------------- dtypes */

typedef enum kiln_dtype {
  KILN_BOOL = 0,
  KILN_INT8,
  KILN_INT16,
  KILN_INT32,
  KILN_INT64,
  KILN_UINT8,
  KILN_FLOAT32,
  KILN_FLOAT64,
  KILN_N_DTYPES
} kiln_dtype;

#define KILN_MAX_RANK 8
#define KILN_DYN (-1) /* a dimension whose size is known only at call time */

/* "float32", "int64", ...; "?" for a value out of range. */
KILN_API const char *kiln_dtype_name(kiln_dtype dt);
/* Size of one element in bytes (bool is one byte, 0 or 1); 0 if invalid. */
KILN_API size_t kiln_dtype_size(kiln_dtype dt);
/* numpy's result dtype of a binary arithmetic op on two tensors. Returns
** KILN_N_DTYPES for invalid arguments. */
KILN_API kiln_dtype kiln_promote(kiln_dtype a, kiln_dtype b);

/* ---------------------------------------------------------------- handles */

typedef struct kiln_ctx kiln_ctx;           /* owns everything below */
typedef struct kiln_node kiln_node;         /* a symbolic variable */
typedef struct kiln_function kiln_function; /* a compiled function */
typedef struct kiln_tensor kiln_tensor;     /* a concrete array value */

/* Creates a context. Returns NULL only when out of memory. */
KILN_API kiln_ctx *kiln_ctx_new(void);
/* Frees the context and every node, shared variable and function it owns.
** Tensors are not owned by a context and stay valid. NULL is a no-op. */
KILN_API void kiln_ctx_free(kiln_ctx *ctx);
/* The message of the context's most recent error, or "not an error".
** The string stays valid until the next call that takes ctx.
** A NULL ctx gives a message saying so. */
KILN_API const char *kiln_errmsg(const kiln_ctx *ctx);
/* The status of the context's most recent error (KILN_OK if none). */
KILN_API kiln_status kiln_errcode(const kiln_ctx *ctx);
/* Forgets the current error, so builders work again after a failed one. */
KILN_API void kiln_clear_error(kiln_ctx *ctx);

/* Threads. A context runs the steps of its functions on n threads: the
** calling thread and n - 1 workers of its own, started here (persistent:
** they spin briefly after each piece of work, then sleep) and joined by
** kiln_ctx_set_threads(ctx, 1) or kiln_ctx_free. 1, the default, runs
** everything in the caller. Only large kernels are shared out: elementwise
** kernels of at least 2^15 elements (their vectorized version: every call
** that no broadcast of a dynamic size of 1 sends to the general step, see
** kiln_function_new) and float sums down to one value whose rows (last
** axis) are longer than 2^14 elements; smaller ones run inline. Kernels are
** cut into fixed chunks that depend on the shapes only, and the sum order
** (kiln_reduce below) is defined over those chunks, so results are
** bit-identical for every thread count. A call still returns only when its
** step is done; a context stays single-threaded for its user (see
** "Thread safety" above).
** The environment variable KILN_THREADS=n (1 to 256) sets the count of
** every new context; another value is ignored, and if the threads cannot
** be started the context has one thread.
** Returns KILN_OK; KILN_MISUSE for a NULL or foreign ctx or n outside
** 1..256; KILN_NOMEM or KILN_ERROR when memory or a thread cannot be had
** (pthread_create failed): the message says which, and the context keeps
** its previous thread count. Must not be called during kiln_call. */
KILN_API kiln_status kiln_ctx_set_threads(kiln_ctx *ctx, int n);
/* The context's thread count (1 by default), -1 for a NULL or foreign ctx. */
KILN_API int kiln_ctx_threads(const kiln_ctx *ctx);

/* Compile threads. kiln_function_new (and a call that compiles a general
** step, see kiln_function_new) compiles a large step in parts on up to n
** threads, started for that compile and joined before it returns. n = 0,
** the default, means the environment variable KILN_COMPILE_THREADS if it is
** 1..4, else the online CPUs up to 4; 1 compiles on the calling thread. The
** code is the same whatever the count. Returns KILN_OK, or KILN_MISUSE for
** a NULL or foreign ctx or n outside 0..KILN_MAX_COMPILE_THREADS. */
#define KILN_MAX_COMPILE_THREADS 4
KILN_API kiln_status kiln_ctx_set_compile_threads(kiln_ctx *ctx, int n);
/* The setting (0: automatic), -1 for a NULL or foreign ctx. */
KILN_API int kiln_ctx_compile_threads(const kiln_ctx *ctx);

/* ---------------------------------------------------------------- tensors */
/* A tensor is a dense, C-ordered array with a dtype and a shape, its data
** 64-byte aligned. Tensors are independent of contexts. */

/* A new tensor of the given dtype and shape (rank 0..KILN_MAX_RANK, every
** size >= 0; shape may be NULL when rank is 0). data (may be NULL: zeros)
** is copied; it holds size * kiln_dtype_size(dtype) bytes in C order.
** Returns NULL for a bad argument or when out of memory. */
KILN_API kiln_tensor *kiln_tensor_new(kiln_dtype dtype, int rank, const int64_t *shape,
                                      const void *data);
/* Frees a tensor from kiln_tensor_new. NULL is a no-op. Tensors borrowed from
** a function or a shared variable must not be freed. */
KILN_API void kiln_tensor_free(kiln_tensor *t);
KILN_API kiln_dtype kiln_tensor_dtype(const kiln_tensor *t);
KILN_API int kiln_tensor_rank(const kiln_tensor *t);
/* Size of dimension i (0 <= i < rank), or -1 if out of range. */
KILN_API int64_t kiln_tensor_dim(const kiln_tensor *t, int i);
/* Number of elements (1 for rank 0). */
KILN_API int64_t kiln_tensor_size(const kiln_tensor *t);
/* The data, C order. Writable for tensors from kiln_tensor_new. */
KILN_API void *kiln_tensor_data(const kiln_tensor *t);
/* Element i (flat C-order index) converted to double; NaN if out of range. */
KILN_API double kiln_tensor_get(const kiln_tensor *t, int64_t i);
/* Prints the tensor as numpy's str() does: "[0.1  0.25 0.15 0.3 ]",
** "[[1 2]\n [3 4]]", a rank-0 float as Python's shortest repr ("0.8").
** At most 8 decimals for floats, as numpy's default print options.
** Returns the number of bytes written, or -1 on a bad argument or I/O error. */
KILN_API int kiln_tensor_print(const kiln_tensor *t, FILE *out);
/* Same text into buf (always NUL-terminated when n > 0). Returns the length
** the full text has (as snprintf), or -1 on a bad argument. */
KILN_API int kiln_tensor_sprint(const kiln_tensor *t, char *buf, size_t n);
/* Formats a double as Python's repr(): the shortest string that reads back
** to the same double ("0.8", "80.16000000000001", "1e-05", "inf", "nan").
** Returns the length, as snprintf. */
KILN_API int kiln_format_double(double v, char *buf, size_t n);

/* ---------------------------------------------------------------- leaves */

/* A symbolic input of the given dtype and rank. dims holds rank sizes, each
** >= 0 or KILN_DYN; NULL dims means every dimension is dynamic. The name (may
** be NULL) is copied and appears in messages and dumps. */
KILN_API kiln_node *kiln_input_at(kiln_ctx *ctx, const char *name, kiln_dtype dtype, int rank,
                                  const int64_t *dims, const char *file, int line);
#define kiln_input(...) kiln_input_at(__VA_ARGS__, __FILE__, __LINE__)

/* Theano's shorthands: <prefix><kind>(ctx, name), prefix b=int8 w=int16
** i=int32 l=int64 f=float32 d=float64; kind scalar, vector, matrix, row (1,n),
** col (n,1), tensor3, tensor4. */
#define KILN__IN(ctx, name, dt, r, dims)                                                           \
  kiln_input_at((ctx), (name), (dt), (r), (dims), __FILE__, __LINE__)
#define KILN__ROW ((const int64_t[]){1, KILN_DYN})
#define KILN__COL ((const int64_t[]){KILN_DYN, 1})
#define kiln_bscalar(c, n) KILN__IN(c, n, KILN_INT8, 0, NULL)
#define kiln_bvector(c, n) KILN__IN(c, n, KILN_INT8, 1, NULL)
#define kiln_bmatrix(c, n) KILN__IN(c, n, KILN_INT8, 2, NULL)
#define kiln_wscalar(c, n) KILN__IN(c, n, KILN_INT16, 0, NULL)
#define kiln_wvector(c, n) KILN__IN(c, n, KILN_INT16, 1, NULL)
#define kiln_wmatrix(c, n) KILN__IN(c, n, KILN_INT16, 2, NULL)
#define kiln_iscalar(c, n) KILN__IN(c, n, KILN_INT32, 0, NULL)
#define kiln_ivector(c, n) KILN__IN(c, n, KILN_INT32, 1, NULL)
#define kiln_imatrix(c, n) KILN__IN(c, n, KILN_INT32, 2, NULL)
#define kiln_irow(c, n) KILN__IN(c, n, KILN_INT32, 2, KILN__ROW)
#define kiln_icol(c, n) KILN__IN(c, n, KILN_INT32, 2, KILN__COL)
#define kiln_itensor3(c, n) KILN__IN(c, n, KILN_INT32, 3, NULL)
#define kiln_itensor4(c, n) KILN__IN(c, n, KILN_INT32, 4, NULL)
#define kiln_lscalar(c, n) KILN__IN(c, n, KILN_INT64, 0, NULL)
#define kiln_lvector(c, n) KILN__IN(c, n, KILN_INT64, 1, NULL)
#define kiln_lmatrix(c, n) KILN__IN(c, n, KILN_INT64, 2, NULL)
#define kiln_lrow(c, n) KILN__IN(c, n, KILN_INT64, 2, KILN__ROW)
#define kiln_lcol(c, n) KILN__IN(c, n, KILN_INT64, 2, KILN__COL)
#define kiln_ltensor3(c, n) KILN__IN(c, n, KILN_INT64, 3, NULL)
#define kiln_ltensor4(c, n) KILN__IN(c, n, KILN_INT64, 4, NULL)
#define kiln_fscalar(c, n) KILN__IN(c, n, KILN_FLOAT32, 0, NULL)
#define kiln_fvector(c, n) KILN__IN(c, n, KILN_FLOAT32, 1, NULL)
#define kiln_fmatrix(c, n) KILN__IN(c, n, KILN_FLOAT32, 2, NULL)
#define kiln_frow(c, n) KILN__IN(c, n, KILN_FLOAT32, 2, KILN__ROW)
#define kiln_fcol(c, n) KILN__IN(c, n, KILN_FLOAT32, 2, KILN__COL)
#define kiln_ftensor3(c, n) KILN__IN(c, n, KILN_FLOAT32, 3, NULL)
#define kiln_ftensor4(c, n) KILN__IN(c, n, KILN_FLOAT32, 4, NULL)
#define kiln_dscalar(c, n) KILN__IN(c, n, KILN_FLOAT64, 0, NULL)
#define kiln_dvector(c, n) KILN__IN(c, n, KILN_FLOAT64, 1, NULL)
#define kiln_dmatrix(c, n) KILN__IN(c, n, KILN_FLOAT64, 2, NULL)
#define kiln_drow(c, n) KILN__IN(c, n, KILN_FLOAT64, 2, KILN__ROW)
#define kiln_dcol(c, n) KILN__IN(c, n, KILN_FLOAT64, 2, KILN__COL)
#define kiln_dtensor3(c, n) KILN__IN(c, n, KILN_FLOAT64, 3, NULL)
#define kiln_dtensor4(c, n) KILN__IN(c, n, KILN_FLOAT64, 4, NULL)

/* A shared variable: state owned by the context that functions read and
** update. Its type has the dtype, rank and (static) shape given here; data
** (may be NULL: zeros) is copied. Later values must keep that shape. */
KILN_API kiln_node *kiln_shared_at(kiln_ctx *ctx, const char *name, kiln_dtype dtype, int rank,
                                   const int64_t *shape, const void *data, const char *file,
                                   int line);
#define kiln_shared(...) kiln_shared_at(__VA_ARGS__, __FILE__, __LINE__)
/* The current value of a shared variable, borrowed: valid until the next
** kiln_shared_set or kiln_call that updates it, or until the context is freed.
** NULL (and KILN_MISUSE in the context) if v is not a shared variable. */
KILN_API const kiln_tensor *kiln_shared_value(const kiln_node *v);
/* Copies the current value into out, which holds nbytes bytes.
** KILN_MISUSE if v is not shared; KILN_SHAPE if nbytes is not the value's size. */
KILN_API kiln_status kiln_shared_get(const kiln_node *v, void *out, size_t nbytes);
/* Replaces the value by a copy of t, which must have the variable's dtype and
** shape (KILN_TYPE / KILN_SHAPE otherwise, the value unchanged). */
KILN_API kiln_status kiln_shared_set(kiln_node *v, const kiln_tensor *t);

/* A constant with an explicit dtype (not weak); data is copied. */
KILN_API kiln_node *kiln_const_at(kiln_ctx *ctx, kiln_dtype dtype, int rank, const int64_t *shape,
                                  const void *data, const char *file, int line);
#define kiln_const(...) kiln_const_at(__VA_ARGS__, __FILE__, __LINE__)
/* A rank-0 constant of an explicit dtype holding v converted to it (as a C
** cast would; float->int saturates, NaN gives 0). */
KILN_API kiln_node *kiln_scalar_at(kiln_ctx *ctx, kiln_dtype dtype, double v, const char *file,
                                   int line);
#define kiln_scalar(...) kiln_scalar_at(__VA_ARGS__, __FILE__, __LINE__)
/* Weak number literals: kiln_lit(ctx, 0.1) is a weak float, kiln_lit(ctx, 2)
** a weak integer (the C type of the argument decides, as in Python). */
KILN_API kiln_node *kiln_flit_at(kiln_ctx *ctx, double v, const char *file, int line);
KILN_API kiln_node *kiln_ilit_at(kiln_ctx *ctx, int64_t v, const char *file, int line);
#define kiln_lit(ctx, v)                                                                           \
  _Generic((v), float                                                                              \
           : kiln_flit_at, double                                                                  \
           : kiln_flit_at, long double                                                             \
           : kiln_flit_at, default                                                                 \
           : kiln_ilit_at)((ctx), (v), __FILE__, __LINE__)

/* ---------------------------------------------------------------- nodes */

KILN_API kiln_ctx *kiln_node_ctx(const kiln_node *v);
KILN_API kiln_dtype kiln_node_dtype(const kiln_node *v);
/* Rank, or -1 for a NULL/invalid node. */
KILN_API int kiln_node_rank(const kiln_node *v);
/* Static size of dimension i, KILN_DYN if dynamic, -2 if i is out of range. */
KILN_API int64_t kiln_node_dim(const kiln_node *v, int i);
/* Gives the node a name (copied) for messages and dumps; returns v. */
KILN_API kiln_node *kiln_name(kiln_node *v, const char *name);
KILN_API const char *kiln_node_name(const kiln_node *v);

/* ---------------------------------------------------------------- ops */
/* Elementwise ops broadcast and promote as described at the top. */
#define KILN__B2(op)                                                                               \
  KILN_API kiln_node *kiln_##op##_at(kiln_node *a, kiln_node *b, const char *file, int line);
#define KILN__B1(op) KILN_API kiln_node *kiln_##op##_at(kiln_node *a, const char *file, int line);
KILN__B2(add)
KILN__B2(sub)
KILN__B2(mul)
KILN__B2(div)
KILN__B2(pow)
KILN__B2(intdiv)
KILN__B2(mod)
KILN__B2(maximum)
KILN__B2(minimum)
KILN__B1(neg) /* KILN_TYPE for bool */
KILN__B1(sqr)
KILN__B1(sqrt)
KILN__B1(exp)
KILN__B1(log)
KILN__B1(abs)
#define kiln_add(...) kiln_add_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_sub(...) kiln_sub_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_mul(...) kiln_mul_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_div(...) kiln_div_at(__VA_ARGS__, __FILE__, __LINE__)
/* a ** b. Integers: exact by squaring; a negative exponent gives 1/a**-b
** truncated toward zero (1, -1 or 0; 0**negative gives 0). */
#define kiln_pow(...) kiln_pow_at(__VA_ARGS__, __FILE__, __LINE__)
/* Floor division and its remainder on integer tensors (numpy's // and %):
** a // b rounds toward minus infinity, a % b has the sign of b. Dividing by
** zero gives 0 for both (numpy does the same, with a warning); the one
** overflowing case, the minimum integer // -1, wraps to itself. Float or
** bool operands give KILN_TYPE. */
#define kiln_intdiv(...) kiln_intdiv_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_mod(...) kiln_mod_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_maximum(...) kiln_maximum_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_minimum(...) kiln_minimum_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_neg(...) kiln_neg_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_sqr(...) kiln_sqr_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_sqrt(...) kiln_sqrt_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_exp(...) kiln_exp_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_log(...) kiln_log_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_abs(...) kiln_abs_at(__VA_ARGS__, __FILE__, __LINE__)

/* More elementwise functions. Integer and bool inputs are first converted
** to a float dtype as for exp. sigmoid is 1/(1+exp(-x)) for x >= 0 and
** exp(x)/(1+exp(x)) below (never overflows); softplus is log(1+exp(x))
** computed as x + log1p(exp(-x)) for x > 0 and log1p(exp(x)) otherwise;
** relu is maximum(x, 0) (NaN propagates, relu(-0.0) is -0.0; gradient 1
** where x > 0, 0 at and below the kink); sign is -1, 0 or 1 (NaN and -0.0
** kept) with a zero gradient, in the input's dtype (integers stay integers;
** bool is KILN_TYPE, as numpy has no bool sign). */
KILN__B1(sign)
KILN__B1(log1p)
KILN__B1(expm1)
KILN__B1(tanh)
KILN__B1(sigmoid)
KILN__B1(softplus)
KILN__B1(relu)
#define kiln_sign(...) kiln_sign_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_log1p(...) kiln_log1p_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_expm1(...) kiln_expm1_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_tanh(...) kiln_tanh_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_sigmoid(...) kiln_sigmoid_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_softplus(...) kiln_softplus_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_relu(...) kiln_relu_at(__VA_ARGS__, __FILE__, __LINE__)

/* Comparisons (numpy promotion of the operands, bool result; a NaN
** compares unequal to everything), logical ops (operands read as truth
** values: nonzero is true), isnan/isinf (false for integers). None has a
** gradient: gradients flowing through them are zero. */
KILN__B2(lt)
KILN__B2(le)
KILN__B2(gt)
KILN__B2(ge)
KILN__B2(eq)
KILN__B2(ne)
KILN__B2(logical_and)
KILN__B2(logical_or)
KILN__B1(logical_not)
KILN__B1(isnan)
KILN__B1(isinf)
#define kiln_lt(...) kiln_lt_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_le(...) kiln_le_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_gt(...) kiln_gt_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_ge(...) kiln_ge_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_eq(...) kiln_eq_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_ne(...) kiln_ne_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_logical_and(...) kiln_logical_and_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_logical_or(...) kiln_logical_or_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_logical_not(...) kiln_logical_not_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_isnan(...) kiln_isnan_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_isinf(...) kiln_isinf_at(__VA_ARGS__, __FILE__, __LINE__)

/* stop_gradient(x) is x, but gradients do not flow through it (Theano's
** consider_constant / disconnected_grad): a wrt reached only through it
** gets zeros. It costs nothing in a compiled function. */
KILN__B1(stop_gradient)
#define kiln_stop_gradient(...) kiln_stop_gradient_at(__VA_ARGS__, __FILE__, __LINE__)

/* where(c, a, b): a where c is true, else b (Theano's switch); c is read as a
** truth value, a and b promote together. The gradient goes to the chosen
** side. clip(x, lo, hi) is minimum(maximum(x, lo), hi) (numpy); the gradient
** reaches x where lo <= x <= hi (ties go to x, as maximum's and minimum's).
** cast(x, dtype) converts: float->int truncates toward zero and saturates,
** NaN -> 0; int->narrower int wraps; ->bool is x != 0. */
KILN_API kiln_node *kiln_where_at(kiln_node *c, kiln_node *a, kiln_node *b, const char *file,
                                  int line);
KILN_API kiln_node *kiln_clip_at(kiln_node *x, kiln_node *lo, kiln_node *hi, const char *file,
                                 int line);
KILN_API kiln_node *kiln_cast_at(kiln_node *x, kiln_dtype dtype, const char *file, int line);
#define kiln_where(...) kiln_where_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_clip(...) kiln_clip_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_cast(...) kiln_cast_at(__VA_ARGS__, __FILE__, __LINE__)

/* Reductions. kiln_sum/kiln_mean reduce every axis to a scalar; the _axis
** forms one axis (negative counts from the end), dropping it. */
KILN_API kiln_node *kiln_sum_at(kiln_node *x, const char *file, int line);
KILN_API kiln_node *kiln_mean_at(kiln_node *x, const char *file, int line);
KILN_API kiln_node *kiln_sum_axis_at(kiln_node *x, int axis, const char *file, int line);
KILN_API kiln_node *kiln_mean_axis_at(kiln_node *x, int axis, const char *file, int line);
#define kiln_sum(...) kiln_sum_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_mean(...) kiln_mean_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_sum_axis(...) kiln_sum_axis_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_mean_axis(...) kiln_mean_axis_at(__VA_ARGS__, __FILE__, __LINE__)

/* Neural-network losses along the last axis, computed stably (shifted by
** the row maximum): log_softmax(x) = (x - m) - log(sum(exp(x - m))),
** softmax(x) = exp(log_softmax(x)), and crossentropy(z, t) =
** -sum(t * log_softmax(z)) per row for one-hot or probability targets t of
** z's shape (entries with t == 0 contribute 0, even against a -inf logit).
** A row whose logits are all -inf gives NaN (there is no distribution):
** NaN log_softmax, softmax and crossentropy for that row, and a NaN
** gradient, as numpy's and Theano's formulas give; a -inf logit in a row
** with a finite one is fine (softmax 0 there, crossentropy finite when the
** target there is 0, gradient finite). The gradient of crossentropy wrt z
** is softmax(z) * sum(t) - t per row, which is softmax(z) - t for targets
** summing to 1. Integer inputs are converted to float first. */
KILN_API kiln_node *kiln_log_softmax_at(kiln_node *x, const char *file, int line);
KILN_API kiln_node *kiln_softmax_at(kiln_node *x, const char *file, int line);
KILN_API kiln_node *kiln_crossentropy_at(kiln_node *z, kiln_node *t, const char *file, int line);
#define kiln_log_softmax(...) kiln_log_softmax_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_softmax(...) kiln_softmax_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_crossentropy(...) kiln_crossentropy_at(__VA_ARGS__, __FILE__, __LINE__)
/* The same along any axis (negative counts from the end): numpy/Theano's
** softmax(x, axis). */
KILN_API kiln_node *kiln_log_softmax_axis_at(kiln_node *x, int axis, const char *file, int line);
KILN_API kiln_node *kiln_softmax_axis_at(kiln_node *x, int axis, const char *file, int line);
#define kiln_log_softmax_axis(...) kiln_log_softmax_axis_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_softmax_axis(...) kiln_softmax_axis_at(__VA_ARGS__, __FILE__, __LINE__)
/* Categorical crossentropy against integer class labels (Theano's
** categorical_crossentropy with an int vector of targets): labels has z's
** shape without the last axis; per row -log_softmax(z)[label]. The number
** of classes, z's last size, must be static (KILN_SHAPE otherwise); labels
** that are not integers or of the wrong rank are KILN_TYPE; a label outside
** [0, classes) is a KILN_SHAPE error of kiln_call naming it (one_hot's).
** Gradient wrt z: (softmax(z) - one_hot(labels)) * g per row. */
KILN_API kiln_node *kiln_crossentropy_labels_at(kiln_node *z, kiln_node *labels, const char *file,
                                                int line);
#define kiln_crossentropy_labels(...) kiln_crossentropy_labels_at(__VA_ARGS__, __FILE__, __LINE__)

/* The general reduction: op over the axes axes[0..n_axes-1] of x (negative
** axes count from the end; n_axes 0, axes NULL: every axis -- not numpy's
** axis=(), which reduces none). With keepdims != 0 the reduced axes stay,
** with size 1, as numpy's keepdims=True. A repeated or out-of-range axis is
** KILN_SHAPE, naming x; a bad op or axis list KILN_MISUSE.
**
** Every reduction visits the elements of each output in increasing index
** order (row-major over the reduced axes), so results never depend on
** threads or vector width -- with one exception, for speed: a float sum
** over every axis (kiln_sum, kiln_mean, with or without keepdims) uses a
** blocked order. Along the last axis, of length n, element k below
** cut = n - n % 16 goes to lane k % 16 and the others to a tail sum, rows
** (the other axes) in C order, every lane and the tail adding from +0.0 in
** that order. A row whose blocked part is longer than 2^14 elements
** (cut > 16384) is added in chunks of 2^14 (the last one shorter): each
** chunk's elements go to 16 partial lanes starting at +0.0, which are then
** added lane by lane to the running lanes, chunk after chunk (a chunk is
** what one thread computes: see kiln_ctx_set_threads). Finally lane j +=
** lane j + w for w = 8, 4, 2, 1, and the sum is lane 0 + tail. A row of
** fewer than 16 elements is thus summed in plain index order.
**  KILN_SUM, KILN_MEAN  as kiln_sum/kiln_mean above (mean = sum / count).
**  KILN_MAX, KILN_MIN   keep the dtype. numpy's rules: the fold of
**      maximum/minimum (below) from the first element: NaN propagates (the
**      first NaN is the result), between equal values (-0.0, 0.0) the first
**      stays; bool max is any, min is all. An axis of size 0 has no result:
**      KILN_SHAPE when the graph is built (static size) or at the call.
**      Gradient: g goes to every element equal to the result (Theano's
**      rule; with ties each tied element gets all of g; a NaN result passes
**      no gradient).
**  KILN_PROD  starts at 1; bool and integers multiply in int64 (numpy), so
**      prod of int8 [100, 100] is 10000, and int64 wraps (two's complement).
**      Gradient, safe at zeros: with no zero among the reduced elements g *
**      prod / x; with exactly one zero, that element gets g * (product of
**      the others) and the others 0; with two or more zeros all get 0.
**  KILN_ARGMAX, KILN_ARGMIN  int64 index of the first maximum / minimum
**      along ONE axis, or (all axes) into the row-major flattened array
**      (numpy allows nothing else: KILN_SHAPE). A NaN counts as the extreme:
**      the index of the first NaN. An axis of size 0 is KILN_SHAPE as for
**      max. No gradient: kiln_grad fails with KILN_NOGRAD naming the argmax
**      when the cost depends on its value and a wrt reaches its input.
**  KILN_LOGSUMEXP  log(sum(exp(x))) computed as m + log(sum(exp(x - m)))
**      with m the maximum over the axes, replaced by 0 where not finite:
**      all -inf gives -inf (not NaN), +inf gives +inf, NaN gives NaN.
**      Integers become float as for exp. An axis of size 0 is KILN_SHAPE
**      (through max). Its gradient, softmax, follows from the parts. */
typedef enum kiln_reduce_op {
  KILN_SUM = 0,
  KILN_MEAN,
  KILN_MAX,
  KILN_MIN,
  KILN_PROD,
  KILN_ARGMAX,
  KILN_ARGMIN,
  KILN_LOGSUMEXP,
  KILN_N_REDUCE_OPS
} kiln_reduce_op;
KILN_API kiln_node *kiln_reduce_at(kiln_node *x, kiln_reduce_op op, int n_axes, const int *axes,
                                   int keepdims, const char *file, int line);
#define kiln_reduce(...) kiln_reduce_at(__VA_ARGS__, __FILE__, __LINE__)
/* Shorthands: every axis to a scalar, or one axis dropped (as kiln_sum and
** kiln_sum_axis); argmax/argmin along one axis; logsumexp along one axis. */
KILN_API kiln_node *kiln_max_at(kiln_node *x, const char *file, int line);
KILN_API kiln_node *kiln_min_at(kiln_node *x, const char *file, int line);
KILN_API kiln_node *kiln_prod_at(kiln_node *x, const char *file, int line);
KILN_API kiln_node *kiln_max_axis_at(kiln_node *x, int axis, const char *file, int line);
KILN_API kiln_node *kiln_min_axis_at(kiln_node *x, int axis, const char *file, int line);
KILN_API kiln_node *kiln_prod_axis_at(kiln_node *x, int axis, const char *file, int line);
KILN_API kiln_node *kiln_argmax_at(kiln_node *x, int axis, const char *file, int line);
KILN_API kiln_node *kiln_argmin_at(kiln_node *x, int axis, const char *file, int line);
KILN_API kiln_node *kiln_logsumexp_at(kiln_node *x, int axis, int keepdims, const char *file,
                                      int line);
#define kiln_max(...) kiln_max_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_min(...) kiln_min_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_prod(...) kiln_prod_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_max_axis(...) kiln_max_axis_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_min_axis(...) kiln_min_axis_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_prod_axis(...) kiln_prod_axis_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_argmax(...) kiln_argmax_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_argmin(...) kiln_argmin_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_logsumexp(...) kiln_logsumexp_at(__VA_ARGS__, __FILE__, __LINE__)

/* Binary cross-entropy, elementwise (Theano's binary_crossentropy):
** binary_crossentropy(p, t) = -(t log(p) + (1 - t) log(1 - p)) for
** probabilities p and targets t in [0, 1] (shapes broadcast); p of exactly
** 0 or 1 gives inf or NaN terms, as in numpy. When p is sigmoid(z), the
** optimizer's stability rewrites turn the logs into softplus terms, and
** kiln_grad differentiates that form. sigmoid_binary_crossentropy(z, t) =
** softplus(z) - t z is the same loss on logits z, finite for every finite
** z in every mode (also without optimization); its gradient wrt z is
** sigmoid(z) - t. Integer inputs are converted to float first. */
KILN_API kiln_node *kiln_binary_crossentropy_at(kiln_node *p, kiln_node *t, const char *file,
                                                int line);
KILN_API kiln_node *kiln_sigmoid_binary_crossentropy_at(kiln_node *z, kiln_node *t,
                                                        const char *file, int line);
#define kiln_binary_crossentropy(...) kiln_binary_crossentropy_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_sigmoid_binary_crossentropy(...)                                                      \
  kiln_sigmoid_binary_crossentropy_at(__VA_ARGS__, __FILE__, __LINE__)

/* ---------------------------------------------------------- linear algebra
** Products accumulate, per output element, a[.., i, p] * b[.., p, j] for
** p = 0, 1, ..., k-1 in that order, starting from 0 (an empty inner
** dimension gives zeros); integers wrap as numpy's do. Operands are
** promoted as for add. bool operands are KILN_TYPE (cast them first). An
** inner size (or batch size) mismatch is KILN_SHAPE naming both operands
** and the builder's source line: when the graph is built if the sizes are
** static, else from kiln_call. All return NULL on error (message in the
** context) and NULL quietly when an operand is NULL.
**
** kiln_dot is numpy.dot for ranks 0 to 2: scalar.anything multiplies
** elementwise (kiln_mul), vector.vector -> scalar, matrix.vector -> vector,
** vector.matrix -> vector, matrix.matrix -> matrix. Rank 3 or more is
** KILN_TYPE (numpy.dot's rule for stacks differs from matmul's: use
** kiln_matmul).
**
** kiln_matmul is numpy.matmul for ranks 1 to 3: as kiln_dot for ranks 1
** and 2; a rank-3 operand is a stack of matrices (b, n, k) . (b, k, m) ->
** (b, n, m), and a matrix with a stack is used for every element of the
** stack ((n, k) . (b, k, m) -> (b, n, m)). Differences from numpy: the batch
** sizes must be equal (a batch of 1 does not stretch) and a vector with a
** stack is KILN_TYPE; a scalar is KILN_TYPE as in numpy.
**
** kiln_batched_dot is Theano's batched_dot for two stacks: both rank 3.
**
** kiln_outer(a, b): out[i, j] = a[i] * b[j] (the product alone, no
** accumulation: -0.0 stays) for two vectors. numpy.outer flattens operands
** of other ranks; here any rank but 1 is KILN_TYPE (kiln_flatten(x, 1) first). */
KILN_API kiln_node *kiln_dot_at(kiln_node *a, kiln_node *b, const char *file, int line);
KILN_API kiln_node *kiln_matmul_at(kiln_node *a, kiln_node *b, const char *file, int line);
KILN_API kiln_node *kiln_batched_dot_at(kiln_node *a, kiln_node *b, const char *file, int line);
KILN_API kiln_node *kiln_outer_at(kiln_node *a, kiln_node *b, const char *file, int line);
#define kiln_dot(...) kiln_dot_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_matmul(...) kiln_matmul_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_batched_dot(...) kiln_batched_dot_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_outer(...) kiln_outer_at(__VA_ARGS__, __FILE__, __LINE__)

/* ---------------------------------------------------------------- shape ops */

/* The 'x' of a Theano dimshuffle pattern: a new axis of size 1 (numpy's
** newaxis). */
#define KILN_NEWAXIS (-1)

/* Theano's x.dimshuffle(pattern): output axis i is axis pattern[i] of x, or
** a new axis of size 1 (broadcastable) where pattern[i] is KILN_NEWAXIS.
** Each axis of x appears at most once; an axis left out must have static
** size 1 and is dropped. Theano's x.dimshuffle(1, 0, 'x') on a (2, 3)
** matrix is kiln_dimshuffle(x, 3, (int[]){1, 0, KILN_NEWAXIS}), shape
** (3, 2, 1); (int[]){KILN_NEWAXIS, 0} makes a vector a row. Axes are not
** negative here (-1 is KILN_NEWAXIS). Errors: an entry that is no axis of x,
** an axis listed twice, or a left-out axis whose size is not 1 is
** KILN_SHAPE naming x; n outside 0..KILN_MAX_RANK or a NULL pattern is
** KILN_MISUSE. The identity pattern returns x.
** kiln_transpose: axes[0..n_axes-1] a permutation of all of x's axes
** (negative ones count from the end, as numpy's transpose), or n_axes 0
** (axes NULL) to reverse them; a repeated or out-of-range axis, or a count
** that is not x's rank, is KILN_SHAPE.
** Both keep the dtype; a literal becomes a strong tensor. They cost no copy
** when they feed elementwise ops or reductions (the loops read x through the
** permuted indices). Gradient: the inverse dimshuffle of g. */
KILN_API kiln_node *kiln_dimshuffle_at(kiln_node *x, int n, const int *pattern, const char *file,
                                       int line);
KILN_API kiln_node *kiln_transpose_at(kiln_node *x, int n_axes, const int *axes, const char *file,
                                      int line);
#define kiln_dimshuffle(...) kiln_dimshuffle_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_transpose(...) kiln_transpose_at(__VA_ARGS__, __FILE__, __LINE__)

/* numpy's reshape, in C order: the elements of x, row-major, in the shape
** shape[0..n_dims-1], where at most one entry may be -1 (inferred from the
** element count; an empty x cannot infer it next to a 0). Other negative
** sizes and a second -1 are KILN_SHAPE. The element counts must agree:
** KILN_SHAPE when the graph is built if x's sizes are static, else when the
** function is called (naming the reshape, where it was built, x's shape and
** the new one; nothing is committed). A dynamic x gives a static result
** type except for the -1. Gradient: g reshaped back to x's (run-time)
** shape.
** kiln_flatten: Theano's flatten(x, ndim): the first ndim-1 axes of x stay
** (dynamic ones too) and the rest collapse into one; ndim 1 gives a vector
** of every element, also for a scalar. ndim outside 1..max(rank, 1) is
** KILN_SHAPE.
** Reading a reshaped value costs no copy when it feeds elementwise ops or
** reductions (x is read at the flat index); x itself is materialized. */
KILN_API kiln_node *kiln_reshape_at(kiln_node *x, int n_dims, const int64_t *shape,
                                    const char *file, int line);
KILN_API kiln_node *kiln_flatten_at(kiln_node *x, int ndim, const char *file, int line);
#define kiln_reshape(...) kiln_reshape_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_flatten(...) kiln_flatten_at(__VA_ARGS__, __FILE__, __LINE__)

/* ---------------------------------------------------------------- indexing */

/* One axis of a basic slice (numpy's x[start:stop:step], or x[i]).
** Flags: KILN_SLICE_NO_START / KILN_SLICE_NO_STOP for an omitted bound
** (numpy's defaults: 0 and the size for a positive step, the last element
** and "before the first" for a negative one); KILN_SLICE_INDEX for an
** integer index, start, which drops the axis (stop and step are ignored).
** Bounds follow numpy: negative ones count from the end, then they are
** clamped to the axis (x[-100:100] is all of x, x[5:2] is empty). */
typedef struct kiln_slice {
  int64_t start, stop, step;
  unsigned flags;
} kiln_slice;
#define KILN_SLICE_NO_START 1u
#define KILN_SLICE_NO_STOP 2u
#define KILN_SLICE_INDEX 4u
#define KILN_SLICE(start, stop, step) ((kiln_slice){(start), (stop), (step), 0u})
#define KILN_ALL ((kiln_slice){0, 0, 1, KILN_SLICE_NO_START | KILN_SLICE_NO_STOP})
#define KILN_FROM(start) ((kiln_slice){(start), 0, 1, KILN_SLICE_NO_STOP}) /* x[start:] */
#define KILN_UPTO(stop) ((kiln_slice){0, (stop), 1, KILN_SLICE_NO_START})  /* x[:stop] */
#define KILN_STEP(step) ((kiln_slice){0, 0, (step), KILN_SLICE_NO_START | KILN_SLICE_NO_STOP})
#define KILN_INDEX(i) ((kiln_slice){(i), 0, 1, KILN_SLICE_INDEX}) /* x[i]: drops the axis */

/* Basic slicing (Theano's subtensor, numpy's basic indexing): slices[d]
** applies to axis d of x for d < n_slices; the remaining axes are taken
** whole (x[1:3] of a matrix keeps every column). The result is a new tensor
** (Kiln has no views). Bounds are constants: with a dynamic size they are
** clamped at call time, from the size the call brings. Symbolic bounds (a
** graph node as start) are not supported; take with an index vector is the
** way to gather rows chosen at run time.
** Errors: a step of 0 or INT64_MIN, n_slices < 0, more slices than axes or a
** NULL array: KILN_MISUSE; an integer index out of range: KILN_SHAPE, when
** the graph is built for a static size, else from kiln_call (numpy's
** IndexError), naming x. Gradient: zeros of x's shape with the gradient
** written into the slice (Theano's IncSubtensor). */
KILN_API kiln_node *kiln_slice_at(kiln_node *x, int n_slices, const kiln_slice *slices,
                                  const char *file, int line);
#define kiln_slice(...) kiln_slice_at(__VA_ARGS__, __FILE__, __LINE__)

/* numpy.take(x, idx, axis): the elements of x at the integer indices idx
** along axis (negative counts from the end): the result has shape
** x.shape[:axis] + idx.shape + x.shape[axis+1:], x's dtype. An embedding
** lookup W[idx] is kiln_take(W, idx, 0). Negative indices count from the
** end, as numpy; an index outside [-n, n) is a KILN_SHAPE error of
** kiln_call naming the node, the index and the size (shared variables stay
** bit-identical). idx must be an integer tensor (KILN_TYPE otherwise).
** Gradient with respect to x: zeros of x's shape into which the gradient
** is added at the indices (a repeated index accumulates, in the row-major
** order of idx); none with respect to idx (an integer). */
KILN_API kiln_node *kiln_take_at(kiln_node *x, kiln_node *idx, int axis, const char *file,
                                 int line);
#define kiln_take(...) kiln_take_at(__VA_ARGS__, __FILE__, __LINE__)

/* One-hot encoding (Theano's to_one_hot): for integer labels of any shape, a
** tensor of shape labels.shape + (n_classes,) and the given dtype (Theano's
** default is floatX: pass KILN_FLOAT64 or KILN_FLOAT32), 1 at the label and
** 0 elsewhere. A label outside [0, n_classes) -- negative ones included,
** unlike numpy's eye(n)[labels], which would wrap them -- is a KILN_SHAPE
** error of kiln_call naming the node and the label. Errors when built:
** labels not integers (KILN_TYPE), n_classes < 1 or a bad dtype
** (KILN_MISUSE). No gradient flows to the labels (integers). */
KILN_API kiln_node *kiln_one_hot_at(kiln_node *labels, int64_t n_classes, kiln_dtype dtype,
                                    const char *file, int line);
#define kiln_one_hot(...) kiln_one_hot_at(__VA_ARGS__, __FILE__, __LINE__)

/* numpy.concatenate(xs, axis) and numpy.stack(xs, axis) of n >= 1 tensors
** (negative axes count from the end; stack's axis ranges over the result's
** axes). The dtype is numpy's promotion of the operands'. concatenate needs
** equal ranks (>= 1) and equal sizes off the axis; stack equal shapes.
** Static sizes are checked when built (KILN_SHAPE), dynamic ones at the call.
** Gradients: each operand gets its part of the gradient. Built as a chain of
** two-operand concatenations. */
KILN_API kiln_node *kiln_concatenate_at(int n, kiln_node *const *xs, int axis, const char *file,
                                        int line);
KILN_API kiln_node *kiln_stack_at(int n, kiln_node *const *xs, int axis, const char *file,
                                  int line);
#define kiln_concatenate(...) kiln_concatenate_at(__VA_ARGS__, __FILE__, __LINE__)
#define kiln_stack(...) kiln_stack_at(__VA_ARGS__, __FILE__, __LINE__)

/* ---------------------------------------------------------------- grad */

/* Flags of kiln_grad. By default a wrt the cost does not depend on is a
** KILN_NOGRAD error (Theano's disconnected_inputs='raise'); with this flag
** its gradient is zeros of its type ('ignore'). */
#define KILN_GRAD_DISCONNECTED_ZERO 1u

/* Reverse-mode gradients of the scalar cost with respect to each of
** wrt[0..n_wrt-1], written to out_grads[i] (cleared to NULL first). Each
** gradient has its wrt's shape and dtype. A wrt the cost reaches only
** through comparisons or integers gets zeros, as in Theano.
** The cost is differentiated after the stability rewrites (see
** kiln_options): the gradient of log(softmax(x)), log(sigmoid(x)) or a
** hand-written exp(x)/sum(exp(x)) is that of the stable form, finite where
** the textbook form's gradient would divide by an underflowed value, in
** every mode. A wrt is never rewritten nor looked through.
** Returns KILN_OK, KILN_NOGRAD (non-scalar cost, disconnected wrt, an op
** without a gradient), KILN_TYPE (integer cost), KILN_NOMEM or KILN_MISUSE. */
KILN_API kiln_status kiln_grad_at(kiln_node *cost, int n_wrt, kiln_node *const *wrt,
                                  kiln_node **out_grads, unsigned flags, const char *file,
                                  int line);
#define kiln_grad(...) kiln_grad_at(__VA_ARGS__, __FILE__, __LINE__)

/* ---------------------------------------------------------------- function */

typedef struct kiln_update {
  kiln_node *shared; /* a shared variable */
  kiln_node *value;  /* its new value: same dtype, rank and shape */
} kiln_update;

/* Compiles a function of the given inputs (kiln_input nodes, each at most
** once) computing the outputs and updating shared variables. The update's
** value must have exactly the shared variable's dtype (KILN_TYPE otherwise,
** naming both) and a shape that equals its shape. A shared variable may be
** updated once. name (may be NULL: "f") names the function in dumps.
** Returns NULL on error, the message in ctx. The function is owned by ctx.
**
** Compiling: the function's step is compiled here without the kernels'
** broadcasting versions, which a call needs only when a dynamic size of 1
** stretches: an elementwise operand's dynamic dimension is 1 where the
** result's is not (u + v with u of size 1 and v of size 4). A dynamic
** size of 1 that does not stretch (a batch of 1 through a network) needs
** nothing more. The first call with a stretch compiles the general step
** (about as long as this compile); its failure is that call's status and
** commits nothing, and every later call uses whichever of the two steps
** its shapes need. A large step is compiled
** in parts on several threads: as many as the environment variable
** KILN_COMPILE_THREADS says (1..4; 1 compiles on the calling thread), by
** default the online CPUs up to 4; the threads live only during the
** compile, and the code is the same whatever their number. */
KILN_API kiln_function *kiln_function_new(kiln_ctx *ctx, const char *name, int n_inputs,
                                          kiln_node *const *inputs, int n_outputs,
                                          kiln_node *const *outputs, int n_updates,
                                          const kiln_update *updates);
/* A substitution made when a function is compiled (Theano's givens): the
** function computes as if every use of var were a use of expr. */
typedef struct kiln_given {
  kiln_node *var;  /* any node of the graph: an input, a shared variable, an expression */
  kiln_node *expr; /* its replacement: same dtype and rank, compatible static sizes */
} kiln_given;

/* Options of kiln_function_new_opts. Set size to sizeof(kiln_options); a
** zeroed struct (with size set) means: optimize (stability rewrites
** included), IEEE arithmetic, LLVM -O2, no givens.
**
** Stability rewrites (Theano's stabilize): log(softmax(x)) ->
** log_softmax(x), log(exp(x)) -> x, log(sigmoid(x)) -> -softplus(-x),
** log(1 - sigmoid(x)) -> -softplus(x), log(1 + exp(x)) and log1p(exp(x)) ->
** softplus(x), exp(x)/sum(exp(x)) over the last axis -> softmax(x) shifted
** by the row maximum. They change values where the textbook form overflows
** or underflows (that is their purpose), so they are not bit-exact. They
** run when optimizing; with no_optimize or no_stabilize a hand-written
** log(sigmoid(x)) is computed as written. kiln_grad always differentiates
** the stable form (see kiln_grad). The builders log_softmax, crossentropy
** and sigmoid_binary_crossentropy are stable in every mode.
**
** Givens: each givens[i].var is replaced by givens[i].expr in everything
** the function computes (outputs and update values), as Theano's givens.
** var may be any node (an input, a shared variable, an expression); expr
** must have var's dtype and rank (KILN_TYPE otherwise) and static sizes
** equal to var's wherever both are static (KILN_SHAPE); the message names
** both nodes and where they were built. A dimension static in var and
** dynamic in expr is fine: the nodes using it become dynamic and are
** checked at call time (the minibatch idiom: a shared variable of static
** shape replaced by an input). The substitution is simultaneous: exprs are
** used as given, a var inside an expr is not replaced. expr may use the
** function's inputs (which must then be listed) and shared variables. A
** var may be given once (KILN_MISUSE). Replacing a shared variable that is
** also updated changes what the function reads, not what it writes: the
** update still targets the shared variable, its value is computed with the
** replacement (Theano's rule). A listed input that is replaced stays an
** argument of kiln_call. The new nodes are added to the context. Equal
** compiled code is shared between functions only when their graphs after
** substitution are equal. */
typedef struct kiln_options {
  size_t size;        /* sizeof(kiln_options): lets the struct grow */
  int no_optimize;    /* 1: no graph rewrites and no fusion, each node its own loop */
  int fast_math;      /* 1: also rewrites that are not IEEE-exact (x*0 -> 0, x-x -> 0) */
  int llvm_opt_level; /* 0..3 for LLVM's pipeline; 0 here means the default, 2 */
  /* the fields above are the struct of version 0.1.0, whose size is still accepted */
  int no_stabilize;         /* 1: no stability rewrites (the rest of the optimizer runs) */
  int n_givens;             /* number of substitutions in givens */
  const kiln_given *givens; /* n_givens substitutions (may be NULL when n_givens is 0) */
} kiln_options;

/* kiln_function_new with options (opts may be NULL: the defaults).
** KILN_MISUSE if opts->size is not a size this library knows (the current
** sizeof(kiln_options), or that of version 0.1.0, which had the first four
** fields), or for a bad givens list (NULL entries, foreign nodes, a var
** given twice); KILN_TYPE/KILN_SHAPE for a given whose types differ. */
KILN_API kiln_function *kiln_function_new_opts(kiln_ctx *ctx, const char *name, int n_inputs,
                                               kiln_node *const *inputs, int n_outputs,
                                               kiln_node *const *outputs, int n_updates,
                                               const kiln_update *updates,
                                               const kiln_options *opts);

/* Frees a function and its compiled code. NULL is a no-op. */
KILN_API void kiln_function_free(kiln_function *f);

/* Runs one step. inputs[i] is the value of input i (dtype and rank must
** match exactly; static dims too). outputs may be NULL; else outputs[i]
** receives the value of output i, borrowed from the function and valid until
** its next call or free. An input may be memory the step writes -- an output
** of the last call passed back in, or kiln_shared_value of a variable this
** function updates -- and is then read as it was when the call began (Kiln
** copies it first). On error nothing is committed: shared variables
** stay bit-identical. Status: KILN_OK, KILN_MISUSE, KILN_TYPE, KILN_SHAPE (shapes, and
** an index out of range in kiln_take or kiln_one_hot),
** KILN_NOMEM, KILN_LLVM (compiling the general step, see kiln_function_new);
** the message is in the function's context. */
KILN_API kiln_status kiln_call(kiln_function *f, const kiln_tensor *const *inputs,
                               const kiln_tensor **outputs);

KILN_API int kiln_function_n_inputs(const kiln_function *f);
KILN_API int kiln_function_n_outputs(const kiln_function *f);

/* What kiln_function_dump can show. Every stage is also written, for each
** function compiled while the environment variable KILN_DUMP_DIR names a
** directory, to the file <dir>/<function name>.<stage name>; the stage
** names are given in brackets. KILN_TIMING=1 prints the time of every
** compiler pass and of LLVM to stderr. Once a call has compiled the general
** step (see kiln_function_new), the ll, opt.ll and s stages show it after
** the fast step's text, below a line starting "; ---- kiln: the general
** step"; a step compiled in parts shows its parts one after the other.
**
** On-disk compile cache: when the environment variable KILN_CACHE_DIR names
** an existing writable directory, each compiled step is also stored there as
** an object file (kiln-<hash>.obj, written to a temporary name and renamed,
** so concurrent processes are safe), and a later kiln_function_new of an
** equal optimized graph -- in any process, on the same host CPU, LLVM and
** Kiln build -- links that object instead of running LLVM (a few ms instead
** of tens or hundreds). Anything unusable (another CPU or build, a damaged
** or truncated file, an unwritable directory) is silently a miss. A step
** linked from the cache keeps no LLVM texts: its ll, opt.ll and s stages
** fail with KILN_MISUSE; with KILN_DUMP_DIR set the cache is not read. */
typedef enum kiln_stage {
  KILN_STAGE_GRAPH = 0, /* [graph] the function graph as built, one node per line */
  KILN_STAGE_LLVM_IR,   /* [ll] the LLVM module as generated, before LLVM's passes */
  KILN_STAGE_LLVM_OPT,  /* [opt.ll] the LLVM module after LLVM's passes (what runs) */
  KILN_STAGE_ASM,       /* [s] host assembly of the optimized module */
  KILN_STAGE_OPT_GRAPH, /* [opt] the graph after Kiln's passes, with its schedule */
  KILN_STAGE_PLAN,      /* [plan] kernels (loop nests), scalars, buffers, updates */
  KILN_STAGE_DOT,       /* [dot] Graphviz drawing of the optimized graph */
  KILN_N_STAGES
} kiln_stage;

/* Writes a stage of the function to out. KILN_MISUSE on bad arguments,
** KILN_ERROR on an I/O error, KILN_LLVM if the assembly cannot be made.
** The graph text has one node per line:
**   %4 = mul(%3, %2) : float64 (4,) 'y'  @ seed.c:41  <fused>  [rule that made it]
** with the node's id, op, operands, dtype and shape ('?' for a dynamic
** size), name, where it was built, how it is computed (after fusion) and
** which rewrite made it. */
KILN_API kiln_status kiln_function_dump(const kiln_function *f, kiln_stage stage, FILE *out);

/* Every stage by name, including the graph after each pass that changed it:
** "pass.NN.<pass>" (NN counts the passes that changed something). The
** number of names, the i-th name (NULL past the end), and the named stage. */
KILN_API int kiln_function_n_dumps(const kiln_function *f);
KILN_API const char *kiln_function_dump_name(const kiln_function *f, int i);
KILN_API kiln_status kiln_function_dump_named(const kiln_function *f, const char *stage, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* KILN_H */
