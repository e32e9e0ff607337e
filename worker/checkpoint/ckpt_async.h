/* ckpt_async.h -- asynchronous checkpoints: a background writer that saves a host snapshot with
 * checkpoint.h's protocol (temporary directory, fsync, per-file XXH64, atomic rename) while
 * training goes on.
 *
 * A writer owns one snapshot (parameters and both AdamW moments, n floats each, plus a copy of
 * the training state and the paths) and runs at most one job at a time on its own thread:
 *   ckpt_async_save    one rank: ckpt_save of the snapshot, then ckpt_prune (--keep)
 *   ckpt_async_shard   one stage of a collective checkpoint: ckpt_write_shard(_full) into an
 *                      existing temporary directory (the caller commits once every stage wrote)
 *   ckpt_async_commit  the coordinator: ckpt_commit (ckpt_abort on failure), then ckpt_prune
 * The caller copies the state in at the step boundary (ckpt_async_snapshot, or fills
 * ckpt_async_buffers itself), starts the job, keeps training, and polls ckpt_async_busy at
 * later step boundaries; ckpt_async_join waits for the job and returns its result. Starting a
 * job while another is pending is refused: join it first (one write in flight).
 *
 * Threads: the writer thread calls only file-system functions (no MPI, no collectives) and reads
 * only the snapshot and the model's tensor catalogue (`m` must outlive the job: free the writer
 * before the model). Fault points (fault.h) in the job see the checkpoint's step as theirs
 * (fault_set_thread_step), so STRATA_FAULT="kill:step=S:op=checkpoint" still names the checkpoint
 * of step S while the main thread is already in a later step.
 *
 * Every function returns 0, or -1 with one sentence in err naming the problem.
 */
#ifndef STRATA_CKPT_ASYNC_H
#define STRATA_CKPT_ASYNC_H

#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"
#include "strata_proto.h"

typedef struct ckpt_async ckpt_async_t;

int ckpt_async_create(ckpt_async_t **out, char *err, size_t errlen);

/* Waits for a pending job (its failure, not yet reported by ckpt_async_join, is printed as a
 * warning: the job already failed for another reason) and frees the writer. NULL is a no-op. */
void ckpt_async_free(ckpt_async_t *a);

/* The snapshot's three arrays of n floats (params, exp_avg, exp_avg_sq), grown as needed; valid
 * until the next call. Only between jobs (-1 while one is pending). */
int ckpt_async_buffers(ckpt_async_t *a, size_t n, float **params, float **exp_avg,
                       float **exp_avg_sq, char *err, size_t errlen);
/* Copies n floats of each array into the snapshot (exp_avg and exp_avg_sq may both be NULL: no
 * moments are saved). */
int ckpt_async_snapshot(ckpt_async_t *a, const float *params, const float *exp_avg,
                        const float *exp_avg_sq, size_t n, char *err, size_t errlen);

/* Starts ckpt_save(dir, snapshot as m's parameters, moments, state) and, when keep > 0,
 * ckpt_prune(run_dir, keep). The snapshot is in m's own layout (ckpt_async_snapshot of
 * m->params). `step` is the checkpoint's step (fault points). */
int ckpt_async_save(ckpt_async_t *a, const char *dir, const gpt2_model_t *m,
                    const strata_train_state_t *state, const char *run_dir, int keep,
                    int64_t step, char *err, size_t errlen);

/* Starts the write of stage `stage` of `num_stages` into tmp_dir from the snapshot: in m's
 * layout (full = 0: ckpt_write_shard, m->range.tp_size must be 1) or in the full layout of
 * ckpt_full_numel(m) floats per array (full = 1: ckpt_write_shard_full). */
int ckpt_async_shard(ckpt_async_t *a, const char *tmp_dir, const gpt2_model_t *m, int full,
                     int stage, int num_stages, int64_t step, char *err, size_t errlen);

/* Starts ckpt_commit(tmp_dir, dir, cfg, state copy, num_stages) -- ckpt_abort(tmp_dir) when it
 * fails -- and then, when keep > 0, ckpt_prune(run_dir, keep). */
int ckpt_async_commit(ckpt_async_t *a, const char *tmp_dir, const char *dir,
                      const gpt2_config_t *cfg, const strata_train_state_t *state, int num_stages,
                      const char *run_dir, int keep, int64_t step, char *err, size_t errlen);

/* 1 while a job is pending (started, not yet joined). */
int ckpt_async_pending(const ckpt_async_t *a);
/* 1 while the job's thread is still running (a finished job joins without waiting). */
int ckpt_async_busy(const ckpt_async_t *a);
/* The directory of the pending (or last joined) job: its checkpoint, or the temporary
 * directory of a shard. */
const char *ckpt_async_dir(const ckpt_async_t *a);

/* Waits for the pending job and joins its thread; *waited_s (may be NULL) receives the seconds
 * spent waiting. 0 when it succeeded or none was pending, -1 with the job's message. */
int ckpt_async_join(ckpt_async_t *a, double *waited_s, char *err, size_t errlen);

#endif /* STRATA_CKPT_ASYNC_H */
