/* test_checkpoint.c -- checkpoint directories as a specification: a save / load round trip
 * restores every parameter and AdamW moment bit for bit along with the training state (bf16
 * weights stored as BF16 tensors too); a
 * checkpoint written by 2 pipeline stages loads into 1 and into 3 stages (resharding by tensor
 * name, wte written once); the directory has the HF file set and config keys; corrupted, missing
 * or foreign files are refused naming the file or tensor; a tensor-parallel shard's parts
 * assemble into whole tensors (the tp = 1 ones, bit for bit, padding dropped) and load back into
 * any tensor-parallel size; an interrupted write never replaces a
 * good checkpoint; --resume auto finds the newest valid one and --keep prunes. The reference for
 * every value is the model built from the same seed (gpt2_init_params depends only on
 * (seed, tensor name), so every sharding has identical weights). */
#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bf16.h"
#include "checkpoint.h"
#include "gpt2.h"
#include "rng.h"
#include "safetensors.h"
#include "test_util.h"

static char tmpdir[256];
static const gpt2_config_t CFG = {64, 16, 3, 2, 8}; /* vocab, ctx, layers, heads, dim */

static const char *tpath(const char *name) {
  static char buf[512];
  snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
  return buf;
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

/* Number of entries (other than . and ..) in a directory. */
#define DIR_COUNT(path, n)                                                          \
  do {                                                                              \
    DIR *d_ = opendir(path);                                                        \
    struct dirent *e_;                                                              \
    (n) = 0;                                                                        \
    while (d_ && (e_ = readdir(d_)) != NULL)                                        \
      if (strcmp(e_->d_name, ".") && strcmp(e_->d_name, "..")) (n)++;              \
    if (d_) closedir(d_);                                                           \
  } while (0)

static gpt2_model_t *make(const gpt2_config_t *cfg, int begin, int end, int embed, int head) {
  gpt2_model_t *m = NULL;
  char err[512];
  gpt2_range_t r = {begin, end, embed, head};
  if (gpt2_create(cfg, r, &m, err, sizeof err) != 0) {
    test_fail(__FILE__, __LINE__, "gpt2_create: %s", err);
    exit(1);
  }
  return m;
}

/* Moments as a function of (tensor name, index in tensor), so every sharding agrees. */
static void fill_moments(const gpt2_model_t *m, float *m1, float *m2) {
  for (int i = 0; i < m->num_tensors; i++) {
    const gpt2_tensor_t *t = &m->tensors[i];
    uint64_t h = rng_hash_str(t->name);
    for (size_t j = 0; j < t->numel; j++) {
      m1[t->offset + j] = (float)((h + j) % 1000) * 1e-3f - 0.5f;
      m2[t->offset + j] = (float)((h * 3 + j) % 977) * 1e-6f;
    }
  }
}

static float *fcalloc(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static void state_for(strata_train_state_t *s, uint64_t step, int pp) {
  strata_train_state_init(s);
  s->step = step;
  s->data_seed = 1234;
  s->data_step = step;
  s->tokens_seen = step * 64;
  rng_t r;
  rng_seed(&r, 5, step);
  memcpy(s->rng_state, r.s, sizeof r.s);
  s->last_loss = 2.5;
  s->train.batch = 4;
  s->train.seq_len = 16;
  s->train.lr = 1e-3;
  s->layout.pp = pp;
}

/* Every tensor of `got` equals the same-named tensor of `want` (params, and moments if given). */
static void check_same(const gpt2_model_t *got, const float *g1, const float *g2,
                       const gpt2_model_t *want, const float *w1, const float *w2) {
  for (int i = 0; i < got->num_tensors; i++) {
    const gpt2_tensor_t *t = &got->tensors[i];
    const gpt2_tensor_t *u = gpt2_find_tensor(want, t->name);
    CHECK_TRUE(u != NULL);
    if (!u) continue;
    CHECK_EQ_INT(t->numel, u->numel);
    size_t bytes = t->numel * sizeof(float);
    if (memcmp(got->params + t->offset, want->params + u->offset, bytes))
      test_fail(__FILE__, __LINE__, "tensor %s differs", t->name);
    if (g1 && memcmp(g1 + t->offset, w1 + u->offset, bytes))
      test_fail(__FILE__, __LINE__, "exp_avg of %s differs", t->name);
    if (g2 && memcmp(g2 + t->offset, w2 + u->offset, bytes))
      test_fail(__FILE__, __LINE__, "exp_avg_sq of %s differs", t->name);
  }
}

static int exists(const char *dir, const char *name) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

/* Single stage: save, load into a fresh model, compare everything. */
static void test_round_trip(gpt2_model_t *full, float *m1, float *m2) {
  char err[1024], dir[512];
  snprintf(dir, sizeof dir, "%s", tpath("run/ckpt-00000010"));
  strata_train_state_t *s = malloc(sizeof *s), *r = malloc(sizeof *r);
  state_for(s, 10, 1);
  CHECK_EQ_INT(ckpt_save(dir, full, m1, m2, s, err, sizeof err), 0);
  const char *want[] = {"config.json", "model.safetensors", "optimizer.safetensors", "train_state.pb"};
  for (int i = 0; i < 4; i++) CHECK_TRUE(exists(dir, want[i]));
  CHECK_TRUE(!exists(dir, "model.safetensors.index.json"));
  gpt2_model_t *m = make(&CFG, 0, 3, 1, 1);
  float *l1 = fcalloc(m->num_params), *l2 = fcalloc(m->num_params);
  CHECK_EQ_INT(ckpt_load(dir, m, l1, l2, r, err, sizeof err), 0);
  CHECK_TRUE(memcmp(m->params, full->params, full->num_params * sizeof(float)) == 0);
  CHECK_TRUE(memcmp(l1, m1, full->num_params * sizeof(float)) == 0);
  CHECK_TRUE(memcmp(l2, m2, full->num_params * sizeof(float)) == 0);
  CHECK_TRUE(r->step == 10 && r->data_seed == 1234 && r->data_step == 10 && r->tokens_seen == 640);
  CHECK_TRUE(memcmp(r->rng_state, s->rng_state, sizeof s->rng_state) == 0);
  CHECK_EQ_INT(r->model.dim, 8);
  CHECK_EQ_INT(r->model.layers, 3);
  CHECK_EQ_INT(r->n_files, 3); /* config, model, optimizer (the state does not list itself) */
  /* config.json in HF keys */
  gpt2_config_t c;
  CHECK_EQ_INT(ckpt_read_config(dir, &c, err, sizeof err), 0);
  CHECK_TRUE(memcmp(&c, &CFG, sizeof c) == 0);
  char p[1024];
  snprintf(p, sizeof p, "%s/config.json", dir);
  json_object *o = json_object_from_file(p), *v;
  CHECK_TRUE(o != NULL);
  CHECK_TRUE(json_object_object_get_ex(o, "model_type", &v) && !strcmp(json_object_get_string(v), "gpt2"));
  CHECK_TRUE(json_object_object_get_ex(o, "n_embd", &v) && json_object_get_int(v) == 8);
  CHECK_TRUE(json_object_object_get_ex(o, "n_positions", &v) && json_object_get_int(v) == 16);
  CHECK_TRUE(json_object_object_get_ex(o, "layer_norm_epsilon", &v) && json_object_get_double(v) == 1e-5);
  CHECK_TRUE(json_object_object_get_ex(o, "activation_function", &v) && !strcmp(json_object_get_string(v), "gelu_new"));
  CHECK_TRUE(json_object_object_get_ex(o, "tie_word_embeddings", &v) && json_object_get_boolean(v));
  CHECK_TRUE(json_object_object_get_ex(o, "architectures", &v) &&
             !strcmp(json_object_get_string(json_object_array_get_idx(v, 0)), "GPT2LMHeadModel"));
  json_object_put(o);
  /* the weights file: HF names, F32, Conv1D [in, out] shapes, metadata format "pt" */
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  st_file_t *f;
  CHECK_EQ_INT(st_open(p, &f, err, sizeof err), 0);
  if (f) {
    CHECK_EQ_INT(f->num_tensors, full->num_tensors);
    const st_tensor_t *t = st_find(f, "h.1.mlp.c_fc.weight");
    CHECK_TRUE(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 8 && t->shape[1] == 32);
    CHECK_TRUE(st_meta(f, "format") && !strcmp(st_meta(f, "format"), "pt"));
    st_close(f);
  }
  /* saving the same step again replaces the directory atomically */
  s->last_loss = 1.25;
  CHECK_EQ_INT(ckpt_save(dir, full, m1, m2, s, err, sizeof err), 0);
  CHECK_EQ_INT(ckpt_read_state(dir, r, 1, err, sizeof err), 0);
  CHECK_TRUE(r->last_loss == 1.25);
  /* a directory that is not a checkpoint is never replaced (nor deleted) */
  char foreign[512];
  snprintf(foreign, sizeof foreign, "%s", tpath("foreign"));
  mkdir(foreign, 0755);
  char keep[600];
  snprintf(keep, sizeof keep, "%s/precious.txt", foreign);
  FILE *pf = fopen(keep, "w");
  fputs("x", pf);
  fclose(pf);
  CHECK_EQ_INT(ckpt_save(foreign, full, m1, m2, s, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "is not a Strata checkpoint"));
  CHECK_TRUE(access(keep, F_OK) == 0);
  /* weights only: a checkpoint without moments loads params, and refuses to provide moments */
  snprintf(dir, sizeof dir, "%s", tpath("nomoments"));
  CHECK_EQ_INT(ckpt_save(dir, full, NULL, NULL, s, err, sizeof err), 0);
  CHECK_TRUE(!exists(dir, "optimizer.safetensors"));
  CHECK_EQ_INT(ckpt_load(dir, m, NULL, NULL, NULL, err, sizeof err), 0);
  CHECK_EQ_INT(ckpt_load(dir, m, l1, l2, NULL, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "no optimizer moment 'exp_avg.wte.weight'"));
  gpt2_free(m);
  free(l1);
  free(l2);
  free(s);
  free(r);
}

/* Two pipeline stages write; one and three stages read. */
/* bf16 weights (gpt2_model_t.bf16_params, a bf16-sr run): stored as BF16 tensors, half the
 * bytes of F32, the moments F32; the load widens them back bit-exactly, also onto a 2-stage
 * model. A tensor holding a value that is not a bf16 stays F32 (nothing is lost). */
static void test_bf16_weights(const gpt2_model_t *full, float *m1, float *m2) {
  char err[1024], dir[512], p[600];
  gpt2_model_t *b = make(&CFG, 0, 3, 1, 1);
  for (size_t i = 0; i < b->num_params; i++) b->params[i] = bf16_round_rne(full->params[i]);
  const gpt2_tensor_t *odd = gpt2_find_tensor(b, "h.1.ln_2.bias");
  b->params[odd->offset + 3] = 0.1f; /* not a bf16 */
  b->bf16_params = 1;
  strata_train_state_t *s = malloc(sizeof *s);
  state_for(s, 10, 1);
  snprintf(dir, sizeof dir, "%s", tpath("bf16/ckpt-00000010"));
  CHECK_EQ_INT(ckpt_save(dir, b, m1, m2, s, err, sizeof err), 0);
  st_file_t *f = NULL, *o = NULL;
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  CHECK_EQ_INT(st_open(p, &f, err, sizeof err), 0);
  snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
  CHECK_EQ_INT(st_open(p, &o, err, sizeof err), 0);
  if (f && o) {
    uint64_t bytes = 0;
    for (int i = 0; i < f->num_tensors; i++) {
      const st_tensor_t *t = &f->tensors[i];
      CHECK_EQ_INT(t->dtype, strcmp(t->name, odd->name) ? ST_BF16 : ST_F32);
      bytes += t->end - t->begin;
    }
    CHECK_TRUE(bytes == 2 * (b->num_params - odd->numel) + 4 * odd->numel);
    for (int i = 0; i < o->num_tensors; i++) CHECK_EQ_INT(o->tensors[i].dtype, ST_F32);
  }
  st_close(f);
  st_close(o);
  gpt2_model_t *m = make(&CFG, 0, 3, 1, 1), *s1 = make(&CFG, 2, 3, 0, 1);
  float *l1 = fcalloc(m->num_params), *l2 = fcalloc(m->num_params);
  CHECK_EQ_INT(ckpt_load(dir, m, l1, l2, NULL, err, sizeof err), 0);
  CHECK_TRUE(memcmp(m->params, b->params, b->num_params * sizeof(float)) == 0);
  CHECK_TRUE(memcmp(l1, m1, b->num_params * sizeof(float)) == 0);
  CHECK_EQ_INT(ckpt_load(dir, s1, NULL, NULL, NULL, err, sizeof err), 0);
  check_same(s1, NULL, NULL, b, NULL, NULL);
  gpt2_free(m);
  gpt2_free(s1);
  gpt2_free(b);
  free(l1);
  free(l2);
  free(s);
}

static void test_reshard(gpt2_model_t *full, float *m1, float *m2) {
  char err[1024], tmp[1024], dir[512];
  snprintf(dir, sizeof dir, "%s", tpath("run/ckpt-00000020"));
  gpt2_model_t *st[2] = {make(&CFG, 0, 2, 1, 0), make(&CFG, 2, 3, 0, 1)};
  float *s1[2], *s2[2];
  for (int k = 0; k < 2; k++) {
    gpt2_init_params(st[k], 77);
    s1[k] = fcalloc(st[k]->num_params);
    s2[k] = fcalloc(st[k]->num_params);
    fill_moments(st[k], s1[k], s2[k]);
  }
  strata_train_state_t *s = malloc(sizeof *s);
  state_for(s, 20, 2);
  s->layout.n_stage_layers = 2;
  s->layout.stage_layers[0] = 2;
  s->layout.stage_layers[1] = 1;
  CHECK_EQ_INT(ckpt_begin(dir, tmp, sizeof tmp, err, sizeof err), 0);
  CHECK_TRUE(contains(tmp, "ckpt-00000020.tmp-"));
  /* the commit refuses while a stage's file is missing */
  CHECK_EQ_INT(ckpt_write_shard(tmp, st[0], s1[0], s2[0], 0, 2, err, sizeof err), 0);
  CHECK_EQ_INT(ckpt_commit(tmp, dir, &CFG, s, 2, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "stage 1 did not write 'model-00002-of-00002.safetensors'"));
  CHECK_EQ_INT(ckpt_write_shard(tmp, st[1], s1[1], s2[1], 1, 2, err, sizeof err), 0);
  CHECK_EQ_INT(ckpt_commit(tmp, dir, &CFG, s, 2, err, sizeof err), 0);
  const char *want[] = {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                        "model-00002-of-00002.safetensors", "optimizer-00001-of-00002.safetensors",
                        "optimizer-00002-of-00002.safetensors", "train_state.pb"};
  for (int i = 0; i < 7; i++) CHECK_TRUE(exists(dir, want[i]));
  CHECK_TRUE(access(tmp, F_OK) != 0); /* the temporary was renamed */
  /* the index: every tensor once, wte in the first stage's file, total_size = all weights */
  char p[1024];
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
  st_index_t *idx;
  CHECK_EQ_INT(st_index_read(p, &idx, err, sizeof err), 0);
  if (idx) {
    CHECK_EQ_INT(idx->n, full->num_tensors);
    CHECK_EQ_INT(idx->total_size, full->num_params * sizeof(float));
    CHECK_TRUE(!strcmp(st_index_file(idx, "wte.weight"), "model-00001-of-00002.safetensors"));
    CHECK_TRUE(!strcmp(st_index_file(idx, "ln_f.bias"), "model-00002-of-00002.safetensors"));
    CHECK_TRUE(!strcmp(st_index_file(idx, "h.1.attn.c_proj.bias"), "model-00001-of-00002.safetensors"));
    st_index_free(idx);
  }
  snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
  st_file_t *f;
  CHECK_EQ_INT(st_open(p, &f, err, sizeof err), 0);
  if (f) {
    CHECK_TRUE(st_find(f, "wte.weight") == NULL); /* the tied copy is not written twice */
    st_close(f);
  }
  /* read as one stage */
  gpt2_model_t *one = make(&CFG, 0, 3, 1, 1);
  float *o1 = fcalloc(one->num_params), *o2 = fcalloc(one->num_params);
  strata_train_state_t *r = malloc(sizeof *r);
  CHECK_EQ_INT(ckpt_load(dir, one, o1, o2, r, err, sizeof err), 0);
  check_same(one, o1, o2, full, m1, m2);
  CHECK_EQ_INT(r->layout.pp, 2);
  CHECK_TRUE(r->step == 20);
  /* read as three stages */
  gpt2_model_t *three[3] = {make(&CFG, 0, 1, 1, 0), make(&CFG, 1, 2, 0, 0), make(&CFG, 2, 3, 0, 1)};
  for (int k = 0; k < 3; k++) {
    float *t1 = fcalloc(three[k]->num_params), *t2 = fcalloc(three[k]->num_params);
    CHECK_EQ_INT(ckpt_load(dir, three[k], t1, t2, NULL, err, sizeof err), 0);
    check_same(three[k], t1, t2, full, m1, m2);
    free(t1);
    free(t2);
  }
  CHECK_TRUE(gpt2_find_tensor(three[2], "wte.weight") != NULL); /* the last stage's tied copy */
  for (int k = 0; k < 3; k++) gpt2_free(three[k]);
  gpt2_free(one);
  free(o1);
  free(o2);
  for (int k = 0; k < 2; k++) {
    gpt2_free(st[k]);
    free(s1[k]);
    free(s2[k]);
  }
  free(s);
  free(r);
}

static void copy_dir(const char *from, const char *to) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
  if (system(cmd) != 0) test_fail(__FILE__, __LINE__, "cp failed");
}

static void flip_byte(const char *dir, const char *file, long from_end) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, file);
  FILE *f = fopen(p, "r+b");
  fseek(f, -from_end, SEEK_END);
  int c = fgetc(f);
  fseek(f, -from_end, SEEK_END);
  fputc(c ^ 0x01, f);
  fclose(f);
}

