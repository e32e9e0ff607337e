/* schedule.c -- GPipe and 1F1B action lists per stage, in-flight counts, and a symbolic
 * executor that proves a set of lists deadlock-free under the send/receive rule of
 * schedule.h. */
#include "schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *schedule_kind_name(sched_kind_t k) { return k == SCHED_1F1B ? "1f1b" : "gpipe"; }

const char *schedule_op_name(sched_op_t op) {
  static const char *names[] = {"recv_act", "fwd", "send_act", "recv_grad", "bwd", "send_grad"};
  return (unsigned)op < 6 ? names[op] : "?";
}

int schedule_parse_kind(const char *s, sched_kind_t *out) {
  if (!s) return -1;
  if (!strcmp(s, "gpipe"))
    *out = SCHED_GPIPE;
  else if (!strcmp(s, "1f1b"))
    *out = SCHED_1F1B;
  else
    return -1;
  return 0;
}

static int push(sched_action_t *a, int n, sched_op_t op, int micro, int peer) {
  a[n].op = op;
  a[n].micro = micro;
  a[n].peer = peer;
  return n + 1;
}

/* One forward with its receive and send. */
static int forward(sched_action_t *a, int n, int P, int s, int m) {
  if (s > 0) n = push(a, n, SCHED_RECV_ACT, m, s - 1);
  n = push(a, n, SCHED_FWD, m, -1);
  if (s < P - 1) n = push(a, n, SCHED_SEND_ACT, m, s + 1);
  return n;
}

/* One backward with its receive and send. */
static int backward(sched_action_t *a, int n, int P, int s, int m) {
  if (s < P - 1) n = push(a, n, SCHED_RECV_GRAD, m, s + 1);
  n = push(a, n, SCHED_BWD, m, -1);
  if (s > 0) n = push(a, n, SCHED_SEND_GRAD, m, s - 1);
  return n;
}

int schedule_build(sched_kind_t kind, int P, int M, int stage, sched_action_t *acts, int *n) {
  if (P < 1 || M < 1 || stage < 0 || stage >= P || !acts || !n) return -1;
  int k = 0;
  if (kind == SCHED_GPIPE) {
    for (int m = 0; m < M; m++) k = forward(acts, k, P, stage, m);
    for (int m = 0; m < M; m++) k = backward(acts, k, P, stage, m);
  } else if (kind == SCHED_1F1B) {
    int warm = P - stage - 1;
    if (warm > M) warm = M;
    for (int m = 0; m < warm; m++) k = forward(acts, k, P, stage, m);
    for (int j = 0; j < M - warm; j++) {
      k = forward(acts, k, P, stage, warm + j);
      k = backward(acts, k, P, stage, j);
    }
    for (int j = M - warm; j < M; j++) k = backward(acts, k, P, stage, j);
  } else {
    return -1;
  }
  *n = k;
  return 0;
}

int schedule_max_in_flight(const sched_action_t *acts, int n) {
  int live = 0, best = 0;
  for (int i = 0; i < n; i++) {
    if (acts[i].op == SCHED_FWD && ++live > best) best = live;
    if (acts[i].op == SCHED_BWD) live--;
  }
  return best;
}

int schedule_in_flight(sched_kind_t kind, int P, int M, int stage) {
  if (kind == SCHED_GPIPE) return M;
  return M < P - stage ? M : P - stage;
}

int schedule_tag(sched_op_t op, int micro) {
  int grad = (op == SCHED_RECV_GRAD || op == SCHED_SEND_GRAD);
  return micro * 2 + grad;
}

/* Index of a message: kind (0 act, 1 grad) x receiving stage x micro-batch. */
static size_t msg_index(int grad, int recv_stage, int micro, int P, int M) {
  return ((size_t)grad * (size_t)P + (size_t)recv_stage) * (size_t)M + (size_t)micro;
}

