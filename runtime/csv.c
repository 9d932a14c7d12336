/*
** csv.c -- tables of numbers from CSV files, plain or gzip (kiln_util.h).
**
** The whole file is read into one buffer through zlib's gz* interface,
** which inflates gzip data (recognized by its magic bytes 1f 8b) and passes
** any other file through unchanged, so one path serves both. The text is
** then parsed in place, line by line: each line is cut at its '\n' (and a
** '\r' before it), fields are split at ',' and converted by strtod, and the
** values are appended, already converted to the target dtype, to a growing
** array. The number of rows is only known at the end, so the tensor is made
** then, from that array.
**
** Numbers are parsed in the "C" locale, switched on for this thread only
** (POSIX uselocale), so a program that set a locale with a decimal comma
** still reads "5.1" as 5.1. Every message names the file and the line.
*/
#include "kiln_util.h"
#include "runtime/rt.h"

#include <errno.h>
#include <locale.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define CSV_CHUNK (1u << 16)

#define fail kl_fail

/* ---------------------------------------------------------------- reading */

/* Reads the whole (decompressed) file into *text, NUL-terminated, its length
** in *len. */
static kiln_status read_text(const char *path, char **text, size_t *len, char *err, size_t errn) {
  *text = NULL;
  *len = 0;
  errno = 0;
  gzFile gz = gzopen(path, "rb");
  if (!gz) {
    int e = errno;
    if (e == 0) return fail(err, errn, KILN_NOMEM, "%s: out of memory opening it", path);
    char eb[128];
    if (strerror_r(e, eb, sizeof eb) != 0) snprintf(eb, sizeof eb, "error %d", e);
    return fail(err, errn, KILN_ERROR, "%s: cannot open: %s", path, eb);
  }
  gzbuffer(gz, 1u << 17);
  char *buf = NULL;
  size_t n = 0, cap = 0;
  kiln_status st = KILN_OK;
  for (;;) {
    if (cap - n < CSV_CHUNK + 1) {
      size_t ncap = cap ? cap * 2 : 4 * CSV_CHUNK;
      char *nb = ncap > cap ? kl_realloc(buf, ncap) : NULL;
      if (!nb) {
        st =
            fail(err, errn, KILN_NOMEM, "%s: out of memory reading it (%zu bytes so far)", path, n);
        break;
      }
      buf = nb;
      cap = ncap;
    }
    int r = gzread(gz, buf + n, CSV_CHUNK);
    if (r < 0) {
      int zerr;
      const char *m = gzerror(gz, &zerr);
      st = fail(err, errn, zerr == Z_MEM_ERROR ? KILN_NOMEM : KILN_ERROR, "%s: cannot read: %s",
                path, m);
      break;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  if (st == KILN_OK) {
    /* A gzip stream cut short ends like a file, with Z_BUF_ERROR noted. */
    int zerr;
    const char *m = gzerror(gz, &zerr);
    if (zerr == Z_BUF_ERROR)
      st = fail(err, errn, KILN_ERROR, "%s: truncated gzip data (%s)", path, m);
    else if (zerr != Z_OK)
      st = fail(err, errn, KILN_ERROR, "%s: cannot read: %s", path, m);
  }
  gzclose(gz);
  if (st != KILN_OK) {
    kl_free(buf);
    return st;
  }
  buf[n] = 0;
  *text = buf;
  *len = n;
  return KILN_OK;
}

/* ---------------------------------------------------------------- parsing */

typedef struct csv {
  const char *path;
  char *err;
  size_t errn;
  kiln_dtype dt;
  size_t es;
  uint8_t *vals; /* values converted to dt */
  size_t n, cap; /* elements */
} csv;

static char *skip_blank(char *q) {
  while (*q == ' ' || *q == '\t')
    q++;
  return q;
}

/* A field for a message: its text up to the next ',' (at most 32 bytes). */
static const char *field_text(const char *q, char *buf, size_t n) {
  size_t k = 0;
  while (q[k] && q[k] != ',' && k + 4 < n) {
    unsigned char c = (unsigned char)q[k];
    buf[k] = c >= 32 && c < 127 ? (char)c : '?';
    k++;
  }
  if (q[k] && q[k] != ',') {
    memcpy(buf + k, "...", 3);
    k += 3;
  }
  buf[k] = 0;
  return buf;
}

static bool push_room(csv *c) {
  if (c->n < c->cap) return true;
  size_t ncap = c->cap ? c->cap * 2 : 1024;
  if (ncap < c->cap || ncap > SIZE_MAX / 2 / c->es) return false;
  uint8_t *nv = kl_realloc(c->vals, ncap * c->es);
  if (!nv) return false;
  c->vals = nv;
  c->cap = ncap;
  return true;
}

/* Parses one field starting at *qp (blanks skipped); on success stores the
** value and leaves *qp after the number and its trailing blanks. */
static kiln_status parse_field(csv *c, char **qp, long long line, long long field) {
  char *q = *qp, *e, fb[40];
  if (*q == ',' || *q == 0)
    return fail(c->err, c->errn, KILN_ERROR, "%s:%lld: field %lld is empty", c->path, line, field);
  if (!push_room(c))
    return fail(c->err, c->errn, KILN_NOMEM, "%s:%lld: out of memory (%zu values so far)", c->path,
                line, c->n);
  if (c->dt == KILN_INT64) {
    /* Exactly, when the field is a plain integer: doubles stop at 2^53. */
    errno = 0;
    long long v = strtoll(q, &e, 10);
    char *after = skip_blank(e);
    if (e != q && errno == 0 && (*after == ',' || *after == 0)) {
      int64_t iv = v;
      kl_convert(c->dt, c->vals, (int64_t)c->n++, KILN_INT64, &iv, 0);
      *qp = after;
      return KILN_OK;
    }
  }
  double d = strtod(q, &e);
  char *after = skip_blank(e);
  if (e == q || (*after != ',' && *after != 0))
    return fail(c->err, c->errn, KILN_ERROR, "%s:%lld: field %lld, '%s', is not a number", c->path,
                line, field, field_text(q, fb, sizeof fb));
  kl_convert(c->dt, c->vals, (int64_t)c->n++, KILN_FLOAT64, &d, 0);
  *qp = after;
  return KILN_OK;
}

static kiln_status parse_text(csv *c, char *text, size_t len, int skip, kiln_tensor **out) {
  char *p = text, *end = text + len;
  long long rows = 0, cols = -1, cols_line = 0, line = 1;
  kiln_status st;
  for (; p < end; line++) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *le = nl ? nl : end, *next = nl ? nl + 1 : end;
    if (line <= skip) {
      p = next;
      continue;
    }
    if (line == 1 && le - p >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3; /* BOM */
    if (le > p && le[-1] == '\r') le--;
    if (memchr(p, 0, (size_t)(le - p)))
      return fail(c->err, c->errn, KILN_ERROR, "%s:%lld: NUL byte in the line (a binary file?)",
                  c->path, line);
    *le = 0;
    char *q = skip_blank(p);
    p = next;
    if (!*q) continue; /* blank line */
    long long nf = 0;
    for (;;) {
      if ((st = parse_field(c, &q, line, nf + 1))) return st;
      nf++;
      if (*q == 0) break;
      q = skip_blank(q + 1); /* past ',' */
    }
    if (cols < 0) {
      cols = nf;
      cols_line = line;
    } else if (nf != cols) {
      return fail(c->err, c->errn, KILN_ERROR,
                  "%s:%lld: %lld field%s, expected %lld as on line %lld", c->path, line, nf,
                  nf == 1 ? "" : "s", cols, cols_line);
    }
    rows++;
  }
  if (rows == 0)
    return fail(c->err, c->errn, KILN_ERROR, "%s: no data rows (%lld line%s, %d skipped)", c->path,
                line - 1, line - 1 == 1 ? "" : "s", skip);
  int64_t shape[2] = {rows, cols};
  kiln_tensor *t = kiln_tensor_new(c->dt, 2, shape, c->vals);
  if (!t)
    return fail(c->err, c->errn, KILN_NOMEM, "%s: out of memory for a %lld x %lld table", c->path,
                rows, cols);
  *out = t;
  return KILN_OK;
}

kiln_status kiln_csv_load(const char *path, int skip_header_lines, kiln_dtype dtype,
                          kiln_tensor **out, char *err, size_t errn) {
  if (err && errn) err[0] = 0;
  if (out) *out = NULL;
  if (!path || !out)
    return fail(err, errn, KILN_MISUSE, "csv_load: %s is NULL", path ? "out" : "path");
  if (skip_header_lines < 0)
    return fail(err, errn, KILN_MISUSE, "csv_load: skip_header_lines is %d (negative)",
                skip_header_lines);
  if (!kl_dtype_valid(dtype))
    return fail(err, errn, KILN_MISUSE, "csv_load: invalid dtype %d", (int)dtype);
  char *text;
  size_t len;
  kiln_status st = read_text(path, &text, &len, err, errn);
  if (st) return st;

  locale_t cloc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
  if (!cloc) {
    kl_free(text);
    return fail(err, errn, KILN_NOMEM, "%s: out of memory (C locale)", path);
  }
  locale_t old = uselocale(cloc);
  csv c = {.path = path, .err = err, .errn = errn, .dt = dtype, .es = kiln_dtype_size(dtype)};
  st = parse_text(&c, text, len, skip_header_lines, out);
  uselocale(old);
  freelocale(cloc);
  kl_free(c.vals);
  kl_free(text);
  return st;
}
