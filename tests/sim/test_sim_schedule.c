/* Pipeline schedules: action order (GPipe all-F-then-all-B; 1F1B as PipeDream-Flush, with p-s-1
 * warm-up forwards), FWD before BWD for every micro-batch, sends matched by receives on the
 * neighbour, in-flight counts, and deadlock freedom under buffered sends (and the detection
 * of deadlocks, so the checker can fail). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schedule.h"
#include "test_util.h"

/* Compact text of a stage's compute actions: "F0 F1 B0 ..." */
static void compute_string(const sched_action_t *a, int n, char *buf, size_t len) {
  size_t k = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && k + 8 < len; i++)
    if (a[i].op == SCHED_FWD || a[i].op == SCHED_BWD)
      k += (size_t)snprintf(buf + k, len - k, "%s%c%d", k ? " " : "",
                            a[i].op == SCHED_FWD ? 'F' : 'B', a[i].micro);
}

static void test_gpipe_order(void) {
  sched_action_t a[SCHED_MAX_ACTIONS(3)];
  int n;
  char s[256];
  CHECK_EQ_INT(schedule_build(SCHED_GPIPE, 2, 3, 1, a, &n), 0);
  compute_string(a, n, s, sizeof s);
  CHECK_TRUE(!strcmp(s, "F0 F1 F2 B0 B1 B2"));
  /* the last stage receives activations and sends gradients, nothing else */
  CHECK_EQ_INT(n, 12);
  CHECK_EQ_INT(a[0].op, SCHED_RECV_ACT);
  CHECK_EQ_INT(a[0].peer, 0);
  CHECK_EQ_INT(a[n - 1].op, SCHED_SEND_GRAD);
}

static void test_1f1b_order_matches_reference(void) {
  /* P=4, M=6: stage s runs p-s-1 warm-up forwards, then F/B alternation, then cool-down. */
  const char *expect[4] = {
      "F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5",
      "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5",
      "F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 B5",
      "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5",
  };
  for (int s = 0; s < 4; s++) {
    sched_action_t a[SCHED_MAX_ACTIONS(6)];
    int n;
    char str[256];
    CHECK_EQ_INT(schedule_build(SCHED_1F1B, 4, 6, s, a, &n), 0);
    compute_string(a, n, str, sizeof str);
    if (strcmp(str, expect[s]))
      test_fail(__FILE__, __LINE__, "stage %d: '%s' expected '%s'", s, str, expect[s]);
  }
}

static void test_fwd_before_bwd_and_neighbour_messages(void) {
  for (int k = 0; k < 2; k++)
    for (int P = 1; P <= 6; P++)
      for (int M = 1; M <= 9; M++)
        for (int s = 0; s < P; s++) {
          sched_action_t *a = malloc(sizeof *a * SCHED_MAX_ACTIONS(M));
          int n, fpos[16], bpos[16], sa = 0, ra = 0, sg = 0, rg = 0;
          for (int m = 0; m < M; m++) fpos[m] = bpos[m] = -1;
          CHECK_EQ_INT(schedule_build((sched_kind_t)k, P, M, s, a, &n), 0);
          for (int i = 0; i < n; i++) {
            if (a[i].op == SCHED_FWD) fpos[a[i].micro] = i;
            if (a[i].op == SCHED_BWD) bpos[a[i].micro] = i;
            if (a[i].op == SCHED_SEND_ACT) {
              sa++;
              CHECK_EQ_INT(a[i].peer, s + 1);
            }
            if (a[i].op == SCHED_RECV_ACT) {
              ra++;
              CHECK_EQ_INT(a[i].peer, s - 1);
            }
            if (a[i].op == SCHED_SEND_GRAD) {
              sg++;
              CHECK_EQ_INT(a[i].peer, s - 1);
            }
            if (a[i].op == SCHED_RECV_GRAD) {
              rg++;
              CHECK_EQ_INT(a[i].peer, s + 1);
            }
            /* a receive directly precedes the compute that needs it */
            if (a[i].op == SCHED_RECV_ACT)
              CHECK_TRUE(a[i + 1].op == SCHED_FWD && a[i + 1].micro == a[i].micro);
            if (a[i].op == SCHED_RECV_GRAD)
              CHECK_TRUE(a[i + 1].op == SCHED_BWD && a[i + 1].micro == a[i].micro);
          }
          for (int m = 0; m < M; m++) CHECK_TRUE(fpos[m] >= 0 && bpos[m] > fpos[m]);
          CHECK_EQ_INT(sa, s < P - 1 ? M : 0);
          CHECK_EQ_INT(rg, s < P - 1 ? M : 0);
          CHECK_EQ_INT(ra, s > 0 ? M : 0);
          CHECK_EQ_INT(sg, s > 0 ? M : 0);
          CHECK_EQ_INT(schedule_max_in_flight(a, n), schedule_in_flight((sched_kind_t)k, P, M, s));
          free(a);
        }
}

