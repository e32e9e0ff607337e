/* infer_engine_api (under mpirun, P = 1 or 2): the engine contract the HTTP server uses.
 * Requests run alone and requests run concurrently (continuous batching, one of them submitted
 * from another thread while rank 0 steps) produce the same greedy tokens; the streamed tokens
 * (on_token) equal the final ones (on_done); on_done is called exactly once per request; bad
 * requests are refused at submit with a message; the counters add up; infer_cancel ends a
 * request in flight with the tokens so far ("cancelled") and fails a queued one; a session in
 * use cannot be deleted, an idle one can (then it is gone).
 * usage: test_infer_engine_api CHECKPOINT_DIR SESSION_DIR */
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strata/coll.h"
#include "infer.h"
#include "test_util.h"

typedef struct {
  int32_t streamed[64];
  int n_streamed;
  int32_t final[64];
  int n_final;
  int done_calls;
  int ok;
  char finish[16];
  char error[64];
} rec_t;

static void on_token(void *ctx, uint64_t id, int32_t t) {
  rec_t *r = ctx;
  if (r->n_streamed < 64) r->streamed[r->n_streamed++] = t;
}
static void on_done(void *ctx, uint64_t id, const infer_result_t *res) {
  rec_t *r = ctx;
  r->done_calls++;
  r->ok = res->ok;
  r->n_final = res->n_tokens;
  snprintf(r->finish, sizeof r->finish, "%s", res->finish_reason ? res->finish_reason : "");
  snprintf(r->error, sizeof r->error, "%s", res->error);
  if (res->n_tokens) memcpy(r->final, res->tokens, sizeof(int32_t) * res->n_tokens);
}

static infer_request_t make_req(const char *text, int32_t *buf, int max_tokens) {
  int n = (int)strlen(text);
  for (int i = 0; i < n; i++) buf[i] = (unsigned char)text[i];
  infer_request_t r = {buf, n, max_tokens, {0, 0, 1.0, 1}, NULL};
  return r;
}

static void run_until_idle(infer_engine_t *e) {
  while (!infer_engine_idle(e))
    if (infer_engine_step(e)) test_fail(__FILE__, __LINE__, "step: %s", infer_engine_error(e));
}

typedef struct {
  infer_engine_t *e;
  rec_t *rec;
  volatile int submitted;
} thr_t;

static void *submitter(void *arg) {
  thr_t *t = arg;
  int32_t buf[64];
  infer_request_t r = make_req("Late request", buf, 7);
  char err[256];
  usleep(2000);
  if (infer_submit(t->e, &r, on_token, on_done, t->rec, NULL, err, sizeof err))
    test_fail(__FILE__, __LINE__, "thread submit: %s", err);
  t->submitted = 1;
  return NULL;
}

