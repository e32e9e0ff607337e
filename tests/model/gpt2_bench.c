/* gpt2_bench.c -- single-rank training throughput of worker/model/gpt2.c (or, with --arch llama,
 * worker/model/llama.c: --kv-heads, --ffn) + worker/model/adamw.c: times
 * whole steps (forward, backward, AdamW) on random tokens and prints tokens/s, the GEMM
 * GFLOP/s achieved (gpt2_train_flops / step time), the split of a step into forward, backward
 * and optimizer, tokens per second of process CPU time (less sensitive to a busy machine than
 * wall time), and peak RSS. Compare with launch/torch_train_bench.py on the same flags.
 * Products go through worker/model/gemm.h on --threads threads (default 1), so STRATA_GEMM picks
 * the library as in `strata train`; --precision bf16 runs them on bf16 inputs (gemm_bf16) and
 * bf16-sr also keeps the weights in bf16 with stochastic rounding, as strata train --precision.
 * With --gemm-peak N it instead times gemm_f32 on N x N x N matrices (the library's ceiling).
 * With --gemm-shapes it times every backend on the model's matrix products (the forward's NN,
 * the backward's NT for the input gradient and TN for the weight gradient, one attention block
 * of each kind, the logits, one token of KV-cache decoding) and prints one line per product:
 *   gemm name=fc op=NN M=2048 N=1536 K=384 openblas=110.2 onednn=212.9 auto=onednn bf16=380.1 bf16_kernel=421.7
 * (GFLOP per second of the thread's CPU time, median of 5 calls each, so a machine shared with
 * other processes lowers it less than wall-clock time would; the backends alternate which goes
 * first from product to product). bf16 is gemm_bf16 on oneDNN as the model calls it (fp32
 * inputs rounded to bf16, then the product); bf16_kernel is oneDNN's dnnl_gemm_bf16bf16f32 alone
 * on inputs already in bf16, the library's rate (0 where libdnnl has no bf16 kernel).
 *
 *   build/tests/gpt2_bench --layers 6 --heads 6 --dim 384 --ctx 256 --batch 8 --steps 10
 *   build/tests/gpt2_bench --arch llama --layers 6 --heads 6 --kv-heads 2 --dim 384 --ffn 1024 --ctx 256 --batch 8
 *   build/tests/gpt2_bench --gemm-peak 2048
 *   build/tests/gpt2_bench --layers 6 --heads 6 --dim 384 --ctx 256 --batch 8 --gemm-shapes
 * A benchmark, not a test: registered as a build target only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "adamw.h"
#include "args.h"
#include "bf16.h"
#include "gemm.h"
#include "gpt2.h"
#include "llama.h"
#include "train_model.h"
#include "rng.h"
#include "util.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double peak_rss_mib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

static int gemm_peak(int n, int reps) {
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
  if (!a || !b || !c) return 1;
  for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
  gemm_f32(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    double t0 = now_s();
    gemm_f32(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double dt = now_s() - t0;
    best = dt < best ? dt : best;
  }
  printf("sgemm %dx%dx%d (%s): best of %d %.1f ms, %.1f GFLOP/s\n", n, n, n,
         gemm_backend_name(gemm_choose(GEMM_F32, 0, 0, n, n, n)), reps, best * 1e3, 2.0 * n * n * (double)n / best / 1e9);
  free(a);
  free(b);
  free(c);
  return 0;
}

static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* oneDNN's bf16 kernel (as gemm_onednn.c declares it: exported, not in the public headers). */
extern dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N, dnnl_dim_t K,
                                           float alpha, const uint16_t *A, dnnl_dim_t lda, const uint16_t *B,
                                           dnnl_dim_t ldb, float beta, float *C, dnnl_dim_t ldc)
    __attribute__((weak));

/* One product of the table C = op(A) op(B): fp32 on backend b (PROD_F32), gemm_bf16 on oneDNN
 * as the model calls it (PROD_BF16), or oneDNN's bf16 kernel alone on the pre-rounded A16 / B16
 * (PROD_BF16_KERNEL). */
typedef enum { PROD_F32, PROD_BF16, PROD_BF16_KERNEL } prod_kind_t;
typedef struct {
  prod_kind_t kind;
  gemm_backend_t b;
  int ta, tb, M, N, K;
  const float *A, *B;
  const uint16_t *A16, *B16;
  float *C;
} product_t;

