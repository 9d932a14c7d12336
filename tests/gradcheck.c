/* gradcheck.c -- the finite-difference gradient harness (see gradcheck.h). */
#include "tests/gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ tensors */

bool has(const char *msg, const char *part) { return strstr(msg, part) != NULL; }

kiln_tensor *copy_tensor(const kiln_tensor *t) {
  ck_assert_ptr_nonnull(t);
  int64_t shape[KILN_MAX_RANK];
  for (int i = 0; i < kiln_tensor_rank(t); i++)
    shape[i] = kiln_tensor_dim(t, i);
  kiln_tensor *c =
      kiln_tensor_new(kiln_tensor_dtype(t), kiln_tensor_rank(t), shape, kiln_tensor_data(t));
  ck_assert_ptr_nonnull(c);
  return c;
}

void set_elem(kiln_tensor *t, int64_t i, double v) {
  if (kiln_tensor_dtype(t) == KILN_FLOAT64)
    ((double *)kiln_tensor_data(t))[i] = v;
  else if (kiln_tensor_dtype(t) == KILN_FLOAT32)
    ((float *)kiln_tensor_data(t))[i] = (float)v;
  else
    ck_abort_msg("set_elem: not a float tensor");
}

double rand_value(const ispec *s, uint64_t *rng) {
  double u = kt_rand(rng), v;
  if (s->step > 0) {
    int64_t k = (int64_t)floor(u * ((s->hi - s->lo) / s->step + 1.0));
    v = s->lo + (double)k * s->step;
    if (v > s->hi) v = s->hi;
  } else {
    v = s->lo + (s->hi - s->lo) * u;
  }
  if (s->flags & F_SIGN && kt_rand(rng) < 0.5) v = -v;
  return v;
}

kiln_tensor *rand_tensor(const ispec *s, uint64_t *rng) {
  double vals[256];
  int64_t n = 1;
  for (int d = 0; d < s->rank; d++)
    n *= s->shape[d];
  ck_assert_int_le(n, 256);
  for (int64_t i = 0; i < n; i++)
    vals[i] = rand_value(s, rng);
  kiln_tensor *t = kt_tensor(s->dt, s->rank, s->shape, vals);
  ck_assert_ptr_nonnull(t);
  return t;
}

/* A constant of the given shape, values in [-1.5, -0.5] U [0.5, 1.5]. */
kiln_node *rand_const(kiln_ctx *ctx, kiln_dtype dt, int rank, const int64_t *shape, uint64_t seed) {
  double vals[256];
  float fv[256];
  int64_t n = 1;
  for (int d = 0; d < rank; d++)
    n *= shape[d];
  ck_assert_int_le(n, 256);
  uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < n; i++) {
    vals[i] = 0.5 + kt_rand(&rng);
    if (kt_rand(&rng) < 0.5) vals[i] = -vals[i];
    fv[i] = (float)vals[i];
  }
  kiln_node *c = kiln_const(ctx, dt, rank, shape, dt == KILN_FLOAT32 ? (void *)fv : (void *)vals);
  ck_assert_msg(c != NULL, "const: %s", kiln_errmsg(ctx));
  return c;
}

/* ------------------------------------------------------------ the world */

void world_init(world *w, int n, const ispec *in, uint64_t seed) {
  memset(w, 0, sizeof *w);
  w->ctx = kiln_ctx_new();
  ck_assert_ptr_nonnull(w->ctx);
  w->n = n;
  uint64_t rng = seed * 0x2545F4914F6CDD1Dull + 7;
  for (int k = 0; k < n; k++) {
    const ispec *s = &in[k];
    int64_t dims[MAXR];
    for (int d = 0; d < s->rank; d++)
      dims[d] = (s->dyn >> d & 1u) ? KILN_DYN : s->shape[d];
    w->val[k] = rand_tensor(s, &rng);
    w->flags[k] = s->flags;
    if (s->flags & F_SHARED) {
      w->node[k] =
          kiln_shared(w->ctx, s->name, s->dt, s->rank, s->shape, kiln_tensor_data(w->val[k]));
    } else {
      w->node[k] = kiln_input(w->ctx, s->name, s->dt, s->rank, dims);
      w->fin[w->n_fin] = w->node[k];
      w->fval[w->n_fin++] = w->val[k];
    }
    ck_assert_msg(w->node[k] != NULL, "leaf %s: %s", s->name, kiln_errmsg(w->ctx));
  }
}

