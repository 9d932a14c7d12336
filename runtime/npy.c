/*
** npy.c -- numpy's .npy files (kiln_util.h).
**
** A .npy file is the magic "\x93NUMPY", a major and a minor version byte,
** the header length (2 bytes little-endian in version 1.0, 4 bytes in 2.0
** and 3.0), the header -- the repr() of a Python dict with the keys
** 'descr', 'fortran_order' and 'shape', padded with spaces and ended by
** '\n' -- and then the raw array data.
**
** Saving mirrors numpy's writer (numpy/lib/format.py) exactly, so a Kiln
** file is byte-identical to numpy's for the same array: sorted keys, the 21
** spare spaces numpy >= 1.23 leaves for growing the first axis in place, and
** padding to a multiple of 64 bytes (a header that would already end on the
** boundary gets 64 more, as numpy's formula gives). The file is written
** under a temporary name in the same directory, fsync'ed and renamed over
** the target, so readers never see half a file.
**
** Loading parses the header with a small recursive-descent parser for the
** subset of Python literals that can occur in a valid header (strings,
** True/False, tuples of non-negative integers), instead of evaluating
** anything. Every length and size is checked before it is used: the header
** against a 10000-byte limit (numpy's), the shape's byte size against
** overflow and then against the file's actual size, so no allocation is
** made for data that is not there. Big-endian data is byte-swapped and
** Fortran-ordered data transposed into C order after reading.
*/
#include "kiln_util.h"
#include "runtime/rt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64            /* numpy's ARRAY_ALIGN */
#define NPY_GROWTH_DIGITS 21    /* numpy's GROWTH_AXIS_MAX_DIGITS */
#define NPY_MAX_HEADER 10000    /* numpy's default max_header_size */
#define NPY_IO_CHUNK (1u << 20) /* largest single read/write/swap */

/* What numpy writes for each Kiln dtype, in kiln_dtype order. */
static const char *const npy_descr[KILN_N_DTYPES] = {"|b1", "|i1", "<i2", "<i4",
                                                     "<i8", "|u1", "<f4", "<f8"};

/* ---------------------------------------------------------------- helpers */

#define fail kl_fail

/* The system's message for errno value e (thread-safe, XSI strerror_r). */
static const char *errstr(int e, char *buf, size_t n) {
  if (strerror_r(e, buf, n) != 0) snprintf(buf, n, "error %d", e);
  return buf;
}

static bool host_is_le(void) {
  const uint16_t one = 1;
  uint8_t b;
  memcpy(&b, &one, 1);
  return b == 1;
}

static void swap_bytes(void *data, size_t n_elems, size_t es) {
  uint8_t *p = data;
  for (size_t i = 0; i < n_elems; i++, p += es)
    for (size_t a = 0, b = es - 1; a < b; a++, b--) {
      uint8_t t = p[a];
      p[a] = p[b];
      p[b] = t;
    }
}

/* A printable copy of at most n - 1 bytes of s (for messages): control and
** non-ASCII bytes become '?', a longer text ends in "...". */
static const char *snippet(const char *s, size_t len, char *buf, size_t n) {
  size_t k = 0;
  bool cut = len > n - 1;
  size_t lim = cut ? n - 4 : len;
  for (; k < lim; k++) {
    unsigned char c = (unsigned char)s[k];
    buf[k] = c >= 32 && c < 127 ? (char)c : '?';
  }
  if (cut) {
    memcpy(buf + k, "...", 3);
    k += 3;
  }
  buf[k] = 0;
  return buf;
}

/* ---------------------------------------------------------------- header */

typedef struct hdr {
  const char *p, *end; /* cursor in the header text */
  const char *text;    /* the whole header, for messages */
  size_t len;
  const char *path;
  char *err;
  size_t errn;
  /* results */
  bool have_descr, have_fortran, have_shape;
  kiln_dtype dtype;
  bool swap;    /* the data's byte order is not the host's */
  bool fortran; /* 'fortran_order': True */
  int rank;
  int64_t shape[KILN_MAX_RANK];
} hdr;

static kiln_status bad_header(hdr *h, const char *what) {
  char snip[120];
  return fail(h->err, h->errn, KILN_ERROR, "%s: malformed .npy header: %s (header: %s)", h->path,
              what, snippet(h->text, h->len, snip, sizeof snip));
}

static void skip_ws(hdr *h) {
  while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
    h->p++;
}

static bool accept(hdr *h, char c) {
  skip_ws(h);
  if (h->p < h->end && *h->p == c) {
    h->p++;
    return true;
  }
  return false;
}

