/*
** print.c -- numbers and arrays as text, the way Python and numpy show them.
**
** Everything rests on one primitive: the shortest decimal digits that read
** back to the same binary value (Python's repr, numpy's "unique" Dragon4).
** We get them from libc alone: print with %.{p}e for growing p and stop at
** the first p whose text strtod/strtof maps back to the value. Near a power
** of two the interval of values that round to v is lopsided, so the nearest
** p-digit decimal can miss while the next one up still hits; we try that one
** too, which makes the digits the shortest, as Python's and numpy's are.
**
** kl_array_str then follows numpy's default print options (precision 8,
** floatmode 'maxprec', linewidth 75, threshold 1000, edgeitems 3): a first
** pass over the elements that will be shown fixes one format for all of
** them (fixed or scientific, paddings), a second pass writes them, wrapping
** rows at 75 columns with the hanging indent numpy uses. Decisions between
** numpy 1.x and 2.x follow numpy 2 (NEP 50), as the rest of Kiln does.
*/
#include "runtime/rt.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_WIDTH 75
#define PRECISION 8 /* at most this many digits after the point in arrays */
#define THRESHOLD 1000
#define EDGE_ITEMS 3

/* ---------------------------------------------------------------- digits */

/* A finite non-negative value as d[0].d[1]d[2]... times 10^exp, without
** trailing zeros (zero is "0", exp 0). 17 digits are the most a double needs. */
typedef struct decimal {
  char d[24];
  int n;
  int exp;
} decimal;

/* Parses the output of "%.*e" (non-negative, finite) into dec, trimming
** trailing zeros of the mantissa. Whatever the locale's decimal point is,
** it is the one non-digit before the 'e'. */
static void parse_e(const char *s, decimal *dec) {
  dec->n = 0;
  for (; *s && *s != 'e'; s++)
    if (*s >= '0' && *s <= '9' && dec->n < (int)sizeof dec->d - 1) dec->d[dec->n++] = *s;
  dec->exp = *s == 'e' ? atoi(s + 1) : 0;
  while (dec->n > 1 && dec->d[dec->n - 1] == '0')
    dec->n--;
  dec->d[dec->n] = '\0';
}

/* Does the text of dec read back as a (float if single) to exactly a? The
** text is an integer mantissa and an exponent, so no locale's decimal point
** can confuse strtod. */
static int round_trips(const decimal *dec, double a, int single) {
  char buf[48];
  snprintf(buf, sizeof buf, "%se%d", dec->d, dec->exp - (dec->n - 1));
  if (single) return strtof(buf, NULL) == (float)a;
  return strtod(buf, NULL) == a;
}

/* dec plus one unit in its last of `len` digits (dec padded with zeros to
** len digits first); a carry out of the first digit moves the exponent. */
static void bump(const decimal *dec, int len, decimal *out) {
  *out = *dec;
  while (out->n < len)
    out->d[out->n++] = '0';
  int i = len - 1;
  while (i >= 0 && out->d[i] == '9')
    out->d[i--] = '0';
  if (i >= 0) {
    out->d[i]++;
  } else {
    out->d[0] = '1'; /* 99..9 + 1: one digit, one decade up */
    out->exp++;
  }
  while (out->n > 1 && out->d[out->n - 1] == '0')
    out->n--;
  out->d[out->n] = '\0';
}

/* Shortest round-trip digits of |v| (v finite), for a double or, when single,
** for the float v holds. */
static void shortest(double v, int single, decimal *dec) {
  double a = fabs(v);
  if (a == 0) {
    strcpy(dec->d, "0");
    dec->n = 1;
    dec->exp = 0;
    return;
  }
  int maxp = single ? 8 : 16; /* 9 / 17 significant digits always suffice */
  char buf[48];
  for (int p = 0; p < maxp; p++) {
    snprintf(buf, sizeof buf, "%.*e", p, a);
    parse_e(buf, dec);
    if (round_trips(dec, a, single)) return;
    /* The nearest candidate missed: only the one above it can still hit,
    ** and only when v sits at the bottom of a binade (narrow side below). */
    if ((single ? (double)strtof(buf, NULL) : strtod(buf, NULL)) < a) {
      decimal up;
      bump(dec, p + 1, &up);
      if (round_trips(&up, a, single)) {
        *dec = up;
        return;
      }
    }
  }
  snprintf(buf, sizeof buf, "%.*e", maxp, a);
  parse_e(buf, dec);
}