void world_free(world *w) {
  for (int k = 0; k < w->n; k++)
    kiln_tensor_free(w->val[k]);
  kiln_ctx_free(w->ctx);
}

/* Makes val[k]'s current contents the leaf's value (shared: in the context). */
void world_push(world *w, int k) {
  if (w->flags[k] & F_SHARED) ck_assert_int_eq(kiln_shared_set(w->node[k], w->val[k]), KILN_OK);
}

kiln_function *compile(world *w, int n_out, kiln_node *const *outs) {
  kiln_function *f = kiln_function_new(w->ctx, "grad", w->n_fin, w->fin, n_out, outs, 0, NULL);
  ck_assert_msg(f != NULL, "function_new: %s", kiln_errmsg(w->ctx));
  return f;
}

/* Calls f and copies its outputs into res[0..n_out-1]. */
void run_jit(world *w, kiln_function *f, int n_out, kiln_tensor **res) {
  const kiln_tensor *o[8];
  ck_assert_int_le(n_out, 8);
  kiln_status st = kiln_call(f, w->fval, o);
  ck_assert_msg(st == KILN_OK, "call: %s", kiln_errmsg(w->ctx));
  for (int i = 0; i < n_out; i++)
    res[i] = copy_tensor(o[i]);
}

void run_ref(world *w, int n_out, kiln_node *const *outs, kiln_tensor **res) {
  kiln_status st = kl_ref_run(w->ctx, w->n_fin, w->fin, w->fval, n_out, outs, res);
  ck_assert_msg(st == KILN_OK, "ref: %s", kiln_errmsg(w->ctx));
}

double jit_cost(world *w, kiln_function *f) {
  const kiln_tensor *o[8];
  kiln_status st = kiln_call(f, w->fval, o);
  ck_assert_msg(st == KILN_OK, "call: %s", kiln_errmsg(w->ctx));
  ck_assert_int_eq(kiln_tensor_rank(o[0]), 0);
  return kiln_tensor_get(o[0], 0);
}

/* The central difference of output 0 of f (the cost) wrt every element of
** leaf k, against grad. eps is 1e-6 for float64 leaves; a float32 leaf
** moves by 1e-3 and the difference divides by the step actually taken. */
void fd_check(world *w, kiln_function *f, int k, const kiln_tensor *grad, bool loose,
              const char *what) {
  kiln_tensor *x = w->val[k];
  bool f32 = kiln_tensor_dtype(x) == KILN_FLOAT32;
  double eps = f32 ? 1e-3 : 1e-6;
  double atol = loose ? 2e-3 : f32 ? 1e-4 : 1e-5, rtol = loose ? 2e-2 : 1e-3;
  ck_assert_int_eq(kiln_tensor_size(grad), kiln_tensor_size(x));
  for (int64_t e = 0; e < kiln_tensor_size(x); e++) {
    double x0 = kiln_tensor_get(x, e);
    set_elem(x, e, x0 + eps);
    double xp = kiln_tensor_get(x, e);
    world_push(w, k);
    double cp = jit_cost(w, f);
    set_elem(x, e, x0 - eps);
    double xm = kiln_tensor_get(x, e);
    world_push(w, k);
    double cm = jit_cost(w, f);
    set_elem(x, e, x0);
    world_push(w, k);
    double n = (cp - cm) / (xp - xm), a = kiln_tensor_get(grad, e);
    ck_assert_msg(fabs(a - n) <= atol + rtol * fabs(n),
                  "%s: d cost / d %s[%lld]: gradient %.17g, finite difference %.17g", what,
                  kiln_node_name(w->node[k]), (long long)e, a, n);
  }
}

/* The value of out (reference evaluator), to learn its run-time shape. */
kiln_tensor *ref_value(world *w, kiln_node *out) {
  kiln_tensor *t = NULL;
  run_ref(w, 1, &out, &t);
  return t;
}

/* ----------------------------------------------------------- the helper */