static void expect_load_fails(const char *dir, gpt2_model_t *m, const char *w1, const char *w2) {
  char err[1024] = "";
  CHECK_EQ_INT(ckpt_load(dir, m, NULL, NULL, NULL, err, sizeof err), -1);
  if (!contains(err, w1) || (w2 && !contains(err, w2)))
    test_fail(__FILE__, __LINE__, "error \"%s\" lacks \"%s\" / \"%s\"", err, w1, w2 ? w2 : "");
  if (getenv("STRATA_TEST_VERBOSE")) printf("%s\n", err);
}

static void test_refusals(void) {
  char good[512]; /* tpath's buffer is static: copy */
  snprintf(good, sizeof good, "%s", tpath("run/ckpt-00000020"));
  gpt2_model_t *m = make(&CFG, 0, 3, 1, 1);
  char bad[512];
  snprintf(bad, sizeof bad, "%s", tpath("bad"));
  /* one flipped bit inside a tensor's data: still a valid safetensors file, caught by XXH64 */
  copy_dir(good, bad);
  flip_byte(bad, "model-00002-of-00002.safetensors", 3);
  expect_load_fails(bad, m, "'model-00002-of-00002.safetensors' checksum mismatch", NULL);
  copy_dir(good, bad);
  flip_byte(bad, "config.json", 5);
  expect_load_fails(bad, m, "'config.json' checksum mismatch", NULL);
  copy_dir(good, bad);
  char p[1024];
  snprintf(p, sizeof p, "%s/optimizer-00001-of-00002.safetensors", bad);
  unlink(p);
  expect_load_fails(bad, m, "'optimizer-00001-of-00002.safetensors' is missing", NULL);
  copy_dir(good, bad);
  snprintf(p, sizeof p, "%s/train_state.pb", bad);
  unlink(p);
  expect_load_fails(bad, m, "missing train_state.pb", NULL);
  copy_dir(good, bad);
  flip_byte(bad, "train_state.pb", 1); /* corrupt the protobuf itself */
  FILE *f = fopen(p, "r+b");
  fputc(0xff, f); /* first byte: an invalid tag */
  fclose(f);
  expect_load_fails(bad, m, "train_state.pb", "not a valid TrainState");
  /* another model shape: the tensor and both shapes are named */
  gpt2_config_t wide = CFG;
  wide.dim = 16;
  gpt2_model_t *w = make(&wide, 0, 3, 1, 1);
  expect_load_fails(good, w, "tensor 'wte.weight' has shape [64, 8]", "[64, 16] in the model");
  gpt2_free(w);
  gpt2_config_t deep = CFG;
  deep.layers = 4;
  gpt2_model_t *d = make(&deep, 0, 4, 1, 1);
  expect_load_fails(good, d, "tensor 'h.3.ln_1.weight'", "is not in the checkpoint");
  gpt2_free(d);
  gpt2_config_t heads = CFG;
  heads.heads = 4; /* same shapes, other configuration */
  gpt2_model_t *h = make(&heads, 0, 3, 1, 1);
  expect_load_fails(good, h, "heads=2", "heads=4");
  gpt2_free(h);
  /* a refused load leaves the model untouched */
  gpt2_init_params(m, 5);
  float first = m->params[0];
  expect_load_fails(bad, m, "train_state.pb", NULL);
  CHECK_TRUE(m->params[0] == first);
  gpt2_free(m);
}