/* A Python string literal in ' or " quotes, without escapes. */
static kiln_status parse_string(hdr *h, const char **s, size_t *n) {
  skip_ws(h);
  if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) return bad_header(h, "expected a string");
  char q = *h->p++;
  const char *start = h->p;
  while (h->p < h->end && *h->p != q) {
    if (*h->p == '\\') return bad_header(h, "escape sequences in strings are not supported");
    if (*h->p == '\n') return bad_header(h, "unterminated string");
    h->p++;
  }
  if (h->p >= h->end) return bad_header(h, "unterminated string");
  *s = start;
  *n = (size_t)(h->p - start);
  h->p++;
  return KILN_OK;
}

static bool is_ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static kiln_status parse_bool(hdr *h, bool *v) {
  skip_ws(h);
  size_t left = (size_t)(h->end - h->p);
  size_t n = 0;
  if (left >= 4 && memcmp(h->p, "True", 4) == 0) {
    *v = true;
    n = 4;
  } else if (left >= 5 && memcmp(h->p, "False", 5) == 0) {
    *v = false;
    n = 5;
  }
  if (!n || (left > n && is_ident_char(h->p[n])))
    return bad_header(h, "'fortran_order' must be True or False");
  h->p += n;
  return KILN_OK;
}

/* A non-negative decimal integer, with Python 2's optional 'L' suffix. */
static kiln_status parse_dim(hdr *h, int64_t *v) {
  skip_ws(h);
  if (h->p < h->end && *h->p == '-') return bad_header(h, "negative dimension in 'shape'");
  if (h->p >= h->end || *h->p < '0' || *h->p > '9')
    return bad_header(h, "'shape' must be a tuple of integers");
  int64_t x = 0;
  while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
    int d = *h->p++ - '0';
    if (x > (INT64_MAX - d) / 10) return bad_header(h, "a dimension in 'shape' overflows int64");
    x = x * 10 + d;
  }
  if (h->p < h->end && (*h->p == 'L' || *h->p == 'l')) h->p++;
  if (h->p < h->end && is_ident_char(*h->p))
    return bad_header(h, "'shape' must be a tuple of integers");
  *v = x;
  return KILN_OK;
}

static kiln_status parse_shape(hdr *h) {
  if (!accept(h, '(')) return bad_header(h, "'shape' must be a tuple");
  h->rank = 0;
  if (accept(h, ')')) return KILN_OK;
  for (;;) {
    int64_t d;
    kiln_status st = parse_dim(h, &d);
    if (st) return st;
    if (h->rank == KILN_MAX_RANK) {
      /* Count the rest for the message, still parsing them. */
      int extra = 1;
      while (accept(h, ',') && !accept(h, ')')) {
        if ((st = parse_dim(h, &d))) return st;
        extra++;
      }
      return fail(h->err, h->errn, KILN_TYPE, "%s: the array has rank %d, Kiln supports up to %d",
                  h->path, KILN_MAX_RANK + extra, KILN_MAX_RANK);
    }
    h->shape[h->rank++] = d;
    if (accept(h, ')')) return KILN_OK;
    if (!accept(h, ',')) return bad_header(h, "expected ',' or ')' in 'shape'");
    if (accept(h, ')')) return KILN_OK;
  }
}

/* Maps a numpy type string ("<f8", "|b1", ">i4", "f4", "?") to a Kiln dtype. */
static kiln_status parse_descr(hdr *h, const char *s, size_t n) {
  static const struct {
    const char *code;
    kiln_dtype dt;
  } codes[] = {{"b1", KILN_BOOL},  {"?", KILN_BOOL},     {"i1", KILN_INT8},
               {"i2", KILN_INT16}, {"i4", KILN_INT32},   {"i8", KILN_INT64},
               {"u1", KILN_UINT8}, {"f4", KILN_FLOAT32}, {"f8", KILN_FLOAT64}};
  char order = '=';
  const char *c = s;
  size_t cn = n;
  if (cn && memchr("<>|=", c[0], 4)) {
    order = c[0];
    c++;
    cn--;
  }
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    if (strlen(codes[i].code) == cn && memcmp(codes[i].code, c, cn) == 0) {
      h->dtype = codes[i].dt;
      bool le = host_is_le();
      h->swap = kiln_dtype_size(h->dtype) > 1 && ((order == '>' && le) || (order == '<' && !le));
      return KILN_OK;
    }
  }
  char snip[40];
  return fail(h->err, h->errn, KILN_TYPE,
              "%s: unsupported dtype '%s' (Kiln reads b1, i1, i2, i4, i8, u1, f4 and f8)", h->path,
              snippet(s, n, snip, sizeof snip));
}

