/*
** test_examples.c -- runs the example programs and checks their output.
** The seed's expected output (tests/data/seed_expected.txt) is copied
** verbatim from the tutorial's recorded output (shared/SEED.md): it is
** what Theano and numpy printed, not what Kiln printed.
*/
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *run(const char *cmd) {
  FILE *p = popen(cmd, "r");
  if (!p) return NULL;
  size_t cap = 1 << 16, n = 0;
  char *s = malloc(cap);
  size_t k;
  while (s && (k = fread(s + n, 1, cap - n - 1, p)) > 0)
    n += k;
  int rc = pclose(p);
  if (s) s[n] = 0;
  if (rc != 0) {
    free(s);
    return NULL;
  }
  return s;
}

START_TEST(seed_output) {
  char *want = kt_read_file(KILN_SOURCE_DIR "/tests/data/seed_expected.txt");
  ck_assert_ptr_nonnull(want);
  char *got = run(KILN_SEED_EXE);
  ck_assert_msg(got != NULL, "the seed example failed to run");
  /* line by line, so a failure shows the first line that differs */
  char *sw, *sg;
  char *lw = strtok_r(want, "\n", &sw), *lg = strtok_r(got, "\n", &sg);
  int line = 1;
  for (; lw && lg; lw = strtok_r(NULL, "\n", &sw), lg = strtok_r(NULL, "\n", &sg), line++)
    ck_assert_msg(strcmp(lw, lg) == 0, "line %d: expected '%s', got '%s'", line, lw, lg);
  ck_assert_msg(!lw && !lg, "the outputs have different line counts (at line %d)", line);
  ck_assert_int_eq(line, 32);
  free(want);
  free(got);
}
END_TEST

int main(void) {
  Suite *s = suite_create("examples");
  TCase *tc = tcase_create("seed");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, seed_output);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