static void test_run_dir(gpt2_model_t *full) {
  char err[1024], out[1024];
  const char *run = tpath("run");
  char run_dir[512];
  snprintf(run_dir, sizeof run_dir, "%s", run);
  /* newest is 20 */
  CHECK_EQ_INT(ckpt_find_latest(run_dir, out, sizeof out, err, sizeof err), 0);
  CHECK_TRUE(contains(out, "ckpt-00000020"));
  /* a torn write (only a temporary) and a corrupt newer checkpoint are skipped */
  char p[1024];
  snprintf(p, sizeof p, "%s/ckpt-00000040.tmp-abcdef", run_dir);
  mkdir(p, 0755);
  char c30[1024];
  ckpt_step_dir(c30, sizeof c30, run_dir, 30);
  char c20src[1024];
  ckpt_step_dir(c20src, sizeof c20src, run_dir, 20);
  copy_dir(c20src, c30);
  flip_byte(c30, "model-00001-of-00002.safetensors", 2);
  CHECK_EQ_INT(ckpt_find_latest(run_dir, out, sizeof out, err, sizeof err), 0);
  CHECK_TRUE(contains(out, "ckpt-00000020"));
  /* a write that fails half way leaves the previous checkpoint intact and loadable */
  char tmp[1024], c20[1024];
  ckpt_step_dir(c20, sizeof c20, run_dir, 20);
  CHECK_EQ_INT(ckpt_begin(c20, tmp, sizeof tmp, err, sizeof err), 0);
  CHECK_EQ_INT(ckpt_write_shard(tmp, full, NULL, NULL, 0, 1, err, sizeof err), 0);
  ckpt_abort(tmp); /* the coordinator gives up before commit */
  CHECK_TRUE(access(tmp, F_OK) != 0);
  strata_train_state_t *s = malloc(sizeof *s);
  CHECK_EQ_INT(ckpt_read_state(c20, s, 1, err, sizeof err), 0);
  CHECK_EQ_INT(s->layout.pp, 2);
  free(s);
  /* --keep 1 removes the older ones and the stale temporary */
  int removed = ckpt_prune(run_dir, 1, err, sizeof err);
  CHECK_EQ_INT(removed, 3); /* ckpt-00000020, ckpt-00000010, ckpt-00000040.tmp-abcdef */
  CHECK_TRUE(access(c30, F_OK) == 0 && access(c20, F_OK) != 0 && access(p, F_OK) != 0);
  CHECK_EQ_INT(ckpt_find_latest(run_dir, out, sizeof out, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "no valid checkpoint"));
  CHECK_TRUE(contains(err, "checksum mismatch"));
}

