/*
** test_util.c -- kiln_util.h: .npy files, CSV files, the random generator
** and the initializers of shared variables.
**
** Expected bytes of .npy files are worked out by hand from numpy's format
** (numpy/lib/format.py: header dict with sorted keys, 21 spare spaces after
** it, padding to 64 bytes and '\n'); malformed files are built byte by byte
** here. CSV expectations are the numbers as they appear in the data files
** (examples/data). The generator's reference values are the published
** xoshiro256** outputs from the state {1, 2, 3, 4} and splitmix64's
** outputs from 0. Every error must come back as a status, also with
** CK_FORK=no, where a crash would end the whole run.
*/
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700 /* mkdtemp, setrlimit */
#endif
#include "kiln_util.h"
#include "runtime/rt.h"
#include "tests/testutil.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define DATA KILN_SOURCE_DIR "/examples/data/"

/* ---------------------------------------------------------------- helpers */

static char tmpdir[512];
static char err[1024];

static void make_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/kiln_util_XXXXXX", base && *base ? base : "/tmp");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
  DIR *d = opendir(tmpdir);
  if (!d) return;
  struct dirent *e;
  char p[1024];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
    if (rmdir(p) != 0) unlink(p);
  }
  closedir(d);
  rmdir(tmpdir);
}

/* A path in the test's directory (a static buffer per slot). */
static const char *tpath(const char *name) {
  static char bufs[4][1024];
  static int k;
  char *b = bufs[k++ & 3];
  snprintf(b, 1024, "%s/%s", tmpdir, name);
  return b;
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, n, f), n);
  ck_assert_int_eq(fclose(f), 0);
}

static void write_text(const char *path, const char *s) { write_bytes(path, s, strlen(s)); }

/* The whole file, malloc'ed; its size in *n. */
static uint8_t *read_bytes(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  uint8_t *b = NULL;
  size_t len = 0, cap = 0, r;
  do {
    if (cap - len < 4096) b = realloc(b, cap = cap * 2 + 4096);
    ck_assert_ptr_nonnull(b);
    r = fread(b + len, 1, cap - len, f);
    len += r;
  } while (r > 0);
  fclose(f);
  *n = len;
  return b;
}

