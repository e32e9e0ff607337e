/* schedule.c -- GPipe, 1F1B and interleaved 1F1B action lists per stage, in-flight counts, and a
 * symbolic executor that proves a set of lists deadlock-free under the send/receive rule of
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

static int push(sched_action_t *a, int n, sched_op_t op, int micro, int peer, int chunk) {
  a[n].op = op;
  a[n].micro = micro;
  a[n].peer = peer;
  a[n].chunk = chunk;
  return n + 1;
}

/* One forward of chunk v (virtual stage v P + s of P V) with its receive and send. */
static int forward_v(sched_action_t *a, int n, int P, int V, int s, int v, int m) {
  int vs = v * P + s;
  if (vs > 0) n = push(a, n, SCHED_RECV_ACT, m, (s + P - 1) % P, v);
  n = push(a, n, SCHED_FWD, m, -1, v);
  if (vs < P * V - 1) n = push(a, n, SCHED_SEND_ACT, m, (s + 1) % P, v);
  return n;
}

/* One backward of chunk v with its receive and send. */
static int backward_v(sched_action_t *a, int n, int P, int V, int s, int v, int m) {
  int vs = v * P + s;
  if (vs < P * V - 1) n = push(a, n, SCHED_RECV_GRAD, m, (s + 1) % P, v);
  n = push(a, n, SCHED_BWD, m, -1, v);
  if (vs > 0) n = push(a, n, SCHED_SEND_GRAD, m, (s + P - 1) % P, v);
  return n;
}

static int forward(sched_action_t *a, int n, int P, int s, int m) { return forward_v(a, n, P, 1, s, 0, m); }
static int backward(sched_action_t *a, int n, int P, int s, int m) { return backward_v(a, n, P, 1, s, 0, m); }

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

/* The k-th chunk pass of the interleaved schedule: its micro-batch and chunk (Megatron-LM's
 * get_model_chunk_id; backward runs the chunks in reverse). */
static void interleaved_pass(int P, int V, int k, int backward_pass, int *micro, int *chunk) {
  int g = k % (P * V);
  *micro = k / (P * V) * P + g % P;
  *chunk = backward_pass ? V - 1 - g / P : g / P;
}

static int interleaved_warmup(int P, int M, int V, int stage) {
  int total = M * V, w = 2 * (P - stage - 1) + (V - 1) * P;
  return M == P || w > total ? total : w;
}

int schedule_build_interleaved(int P, int M, int V, int stage, sched_action_t *acts, int *n) {
  if (V == 1) return schedule_build(SCHED_1F1B, P, M, stage, acts, n);
  if (P < 2 || M < 1 || V < 1 || M % P || stage < 0 || stage >= P || !acts || !n) return -1;
  const int total = M * V, warm = interleaved_warmup(P, M, V, stage);
  int k = 0, m, v;
  for (int f = 0; f < warm; f++) {
    interleaved_pass(P, V, f, 0, &m, &v);
    k = forward_v(acts, k, P, V, stage, v, m);
  }
  for (int j = 0; j < total - warm; j++) {
    interleaved_pass(P, V, warm + j, 0, &m, &v);
    k = forward_v(acts, k, P, V, stage, v, m);
    interleaved_pass(P, V, j, 1, &m, &v);
    k = backward_v(acts, k, P, V, stage, v, m);
  }
  for (int j = total - warm; j < total; j++) {
    interleaved_pass(P, V, j, 1, &m, &v);
    k = backward_v(acts, k, P, V, stage, v, m);
  }
  *n = k;
  return 0;
}

int schedule_build_v(sched_kind_t kind, int P, int M, int V, int stage, sched_action_t *acts, int *n) {
  if (V > 1 && kind != SCHED_1F1B) return -1;
  return V > 1 ? schedule_build_interleaved(P, M, V, stage, acts, n)
               : schedule_build(kind, P, M, stage, acts, n);
}

