/*
** test_print.c -- kiln_format_double (Python's repr) and kl_array_str
** (numpy's str). Expected strings come from Python/numpy rules worked out
** by hand (and agree with numpy 1.24's output, except where numpy 2 differs,
** which is marked); none is produced by the code under test.
*/
#include "runtime/rt.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

static void check_repr(double v, const char *want) {
  char buf[64];
  int n = kiln_format_double(v, buf, sizeof buf);
  ck_assert_str_eq(buf, want);
  ck_assert_int_eq(n, (int)strlen(want));
}

static void check_array(kiln_dtype dt, int rank, const int64_t *shape, const void *data,
                        const char *want) {
  char *got = kl_array_str(dt, rank, shape, data);
  ck_assert_ptr_nonnull(got);
  ck_assert_str_eq(got, want);
  kl_free(got);
}

/* A vector literal of the given C type and dtype. */
#define CHECK_VEC(ctype, dt, want, ...)                                                            \
  do {                                                                                             \
    const ctype v_[] = {__VA_ARGS__};                                                              \
    const int64_t n_ = (int64_t)(sizeof v_ / sizeof v_[0]);                                        \
    check_array((dt), 1, &n_, v_, (want));                                                         \
  } while (0)
#define CHECK_F64(want, ...) CHECK_VEC(double, KILN_FLOAT64, want, __VA_ARGS__)
#define CHECK_F32(want, ...) CHECK_VEC(float, KILN_FLOAT32, want, __VA_ARGS__)