int schedule_check_lists(int P, int M, sched_action_t *const *acts, const int *n, int rendezvous,
                         char *err, size_t errlen) {
  int rc = -1;
  int *pc = calloc((size_t)P, sizeof(int));
  unsigned char *posted = calloc(2 * (size_t)P * (size_t)M, 1); /* 0 none, 1 posted, 2 received */
  if (!pc || !posted) {
    strata_fail(err, errlen, "out of memory for checking the schedules of %d stages and %d micro-batches",
                P, M);
    goto free_all;
  }
  for (;;) {
    int progress = 0, done = 1;
    for (int s = 0; s < P; s++) {
      while (pc[s] < n[s]) {
        const sched_action_t *a = &acts[s][pc[s]];
        if (a->micro < 0 || a->micro >= M) {
          strata_fail(err, errlen, "stage %d action %d (%s): micro-batch %d out of range", s, pc[s],
                      schedule_op_name(a->op), a->micro);
          goto free_all;
        }
        if (a->op == SCHED_FWD || a->op == SCHED_BWD) {
          pc[s]++;
          progress = 1;
          continue;
        }
        int grad = (a->op == SCHED_SEND_GRAD || a->op == SCHED_RECV_GRAD);
        int expect_peer = (a->op == SCHED_SEND_ACT || a->op == SCHED_RECV_GRAD) ? s + 1 : s - 1;
        if (a->peer != expect_peer || a->peer < 0 || a->peer >= P) {
          strata_fail(err, errlen, "stage %d action %d (%s m%d): peer %d, expected neighbour %d", s, pc[s],
                      schedule_op_name(a->op), a->micro, a->peer, expect_peer);
          goto free_all;
        }
        if (a->op == SCHED_SEND_ACT || a->op == SCHED_SEND_GRAD) {
          size_t k = msg_index(grad, a->peer, a->micro, P, M);
          if (posted[k]) {
            strata_fail(err, errlen, "stage %d sends %s m%d twice", s, schedule_op_name(a->op), a->micro);
            goto free_all;
          }
          if (rendezvous) {
            /* completes only together with the receiver's matching receive */
            int q = a->peer;
            sched_op_t want = grad ? SCHED_RECV_GRAD : SCHED_RECV_ACT;
            if (pc[q] < n[q] && acts[q][pc[q]].op == want && acts[q][pc[q]].micro == a->micro) {
              posted[k] = 2;
              pc[q]++;
              pc[s]++;
              progress = 1;
              continue;
            }
            break;
          }
          posted[k] = 1;
          pc[s]++;
          progress = 1;
          continue;
        }
        /* receive: needs the message from the expected neighbour */
        size_t k = msg_index(grad, s, a->micro, P, M);
        if (posted[k] == 2 && !rendezvous) {
          strata_fail(err, errlen, "stage %d receives %s m%d twice", s, schedule_op_name(a->op), a->micro);
          goto free_all;
        }
        if (posted[k] == 1) {
          posted[k] = 2;
          pc[s]++;
          progress = 1;
          continue;
        }
        break; /* blocked (in rendezvous mode the sender advances us) */
      }
      if (pc[s] < n[s]) done = 0;
    }
    if (done) break;
    if (!progress) {
      int s = 0;
      while (s < P && pc[s] >= n[s]) s++;
      const sched_action_t *a = &acts[s][pc[s]];
      strata_fail(err, errlen, "deadlock: stage %d blocked at action %d (%s m%d, peer %d)%s", s, pc[s],
                  schedule_op_name(a->op), a->micro, a->peer, rendezvous ? " with rendezvous sends" : "");
      goto free_all;
    }
  }
  for (size_t k = 0; k < 2 * (size_t)P * (size_t)M; k++)
    if (posted[k] == 1) {
      strata_fail(err, errlen, "a %s message for stage %d micro-batch %d was sent but never received",
                  k / ((size_t)P * M) ? "gradient" : "activation", (int)(k / M % P), (int)(k % M));
      goto free_all;
    }
  rc = 0;
free_all:
  free(pc);
  free(posted);
  return rc;
}

int schedule_check_deadlock_free(sched_kind_t kind, int P, int M, int rendezvous, char *err,
                                 size_t errlen) {
  int rc = -1;
  sched_action_t **acts = calloc((size_t)P, sizeof *acts);
  int *n = calloc((size_t)P, sizeof(int));
  if (!acts || !n) {
    strata_fail(err, errlen, "out of memory for the schedules of %d stages", P);
    goto free_all;
  }
  for (int s = 0; s < P; s++) {
    acts[s] = malloc(sizeof(sched_action_t) * (size_t)SCHED_MAX_ACTIONS(M));
    if (!acts[s]) {
      strata_fail(err, errlen, "out of memory for the schedule of stage %d (%d micro-batches)", s, M);
      goto free_all;
    }
    if (schedule_build(kind, P, M, s, acts[s], &n[s])) {
      strata_fail(err, errlen, "cannot build schedule (P %d, M %d)", P, M);
      goto free_all;
    }
  }
  rc = schedule_check_lists(P, M, acts, n, rendezvous, err, errlen);
free_all:
  if (acts)
    for (int s = 0; s < P; s++) free(acts[s]);
  free(acts);
  free(n);
  return rc;
}