/* 0, or -1 when oneDNN's bf16 kernel refuses this CPU. */
static int run_product(const product_t *p) {
  const int lda = p->ta ? p->M : p->K, ldb = p->tb ? p->K : p->N;
  if (p->kind == PROD_F32)
    gemm_f32_on(p->b, p->ta, p->tb, p->M, p->N, p->K, 1.0f, p->A, lda, p->B, ldb, 0.0f, p->C, p->N);
  else if (p->kind == PROD_BF16)
    gemm_bf16_on(GEMM_ONEDNN, p->ta, p->tb, p->M, p->N, p->K, 1.0f, p->A, lda, p->B, ldb, 0.0f, p->C, p->N);
  else
    return dnnl_gemm_bf16bf16f32(p->ta ? 'T' : 'N', p->tb ? 'T' : 'N', p->M, p->N, p->K, 1.0f, p->A16, lda, p->B16,
                                 ldb, 0.0f, p->C, p->N) == dnnl_success ? 0 : -1;
  return 0;
}

/* GFLOP/s of one product per second of this thread's CPU time (one thread: robust to other
 * processes sharing the cores), the median of 5 timed calls after one untimed; 0 for the bf16
 * kernel where oneDNN does not export it or refuses the CPU. */
static double time_product(const product_t *p) {
  if (p->kind == PROD_BF16_KERNEL && !dnnl_gemm_bf16bf16f32) return 0;
  double t[5];
  if (run_product(p)) return 0;
  for (int r = 0; r < 5; r++) {
    double t0 = thread_cpu_s();
    run_product(p);
    t[r] = thread_cpu_s() - t0;
  }
  strata_sort_doubles(t, 5);
  return 2.0 * p->M * p->N * (double)p->K / t[2] / 1e9;
}

/* Every backend on the matrix products of one training step of the model (see the header). */
static int gemm_shapes(int H, int C, int T, int B, int V, int blk) {
  const int BT = B * T, hs = C / H;
  const struct {
    const char *name;
    int ta, tb, M, N, K;
  } p[] = {
      {"qkv", 0, 0, BT, 3 * C, C},       {"attn_proj", 0, 0, BT, C, C},   {"fc", 0, 0, BT, 4 * C, C},
      {"fc_proj", 0, 0, BT, C, 4 * C},   {"d_qkv_in", 0, 1, BT, C, 3 * C}, {"d_attn_proj_in", 0, 1, BT, C, C},
      {"d_fc_in", 0, 1, BT, C, 4 * C},   {"d_fc_proj_in", 0, 1, BT, 4 * C, C},
      {"d_qkv_w", 1, 0, C, 3 * C, BT},   {"d_attn_proj_w", 1, 0, C, C, BT}, {"d_fc_w", 1, 0, C, 4 * C, BT},
      {"d_fc_proj_w", 1, 0, 4 * C, C, BT}, {"attn_scores", 0, 1, blk, T, hs}, {"attn_values", 0, 0, blk, hs, T},
      {"attn_d_values", 1, 0, T, hs, blk}, {"logits", 0, 1, BT, V, C},
      /* one token of KV-cache decoding (gpt2_kv.c): a row vector times a weight */
      {"decode_fc", 0, 0, 1, 4 * C, C},    {"decode_logits", 0, 1, 1, V, C},
  };
  size_t most = 0;
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
    size_t a = (size_t)p[i].M * p[i].K, b = (size_t)p[i].K * p[i].N, c = (size_t)p[i].M * p[i].N;
    most = a > most ? a : most, most = b > most ? b : most, most = c > most ? c : most;
  }
  float *A = malloc(sizeof(float) * most), *Bm = malloc(sizeof(float) * most), *Cm = malloc(sizeof(float) * most);
  uint16_t *A16 = malloc(sizeof(uint16_t) * most), *B16 = malloc(sizeof(uint16_t) * most);
  if (!A || !Bm || !Cm || !A16 || !B16) return 1;
  rng_t r;
  rng_seed(&r, 1, rng_hash_str("gpt2_bench gemm"));
  for (size_t i = 0; i < most; i++) {
    A[i] = rng_uniform(&r) - 0.5f, Bm[i] = rng_uniform(&r) - 0.5f;
    A16[i] = bf16_bits_rne(A[i]), B16[i] = bf16_bits_rne(Bm[i]);
  }
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
    double gf[GEMM_NBACKENDS] = {0};
    for (int k = 1; k < GEMM_NBACKENDS; k++) { /* alternate which backend goes first */
      int b = i % 2 ? GEMM_NBACKENDS - k : k;
      product_t f32 = {PROD_F32, (gemm_backend_t)b, p[i].ta, p[i].tb, p[i].M, p[i].N, p[i].K, A, Bm, A16, B16, Cm};
      gf[b] = time_product(&f32);
    }
    printf("gemm name=%s op=%c%c M=%d N=%d K=%d", p[i].name, p[i].ta ? 'T' : 'N', p[i].tb ? 'T' : 'N', p[i].M, p[i].N,
           p[i].K);
    for (int b = 1; b < GEMM_NBACKENDS; b++) printf(" %s=%.1f", gemm_backend_name((gemm_backend_t)b), gf[b]);
    printf(" auto=%s", gemm_backend_name(gemm_rule(GEMM_F32, p[i].ta, p[i].tb, p[i].M, p[i].N, p[i].K)));
    for (int kernel = 0; kernel < 2; kernel++) {
      product_t bf = {kernel ? PROD_BF16_KERNEL : PROD_BF16, GEMM_ONEDNN, p[i].ta, p[i].tb, p[i].M, p[i].N, p[i].K,
                      A, Bm, A16, B16, Cm};
      printf(" %s=%.1f", kernel ? "bf16_kernel" : "bf16", time_product(&bf));
    }
    printf("\n");
  }
  free(A), free(Bm), free(Cm), free(A16), free(B16);
  return 0;
}

