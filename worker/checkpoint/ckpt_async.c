/* ckpt_async.c -- the background checkpoint writer (contract in ckpt_async.h): one snapshot,
 * one job at a time on a thread of its own, joined before the next job or the writer's end. */
#include "ckpt_async.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fault.h"
#include "log.h"
#include "util.h"

#define ASYNC_PATH_MAX 4200

typedef enum { JOB_SAVE, JOB_SHARD, JOB_COMMIT } job_kind_t;

struct ckpt_async {
  /* the snapshot: n floats in each array (params, exp_avg, exp_avg_sq) */
  float *buf;
  size_t cap;                  /* floats per array allocated */
  int moments;                 /* 0: save without AdamW moments */
  strata_train_state_t *state; /* the training state a save or commit records */
  /* the job */
  job_kind_t kind;
  gpt2_model_t model; /* shallow copy of the caller's model header: catalogue, range, config */
  gpt2_config_t cfg;
  char dir[ASYNC_PATH_MAX], tmp[ASYNC_PATH_MAX], run_dir[ASYNC_PATH_MAX];
  int full, stage, num_stages, keep;
  int64_t step;
  /* its thread and result */
  pthread_t thread;
  int pending;           /* started, not yet joined (main thread only) */
  int threaded;          /* the job runs on `thread` (0: it ran inline) */
  atomic_int running;    /* 1 until the job's last store */
  int rc;
  char err[1024];
};

int ckpt_async_create(ckpt_async_t **out, char *err, size_t errlen) {
  ckpt_async_t *a = calloc(1, sizeof *a);
  if (a) a->state = calloc(1, sizeof *a->state);
  if (!a || !a->state) {
    free(a);
    return strata_fail(err, errlen, "checkpoint: out of memory for the background writer");
  }
  atomic_init(&a->running, 0);
  *out = a;
  return 0;
}

void ckpt_async_free(ckpt_async_t *a) {
  if (!a) return;
  char err[1024];
  if (ckpt_async_join(a, NULL, err, sizeof err) != 0)
    strata_warn("background checkpoint write failed: %s", err);
  free(a->buf);
  free(a->state);
  free(a);
}

int ckpt_async_buffers(ckpt_async_t *a, size_t n, float **params, float **exp_avg,
                       float **exp_avg_sq, char *err, size_t errlen) {
  if (a->pending)
    return strata_fail(err, errlen, "checkpoint: the snapshot is still being written; join the "
                       "background write first");
  if (n > a->cap) {
    float *b = malloc(sizeof(float) * 3 * n);
    if (!b)
      return strata_fail(err, errlen, "checkpoint: out of memory for a host snapshot of 3 x %zu "
                         "floats (%.1f MiB); use --no-ckpt-async", n,
                         3.0 * sizeof(float) * (double)n / (1 << 20));
    free(a->buf);
    a->buf = b;
    a->cap = n;
  }
  *params = a->buf;
  *exp_avg = a->buf + a->cap;
  *exp_avg_sq = a->buf + 2 * a->cap;
  a->moments = 1;
  return 0;
}

int ckpt_async_snapshot(ckpt_async_t *a, const float *params, const float *exp_avg,
                        const float *exp_avg_sq, size_t n, char *err, size_t errlen) {
  float *p = NULL, *m = NULL, *v = NULL;
  if (ckpt_async_buffers(a, n ? n : 1, &p, &m, &v, err, errlen) != 0) return -1;
  memcpy(p, params, sizeof(float) * n);
  a->moments = exp_avg && exp_avg_sq;
  if (a->moments) {
    memcpy(m, exp_avg, sizeof(float) * n);
    memcpy(v, exp_avg_sq, sizeof(float) * n);
  }
  return 0;
}

static int run_job(ckpt_async_t *a) {
  char *err = a->err;
  const size_t errlen = sizeof a->err;
  float *p = a->buf, *m = a->moments ? a->buf + a->cap : NULL,
        *v = a->moments ? a->buf + 2 * a->cap : NULL;
  gpt2_model_t snap = a->model;
  switch (a->kind) {
  case JOB_SAVE:
    snap.params = p;
    if (ckpt_save(a->dir, &snap, m, v, a->state, err, errlen) != 0) return -1;
    break;
  case JOB_SHARD:
    if (a->full)
      return ckpt_write_shard_full(a->tmp, &snap, p, m, v, a->stage, a->num_stages, err, errlen);
    snap.params = p;
    return ckpt_write_shard(a->tmp, &snap, m, v, a->stage, a->num_stages, err, errlen);
  case JOB_COMMIT:
    if (ckpt_commit(a->tmp, a->dir, &a->cfg, a->state, a->num_stages, err, errlen) != 0) {
      ckpt_abort(a->tmp);
      return -1;
    }
    break;
  }
  if (a->keep > 0 && ckpt_prune(a->run_dir, a->keep, err, errlen) < 0) return -1;
  return 0;
}

static void *job_thread(void *arg) {
  ckpt_async_t *a = arg;
  fault_set_thread_step(a->step); /* STRATA_FAULT's step=S: the checkpoint of step S */
  a->rc = run_job(a);
  atomic_store_explicit(&a->running, 0, memory_order_release);
  return NULL;
}

