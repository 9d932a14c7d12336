/*
** test_cache.c -- the on-disk compile cache (KILN_CACHE_DIR, compiler/cache.c):
** a second context links the stored object instead of compiling and computes
** bit for bit what a fresh compile computes; different graphs get different
** files; damaged, truncated or foreign files are misses that get rewritten;
** an unusable directory is not an error; KILN_DUMP_DIR bypasses reading;
** the general step (compiled by a call with a dynamic size of 1) is stored
** and linked the same way.
** Whether a step was linked from disk shows in its LLVM texts: a linked
** object keeps none (kiln_function_dump_named "ll" fails with KILN_MISUSE).
*/
#define _POSIX_C_SOURCE 200809L
#include "runtime/rt.h"
#include "testutil.h"

#include <check.h>
#include <dirent.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static void make_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/kiln-cache-test-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  ck_assert_int_eq(setenv("KILN_CACHE_DIR", dir, 1), 0);
  unsetenv("KILN_DUMP_DIR");
}

/* Removes the directory's files and the directory; counts .obj files and
** leftover temporaries first when asked. */
static int count_files(const char *suffix, const char *prefix) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name), ls = strlen(suffix);
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 &&
        (ls == 0 || (l >= ls && strcmp(e->d_name + l - ls, suffix) == 0)))
      n++;
  }
  closedir(d);
  return n;
}

static void first_obj(char *path, size_t n) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  struct dirent *e;
  path[0] = 0;
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, "kiln-", 5) == 0) snprintf(path, n, "%s/%s", dir, e->d_name);
  closedir(d);
  ck_assert_msg(path[0], "no object file in %s", dir);
}

static void remove_dir(void) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.' && (e->d_name[1] == 0 || strcmp(e->d_name, "..") == 0)) continue;
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      remove(p);
    }
    closedir(d);
  }
  rmdir(dir);
  unsetenv("KILN_CACHE_DIR");
}

/* A seed-like step with a libm call (tanh) in it, so the linked object has
** an external symbol to resolve: y = sum(tanh(x * W)); W -= lr * grad. */
typedef struct step {
  kiln_ctx *ctx;
  kiln_node *W;
  kiln_function *f;
} step;

static void build(step *s, double lr) {
  s->ctx = kiln_ctx_new();
  kiln_node *x = kiln_fvector(s->ctx, "x");
  s->W = kiln_shared(s->ctx, "W", KILN_FLOAT64, 1, (int64_t[]){5},
                     (double[]){0.1, -0.25, 0.15, 0.3, -0.5});
  kiln_node *y = kiln_sum(kiln_tanh(kiln_mul(x, s->W)));
  kiln_node *g;
  ck_assert_int_eq(kiln_grad(y, 1, &s->W, &g, 0), KILN_OK);
  kiln_update u = {s->W, kiln_sub(s->W, kiln_mul(kiln_lit(s->ctx, lr), g))};
  s->f = kiln_function_new(s->ctx, "f", 1, &x, 1, &y, 1, &u);
  ck_assert_msg(s->f != NULL, "%s", kiln_errmsg(s->ctx));
}

/* Whether the step keeps its LLVM text (compiled here) or not (linked). */
static int has_llvm_text(step *s) {
  FILE *out = tmpfile();
  ck_assert_ptr_nonnull(out);
  kiln_status st = kiln_function_dump_named(s->f, "ll", out);
  fclose(out);
  if (st != KILN_OK) {
    ck_assert_int_eq(st, KILN_MISUSE);
    ck_assert_msg(strstr(kiln_errmsg(s->ctx), "KILN_CACHE_DIR") != NULL, "%s", kiln_errmsg(s->ctx));
  }
  return st == KILN_OK;
}