/* Files in tmpdir whose name contains ".tmp-" (left-over temporary files). */
static int count_temp_files(void) {
  DIR *d = opendir(tmpdir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp-")) n++;
  closedir(d);
  return n;
}

#define ASSERT_ERR(expr, want_st, substr)                                                          \
  do {                                                                                             \
    err[0] = 'x';                                                                                  \
    err[1] = 0;                                                                                    \
    kiln_status st_ = (expr);                                                                      \
    ck_assert_msg(st_ == (want_st), "%s: status %s, want %s (%s)", #expr, kiln_status_str(st_),    \
                  kiln_status_str(want_st), err);                                                  \
    ck_assert_msg(strstr(err, (substr)) != NULL, "%s: message '%s' lacks '%s'", #expr, err,        \
                  (substr));                                                                       \
  } while (0)

#define ASSERT_OK(expr)                                                                            \
  do {                                                                                             \
    kiln_status st_ = (expr);                                                                      \
    ck_assert_msg(st_ == KILN_OK, "%s: %s (%s)", #expr, kiln_status_str(st_), err);                \
  } while (0)

/* ---------------------------------------------------------------- .npy */

/* A .npy file with the given version and header text (not padded), then
** the data bytes. */
static void write_npy_raw(const char *path, int major, int minor, const char *header,
                          const void *data, size_t n) {
  size_t hl = strlen(header);
  size_t pre = major >= 2 ? 12 : 10;
  uint8_t *b = malloc(pre + hl + n + 1);
  ck_assert_ptr_nonnull(b);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (uint8_t)major;
  b[7] = (uint8_t)minor;
  b[8] = (uint8_t)(hl & 0xff);
  b[9] = (uint8_t)(hl >> 8);
  if (major >= 2) {
    b[10] = (uint8_t)(hl >> 16);
    b[11] = (uint8_t)(hl >> 24);
  }
  memcpy(b + pre, header, hl);
  if (n) memcpy(b + pre + hl, data, n);
  write_bytes(path, b, pre + hl + n);
  free(b);
}

/* Loads path expecting failure: the status, a message containing substr,
** and *out cleared. */
static void expect_load_error(const char *path, kiln_status want, const char *substr) {
  kiln_tensor *t = (kiln_tensor *)(uintptr_t)1; /* must be cleared */
  err[0] = 0;
  kiln_status st = kiln_npy_load(path, &t, err, sizeof err);
  ck_assert_msg(st == want, "%s: status %s, want %s (%s)", path, kiln_status_str(st),
                kiln_status_str(want), err);
  ck_assert_ptr_null(t);
  ck_assert_msg(strstr(err, substr) != NULL, "message '%s' lacks '%s'", err, substr);
}

static void expect_header_error(const char *header, const void *data, size_t n, kiln_status want,
                                const char *substr) {
  const char *p = tpath("bad.npy");
  write_npy_raw(p, 1, 0, header, data, n);
  expect_load_error(p, want, substr);
}

static kiln_tensor *load_ok(const char *path) {
  kiln_tensor *t = NULL;
  kiln_status st = kiln_npy_load(path, &t, err, sizeof err);
  ck_assert_msg(st == KILN_OK, "%s: %s (%s)", path, kiln_status_str(st), err);
  ck_assert_ptr_nonnull(t);
  ck_assert_str_eq(err, "");
  return t;
}

static kiln_tensor *load_header_ok(int major, const char *header, const void *data, size_t n) {
  const char *p = tpath("ok.npy");
  write_npy_raw(p, major, 0, header, data, n);
  return load_ok(p);
}

static void check_shape(const kiln_tensor *t, kiln_dtype dt, int rank, const int64_t *shape) {
  ck_assert_int_eq(kiln_tensor_dtype(t), dt);
  ck_assert_int_eq(kiln_tensor_rank(t), rank);
  for (int i = 0; i < rank; i++)
    ck_assert_int_eq(kiln_tensor_dim(t, i), shape[i]);
}

/* Every dtype and ranks 0..3, including empty arrays, bit for bit: random
** bit patterns (NaN payloads, -0.0, subnormals) for integers and floats. */
START_TEST(npy_round_trip) {
  static const int ranks[] = {0, 1, 1, 2, 2, 3, 3};
  static const int64_t shapes[][3] = {{0}, {5}, {0}, {3, 4}, {1, 0}, {2, 3, 2}, {2, 0, 3}};
  uint64_t seed = 12345;
  int files = 0;
  for (int dt = 0; dt < KILN_N_DTYPES; dt++) {
    for (size_t s = 0; s < sizeof ranks / sizeof ranks[0]; s++) {
      kiln_tensor *a = kiln_tensor_new((kiln_dtype)dt, ranks[s], shapes[s], NULL);
      ck_assert_ptr_nonnull(a);
      uint8_t *d = kiln_tensor_data(a);
      size_t nb = (size_t)kiln_tensor_size(a) * kiln_dtype_size((kiln_dtype)dt);
      for (size_t i = 0; i < nb; i++)
        d[i] = dt == KILN_BOOL ? (kt_rand(&seed) < 0.5) : (uint8_t)(kt_rand(&seed) * 256);
      if (dt == KILN_FLOAT64 && nb >= 24) {
        double special[3] = {-0.0, NAN, 5e-324};
        memcpy(d, special, sizeof special);
      }
      char name[64];
      snprintf(name, sizeof name, "a_%d_%zu.npy", dt, s);
      const char *p = tpath(name);
      ASSERT_OK(kiln_npy_save(p, a, err, sizeof err));
      ck_assert_str_eq(err, "");
      kiln_tensor *b = load_ok(p);
      ck_assert_msg(kt_same_bits(a, b), "dtype %s, shape #%zu differs", kiln_dtype_name(dt), s);
      ck_assert_uint_eq((uintptr_t)kiln_tensor_data(b) % 64, 0);
      size_t fn;
      free(read_bytes(p, &fn));
      ck_assert_uint_eq((fn - nb) % 64, 0); /* the header is padded to 64 bytes */
      kiln_tensor_free(a);
      kiln_tensor_free(b);
      files++;
    }
  }
  ck_assert_int_eq(files, 56);
  ck_assert_int_eq(count_temp_files(), 0);
}
END_TEST

/* What numpy writes for np.save(p, np.array([[1., 2, 3], [4, 5, 6]])): the
** 59-byte dict, 20 spare spaces (21 minus the digits of shape[0]), then
** 38 spaces of padding so that 10 + 79 + 38 + 1 = 128, and '\n'. The header
** length field is 128 - 10 = 118 = 0x76. Then six doubles, little-endian. */
START_TEST(npy_header_bytes_numpy) {
  static const char dict[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
  ck_assert_uint_eq(strlen(dict), 59);
  uint8_t want[128 + 48];
  memcpy(want, "\x93NUMPY\x01\x00\x76\x00", 10);
  memcpy(want + 10, dict, 59);
  memset(want + 69, ' ', 58);
  want[127] = '\n';
  static const uint8_t data[48] = {
      0, 0, 0, 0, 0, 0, 0xf0, 0x3f, /* 1.0 = 0x3ff0000000000000 */
      0, 0, 0, 0, 0, 0, 0x00, 0x40, /* 2.0 = 0x4000000000000000 */
      0, 0, 0, 0, 0, 0, 0x08, 0x40, /* 3.0 = 0x4008000000000000 */
      0, 0, 0, 0, 0, 0, 0x10, 0x40, /* 4.0 */
      0, 0, 0, 0, 0, 0, 0x14, 0x40, /* 5.0 */
      0, 0, 0, 0, 0, 0, 0x18, 0x40, /* 6.0 */
  };
  memcpy(want + 128, data, 48);
  kiln_tensor *t = kt_tensor(KILN_FLOAT64, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
  const char *p = tpath("f8.npy");
  ASSERT_OK(kiln_npy_save(p, t, err, sizeof err));
  size_t n;
  uint8_t *got = read_bytes(p, &n);
  ck_assert_uint_eq(n, sizeof want);
  for (size_t i = 0; i < n; i++)
    ck_assert_msg(got[i] == want[i], "byte %zu: 0x%02x, want 0x%02x", i, got[i], want[i]);
  free(got);
  kiln_tensor_free(t);
}
END_TEST

/* Other header sizes: a 0-d array has no spare spaces (55 + 62 + 1 + 10 =
** 128); a dict whose text ends exactly on the 64-byte boundary gets a whole
** 64 bytes of padding, as numpy's formula gives; a long shape needs 192. */
START_TEST(npy_header_bytes_other) {
  struct {
    kiln_dtype dt;
    int rank;
    int64_t shape[8];
    const char *dict;
    size_t spaces, total;
  } cases[] = {
      {KILN_FLOAT64, 0, {0}, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 62, 128},
      {KILN_BOOL, 1, {5}, "{'descr': '|b1', 'fortran_order': False, 'shape': (5,), }", 60, 128},
      {KILN_UINT8,
       8,
       {0, 1000, 1000, 1000, 1000, 1000, 1000, 100},
       "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 1000, 1000, 1000, 1000, 1000, "
       "1000, 100), }",
       20 + 64,
       192},
      {KILN_INT16,
       4,
       {0, 100000000000, 100000000000, 100000000000},
       "{'descr': '<i2', 'fortran_order': False, 'shape': (0, 100000000000, 100000000000, "
       "100000000000), }",
       20 + 63,
       192},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    size_t dl = strlen(cases[c].dict);
    ck_assert_uint_eq(10 + dl + cases[c].spaces + 1, cases[c].total);
    uint8_t want[256];
    memcpy(want, "\x93NUMPY\x01\x00", 8);
    want[8] = (uint8_t)(cases[c].total - 10);
    want[9] = 0;
    memcpy(want + 10, cases[c].dict, dl);
    memset(want + 10 + dl, ' ', cases[c].spaces);
    want[cases[c].total - 1] = '\n';
    kiln_tensor *t = kiln_tensor_new(cases[c].dt, cases[c].rank, cases[c].shape, NULL);
    ck_assert_ptr_nonnull(t);
    size_t nb = (size_t)kiln_tensor_size(t) * kiln_dtype_size(cases[c].dt);
    const char *p = tpath("h.npy");
    ASSERT_OK(kiln_npy_save(p, t, err, sizeof err));
    size_t n;
    uint8_t *got = read_bytes(p, &n);
    ck_assert_uint_eq(n, cases[c].total + nb);
    ck_assert_msg(memcmp(got, want, cases[c].total) == 0, "case %zu: header differs", c);
    free(got);
    kiln_tensor *back = load_ok(p);
    ck_assert(kt_same_bits(t, back));
    kiln_tensor_free(back);
    kiln_tensor_free(t);
  }
}
END_TEST

/* Headers numpy (old or new) or other writers produce, all valid. */
START_TEST(npy_header_variants) {
  static const int32_t i6[6] = {1, 2, 3, 4, 5, 6};
  const int64_t s23[2] = {2, 3};
  const char *headers[] = {
      /* numpy < 1.23 style: 16-byte alignment, no spare spaces */
      "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }          \n",
      /* another key order, double quotes, no trailing comma, no padding */
      "{\"shape\": (2, 3), \"fortran_order\": False, \"descr\": \"<i4\"}",
      /* Python 2 longs, odd spacing, newlines */
      "{ 'descr' : '<i4' ,\n 'fortran_order' : False , 'shape' : ( 2L , 3L , ) , }\n",
      /* '=' and no byte order at all mean native (little-endian here) */
      "{'descr': '=i4', 'fortran_order': False, 'shape': (2, 3)}",
      "{'descr': 'i4', 'fortran_order': False, 'shape': (2, 3)}",
  };
  for (size_t h = 0; h < sizeof headers / sizeof headers[0]; h++) {
    kiln_tensor *t = load_header_ok(1, headers[h], i6, sizeof i6);
    check_shape(t, KILN_INT32, 2, s23);
    ck_assert_int_eq(memcmp(kiln_tensor_data(t), i6, sizeof i6), 0);
    kiln_tensor_free(t);
  }
  /* Versions 2.0 and 3.0 (4-byte header length). */
  for (int major = 2; major <= 3; major++) {
    kiln_tensor *t = load_header_ok(
        major, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }\n", i6, sizeof i6);
    check_shape(t, KILN_INT32, 2, s23);
    ck_assert_int_eq(memcmp(kiln_tensor_data(t), i6, sizeof i6), 0);
    kiln_tensor_free(t);
  }
  /* One-byte dtypes with any byte order mark; '?' is bool. */
  static const struct {
    const char *descr;
    kiln_dtype dt;
  } one[] = {{"|b1", KILN_BOOL}, {"<b1", KILN_BOOL}, {"?", KILN_BOOL},    {"|i1", KILN_INT8},
             {"<i1", KILN_INT8}, {">i1", KILN_INT8}, {"|u1", KILN_UINT8}, {"=u1", KILN_UINT8}};
  static const uint8_t bytes[3] = {1, 0, 1};
  for (size_t k = 0; k < sizeof one / sizeof one[0]; k++) {
    char header[128];
    snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (3,), }",
             one[k].descr);
    kiln_tensor *t = load_header_ok(1, header, bytes, 3);
    check_shape(t, one[k].dt, 1, (int64_t[]){3});
    ck_assert_int_eq(memcmp(kiln_tensor_data(t), bytes, 3), 0);
    kiln_tensor_free(t);
  }
}
END_TEST

/* Big-endian data is byte-swapped, as numpy.load does. */
START_TEST(npy_big_endian) {
  static const uint8_t be_i4[8] = {0x00, 0x00, 0x01, 0x02, 0xff, 0xff, 0xff, 0xfe};
  kiln_tensor *t =
      load_header_ok(1, "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", be_i4, 8);
  check_shape(t, KILN_INT32, 1, (int64_t[]){2});
  ck_assert_int_eq(((int32_t *)kiln_tensor_data(t))[0], 0x102);
  ck_assert_int_eq(((int32_t *)kiln_tensor_data(t))[1], -2);
  kiln_tensor_free(t);
  static const uint8_t be_f8[16] = {0x3f, 0xf0, 0,    0,    0,    0,    0,    0,
                                    0xc0, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18}; /* 1.0, -pi */
  t = load_header_ok(1, "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", be_f8, 16);
  ck_assert(kiln_tensor_get(t, 0) == 1.0);
  ck_assert(kiln_tensor_get(t, 1) == -3.141592653589793);
  kiln_tensor_free(t);
  static const uint8_t be_i2[2] = {0x80, 0x01};
  t = load_header_ok(1, "{'descr': '>i2', 'fortran_order': False, 'shape': (), }", be_i2, 2);
  check_shape(t, KILN_INT16, 0, NULL);
  ck_assert_int_eq(((int16_t *)kiln_tensor_data(t))[0], -32767);
  kiln_tensor_free(t);
}
END_TEST

/* Fortran-ordered data is reordered into C order, as numpy.load does. */
START_TEST(npy_fortran_order) {
  /* [[1, 2, 3], [4, 5, 6]] stored column by column. */
  static const int32_t f23[6] = {1, 4, 2, 5, 3, 6};
  kiln_tensor *t =
      load_header_ok(1, "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }", f23, 24);
  check_shape(t, KILN_INT32, 2, (int64_t[]){2, 3});
  for (int i = 0; i < 6; i++)
    ck_assert_int_eq(((int32_t *)kiln_tensor_data(t))[i], i + 1);
  kiln_tensor_free(t);
  /* (2, 3, 4): element (i, j, k) sits at i + 2j + 6k and holds 100i + 10j + k. */
  double f[24];
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++)
        f[i + 2 * j + 6 * k] = 100 * i + 10 * j + k;
  t = load_header_ok(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3, 4), }", f,
                     sizeof f);
  check_shape(t, KILN_FLOAT64, 3, (int64_t[]){2, 3, 4});
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++)
        ck_assert(kiln_tensor_get(t, i * 12 + j * 4 + k) == 100 * i + 10 * j + k);
  kiln_tensor_free(t);
  /* Rank 1 and empty arrays are the same in both orders. */
  t = load_header_ok(1, "{'descr': '<i4', 'fortran_order': True, 'shape': (3,), }", f23, 12);
  ck_assert_int_eq(memcmp(kiln_tensor_data(t), f23, 12), 0);
  kiln_tensor_free(t);
  t = load_header_ok(1, "{'descr': '<i4', 'fortran_order': True, 'shape': (3, 0), }", NULL, 0);
  check_shape(t, KILN_INT32, 2, (int64_t[]){3, 0});
  kiln_tensor_free(t);
}
END_TEST

