/* strata serve -- the HTTP inference server (serve.c) on the coordinator, fed by the inference
 * engine across the ranks, or by the deterministic fake backend (`--backend fake`, one rank) for
 * tests and load generation. Stops cleanly on SIGINT/SIGTERM: in-flight requests finish (or are
 * cancelled after --shutdown-grace-s), the daemon stops, every rank exits 0 (under mpirun's kill
 * sequence without MPI_Finalize: see leave_together). */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "checkpoint.h"
#include "commands.h"
#include "http_server.h"
#include "infer.h"
#include "log.h"
#include "openai_chat.h"
#include "serve.h"
#include "session.h"
#include "strata/strnum.h"

/* The engine adapter (serve_engine.c; see serve.h). */
const serve_engine_hooks_t *serve_engine_hooks = NULL;

static serve_t *g_server; /* for the signal handler (rank 0) */

/* Shutdown under Open MPI's launcher. mpirun (and orted) answers SIGTERM or SIGINT by killing
 * the job: SIGCONT to every rank's process group, odls_base_sigkill_timeout seconds (default 1)
 * later SIGTERM, and another timeout later SIGKILL -- or at once, as soon as any rank process
 * exits (measured with Open MPI 4.1.4; mpirun itself then exits 1). Its event loop is blocked
 * meanwhile, so MPI_Finalize, whose PMIx fence needs it, cannot complete. So after a stop
 * signalled by the launcher every rank finishes its part (drain, session files, the engine's
 * collective shutdown), the ranks agree in one allreduce -- also the proof that everyone is
 * done -- and all leave together with _exit(0) instead of finalizing. */
static pid_t g_launcher_pid = -1;             /* the local mpirun/orted, or -1: not launched by it */
static int g_launcher_grace_ms = -1;          /* the drain's bound when the launcher signals, ms */
static volatile sig_atomic_t g_launcher_stop; /* a SIGTERM/SIGINT came from the launcher */

/* Finds the launcher: Open MPI sets OMPI_MCA_orte_jobfam_session_dir=.../pid.<daemon pid> for
 * the processes it starts (the daemon is also the parent, unless a wrapper sits between). The
 * kill delay is odls_base_sigkill_timeout (set with `mpirun --mca odls_base_sigkill_timeout S`
 * or OMPI_MCA_odls_base_sigkill_timeout, both of which reach the ranks' environment). */
static void launcher_detect(void) {
  if (!getenv("OMPI_MCA_orte_hnp_uri")) return; /* srun, a singleton: no such deadline */
  const char *dir = getenv("OMPI_MCA_orte_jobfam_session_dir");
  const char *p = dir ? strstr(dir, "/pid.") : NULL;
  g_launcher_pid = p ? (pid_t)atol(p + 5) : getppid();
  double delay_s = 1.0;
  const char *v = getenv("OMPI_MCA_odls_base_sigkill_timeout"); /* Open MPI's: it validates it */
  if (v && *v && (strnum_parse_double(v, &delay_s) != STRNUM_OK || delay_s < 0)) delay_s = 1.0;
  /* half the delay, less 0.25 s, for the requests in flight; the rest cancels them, writes
   * their sessions and releases the other ranks before the SIGKILL */
  double cap_s = 0.5 * delay_s - 0.25;
  g_launcher_grace_ms = cap_s > 0 ? (int)(cap_s * 1000.0) : 0;
}

static int from_launcher(const siginfo_t *si) {
  return g_launcher_pid > 0 && si && si->si_code == SI_USER && si->si_pid > 0 &&
         (si->si_pid == g_launcher_pid || si->si_pid == getppid()); /* getppid: async-signal-safe */
}

/* Rank 0: stop serving. */
static void on_signal(int sig, siginfo_t *si, void *uctx) {
  (void)uctx;
  int launcher = from_launcher(si);
  if (launcher) g_launcher_stop = 1;
  if (g_server) serve_stop_signal(g_server, sig, launcher ? g_launcher_grace_ms : -1);
}

/* Ranks > 0: keep going (rank 0 drains, then releases them); only note who asked. */
static void on_signal_worker(int sig, siginfo_t *si, void *uctx) {
  (void)sig, (void)uctx;
  if (from_launcher(si)) g_launcher_stop = 1;
}