static void test_in_flight_closed_forms(void) {
  CHECK_EQ_INT(schedule_in_flight(SCHED_GPIPE, 4, 8, 0), 8);
  CHECK_EQ_INT(schedule_in_flight(SCHED_1F1B, 4, 8, 0), 4);
  CHECK_EQ_INT(schedule_in_flight(SCHED_1F1B, 4, 8, 3), 1);
  CHECK_EQ_INT(schedule_in_flight(SCHED_1F1B, 4, 2, 0), 2);
}

static void test_deadlock_free_with_buffered_sends(void) {
  char err[256];
  for (int k = 0; k < 2; k++)
    for (int P = 1; P <= 8; P++)
      for (int M = 1; M <= 12; M++) {
        int rc = schedule_check_deadlock_free((sched_kind_t)k, P, M, 0, err, sizeof err);
        if (rc)
          test_fail(__FILE__, __LINE__, "%s P=%d M=%d: %s", schedule_kind_name((sched_kind_t)k), P,
                    M, err);
      }
}

static void test_checker_detects_deadlocks(void) {
  char err[256] = "";
  /* 1F1B with rendezvous sends: stage 0 sends activation 1 while stage 1 sends gradient 0 */
  CHECK_EQ_INT(schedule_check_deadlock_free(SCHED_1F1B, 2, 2, 1, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "deadlock") != NULL);
  /* GPipe with rendezvous sends happens to be safe (all F, then all B in order) */
  CHECK_EQ_INT(schedule_check_deadlock_free(SCHED_GPIPE, 3, 4, 1, err, sizeof err), 0);
  /* a stage that receives before it sends, on both sides: deadlock even with buffering */
  sched_action_t s0[] = {
      {SCHED_RECV_GRAD, 0, 1}, {SCHED_FWD, 0, -1}, {SCHED_SEND_ACT, 0, 1}, {SCHED_BWD, 0, -1}};
  sched_action_t s1[] = {
      {SCHED_RECV_ACT, 0, 0}, {SCHED_FWD, 0, -1}, {SCHED_BWD, 0, -1}, {SCHED_SEND_GRAD, 0, 0}};
  sched_action_t *lists[2] = {s0, s1};
  int n[2] = {4, 4};
  CHECK_EQ_INT(schedule_check_lists(2, 1, lists, n, 0, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "deadlock") != NULL);
  /* a send nobody receives */
  sched_action_t t0[] = {{SCHED_FWD, 0, -1}, {SCHED_SEND_ACT, 0, 1}, {SCHED_BWD, 0, -1}};
  sched_action_t t1[] = {{SCHED_FWD, 0, -1}, {SCHED_BWD, 0, -1}};
  sched_action_t *l2[2] = {t0, t1};
  int n2[2] = {3, 2};
  CHECK_EQ_INT(schedule_check_lists(2, 1, l2, n2, 0, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "never received") != NULL);
}

static void test_bad_arguments(void) {
  sched_action_t a[12];
  int n;
  CHECK_EQ_INT(schedule_build(SCHED_1F1B, 2, 2, 2, a, &n), -1);
  CHECK_EQ_INT(schedule_build(SCHED_1F1B, 0, 2, 0, a, &n), -1);
  CHECK_EQ_INT(schedule_build(SCHED_GPIPE, 2, 0, 0, a, &n), -1);
  sched_kind_t k;
  CHECK_EQ_INT(schedule_parse_kind("1f1b", &k), 0);
  CHECK_EQ_INT(k, SCHED_1F1B);
  CHECK_EQ_INT(schedule_parse_kind("zb", &k), -1);
}

/* Megatron-LM's interleaved 1F1B: every (chunk, micro-batch) forward and backward once, each
 * backward after its forward, in-flight count equal to the closed form, deadlock-free with
 * buffered sends, and V = 1 exactly 1F1B. */