/* Files that are not .npy files or are damaged: a status and a message. */
START_TEST(npy_bad_files) {
  expect_load_error(tpath("missing.npy"), KILN_ERROR, "cannot open");
  expect_load_error(tmpdir, KILN_ERROR, "read error"); /* a directory */
  const char *p = tpath("x.npy");
  write_bytes(p, "", 0);
  expect_load_error(p, KILN_ERROR, "not a .npy file");
  write_bytes(p, "\x93NUMP", 5);
  expect_load_error(p, KILN_ERROR, "not a .npy file");
  write_bytes(p, "\x93NUMPZ\x01\x00\x10\x00{}              ", 26);
  expect_load_error(p, KILN_ERROR, "not a .npy file");
  write_text(p, "PK\x03\x04 an npz (zip) file");
  expect_load_error(p, KILN_ERROR, "not a .npy file");
  write_bytes(p, "\x93NUMPY\x01\x00", 8);
  expect_load_error(p, KILN_ERROR, "truncated .npy header");
  write_bytes(p, "\x93NUMPY\x02\x00\x10\x00", 10);
  expect_load_error(p, KILN_ERROR, "truncated .npy header");
  /* unsupported versions */
  const char *hd = "{'descr': '<f8', 'fortran_order': False, 'shape': (), }";
  static const double one = 1.0;
  write_npy_raw(p, 4, 0, hd, &one, 8);
  expect_load_error(p, KILN_ERROR, "unsupported .npy format version 4.0");
  write_npy_raw(p, 1, 1, hd, &one, 8);
  expect_load_error(p, KILN_ERROR, "version 1.1");
  write_npy_raw(p, 0, 9, hd, &one, 8);
  expect_load_error(p, KILN_ERROR, "version 0.9");
  /* header length larger than the file, larger than the limit */
  write_bytes(p, "\x93NUMPY\x01\x00\x64\x00{'descr': '<f8'", 25);
  expect_load_error(p, KILN_ERROR, "truncated .npy header");
  write_bytes(p, "\x93NUMPY\x01\x00\xff\xff{'descr'", 18);
  expect_load_error(p, KILN_ERROR, "exceeds the limit of 10000");
  write_bytes(p, "\x93NUMPY\x02\x00\x00\x00\x00\x80{}", 14); /* 2 GiB */
  expect_load_error(p, KILN_ERROR, "exceeds the limit of 10000");
  /* data shorter or longer than the shape says */
  static const double d4[5] = {1, 2, 3, 4, 5};
  write_npy_raw(p, 1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", d4, 16);
  expect_load_error(p, KILN_ERROR, "truncated data");
  write_npy_raw(p, 1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", d4, 33);
  expect_load_error(p, KILN_ERROR, "1 unexpected bytes after the data");
  write_npy_raw(p, 1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", d4, 40);
  expect_load_error(p, KILN_ERROR, "8 unexpected bytes after the data");
  write_npy_raw(p, 1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", NULL, 0);
  expect_load_error(p, KILN_ERROR, "truncated data");
  /* A header that promises 8 GB in a small file: an error, not an allocation. */
  write_npy_raw(p, 1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000,), }", d4,
                8);
  expect_load_error(p, KILN_ERROR, "truncated data");
  ck_assert_int_eq(count_temp_files(), 0);
}
END_TEST

/* Headers that are not the dict numpy writes. */
START_TEST(npy_bad_headers) {
  static const double d2[2] = {1, 2};
  expect_header_error("[1, 2]", d2, 16, KILN_ERROR, "not a dict");
  expect_header_error("\xff\xfe garbage", d2, 16, KILN_ERROR, "not a dict");
  expect_header_error("", d2, 16, KILN_ERROR, "not a dict");
  expect_header_error("{'descr': '<f8', 'shape': (2,), }", d2, 16, KILN_ERROR, "missing key");
  expect_header_error("{}", d2, 16, KILN_ERROR, "missing key");
  expect_header_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': 1}", d2, 16,
                      KILN_ERROR, "unexpected key");
  expect_header_error("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (2,)}", d2,
                      16, KILN_ERROR, "duplicate key 'descr'");
  expect_header_error("{'descr': '<f8', 'fortran_order': 0, 'shape': (2,)}", d2, 16, KILN_ERROR,
                      "True or False");
  expect_header_error("{'descr': '<f8', 'fortran_order': Falsely, 'shape': (2,)}", d2, 16,
                      KILN_ERROR, "True or False");
  expect_header_error("{'descr': '<f8', 'fortran_order': False, 'shape': [2]}", d2, 16, KILN_ERROR,
                      "'shape' must be a tuple");
  expect_header_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 'a')}", d2, 16,
                      KILN_ERROR, "tuple of integers");
  expect_header_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2.0,)}", d2, 16,
                      KILN_ERROR, "expected ',' or ')'");
  expect_header_error("{'descr': '<f8', 'fortran_order': False, 'shape': (-2,)}", d2, 16,
                      KILN_ERROR, "negative dimension");
  expect_header_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3}", d2, 16,
                      KILN_ERROR, "expected ',' or ')'");
  expect_header_error("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}",
                      d2, 16, KILN_ERROR, "overflows int64");
  expect_header_error(
      "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4)}", d2, 16,
      KILN_ERROR, "is too large");
  expect_header_error("{'descr': '|u1', 'fortran_order': False, 'shape': (9223372036854775807, 2)}",
                      d2, 16, KILN_ERROR, "is too large");
  expect_header_error("{'descr: '<f8', 'fortran_order': False, 'shape': (2,)}", d2, 16, KILN_ERROR,
                      "expected ':'");
  expect_header_error("{'descr': '<f8", d2, 16, KILN_ERROR, "unterminated string");
  expect_header_error("{'descr': '<f8\n', 'fortran_order': False, 'shape': (2,)}", d2, 16,
                      KILN_ERROR, "unterminated string");
  expect_header_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2,)", d2, 16, KILN_ERROR,
                      "expected ',' or '}'");
  expect_header_error("{'descr': '<f8' 'fortran_order': False, 'shape': (2,)}", d2, 16, KILN_ERROR,
                      "expected ',' or '}'");
  expect_header_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2,)} x", d2, 16,
                      KILN_ERROR, "text after the dict");
  expect_header_error("{'descr': '<f\\x38', 'fortran_order': False, 'shape': (2,)}", d2, 16,
                      KILN_ERROR, "escape");
  const char *p = tpath("nul.npy");
  static const char nul_hdr[] = "{'descr': '<f8',\0'fortran_order': False, 'shape': (2,)}";
  uint8_t b[10 + sizeof nul_hdr - 1 + 16];
  memcpy(b, "\x93NUMPY\x01\x00", 8);
  b[8] = sizeof nul_hdr - 1;
  b[9] = 0;
  memcpy(b + 10, nul_hdr, sizeof nul_hdr - 1);
  memcpy(b + 10 + sizeof nul_hdr - 1, d2, 16);
  write_bytes(p, b, sizeof b);
  expect_load_error(p, KILN_ERROR, "NUL byte in the header");
}
END_TEST