int schedule_in_flight_interleaved(int P, int M, int V, int stage) {
  if (V == 1) return schedule_in_flight(SCHED_1F1B, P, M, stage);
  int total = M * V, w = interleaved_warmup(P, M, V, stage);
  return w >= total ? total : w + 1;
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

/* Index of a message: kind (0 act, 1 grad) x receiving virtual stage (of VS) x micro-batch. */
static size_t msg_index(int grad, int recv_vs, int micro, int VS, int M) {
  return ((size_t)grad * (size_t)VS + (size_t)recv_vs) * (size_t)M + (size_t)micro;
}

/* The virtual stage a send of action a (on virtual stage vs) reaches; -1 past either end. */
static int msg_target(const sched_action_t *a, int vs, int VS) {
  int t = (a->op == SCHED_SEND_ACT || a->op == SCHED_RECV_GRAD) ? vs + 1 : vs - 1;
  return t >= 0 && t < VS ? t : -1;
}

int schedule_check_lists(int P, int M, sched_action_t *const *acts, const int *n, int rendezvous,
                         char *err, size_t errlen) {
  return schedule_check_lists_v(P, M, 1, acts, n, rendezvous, err, errlen);
}

int schedule_check_lists_v(int P, int M, int V, sched_action_t *const *acts, const int *n,
                           int rendezvous, char *err, size_t errlen) {
  int rc = -1;
  const int VS = P * V;
  int *pc = calloc((size_t)P, sizeof(int));
  unsigned char *posted = calloc(2 * (size_t)VS * (size_t)M, 1); /* 0 none, 1 posted, 2 received */
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
        if (a->micro < 0 || a->micro >= M || a->chunk < 0 || a->chunk >= V) {
          strata_fail(err, errlen, "stage %d action %d (%s): micro-batch %d or chunk %d out of range", s,
                      pc[s], schedule_op_name(a->op), a->micro, a->chunk);
          goto free_all;
        }
        if (a->op == SCHED_FWD || a->op == SCHED_BWD) {
          pc[s]++;
          progress = 1;
          continue;
        }
        const int vs = a->chunk * P + s, grad = (a->op == SCHED_SEND_GRAD || a->op == SCHED_RECV_GRAD);
        const int other = msg_target(a, vs, VS), expect_peer = other < 0 ? -1 : other % P;
        if (other < 0 || a->peer != expect_peer) {
          strata_fail(err, errlen, "stage %d action %d (%s m%d): peer %d, expected neighbour %d", s, pc[s],
                      schedule_op_name(a->op), a->micro, a->peer, expect_peer);
          goto free_all;
        }
        if (a->op == SCHED_SEND_ACT || a->op == SCHED_SEND_GRAD) {
          size_t k = msg_index(grad, other, a->micro, VS, M);
          if (posted[k]) {
            strata_fail(err, errlen, "stage %d sends %s m%d twice", s, schedule_op_name(a->op), a->micro);
            goto free_all;
          }
          if (rendezvous) {
            /* completes only together with the receiver's matching receive */
            int q = a->peer;
            sched_op_t want = grad ? SCHED_RECV_GRAD : SCHED_RECV_ACT;
            const sched_action_t *b = pc[q] < n[q] ? &acts[q][pc[q]] : NULL;
            if (b && b->op == want && b->micro == a->micro && b->chunk * P + q == other) {
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
        size_t k = msg_index(grad, vs, a->micro, VS, M);
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
  for (size_t k = 0; k < 2 * (size_t)VS * (size_t)M; k++)
    if (posted[k] == 1) {
      strata_fail(err, errlen, "a %s message for stage %d micro-batch %d was sent but never received",
                  k / ((size_t)VS * M) ? "gradient" : "activation", (int)(k / M % VS % P), (int)(k % M));
      goto free_all;
    }
  rc = 0;
free_all:
  free(pc);
  free(posted);
  return rc;
}

/* Builds every stage's list (kind, or interleaved with V > 1) and checks them. */
static int check_built(sched_kind_t kind, int P, int M, int V, int rendezvous, char *err, size_t errlen) {
  int rc = -1;
  sched_action_t **acts = calloc((size_t)P, sizeof *acts);
  int *n = calloc((size_t)P, sizeof(int));
  if (!acts || !n) {
    strata_fail(err, errlen, "out of memory for the schedules of %d stages", P);
    goto free_all;
  }
  for (int s = 0; s < P; s++) {
    acts[s] = malloc(sizeof(sched_action_t) * (size_t)SCHED_MAX_ACTIONS(M * V));
    if (!acts[s]) {
      strata_fail(err, errlen, "out of memory for the schedule of stage %d (%d micro-batches)", s, M);
      goto free_all;
    }
    if (schedule_build_v(kind, P, M, V, s, acts[s], &n[s])) {
      strata_fail(err, errlen, "cannot build schedule (P %d, M %d, V %d)", P, M, V);
      goto free_all;
    }
  }
  rc = schedule_check_lists_v(P, M, V, acts, n, rendezvous, err, errlen);
free_all:
  if (acts)
    for (int s = 0; s < P; s++) free(acts[s]);
  free(acts);
  free(n);
  return rc;
}

int schedule_check_deadlock_free(sched_kind_t kind, int P, int M, int rendezvous, char *err,
                                 size_t errlen) {
  return check_built(kind, P, M, 1, rendezvous, err, errlen);
}

int schedule_check_interleaved(int P, int M, int V, int rendezvous, char *err, size_t errlen) {
  return check_built(SCHED_1F1B, P, M, V, rendezvous, err, errlen);
}