static void test_interleaved_schedule(void) {
  char err[256];
  for (int P = 2; P <= 6; P++)
    for (int V = 1; V <= 4; V++)
      for (int M = P; M <= 3 * P; M += P) {
        for (int s = 0; s < P; s++) {
          sched_action_t *a = malloc(sizeof *a * SCHED_MAX_ACTIONS(M * V)), *b = NULL;
          int n = 0, seen_f[128] = {0}, seen_b[128] = {0}, fpos[128], live = 0;
          CHECK_EQ_INT(schedule_build_interleaved(P, M, V, s, a, &n), 0);
          for (int i = 0; i < n; i++) {
            int key = a[i].chunk * M + a[i].micro;
            CHECK_TRUE(a[i].chunk >= 0 && a[i].chunk < V && key < 128);
            if (a[i].op == SCHED_FWD) seen_f[key]++, fpos[key] = i, live++;
            if (a[i].op == SCHED_BWD) {
              CHECK_TRUE(seen_f[key] == 1 && fpos[key] < i);
              seen_b[key]++, live--;
            }
          }
          CHECK_EQ_INT(live, 0);
          for (int k = 0; k < M * V; k++) CHECK_TRUE(seen_f[k] == 1 && seen_b[k] == 1);
          CHECK_EQ_INT(schedule_max_in_flight(a, n), schedule_in_flight_interleaved(P, M, V, s));
          if (V == 1) { /* the same list as 1F1B */
            int nb = 0;
            b = malloc(sizeof *b * SCHED_MAX_ACTIONS(M));
            CHECK_EQ_INT(schedule_build(SCHED_1F1B, P, M, s, b, &nb), 0);
            CHECK_EQ_INT(nb, n);
            for (int i = 0; i < n && i < nb; i++)
              CHECK_TRUE(a[i].op == b[i].op && a[i].micro == b[i].micro && a[i].peer == b[i].peer);
          }
          free(a);
          free(b);
        }
        if (schedule_check_interleaved(P, M, V, 0, err, sizeof err))
          test_fail(__FILE__, __LINE__, "interleaved P=%d M=%d V=%d: %s", P, M, V, err);
      }
  /* rank 0 keeps P + (P - 1) / V stages' worth of activations (Korthikanti et al. 2022,
   * section 4.2.3: the interleaved schedule's factor 1 + (P - 1) / (P V)) */
  CHECK_EQ_INT(schedule_in_flight_interleaved(4, 8, 2, 0), 4 * 2 + 3);
  CHECK_EQ_INT(schedule_in_flight_interleaved(8, 16, 4, 0), 8 * 4 + 7);
  CHECK_EQ_INT(schedule_in_flight_interleaved(4, 8, 2, 3), 2 * 0 + 4 + 1);
  CHECK_EQ_INT(schedule_in_flight_interleaved(4, 4, 2, 0), 8); /* M = P: all forwards first */
  /* the chunk order of rank 0, P = 2, V = 2, M = 4: forwards m0 m1 of chunk 0, m0 m1 of chunk 1,
   * then m2 m3 of chunk 0 ... */
  sched_action_t a[SCHED_MAX_ACTIONS(8)];
  int n = 0, f = 0;
  const int want_chunk[8] = {0, 0, 1, 1, 0, 0, 1, 1}, want_micro[8] = {0, 1, 0, 1, 2, 3, 2, 3};
  CHECK_EQ_INT(schedule_build_interleaved(2, 4, 2, 0, a, &n), 0);
  for (int i = 0; i < n; i++)
    if (a[i].op == SCHED_FWD && f < 8) {
      CHECK_EQ_INT(a[i].chunk, want_chunk[f]);
      CHECK_EQ_INT(a[i].micro, want_micro[f]);
      f++;
    }
  CHECK_EQ_INT(f, 8);
  /* rank 1's chunk 0 sends on to rank 0's chunk 1 */
  CHECK_EQ_INT(schedule_build_interleaved(2, 4, 2, 1, a, &n), 0);
  CHECK_TRUE(a[0].op == SCHED_RECV_ACT && a[1].op == SCHED_FWD && a[2].op == SCHED_SEND_ACT);
  CHECK_EQ_INT(a[2].peer, 0);
  CHECK_EQ_INT(a[2].chunk, 0);
  /* bad arguments: M not a multiple of P, one stage */
  CHECK_EQ_INT(schedule_build_interleaved(4, 6, 2, 0, a, &n), -1);
  CHECK_EQ_INT(schedule_build_interleaved(1, 4, 2, 0, a, &n), -1);
}

int main(void) {
  test_gpipe_order();
  test_1f1b_order_matches_reference();
  test_fwd_before_bwd_and_neighbour_messages();
  test_in_flight_closed_forms();
  test_deadlock_free_with_buffered_sends();
  test_checker_detects_deadlocks();
  test_bad_arguments();
  test_interleaved_schedule();
  return test_finish("sim_schedule");
}
