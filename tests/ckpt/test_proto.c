/* test_proto.c -- the TrainState, StepReport and RunReport messages: every field survives
 * encode/decode exactly, and corrupt or hostile messages (garbage, truncation, oversize, wrong
 * version, RNG state of the wrong length, impossible model or layout, path-like file names,
 * negative or infinite times) are refused with a message naming the field. Bad wire bytes are
 * built by hand from the protobuf encoding rules. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata_proto.h"
#include "test_util.h"

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static void fill(strata_train_state_t *s) {
  strata_train_state_init(s);
  s->step = 123456789012ull;
  s->data_seed = 0xfedcba9876543210ull;
  s->data_step = 777;
  s->tokens_seen = 1ull << 40;
  for (int i = 0; i < 4; i++) s->rng_state[i] = 0x0123456789abcdefull * (uint64_t)(i + 1);
  s->last_loss = 3.14159265358979;
  s->model = (strata_model_cfg_t){50257, 1024, 12, 12, 768};
  s->train.batch = 64;
  s->train.seq_len = 256;
  s->train.microbatches = 4;
  s->train.lr = 6e-4;
  s->train.min_lr = 6e-5;
  s->train.weight_decay = 0.1;
  s->train.beta1 = 0.9;
  s->train.beta2 = 0.95;
  s->train.eps = 1e-8;
  s->train.grad_clip = 1.0;
  s->train.warmup_steps = 700;
  s->train.total_steps = 19073;
  s->train.zero = 1;
  snprintf(s->train.schedule, sizeof s->train.schedule, "1f1b");
  s->train.seed = 1337;
  snprintf(s->train.data_path, sizeof s->train.data_path, "data/fortunes.txt");
  s->layout.pp = 3;
  s->layout.dp = 2;
  s->layout.n_stage_layers = 3;
  s->layout.stage_layers[0] = 5;
  s->layout.stage_layers[1] = 4;
  s->layout.stage_layers[2] = 3;
  s->n_files = 3;
  snprintf(s->files[0].name, sizeof s->files[0].name, "config.json");
  s->files[0].size_bytes = 400;
  s->files[0].xxh64 = 0xffffffffffffffffull;
  snprintf(s->files[1].name, sizeof s->files[1].name, "model.safetensors");
  s->files[1].size_bytes = 1ull << 33;
  s->files[1].xxh64 = 1;
  snprintf(s->files[2].name, sizeof s->files[2].name, "a_b");
  s->files[2].size_bytes = 0;
  s->files[2].xxh64 = 0x8000000000000000ull;
}

static void expect_decode_fails(const uint8_t *buf, size_t len, const char *want) {
  strata_train_state_t *out = malloc(sizeof *out);
  char err[512] = "";
  CHECK_EQ_INT(strata_train_state_decode(buf, len, out, err, sizeof err), -1);
  if (!contains(err, want)) test_fail(__FILE__, __LINE__, "error \"%s\" lacks \"%s\"", err, want);
  free(out);
}

static void test_step_report(void) {
  strata_step_report_t r, q;
  strata_step_report_init(&r);
  r.step = 41;
  r.rank = 5;
  r.stage = 2;
  r.replica = 1;
  r.tp_rank = 3;
  r.tp_comm_s = 0.015625;
  r.has_loss = 1;
  r.loss = 2.718281828459045;
  r.tokens = 4096;
  r.compute_s = 0.125;
  r.comm_s = 0.0625;
  r.idle_s = 0.03125;
  r.simulated_s = 1e-3;
  r.bytes_sent = 1ull << 35;
  r.bytes_recv = 7;
  r.peak_mem_bytes = 123456789;
  uint8_t buf[STRATA_STEP_REPORT_MAX_BYTES];
  size_t len;
  char err[512];
  CHECK_EQ_INT(strata_step_report_encode(&r, buf, sizeof buf, &len, err, sizeof err), 0);
  CHECK_EQ_INT(strata_step_report_decode(buf, len, &q, err, sizeof err), 0);
  CHECK_TRUE(memcmp(&r, &q, sizeof r) == 0); /* every field, doubles bit for bit */
  CHECK_EQ_INT(strata_step_report_decode(buf, len - 1, &q, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "not a valid StepReport"));
  r.comm_s = -1;
  CHECK_EQ_INT(strata_step_report_encode(&r, buf, sizeof buf, &len, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "comm_s -1"));
  r.comm_s = INFINITY;
  CHECK_EQ_INT(strata_step_report_encode(&r, buf, sizeof buf, &len, err, sizeof err), -1);
  r.comm_s = 0.0625;
  r.tp_comm_s = NAN;
  CHECK_EQ_INT(strata_step_report_encode(&r, buf, sizeof buf, &len, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "tp_comm_s nan"));
  /* hand-built: version 1, rank -3 (int32 varint of a negative: 10 bytes) */
  const uint8_t neg[] = {0x08, 0x01, 0x18, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  CHECK_EQ_INT(strata_step_report_decode(neg, sizeof neg, &q, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "rank -3"));
  const uint8_t v2[] = {0x08, 0x02};
  CHECK_EQ_INT(strata_step_report_decode(v2, sizeof v2, &q, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "version 2"));
}

