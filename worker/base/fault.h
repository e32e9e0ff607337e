/* fault.h -- fault injection for the reliability tests.
 *
 * The environment variable STRATA_FAULT names one fault to inject into one rank:
 *
 *   STRATA_FAULT="ACTION:rank=R:step=S[:op=OP][:code=N]"
 *
 *   ACTION  kill  the rank SIGKILLs itself (no clean-up, like an OOM kill or a lost node)
 *           hang  the rank stops making progress forever (sleeps; like a stuck device)
 *           exit  the rank calls _exit(N) (default N = 1) without finalising MPI
 *   rank=R  the MPI world rank that fails (default 0)
 *   host=H  instead of rank=R: the ranks on the host named H (gethostname; the namespace
 *           cluster's nodes are n1, n2, ...). With kill, the whole host is lost at once: the
 *           first of them to reach the fault point SIGKILLs the job's other ranks on that host
 *           (found in /proc: the same executable, host and STRATA_FAULT, and the same launch --
 *           PMIX_NAMESPACE, OMPI_MCA_ess_base_jobid, SLURM_JOB_ID, SLURM_STEP_ID), then itself,
 *           whether or not they would reach the point. With hang or exit, each rank on H fails
 *           when it reaches the point itself.
 *   step=S  the 1-based training step in which it fails (default: the first point reached)
 *   attempt=N  only in launch N of the job: launch/strata-run --max-restarts exports
 *           STRATA_ATTEMPT (0 for the first launch, 1 for the first restart, ...); unset
 *           counts as 0. Without it the fault fires in every launch.
 *   op=OP   where in that step (also spelled during=OP):
 *           step        at the start of the step (default)
 *           allreduce   inside the data-parallel gradient all-reduce wait
 *           recv        inside a pipeline receive (activations or gradients)
 *           checkpoint  in the middle of writing the rank's checkpoint shard (after its weights
 *                       file, before its optimizer file); with asynchronous checkpoints
 *                       (--ckpt-async, the default) this is inside the background writer
 *                       thread while training goes on, and step=S is the checkpoint's step
 *           commit      on the coordinator, before the checkpoint directory is renamed (also
 *                       in the background writer with --ckpt-async; step=S as above)
 *           session_save  serving/inference: before the rank writes its part of a session
 *                       turn; step=S counts this rank's session saves (1 = the first)
 *
 * Example: STRATA_FAULT="kill:rank=2:step=3", "hang:rank=1:step=2:op=allreduce",
 * "kill:rank=1:during=checkpoint", "kill:host=n2:step=7".
 *
 * Cost when STRATA_FAULT is unset: one predictable branch per hook (the variable is read once).
 * A malformed STRATA_FAULT is reported on stderr once and ignored (never silently half-applied).
 * Injection fires at most once per process.
 */
#ifndef STRATA_FAULT_H
#define STRATA_FAULT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  FAULT_AT_STEP = 0,   /* step boundary (start of step) */
  FAULT_AT_ALLREDUCE,  /* gradient all-reduce wait */
  FAULT_AT_RECV,       /* pipeline receive */
  FAULT_AT_CHECKPOINT, /* while writing a checkpoint shard */
  FAULT_AT_COMMIT,     /* before the checkpoint rename (coordinator) */
  FAULT_AT_SESSION_SAVE, /* before a stage writes its session file (step = the rank's save count) */
} fault_site_t;

/* 0 when no fault is configured (after the first call; STRATA_FAULT is parsed once). */
extern int fault_armed_;

/* Marks a fault site. `step` is the 1-based step being run, or -1 to use the step last passed
 * to a FAULT_AT_STEP point (sites that do not know the step). If STRATA_FAULT selects this
 * rank, step and site, performs the action (does not return for kill/hang/exit). */
void fault_point_slow(fault_site_t site, int64_t step);
extern int64_t fault_step_; /* last step passed to a FAULT_AT_STEP point; -1 before */
static inline void fault_point(fault_site_t site, int64_t step) {
  if (site == FAULT_AT_STEP) fault_step_ = step;
  if (fault_armed_) fault_point_slow(site, step);
}

/* Sets the step the calling thread's fault points use when given step -1 (a background checkpoint
 * writer: the step of the checkpoint it writes, not the main thread's current step). */
void fault_set_thread_step(int64_t step);

/* Prints the failure of this rank as "[strata rR] error: WHAT: rank R: step S: MSG" (or
 * "before the first step"), S being the step last marked by fault_point(FAULT_AT_STEP). MSG
 * from the collectives names the operation, the peer rank and the bytes outstanding. Also
 * records "failed: MSG" as the rank's final state in its status record (rank_status.h). */
void fault_report_failure(const char *what, const char *msg);

/* Parses a STRATA_FAULT spec (exposed for the unit test). Returns 0 and fills the fields, or
 * -1 with a message in err naming the bad part. */
typedef struct {
  int action; /* 0 kill, 1 hang, 2 exit */
  int rank;
  int64_t step; /* -1 any */
  fault_site_t site;
  int code;
  int attempt; /* -1 any launch; else only when STRATA_ATTEMPT (default 0) equals it */
  char host[64]; /* "" : the rank selects; else every rank on this host */
} fault_spec_t;
int fault_parse(const char *spec, fault_spec_t *out, char *err, size_t errlen);

#endif