static kiln_status parse_header(hdr *h) {
  if (memchr(h->text, 0, h->len)) return bad_header(h, "NUL byte in the header");
  if (!accept(h, '{')) return bad_header(h, "not a dict");
  kiln_status st;
  while (!accept(h, '}')) {
    const char *key;
    size_t kn;
    if ((st = parse_string(h, &key, &kn))) return st;
    if (!accept(h, ':')) return bad_header(h, "expected ':' after a key");
    if (kn == 5 && memcmp(key, "descr", 5) == 0) {
      if (h->have_descr) return bad_header(h, "duplicate key 'descr'");
      h->have_descr = true;
      skip_ws(h);
      if (h->p < h->end && (*h->p == '[' || *h->p == '{'))
        return fail(h->err, h->errn, KILN_TYPE,
                    "%s: structured dtypes (record arrays) are not supported", h->path);
      const char *d;
      size_t dn;
      if ((st = parse_string(h, &d, &dn)) || (st = parse_descr(h, d, dn))) return st;
    } else if (kn == 13 && memcmp(key, "fortran_order", 13) == 0) {
      if (h->have_fortran) return bad_header(h, "duplicate key 'fortran_order'");
      h->have_fortran = true;
      if ((st = parse_bool(h, &h->fortran))) return st;
    } else if (kn == 5 && memcmp(key, "shape", 5) == 0) {
      if (h->have_shape) return bad_header(h, "duplicate key 'shape'");
      h->have_shape = true;
      if ((st = parse_shape(h))) return st;
    } else {
      return bad_header(h, "unexpected key (only 'descr', 'fortran_order' and 'shape')");
    }
    if (accept(h, '}')) break;
    if (!accept(h, ',')) return bad_header(h, "expected ',' or '}' after a value");
  }
  skip_ws(h);
  if (h->p != h->end) return bad_header(h, "text after the dict");
  if (!h->have_descr || !h->have_fortran || !h->have_shape)
    return bad_header(h, "missing key (needs 'descr', 'fortran_order' and 'shape')");
  return KILN_OK;
}

/* ---------------------------------------------------------------- load */

/* Copies the Fortran-ordered (column-major) array src into dst in C order. */
static void fortran_to_c(void *dst, const void *src, int rank, const int64_t *shape, size_t es,
                         int64_t n) {
  int64_t fstride[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0}, off = 0;
  for (int k = 0; k < rank; k++)
    fstride[k] = k ? fstride[k - 1] * shape[k - 1] : 1;
  uint8_t *d = dst;
  const uint8_t *s = src;
  for (int64_t j = 0; j < n; j++) {
    memcpy(d + (size_t)j * es, s + (size_t)off * es, es);
    for (int k = rank - 1; k >= 0; k--) {
      off += fstride[k];
      if (++idx[k] < shape[k]) break;
      off -= fstride[k] * shape[k];
      idx[k] = 0;
    }
  }
}

/* Reads exactly n bytes (in chunks); returns the number read. */
static size_t read_all(FILE *f, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    size_t want = n - got < NPY_IO_CHUNK ? n - got : NPY_IO_CHUNK;
    size_t r = fread((uint8_t *)buf + got, 1, want, f);
    got += r;
    if (r < want) break;
  }
  return got;
}