static void test_run_report(void) {
  static strata_run_report_t r, q;
  strata_run_report_init(&r);
  strata_train_state_t *s = malloc(sizeof *s);
  fill(s); /* reuse its model / train / layout: pp 3 (5, 4, 3 layers), dp 2 */
  r.model = s->model;
  r.train = s->train;
  r.layout = s->layout;
  r.world_size = 6;
  r.steps = 20;
  r.final_loss = 1.5;
  r.tokens_per_s = 2560.5;
  r.wall_s = 33.25;
  snprintf(r.transport, sizeof r.transport, "ofi");
  r.n_stages = 3;
  int begin = 0;
  for (int i = 0; i < 3; i++) {
    r.stages[i] = (strata_stage_summary_t){i, begin, begin + s->layout.stage_layers[i],
                                           1000u * (unsigned)(i + 1), 1.0 + i, 0.5, 0.25 * i,
                                           (uint64_t)(i + 1) << 30};
    begin += s->layout.stage_layers[i];
  }
  uint8_t *buf;
  size_t len;
  char err[512];
  CHECK_EQ_INT(strata_run_report_encode(&r, &buf, &len, err, sizeof err), 0);
  CHECK_EQ_INT(strata_run_report_decode(buf, len, &q, err, sizeof err), 0);
  CHECK_TRUE(q.world_size == 6 && q.steps == 20 && q.final_loss == 1.5 && q.tokens_per_s == 2560.5);
  CHECK_TRUE(q.wall_s == 33.25 && !strcmp(q.transport, "ofi"));
  CHECK_TRUE(memcmp(&q.model, &r.model, sizeof r.model) == 0);
  CHECK_TRUE(memcmp(&q.layout, &r.layout, sizeof r.layout) == 0);
  CHECK_TRUE(q.train.lr == r.train.lr && !strcmp(q.train.schedule, "1f1b"));
  CHECK_EQ_INT(q.n_stages, 3);
  CHECK_TRUE(memcmp(q.stages, r.stages, 3 * sizeof r.stages[0]) == 0);
  CHECK_EQ_INT(strata_run_report_decode(buf, len / 2, &q, err, sizeof err), -1);
  free(buf);
  r.world_size = 4; /* not tp x pp x dp */
  CHECK_EQ_INT(strata_run_report_encode(&r, &buf, &len, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "world_size 4 is not tp x pp x dp = 1 x 3 x 2"));
  /* tensor parallelism: 4 x 3 x 2 ranks; the tp survives the round trip */
  r.layout.tp = 4;
  r.world_size = 6;
  CHECK_EQ_INT(strata_run_report_encode(&r, &buf, &len, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "world_size 6 is not tp x pp x dp = 4 x 3 x 2"));
  r.world_size = 24;
  CHECK_EQ_INT(strata_run_report_encode(&r, &buf, &len, err, sizeof err), 0);
  CHECK_EQ_INT(strata_run_report_decode(buf, len, &q, err, sizeof err), 0);
  CHECK_TRUE(q.world_size == 24 && q.layout.tp == 4);
  free(buf);
  r.layout.tp = 5; /* does not divide the 12 heads */
  CHECK_EQ_INT(strata_run_report_encode(&r, &buf, &len, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "tp=5"));
  r.layout.tp = 1;
  r.world_size = 6;
  r.stages[1].layer_end = 99;
  CHECK_EQ_INT(strata_run_report_encode(&r, &buf, &len, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "stages[1]"));
  free(s);
}