/* SIGKILL a process that keeps rewriting a checkpoint, at varying moments: the directory always
 * holds a complete checkpoint that verifies and loads (the old one or the new one), and the
 * interrupted temporaries are ignored by --resume auto and removed by --keep. */
static void test_kill_during_write(gpt2_model_t *full, float *m1, float *m2) {
  char run[512], dir[600], err[1024], out[1024];
  snprintf(run, sizeof run, "%s", tpath("killrun"));
  ckpt_step_dir(dir, sizeof dir, run, 1);
  strata_train_state_t *s = malloc(sizeof *s), *r = malloc(sizeof *r);
  state_for(s, 1, 1);
  CHECK_EQ_INT(ckpt_save(dir, full, m1, m2, s, err, sizeof err), 0);
  gpt2_model_t *m = make(&CFG, 0, 3, 1, 1);
  int killed_mid_write = 0;
  for (int trial = 0; trial < 10; trial++) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) { /* child: rewrite forever with increasing last_loss */
      for (int k = 0;; k++) {
        s->last_loss = k;
        if (ckpt_save(dir, full, m1, m2, s, err, sizeof err) != 0) _exit(3);
      }
    }
    usleep(2000 + 1700 * (useconds_t)trial);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    killed_mid_write += WIFSIGNALED(status);
    CHECK_EQ_INT(ckpt_read_state(dir, r, 1, err, sizeof err), 0);
    CHECK_EQ_INT(ckpt_load(dir, m, NULL, NULL, NULL, err, sizeof err), 0);
    CHECK_TRUE(memcmp(m->params, full->params, full->num_params * sizeof(float)) == 0);
  }
  CHECK_EQ_INT(killed_mid_write, 10); /* the writer never stopped on its own (exit 3) */
  CHECK_EQ_INT(ckpt_find_latest(run, out, sizeof out, err, sizeof err), 0);
  CHECK_TRUE(contains(out, "ckpt-00000001"));
  int nleft = 0;
  DIR_COUNT(run, nleft);
  if (getenv("STRATA_TEST_VERBOSE")) printf("kill test: %d entries before pruning\n", nleft);
  CHECK_TRUE(ckpt_prune(run, 1, err, sizeof err) >= 0);
  DIR_COUNT(run, nleft);
  CHECK_EQ_INT(nleft, 1); /* only ckpt-00000001 remains */
  gpt2_free(m);
  free(s);
  free(r);
}