static kiln_status load_file(FILE *f, const char *path, kiln_tensor **out, char *err, size_t errn) {
  char eb[128];
  uint8_t pre[12];
  size_t got = fread(pre, 1, 10, f);
  if (got < NPY_MAGIC_LEN || memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
    if (ferror(f)) return fail(err, errn, KILN_ERROR, "%s: read error", path);
    return fail(err, errn, KILN_ERROR, "%s: not a .npy file (no \\x93NUMPY magic string)", path);
  }
  if (got < 10) return fail(err, errn, KILN_ERROR, "%s: truncated .npy header", path);
  int major = pre[6], minor = pre[7];
  size_t pre_len, hlen;
  if (major == 1 && minor == 0) {
    pre_len = 10;
    hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
  } else if ((major == 2 || major == 3) && minor == 0) {
    if (fread(pre + 10, 1, 2, f) != 2)
      return fail(err, errn, KILN_ERROR, "%s: truncated .npy header", path);
    pre_len = 12;
    uint32_t v = (uint32_t)pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 |
                 (uint32_t)pre[11] << 24;
    hlen = v;
  } else {
    return fail(err, errn, KILN_ERROR,
                "%s: unsupported .npy format version %d.%d (Kiln reads 1.0, 2.0 and 3.0)", path,
                major, minor);
  }
  if (hlen > NPY_MAX_HEADER)
    return fail(err, errn, KILN_ERROR, "%s: .npy header of %zu bytes exceeds the limit of %d", path,
                hlen, NPY_MAX_HEADER);
  char *text = kl_malloc(hlen + 1);
  if (!text) return fail(err, errn, KILN_NOMEM, "%s: out of memory reading the header", path);
  if (fread(text, 1, hlen, f) != hlen) {
    kl_free(text);
    return fail(err, errn, KILN_ERROR, "%s: truncated .npy header (%zu bytes announced)", path,
                hlen);
  }
  text[hlen] = 0;
  hdr h = {.p = text,
           .end = text + hlen,
           .text = text,
           .len = hlen,
           .path = path,
           .err = err,
           .errn = errn};
  kiln_status st = parse_header(&h);
  kl_free(text);
  if (st) return st;

  size_t es = kiln_dtype_size(h.dtype);
  int64_t n = kl_shape_size(h.rank, h.shape, es);
  if (n < 0)
    return fail(err, errn, KILN_ERROR, "%s: shape %s is too large", path,
                kl_shape_str(eb, sizeof eb, h.rank, h.shape));
  size_t nbytes = (size_t)n * es;

  /* Check the size before allocating: a header may promise anything. */
  struct stat sb;
  if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode)) {
    uint64_t have =
        (uint64_t)sb.st_size > pre_len + hlen ? (uint64_t)sb.st_size - pre_len - hlen : 0;
    if (have < nbytes)
      return fail(err, errn, KILN_ERROR,
                  "%s: truncated data: shape %s of %s needs %zu bytes, the file has %llu", path,
                  kl_shape_str(eb, sizeof eb, h.rank, h.shape), kiln_dtype_name(h.dtype), nbytes,
                  (unsigned long long)have);
    if (have > nbytes)
      return fail(err, errn, KILN_ERROR,
                  "%s: %llu unexpected bytes after the data (shape %s of %s needs %zu)", path,
                  (unsigned long long)(have - nbytes), kl_shape_str(eb, sizeof eb, h.rank, h.shape),
                  kiln_dtype_name(h.dtype), nbytes);
  }

  kiln_tensor *t = kiln_tensor_new(h.dtype, h.rank, h.shape, NULL);
  if (!t)
    return fail(err, errn, KILN_NOMEM, "%s: out of memory for %zu bytes of data", path, nbytes);
  bool reorder = h.fortran && h.rank > 1 && n > 1;
  void *buf = t->data;
  if (reorder && !(buf = kl_aligned_alloc(nbytes))) {
    kiln_tensor_free(t);
    return fail(err, errn, KILN_NOMEM, "%s: out of memory for %zu bytes of data", path, nbytes);
  }
  size_t r = read_all(f, buf, nbytes);
  if (r < nbytes || fgetc(f) != EOF || ferror(f)) {
    bool io = ferror(f) != 0;
    if (reorder) kl_aligned_free(buf);
    kiln_tensor_free(t);
    if (io) return fail(err, errn, KILN_ERROR, "%s: read error", path);
    if (r < nbytes)
      return fail(err, errn, KILN_ERROR, "%s: truncated data: needs %zu bytes, got %zu", path,
                  nbytes, r);
    return fail(err, errn, KILN_ERROR, "%s: unexpected bytes after the data", path);
  }
  if (h.swap) swap_bytes(buf, (size_t)n, es);
  if (reorder) {
    fortran_to_c(t->data, buf, h.rank, h.shape, es, n);
    kl_aligned_free(buf);
  }
  *out = t;
  return KILN_OK;
}

kiln_status kiln_npy_load(const char *path, kiln_tensor **out, char *err, size_t errn) {
  if (err && errn) err[0] = 0;
  if (out) *out = NULL;
  if (!path || !out)
    return fail(err, errn, KILN_MISUSE, "npy_load: %s is NULL", path ? "out" : "path");
  FILE *f = fopen(path, "rb");
  if (!f) {
    char eb[128];
    int e = errno;
    return fail(err, errn, e == ENOMEM ? KILN_NOMEM : KILN_ERROR, "%s: cannot open: %s", path,
                errstr(e, eb, sizeof eb));
  }
  kiln_status st = load_file(f, path, out, err, errn);
  fclose(f);
  if (st == KILN_OK && err && errn) err[0] = 0;
  return st;
}