/* Starts the job described in a: on its thread, or inline (with a warning) if no thread can be
 * created -- the checkpoint is then synchronous, never lost. */
static int start(ckpt_async_t *a, char *err, size_t errlen) {
  a->rc = 0;
  a->err[0] = 0;
  atomic_store_explicit(&a->running, 1, memory_order_relaxed);
  a->pending = 1;
  int e = pthread_create(&a->thread, NULL, job_thread, a);
  a->threaded = e == 0;
  if (!a->threaded) {
    strata_warn("checkpoint: cannot start the background writer (%s); writing %s synchronously",
                strerror(e), a->kind == JOB_SHARD ? a->tmp : a->dir);
    job_thread(a);
  }
  (void)err;
  (void)errlen;
  return 0;
}

static int check_idle(const ckpt_async_t *a, char *err, size_t errlen) {
  if (a->pending)
    return strata_fail(err, errlen, "checkpoint: a background write (%s) is still pending; join it "
                       "before starting the next", a->kind == JOB_SHARD ? a->tmp : a->dir);
  if (!a->buf && a->kind != JOB_COMMIT)
    return strata_fail(err, errlen, "checkpoint: no snapshot to write; take one first");
  return 0;
}

static int copy_path(char *dst, const char *src, const char *what, char *err, size_t errlen) {
  if ((size_t)snprintf(dst, ASYNC_PATH_MAX, "%s", src ? src : "") >= ASYNC_PATH_MAX)
    return strata_fail(err, errlen, "checkpoint: the %s path '%.64s...' is longer than %d bytes",
                       what, src, ASYNC_PATH_MAX - 1);
  return 0;
}

int ckpt_async_save(ckpt_async_t *a, const char *dir, const gpt2_model_t *m,
                    const strata_train_state_t *state, const char *run_dir, int keep,
                    int64_t step, char *err, size_t errlen) {
  a->kind = JOB_SAVE;
  if (check_idle(a, err, errlen) || copy_path(a->dir, dir, "checkpoint", err, errlen) ||
      copy_path(a->run_dir, run_dir, "run directory", err, errlen))
    return -1;
  if (a->cap < m->num_params)
    return strata_fail(err, errlen, "checkpoint: the snapshot holds %zu floats, the model %zu",
                       a->cap, m->num_params);
  a->model = *m;
  *a->state = *state;
  a->keep = keep;
  a->step = step;
  return start(a, err, errlen);
}

int ckpt_async_shard(ckpt_async_t *a, const char *tmp_dir, const gpt2_model_t *m, int full,
                     int stage, int num_stages, int64_t step, char *err, size_t errlen) {
  a->kind = JOB_SHARD;
  if (check_idle(a, err, errlen) || copy_path(a->tmp, tmp_dir, "temporary", err, errlen))
    return -1;
  const size_t need = full ? ckpt_full_numel(m) : m->num_params;
  if (a->cap < need)
    return strata_fail(err, errlen, "checkpoint: the snapshot holds %zu floats, the shard %zu",
                       a->cap, need);
  a->model = *m;
  a->full = full;
  a->stage = stage;
  a->num_stages = num_stages;
  a->keep = 0;
  a->step = step;
  return start(a, err, errlen);
}

int ckpt_async_commit(ckpt_async_t *a, const char *tmp_dir, const char *dir,
                      const gpt2_config_t *cfg, const strata_train_state_t *state, int num_stages,
                      const char *run_dir, int keep, int64_t step, char *err, size_t errlen) {
  a->kind = JOB_COMMIT;
  if (check_idle(a, err, errlen) || copy_path(a->tmp, tmp_dir, "temporary", err, errlen) ||
      copy_path(a->dir, dir, "checkpoint", err, errlen) ||
      copy_path(a->run_dir, run_dir, "run directory", err, errlen))
    return -1;
  a->cfg = *cfg;
  *a->state = *state;
  a->num_stages = num_stages;
  a->keep = keep;
  a->step = step;
  return start(a, err, errlen);
}

int ckpt_async_pending(const ckpt_async_t *a) { return a->pending; }

int ckpt_async_busy(const ckpt_async_t *a) {
  return a->pending && atomic_load_explicit(&a->running, memory_order_acquire);
}

const char *ckpt_async_dir(const ckpt_async_t *a) { return a->kind == JOB_SHARD ? a->tmp : a->dir; }

int ckpt_async_join(ckpt_async_t *a, double *waited_s, char *err, size_t errlen) {
  if (waited_s) *waited_s = 0;
  if (!a || !a->pending) return 0;
  double t0 = strata_now_s();
  if (a->threaded) {
    int e = pthread_join(a->thread, NULL);
    if (e != 0) { /* cannot happen for a joinable thread of ours; say so rather than hang */
      a->pending = 0;
      return strata_fail(err, errlen, "checkpoint: cannot join the background writer: %s",
                         strerror(e));
    }
  }
  if (waited_s) *waited_s = strata_now_s() - t0;
  a->pending = 0;
  a->threaded = 0;
  if (a->rc != 0) return strata_fail(err, errlen, "%s", a->err);
  return 0;
}
