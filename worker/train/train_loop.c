/* train_loop.c -- the bookkeeping both training loops share (see train_loop.h). */
#include "train_loop.h"

#include <stdio.h>

#include "runlog.h"

int train_every(int64_t step, int every) { return every > 0 && step % every == 0; }

train_due_t train_step_due(const train_config_t *c, int64_t step) {
  train_due_t d;
  d.is_last = step == c->steps;
  d.eval = train_every(step, c->eval_every) || (c->eval_every == 0 && d.is_last);
  d.ckpt = train_every(step, c->ckpt_every) || d.is_last;
  return d;
}

int train_progress_due(int64_t step, int64_t start_step, int64_t total_steps, int log_every) {
  return train_every(step, log_every) || step == total_steps || step == start_step + 1;
}

void train_format_eta(char *buf, size_t len, double elapsed_s, int64_t steps_done,
                      int64_t steps_left) {
  double s = elapsed_s / (double)steps_done * (double)steps_left;
  if (!(s >= 0) || s > 1e7) s = 0;
  int sec = (int)(s + 0.5);
  if (sec >= 3600) snprintf(buf, len, "%dh%02dm", sec / 3600, (sec / 60) % 60);
  else if (sec >= 60) snprintf(buf, len, "%dm%02ds", sec / 60, sec % 60);
  else snprintf(buf, len, "%ds", sec);
}

json_object *train_step_record(int64_t step, double loss, double lr, double grad_norm,
                               double tokens_per_s, double step_s) {
  json_object *rec = json_object_new_object();
  runlog_json_add(rec, "step", json_object_new_int64(step));
  runlog_json_add(rec, "loss", runlog_json_num(loss, "%.9g"));
  runlog_json_add(rec, "lr", runlog_json_num(lr, "%.9g"));
  runlog_json_add(rec, "grad_norm", runlog_json_num(grad_norm, "%.9g"));
  runlog_json_add(rec, "tokens_per_s", runlog_json_num(tokens_per_s, "%.6g"));
  runlog_json_add(rec, "step_s", runlog_json_num(step_s, "%.6g"));
  return rec;
}

strata_model_cfg_t train_model_cfg(const gpt2_config_t *m) {
  return (strata_model_cfg_t){m->vocab, m->ctx, m->layers, m->heads, m->dim};
}

json_object *train_model_json(const strata_model_cfg_t *m, int64_t params) {
  json_object *model = json_object_new_object();
  runlog_json_add(model, "vocab", json_object_new_int(m->vocab));
  runlog_json_add(model, "ctx", json_object_new_int(m->ctx));
  runlog_json_add(model, "layers", json_object_new_int(m->layers));
  runlog_json_add(model, "heads", json_object_new_int(m->heads));
  runlog_json_add(model, "dim", json_object_new_int(m->dim));
  runlog_json_add(model, "params", json_object_new_int64(params));
  return model;
}

json_object *train_config_json(const strata_train_cfg_t *t, const char *micro_key, int64_t micro) {
  json_object *cfg = json_object_new_object();
  runlog_json_add(cfg, "batch", json_object_new_int(t->batch));
  runlog_json_add(cfg, "seq_len", json_object_new_int(t->seq_len));
  runlog_json_add(cfg, micro_key, json_object_new_int64(micro));
  runlog_json_add(cfg, "steps", json_object_new_int64(t->total_steps));
  runlog_json_add(cfg, "seed", json_object_new_uint64(t->seed));
  runlog_json_add(cfg, "lr", runlog_json_num(t->lr, "%.9g"));
  runlog_json_add(cfg, "warmup_steps", json_object_new_int64(t->warmup_steps));
  runlog_json_add(cfg, "weight_decay", runlog_json_num(t->weight_decay, "%.9g"));
  runlog_json_add(cfg, "grad_clip", runlog_json_num(t->grad_clip, "%.9g"));
  runlog_json_add(cfg, "data", runlog_json_str(t->data_path));
  return cfg;
}

void train_state_fill(strata_train_state_t *s, const train_config_t *c, const char *data_path,
                      uint64_t step, uint64_t tokens, double last_loss, int pp, int dp,
                      const int *stage_layers) {
  strata_train_state_init(s);
  s->step = step;
  s->data_seed = c->seed;
  s->data_step = step;
  s->tokens_seen = tokens;
  /* The run has no stream of its own yet beyond the data order; record the seed's stream so
   * a resumed run can continue any future sampling from the same place. */
  s->rng_state[0] = c->seed;
  s->last_loss = last_loss;
  s->model = train_model_cfg(&c->model);
  train_config_to_state(&s->train, c, data_path);
  s->layout.tp = c->tp > 0 ? c->tp : 1;
  s->layout.pp = pp;
  s->layout.dp = dp;
  s->layout.n_stage_layers = pp;
  for (int i = 0; i < pp; i++) s->layout.stage_layers[i] = stage_layers[i];
}

int train_val_log_open(runlog_lines_t *log, const char *out_dir, int append, char *err, size_t errlen) {
  char path[RUNLOG_PATH_MAX];
  snprintf(path, sizeof path, "%s/val.jsonl", out_dir);
  return runlog_lines_open(log, path, append, err, errlen);
}

void train_val_log_append(runlog_lines_t *log, int64_t step, double val_loss, int64_t val_tokens) {
  json_object *o = json_object_new_object();
  if (o) {
    runlog_json_add(o, "step", json_object_new_int64(step));
    runlog_json_add(o, "val_loss", runlog_json_num(val_loss, "%.9g"));
    runlog_json_add(o, "val_tokens", json_object_new_int64(val_tokens));
  }
  runlog_steps_append(log, step, o);
}
