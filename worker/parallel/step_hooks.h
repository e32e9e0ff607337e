/* step_hooks.h -- how the training runtime (pipeline.c, grad_sync.c) tells its observers what it
 * is doing without depending on them. Two observers fill in a table of callbacks: the trace
 * (train/coordinator.c: coord_step_hooks) and the simulated clock carried on the real run
 * (sim/sim_clock.c: sim_clock_step_hooks). The runtime calls the ones that are set; a NULL table
 * or entry costs one branch.
 *
 * Usage (train/train_dist.c)
 *    step_hooks_t h = {0};
 *    coord_step_hooks(co, &h);
 *    sim_clock_step_hooks(&simc, &h);
 *    pipeline_set_hooks(pl, &h);  grad_sync_set_hooks(gs, &h);   // h must outlive them
 */
#ifndef STRATA_STEP_HOOKS_H
#define STRATA_STEP_HOOKS_H

/* What a trace slice is (trace.json's event names). */
typedef enum {
  TRACE_FWD = 0,
  TRACE_BWD,
  TRACE_SEND,
  TRACE_RECV,
  TRACE_ALLREDUCE,
  TRACE_OPTIM,
  TRACE_CKPT,
  TRACE_KINDS
} trace_kind_t;

typedef struct {
  /* the trace: its clock (seconds), and a slice [t0_s, t1_s) of `kind` for micro-batch `micro`
   * (-1: none) */
  void *trace_ctx;
  double (*trace_now)(void *ctx);
  void (*trace)(void *ctx, trace_kind_t kind, int micro, double t0_s, double t1_s);
  /* the simulated clock: the schedule's actions as they happen (fwd = 1 for activations, 0 for
   * gradients; `last` marks the step's last micro-batch), gradients ready for the data-parallel
   * sync, and each bucket's all-reduce of `bytes` */
  void *clock_ctx;
  void (*clock_fwd)(void *ctx);
  void (*clock_bwd_begin)(void *ctx, int last);
  void (*clock_bwd_end)(void *ctx, int last);
  void (*clock_send)(void *ctx, int fwd, int micro, int tag);
  void (*clock_recv)(void *ctx, int fwd, int tag);
  void (*clock_grad_ready)(void *ctx);
  void (*clock_bucket)(void *ctx, double bytes);
} step_hooks_t;

static inline double hook_now(const step_hooks_t *h) {
  return h && h->trace_now ? h->trace_now(h->trace_ctx) : 0;
}
static inline void hook_trace(const step_hooks_t *h, trace_kind_t kind, int micro, double t0_s) {
  if (h && h->trace) h->trace(h->trace_ctx, kind, micro, t0_s, h->trace_now(h->trace_ctx));
}
static inline void hook_clock_fwd(const step_hooks_t *h) {
  if (h && h->clock_fwd) h->clock_fwd(h->clock_ctx);
}
static inline void hook_clock_bwd_begin(const step_hooks_t *h, int last) {
  if (h && h->clock_bwd_begin) h->clock_bwd_begin(h->clock_ctx, last);
}
static inline void hook_clock_bwd_end(const step_hooks_t *h, int last) {
  if (h && h->clock_bwd_end) h->clock_bwd_end(h->clock_ctx, last);
}
static inline void hook_clock_send(const step_hooks_t *h, int fwd, int micro, int tag) {
  if (h && h->clock_send) h->clock_send(h->clock_ctx, fwd, micro, tag);
}
static inline void hook_clock_recv(const step_hooks_t *h, int fwd, int tag) {
  if (h && h->clock_recv) h->clock_recv(h->clock_ctx, fwd, tag);
}
static inline void hook_clock_grad_ready(const step_hooks_t *h) {
  if (h && h->clock_grad_ready) h->clock_grad_ready(h->clock_ctx);
}
static inline void hook_clock_bucket(const step_hooks_t *h, double bytes) {
  if (h && h->clock_bucket) h->clock_bucket(h->clock_ctx, bytes);
}

#endif /* STRATA_STEP_HOOKS_H */