/* Three steps; y of each and W after them. */
static void run(step *s, double out[4 + 5]) {
  kiln_tensor *x = kt_tensor(KILN_FLOAT32, 1, (int64_t[]){5}, (double[]){1, 2, -1, 0.5, 3});
  for (int i = 0; i < 3; i++) {
    const kiln_tensor *y;
    ck_assert_int_eq(kiln_call(s->f, (const kiln_tensor *const[]){x}, &y), KILN_OK);
    out[i] = *(const double *)kiln_tensor_data(y);
  }
  memcpy(out + 4, kiln_tensor_data(kiln_shared_value(s->W)), 5 * sizeof(double));
  out[3] = 0;
  kiln_tensor_free(x);
}

static void done(step *s) { kiln_ctx_free(s->ctx); }

/* What the step computes without any cache, and by hand in C. */
static void expected(double lr, double out[9]) {
  unsetenv("KILN_CACHE_DIR");
  step s;
  build(&s, lr);
  run(&s, out);
  done(&s);
  setenv("KILN_CACHE_DIR", dir, 1);
  double W[5] = {0.1, -0.25, 0.15, 0.3, -0.5}, x[5] = {1, 2, -1, 0.5, 3};
  for (int i = 0; i < 3; i++) {
    double y = 0;
    for (int k = 0; k < 5; k++)
      y += tanh(x[k] * W[k]);
    ck_assert_msg(fabs(y - out[i]) <= 1e-12 * (1 + fabs(y)), "y %d: %.17g vs %.17g", i, out[i], y);
    for (int k = 0; k < 5; k++) {
      double t = tanh(x[k] * W[k]);
      W[k] -= lr * (1 - t * t) * x[k];
    }
  }
  for (int k = 0; k < 5; k++)
    ck_assert_msg(fabs(W[k] - out[4 + k]) <= 1e-12, "W %d: %.17g vs %.17g", k, out[4 + k], W[k]);
}

static void same(const double *a, const double *b) {
  ck_assert_msg(memcmp(a, b, 9 * sizeof *a) == 0, "results differ");
}

START_TEST(second_context_links_the_object) {
  make_dir();
  double want[9], got[9];
  expected(0.1, want);
  step a, b;
  build(&a, 0.1);
  ck_assert_int_eq(count_files(".obj", "kiln-"), 1);
  ck_assert(has_llvm_text(&a));
  run(&a, got);
  same(got, want);
  build(&b, 0.1); /* another context: memory misses, the disk hits */
  ck_assert(!has_llvm_text(&b));
  run(&b, got);
  same(got, want);
  done(&a);
  done(&b);
  /* another learning rate is another graph, another file */
  double want2[9];
  expected(0.05, want2);
  step c, d;
  build(&c, 0.05);
  ck_assert(has_llvm_text(&c));
  ck_assert_int_eq(count_files(".obj", "kiln-"), 2);
  run(&c, got);
  same(got, want2);
  build(&d, 0.05);
  ck_assert(!has_llvm_text(&d));
  run(&d, got);
  same(got, want2);
  done(&c);
  done(&d);
  ck_assert_int_eq(count_files("", ".kiln-tmp"), 0);
  remove_dir();
}
END_TEST

/* Inode numbers of the cache's object files, sorted, into ino[0..n-1]. */
static int object_inodes(unsigned long *ino, int cap) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < cap)
    if (strncmp(e->d_name, "kiln-", 5) == 0) {
      char p[512];
      struct stat st;
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      ck_assert_int_eq(stat(p, &st), 0);
      ino[n++] = (unsigned long)st.st_ino;
    }
  closedir(d);
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && ino[j - 1] > ino[j]; j--) {
      unsigned long t = ino[j];
      ino[j] = ino[j - 1];
      ino[j - 1] = t;
    }
  return n;
}