int main(int argc, char **argv) {
  int provided;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  test_set_rank(rank);
  if (argc < 3) {
    fprintf(stderr, "usage: %s CHECKPOINT_DIR SESSION_DIR\n", argv[0]);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  coll_config_t cc = coll_config_default();
  coll_comm_t *comm;
  CHECK_EQ_INT(coll_comm_create(MPI_COMM_WORLD, &cc, &comm), COLL_OK);
  infer_opts_t o = infer_opts_default();
  o.session_dir = argv[2];
  o.max_batch = 8;
  infer_engine_t *e;
  char err[1024];
  if (infer_engine_create(argv[1], comm, &o, &e, err, sizeof err)) {
    fprintf(stderr, "engine: %s\n", err);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (rank != 0) {
    CHECK_EQ_INT(infer_worker_loop(e), 0);
    infer_engine_shutdown(e);
  } else {
    const char *texts[3] = {"Hello", "The cat sat on", "Q"};
    const int maxt[3] = {10, 6, 12};
    int32_t bufs[4][64];
    rec_t solo[4], conc[4];
    memset(solo, 0, sizeof solo);
    memset(conc, 0, sizeof conc);
    for (int i = 0; i < 3; i++) {
      infer_request_t r = make_req(texts[i], bufs[i], maxt[i]);
      uint64_t id = 0;
      CHECK_EQ_INT(infer_submit(e, &r, on_token, on_done, &solo[i], &id, err, sizeof err), 0);
      CHECK_TRUE(id > 0);
      run_until_idle(e);
    }
    int32_t lb[64];
    infer_request_t late = make_req("Late request", lb, 7);
    CHECK_EQ_INT(infer_submit(e, &late, on_token, on_done, &solo[3], NULL, err, sizeof err), 0);
    run_until_idle(e);
    /* concurrently: three at once, the fourth from another thread while stepping */
    for (int i = 0; i < 3; i++) {
      infer_request_t r = make_req(texts[i], bufs[i], maxt[i]);
      CHECK_EQ_INT(infer_submit(e, &r, on_token, on_done, &conc[i], NULL, err, sizeof err), 0);
    }
    thr_t t = {e, &conc[3], 0};
    pthread_t th;
    pthread_create(&th, NULL, submitter, &t);
    while (!t.submitted || !infer_engine_idle(e))
      if (!infer_engine_idle(e) && infer_engine_step(e)) {
        test_fail(__FILE__, __LINE__, "step: %s", infer_engine_error(e));
        break;
      }
    pthread_join(th, NULL);
    for (int i = 0; i < 4; i++) {
      CHECK_EQ_INT(solo[i].done_calls, 1);
      CHECK_EQ_INT(conc[i].done_calls, 1);
      CHECK_TRUE(solo[i].ok && conc[i].ok);
      CHECK_EQ_INT(solo[i].n_final, i < 3 ? maxt[i] : 7);
      CHECK_EQ_INT(conc[i].n_final, solo[i].n_final);
      CHECK_EQ_INT(solo[i].n_streamed, solo[i].n_final);
      CHECK_TRUE(memcmp(solo[i].streamed, solo[i].final, sizeof(int32_t) * solo[i].n_final) == 0);
      CHECK_TRUE(memcmp(conc[i].final, solo[i].final, sizeof(int32_t) * solo[i].n_final) == 0);
    }
    /* bad requests are refused at submit */
    int32_t big[80] = {0};
    infer_request_t r = {big, 60, 10, {0, 0, 1.0, 1}, NULL};
    CHECK_EQ_INT(infer_submit(e, &r, NULL, on_done, &conc[0], NULL, err, sizeof err), INFER_ERR_INVALID);
    CHECK_TRUE(strstr(err, "context") != NULL);
    r.n_prompt = 3;
    r.session = "../x";
    CHECK_EQ_INT(infer_submit(e, &r, NULL, on_done, &conc[0], NULL, err, sizeof err), INFER_ERR_INVALID);
    CHECK_TRUE(strstr(err, "invalid session ID") != NULL);
    r.session = NULL;
    r.sampling.top_p = 0;
    CHECK_EQ_INT(infer_submit(e, &r, NULL, on_done, &conc[0], NULL, err, sizeof err), INFER_ERR_INVALID);
    big[0] = 999;
    r.sampling.top_p = 1;
    CHECK_EQ_INT(infer_submit(e, &r, NULL, on_done, &conc[0], NULL, err, sizeof err), INFER_ERR_INVALID);
    CHECK_TRUE(strstr(err, "vocabulary") != NULL);
    /* cancel: one in flight (ends with the tokens so far), one queued behind the same session */
    rec_t c1, c2;
    memset(&c1, 0, sizeof c1);
    memset(&c2, 0, sizeof c2);
    int32_t cb[8];
    infer_request_t cr = make_req("Sess", cb, 30);
    cr.session = "api-sess";
    uint64_t id1, id2;
    CHECK_EQ_INT(infer_submit(e, &cr, on_token, on_done, &c1, &id1, err, sizeof err), 0);
    CHECK_EQ_INT(infer_submit(e, &cr, on_token, on_done, &c2, &id2, err, sizeof err), 0);
    CHECK_EQ_INT(infer_engine_step(e), 0);
    CHECK_EQ_INT(infer_engine_step(e), 0);
    CHECK_EQ_INT(infer_session_delete(e, "api-sess", err, sizeof err), 2); /* in use */
    CHECK_EQ_INT(infer_cancel(e, id2), 1); /* queued (its session is busy) */
    CHECK_EQ_INT(c2.done_calls, 1);
    CHECK_TRUE(!c2.ok && strstr(c2.error, "cancelled"));
    CHECK_EQ_INT(infer_cancel(e, id1), 1);
    run_until_idle(e);
    CHECK_EQ_INT(c1.done_calls, 1);
    CHECK_TRUE(c1.ok);
    CHECK_TRUE(strcmp(c1.finish, "cancelled") == 0);
    CHECK_EQ_INT(c1.n_final, 2);
    CHECK_EQ_INT(infer_cancel(e, id1), 0); /* already done: no-op */
    CHECK_EQ_INT(infer_session_delete(e, "api-sess", err, sizeof err), 0);
    CHECK_EQ_INT(infer_session_delete(e, "api-sess", err, sizeof err), 1);
    infer_stats_t st;
    infer_engine_stats(e, &st);
    CHECK_EQ_INT(st.requests_done, 9);
    CHECK_EQ_INT(st.requests_failed, 1);
    CHECK_EQ_INT(st.tokens_generated, 2 * (10 + 6 + 12 + 7) + 2);
    CHECK_EQ_INT(st.in_flight, 0);
    CHECK_EQ_INT(st.queued, 0);
    CHECK_EQ_INT(st.kv_cache_bytes, 0); /* stateless slots are released */
    CHECK_TRUE(infer_engine_idle(e));
    infer_engine_shutdown(e);
  }
  coll_comm_destroy(comm);
  int rc = test_finish("infer_engine_api");
  MPI_Finalize();
  return rc;
}