int main(int argc, char **argv) {
  int L = 4, H = 4, C = 128, T = 128, B = 8, V = 256, steps = 10, warmup = 2, gemm = 0, shapes = 0, threads = 1;
  int KVH = 0, F = 0;
  int64_t seed = 1;
  const char *arch = "gpt", *precision = "fp32";
  arg_spec_t specs[] = {
      {"--arch", NULL, ARG_STRING, &arch, "gpt|llama", "model family (gpt)"},
      {"--precision", NULL, ARG_STRING, &precision, "P", "gpt: fp32 | bf16 | bf16-sr (fp32)"},
      {"--layers", NULL, ARG_INT, &L, "L", "transformer blocks (4)"},
      {"--kv-heads", NULL, ARG_INT, &KVH, "N", "llama: key / value heads (the heads)"},
      {"--ffn", NULL, ARG_INT, &F, "F", "llama: SwiGLU hidden width (4 x dim)"},
      {"--heads", NULL, ARG_INT, &H, "H", "attention heads (4)"},
      {"--dim", NULL, ARG_INT, &C, "C", "embedding width (128)"},
      {"--ctx", NULL, ARG_INT, &T, "T", "context = sequence length (128)"},
      {"--batch", NULL, ARG_INT, &B, "B", "sequences per step (8)"},
      {"--vocab", NULL, ARG_INT, &V, "V", "vocabulary (256)"},
      {"--steps", NULL, ARG_INT, &steps, "N", "timed steps (10)"},
      {"--warmup", NULL, ARG_INT, &warmup, "N", "untimed steps first (2)"},
      {"--seed", NULL, ARG_INT64, &seed, "S", "init and data seed (1)"},
      {"--threads", NULL, ARG_INT, &threads, "N", "GEMM threads (1)"},
      {"--gemm-peak", NULL, ARG_INT, &gemm, "N", "only time sgemm N x N x N and exit"},
      {"--gemm-shapes", NULL, ARG_FLAG, &shapes, NULL, "only time every GEMM backend on the model's products and exit"},
  };
  int rc = args_parse("gpt2_bench", "Single-rank GPT-2 or Llama training throughput (forward + backward + AdamW).",
                      argc, argv, specs, (int)(sizeof specs / sizeof specs[0]), NULL, NULL);
  if (rc != 0) return rc > 0 ? 0 : 2;
  gemm_set_threads(threads);
  if (gemm > 0) return gemm_peak(gemm, 5);
  if (shapes) return gemm_shapes(H, C, T, B, V, 64);
  int bf16 = !strcmp(precision, "bf16"), sr = !strcmp(precision, "bf16-sr");
  if (!bf16 && !sr && strcmp(precision, "fp32")) {
    fprintf(stderr, "gpt2_bench: --precision must be fp32, bf16 or bf16-sr, got '%s'\n", precision);
    return 2;
  }
  if ((bf16 || sr) && strcmp(arch, "gpt")) {
    fprintf(stderr, "gpt2_bench: --precision %s is GPT-2's (strata train); drop it with --arch %s\n", precision, arch);
    return 2;
  }
  if (steps <= 0 || warmup < 0) {
    fprintf(stderr, "gpt2_bench: --steps must be > 0 and --warmup >= 0\n");
    return 2;
  }

  if (strcmp(arch, "gpt") && strcmp(arch, "llama")) {
    fprintf(stderr, "gpt2_bench: --arch must be gpt or llama, got '%s'\n", arch);
    return 2;
  }
  const ckpt_arch_t family = strcmp(arch, "llama") ? CKPT_ARCH_GPT2 : CKPT_ARCH_LLAMA;
  gpt2_config_t shape = {.vocab = V, .ctx = T, .layers = L, .heads = H, .dim = C};
  llama_config_t lc = {.kv_heads = KVH, .ffn = F ? F : 4 * C, .rms_norm_eps = 1e-5, .rope_theta = 1e4};
  lc = train_llama_config(&shape, &lc);
  train_model_t tm;
  adamw_t *opt = NULL;
  char err[256];
  if (train_model_create(&tm, family, &shape, &lc, B, T, err, sizeof err) != 0 ||
      adamw_create(0, tm.num_params, &opt, err, sizeof err) != 0) {
    fprintf(stderr, "gpt2_bench: %s\n", err);
    return 2;
  }
  train_model_init(&tm, (uint64_t)seed);
  if (tm.gpt) {
    gpt2_set_matmul_dtype(tm.gpt, bf16 || sr ? GEMM_BF16 : GEMM_F32);
    if (sr) {
      adamw_set_stochastic_rounding(opt, (uint64_t)seed, 0);
      bf16_round_params(tm.params, tm.num_params);
    }
  }
  adamw_hparams_t hp;
  adamw_hparams_default(&hp);
  int32_t *tok = malloc(sizeof(int32_t) * (B * T + 1));
  rng_t r;
  rng_seed(&r, (uint64_t)seed, rng_hash_str("gpt2_bench data"));
  double t_fwd = 0, t_bwd = 0, t_opt = 0, t_all = 0, c_all = 0;
  float loss = 0;
  for (int s = 0; s < warmup + steps; s++) {
    for (int i = 0; i < B * T + 1; i++) tok[i] = (int32_t)rng_below(&r, V);
    double c0 = cpu_s();
    double t0 = now_s();
    loss = (float)train_model_forward(&tm, tok, tok + 1);
    double t1 = now_s();
    train_model_zero_grad(&tm);
    train_model_backward(&tm, 1.0f);
    double t2 = now_s();
    double ss = adamw_sum_squares(tm.grads, tm.num_params);
    adamw_step(opt, &hp, tm.params, tm.grads, tm.tensors, tm.num_tensors, adamw_lr_at(&hp, s),
               adamw_clip_scale(ss, hp.grad_clip));
    double t3 = now_s();
    double c3 = cpu_s();
    if (s >= warmup) {
      c_all += c3 - c0;
      t_fwd += t1 - t0;
      t_bwd += t2 - t1;
      t_opt += t3 - t2;
      t_all += t3 - t0;
    }
  }
  double tokens = (double)steps * B * T;
  double flops = (tm.gpt ? gpt2_train_flops(tm.gpt, B, T) : llama_train_flops(tm.llama, B, T)) * steps;
  char acts[32] = "n/a"; /* llama.h does not count its activation bytes */
  if (tm.gpt) snprintf(acts, sizeof acts, "%.1f", gpt2_acts_bytes(tm.gpt_acts) / 1048576.0);
  printf("gpt2_bench arch=%s params=%zu L=%d H=%d C=%d T=%d B=%d V=%d steps=%d precision=%s loss=%.4f\n", arch,
         tm.num_params, L, H, C, T, B, V, steps, precision, loss);
  printf("ms/step=%.1f (forward %.1f, backward %.1f, adamw %.1f) tokens/s=%.0f GFLOP/s=%.1f "
         "cpu_tokens/s=%.0f activations=%s MiB peak_rss=%.1f MiB\n",
         1e3 * t_all / steps, 1e3 * t_fwd / steps, 1e3 * t_bwd / steps, 1e3 * t_opt / steps, tokens / t_all,
         flops / t_all / 1e9, tokens / c_all, acts, peak_rss_mib());
  free(tok);
  adamw_free(opt);
  train_model_free(&tm);
  return 0;
}