/* Valid numpy files Kiln cannot hold: KILN_TYPE. */
START_TEST(npy_unsupported) {
  static const uint8_t z[64] = {0};
  const char *descrs[] = {"<u2", "<u4", "<u8",     "<f2",  "<c8",  "<c16", "|O", "<U5",
                          "|S3", "|V8", "<M8[ns]", "<f16", "<i16", "",     "<",  "b"};
  for (size_t k = 0; k < sizeof descrs / sizeof descrs[0]; k++) {
    char header[128], want[64];
    snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (2,), }",
             descrs[k]);
    snprintf(want, sizeof want, "unsupported dtype '%s'", descrs[k]);
    expect_header_error(header, z, 16, KILN_TYPE, want);
  }
  expect_header_error("{'descr': [('x', '<f4'), ('y', '<i4')], 'fortran_order': False, "
                      "'shape': (2,), }",
                      z, 16, KILN_TYPE, "structured dtypes");
  expect_header_error("{'descr': '<f8', 'fortran_order': False, "
                      "'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1), }",
                      z, 8, KILN_TYPE, "rank 9, Kiln supports up to 8");
  expect_header_error("{'descr': '<f8', 'fortran_order': False, "
                      "'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), }",
                      z, 8, KILN_TYPE, "rank 12");
  /* rank 8 is fine */
  kiln_tensor *t = load_header_ok(
      1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1), }", z, 8);
  ck_assert_int_eq(kiln_tensor_rank(t), 8);
  kiln_tensor_free(t);
}
END_TEST

START_TEST(npy_misuse) {
  kiln_tensor *t = kt_tensor(KILN_FLOAT32, 1, (int64_t[]){2}, (double[]){1, 2});
  kiln_tensor *out = t;
  ASSERT_ERR(kiln_npy_save(NULL, t, err, sizeof err), KILN_MISUSE, "path is NULL");
  ASSERT_ERR(kiln_npy_save(tpath("a.npy"), NULL, err, sizeof err), KILN_MISUSE,
             "not a valid tensor");
  kiln_tensor fake;
  memset(&fake, 0, sizeof fake);
  ASSERT_ERR(kiln_npy_save(tpath("a.npy"), &fake, err, sizeof err), KILN_MISUSE,
             "not a valid tensor");
  ASSERT_ERR(kiln_npy_load(NULL, &out, err, sizeof err), KILN_MISUSE, "path is NULL");
  ck_assert_ptr_null(out);
  ASSERT_ERR(kiln_npy_load(tpath("a.npy"), NULL, err, sizeof err), KILN_MISUSE, "out is NULL");
  /* No message buffer, or a tiny one: still a status, no overflow. */
  ck_assert_int_eq(kiln_npy_load(tpath("missing.npy"), &out, NULL, 0), KILN_ERROR);
  char tiny[4] = "abc";
  ck_assert_int_eq(kiln_npy_load(tpath("missing.npy"), &out, tiny, 1), KILN_ERROR);
  ck_assert_str_eq(tiny, "");
  ck_assert_int_eq(kiln_npy_load(tpath("missing.npy"), &out, tiny, sizeof tiny), KILN_ERROR);
  ck_assert_uint_eq(strlen(tiny), 3);
  kiln_tensor_free(t);
}
END_TEST

/* Saving replaces a file whole, or not at all. */
START_TEST(npy_save_atomic) {
  kiln_tensor *a = kt_tensor(KILN_INT64, 1, (int64_t[]){3}, (double[]){1, 2, 3});
  kiln_tensor *big = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){4096}, NULL);
  const char *p = tpath("w.npy");
  ASSERT_OK(kiln_npy_save(p, a, err, sizeof err));
  size_t n0;
  uint8_t *before = read_bytes(p, &n0);
  /* Overwriting works and leaves no temporary file. */
  ASSERT_OK(kiln_npy_save(p, big, err, sizeof err));
  kiln_tensor *b = load_ok(p);
  ck_assert(kt_same_bits(b, big));
  kiln_tensor_free(b);
  ASSERT_OK(kiln_npy_save(p, a, err, sizeof err));
  ck_assert_int_eq(count_temp_files(), 0);

  /* A write that fails half way (file size limit): the old file stays. */
  struct rlimit old, lim;
  ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
  lim = old;
  lim.rlim_cur = 1000;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
  kiln_status st = kiln_npy_save(p, big, err, sizeof err);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, prev);
  ck_assert_msg(st == KILN_ERROR, "status %s (%s)", kiln_status_str(st), err);
  ck_assert_msg(strstr(err, "cannot write it"), "%s", err);
  size_t n1;
  uint8_t *after = read_bytes(p, &n1);
  ck_assert_uint_eq(n1, n0);
  ck_assert_int_eq(memcmp(before, after, n0), 0);
  free(after);
  ck_assert_int_eq(count_temp_files(), 0);

  /* Renaming over a directory fails: the temporary file is removed. */
  const char *dir = tpath("adir");
  ck_assert_int_eq(mkdir(dir, 0777), 0);
  ASSERT_ERR(kiln_npy_save(dir, a, err, sizeof err), KILN_ERROR, "cannot rename");
  ck_assert_int_eq(count_temp_files(), 0);
  /* A directory that does not exist. */
  ASSERT_ERR(kiln_npy_save(tpath("nodir/x.npy"), a, err, sizeof err), KILN_ERROR,
             "cannot create a temporary file");
  /* Out of memory: the old file stays. */
  kl_mem_fail_at(1);
  st = kiln_npy_save(p, big, err, sizeof err);
  kl_mem_fail_at(0);
  ck_assert_int_eq(st, KILN_NOMEM);
  after = read_bytes(p, &n1);
  ck_assert_uint_eq(n1, n0);
  ck_assert_int_eq(memcmp(before, after, n0), 0);
  free(after);
  free(before);
  kiln_tensor_free(a);
  kiln_tensor_free(big);
}
END_TEST

/* Every allocation of load may fail: KILN_NOMEM and no tensor, never a crash. */
START_TEST(npy_out_of_memory) {
  static const int32_t f23[6] = {1, 4, 2, 5, 3, 6};
  const char *p = tpath("m.npy");
  write_npy_raw(p, 1, 0, "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }", f23, 24);
  int failures = 0;
  for (long k = 1; k < 50; k++) {
    kiln_tensor *t = NULL;
    kl_mem_fail_at(k);
    kiln_status st = kiln_npy_load(p, &t, err, sizeof err);
    kl_mem_fail_at(0);
    if (st == KILN_OK) {
      ck_assert_int_eq(((int32_t *)kiln_tensor_data(t))[1], 2);
      kiln_tensor_free(t);
      break;
    }
    ck_assert_msg(st == KILN_NOMEM, "k=%ld: %s (%s)", k, kiln_status_str(st), err);
    ck_assert_ptr_null(t);
    ck_assert(strstr(err, "out of memory"));
    failures++;
  }
  ck_assert_int_ge(failures, 3); /* header, tensor struct, data, Fortran buffer */
}
END_TEST

/* ---------------------------------------------------------------- CSV */

static kiln_tensor *csv_ok(const char *path, int skip, kiln_dtype dt, int64_t rows, int64_t cols) {
  kiln_tensor *t = NULL;
  kiln_status st = kiln_csv_load(path, skip, dt, &t, err, sizeof err);
  ck_assert_msg(st == KILN_OK, "%s: %s (%s)", path, kiln_status_str(st), err);
  ck_assert_str_eq(err, "");
  check_shape(t, dt, 2, (int64_t[]){rows, cols});
  return t;
}

