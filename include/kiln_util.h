/*
** kiln_util.h -- helpers built on Kiln's core API, as Lua's lauxlib.h is on
** lua.h: loading and saving arrays (.npy, CSV) and seeded random
** initialization of shared variables. Nothing here reaches into the graph or
** the compiler; every function could be written by a user of kiln.h.
**
** Conventions (besides those of kiln.h):
**
**  - File functions report errors through a caller's buffer: err holds errn
**    bytes and receives a NUL-terminated English message that names the file
**    (and the line, for CSV). err may be NULL or errn 0: no message. On
**    success err is set to the empty string.
**  - Functions that make a tensor store it in *out, which they set to NULL
**    first, so *out is NULL after any failure. The tensor is the caller's, to
**    free with kiln_tensor_free.
**  - Status codes: KILN_MISUSE for NULL or invalid arguments, KILN_ERROR for
**    I/O and format errors, KILN_TYPE for a dtype or rank Kiln cannot hold,
**    KILN_NOMEM when an allocation fails. Nothing aborts on a bad file.
**  - The random initializers write shared variables only through
**    kiln_shared_set, so their errors are statuses with the message in the
**    variable's context (kiln_errmsg), and a failed call leaves the variable
**    unchanged.
*/
#ifndef KILN_UTIL_H
#define KILN_UTIL_H

#include "kiln.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- .npy */
/* numpy's .npy format (numpy.save / numpy.load), for the 8 Kiln dtypes:
** '|b1' bool, '|i1' int8, '<i2' int16, '<i4' int32, '<i8' int64, '|u1' uint8,
** '<f4' float32, '<f8' float64. */

/* Writes t to path as numpy.save does (format version 1.0, little-endian,
** C order), byte for byte what numpy >= 1.23 writes for the same array: the
** header dict with sorted keys, 21 spare spaces for growing the first axis,
** padding so the data starts at a multiple of 64 bytes, a final '\n'.
** The file is written to a temporary file in the same directory (named
** path + ".tmp-<pid>-<n>", created with mode 0666 minus the umask), flushed
** to disk and renamed over path, so path either keeps its old content or
** holds the whole new file; a failed save removes the temporary file.
** Borrowed tensors (shared values, function outputs) may be saved.
** Returns KILN_OK, KILN_MISUSE (path or t NULL or not a tensor), KILN_ERROR
** (cannot create, write or rename; the message has the system's reason) or
** KILN_NOMEM. */
KILN_API kiln_status kiln_npy_save(const char *path, const kiln_tensor *t, char *err, size_t errn);

/* Reads a .npy file into a new tensor stored in *out (cleared to NULL first;
** free it with kiln_tensor_free).
** Accepted: format versions 1.0, 2.0 and 3.0; the header dict in any key
** order, with ' or " quotes, spaces anywhere, with or without a trailing
** comma, Python 2's "3L" integers; the byte order '<', '|' or '=' (or none)
** for every dtype, and '>' (big-endian: the data is byte-swapped, as numpy
** does); 'fortran_order': True (the data is reordered to C order, as numpy
** does); '?' as a name for bool.
** Rejected, with KILN_ERROR: a missing or unreadable file, a bad magic
** string, another format version, a header longer than 10000 bytes
** (numpy's own limit), a header that is not a dict of exactly the keys
** 'descr', 'fortran_order' and 'shape' with values of the right kinds, a
** negative dimension, a shape whose byte size overflows, data shorter than
** the shape says, and bytes after the data (numpy ignores those; Kiln
** treats them as a sign of a corrupt or mislabeled file).
** Rejected with KILN_TYPE: any other dtype (unsigned wider than 8 bits,
** float16, complex, strings, objects, structured dtypes, ...) and a rank
** above KILN_MAX_RANK. KILN_NOMEM when out of memory, KILN_MISUSE when path
** or out is NULL. The shape is checked against the file's size before
** memory is allocated, so a lying header cannot cause a huge allocation. */
KILN_API kiln_status kiln_npy_load(const char *path, kiln_tensor **out, char *err, size_t errn);

/* ---------------------------------------------------------------- CSV */

/* Reads a table of numbers into a new rank-2 tensor (rows, columns) of the
** given dtype, stored in *out (cleared to NULL first). The file may be
** plain text or gzip-compressed (recognized by its magic bytes, whatever its
** name). The first skip_header_lines lines (>= 0) are skipped unread.
** Fields are separated by ',' and may have spaces or tabs around them; each
** is parsed by strtod in the C locale, whatever locale the program has set
** (so "nan", "inf", "1e-3" and hex floats are numbers), then converted to
** dtype as kl_convert does (Kiln's casts: float->integer truncates toward
** zero and saturates, NaN gives 0; ->bool is != 0). For int64, a field that
** is a plain decimal integer is read exactly (strtoll), not through a
** double. Lines end in '\n' or "\r\n"; the last may lack its newline; a
** UTF-8 byte order mark at the start is skipped. Blank lines (empty or only
** spaces, tabs) are skipped wherever they are, as numpy.loadtxt does.
** Errors (KILN_ERROR), with the message "<path>:<line>: ..." naming the line
** (counting every line of the file from 1): a row whose number of fields
** differs from the first data row's, an empty field, a field that is not a
** number, a NUL byte, a file with no data rows, a missing or unreadable
** file, corrupt or truncated gzip data. KILN_MISUSE for a NULL path or out,
** a negative skip_header_lines or an invalid dtype; KILN_NOMEM when out of
** memory. Comments, quoting and other separators are not supported. */
KILN_API kiln_status kiln_csv_load(const char *path, int skip_header_lines, kiln_dtype dtype,
                                   kiln_tensor **out, char *err, size_t errn);