/* The general step (a call with x of size 1, which broadcasts against W)
** is stored beside the fast one, and another context links it: no file is
** written again. Values by hand: x = 2 for every W[k]. */
START_TEST(general_step_on_disk) {
  make_dir();
  kiln_tensor *x = kt_tensor(KILN_FLOAT32, 1, (int64_t[]){1}, (double[]){2});
  double got[2][6];
  for (int c = 0; c < 2; c++) {
    step s;
    build(&s, 0.1);
    ck_assert(has_llvm_text(&s) == (c == 0));
    unsigned long before[4], after[4];
    int nb = object_inodes(before, 4);
    ck_assert_int_eq(nb, c == 0 ? 1 : 2);
    const kiln_tensor *y;
    ck_assert_int_eq(kiln_call(s.f, (const kiln_tensor *const[]){x}, &y), KILN_OK);
    got[c][0] = *(const double *)kiln_tensor_data(y);
    memcpy(got[c] + 1, kiln_tensor_data(kiln_shared_value(s.W)), 5 * sizeof(double));
    int na = object_inodes(after, 4);
    ck_assert_int_eq(na, 2);
    if (c == 1) /* linked: both files are the ones already there */
      ck_assert(memcmp(before, after, sizeof(unsigned long) * 2) == 0);
    done(&s);
  }
  double W[5] = {0.1, -0.25, 0.15, 0.3, -0.5}, y = 0;
  for (int k = 0; k < 5; k++)
    y += tanh(2 * W[k]);
  ck_assert_msg(fabs(got[0][0] - y) <= 1e-12, "y %.17g vs %.17g", got[0][0], y);
  for (int k = 0; k < 5; k++) {
    double t = tanh(2 * W[k]);
    ck_assert(fabs(got[0][1 + k] - (W[k] - 0.1 * (1 - t * t) * 2)) <= 1e-12);
  }
  ck_assert_msg(memcmp(got[0], got[1], sizeof got[0]) == 0, "linked general step differs");
  kiln_tensor_free(x);
  remove_dir();
}
END_TEST

/* Damages the stored file by one of several means, then checks that a new
** context recompiles (keeps LLVM text), computes the right values, and left
** a good file behind (the next context links it). */
static void damage_and_check(int how) {
  make_dir();
  double want[9], got[9];
  expected(0.1, want);
  step a;
  build(&a, 0.1);
  done(&a);
  char path[512];
  first_obj(path, sizeof path);
  FILE *f = fopen(path, "r+b");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  ck_assert_int_gt(size, 64);
  if (how == 0) { /* a byte of the object (its checksum catches it) */
    fseek(f, size - 100, SEEK_SET);
    int c = fgetc(f);
    fseek(f, size - 100, SEEK_SET);
    fputc(c ^ 0x5a, f);
  } else if (how == 1) { /* a byte of the key (another build, CPU or graph) */
    fseek(f, 20, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 20, SEEK_SET);
    fputc(c ^ 0x01, f);
  }
  fclose(f);
  if (how == 2) ck_assert_int_eq(truncate(path, size / 2), 0);
  if (how == 3) { /* not ours at all */
    f = fopen(path, "wb");
    fputs("garbage", f);
    fclose(f);
  }
  step b;
  build(&b, 0.1);
  ck_assert_msg(has_llvm_text(&b), "damage %d: the damaged file was linked", how);
  run(&b, got);
  same(got, want);
  done(&b);
  step c;
  build(&c, 0.1);
  ck_assert_msg(!has_llvm_text(&c), "damage %d: the file was not rewritten", how);
  run(&c, got);
  same(got, want);
  done(&c);
  ck_assert_int_eq(count_files(".obj", "kiln-"), 1);
  remove_dir();
}

START_TEST(damaged_files_are_misses) {
  for (int how = 0; how < 4; how++)
    damage_and_check(how);
}
END_TEST

START_TEST(unusable_directory_is_not_an_error) {
  setenv("KILN_CACHE_DIR", "/nonexistent/kiln/cache/dir", 1);
  unsetenv("KILN_DUMP_DIR");
  double got[9];
  step a, b;
  build(&a, 0.1);
  run(&a, got);
  build(&b, 0.1);
  ck_assert(has_llvm_text(&b)); /* nothing could be stored, so compiled */
  double got2[9];
  run(&b, got2);
  same(got, got2);
  done(&a);
  done(&b);
  unsetenv("KILN_CACHE_DIR");
}
END_TEST

