/* sim_clock.c -- device resolution with cross-rank agreement, and the per-rank simulated clock
 * of a training run (see sim_clock.h). */
#include "sim_clock.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory_model.h"

#define SIM_CLOCK_DEV_WORDS ((sizeof(device_t) + 3) / 4)

int sim_clock_resolve_device(const char *spec, double device_mem, coll_comm_t *world,
                             const layout_t *lay, int T, device_t *out, char *err, size_t errlen) {
  const int rank = coll_rank(world), size = coll_size(world);
  memset(out, 0, sizeof *out);
  if (!spec || !strcmp(spec, "cpu")) {
    int32_t words[SIM_CLOCK_DEV_WORDS + 1];
    memset(words, 0, sizeof words);
    int32_t ok = 1;
    device_t d;
    memset(&d, 0, sizeof d);
    if (rank == 0 && device_calibrate_cpu(&d)) ok = 0;
    const char *sq = getenv("STRATA_SIM_SQUARE_PEAK");
    if (rank == 0 && ok && lay && !(sq && !strcmp(sq, "1"))) {
      int shapes[3 * DEVICE_GPT2_SHAPES];
      double weight[DEVICE_GPT2_SHAPES];
      const layout_model_t *m = &lay->model;
      int n = device_gpt2_shapes(m->vocab, m->layers, m->heads, m->dim, lay->micro_batch, T, shapes,
                                 weight);
      if (device_calibrate_cpu_shapes(&d, shapes, weight, n)) ok = 0;
    }
    if (coll_allreduce(&ok, &ok, 1, COLL_I32, COLL_MIN, world) != COLL_OK || !ok) {
      snprintf(err, errlen, "calibrating the cpu device profile failed (use --device trn2 or a "
               "JSON profile instead)");
      return -1;
    }
    if (size >= 2 && device_calibrate_link(&d, device_pingpong_coll, world)) {
      snprintf(err, errlen, "calibrating the link between ranks failed: %s",
               coll_last_error(world));
      return -1;
    }
    memcpy(words, &d, sizeof d);
    if (coll_broadcast(words, SIM_CLOCK_DEV_WORDS, COLL_I32, 0, world) != COLL_OK) {
      snprintf(err, errlen, "broadcasting the calibrated device failed: %s", coll_last_error(world));
      return -1;
    }
    memcpy(out, words, sizeof *out);
  } else if (device_resolve(spec, out, err, errlen)) {
    return -1;
  }
  if (device_mem < 0) {
    snprintf(err, errlen, "--device-mem must be positive (got %g)", device_mem);
    return -1;
  }
  if (device_mem > 0) out->hbm_bytes = device_mem;
  return 0;
}

int sim_clock_init(sim_clock_t *sc, const layout_t *lay, const device_t *dev, sched_kind_t kind,
                   int zero, double bucket_bytes, int rank, char *err, size_t errlen) {
  memset(sc, 0, sizeof *sc);
  sc->dev = *dev;
  sc->rank = rank;
  sc->opt = sim_options_default();
  sc->opt.kind = kind;
  sc->opt.zero = zero;
  sc->opt.overlap = 1;
  sc->opt.bucket_bytes = bucket_bytes;
  sc->opt.dtype = DEV_FP32;
  sc->opt.record_events = 1;
  return sim_simulate(lay, dev, &sc->opt, dev->hbm_bytes, &sc->res, err, errlen);
}

double sim_clock_step(sim_clock_t *sc) {
  sc->clock_s += sc->res.step_s;
  sc->steps++;
  return sc->res.step_s;
}

void sim_clock_free(sim_clock_t *sc) {
  if (sc) sim_result_free(&sc->res);
}
