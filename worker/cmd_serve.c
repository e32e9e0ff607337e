/* strata serve -- the HTTP inference server (serve.c) on the coordinator, fed by the inference
 * engine across the ranks, or by the deterministic fake backend (`--backend fake`, one rank) for
 * tests and load generation. Stops cleanly on SIGINT/SIGTERM: in-flight requests finish (or are
 * cancelled after --shutdown-grace-s), the daemon stops, exit 0. */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "http_server.h"
#include "log.h"
#include "serve.h"

/* The engine adapter sets this (see serve.h). */
const serve_engine_hooks_t *serve_engine_hooks = NULL;

static serve_t *g_server; /* for the signal handler */

static void on_signal(int sig) {
  (void)sig;
  if (g_server) serve_stop(g_server);
}

static const char *usage_text =
    "Serve a checkpoint over HTTP (rank 0; other ranks hold pipeline stages):\n"
    "  mpirun -np P strata serve --checkpoint DIR [--listen 127.0.0.1:8080]\n"
    "Endpoints: POST /v1/completions (OpenAI-compatible: prompt, max_tokens, temperature, top_p,\n"
    "top_k, seed, stream, session; unknown fields are ignored), GET /health, GET /metrics\n"
    "(Prometheus), GET /v1/sessions, DELETE /v1/sessions/ID. Listens on loopback unless --listen\n"
    "names another address. PORT 0 picks a free port; the chosen one is printed as\n"
    "'listening on http://HOST:PORT'. SIGINT/SIGTERM drain in-flight requests and exit 0.\n"
    "--backend fake serves a deterministic fake model (one rank; for tests and load generation).";

int cmd_serve(int argc, char **argv) {
  serve_opts_t o;
  serve_opts_default(&o);
  fake_backend_opts_t fo;
  fake_backend_opts_default(&fo);
  const char *ckpt = NULL, *backend = "engine";
  arg_spec_t specs[] = {
      {"--checkpoint", NULL, ARG_STRING, &ckpt, "DIR", "checkpoint directory to serve"},
      {"--listen", NULL, ARG_STRING, &o.listen, "HOST:PORT", "address (default 127.0.0.1:8080; PORT 0 = any free port)"},
      {"--backend", NULL, ARG_STRING, &backend, "NAME", "engine (default) or fake (deterministic test model)"},
      {"--max-request-bytes", NULL, ARG_BYTES, &o.max_request_bytes, "N", "request body limit, larger -> 413 (default 64K)"},
      {"--max-tokens-limit", NULL, ARG_INT, &o.max_tokens_limit, "N", "largest max_tokens accepted (default 1024)"},
      {"--default-max-tokens", NULL, ARG_INT, &o.default_max_tokens, "N", "max_tokens when not given (default 16)"},
      {"--max-queue", NULL, ARG_INT, &o.max_queue, "N", "requests queued or running; more -> 429 (default 64)"},
      {"--max-connections", NULL, ARG_INT, &o.max_connections, "N", "simultaneous HTTP connections (default 128)"},
      {"--timeout-s", NULL, ARG_INT, &o.timeout_s, "S", "idle connection timeout (default 30)"},
      {"--shutdown-grace-s", NULL, ARG_DOUBLE, &o.shutdown_grace_s, "S", "on SIGTERM, time in-flight requests get (default 10)"},
      {"--fake-batch", NULL, ARG_INT, &fo.max_batch, "N", "fake backend: sequences per step (default 8)"},
      {"--fake-max-pending", NULL, ARG_INT, &fo.max_pending, "N", "fake backend: pending sequences; more -> 429 (default 256)"},
      {"--fake-step-s", NULL, ARG_DOUBLE, &fo.step_delay_s, "S", "fake backend: seconds per decode step (default 0.002)"},
      {"--fake-prefill-s", NULL, ARG_DOUBLE, &fo.prefill_delay_s, "S", "fake backend: extra seconds per prefill (default 0)"},
  };
  int rc = args_parse("serve", usage_text, argc, argv, specs, (int)(sizeof specs / sizeof specs[0]), NULL, NULL);
  if (rc) return rc > 0 ? 0 : 2;
  int world = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char err[512] = "";
  serve_backend_t be;
  memset(&be, 0, sizeof be);
  if (!strcmp(backend, "fake")) {
    if (world != 1) {
      strata_error("serve: --backend fake runs on one rank; launch it without mpirun or with -np 1");
      return 2;
    }
    if (fake_backend_create(&fo, &be, err, sizeof err)) {
      strata_error("serve: %s", err);
      return 2;
    }
  } else if (!strcmp(backend, "engine")) {
    if (!ckpt) {
      strata_error("serve: --checkpoint DIR is required (a directory written by strata train), or --backend fake");
      return 2;
    }
    if (!serve_engine_hooks) {
      strata_error("serve: serving a checkpoint needs the inference engine, which this build does not include "
                   "yet; use --backend fake to run the HTTP server against the deterministic fake model");
      return 1;
    }
    if (rank != 0) {
      if (serve_engine_hooks->worker(ckpt, err, sizeof err)) {
        strata_error("serve: %s", err);
        return 1;
      }
      return 0;
    }
    if (serve_engine_hooks->open(ckpt, &be, err, sizeof err)) {
      strata_error("serve: cannot load '%s': %s", ckpt, err);
      return 1;
    }
  } else {
    strata_error("serve: --backend must be engine or fake, got '%s'", backend);
    return 2;
  }

  serve_t *s = NULL;
  if (serve_create(&o, &be, &s, err, sizeof err)) {
    strata_error("serve: %s", err);
    if (be.destroy) be.destroy(be.impl);
    return 1;
  }
  g_server = s;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  char host[64];
  int port, loop;
  http_parse_listen(o.listen, host, sizeof host, &port, &loop, err, sizeof err);
  printf("[strata r%d] listening on http://%s:%d (backend %s)\n", rank, host, serve_port(s), be.name);
  fflush(stdout);
  rc = serve_run(s, err, sizeof err);
  g_server = NULL;
  serve_destroy(s);
  if (rc) {
    strata_error("serve: stopped after a backend failure: %s", err);
    return 1;
  }
  strata_info("serve: stopped");
  return 0;
}
