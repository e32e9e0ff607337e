/* llama_loop -- the reference `strata train --arch llama` is checked against (tests/train.cmake,
 * train_llama_loop): a plain loop over llama.h, data.h and adamw.h with none of train.c or
 * train_model.c, printing the loss of each step (%.9g, as steps.jsonl records it).
 * Usage: llama_loop DATA STEPS. Model: vocab 256, ctx 32, 2 layers, 4 heads, 2 kv heads, dim 64,
 * ffn 192 (the --ffn default for dim 64), eps 1e-5, theta 1e4; batch 4 in 2 micro-batches of 2,
 * seed 7, lr 0.01 (rounded to float, as strata train's --lr), warm-up 2, cosine to 0.1 x lr at
 * STEPS; the other AdamW settings are the defaults.
 * llama_loop --greedy CKPT PROMPT N: the ids of N greedy tokens after the bytes of PROMPT from a
 * Llama checkpoint (argmax of the last position's logits, the whole sequence forwarded again for
 * every token), one line, comma-separated, as strata infer --json's token_ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "checkpoint.h"
#include "data.h"
#include "llama.h"

static int greedy(const char *ckpt, const char *prompt, int n_new) {
  char err[512];
  ckpt_model_config_t mc;
  llama_model_t *m = NULL;
  if (ckpt_read_model_config(ckpt, &mc, err, sizeof err) || mc.arch != CKPT_ARCH_LLAMA ||
      llama_create(&mc.llama, &m, err, sizeof err) || ckpt_load_llama(ckpt, m, NULL, NULL, NULL, err, sizeof err)) {
    fprintf(stderr, "llama_loop: %s\n", err);
    return 1;
  }
  const int V = mc.llama.vocab;
  int n = (int)strlen(prompt);
  int32_t seq[1024];
  for (int i = 0; i < n; i++) seq[i] = (unsigned char)prompt[i];
  for (int k = 0; k < n_new && n < 1024; k++) {
    llama_acts_t *a;
    if (llama_acts_create(m, 1, n, &a, err, sizeof err)) return 1;
    llama_forward(m, a, seq, NULL);
    const float *l = llama_logits(a) + (size_t)(n - 1) * V;
    int best = 0;
    for (int v = 1; v < V; v++)
      if (l[v] > l[best]) best = v;
    llama_acts_free(a);
    seq[n++] = best;
    printf("%s%d", k ? "," : "", best);
  }
  printf("\n");
  llama_free(m);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && !strcmp(argv[1], "--greedy")) return greedy(argv[2], argv[3], atoi(argv[4]));
  if (argc != 3) {
    fprintf(stderr, "usage: llama_loop DATA STEPS\n");
    return 2;
  }
  const int steps = atoi(argv[2]), B = 4, M = 2, mb = B / M, T = 32;
  const uint64_t seed = 7;
  char err[512];
  data_set_t *ds;
  llama_model_t *m;
  llama_acts_t *a;
  adamw_t *opt;
  llama_config_t cfg = {.vocab = 256, .ctx = 32, .layers = 2, .heads = 4, .kv_heads = 2, .dim = 64,
                        .ffn = 192, .rms_norm_eps = 1e-5, .rope_theta = 1e4};
  if (data_open(argv[1], DATA_KIND_AUTO, &ds, err, sizeof err) ||
      llama_create(&cfg, &m, err, sizeof err) || llama_acts_create(m, mb, T, &a, err, sizeof err) ||
      adamw_create(0, m->num_params, &opt, err, sizeof err)) {
    fprintf(stderr, "llama_loop: %s\n", err);
    return 1;
  }
  adamw_hparams_t hp;
  adamw_hparams_default(&hp);
  hp.lr = (float)0.01;
  hp.warmup_steps = 2;
  hp.decay_steps = steps;
  llama_init_params(m, seed);
  int32_t in[2 * 32], tg[2 * 32];
  for (int step = 0; step < steps; step++) {
    llama_zero_grad(m);
    double loss = 0;
    for (int mi = 0; mi < M; mi++) {
      if (data_fetch(ds, DATA_TRAIN, seed, (uint64_t)step, B, T, mi * mb, mb, in, tg, err, sizeof err)) {
        fprintf(stderr, "llama_loop: %s\n", err);
        return 1;
      }
      loss += llama_forward(m, a, in, tg);
      if (llama_backward(m, a, 1.0f / M)) return 1;
    }
    loss /= M;
    double ss = adamw_sum_squares(m->grads, m->num_params);
    float lr = adamw_lr_at(&hp, step);
    adamw_step(opt, &hp, m->params, m->grads, m->tensors, m->num_tensors, lr,
               adamw_clip_scale(ss, hp.grad_clip));
    printf("%.9g\n", loss);
  }
  adamw_free(opt);
  llama_acts_free(a);
  llama_free(m);
  data_close(ds);
  return 0;
}