/* Tensor parallelism, tp = 2 (vocabulary 64 padded to 256): the two ranks' parts assemble into
 * the tp = 1 tensors; ckpt_write_shard refuses a part; the whole tensors written with
 * ckpt_write_shard_full load into a tp = 1 model and back into each tp rank bit for bit. */
static void test_tensor_parallel(gpt2_model_t *full, float *m1, float *m2) {
  char err[1024], tmp[1024], dir[512];
  snprintf(dir, sizeof dir, "%s", tpath("tprun/ckpt-00000030"));
  gpt2_model_t *tp[2];
  float *p1[2], *p2[2];
  for (int r = 0; r < 2; r++) {
    gpt2_range_t range = {0, CFG.layers, 1, 1, .tp_rank = r, .tp_size = 2};
    if (gpt2_create(&CFG, range, &tp[r], err, sizeof err)) {
      test_fail(__FILE__, __LINE__, "gpt2_create tp: %s", err);
      return;
    }
    gpt2_init_params(tp[r], 77);
    p1[r] = fcalloc(tp[r]->num_params);
    p2[r] = fcalloc(tp[r]->num_params);
    for (int i = 0; i < tp[r]->num_tensors; i++) { /* the moments' slices */
      const gpt2_tensor_t *t = &tp[r]->tensors[i];
      const gpt2_tensor_t *u = gpt2_find_tensor(full, t->name);
      CHECK_TRUE(u && gpt2_tensor_slice(t, r, m1 + u->offset, p1[r] + t->offset) == 0 &&
                 gpt2_tensor_slice(t, r, m2 + u->offset, p2[r] + t->offset) == 0);
    }
  }
  const size_t np = tp[0]->num_params, nf = ckpt_full_numel(tp[0]);
  CHECK_EQ_INT(tp[1]->num_params, np);
  CHECK_EQ_INT(nf, full->num_params);
  CHECK_TRUE(np * 2 > nf); /* parts are half of every split tensor plus the replicated ones */
  float *parts = fcalloc(2 * np), *whole = fcalloc(3 * nf);
  const float *src[2][3] = {{tp[0]->params, p1[0], p2[0]}, {tp[1]->params, p1[1], p2[1]}};
  for (int a = 0; a < 3; a++) {
    memcpy(parts, src[0][a], np * sizeof(float));
    memcpy(parts + np, src[1][a], np * sizeof(float));
    CHECK_EQ_INT(ckpt_assemble_full(tp[0], parts, whole + (size_t)a * nf, err, sizeof err), 0);
  }
  CHECK_TRUE(memcmp(whole, full->params, nf * sizeof(float)) == 0);
  CHECK_TRUE(memcmp(whole + nf, m1, nf * sizeof(float)) == 0);
  CHECK_TRUE(memcmp(whole + 2 * nf, m2, nf * sizeof(float)) == 0);
  strata_train_state_t *s = malloc(sizeof *s);
  state_for(s, 30, 1);
  s->layout.tp = 2;
  CHECK_EQ_INT(ckpt_begin(dir, tmp, sizeof tmp, err, sizeof err), 0);
  CHECK_EQ_INT(ckpt_write_shard(tmp, tp[0], p1[0], p2[0], 0, 1, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "ckpt_write_shard_full"));
  CHECK_EQ_INT(ckpt_write_shard_full(tmp, tp[0], whole, whole + nf, whole + 2 * nf, 0, 1, err,
                                     sizeof err), 0);
  CHECK_EQ_INT(ckpt_commit(tmp, dir, &CFG, s, 1, err, sizeof err), 0);
  /* whole tensors: a one-rank model loads them as they were */
  gpt2_model_t *one = make(&CFG, 0, 3, 1, 1);
  float *o1 = fcalloc(one->num_params), *o2 = fcalloc(one->num_params);
  strata_train_state_t *r = malloc(sizeof *r);
  CHECK_EQ_INT(ckpt_load(dir, one, o1, o2, r, err, sizeof err), 0);
  check_same(one, o1, o2, full, m1, m2);
  CHECK_EQ_INT(r->layout.tp, 2);
  /* and each tensor-parallel rank takes its part back, padding rows zero */
  for (int k = 0; k < 2; k++) {
    gpt2_range_t range = {0, CFG.layers, 1, 1, .tp_rank = k, .tp_size = 2};
    gpt2_model_t *back = NULL;
    if (gpt2_create(&CFG, range, &back, err, sizeof err)) {
      test_fail(__FILE__, __LINE__, "gpt2_create tp: %s", err);
      break;
    }
    float *b1 = fcalloc(np), *b2 = fcalloc(np);
    memset(back->params, 0x7f, np * sizeof(float)); /* no stale values survive */
    CHECK_EQ_INT(ckpt_load(dir, back, b1, b2, NULL, err, sizeof err), 0);
    CHECK_TRUE(memcmp(back->params, tp[k]->params, np * sizeof(float)) == 0);
    CHECK_TRUE(memcmp(b1, p1[k], np * sizeof(float)) == 0 && memcmp(b2, p2[k], np * sizeof(float)) == 0);
    gpt2_free(back);
    free(b1);
    free(b2);
  }
  gpt2_free(one);
  free(o1);
  free(o2);
  free(r);
  free(s);
  free(parts);
  free(whole);
  for (int k = 0; k < 2; k++) {
    gpt2_free(tp[k]);
    free(p1[k]);
    free(p2[k]);
  }
}