static void check_row(const kiln_tensor *t, int64_t row, const double *want, int n) {
  int64_t cols = kiln_tensor_dim(t, 1);
  ck_assert_int_eq(cols, n);
  for (int j = 0; j < n; j++) {
    double got = kiln_tensor_get(t, row * cols + j);
    ck_assert_msg(got == want[j], "row %lld col %d: %.17g, want %.17g", (long long)row, j, got,
                  want[j]);
  }
}

static void expect_csv_error(const char *path, int skip, kiln_dtype dt, kiln_status want,
                             const char *substr) {
  kiln_tensor *t = (kiln_tensor *)(uintptr_t)1;
  err[0] = 0;
  kiln_status st = kiln_csv_load(path, skip, dt, &t, err, sizeof err);
  ck_assert_msg(st == want, "%s: status %s, want %s (%s)", path, kiln_status_str(st),
                kiln_status_str(want), err);
  ck_assert_ptr_null(t);
  ck_assert_msg(strstr(err, substr) != NULL, "message '%s' lacks '%s'", err, substr);
}

static void csv_text_error(const char *text, int skip, const char *substr) {
  const char *p = tpath("bad.csv");
  write_text(p, text);
  expect_csv_error(p, skip, KILN_FLOAT64, KILN_ERROR, substr);
}

/* Writes text gzip-compressed. */
static void write_gz(const char *path, const char *text) {
  gzFile gz = gzopen(path, "wb");
  ck_assert_ptr_nonnull(gz);
  ck_assert_int_eq(gzwrite(gz, text, (unsigned)strlen(text)), (int)strlen(text));
  ck_assert_int_eq(gzclose(gz), Z_OK);
}

START_TEST(csv_iris) {
  kiln_tensor *t = csv_ok(DATA "iris.csv", 1, KILN_FLOAT64, 150, 5);
  check_row(t, 0, (double[]){5.1, 3.5, 1.4, 0.2, 0}, 5);
  check_row(t, 1, (double[]){4.9, 3.0, 1.4, 0.2, 0}, 5);
  check_row(t, 148, (double[]){6.2, 3.4, 5.4, 2.3, 2}, 5);
  check_row(t, 149, (double[]){5.9, 3.0, 5.1, 1.8, 2}, 5);
  kiln_tensor_free(t);
  t = csv_ok(DATA "iris.csv", 1, KILN_FLOAT32, 150, 5);
  check_row(t, 149, (double[]){5.9f, 3.0f, 5.1f, 1.8f, 2}, 5);
  kiln_tensor_free(t);
  t = csv_ok(DATA "iris.csv", 1, KILN_INT32, 150, 5); /* truncates toward zero */
  check_row(t, 0, (double[]){5, 3, 1, 0, 0}, 5);
  kiln_tensor_free(t);
  /* Without skipping, the header line is not numbers: an error naming line 1. */
  expect_csv_error(DATA "iris.csv", 0, KILN_FLOAT64, KILN_ERROR, "is not a number");
  expect_csv_error(DATA "iris.csv", 0, KILN_FLOAT64, KILN_ERROR, "iris.csv:1: field 3");
}
END_TEST

START_TEST(csv_digits_gz) {
  static const double row0[65] = {0, 0,  5,  13, 9,  1, 0, 0, 0,  0,  13, 15, 10, 15, 5, 0, 0,
                                  3, 15, 2,  0,  11, 8, 0, 0, 4,  12, 0,  0,  8,  8,  0, 0, 5,
                                  8, 0,  0,  9,  8,  0, 0, 4, 11, 0,  1,  12, 7,  0,  0, 2, 14,
                                  5, 10, 12, 0,  0,  0, 0, 6, 13, 10, 0,  0,  0,  0};
  static const double last[65] = {0,  0,  10, 14, 8,  1, 0, 0, 0,  2,  16, 14, 6,  1, 0, 0, 0,
                                  0,  15, 15, 8,  15, 0, 0, 0, 0,  5,  16, 16, 10, 0, 0, 0, 0,
                                  12, 15, 15, 12, 0,  0, 0, 4, 16, 6,  4,  16, 6,  0, 0, 8, 16,
                                  10, 8,  16, 8,  0,  0, 1, 8, 12, 14, 12, 1,  0,  8};
  kiln_tensor *t = csv_ok(DATA "digits.csv.gz", 0, KILN_UINT8, 1797, 65);
  check_row(t, 0, row0, 65);
  check_row(t, 1796, last, 65);
  kiln_tensor_free(t);
  t = csv_ok(DATA "digits.csv.gz", 0, KILN_FLOAT64, 1797, 65);
  check_row(t, 0, row0, 65);
  ck_assert(kiln_tensor_get(t, 999 * 65 + 64) == 3); /* line 1000's label */
  kiln_tensor_free(t);
  t = csv_ok(DATA "breast_cancer.csv", 1, KILN_FLOAT64, 569, 31);
  ck_assert(kiln_tensor_get(t, 0) == 17.99);
  ck_assert(kiln_tensor_get(t, 568 * 31 + 30) == 1);
  ck_assert(kiln_tensor_get(t, 568 * 31 + 29) == 0.07039);
  kiln_tensor_free(t);
}
END_TEST

START_TEST(csv_formats) {
  const char *p = tpath("a.csv");
  /* CRLF, blanks around fields, blank lines (also in the middle and at the end). */
  write_text(p, "x,y\r\n 1 , 2\r\n\r\n3,\t-4.5e1 \r\n \r\n\r\n\n");
  kiln_tensor *t = csv_ok(p, 1, KILN_FLOAT64, 2, 2);
  check_row(t, 0, (double[]){1, 2}, 2);
  check_row(t, 1, (double[]){3, -45}, 2);
  kiln_tensor_free(t);
  /* No final newline; a UTF-8 byte order mark. */
  write_text(p, "\xEF\xBB\xBF"
                "1,2\n3,4");
  t = csv_ok(p, 0, KILN_INT16, 2, 2);
  check_row(t, 1, (double[]){3, 4}, 2);
  kiln_tensor_free(t);
  /* One column; nan and inf; hex floats. */
  write_text(p, "nan\ninf\n-inf\n0x1p-2\n");
  t = csv_ok(p, 0, KILN_FLOAT64, 4, 1);
  ck_assert(isnan(kiln_tensor_get(t, 0)));
  ck_assert(kiln_tensor_get(t, 1) == INFINITY);
  ck_assert(kiln_tensor_get(t, 2) == -INFINITY);
  ck_assert(kiln_tensor_get(t, 3) == 0.25);
  kiln_tensor_free(t);
  /* int64 integers are exact beyond 2^53; other fields go through a double. */
  write_text(p, "9007199254740993,-9223372036854775808,1.9\n");
  t = csv_ok(p, 0, KILN_INT64, 1, 3);
  const int64_t *i64 = kiln_tensor_data(t);
  ck_assert(i64[0] == INT64_C(9007199254740993));
  ck_assert(i64[1] == INT64_MIN);
  ck_assert(i64[2] == 1);
  kiln_tensor_free(t);
  /* Kiln's casts: saturating, NaN -> 0, bool is != 0. */
  write_text(p, "300,-1,nan,2.7\n");
  t = csv_ok(p, 0, KILN_UINT8, 1, 4);
  check_row(t, 0, (double[]){255, 0, 0, 2}, 4);
  kiln_tensor_free(t);
  write_text(p, "0,-0.0,0.5,nan\n");
  t = csv_ok(p, 0, KILN_BOOL, 1, 4);
  check_row(t, 0, (double[]){0, 0, 1, 1}, 4);
  kiln_tensor_free(t);
  /* Skipping several lines; gzip whatever the file's name. */
  const char *g = tpath("plain_name.csv");
  write_gz(g, "# comment\nname,value\n1,2\n3,4\n");
  t = csv_ok(g, 2, KILN_FLOAT32, 2, 2);
  check_row(t, 1, (double[]){3, 4}, 2);
  kiln_tensor_free(t);
}
END_TEST