/* Python's layout of sign and digits: fixed notation for 1e-4 <= |v| < 1e16
** (and zero) with at least one fractional digit, else d[.ddd]e+XX. Python
** picks by the digits, numpy's scalars by the value; for doubles the two
** agree, and for float32 numpy's (the value) is the one we need, so we use
** it. Returns the length; buf holds at least 40 bytes. */
static int layout_repr(double v, const decimal *dec, char *buf) {
  double a = fabs(v);
  int k = 0;
  if (signbit(v)) buf[k++] = '-';
  if (a == 0 || (a >= 1e-4 && a < 1e16)) {
    if (dec->exp < 0) {
      buf[k++] = '0';
      buf[k++] = '.';
      for (int i = 0; i < -dec->exp - 1; i++)
        buf[k++] = '0';
      for (int i = 0; i < dec->n; i++)
        buf[k++] = dec->d[i];
    } else {
      for (int i = 0; i <= dec->exp; i++)
        buf[k++] = i < dec->n ? dec->d[i] : '0';
      buf[k++] = '.';
      if (dec->n > dec->exp + 1) {
        for (int i = dec->exp + 1; i < dec->n; i++)
          buf[k++] = dec->d[i];
      } else {
        buf[k++] = '0';
      }
    }
    buf[k] = '\0';
    return k;
  }
  buf[k++] = dec->d[0];
  if (dec->n > 1) {
    buf[k++] = '.';
    for (int i = 1; i < dec->n; i++)
      buf[k++] = dec->d[i];
  }
  k += snprintf(buf + k, 16, "e%c%02d", dec->exp < 0 ? '-' : '+', abs(dec->exp));
  return k;
}

/* repr of a scalar of the given precision into buf (>= 48 bytes). */
static int repr_scalar(double v, int single, char *buf) {
  if (isnan(v)) return (int)strlen(strcpy(buf, "nan"));
  if (isinf(v)) return (int)strlen(strcpy(buf, v < 0 ? "-inf" : "inf"));
  decimal dec;
  shortest(v, single, &dec);
  return layout_repr(v, &dec, buf);
}

KILN_API int kiln_format_double(double v, char *buf, size_t n) {
  char tmp[48];
  int len = repr_scalar(v, 0, tmp);
  if (buf && n > 0) {
    size_t k = (size_t)len < n - 1 ? (size_t)len : n - 1;
    memcpy(buf, tmp, k);
    buf[k] = '\0';
  }
  return len;
}

/* ---------------------------------------------------------------- text buffer */

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_grow(sbuf *b, size_t extra) {
  if (b->oom || b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1)
    cap *= 2;
  char *p = kl_realloc(b->p, cap);
  if (!p) {
    b->oom = 1;
    return;
  }
  b->p = p;
  b->cap = cap;
}