/* xorshift64: a fixed sequence of bit patterns on every platform. */
static uint64_t xorshift64(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* ---------------------------------------------------------------- repr */

START_TEST(repr_python_cases) {
  check_repr(0.8, "0.8");
  check_repr(80.16000000000001, "80.16000000000001");
  check_repr(99.99974604799999, "99.99974604799999");
  check_repr(1e-05, "1e-05");
  check_repr(1e16, "1e+16");
  check_repr(1.5e16, "1.5e+16");
  check_repr(123456789012345.6, "123456789012345.6");
  check_repr(1e15, "1000000000000000.0");
  check_repr(9007199254740993.0, "9007199254740992.0"); /* the literal rounds to 2^53 */
  check_repr(-0.0, "-0.0");
  check_repr(0.0, "0.0");
  check_repr(100.0, "100.0");
  check_repr(-2.5, "-2.5");
  check_repr(0.0001, "0.0001");
  check_repr(9.999999999999999e-05, "9.999999999999999e-05");
  check_repr(0.1 + 0.2, "0.30000000000000004");
  check_repr(1.0 / 3.0, "0.3333333333333333");
  check_repr(1e22, "1e+22");
  check_repr(1e100, "1e+100");
  check_repr(1.152921504606847e+18, "1.152921504606847e+18");
  check_repr(5e-324, "5e-324");
  check_repr(1.7976931348623157e+308, "1.7976931348623157e+308");
  check_repr(2.2250738585072014e-308, "2.2250738585072014e-308");
  check_repr(NAN, "nan");
  check_repr(-NAN, "nan");
  check_repr(INFINITY, "inf");
  check_repr(-INFINITY, "-inf");
}
END_TEST

/* 2^-1017 sits at the bottom of its binade: the 16-digit decimal nearest to
** it does not read back, the one above it does (Python: 7.120236347223045e-307). */
START_TEST(repr_lopsided_interval) {
  check_repr(ldexp(1.0, -1017), "7.120236347223045e-307");
  check_repr(ldexp(1.0, -1007), "7.291122019556398e-304");
}
END_TEST

START_TEST(repr_round_trips) {
  uint64_t state = 0x9e3779b97f4a7c15u;
  int tested = 0;
  for (int i = 0; i < 100000; i++) {
    uint64_t bits = xorshift64(&state);
    double v;
    memcpy(&v, &bits, sizeof v);
    if (!isfinite(v)) continue;
    char buf[64];
    int n = kiln_format_double(v, buf, sizeof buf);
    ck_assert_int_eq(n, (int)strlen(buf));
    ck_assert_int_le(n, 24);
    double back = strtod(buf, NULL);
    uint64_t back_bits;
    memcpy(&back_bits, &back, sizeof back_bits);
    ck_assert_msg(back_bits == bits, "%s does not read back as %016llx", buf,
                  (unsigned long long)bits);
    tested++;
  }
  ck_assert_int_gt(tested, 99000);
}
END_TEST

START_TEST(repr_truncates_like_snprintf) {
  char buf[32];
  memset(buf, 'x', sizeof buf);
  ck_assert_int_eq(kiln_format_double(80.16000000000001, buf, 4), 17);
  ck_assert_str_eq(buf, "80.");
  ck_assert_int_eq(kiln_format_double(80.16000000000001, buf, 17), 17);
  ck_assert_str_eq(buf, "80.1600000000000");
  ck_assert_int_eq(kiln_format_double(80.16000000000001, buf, 18), 17);
  ck_assert_str_eq(buf, "80.16000000000001");
  ck_assert_int_eq(kiln_format_double(-INFINITY, buf, 1), 4);
  ck_assert_str_eq(buf, "");
  buf[0] = 'x';
  ck_assert_int_eq(kiln_format_double(0.8, buf, 0), 3);
  ck_assert_int_eq(buf[0], 'x'); /* n == 0: nothing written */
  ck_assert_int_eq(kiln_format_double(1e-05, NULL, 0), 5);
}
END_TEST

/* ---------------------------------------------------------------- float64 */

START_TEST(array_fixed) {
  CHECK_F64("[0.1  0.25 0.15 0.3 ]", 0.1, 0.25, 0.15, 0.3);
  CHECK_F64("[19.94 20.09 19.99 20.14]", 19.940000000000005, 20.090000000000003, 19.990000000000002,
            20.140000000000004);
  CHECK_F64("[23.908 24.058 23.958 24.108]", 23.908000000000005, 24.058000000000003,
            23.958000000000002, 24.108000000000004);
  /* more than 8 decimals: rounded to 8 (24.89999873|0000002) */
  CHECK_F64("[24.89999873 25.04999873]", 24.899998730000002, 25.04999873);
  CHECK_F64("[1.  2.5]", 1.0, 2.5);
  CHECK_F64("[1. 2.]", 1.0, 2.0);
  CHECK_F64("[-1.5  2. ]", -1.5, 2.0);
  CHECK_F64("[-0.  1.]", -0.0, 1.0);
  CHECK_F64("[0. 0.]", 0.0, 0.0);
  CHECK_F64("[0.1   0.7   0.001]", 0.1, 0.7, 1e-3);
  CHECK_F64("[  3.14159265  -2.71828183 100.5       ]", 3.14159265358979, -2.718281828459045,
            100.5);
  /* 1/512 = 0.001953125 is a tie at 8 decimals: half to even */
  CHECK_F64("[0.00195312 1.        ]", 1.0 / 512, 1.0);
  CHECK_F64("[0.0001]", 0.0001);
  CHECK_F64("[12345678.9]", 12345678.9);
  CHECK_F64("[  0.5 500. ]", 0.5, 500.0); /* ratio 1000 is not > 1000 */
  CHECK_F64("[99999999.9999   100000.    ]", 99999999.9999, 1e5);
}
END_TEST

START_TEST(array_nonfinite) {
  CHECK_F64("[ nan  1.5 -inf]", NAN, 1.5, -INFINITY);
  CHECK_F64("[nan inf]", NAN, INFINITY);
  CHECK_F64("[ nan -inf]", NAN, -INFINITY);
  CHECK_F64("[nan nan]", NAN, -NAN);
  CHECK_F64("[inf]", INFINITY);
  CHECK_F64("[      inf -1.50e-07  3.25e+00]", INFINITY, -1.5e-7, 3.25);
  CHECK_F64("[  -inf 1.e+20]", -INFINITY, 1e20);
}
END_TEST

/* numpy goes scientific when max|x| >= 1e8, min|x| < 1e-4 or max/min > 1000
** (over finite non-zeros); mantissas share one digit count, exponents >= 2 digits. */
START_TEST(array_scientific) {
  CHECK_F64("[1.e-05 1.e+00]", 1e-5, 1.0);
  CHECK_F64("[1.5e-05 1.0e+00]", 1.5e-5, 1.0);
  CHECK_F64("[-1.0e-05  2.5e+00]", -1e-5, 2.5);
  CHECK_F64("[1.e+08 1.e+00]", 1e8, 1.0);
  CHECK_F64("[1.e+16]", 1e16);
  CHECK_F64("[9.9999999e+07 1.0000000e+00]", 99999999.0, 1.0);
  CHECK_F64("[5.e-01 1.e+03]", 0.5, 1000.0);
  CHECK_F64("[5.0000e-01 5.0001e+02]", 0.5, 500.01);
  CHECK_F64("[1.23456789e+05 5.00000000e-01]", 123456.789, 0.5);
  CHECK_F64("[ 1.e+00  1.e-09 -3.e+00]", 1.0, 1e-9, -3.0);
  CHECK_F64("[9.53674316e-07 4.76837158e-07]", ldexp(1.0, -20), ldexp(1.0, -21));
  CHECK_F64("[1.e+300 1.e-300]", 1e300, 1e-300);
  CHECK_F64("[1.e-100 1.e+000]", 1e-100, 1.0);
  CHECK_F64("[5.e-324 1.e+000]", 5e-324, 1.0);
  CHECK_F64("[ 1.79769313e+308 -1.00000000e+000]", 1.7976931348623157e+308, -1.0);
}
END_TEST

/* ---------------------------------------------------------------- float32 */

START_TEST(array_float32) {
  CHECK_F32("[0.1]", 0.1f);
  CHECK_F32("[0.1        0.2        0.33333334]", 0.1f, 0.2f, 1.0f / 3.0f);
  CHECK_F32("[3.3000002 6.6000004 9.9      ]", 3.3000002f, 6.6000004f, 9.9f);
  /* the shortest digits are 8190947, but numpy prints every integer digit */
  CHECK_F32("[81909472.]", 81909472.0f);
  CHECK_F32("[1.6777216e+07 1.0000000e+00]", 16777216.0f, 1.0f);
  /* scientific: a shorter mantissa is continued with the value's digits */
  CHECK_F32("[8.1909472e+07 1.2345678e+00]", 81909472.0f, 1.2345678f);
  CHECK_F32("[1.2621775e-29 1.5000000e-25]", ldexpf(1.0f, -96), 1.5e-25f);
  /* numpy 2 compares float32 0.0001 with a weak 0.0001, so it is not < 1e-4;
  ** numpy 1.x compared in float64 and printed [1.e-04] */
  CHECK_F32("[0.0001]", 0.0001f);
}
END_TEST

/* ---------------------------------------------------------------- scalars */

START_TEST(array_rank0) {
  double d;
  float f;
  d = 0.8;
  check_array(KILN_FLOAT64, 0, NULL, &d, "0.8");
  d = 80.16000000000001;
  check_array(KILN_FLOAT64, 0, NULL, &d, "80.16000000000001");
  d = -0.0;
  check_array(KILN_FLOAT64, 0, NULL, &d, "-0.0");
  d = 1e16;
  check_array(KILN_FLOAT64, 0, NULL, &d, "1e+16");
  d = NAN;
  check_array(KILN_FLOAT64, 0, NULL, &d, "nan");
  f = 0.1f;
  check_array(KILN_FLOAT32, 0, NULL, &f, "0.1");
  f = 1e20f;
  check_array(KILN_FLOAT32, 0, NULL, &f, "1e+20");
  f = 16777216.0f;
  check_array(KILN_FLOAT32, 0, NULL, &f, "16777216.0");
  f = 81909472.0f; /* scalars keep the shortest digits, unlike arrays */
  check_array(KILN_FLOAT32, 0, NULL, &f, "81909470.0");
  f = 0.0001f; /* below 1e-4 as a value, so scientific */
  check_array(KILN_FLOAT32, 0, NULL, &f, "1e-04");
  f = 3.4028235e38f;
  check_array(KILN_FLOAT32, 0, NULL, &f, "3.4028235e+38");
  f = ldexpf(1.0f, -96);
  check_array(KILN_FLOAT32, 0, NULL, &f, "1.2621775e-29");
  uint8_t b = 1;
  check_array(KILN_BOOL, 0, NULL, &b, "True");
  b = 0;
  check_array(KILN_BOOL, 0, NULL, &b, "False");
  int8_t i8 = -3;
  check_array(KILN_INT8, 0, NULL, &i8, "-3");
  uint8_t u8 = 200;
  check_array(KILN_UINT8, 0, NULL, &u8, "200");
  int64_t i64 = INT64_MIN;
  check_array(KILN_INT64, 0, NULL, &i64, "-9223372036854775808");
}
END_TEST

/* ---------------------------------------------------------------- ints, bools */

START_TEST(array_int_bool) {
  CHECK_VEC(int32_t, KILN_INT32, "[1 2 3]", 1, 2, 3);
  CHECK_VEC(int32_t, KILN_INT32, "[ 1 -2 30]", 1, -2, 30);
  CHECK_VEC(uint8_t, KILN_UINT8, "[255   0 128]", 255, 0, 128);
  CHECK_VEC(int8_t, KILN_INT8, "[-128  127]", -128, 127);
  CHECK_VEC(int16_t, KILN_INT16, "[ -300     7 32767]", -300, 7, 32767);
  CHECK_VEC(int64_t, KILN_INT64, "[ 9223372036854775807 -9223372036854775808]", INT64_MAX,
            INT64_MIN);
  CHECK_VEC(uint8_t, KILN_BOOL, "[ True False]", 1, 0);
  CHECK_VEC(uint8_t, KILN_BOOL, "[ True  True]", 1, 1);
  CHECK_VEC(uint8_t, KILN_BOOL, "[False]", 0);
}
END_TEST

/* ---------------------------------------------------------------- ranks */

START_TEST(array_nested) {
  const int32_t m[] = {1, 2, 3, 4};
  check_array(KILN_INT32, 2, (const int64_t[]){2, 2}, m, "[[1 2]\n [3 4]]");
  const int64_t c[] = {0, 1, 2, 3, 4, 5, 6, 7};
  check_array(KILN_INT64, 3, (const int64_t[]){2, 2, 2}, c,
              "[[[0 1]\n  [2 3]]\n\n [[4 5]\n  [6 7]]]");
  const uint8_t b[] = {1, 0, 0, 1};
  check_array(KILN_BOOL, 2, (const int64_t[]){2, 2}, b, "[[ True False]\n [False  True]]");
  double t[27];
  for (int i = 0; i < 27; i++)
    t[i] = i * 1.5;
  check_array(KILN_FLOAT64, 3, (const int64_t[]){3, 3, 3}, t,
              "[[[ 0.   1.5  3. ]\n"
              "  [ 4.5  6.   7.5]\n"
              "  [ 9.  10.5 12. ]]\n"
              "\n"
              " [[13.5 15.  16.5]\n"
              "  [18.  19.5 21. ]\n"
              "  [22.5 24.  25.5]]\n"
              "\n"
              " [[27.  28.5 30. ]\n"
              "  [31.5 33.  34.5]\n"
              "  [36.  37.5 39. ]]]");
  const double one = 1.5;
  check_array(KILN_FLOAT64, 3, (const int64_t[]){1, 1, 1}, &one, "[[[1.5]]]");
}
END_TEST

START_TEST(array_empty) {
  const double d = 1.0;
  check_array(KILN_FLOAT64, 1, (const int64_t[]){0}, &d, "[]");
  check_array(KILN_FLOAT64, 1, (const int64_t[]){0}, NULL, "[]");
  check_array(KILN_INT32, 2, (const int64_t[]){3, 0}, NULL, "[]");
  check_array(KILN_BOOL, 3, (const int64_t[]){0, 2, 2}, NULL, "[]");
}
END_TEST

/* ---------------------------------------------------------------- wrapping */

START_TEST(array_wraps_at_75) {
  int64_t r[30];
  for (int i = 0; i < 30; i++)
    r[i] = i;
  check_array(KILN_INT64, 1, (const int64_t[]){30}, r,
              "[ 0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 17 18 19 20 21 22 23\n"
              " 24 25 26 27 28 29]");
  double d[100];
  for (int i = 0; i < 100; i++)
    d[i] = i / 7.0;
  check_array(KILN_FLOAT64, 1, (const int64_t[]){100}, d,
              "[ 0.          0.14285714  0.28571429  0.42857143  0.57142857  0.71428571\n"
              "  0.85714286  1.          1.14285714  1.28571429  1.42857143  1.57142857\n"
              "  1.71428571  1.85714286  2.          2.14285714  2.28571429  2.42857143\n"
              "  2.57142857  2.71428571  2.85714286  3.          3.14285714  3.28571429\n"
              "  3.42857143  3.57142857  3.71428571  3.85714286  4.          4.14285714\n"
              "  4.28571429  4.42857143  4.57142857  4.71428571  4.85714286  5.\n"
              "  5.14285714  5.28571429  5.42857143  5.57142857  5.71428571  5.85714286\n"
              "  6.          6.14285714  6.28571429  6.42857143  6.57142857  6.71428571\n"
              "  6.85714286  7.          7.14285714  7.28571429  7.42857143  7.57142857\n"
              "  7.71428571  7.85714286  8.          8.14285714  8.28571429  8.42857143\n"
              "  8.57142857  8.71428571  8.85714286  9.          9.14285714  9.28571429\n"
              "  9.42857143  9.57142857  9.71428571  9.85714286 10.         10.14285714\n"
              " 10.28571429 10.42857143 10.57142857 10.71428571 10.85714286 11.\n"
              " 11.14285714 11.28571429 11.42857143 11.57142857 11.71428571 11.85714286\n"
              " 12.         12.14285714 12.28571429 12.42857143 12.57142857 12.71428571\n"
              " 12.85714286 13.         13.14285714 13.28571429 13.42857143 13.57142857\n"
              " 13.71428571 13.85714286 14.         14.14285714]");
  float f[40];
  for (int i = 0; i < 40; i++)
    f[i] = (float)i / 3.0f;
  check_array(KILN_FLOAT32, 1, (const int64_t[]){40}, f,
              "[ 0.          0.33333334  0.6666667   1.          1.3333334   1.6666666\n"
              "  2.          2.3333333   2.6666667   3.          3.3333333   3.6666667\n"
              "  4.          4.3333335   4.6666665   5.          5.3333335   5.6666665\n"
              "  6.          6.3333335   6.6666665   7.          7.3333335   7.6666665\n"
              "  8.          8.333333    8.666667    9.          9.333333    9.666667\n"
              " 10.         10.333333   10.666667   11.         11.333333   11.666667\n"
              " 12.         12.333333   12.666667   13.        ]");
}
END_TEST

/* ---------------------------------------------------------------- summarizing */

START_TEST(array_summarized) {
  static int64_t r[2000];
  for (int i = 0; i < 2000; i++)
    r[i] = i;
  check_array(KILN_INT64, 2, (const int64_t[]){2, 1000}, r,
              "[[   0    1    2 ...  997  998  999]\n"
              " [1000 1001 1002 ... 1997 1998 1999]]");
  /* the format comes from the shown elements only: 0..2 and 1497..1499 */
  static double d[1500];
  for (int i = 0; i < 1500; i++)
    d[i] = i;
  check_array(KILN_FLOAT64, 1, (const int64_t[]){1500}, d,
              "[0.000e+00 1.000e+00 2.000e+00 ... 1.497e+03 1.498e+03 1.499e+03]");
  for (int i = 0; i < 1001; i++)
    d[i] = i * 1.5;
  check_array(KILN_FLOAT64, 1, (const int64_t[]){1001}, d,
              "[   0.     1.5    3.  ... 1497.  1498.5 1500. ]");
  /* exactly 1000 elements: not summarized */
  char *s = kl_array_str(KILN_INT64, 1, (const int64_t[]){1000}, r);
  ck_assert_ptr_nonnull(s);
  ck_assert_ptr_null(strstr(s, "..."));
  kl_free(s);
  check_array(KILN_INT64, 3, (const int64_t[]){11, 10, 10}, r,
              "[[[   0    1    2 ...    7    8    9]\n"
              "  [  10   11   12 ...   17   18   19]\n"
              "  [  20   21   22 ...   27   28   29]\n"
              "  ...\n"
              "  [  70   71   72 ...   77   78   79]\n"
              "  [  80   81   82 ...   87   88   89]\n"
              "  [  90   91   92 ...   97   98   99]]\n"
              "\n"
              " [[ 100  101  102 ...  107  108  109]\n"
              "  [ 110  111  112 ...  117  118  119]\n"
              "  [ 120  121  122 ...  127  128  129]\n"
              "  ...\n"
              "  [ 170  171  172 ...  177  178  179]\n"
              "  [ 180  181  182 ...  187  188  189]\n"
              "  [ 190  191  192 ...  197  198  199]]\n"
              "\n"
              " [[ 200  201  202 ...  207  208  209]\n"
              "  [ 210  211  212 ...  217  218  219]\n"
              "  [ 220  221  222 ...  227  228  229]\n"
              "  ...\n"
              "  [ 270  271  272 ...  277  278  279]\n"
              "  [ 280  281  282 ...  287  288  289]\n"
              "  [ 290  291  292 ...  297  298  299]]\n"
              "\n"
              " ...\n"
              "\n"
              " [[ 800  801  802 ...  807  808  809]\n"
              "  [ 810  811  812 ...  817  818  819]\n"
              "  [ 820  821  822 ...  827  828  829]\n"
              "  ...\n"
              "  [ 870  871  872 ...  877  878  879]\n"
              "  [ 880  881  882 ...  887  888  889]\n"
              "  [ 890  891  892 ...  897  898  899]]\n"
              "\n"
              " [[ 900  901  902 ...  907  908  909]\n"
              "  [ 910  911  912 ...  917  918  919]\n"
              "  [ 920  921  922 ...  927  928  929]\n"
              "  ...\n"
              "  [ 970  971  972 ...  977  978  979]\n"
              "  [ 980  981  982 ...  987  988  989]\n"
              "  [ 990  991  992 ...  997  998  999]]\n"
              "\n"
              " [[1000 1001 1002 ... 1007 1008 1009]\n"
              "  [1010 1011 1012 ... 1017 1018 1019]\n"
              "  [1020 1021 1022 ... 1027 1028 1029]\n"
              "  ...\n"
              "  [1070 1071 1072 ... 1077 1078 1079]\n"
              "  [1080 1081 1082 ... 1087 1088 1089]\n"
              "  [1090 1091 1092 ... 1097 1098 1099]]]");
}
END_TEST

/* ---------------------------------------------------------------- bad input */

START_TEST(array_bad_input) {
  const double d[2] = {1, 2};
  ck_assert_ptr_null(kl_array_str(KILN_FLOAT64, 1, (const int64_t[]){2}, NULL));
  ck_assert_ptr_null(kl_array_str(KILN_FLOAT64, 0, NULL, NULL));
  ck_assert_ptr_null(kl_array_str(KILN_N_DTYPES, 1, (const int64_t[]){2}, d));
  ck_assert_ptr_null(kl_array_str((kiln_dtype)-1, 1, (const int64_t[]){2}, d));
  ck_assert_ptr_null(kl_array_str(KILN_FLOAT64, -1, (const int64_t[]){2}, d));
  ck_assert_ptr_null(kl_array_str(KILN_FLOAT64, KILN_MAX_RANK + 1, NULL, d));
  ck_assert_ptr_null(kl_array_str(KILN_FLOAT64, 1, NULL, d));
  ck_assert_ptr_null(kl_array_str(KILN_FLOAT64, 1, (const int64_t[]){-2}, d));
  ck_assert_ptr_null(kl_array_str(KILN_FLOAT64, 2, (const int64_t[]){INT64_MAX, 2}, d));
}
END_TEST

/* Every allocation may fail: the result is then NULL, never a torn string. */
START_TEST(array_out_of_memory) {
  static double d[3000];
  for (int i = 0; i < 3000; i++)
    d[i] = i / 7.0;
  const int64_t shape[] = {30, 100};
  char *full = kl_array_str(KILN_FLOAT64, 2, shape, d);
  ck_assert_ptr_nonnull(full);
  const char *head = "[[0.00000000e+00 1.42857143e-01 2.85714286e-01 ...";
  ck_assert_int_eq(strncmp(full, head, strlen(head)), 0);
  int failures = 0;
  for (long k = 1; k < 100; k++) {
    kl_mem_fail_at(k);
    char *s = kl_array_str(KILN_FLOAT64, 2, shape, d);
    kl_mem_fail_at(0);
    if (s) {
      ck_assert_str_eq(s, full);
      kl_free(s);
      break;
    }
    failures++;
  }
  kl_free(full);
  ck_assert_int_gt(failures, 0);
}
END_TEST

/* ---------------------------------------------------------------- main */

int main(void) {
  Suite *s = suite_create("print");
  TCase *tc = tcase_create("repr");
  tcase_add_test(tc, repr_python_cases);
  tcase_add_test(tc, repr_lopsided_interval);
  tcase_add_test(tc, repr_round_trips);
  tcase_add_test(tc, repr_truncates_like_snprintf);
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tc = tcase_create("array");
  tcase_add_test(tc, array_fixed);
  tcase_add_test(tc, array_nonfinite);
  tcase_add_test(tc, array_scientific);
  tcase_add_test(tc, array_float32);
  tcase_add_test(tc, array_rank0);
  tcase_add_test(tc, array_int_bool);
  tcase_add_test(tc, array_nested);
  tcase_add_test(tc, array_empty);
  tcase_add_test(tc, array_wraps_at_75);
  tcase_add_test(tc, array_summarized);
  tcase_add_test(tc, array_bad_input);
  tcase_add_test(tc, array_out_of_memory);
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);

  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