START_TEST(csv_errors) {
  csv_text_error("1,2,3\n4,5,6\n7,8\n", 0, "bad.csv:3: 2 fields, expected 3 as on line 1");
  csv_text_error("h\n1,2,3\n\n4,5,6,7\n", 1, "bad.csv:4: 4 fields, expected 3 as on line 2");
  csv_text_error("1,2\n3\n", 0, ":2: 1 field, expected 2");
  csv_text_error("1,,3\n", 0, ":1: field 2 is empty");
  csv_text_error("1,2,\n", 0, ":1: field 3 is empty");
  csv_text_error(",1\n", 0, ":1: field 1 is empty");
  csv_text_error("1,abc,3\n", 0, ":1: field 2, 'abc', is not a number");
  csv_text_error("1,2\n3,4x\n", 0, ":2: field 2, '4x', is not a number");
  csv_text_error("1;2\n", 0, "field 1, '1;2', is not a number");
  csv_text_error("\"1\",2\n", 0, "is not a number");
  csv_text_error("", 0, "no data rows (0 lines, 0 skipped)");
  csv_text_error("a,b\n", 1, "no data rows (1 line, 1 skipped)");
  csv_text_error("a,b\n1,2\n", 5, "no data rows");
  csv_text_error("\n \n\t\n", 0, "no data rows");
  const char *p = tpath("nul.csv");
  write_bytes(p, "1,2\n3,\0\n", 8);
  expect_csv_error(p, 0, KILN_FLOAT64, KILN_ERROR, "nul.csv:2: NUL byte");
  expect_csv_error(tpath("missing.csv"), 0, KILN_FLOAT64, KILN_ERROR, "cannot open");
  expect_csv_error(tmpdir, 0, KILN_FLOAT64, KILN_ERROR, "cannot read");
  /* A ragged gzip file: the line number counts skipped lines too. */
  const char *g = tpath("r.csv.gz");
  write_gz(g, "a,b\n1,2\n3,4,5\n");
  expect_csv_error(g, 1, KILN_FLOAT64, KILN_ERROR, "r.csv.gz:3: 3 fields, expected 2");
  /* Truncated and corrupt gzip data. */
  size_t n;
  uint8_t *z = read_bytes(DATA "digits.csv.gz", &n);
  const char *tz = tpath("trunc.csv.gz");
  write_bytes(tz, z, n / 2);
  expect_csv_error(tz, 0, KILN_FLOAT64, KILN_ERROR, "trunc.csv.gz");
  for (size_t i = 100; i < 400; i++)
    z[i] ^= 0x5a;
  write_bytes(tz, z, n);
  expect_csv_error(tz, 0, KILN_FLOAT64, KILN_ERROR, "trunc.csv.gz");
  free(z);
  /* Misuse. */
  kiln_tensor *t = (kiln_tensor *)(uintptr_t)1;
  ASSERT_ERR(kiln_csv_load(NULL, 0, KILN_FLOAT64, &t, err, sizeof err), KILN_MISUSE, "path");
  ck_assert_ptr_null(t);
  ASSERT_ERR(kiln_csv_load(DATA "iris.csv", 0, KILN_FLOAT64, NULL, err, sizeof err), KILN_MISUSE,
             "out is NULL");
  ASSERT_ERR(kiln_csv_load(DATA "iris.csv", -1, KILN_FLOAT64, &t, err, sizeof err), KILN_MISUSE,
             "negative");
  ASSERT_ERR(kiln_csv_load(DATA "iris.csv", 1, KILN_N_DTYPES, &t, err, sizeof err), KILN_MISUSE,
             "invalid dtype");
  ASSERT_ERR(kiln_csv_load(DATA "iris.csv", 1, (kiln_dtype)-3, &t, err, sizeof err), KILN_MISUSE,
             "invalid dtype");
  ck_assert_int_eq(kiln_csv_load(tpath("missing.csv"), 0, KILN_FLOAT64, &t, NULL, 0), KILN_ERROR);
}
END_TEST

START_TEST(csv_out_of_memory) {
  const char *p = tpath("m.csv");
  write_text(p, "1,2\n3,4\n");
  int failures = 0;
  for (long k = 1; k < 50; k++) {
    kiln_tensor *t = NULL;
    kl_mem_fail_at(k);
    kiln_status st = kiln_csv_load(p, 0, KILN_INT32, &t, err, sizeof err);
    kl_mem_fail_at(0);
    if (st == KILN_OK) {
      check_row(t, 1, (double[]){3, 4}, 2);
      kiln_tensor_free(t);
      break;
    }
    ck_assert_msg(st == KILN_NOMEM, "k=%ld: %s (%s)", k, kiln_status_str(st), err);
    ck_assert_ptr_null(t);
    failures++;
  }
  ck_assert_int_ge(failures, 3); /* text, values, tensor struct, tensor data */
}
END_TEST

/* ---------------------------------------------------------------- generator */

START_TEST(rng_reference) {
  /* splitmix64 from 0: the published first outputs, which are the state. */
  kiln_rng r;
  kiln_rng_seed(&r, 0);
  ck_assert(r.s[0] == UINT64_C(0xe220a8397b1dcdaf));
  ck_assert(r.s[1] == UINT64_C(0x6e789e6aa1b965f4));
  ck_assert(r.s[2] == UINT64_C(0x06c45d188009454f));
  ck_assert(r.s[3] == UINT64_C(0xf88bb8a8724c81ec));
  /* xoshiro256** from the state {1, 2, 3, 4}: the reference outputs. */
  kiln_rng x = {{1, 2, 3, 4}};
  static const uint64_t want[6] = {11520u,
                                   0u,
                                   1509978240u,
                                   UINT64_C(1215971899390074240),
                                   UINT64_C(1216172134540287360),
                                   UINT64_C(607988272756665600)};
  for (int i = 0; i < 6; i++)
    ck_assert(kiln_rng_next(&x) == want[i]);
  /* The stream of seed 42 (pinned: saved experiments depend on it). */
  kiln_rng_seed(&r, 42);
  ck_assert(kiln_rng_next(&r) == UINT64_C(0x15780b2e0c2ec716));
  ck_assert(kiln_rng_next(&r) == UINT64_C(0x6104d9866d113a7e));
  /* NULL generators. */
  kiln_rng_seed(NULL, 1);
  ck_assert(kiln_rng_next(NULL) == 0);
  ck_assert(isnan(kiln_rng_uniform(NULL)));
  ck_assert(isnan(kiln_rng_normal(NULL)));
  ck_assert(kiln_rng_below(NULL, 10) == 0);
}
END_TEST

START_TEST(rng_determinism) {
  kiln_rng a, b, c;
  kiln_rng_seed(&a, 7);
  kiln_rng_seed(&b, 7);
  kiln_rng_seed(&c, 8);
  int same_c = 0;
  for (int i = 0; i < 1000; i++) {
    uint64_t x = kiln_rng_next(&a);
    ck_assert(x == kiln_rng_next(&b));
    same_c += x == kiln_rng_next(&c);
  }
  ck_assert_int_eq(same_c, 0);
  /* A copy of the state continues the same stream. */
  kiln_rng d = a;
  for (int i = 0; i < 10; i++)
    ck_assert(kiln_rng_normal(&a) == kiln_rng_normal(&d));
}
END_TEST

START_TEST(rng_uniform) {
  kiln_rng r;
  kiln_rng_seed(&r, 1);
  double sum = 0, lo = 1, hi = 0;
  const int n = 1000000;
  for (int i = 0; i < n; i++) {
    double u = kiln_rng_uniform(&r);
    ck_assert(u >= 0.0 && u < 1.0);
    sum += u;
    lo = u < lo ? u : lo;
    hi = u > hi ? u : hi;
  }
  ck_assert_double_eq_tol(sum / n, 0.5, 0.002); /* sd of the mean: 0.0003 */
  ck_assert(lo < 1e-4 && hi > 1 - 1e-4);
  /* An all-zero state (seeding never makes one) gives 0. */
  kiln_rng m = {{0, 0, 0, 0}};
  ck_assert(kiln_rng_uniform(&m) == 0.0);
}
END_TEST

START_TEST(rng_normal) {
  kiln_rng r;
  kiln_rng_seed(&r, 2024);
  const int n = 100000;
  double sum = 0, sq = 0, cube = 0;
  int beyond3 = 0;
  for (int i = 0; i < n; i++) {
    double z = kiln_rng_normal(&r);
    ck_assert(isfinite(z));
    sum += z;
    sq += z * z;
    cube += z * z * z;
    beyond3 += fabs(z) > 3;
  }
  double mean = sum / n, var = sq / n - mean * mean;
  ck_assert_double_eq_tol(mean, 0.0, 0.02);    /* sd 0.0032 */
  ck_assert_double_eq_tol(var, 1.0, 0.03);     /* sd 0.0045 */
  ck_assert_double_eq_tol(cube / n, 0.0, 0.1); /* skewness, sd 0.008 */
  ck_assert(beyond3 > 200 && beyond3 < 340);   /* expected 270 */
}
END_TEST