/* config.json's bos / eos: GPT-2's <|endoftext|> only where the vocabulary has it; a byte model
 * gets 0 (Hugging Face's generate() would otherwise default to 50256, outside 256 tokens). Only
 * byte models get tokenizer files (tests/train's hfconfig case checks their content). */
static void test_special_tokens(void) {
  CHECK_EQ_INT(ckpt_special_token(256), 0);
  CHECK_EQ_INT(ckpt_special_token(50257), 50256);
  CHECK_EQ_INT(ckpt_special_token(50304), 50256);
  CHECK_EQ_INT(ckpt_special_token(1000), 0);
  char dir[700], path[800], err[256];
  snprintf(dir, sizeof dir, "%s/tok", tmpdir);
  CHECK_EQ_INT(mkdir(dir, 0755), 0);
  gpt2_config_t bpe = {50257, 16, 1, 1, 8};
  CHECK_EQ_INT(ckpt_write_tokenizer(dir, &bpe, err, sizeof err), 0);
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  CHECK_TRUE(access(path, F_OK) != 0);
  gpt2_config_t bytes = {256, 16, 1, 1, 8};
  CHECK_EQ_INT(ckpt_write_tokenizer(dir, &bytes, err, sizeof err), 0);
  CHECK_TRUE(access(path, R_OK) == 0);
  snprintf(path, sizeof path, "%s/config.json", dir);
  CHECK_EQ_INT(ckpt_write_config(path, &bytes, err, sizeof err), 0);
  json_object *o = json_object_from_file(path), *v = NULL;
  CHECK_TRUE(o && json_object_object_get_ex(o, "eos_token_id", &v) && json_object_get_int(v) == 0);
  CHECK_TRUE(o && json_object_object_get_ex(o, "bos_token_id", &v) && json_object_get_int(v) == 0);
  json_object_put(o);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/strata_ckpt_test_XXXXXX");
  if (!mkdtemp(tmpdir)) return 2;
  gpt2_model_t *full = make(&CFG, 0, 3, 1, 1);
  gpt2_init_params(full, 77);
  float *m1 = fcalloc(full->num_params), *m2 = fcalloc(full->num_params);
  fill_moments(full, m1, m2);
  test_round_trip(full, m1, m2);
  test_bf16_weights(full, m1, m2);
  test_reshard(full, m1, m2);
  test_tensor_parallel(full, m1, m2);
  test_refusals();
  test_run_dir(full);
  test_kill_during_write(full, m1, m2);
  test_special_tokens();
  gpt2_free(full);
  free(m1);
  free(m2);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return test_finish("ckpt_checkpoint");
}