/* ---------------------------------------------------------------- save */

/* The full header numpy writes for t: prefix, dict, padding, '\n'. Returns
** its length (a multiple of NPY_ALIGN). buf holds at least 640 bytes. */
static size_t make_header(const kiln_tensor *t, char *buf, size_t n) {
  char shape[KILN_MAX_RANK * 22 + 8];
  kl_shape_str(shape, sizeof shape, t->rank, t->shape);
  size_t len = (size_t)snprintf(buf + 10, n - 10,
                                "{'descr': '%s', 'fortran_order': False, "
                                "'shape': %s, }",
                                npy_descr[t->dtype], shape);
  if (t->rank > 0) {
    char first[24];
    int digits = snprintf(first, sizeof first, "%lld", (long long)t->shape[0]);
    for (int i = digits; i < NPY_GROWTH_DIGITS; i++)
      buf[10 + len++] = ' ';
  }
  size_t hlen = len + 1;
  size_t pad = NPY_ALIGN - (10 + hlen) % NPY_ALIGN;
  memset(buf + 10 + len, ' ', pad);
  buf[10 + len + pad] = '\n';
  size_t total = 10 + hlen + pad;
  memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
  buf[6] = 1;
  buf[7] = 0;
  buf[8] = (char)((total - 10) & 0xff);
  buf[9] = (char)((total - 10) >> 8);
  return total;
}

static int write_all(int fd, const void *buf, size_t n) {
  const uint8_t *p = buf;
  while (n > 0) {
    size_t want = n < NPY_IO_CHUNK ? n : NPY_IO_CHUNK;
    ssize_t w = write(fd, p, want);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Writes the data little-endian: as is on a little-endian host, else
** swapped chunk by chunk. Returns 0, -1 (errno set) or -2 (out of memory). */
static int write_data(int fd, const kiln_tensor *t) {
  size_t es = kiln_dtype_size((kiln_dtype)t->dtype), nbytes = kl_tensor_nbytes(t);
  if (es == 1 || host_is_le()) return write_all(fd, t->data, nbytes);
  uint8_t *tmp = kl_malloc(NPY_IO_CHUNK);
  if (!tmp) return -2;
  for (size_t off = 0; off < nbytes; off += NPY_IO_CHUNK) {
    size_t k = nbytes - off < NPY_IO_CHUNK ? nbytes - off : NPY_IO_CHUNK;
    memcpy(tmp, (const uint8_t *)t->data + off, k);
    swap_bytes(tmp, k / es, es);
    if (write_all(fd, tmp, k) < 0) {
      int e = errno;
      kl_free(tmp);
      errno = e;
      return -1;
    }
  }
  kl_free(tmp);
  return 0;
}

kiln_status kiln_npy_save(const char *path, const kiln_tensor *t, char *err, size_t errn) {
  static atomic_uint counter;
  char eb[128];
  if (err && errn) err[0] = 0;
  if (!path) return fail(err, errn, KILN_MISUSE, "npy_save: path is NULL");
  if (!kl_tensor_ok(t) || !kl_dtype_valid(t->dtype))
    return fail(err, errn, KILN_MISUSE, "npy_save: %s: not a valid tensor", path);
  char header[640];
  size_t hl = make_header(t, header, sizeof header);

  size_t pl = strlen(path);
  char *tmp = kl_malloc(pl + 48);
  if (!tmp) return fail(err, errn, KILN_NOMEM, "%s: out of memory", path);
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
    snprintf(tmp, pl + 48, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    int e = errno;
    kl_free(tmp);
    return fail(err, errn, KILN_ERROR, "%s: cannot create a temporary file next to it: %s", path,
                errstr(e, eb, sizeof eb));
  }
  const char *what = "write";
  int rc = write_all(fd, header, hl);
  if (rc == 0) rc = write_data(fd, t);
  if (rc == 0 && fsync(fd) != 0) what = "flush", rc = -1;
  int e = errno;
  if (close(fd) != 0 && rc == 0) what = "close", rc = -1, e = errno;
  if (rc == 0 && rename(tmp, path) != 0)
    what = "rename the temporary file over", rc = -1, e = errno;
  if (rc != 0) unlink(tmp);
  kl_free(tmp);
  if (rc == -2) return fail(err, errn, KILN_NOMEM, "%s: out of memory", path);
  if (rc != 0)
    return fail(err, errn, KILN_ERROR, "%s: cannot %s it: %s", path, what,
                errstr(e, eb, sizeof eb));
  return KILN_OK;
}