START_TEST(dump_dir_bypasses_reading) {
  make_dir();
  step a, b;
  build(&a, 0.1);
  done(&a);
  char dumps[300];
  snprintf(dumps, sizeof dumps, "%s/dumps", dir);
  ck_assert_int_eq(mkdir(dumps, 0700), 0);
  setenv("KILN_DUMP_DIR", dumps, 1);
  build(&b, 0.1);
  ck_assert(has_llvm_text(&b));
  done(&b);
  char p[700];
  snprintf(p, sizeof p, "%s/f.opt.ll", dumps);
  char *text = kt_read_file(p);
  ck_assert_msg(text && strstr(text, "define"), "no f.opt.ll in %s", dumps);
  free(text);
  unsetenv("KILN_DUMP_DIR");
  DIR *d = opendir(dumps);
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') {
      snprintf(p, sizeof p, "%s/%s", dumps, e->d_name);
      remove(p);
    }
  closedir(d);
  rmdir(dumps);
  remove_dir();
}
END_TEST

/* Every allocation of kiln_function_new failing in turn, on the path that
** compiles and stores (the directory emptied each time) and on the path that
** links: each run either fails with KILN_NOMEM or computes the right values;
** LeakSanitizer (CI) finds what a failing path would leak. */
static void clear_objs(void) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char p[600];
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, "kiln-", 5) == 0) {
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      remove(p);
    }
  closedir(d);
}

static void nomem_loop(bool linking) {
  double want[9], got[9];
  expected(0.1, want);
  long k, failed = 0;
  for (k = 1; k < 100000; k++) {
    if (linking) {
      if (count_files(".obj", "kiln-") == 0) {
        step w;
        build(&w, 0.1); /* stores the file */
        done(&w);
      }
    } else {
      clear_objs();
    }
    step s;
    s.ctx = kiln_ctx_new();
    kiln_node *x = kiln_fvector(s.ctx, "x");
    s.W = kiln_shared(s.ctx, "W", KILN_FLOAT64, 1, (int64_t[]){5},
                      (double[]){0.1, -0.25, 0.15, 0.3, -0.5});
    kiln_node *y = kiln_sum(kiln_tanh(kiln_mul(x, s.W))), *g;
    ck_assert_int_eq(kiln_grad(y, 1, &s.W, &g, 0), KILN_OK);
    kiln_update u = {s.W, kiln_sub(s.W, kiln_mul(kiln_lit(s.ctx, 0.1), g))};
    long n0 = kl_mem_count();
    kl_mem_fail_at(k);
    s.f = kiln_function_new(s.ctx, "f", 1, &x, 1, &y, 1, &u);
    long used = kl_mem_count() - n0;
    kl_mem_fail_at(0);
    if (s.f) {
      run(&s, got);
      same(got, want);
    } else {
      ck_assert_int_eq(kiln_errcode(s.ctx), KILN_NOMEM);
      failed++;
    }
    done(&s);
    if (used < k) break; /* no allocation failed: every point was tried */
  }
  ck_assert_int_lt(k, 100000);
  ck_assert_int_gt(failed, 5);
}

START_TEST(allocation_failures) {
  make_dir();
  nomem_loop(false);
  nomem_loop(true);
  remove_dir();
}
END_TEST

int main(void) {
  Suite *s = suite_create("cache");
  TCase *tc = tcase_create("disk");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, second_context_links_the_object);
  tcase_add_test(tc, general_step_on_disk);
  tcase_add_test(tc, damaged_files_are_misses);
  tcase_add_test(tc, unusable_directory_is_not_an_error);
  tcase_add_test(tc, dump_dir_bypasses_reading);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