static void sb_put(sbuf *b, const char *s, size_t n) {
  sb_grow(b, n);
  if (b->oom) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fill(sbuf *b, char c, int count) {
  if (count <= 0) return;
  sb_grow(b, (size_t)count);
  if (b->oom) return;
  memset(b->p + b->len, c, (size_t)count);
  b->len += (size_t)count;
  b->p[b->len] = '\0';
}

/* ---------------------------------------------------------------- elements */

/* Loads go through memcpy: the caller's buffer need not be aligned. */
static double load_float(kiln_dtype dt, const void *data, int64_t i) {
  const char *p = data;
  if (dt == KILN_FLOAT32) {
    float f;
    memcpy(&f, p + (size_t)i * sizeof f, sizeof f);
    return f;
  }
  double d;
  memcpy(&d, p + (size_t)i * sizeof d, sizeof d);
  return d;
}

/* Element i of an integer or bool array (bool: any non-zero byte is true). */
static long long load_int(kiln_dtype dt, const void *data, int64_t i) {
  const char *p = data;
  size_t at = (size_t)i;
  switch (dt) {
  case KILN_INT8: {
    int8_t x;
    memcpy(&x, p + at, sizeof x);
    return x;
  }
  case KILN_INT16: {
    int16_t x;
    memcpy(&x, p + at * sizeof x, sizeof x);
    return x;
  }
  case KILN_INT32: {
    int32_t x;
    memcpy(&x, p + at * sizeof x, sizeof x);
    return x;
  }
  case KILN_INT64: {
    int64_t x;
    memcpy(&x, p + at * sizeof x, sizeof x);
    return x;
  }
  case KILN_BOOL: return p[at] != 0;
  case KILN_UINT8: return (unsigned char)p[at];
  default: return 0;
  }
}

/* One finite float as numpy's first pass splits it: sign and integer digits,
** fractional digits, and in scientific mode the exponent. */
typedef struct parts {
  char ip[48]; /* "-12", "0" */
  char fp[48]; /* "25", "" */
  int exp;
} parts;

/* Splits "%.*f"/"%.*e" text of |v| into integer and trimmed fraction (after
** the sign already in o->ip); the point is whatever the locale made it. */
static void split_rounded(const char *s, int sci, parts *o) {
  size_t k = strlen(o->ip);
  for (; *s >= '0' && *s <= '9'; s++)
    o->ip[k++] = *s;
  o->ip[k] = '\0';
  k = 0;
  if (*s && *s != 'e')
    for (s++; *s >= '0' && *s <= '9'; s++)
      o->fp[k++] = *s;
  while (k > 0 && o->fp[k - 1] == '0')
    k--;
  o->fp[k] = '\0';
  o->exp = sci && *s == 'e' ? atoi(s + 1) : 0;
}

/* numpy's first-pass ("maxprec") digits of a finite v: the shortest repr
** unless it needs more than PRECISION fractional digits, then v correctly
** rounded to PRECISION of them (printf rounds the exact binary value, half to
** even, as Dragon4 does) with trailing zeros dropped. In fixed notation numpy
** asks for at least the units digit, and digits past the shortest ones are
** the exact value's: float32 81909472 prints "81909472.", not "81909470.". */
static void float_parts(double v, int single, int sci, parts *o) {
  decimal dec;
  shortest(v, single, &dec);
  o->ip[0] = '\0';
  if (signbit(v)) strcpy(o->ip, "-");
  char buf[64];
  if (sci) {
    if (dec.n - 1 > PRECISION) {
      snprintf(buf, sizeof buf, "%.*e", PRECISION, fabs(v));
      split_rounded(buf, 1, o);
      return;
    }
    size_t k = strlen(o->ip);
    o->ip[k] = dec.d[0];
    o->ip[k + 1] = '\0';
    strcpy(o->fp, dec.d + 1);
    o->exp = dec.exp;
    return;
  }
  int nfrac = dec.n - 1 - dec.exp;
  if (nfrac > PRECISION || nfrac < 0) {
    snprintf(buf, sizeof buf, "%.*f", nfrac < 0 ? 0 : PRECISION, fabs(v));
    split_rounded(buf, 0, o);
    return;
  }
  size_t k = strlen(o->ip);
  if (dec.exp < 0) {
    o->ip[k++] = '0';
    o->ip[k] = '\0';
    int j = 0;
    for (int i = 0; i < -dec.exp - 1; i++)
      o->fp[j++] = '0';
    for (int i = 0; i < dec.n; i++)
      o->fp[j++] = dec.d[i];
    o->fp[j] = '\0';
  } else {
    for (int i = 0; i <= dec.exp; i++)
      o->ip[k++] = i < dec.n ? dec.d[i] : '0';
    o->ip[k] = '\0';
    int j = 0;
    for (int i = dec.exp + 1; i < dec.n; i++)
      o->fp[j++] = dec.d[i];
    o->fp[j] = '\0';
  }
  o->exp = 0;
}

/* The one format every shown element of an array gets, found by a first
** pass over them (numpy's FloatingFormat.fillFormat and IntegerFormat). */
typedef struct format {
  int width;     /* ints and bools: every word has this width */
  int sci;       /* floats: scientific notation */
  int pad_left;  /* floats: width of sign and integer part */
  int pad_right; /* floats, fixed: width of the fraction */
  int prec;      /* floats, sci: digits after the point, zero-padded */
  int exp_size;  /* floats, sci: digits of the exponent, zero-padded */
  /* statistics of the shown elements */
  int any_nonfinite, neg_inf;
  double max_abs, min_abs; /* over finite non-zeros; min_abs 0 if there are none */
} format;

static int exp_digits(int e) {
  int a = abs(e), n = 1;
  while (a >= 10) {
    a /= 10;
    n++;
  }
  return n < 2 ? 2 : n;
}

/* ---------------------------------------------------------------- walking */

/* The array and which of its indices are shown: every one, or with
** summarizing the first and last EDGE_ITEMS of each axis longer than twice
** that, with "..." in between. */
typedef struct walk {
  kiln_dtype dt;
  int rank;
  const int64_t *shape;
  const void *data;
  int64_t stride[KILN_MAX_RANK]; /* in elements */
  int summarize;
} walk;

static int cut(const walk *w, int axis) { return w->summarize && w->shape[axis] > 2 * EDGE_ITEMS; }

static int64_t shown_count(const walk *w, int axis) {
  return cut(w, axis) ? 2 * EDGE_ITEMS : w->shape[axis];
}

/* The index along axis of the pos-th shown position. */
static int64_t shown_index(const walk *w, int axis, int64_t pos) {
  if (!cut(w, axis) || pos < EDGE_ITEMS) return pos;
  return w->shape[axis] - (2 * EDGE_ITEMS - pos);
}

/* Calls fn on the flat index of every shown element, in C order. */
static void each_shown(const walk *w, void (*fn)(const walk *, int64_t, void *), void *arg) {
  int64_t pos[KILN_MAX_RANK] = {0};
  for (int a = 0; a < w->rank; a++)
    if (shown_count(w, a) == 0) return;
  for (;;) {
    int64_t flat = 0;
    for (int a = 0; a < w->rank; a++)
      flat += shown_index(w, a, pos[a]) * w->stride[a];
    fn(w, flat, arg);
    int a = w->rank - 1;
    while (a >= 0 && ++pos[a] == shown_count(w, a))
      pos[a--] = 0;
    if (a < 0) return;
  }
}

/* ---------------------------------------------------------------- formats */

static void scan_values(const walk *w, int64_t i, void *arg) {
  format *f = arg;
  if (w->dt == KILN_FLOAT32 || w->dt == KILN_FLOAT64) {
    double v = load_float(w->dt, w->data, i);
    if (!isfinite(v)) {
      f->any_nonfinite = 1;
      if (v < 0) f->neg_inf = 1;
      return;
    }
    double a = fabs(v);
    if (a == 0) return;
    if (a > f->max_abs) f->max_abs = a;
    if (f->min_abs == 0 || a < f->min_abs) f->min_abs = a;
    return;
  }
  if (w->dt == KILN_BOOL) {
    f->width = 5; /* " True" and "False" line up */
    return;
  }
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%lld", load_int(w->dt, w->data, i));
  if (n > f->width) f->width = n;
}

static void scan_parts(const walk *w, int64_t i, void *arg) {
  format *f = arg;
  double v = load_float(w->dt, w->data, i);
  if (!isfinite(v)) return;
  parts p;
  float_parts(v, w->dt == KILN_FLOAT32, f->sci, &p);
  int il = (int)strlen(p.ip), fl = (int)strlen(p.fp);
  if (il > f->pad_left) f->pad_left = il;
  if (f->sci) {
    if (fl > f->prec) f->prec = fl;
    if (exp_digits(p.exp) > f->exp_size) f->exp_size = exp_digits(p.exp);
  } else if (fl > f->pad_right) {
    f->pad_right = fl;
  }
}

/* numpy's choice of notation: scientific when the largest non-zero magnitude
** is >= 1e8, the smallest < 1e-4, or they are more than 1000 apart. numpy
** compares float32 statistics in float32 (numpy 2 treats the Python
** constants as weak), which matters only for 0.0001f itself. */
static int wants_sci(const format *f, int single) {
  if (f->min_abs == 0) return 0;
  if (single) {
    /* a float32 quotient: the double one rounded (exact for division) */
    double ratio = f->max_abs / f->min_abs;
    float mx = (float)f->max_abs, mn = (float)f->min_abs;
    return mx >= 1e8f || mn < 0.0001f || ratio > FLT_MAX || (float)ratio > 1000.0f;
  }
  return f->max_abs >= 1e8 || f->min_abs < 0.0001 || f->max_abs / f->min_abs > 1000.0;
}

static void make_format(const walk *w, format *f) {
  memset(f, 0, sizeof *f);
  each_shown(w, scan_values, f);
  if (w->dt != KILN_FLOAT32 && w->dt != KILN_FLOAT64) return;
  f->sci = wants_sci(f, w->dt == KILN_FLOAT32);
  each_shown(w, scan_parts, f);
  if (f->sci && f->exp_size < 2) f->exp_size = 2;
  if (f->any_nonfinite) {
    /* nan and inf are right-aligned in the width of the numbers; widen the
    ** integer part if they would not fit */
    int right = f->sci ? f->prec + 2 + f->exp_size : f->pad_right;
    int need = (f->neg_inf ? 4 : 3) - (right + 1);
    if (need > f->pad_left) f->pad_left = need;
  }
}

/* The text of element i in format f into buf (>= 96 bytes); returns its length. */
static int format_word(const walk *w, const format *f, int64_t i, char *buf) {
  if (w->dt == KILN_BOOL)
    return snprintf(buf, 96, "%*s", f->width, load_int(w->dt, w->data, i) ? "True" : "False");
  if (w->dt != KILN_FLOAT32 && w->dt != KILN_FLOAT64)
    return snprintf(buf, 96, "%*lld", f->width, load_int(w->dt, w->data, i));
  double v = load_float(w->dt, w->data, i);
  if (!isfinite(v)) {
    int width = f->pad_left + 1 + (f->sci ? f->prec + 2 + f->exp_size : f->pad_right);
    return snprintf(buf, 96, "%*s", width, isnan(v) ? "nan" : v < 0 ? "-inf" : "inf");
  }
  parts p;
  if (f->sci) {
    /* numpy's second pass asks for exactly prec digits. Shortest digits of
    ** that length stay; with fewer, the next ones are the exact value's, not
    ** zeros (float32 81909472 with prec 7 is 8.1909472e+07); with more, the
    ** value is rounded to prec. */
    float_parts(v, w->dt == KILN_FLOAT32, 1, &p);
    if ((int)strlen(p.fp) != f->prec) {
      char digits[64];
      p.ip[0] = '\0';
      if (signbit(v)) strcpy(p.ip, "-");
      snprintf(digits, sizeof digits, "%.*e", f->prec, fabs(v));
      split_rounded(digits, 1, &p);
    }
    return snprintf(buf, 96, "%*s.%s%.*se%c%0*d", f->pad_left, p.ip, p.fp,
                    f->prec - (int)strlen(p.fp), "00000000", p.exp < 0 ? '-' : '+', f->exp_size,
                    abs(p.exp));
  }
  float_parts(v, w->dt == KILN_FLOAT32, 0, &p);
  return snprintf(buf, 96, "%*s.%-*s", f->pad_left, p.ip, f->pad_right, p.fp);
}

/* ---------------------------------------------------------------- layout */

/* Appends a word to the current row line, first breaking the line if the
** word would pass `limit` columns and the line holds something already. */
static void add_word(sbuf *b, const char *word, int n, int *col, int indent, int limit) {
  if (*col + n > limit && *col > indent) {
    if (!b->oom) {
      while (b->len > 0 && b->p[b->len - 1] == ' ')
        b->len--; /* the separator goes */
      b->p[b->len] = '\0';
    }
    sb_put(b, "\n", 1);
    sb_fill(b, ' ', indent);
    *col = indent;
  }
  sb_put(b, word, (size_t)n);
  *col += n;
}

/* Writes the sub-array of the given axis starting at flat index base. At
** depth `axis` numpy indents continuation lines by axis + 1 columns (under
** the brackets) and gives each nesting level one column less, for its ']'. */
static void emit(const walk *w, const format *f, sbuf *b, int axis, int64_t base) {
  int64_t count = shown_count(w, axis);
  int indent = axis + 1;
  int gap = w->rank - axis - 1; /* blank lines grow with the rank below */
  sb_put(b, "[", 1);
  if (gap == 0) {
    int limit = LINE_WIDTH - axis - 1, col = indent;
    char word[96];
    for (int64_t pos = 0; pos < count && !b->oom; pos++) {
      if (cut(w, axis) && pos == EDGE_ITEMS) {
        add_word(b, "...", 3, &col, indent, limit);
        sb_put(b, " ", 1);
        col++;
      }
      int n = format_word(w, f, base + shown_index(w, axis, pos), word);
      add_word(b, word, n, &col, indent, limit);
      if (pos + 1 < count) {
        sb_put(b, " ", 1);
        col++;
      }
    }
  } else {
    for (int64_t pos = 0; pos < count && !b->oom; pos++) {
      if (cut(w, axis) && pos == EDGE_ITEMS) {
        sb_fill(b, ' ', indent);
        sb_put(b, "...", 3);
        sb_fill(b, '\n', gap);
      }
      if (pos > 0) sb_fill(b, ' ', indent);
      emit(w, f, b, axis + 1, base + shown_index(w, axis, pos) * w->stride[axis]);
      if (pos + 1 < count) sb_fill(b, '\n', gap);
    }
  }
  sb_put(b, "]", 1);
}

char *kl_array_str(kiln_dtype dt, int rank, const int64_t *shape, const void *data) {
  if ((int)dt < 0 || (int)dt >= KILN_N_DTYPES || rank < 0 || rank > KILN_MAX_RANK) return NULL;
  if (rank > 0 && !shape) return NULL;
  int64_t size = 1;
  int empty = 0;
  for (int a = 0; a < rank; a++) {
    if (shape[a] < 0) return NULL;
    if (shape[a] == 0) empty = 1;
  }
  if (empty) {
    size = 0;
  } else {
    for (int a = 0; a < rank; a++) {
      if (size > INT64_MAX / shape[a]) return NULL; /* no such array can exist */
      size *= shape[a];
    }
  }
  if (size > 0 && !data) return NULL;

  sbuf b = {0};
  if (size == 0) {
    sb_puts(&b, "[]");
  } else if (rank == 0) {
    /* a 0-d array prints as its scalar: full repr, no 8-digit cut */
    char buf[48];
    if (dt == KILN_FLOAT32 || dt == KILN_FLOAT64)
      repr_scalar(load_float(dt, data, 0), dt == KILN_FLOAT32, buf);
    else if (dt == KILN_BOOL)
      strcpy(buf, load_int(dt, data, 0) ? "True" : "False");
    else
      snprintf(buf, sizeof buf, "%lld", load_int(dt, data, 0));
    sb_puts(&b, buf);
  } else {
    walk w = {.dt = dt, .rank = rank, .shape = shape, .data = data, .summarize = size > THRESHOLD};
    w.stride[rank - 1] = 1;
    for (int a = rank - 2; a >= 0; a--)
      w.stride[a] = w.stride[a + 1] * shape[a + 1];
    format f;
    make_format(&w, &f);
    emit(&w, &f, &b, 0, 0);
  }
  if (b.oom) {
    kl_free(b.p);
    return NULL;
  }
  return b.p;
}