/* ---------------------------------------------------------------- random */
/* A small, fast, seedable generator: xoshiro256** (Blackman and Vigna,
** 2018; period 2^256 - 1), its state filled by splitmix64 from a 64-bit seed.
** The sequence for a seed is fixed by this header's contract and does not
** depend on the platform (kiln_rng_normal also depends on libm's log and
** sqrt). The state is a plain struct: copy it to fork a stream, store it to
** resume one. A kiln_rng must be seeded before use. Functions given a NULL
** generator do nothing and return 0 (integers) or NaN (doubles). */

typedef struct kiln_rng {
  uint64_t s[4];
} kiln_rng;

/* Seeds r: s[i] = the (i+1)-th output of splitmix64 started at seed. Any
** seed, including 0, gives a valid (never all-zero) state. */
KILN_API void kiln_rng_seed(kiln_rng *r, uint64_t seed);
/* The next 64 random bits (xoshiro256**). */
KILN_API uint64_t kiln_rng_next(kiln_rng *r);
/* A double uniform in [0, 1): the top 53 bits of kiln_rng_next times 2^-53.
** Uses one draw. */
KILN_API double kiln_rng_uniform(kiln_rng *r);
/* A standard normal deviate (mean 0, variance 1) by Marsaglia's polar
** method: draw u, v uniform in (-1, 1) until s = u^2 + v^2 is in (0, 1),
** return u * sqrt(-2 ln(s) / s). The second deviate of the pair is dropped
** (the generator carries no other state), so each call uses two or more
** draws, 2.55 on average. */
KILN_API double kiln_rng_normal(kiln_rng *r);
/* An integer uniform in [0, n), without modulo bias (draws that fall in the
** incomplete last block of 2^64 are rejected and redrawn). 0 when n is 0. */
KILN_API uint64_t kiln_rng_below(kiln_rng *r, uint64_t n);
/* Shuffles perm[0..n-1] in place (Fisher-Yates: for i from n-1 down to 1,
** swap perm[i] with perm[kiln_rng_below(r, i + 1)]); every order is equally
** likely. For a random permutation, fill perm with 0..n-1 first. Does
** nothing when r or perm is NULL or n < 2. */
KILN_API void kiln_shuffle(kiln_rng *r, int64_t *perm, int64_t n);

/* ---------------------------------------------------------------- init */
/* Each initializer fills the shared variable with fresh values in place: it
** builds a temporary tensor of the variable's dtype and shape, fills it in C
** order, one sample (or polar pair) per element, converting each double to
** the dtype as kl_convert does, and calls kiln_shared_set. For a given seed
** the values are therefore reproducible. Status: KILN_OK; KILN_MISUSE when
** shared is NULL or not a shared variable, r is NULL, or the parameters are
** invalid (message in the context, variable unchanged); KILN_NOMEM. */

/* Uniform in [lo, hi): lo + (hi - lo) * kiln_rng_uniform(r), computed in
** float64. lo and hi must be finite with lo <= hi (KILN_MISUSE otherwise).
** Rounding to float32 may give exactly hi; integer variables get the value
** truncated toward zero (so [0, 10) gives 0..9). */
KILN_API kiln_status kiln_init_uniform(kiln_node *shared, kiln_rng *r, double lo, double hi);
/* Normal: mean + std * kiln_rng_normal(r). mean finite, std finite and >= 0
** (KILN_MISUSE otherwise). */
KILN_API kiln_status kiln_init_normal(kiln_node *shared, kiln_rng *r, double mean, double std);
/* Glorot and Bengio's (2010) "Xavier" uniform initialization: uniform in
** [-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)). By rank:
**   rank 2 (in, out):     fan_in = shape[0], fan_out = shape[1];
**   rank >= 3 (conv kernels, e.g. (out, in, h, w)): with receptive field
**     rf = shape[2] * ... * shape[rank-1], fan_in + fan_out =
**     (shape[0] + shape[1]) * rf (the sum, all that matters here, is the
**     same for Theano/Lasagne's and Keras's layouts);
**   rank 1: fan_in = fan_out = shape[0];  rank 0: fan_in = fan_out = 1.
** An empty variable is left empty (KILN_OK). KILN_TYPE unless the variable
** is float32 or float64. */
KILN_API kiln_status kiln_init_glorot_uniform(kiln_node *shared, kiln_rng *r);
/* Sets every element to zero (false for bool). */
KILN_API kiln_status kiln_init_zeros(kiln_node *shared);

#ifdef __cplusplus
}
#endif
#endif /* KILN_UTIL_H */