START_TEST(rng_below_and_shuffle) {
  kiln_rng r;
  kiln_rng_seed(&r, 3);
  ck_assert(kiln_rng_below(&r, 0) == 0);
  ck_assert(kiln_rng_below(&r, 1) == 0);
  int counts[3] = {0};
  for (int i = 0; i < 30000; i++)
    counts[kiln_rng_below(&r, 3)]++;
  for (int k = 0; k < 3; k++)
    ck_assert_int_lt(abs(counts[k] - 10000), 500);
  uint64_t big = (UINT64_C(1) << 63) + 1;
  for (int i = 0; i < 1000; i++)
    ck_assert(kiln_rng_below(&r, big) < big);

  /* A shuffle is a permutation, reproducible, and not the identity. */
  enum { N = 1000 };
  static int64_t p[N], q[N];
  for (int i = 0; i < N; i++)
    p[i] = q[i] = i;
  kiln_rng a, b;
  kiln_rng_seed(&a, 99);
  kiln_rng_seed(&b, 99);
  kiln_shuffle(&a, p, N);
  kiln_shuffle(&b, q, N);
  static char seen[N];
  int fixed = 0;
  for (int i = 0; i < N; i++) {
    ck_assert(p[i] >= 0 && p[i] < N && !seen[p[i]]);
    seen[p[i]] = 1;
    ck_assert(p[i] == q[i]);
    fixed += p[i] == i;
  }
  ck_assert_int_lt(fixed, 10); /* about 1 expected */
  /* Each of the 6 orders of 3 elements is about equally likely. */
  int orders[6] = {0};
  for (int t = 0; t < 60000; t++) {
    int64_t v[3] = {0, 1, 2};
    kiln_shuffle(&r, v, 3);
    orders[v[0] * 2 + (v[1] > v[2])]++;
  }
  for (int k = 0; k < 6; k++)
    ck_assert_int_lt(abs(orders[k] - 10000), 500);
  /* Degenerate arguments do nothing. */
  int64_t one = 5;
  kiln_shuffle(&r, &one, 1);
  ck_assert(one == 5);
  kiln_shuffle(&r, p, 0);
  kiln_shuffle(&r, p, -4);
  kiln_shuffle(&r, NULL, 10);
  kiln_shuffle(NULL, p, N);
}
END_TEST

/* ---------------------------------------------------------------- init */

static double mean_of(const kiln_tensor *t) {
  double s = 0;
  for (int64_t i = 0; i < kiln_tensor_size(t); i++)
    s += kiln_tensor_get(t, i);
  return s / (double)kiln_tensor_size(t);
}

START_TEST(init_glorot) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT32, 2, (int64_t[]){64, 128}, NULL);
  kiln_rng r;
  kiln_rng_seed(&r, 5);
  ck_assert_int_eq(kiln_init_glorot_uniform(W, &r), KILN_OK);
  const kiln_tensor *v = kiln_shared_value(W);
  const float limit = (float)sqrt(6.0 / (64 + 128)); /* 0.17677669... */
  double maxabs = 0, sq = 0;
  for (int64_t i = 0; i < 64 * 128; i++) {
    float w = ((const float *)kiln_tensor_data(v))[i];
    ck_assert_msg(fabsf(w) <= limit, "element %lld: %g beyond %g", (long long)i, w, limit);
    maxabs = fabs(w) > maxabs ? fabs(w) : maxabs;
    sq += (double)w * w;
  }
  ck_assert(maxabs > 0.99 * limit);
  ck_assert_double_eq_tol(mean_of(v), 0.0, 0.005);
  ck_assert_double_eq_tol(sq / (64 * 128), (double)limit * limit / 3, 0.05 * limit * limit / 3);

  /* Other ranks: the limits of the documented fans. */
  struct {
    int rank;
    int64_t shape[4];
    double limit;
  } cases[] = {{0, {0}, sqrt(3.0)},
               {1, {10}, sqrt(6.0 / 20)},
               {4, {8, 4, 3, 3}, sqrt(6.0 / ((8 + 4) * 9))},
               {3, {5, 7, 2}, sqrt(6.0 / ((5 + 7) * 2))}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    kiln_node *s = kiln_shared(ctx, "k", KILN_FLOAT64, cases[c].rank, cases[c].shape, NULL);
    ck_assert_int_eq(kiln_init_glorot_uniform(s, &r), KILN_OK);
    const kiln_tensor *sv = kiln_shared_value(s);
    double m = 0;
    for (int64_t i = 0; i < kiln_tensor_size(sv); i++) {
      double w = fabs(kiln_tensor_get(sv, i));
      ck_assert(w <= cases[c].limit);
      m = w > m ? w : m;
    }
    ck_assert(m > 0); /* something was drawn */
  }
  /* Empty variables stay empty; integers are refused. */
  kiln_node *e = kiln_shared(ctx, "e", KILN_FLOAT32, 2, (int64_t[]){0, 5}, NULL);
  ck_assert_int_eq(kiln_init_glorot_uniform(e, &r), KILN_OK);
  kiln_node *iw = kiln_shared(ctx, "iw", KILN_INT32, 2, (int64_t[]){2, 2}, NULL);
  ck_assert_int_eq(kiln_init_glorot_uniform(iw, &r), KILN_TYPE);
  ck_assert_msg(strstr(kiln_errmsg(ctx), "'iw' is int32"), "%s", kiln_errmsg(ctx));
  kiln_ctx_free(ctx);
}
END_TEST

START_TEST(init_uniform_normal_zeros) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_rng r;
  kiln_rng_seed(&r, 11);
  /* Integers truncate: [0, 10) gives 0..9, each of them. */
  kiln_node *I = kiln_shared(ctx, "I", KILN_INT32, 1, (int64_t[]){1000}, NULL);
  ck_assert_int_eq(kiln_init_uniform(I, &r, 0, 10), KILN_OK);
  int seen[10] = {0};
  const int32_t *iv = kiln_tensor_data(kiln_shared_value(I));
  for (int i = 0; i < 1000; i++) {
    ck_assert(iv[i] >= 0 && iv[i] <= 9);
    seen[iv[i]]++;
  }
  for (int k = 0; k < 10; k++)
    ck_assert_int_gt(seen[k], 50);
  /* Uniform on floats. */
  kiln_node *U = kiln_shared(ctx, "U", KILN_FLOAT64, 2, (int64_t[]){100, 100}, NULL);
  ck_assert_int_eq(kiln_init_uniform(U, &r, -2, 3), KILN_OK);
  const kiln_tensor *uv = kiln_shared_value(U);
  for (int64_t i = 0; i < 10000; i++) {
    double x = kiln_tensor_get(uv, i);
    ck_assert(x >= -2 && x < 3);
  }
  ck_assert_double_eq_tol(mean_of(uv), 0.5, 0.05);
  ck_assert_int_eq(kiln_init_uniform(U, &r, 4, 4), KILN_OK); /* lo == hi */
  ck_assert(kiln_tensor_get(kiln_shared_value(U), 77) == 4);
  /* Normal. */
  kiln_node *N = kiln_shared(ctx, "N", KILN_FLOAT32, 1, (int64_t[]){20000}, NULL);
  ck_assert_int_eq(kiln_init_normal(N, &r, 3, 2), KILN_OK);
  const kiln_tensor *nv = kiln_shared_value(N);
  double m = mean_of(nv), sq = 0;
  for (int64_t i = 0; i < 20000; i++)
    sq += pow(kiln_tensor_get(nv, i) - m, 2);
  ck_assert_double_eq_tol(m, 3, 0.06);
  ck_assert_double_eq_tol(sqrt(sq / 20000), 2, 0.06);
  ck_assert_int_eq(kiln_init_normal(N, &r, 1, 0), KILN_OK); /* std 0 */
  ck_assert(kiln_tensor_get(kiln_shared_value(N), 5) == 1);
  /* Zeros, also on bool and rank 0. */
  ck_assert_int_eq(kiln_init_zeros(U), KILN_OK);
  for (int64_t i = 0; i < 10000; i++)
    ck_assert(kiln_tensor_get(kiln_shared_value(U), i) == 0);
  kiln_node *B = kiln_shared(ctx, "B", KILN_BOOL, 1, (int64_t[]){3}, ((uint8_t[]){1, 1, 1}));
  ck_assert_int_eq(kiln_init_zeros(B), KILN_OK);
  ck_assert(kiln_tensor_get(kiln_shared_value(B), 2) == 0);
  kiln_node *S = kiln_shared(ctx, "S", KILN_FLOAT64, 0, NULL, ((double[]){5}));
  ck_assert_int_eq(kiln_init_uniform(S, &r, 10, 11), KILN_OK);
  ck_assert(kiln_tensor_get(kiln_shared_value(S), 0) >= 10);
  ck_assert_int_eq(kiln_init_zeros(S), KILN_OK);
  ck_assert(kiln_tensor_get(kiln_shared_value(S), 0) == 0);
  kiln_ctx_free(ctx);
}
END_TEST