static void catch_stop_signals(void (*fn)(int, siginfo_t *, void *)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = fn;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN); /* a client or mpirun that closed its end must not kill the rank */
}

/* Every rank, after a clean shutdown (collective): returns normally (main finalizes MPI), or,
 * when the launcher is killing the job, leaves at once with exit code 0 (see above). */
static void leave_together(int rank) {
  int killing = g_launcher_stop;
  MPI_Allreduce(MPI_IN_PLACE, &killing, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (!killing) return;
  if (rank == 0) strata_info("serve: stopped; every rank exits 0 now (mpirun is ending the job)");
  fflush(stdout);
  fflush(stderr);
  _exit(0);
}

static const char *usage_text =
    "Serve a checkpoint over HTTP (rank 0; the ranks hold P pipeline stages of T tensor-parallel ranks):\n"
    "  mpirun -np T*P strata serve --checkpoint DIR [--tp T] [--listen 127.0.0.1:8080]\n"
    "--tp T splits every stage's matrices by attention heads over T ranks (T divides the heads).\n"
    "A GPT-2 or a Llama checkpoint (strata train --arch llama) serves on any such layout; for Llama\n"
    "T also divides the kv heads and the SwiGLU width (ffn).\n"
    "Endpoints (OpenAI's API): POST /v1/completions, POST /v1/chat/completions (messages through\n"
    "--chat-template FILE, default \"{role}: {content}\\n\" ... \"assistant:\"), GET /v1/models[/ID]; with\n"
    "n, stop, logprobs, echo, penalties, seed, stream_options; parameters it does not implement get\n"
    "400 naming them. Also GET /health, GET /metrics (Prometheus), GET /v1/sessions, DELETE /v1/sessions/ID. Listens on loopback unless --listen\n"
    "names another address. PORT 0 picks a free port; the chosen one is printed as\n"
    "'listening on http://HOST:PORT'. SIGINT/SIGTERM drain in-flight requests and exit 0; signalled\n"
    "through Open MPI's mpirun (which SIGKILLs the ranks odls_base_sigkill_timeout s after its SIGTERM,\n"
    "default 1, and exits 1 itself) the drain is cut to half that less 0.25 s.\n"
    "Byte-level models (vocab 256): the prompt's UTF-8 bytes are the tokens; each generated byte is\n"
    "returned as the code point of that value (Latin-1), as `strata infer --json` prints it.\n"
    "BPE models (the checkpoint's tokenizer files, or GPT-2's shipped vocabulary for 50257 tokens):\n"
    "prompts are encoded, replies decoded; a stream sends whole UTF-8 characters only, usage counts\n"
    "the model's tokens, <|endoftext|> ends a reply (finish_reason stop).\n"
    "Sessions (\"session\": \"ID\") persist in --session-dir (default <checkpoint>/../sessions) and\n"
    "survive a restart with the same checkpoint, directory, --tp and P. A turn is answered once every stage\n"
    "has written it and it is committed; a save that fails on any stage (full or read-only disk) gets\n"
    "507 and the session keeps its previous turn; a session whose files are missing, corrupt or\n"
    "disagree gets 422 naming the stage (409: saved by another --tp, P or model). --session-disk-mb bounds\n"
    "the sessions on disk, deleting the least recently used. GET /health reports the session store.\n"
    "Idle workers wait without a deadline; rank 0's heartbeat (STRATA_INFER_HEARTBEAT_S, 1 s) ends the\n"
    "job within STRATA_INFER_LIVENESS_S (8 s) of any rank's death (every TP rank too), naming it.\n"
    "Connections: past --max-connections or --max-connections-per-client a new connection closes the\n"
    "oldest one still sending its request; when every one is being served it gets 503. Requests with\n"
    "ambiguous framing (two Content-Lengths, Content-Length with Transfer-Encoding, a NUL in the path,\n"
    "more than 64 query parameters) get 400 and the connection is closed. HEAD works on GET endpoints.\n"
    "--precision bf16 (default fp32; bf16-sr is taken as bf16) runs every matrix product (GPT-2 or\n"
    "Llama) on bf16-rounded inputs with fp32 accumulation and keeps every KV cache in\n"
    "bf16: half the bytes, which the KV gauge of /metrics and --session-mem-mb count. The path taken is\n"
    "logged at start; a session saved in one precision resumes only in that precision (409 otherwise).\n"
    "--backend fake serves a deterministic fake model (one rank; for tests and load generation).";

/* Rank 0 checks what every rank is about to load, and all ranks take its verdict: 0, or 2 after
 * rank 0 printed why (a checkpoint that does not verify, a layout of the world and --tp that does
 * not fit the model, a session directory that cannot be one). Bad input, found before the engine
 * starts, so no rank fails later with exit code 1. */
static int check_engine_input(const char *ckpt, const char *sdir, int world, int tp, int rank) {
  int rc = 0;
  if (rank == 0) {
    char err[1024];
    ckpt_model_config_t mc; /* GPT-2 or Llama */
    strata_train_state_t *st = malloc(sizeof *st);
    if (!st) {
      strata_error("serve: out of memory");
      rc = 1;
    } else if (ckpt_read_model_config(ckpt, &mc, err, sizeof err) || ckpt_read_state(ckpt, st, 1, err, sizeof err)) {
      strata_error("serve: --checkpoint: %s", err);
      rc = 2;
    } else if (infer_check_layout(&mc, world, tp, err, sizeof err)) {
      strata_error("serve: %s", err);
      rc = 2;
    } else if (sdir && session_make_dir(sdir, err, sizeof err)) {
      strata_error("serve: --session-dir: %s", err);
      rc = 2;
    }
    free(st);
  }
  MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return rc;
}

/* The engine on every rank (ranks > 0: a pipeline stage until rank 0 releases them; rank 0:
 * the backend in *be). Returns 0 with *served_as_worker = 1 when this rank's part is over,
 * 0 on rank 0 with the backend open, or the exit code after saying why. */
static int engine_backend(const char *ckpt, const char *session_dir, int no_sessions,
                          serve_engine_opts_t *eo, int world, int rank, serve_backend_t *be,
                          int *served_as_worker) {
  char err[512] = "";
  *served_as_worker = 0;
  if (!serve_engine_hooks) {
    strata_error("serve: serving a checkpoint needs the inference engine, which this build does not include "
                 "yet; use --backend fake to run the HTTP server against the deterministic fake model");
    return 1;
  }
  static char sdir[4096]; /* the engine keeps the pointer while it runs */
  if (session_dir) snprintf(sdir, sizeof sdir, "%s", session_dir);
  else session_default_dir(sdir, sizeof sdir, ckpt);
  eo->session_dir = no_sessions ? NULL : sdir;
  int rc = check_engine_input(ckpt, eo->session_dir, world, eo->tp, rank);
  if (rc) return rc;
  if (rank != 0) {
    catch_stop_signals(on_signal_worker);
    if (serve_engine_hooks->worker(ckpt, eo, err, sizeof err)) {
      strata_error("serve: %s", err);
      return 1;
    }
    leave_together(rank);
    *served_as_worker = 1;
    return 0;
  }
  if (serve_engine_hooks->open(ckpt, eo, be, err, sizeof err)) {
    strata_error("serve: cannot load '%s': %s", ckpt, err);
    return 1;
  }
  return 0;
}

/* Rank 0: the HTTP server on backend be until a stop signal or a backend failure; every rank
 * leaves together after a clean stop. 0 or 1. */
static int serve_until_stopped(const serve_opts_t *o, serve_backend_t *be, const char *host,
                               int rank) {
  char err[512] = "";
  serve_t *s = NULL;
  if (serve_create(o, be, &s, err, sizeof err)) {
    strata_error("serve: %s", err);
    be->ops->destroy(be->impl);
    return 1;
  }
  g_server = s;
  catch_stop_signals(on_signal);
  printf("[strata r%d] listening on http://%s:%d (backend %s)\n", rank, host, serve_port(s), be->ops->name);
  fflush(stdout);
  int rc = serve_run(s, err, sizeof err);
  g_server = NULL;
  serve_destroy(s);
  if (rc) {
    strata_error("serve: stopped after a backend failure: %s", err);
    return 1;
  }
  leave_together(rank);
  strata_info("serve: stopped");
  return 0;
}

/* A flag table, then the three phases: bad input refused before MPI starts, the backend, the
 * server. */
int cmd_serve(int argc, char **argv) {
  serve_opts_t o;
  serve_opts_default(&o);
  o.version = STRATA_VERSION;
  fake_backend_opts_t fo;
  fake_backend_opts_default(&fo);
  const char *ckpt = NULL, *backend = "engine", *session_dir = NULL, *precision = "fp32";
  /* session_mem_mb < 0, max_batch 0: the engine's defaults (STRATA_INFER_*) */
  serve_engine_opts_t eo = {NULL, -1.0, 0, 1, infer_opts_default().session_disk_mb, 1};
  int no_sessions = 0, g_mem = 0, g_batch = 0;
  double session_mem_mb = 0;
  int max_batch = 0;
  if (!serve_engine_hooks) serve_engine_hooks = serve_engine_hooks_impl;
  arg_spec_t specs[] = {
      {"--checkpoint", NULL, ARG_STRING, &ckpt, "DIR", "checkpoint directory to serve"},
      {"--tp", NULL, ARG_INT, &eo.tp, "T", "tensor-parallel ranks per pipeline stage (default 1); ranks = T x P",
       .min = 1, .max = 1 << 16},
      {"--precision", NULL, ARG_STRING, &precision, "fp32|bf16",
       "fp32 (default), or bf16: bf16 matrix products (GPT-2) and a bf16 KV cache (see above)"},
      {"--listen", NULL, ARG_STRING, &o.listen, "HOST:PORT", "address (default 127.0.0.1:8080; PORT 0 = any free port)"},
      {"--backend", NULL, ARG_STRING, &backend, "NAME", "engine (default) or fake (deterministic test model)"},
      {"--chat-template", NULL, ARG_STRING, &o.chat_template, "FILE",
       "JSON chat template for /v1/chat/completions (README: Serving; default: role: content lines)"},
      {"--max-request-bytes", NULL, ARG_BYTES, &o.max_request_bytes, "N", "request body limit, larger -> 413 (default 64K)",
       .env = "STRATA_SERVE_MAX_REQUEST_BYTES"},
      {"--max-tokens-limit", NULL, ARG_INT, &o.max_tokens_limit, "N", "largest max_tokens accepted (default 1024)",
       .env = "STRATA_SERVE_MAX_TOKENS_LIMIT"},
      {"--default-max-tokens", NULL, ARG_INT, &o.default_max_tokens, "N", "max_tokens when not given (default 16)",
       .env = "STRATA_SERVE_DEFAULT_MAX_TOKENS"},
      {"--max-queue", NULL, ARG_INT, &o.max_queue, "N", "requests queued or running; more -> 429 (default 64)",
       .env = "STRATA_SERVE_MAX_QUEUE"},
      {"--max-connections", NULL, ARG_INT, &o.max_connections, "N", "simultaneous HTTP connections (default 128)",
       .env = "STRATA_SERVE_MAX_CONNECTIONS"},
      {"--max-connections-per-client", NULL, ARG_INT, &o.max_connections_per_client, "N",
       "connections from one IP address (default 64; 0 = only --max-connections)",
       .env = "STRATA_SERVE_MAX_CONNECTIONS_PER_CLIENT"},
      {"--header-timeout-s", NULL, ARG_DOUBLE, &o.header_timeout_s, "S",
       "a request must arrive within S of connect or of the last response (default 10; 0 = off)",
       .env = "STRATA_SERVE_HEADER_TIMEOUT_S"},
      {"--timeout-s", NULL, ARG_INT, &o.timeout_s, "S", "idle connection timeout, 0 = none (default 30)",
       .env = "STRATA_SERVE_TIMEOUT_S"},
      {"--shutdown-grace-s", NULL, ARG_DOUBLE, &o.shutdown_grace_s, "S", "on SIGTERM, time in-flight requests get (default 10)",
       .env = "STRATA_SERVE_SHUTDOWN_GRACE_S"},
      {"--session-dir", NULL, ARG_STRING, &session_dir, "DIR", "session files (default <checkpoint>/../sessions)"},
      {"--no-sessions", NULL, ARG_FLAG, &no_sessions, NULL, "serve stateless requests only (\"session\" -> 400)"},
      {"--session-mem-mb", NULL, ARG_DOUBLE, &session_mem_mb, "MB", "KV cache MiB per stage for idle sessions (default 1024)",
       .env = "STRATA_INFER_SESSION_MEM_MB", .given = &g_mem},
      {"--session-disk-mb", NULL, ARG_DOUBLE, &eo.session_disk_mb, "MB",
       "disk quota of the saved sessions, all stages; least recently used are deleted (default 0 = none)",
       .env = "STRATA_INFER_SESSION_DISK_MB"},
      {"--max-batch", NULL, ARG_INT, &max_batch, "N", "sequences in flight in the engine (default 16)",
       .env = "STRATA_INFER_MAX_BATCH", .given = &g_batch},
      {"--threads", NULL, ARG_INT, &eo.threads, "N", "GEMM threads per rank (OpenBLAS and oneDNN) (default 1)", .min = 1, .max = 1024},
      {"--fake-batch", NULL, ARG_INT, &fo.max_batch, "N", "fake backend: sequences per step (default 8)",
       .min = 1, .max = 1 << 20},
      {"--fake-max-pending", NULL, ARG_INT, &fo.max_pending, "N", "fake backend: pending sequences; more -> 429 (default 256)",
       .min = 1, .max = 1 << 20},
      {"--fake-step-s", NULL, ARG_DOUBLE, &fo.step_delay_s, "S", "fake backend: seconds per decode step (default 0.002)",
       .min = 0, .max = 60},
      {"--fake-prefill-s", NULL, ARG_DOUBLE, &fo.prefill_delay_s, "S", "fake backend: extra seconds per prefill (default 0)",
       .min = 0, .max = 60},
  };
  int rc = args_parse("serve", usage_text, argc, argv, specs, (int)(sizeof specs / sizeof specs[0]), NULL, NULL);
  if (rc) return rc > 0 ? 0 : 2;
  if (g_mem) eo.session_mem_mb = session_mem_mb;
  if (g_batch) eo.max_batch = max_batch;
  if (infer_parse_precision(precision, &eo.bf16)) {
    strata_error("serve: --precision must be fp32 or bf16 (bf16-sr serves as bf16), got '%s'", precision);
    return 2;
  }
  char err[512] = "";
  /* Bad input is refused here, before MPI starts (every rank alike). A port out of range or a
   * host that is not an address is bad input (2); an address in use or not on this host is found
   * when the server binds, after start-up (1). */
  char host[64];
  int port, loop;
  if (http_parse_listen(o.listen, host, sizeof host, &port, &loop, err, sizeof err)) {
    strata_error("serve: %s", err);
    return 2;
  }
  if (o.chat_template) { /* a bad template is bad input: refused before serving */
    chat_template_t t;
    if (chat_template_load(o.chat_template, &t, err, sizeof err)) {
      strata_error("serve: %s", err);
      return 2;
    }
    chat_template_free(&t);
  }
  int fake = !strcmp(backend, "fake");
  if (!fake && strcmp(backend, "engine")) {
    strata_error("serve: --backend must be engine or fake, got '%s'", backend);
    return 2;
  }
  if (!fake && !ckpt) {
    strata_error("serve: --checkpoint DIR is required (a directory written by strata train), or --backend fake");
    return 2;
  }
  if (cli_mpi_start()) return 1;
  int world = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  launcher_detect();
  serve_backend_t be;
  memset(&be, 0, sizeof be);
  if (fake) {
    if (world != 1) {
      strata_error("serve: --backend fake runs on one rank; launch it without mpirun or with -np 1");
      return 2;
    }
    if (fake_backend_create(&fo, &be, err, sizeof err)) {
      strata_error("serve: %s", err);
      return 2;
    }
  } else {
    int served_as_worker = 0;
    rc = engine_backend(ckpt, session_dir, no_sessions, &eo, world, rank, &be, &served_as_worker);
    if (rc || served_as_worker) return rc;
  }
  return serve_until_stopped(&o, &be, host, rank);
}
