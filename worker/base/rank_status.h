/* rank_status.h -- every rank's last known state, in a small file that outlives the rank.
 *
 * A rank that is SIGKILLed (OOM killer, lost node, fault injection) cannot say anything; Open
 * MPI and srun tear the job down within a second, before a survivor can time out and report.
 * So each rank of `strata train` keeps its current step and operation in RUN/status/rank-<R>, a
 * 768-byte text file mapped into memory (MAP_SHARED): an update is a store into the page cache,
 * which the kernel keeps when the process dies. After a failed job the launch wrappers
 * (launch/strata-run, launch/slurm/common.sh) read the records and print one line per failed
 * rank, and `strata report RUN` shows every rank's last state.
 *
 * File format (three lines of 255 characters + '\n', space padded):
 *   line 1, 2  two slots `SEQ|rank R|stage S|replica D|pid P|step K|OPERATION|SEQ`; a writer
 *              fills the older slot (first byte last), so a rank killed mid-update leaves the
 *              other slot intact; the valid slot (both SEQ equal) with the larger SEQ is current.
 *              K is the 1-based step being run, 0 before the first step.
 *   line 3     how the rank ended: `state running` (it never said: killed by a signal it could
 *              not catch, or exited without a report), `state done`, `state failed: MESSAGE`,
 *              or `state stopped by signal 15` (SIGTERM: the launcher tearing the job down after
 *              another rank failed).
 *
 * Cost: rank_status_op is a branch when no record is open; with one, a short snprintf into
 * the mapping (well under a microsecond), called a few times per micro-batch.
 *
 * Usage:
 *    rank_status_open(out_dir, rank, world, stage, replica, err, sizeof err);
 *    rank_status_step(step + 1);
 *    rank_status_op(RS_ALLREDUCE, bucket);
 *    ...
 *    rank_status_end("failed: ...");   (fault_report_failure, with the error message)
 *    rank_status_exit(rc);               (main, after the command)
 */
#ifndef STRATA_RANK_STATUS_H
#define STRATA_RANK_STATUS_H

#include <stddef.h>
#include <stdint.h>

/* Operations. The six pipeline ones are in sched_op_t's order, so pipeline.c passes
 * RS_PIPE_RECV_ACT + op (checked by a static assertion in rank_status.c). */
typedef enum {
  RS_STARTUP = 0,     /* "start-up" (data, model, communicators) */
  RS_STEP,            /* "step start" */
  RS_PIPE_RECV_ACT,   /* "receive activations of micro-batch J from stage S-1" */
  RS_PIPE_FWD,        /* "forward micro-batch J" */
  RS_PIPE_SEND_ACT,   /* "send activations of micro-batch J to stage S+1" */
  RS_PIPE_RECV_GRAD,  /* "receive gradients of micro-batch J from stage S+1" */
  RS_PIPE_BWD,        /* "backward micro-batch J" */
  RS_PIPE_SEND_GRAD,  /* "send gradients of micro-batch J to stage S-1" */
  RS_ALLREDUCE,       /* "gradient all-reduce bucket J" */
  RS_OPTIMIZER,       /* "optimizer update" */
  RS_REPORT,          /* "step report gather" */
  RS_EVAL,            /* "validation" */
  RS_CHECKPOINT,      /* "checkpoint write" */
  RS_FINISH,          /* "run report and trace gather" */
  RS_NUM_OPS
} rank_status_op_t;

/* Creates RUN/status/rank-<rank> (and the folder) and maps it; records pid, stage, replica,
 * step 0 and RS_STARTUP; installs a SIGTERM handler that marks the record "stopped by signal
 * 15" and then ends the process as SIGTERM would (chaining to a previous handler, if any).
 * Rank 0 also removes records rank-<world>... left by an earlier, wider run in the same
 * directory. Returns 0, or -1 with a message (the caller may go on without a record). */
int rank_status_open(const char *run_dir, int rank, int world, int stage, int replica, char *err,
                     size_t errlen);

extern int rank_status_on_; /* 1 while a record is open */
void rank_status_set_slow(int64_t step, rank_status_op_t op, int index);

/* Marks the start of 1-based step `step` (operation RS_STEP). */
static inline void rank_status_step(int64_t step) {
  if (rank_status_on_) rank_status_set_slow(step, RS_STEP, -1);
}
/* Records the current operation of the current step; index is the micro-batch or bucket, or
 * -1 for none. */
static inline void rank_status_op(rank_status_op_t op, int index) {
  if (rank_status_on_) rank_status_set_slow(-1, op, index);
}

/* Writes line 3 ("state " + text; '|' and newlines become spaces, cut at 248 characters),
 * e.g. "done" or "failed: train: step 3: ...". The record stays mapped. */
void rank_status_end(const char *text);

/* Unmaps the record (rank_status_op becomes a no-op) and restores the SIGTERM disposition. */
void rank_status_close(void);

/* End of the command (main): exit code 0 writes "done"; another code writes "failed (exit
 * code N)" unless rank_status_end already recorded a failure; then closes the record. */
void rank_status_exit(int rc);

/* Parsed record (for `strata report`). */
typedef struct {
  int rank, stage, replica, pid;
  int64_t step;
  char op[160];    /* the operation text */
  char state[256]; /* "running", "done", "failed: ...", "stopped by signal 15" */
} rank_status_record_t;

/* Reads and parses one record file. Returns 0, or -1 with a message (missing, torn, not a
 * status record). */
int rank_status_read(const char *path, rank_status_record_t *out, char *err, size_t errlen);

#endif /* STRATA_RANK_STATUS_H */