/* The same seed gives the same weights, in another context too. */
START_TEST(init_deterministic) {
  kiln_tensor *vals[2];
  for (int k = 0; k < 2; k++) {
    kiln_ctx *ctx = kiln_ctx_new();
    kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT32, 2, (int64_t[]){30, 20}, NULL);
    kiln_node *b = kiln_shared(ctx, "b", KILN_FLOAT64, 1, (int64_t[]){20}, NULL);
    kiln_rng r;
    kiln_rng_seed(&r, 2718);
    ck_assert_int_eq(kiln_init_glorot_uniform(W, &r), KILN_OK);
    ck_assert_int_eq(kiln_init_normal(b, &r, 0, 0.1), KILN_OK);
    const kiln_tensor *w = kiln_shared_value(W), *bv = kiln_shared_value(b);
    vals[k] = kiln_tensor_new(KILN_FLOAT64, 1, (int64_t[]){620}, NULL);
    double *d = kiln_tensor_data(vals[k]);
    for (int i = 0; i < 600; i++)
      d[i] = kiln_tensor_get(w, i);
    for (int i = 0; i < 20; i++)
      d[600 + i] = kiln_tensor_get(bv, i);
    kiln_ctx_free(ctx);
  }
  ck_assert(kt_same_bits(vals[0], vals[1]));
  kiln_tensor_free(vals[0]);
  kiln_tensor_free(vals[1]);
}
END_TEST

START_TEST(init_errors) {
  kiln_ctx *ctx = kiln_ctx_new();
  kiln_rng r;
  kiln_rng_seed(&r, 1);
  /* Not a shared variable: an input, a constant, an expression, NULL. */
  kiln_node *x = kiln_fmatrix(ctx, "x");
  kiln_node *c = kiln_const(ctx, KILN_FLOAT64, 1, (int64_t[]){2}, ((double[]){1, 2}));
  kiln_node *y = kiln_add(c, c);
  kiln_node *nodes[] = {x, c, y};
  for (int k = 0; k < 3; k++) {
    kiln_clear_error(ctx);
    ck_assert_int_eq(kiln_init_uniform(nodes[k], &r, 0, 1), KILN_MISUSE);
    ck_assert_msg(strstr(kiln_errmsg(ctx), "not a shared variable"), "%s", kiln_errmsg(ctx));
    kiln_clear_error(ctx);
    ck_assert_int_eq(kiln_init_normal(nodes[k], &r, 0, 1), KILN_MISUSE);
    ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
    kiln_clear_error(ctx);
    ck_assert_int_eq(kiln_init_glorot_uniform(nodes[k], &r), KILN_MISUSE);
    ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
    kiln_clear_error(ctx);
    ck_assert_int_eq(kiln_init_zeros(nodes[k]), KILN_MISUSE);
    ck_assert_int_eq(kiln_errcode(ctx), KILN_MISUSE);
  }
  ck_assert_int_eq(kiln_init_uniform(NULL, &r, 0, 1), KILN_MISUSE);
  ck_assert_int_eq(kiln_init_normal(NULL, &r, 0, 1), KILN_MISUSE);
  ck_assert_int_eq(kiln_init_glorot_uniform(NULL, &r), KILN_MISUSE);
  ck_assert_int_eq(kiln_init_zeros(NULL), KILN_MISUSE);

  /* Bad parameters: KILN_MISUSE, the value unchanged. */
  kiln_node *W = kiln_shared(ctx, "W", KILN_FLOAT64, 1, (int64_t[]){4}, ((double[]){1, 2, 3, 4}));
  kiln_tensor *before = kt_tensor(KILN_FLOAT64, 1, (int64_t[]){4}, (double[]){1, 2, 3, 4});
  kiln_clear_error(ctx);
  ck_assert_int_eq(kiln_init_uniform(W, NULL, 0, 1), KILN_MISUSE);
  ck_assert_msg(strstr(kiln_errmsg(ctx), "generator is NULL"), "%s", kiln_errmsg(ctx));
  ck_assert_int_eq(kiln_init_glorot_uniform(W, NULL), KILN_MISUSE);
  ck_assert_int_eq(kiln_init_normal(W, NULL, 0, 1), KILN_MISUSE);
  ck_assert_int_eq(kiln_init_uniform(W, &r, 1, 0), KILN_MISUSE);
  ck_assert_msg(strstr(kiln_errmsg(ctx), "init_uniform: the bounds [1, 0) of 'W'"), "%s",
                kiln_errmsg(ctx));
  ck_assert_int_eq(kiln_init_uniform(W, &r, NAN, 0), KILN_MISUSE);
  ck_assert_int_eq(kiln_init_uniform(W, &r, 0, INFINITY), KILN_MISUSE);
  ck_assert_int_eq(kiln_init_uniform(W, &r, -1e308, 1e308), KILN_MISUSE); /* hi - lo overflows */
  ck_assert_int_eq(kiln_init_normal(W, &r, 0, -1), KILN_MISUSE);
  ck_assert_msg(strstr(kiln_errmsg(ctx), "std >= 0"), "%s", kiln_errmsg(ctx));
  ck_assert_int_eq(kiln_init_normal(W, &r, NAN, 1), KILN_MISUSE);
  ck_assert_int_eq(kiln_init_normal(W, &r, 0, INFINITY), KILN_MISUSE);
  ck_assert(kt_same_bits(kiln_shared_value(W), before));

  /* Out of memory: KILN_NOMEM with a message, the value unchanged. */
  int failures = 0;
  for (long k = 1; k < 20; k++) {
    kl_mem_fail_at(k);
    kiln_status st = kiln_init_normal(W, &r, 0, 1);
    kl_mem_fail_at(0);
    if (st == KILN_OK) break;
    ck_assert_int_eq(st, KILN_NOMEM);
    ck_assert_msg(strstr(kiln_errmsg(ctx), "out of memory"), "%s", kiln_errmsg(ctx));
    ck_assert(kt_same_bits(kiln_shared_value(W), before));
    failures++;
  }
  ck_assert_int_ge(failures, 2);
  kiln_tensor_free(before);
  kiln_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- main */

int main(void) {
  Suite *s = suite_create("util");
  TCase *tc = tcase_create("npy");
  tcase_add_checked_fixture(tc, make_tmpdir, remove_tmpdir);
  tcase_add_test(tc, npy_round_trip);
  tcase_add_test(tc, npy_header_bytes_numpy);
  tcase_add_test(tc, npy_header_bytes_other);
  tcase_add_test(tc, npy_header_variants);
  tcase_add_test(tc, npy_big_endian);
  tcase_add_test(tc, npy_fortran_order);
  tcase_add_test(tc, npy_bad_files);
  tcase_add_test(tc, npy_bad_headers);
  tcase_add_test(tc, npy_unsupported);
  tcase_add_test(tc, npy_misuse);
  tcase_add_test(tc, npy_save_atomic);
  tcase_add_test(tc, npy_out_of_memory);
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tc = tcase_create("csv");
  tcase_add_checked_fixture(tc, make_tmpdir, remove_tmpdir);
  tcase_add_test(tc, csv_iris);
  tcase_add_test(tc, csv_digits_gz);
  tcase_add_test(tc, csv_formats);
  tcase_add_test(tc, csv_errors);
  tcase_add_test(tc, csv_out_of_memory);
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tc = tcase_create("rng");
  tcase_add_test(tc, rng_reference);
  tcase_add_test(tc, rng_determinism);
  tcase_add_test(tc, rng_uniform);
  tcase_add_test(tc, rng_normal);
  tcase_add_test(tc, rng_below_and_shuffle);
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tc = tcase_create("init");
  tcase_add_test(tc, init_glorot);
  tcase_add_test(tc, init_uniform_normal_zeros);
  tcase_add_test(tc, init_deterministic);
  tcase_add_test(tc, init_errors);
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