int main(void) {
  static strata_train_state_t a, b;
  char err[512];
  fill(&a);
  uint8_t *buf;
  size_t len;
  CHECK_EQ_INT(strata_train_state_encode(&a, &buf, &len, err, sizeof err), 0);
  CHECK_EQ_INT(strata_train_state_decode(buf, len, &b, err, sizeof err), 0);
  /* every field, exactly (doubles bit for bit) */
  CHECK_EQ_INT(b.format_version, 1);
  CHECK_TRUE(b.step == a.step && b.data_seed == a.data_seed && b.data_step == a.data_step);
  CHECK_TRUE(b.tokens_seen == a.tokens_seen);
  CHECK_TRUE(memcmp(b.rng_state, a.rng_state, sizeof a.rng_state) == 0);
  CHECK_TRUE(memcmp(&b.last_loss, &a.last_loss, sizeof(double)) == 0);
  CHECK_TRUE(memcmp(&b.model, &a.model, sizeof a.model) == 0);
  CHECK_TRUE(memcmp(&b.train.lr, &a.train.lr, sizeof(double)) == 0);
  CHECK_TRUE(b.train.min_lr == a.train.min_lr && b.train.weight_decay == a.train.weight_decay);
  CHECK_TRUE(b.train.beta1 == a.train.beta1 && b.train.beta2 == a.train.beta2);
  CHECK_TRUE(b.train.eps == a.train.eps && b.train.grad_clip == a.train.grad_clip);
  CHECK_EQ_INT(b.train.batch, 64);
  CHECK_EQ_INT(b.train.seq_len, 256);
  CHECK_EQ_INT(b.train.microbatches, 4);
  CHECK_EQ_INT(b.train.warmup_steps, 700);
  CHECK_EQ_INT(b.train.total_steps, 19073);
  CHECK_EQ_INT(b.train.zero, 1);
  CHECK_TRUE(!strcmp(b.train.schedule, "1f1b"));
  CHECK_TRUE(b.train.seed == 1337);
  CHECK_TRUE(!strcmp(b.train.data_path, "data/fortunes.txt"));
  CHECK_EQ_INT(b.layout.pp, 3);
  CHECK_EQ_INT(b.layout.dp, 2);
  CHECK_EQ_INT(b.layout.n_stage_layers, 3);
  CHECK_EQ_INT(b.layout.stage_layers[0] * 100 + b.layout.stage_layers[1] * 10 + b.layout.stage_layers[2], 543);
  CHECK_EQ_INT(b.n_files, 3);
  for (int i = 0; i < 3; i++) {
    CHECK_TRUE(!strcmp(b.files[i].name, a.files[i].name));
    CHECK_TRUE(b.files[i].size_bytes == a.files[i].size_bytes);
    CHECK_TRUE(b.files[i].xxh64 == a.files[i].xxh64);
  }

  /* corrupt messages */
  uint8_t garbage[16];
  memset(garbage, 0xff, sizeof garbage);
  expect_decode_fails(garbage, sizeof garbage, "not a valid TrainState");
  /* cutting the last byte splits the trailing fixed64 (last_loss, field 11) */
  expect_decode_fails(buf, len - 1, "not a valid TrainState");
  /* a length prefix that runs past the end: field 7 (model), length 100, 2 bytes of body */
  const uint8_t badlen[] = {0x08, 0x01, 0x3a, 100, 0x08, 0x01};
  expect_decode_fails(badlen, sizeof badlen, "not a valid TrainState");
  expect_decode_fails(buf, STRATA_TRAIN_STATE_MAX_BYTES + 1, "over the");
  /* a file name turned into a path ("a_b" -> "a/b") */
  uint8_t *copy = malloc(len);
  memcpy(copy, buf, len);
  for (size_t i = 0; i + 3 <= len; i++)
    if (!memcmp(copy + i, "a_b", 3)) copy[i + 1] = '/';
  expect_decode_fails(copy, len, "files[2].name");
  free(copy);
  free(buf);
  /* hand-built messages: version 1, rng_state of 3 words (packed fixed64), valid model */
  const uint8_t model[] = {0x3a, 10, 0x08, 0x40, 0x10, 0x10, 0x18, 0x02, 0x20, 0x02, 0x28, 0x08};
  uint8_t msg[64];
  size_t n = 0;
  msg[n++] = 0x08; msg[n++] = 0x01;                  /* format_version = 1 */
  msg[n++] = 0x32; msg[n++] = 24;                    /* rng_state: 24 bytes = 3 words */
  memset(msg + n, 7, 24); n += 24;
  memcpy(msg + n, model, sizeof model); n += sizeof model;
  expect_decode_fails(msg, n, "rng_state has 3 words, expected 4");
  msg[1] = 0x02; /* format_version = 2 */
  expect_decode_fails(msg, n, "format_version 2");
  msg[1] = 0x01;
  /* 4 words, but dim 8 with 3 heads */
  n = 0;
  msg[n++] = 0x08; msg[n++] = 0x01;
  msg[n++] = 0x32; msg[n++] = 32;
  memset(msg + n, 7, 32); n += 32;
  memcpy(msg + n, model, sizeof model);
  msg[n + 9] = 0x03; /* heads (field 4, value byte) = 3 */
  n += sizeof model;
  expect_decode_fails(msg, n, "heads=3");
  msg[n - sizeof model + 9] = 0x02; /* back to 2 heads: now valid */
  CHECK_EQ_INT(strata_train_state_decode(msg, n, &b, err, sizeof err), 0);
  CHECK_EQ_INT(b.model.vocab, 64);
  CHECK_EQ_INT(b.model.dim, 8);
  /* missing model config */
  expect_decode_fails(msg, n - sizeof model, "missing model config");

  /* encode validates too: a layout that does not add up is never written */
  fill(&a);
  a.layout.stage_layers[2] = 4;
  CHECK_EQ_INT(strata_train_state_encode(&a, &buf, &len, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "stage_layers sum to 13, expected layers=12"));
  fill(&a);
  a.train.lr = NAN;
  CHECK_EQ_INT(strata_train_state_encode(&a, &buf, &len, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "finite"));
  test_step_report();
  test_run_report();
  return test_finish("ckpt_proto");
}