void check_grad(const gcase *c) {
  world w;
  world_init(&w, c->n_in, c->in, (uint64_t)c->arg * 131u + (uint64_t)strlen(c->what) + 3u);
  kiln_node *out = c->build(w.ctx, w.node, c->arg);
  ck_assert_msg(out != NULL, "%s: build: %s", c->what, kiln_errmsg(w.ctx));

  /* cost = sum(out * R), R of out's run-time shape */
  kiln_tensor *ov = ref_value(&w, out);
  int64_t oshape[KILN_MAX_RANK];
  for (int i = 0; i < kiln_tensor_rank(ov); i++)
    oshape[i] = kiln_tensor_dim(ov, i);
  kiln_node *R = rand_const(w.ctx, c->r32 ? KILN_FLOAT32 : KILN_FLOAT64, kiln_tensor_rank(ov),
                            oshape, (uint64_t)c->arg + 99u);
  kiln_tensor_free(ov);
  kiln_node *cost = kiln_name(kiln_sum(kiln_mul(out, R)), "cost");
  ck_assert_msg(cost != NULL, "%s: cost: %s", c->what, kiln_errmsg(w.ctx));
  bool loose = kiln_node_dtype(cost) == KILN_FLOAT32;

  kiln_node *wrt[MAXIN], *outs[1 + MAXIN];
  int wk[MAXIN], nw = 0;
  for (int k = 0; k < w.n; k++)
    if (w.flags[k] & F_WRT) {
      wk[nw] = k;
      wrt[nw++] = w.node[k];
    }
  ck_assert_int_gt(nw, 0);
  kiln_node **g = outs + 1;
  for (int i = 0; i < nw; i++)
    g[i] = cost; /* must be overwritten */
  kiln_status st = kiln_grad(cost, nw, wrt, g, 0);
  ck_assert_msg(st == KILN_OK, "%s: grad: %s", c->what, kiln_errmsg(w.ctx));
  for (int i = 0; i < nw; i++) {
    ck_assert_ptr_nonnull(g[i]);
    ck_assert_msg(kiln_node_dtype(g[i]) == kiln_node_dtype(wrt[i]),
                  "%s: gradient wrt %s is %s, the wrt is %s", c->what, kiln_node_name(wrt[i]),
                  kiln_dtype_name(kiln_node_dtype(g[i])), kiln_dtype_name(kiln_node_dtype(wrt[i])));
    ck_assert_int_eq(kiln_node_rank(g[i]), kiln_node_rank(wrt[i]));
    for (int d = 0; d < kiln_node_rank(wrt[i]); d++)
      if (kiln_node_dim(wrt[i], d) != KILN_DYN)
        ck_assert_int_eq(kiln_node_dim(g[i], d), kiln_node_dim(wrt[i], d));
  }
  outs[0] = cost;

  kiln_function *f = compile(&w, 1 + nw, outs);
  kiln_tensor *jr[1 + MAXIN], *rr[1 + MAXIN];
  run_jit(&w, f, 1 + nw, jr);
  run_ref(&w, 1 + nw, outs, rr);
  for (int i = 0; i <= nw; i++) {
    ck_assert_msg(kt_same_bits(jr[i], rr[i]), "%s: JIT and reference differ for %s", c->what,
                  i == 0 ? "the cost" : kiln_node_name(wrt[i - 1]));
  }
  for (int i = 0; i < nw; i++) {
    const kiln_tensor *x = w.val[wk[i]];
    ck_assert_int_eq(kiln_tensor_rank(jr[1 + i]), kiln_tensor_rank(x));
    for (int d = 0; d < kiln_tensor_rank(x); d++)
      ck_assert_msg(kiln_tensor_dim(jr[1 + i], d) == kiln_tensor_dim(x, d),
                    "%s: gradient wrt %s has dim %d of %lld, the value %lld", c->what,
                    kiln_node_name(wrt[i]), d, (long long)kiln_tensor_dim(jr[1 + i], d),
                    (long long)kiln_tensor_dim(x, d));
    fd_check(&w, f, wk[i], jr[1 + i], loose, c->what);
  }
  for (int i = 0; i <= nw; i++) {
    kiln_tensor_free(jr[i]);
    kiln_tensor_free(rr[i]);
  }
  world_free(&w);
}
